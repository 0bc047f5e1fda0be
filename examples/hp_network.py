"""The network and training loop shared by the hybrid-plasticity experiments
(``examples/hp_*.py``): input -> HP synapse -> LIF hidden -> linear readout,
in four variants on the same initial weights:

- ``"gp"``: global plasticity only (the hidden synapse is a plain weight);
- ``"lp"``: local plasticity only (the hidden W frozen at its random
  initial value, H by the HP rule; the readout is trained by gradient);
- ``"hp"``: both, with theta meta-learned by the bilevel step on a
  held-out part of each training batch;
- ``"hp_fixed"``: both, theta left at its initial value (no meta-learning).

All train the readout (and W where it is plastic) with ES-D-RTRL and Adam;
inputs are digits, rate- or rank-order coded. The label is asked in the
second half of each sequence; accuracy is the readout summed over it.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import brainscale as bs
from brainscale import hybrid
from brainscale.nn.hp_synapse import HPLinear
from brainscale.nn.neurons import LIF
from brainscale.tasks.digits import rank_order_encode, rate_encode

VARIANTS = ("gp", "lp", "hp", "hp_fixed")
PLASTIC = "params['fc1']['A']"
READOUT_PLASTIC = "params['out']['A']"
W_GP = "params['fc1']['W']"


class HPNet(nnx.Module):
    """``gated``: the input is ``concat([spikes (n_in), gate (n_hidden)])``
    and the hidden spikes are multiplied by the gate (context gating).
    ``assoc``: the readout is an HP synapse too (``x @ W + x @ A``, A driven
    by ``bs.rules.hp_assoc``), starting at zero."""

    def __init__(self, n_in, n_hidden, n_out, *, rngs, plastic=True, scale=3.0, tau=10.0,
                 v_th=0.5, probe=False, gated=False, assoc=False):
        self.n_in, self.gated = int(n_in), bool(gated)
        self.fc1 = HPLinear(n_in, n_hidden, rngs=rngs, scale=scale)
        if not plastic:                  # a plain weight: no plastic op in the graph
            self.fc1.A = nnx.Variable(self.fc1.A[...])
        self.lif1 = LIF(n_hidden, tau=tau, v_th=v_th)
        self.out = HPLinear(n_hidden, n_out, rngs=rngs, scale=0.0) if assoc \
            else nnx.Linear(n_hidden, n_out, rngs=rngs)
        self.probe = bool(probe)          # also emit the hidden spikes

    def __call__(self, x):
        if self.gated:
            s = self.lif1(self.fc1(x[:self.n_in])) * x[self.n_in:]
        else:
            s = self.lif1(self.fc1(x))
        return (self.out(s), s) if self.probe else self.out(s)


def make_learner(variant: str, n_in=64, n_hidden=128, n_out=10, lr=3e-3, seed=0,
                 theta=None, scale=3.0, gated=False, first_order=False, assoc=None):
    """(learner, Bilevel or None) for ``variant``; ``theta`` overrides the HP
    rule's initial hyper-parameters (keyword arguments of ``bs.rules.hp_local``);
    ``assoc`` (a dict, keyword arguments of ``bs.rules.hp_assoc``) makes the
    readout an HP synapse with the label-associative local rule."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    model = HPNet(n_in, n_hidden, n_out, rngs=nnx.Rngs(seed), plastic=variant != "gp",
                  scale=scale, gated=gated, assoc=assoc is not None)
    # eps_root > 0: Adam's square root stays differentiable at a zero
    # gradient, which the bilevel step differentiates through
    adam = optax.adam(lr, eps_root=1e-12)
    opt = adam
    if variant == "lp":                  # W stays at its random initial value
        opt = optax.multi_transform(
            {"train": adam, "frozen": optax.set_to_zero()},
            lambda params: jax.tree_util.tree_map_with_path(
                lambda p, _: "frozen" if "params" + jax.tree_util.keystr(p) == W_GP
                else "train", params))
    kw = dict(alpha=0.1, beta=0.05, eta=0.0, gamma=0.95, v_th=0.5, clip=0.5)
    kw.update(theta or {})
    rules = {} if variant == "gp" else {PLASTIC: bs.rules.hp_local(**kw)}
    if assoc is not None:
        rules[READOUT_PLASTIC] = bs.rules.hp_assoc(**assoc)
    learner = bs.online(model, "es_d_rtrl", optimizer=opt, rules=rules)
    meta = hybrid.Bilevel(learner, optax.adam(1e-2), first_order=first_order,
                          new_episodes=False) \
        if variant == "hp" else None
    return learner, meta


