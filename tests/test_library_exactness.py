"""D-RTRL equals BPTT (float64) for one feed-forward layer of every neuron
and synapse the library ships, with a loss at every step; each layer is
checked to spike, so the comparison is not vacuous."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from brainscale.nn import neurons, synapses
from brainscale.nn.projections import AlignPost, AlignPre, Linear, SparseLinear
from brainscale.nn.readout import LinearReadout
from gradcheck import flat, float64, rel_err, sequence_grads

I, N, C, T, B = 6, 5, 3, 12, 2

NEURONS = {
    "lif_soft": (lambda: neurons.LIF(N, tau=5.0, reset="soft"), 3.0),
    "lif_hard": (lambda: neurons.LIF(N, tau=5.0, reset="hard"), 3.0),
    "lif_refractory": (lambda: neurons.LIF(N, tau=5.0, tau_ref=2.0), 3.0),
    "alif": (lambda: neurons.ALIF(N, tau=5.0, tau_a=50.0, beta=0.2), 3.0),
    "gif": (lambda: neurons.GIF(N, tau=5.0), 4.0),
    "izhikevich": (lambda: neurons.Izhikevich(N, dt=0.5), 40.0),
    "expif": (lambda: neurons.ExpIF(N, tau=5.0), 4.0),
    "qif": (lambda: neurons.QIF(N, tau=5.0), 4.0),
}
SYNAPSES = {
    "expon": lambda: AlignPost,
    "dual_expon": lambda: AlignPost,
    "alpha": lambda: AlignPost,
    "std": lambda: AlignPre,
    "stp": lambda: AlignPre,
}


class Layer(nnx.Module):
    """input spikes -> projection (with an optional synapse) -> neuron ->
    stateless readout (so the diagonal is exact)."""

    def __init__(self, proj, neuron, rngs):
        self.proj, self.neuron = proj, neuron
        self.out = LinearReadout(N, C, rngs=rngs)

    def __call__(self, x):
        s = self.proj(x)
        self.neuron_rate = s
        return self.out(s)


def build(neuron_name, syn_name=None, sparse=False, coba=False):
    rngs = nnx.Rngs(0)
    make_neuron, scale = NEURONS[neuron_name]
    post = make_neuron()
    if syn_name in ("std", "stp"):      # efficacy u x ~ 0.2-0.3 scales the drive down
        scale = 4 * scale
    comm = (SparseLinear(I, N, rngs=rngs, prob=0.6, seed=1, w_init_std=scale) if sparse
            else Linear(I, N, rngs=rngs, scale=scale, use_bias=True))
    if syn_name in (None, "expon", "dual_expon", "alpha"):
        syn = {None: None, "expon": synapses.Expon(N, tau=3.0),
               "dual_expon": synapses.DualExpon(N, tau_rise=1.0, tau_decay=4.0),
               "alpha": synapses.Alpha(N, tau=2.0)}[syn_name]
        kw = dict(out="coba", E=5.0 if neuron_name != "izhikevich" else 60.0) if coba else {}
        proj = AlignPost(comm, syn, post, **kw)
    else:
        syn = {"std": synapses.STD(I, tau_d=20.0, U=0.3),
               "stp": synapses.STP(I, U=0.2, tau_f=30.0, tau_d=20.0)}[syn_name]
        proj = AlignPre(syn, comm, post)
    return Layer(proj, post, rngs)


def spike_rate(module, xs):
    g, state = nnx.split(module)

    def run(state, x):
        m = nnx.merge(g, state)
        m(x)
        return nnx.state(m), m.neuron_rate
    _, s = jax.lax.scan(lambda st, x: run(st, x), state, xs[:, 0])
    return float(jnp.mean(s))


CASES = ([(n, None, False, False) for n in NEURONS]
         + [("lif_soft", s, False, False) for s in SYNAPSES]
         + [("alif", "expon", False, True), ("lif_soft", None, True, False),
            ("izhikevich", "expon", False, False)])


@pytest.mark.parametrize("neuron,syn,sparse,coba", CASES,
                         ids=[f"{n}-{s}{'-sparse' if sp else ''}{'-coba' if c else ''}"
                              for n, s, sp, c in CASES])
def test_library_layer_d_rtrl_equals_bptt(neuron, syn, sparse, coba):
    with float64():
        k1, k2 = jax.random.split(jax.random.PRNGKey(7))
        xs = jax.random.bernoulli(k1, 0.5, (T, B, I)).astype(jnp.float64)
        ys = jax.random.randint(k2, (T, B), 0, C)
        module = build(neuron, syn, sparse, coba)
        rate = spike_rate(build(neuron, syn, sparse, coba), xs)
        assert 0.02 < rate < 0.98, f"layer spike rate {rate:.3f}: test would be vacuous"
        g, _ = sequence_grads(module, xs, ys, ("bptt", "d_rtrl"))
        assert np.linalg.norm(flat(g["bptt"])) > 0
        assert rel_err(g["d_rtrl"], g["bptt"]) < 1e-6
