"""The homeostatic-threshold LIF: its equations against numpy, its threshold
taming a strongly driven neuron, and STDP on top of it compiling as is."""
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import brainscale as bs
from brainscale.nn.homeostasis import HomeostaticLIF
from nnx_run import run
from transforms.plasticity.rules import stdp


def test_equations_and_rate_regulation():
    n = HomeostaticLIF(3, tau=10.0, v_th=0.5, tau_theta=200.0, theta_plus=0.1)
    xs = np.tile(np.array([[2.0, 1.0, 0.3]], np.float32), (400, 1))
    spikes, states = run(n, xs)
    v, th = np.zeros(3), np.zeros(3)
    d, dth = math.exp(-0.1), math.exp(-1 / 200.0)
    for t in range(400):
        v = v * d + xs[t] * (1 - d)
        s = (v - (0.5 + th) >= 0).astype(float)
        v = v - (0.5 + th) * s
        th = th * dth + 0.1 * s
        np.testing.assert_array_equal(spikes[t], s)
        np.testing.assert_allclose(states[t]["theta"], th, rtol=1e-5, atol=1e-6)
    early, late = spikes[:50, 0].mean(), spikes[-100:, 0].mean()
    assert late < 0.6 * early                     # the busiest neuron is tamed
    assert spikes[:, 2].sum() == 0                # sub-threshold input stays silent


class Layer(nnx.Module):
    def __init__(self, rngs):
        self.fc = nnx.Linear(10, 4, use_bias=False, rngs=rngs)
        self.lif = HomeostaticLIF(4, tau=10.0, v_th=0.3)

    def __call__(self, x):
        return self.lif(self.fc(x))


def test_stdp_on_a_homeostatic_layer():
    net = bs.plasticity(Layer(nnx.Rngs(0)), {"params['fc']['kernel']": stdp.stdp()})
    xs = jax.random.bernoulli(jax.random.PRNGKey(0), 0.3, (50, 2, 10)).astype(jnp.float32)
    state = net.init(jax.random.PRNGKey(0), xs[0])
    (group,) = [g for g in net.graph.groups if g.ops]
    assert group.k == 2                           # v and theta: one per-neuron block
    final, spikes = net.run(state, xs)
    assert float(spikes.sum()) > 0
    assert not np.allclose(final.params["fc"]["kernel"], state.params["fc"]["kernel"])