def encode(images, T, coding, key):
    if coding == "rate":
        return rate_encode(images, T, key)
    if coding == "rank":
        return jnp.asarray(rank_order_encode(np.asarray(images), T))
    raise ValueError(f"coding must be 'rate' or 'rank', got {coding!r}")


def labels(y, T):
    ys = np.full((T, len(y)), -1, np.int32)
    ys[T // 2:] = np.asarray(y)[None]
    return jnp.asarray(ys)


# input weight scale per code: a rank-order code sends each pixel one spike,
# a rate code about T / 4: the sparser code needs stronger synapses
SCALE = {"rate": 3.0, "rank": 20.0}


def train(variant, x, y, *, steps, T=20, B=32, coding="rate", seed=0, n_hidden=128,
          lr=3e-3, meta_every=1, first_order=False):
    """Trains ``variant`` on (x, y); returns (learner, state). For ``"hp"``
    every ``meta_every``-th batch trains w inside a bilevel step whose
    validation split is a second batch drawn from (x, y); theta follows the
    meta-gradient."""
    learner, meta = make_learner(variant, x.shape[1], n_hidden, int(np.max(y)) + 1, lr, seed,
                                 scale=SCALE[coding], first_order=first_order)
    rng = np.random.default_rng(seed)
    state = learner.init(jax.random.PRNGKey(seed), encode(x[:B], T, coding, 0)[0])
    mstate = meta.init(state) if meta is not None else None
    for step in range(steps):
        idx = rng.choice(len(x), B, replace=False)
        xs, ys = encode(x[idx], T, coding, jax.random.PRNGKey(step + 1)), labels(y[idx], T)
        if meta is not None and step % meta_every == 0:
            vi = rng.choice(len(x), B, replace=False)
            val = (encode(x[vi], T, coding, jax.random.PRNGKey(-step - 1)), labels(y[vi], T))
            state, mstate, _ = meta.step(state, mstate, [(xs, ys)], val)
        else:
            state, _ = learner.train_sequence(state, xs, ys)
    return learner, state


def encoded_batches(x, T, coding, B=32, seed=10 ** 6):
    """Encoded batches of ``B`` (the last one padded with blank images) and
    the number of real rows in each."""
    for i in range(0, len(x), B):
        xb = np.asarray(x[i:i + B])
        n = len(xb)
        if n < B:
            xb = np.concatenate([xb, np.zeros((B - n,) + xb.shape[1:], xb.dtype)])
        yield encode(xb, T, coding, jax.random.PRNGKey(seed + i)), n


def predict(learner, state, x, T=20, coding="rate", B=32, seed=10 ** 6):
    """Class scores (N, C): the readout summed over the second half."""
    return np.concatenate([np.asarray(learner.predict(state, xs)[T // 2:].sum(0))[:n]
                           for xs, n in encoded_batches(x, T, coding, B, seed)])


def accuracy(learner, state, x, y, **kw) -> float:
    return float(np.mean(predict(learner, state, x, **kw).argmax(-1) == np.asarray(y)))


@functools.lru_cache(maxsize=None)
def _probe(plastic, n_in, n_hidden, n_out, B):
    """A learner (compiled once per shape) of the network that also emits
    its hidden spikes, and its state for a batch of ``B``."""
    model = HPNet(n_in, n_hidden, n_out, rngs=nnx.Rngs(0), plastic=plastic, probe=True)
    probe = bs.online(model, "es_d_rtrl", optimizer=optax.sgd(0.0))
    return probe, probe.init(jax.random.PRNGKey(0), jnp.zeros((B, n_in)))


def hidden_rates(variant, state, x, T=20, coding="rate", B=32, seed=10 ** 6):
    """Hidden spike rates (N, n_hidden): the same network, emitting its
    hidden spikes, run with the trained parameters."""
    W = state.params["fc1"]["W"]
    probe, pstate = _probe(variant != "gp", W.shape[0], W.shape[1],
                           state.params["out"]["kernel"].shape[1], B)
    pstate = pstate._replace(params=state.params)
    return np.concatenate([np.asarray(probe.predict(pstate, xs)[1].mean(0))[:n]
                           for xs, n in encoded_batches(x, T, coding, B, seed)])


__all__ = ["VARIANTS", "HPNet", "make_learner", "encode", "encoded_batches", "labels", "train",
           "predict", "accuracy", "hidden_rates"]
