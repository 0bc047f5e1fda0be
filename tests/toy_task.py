"""A tiny seeded two-class task for the trainer's tests: which half of the
input channels fires more. ``poison`` maps a step to a bad batch kind."""
import time

import numpy as np

from brainscale.models.recurrent_snn import recurrent_snn
from brainscale.train.task import Task


def toy_task(T=12, n_in=10, n_eval=40, poison=None, delay_s=0.0):
    poison = dict(poison or {})

    def gen(rng, B):
        y = rng.integers(0, 2, B)
        p = np.where((np.arange(n_in) < n_in // 2)[None] == (y[:, None] == 0), 0.6, 0.1)
        xs = (rng.random((T, B, n_in)) < p[None]).astype(np.float32)
        ys = np.full((T, B), -1, np.int32)
        ys[T // 2:] = y
        return xs, ys

    def train_batch(seed, step, B):
        if delay_s:
            time.sleep(delay_s)
        xs, ys = gen(np.random.default_rng([seed, step]), B)
        kind = poison.get(step)
        if kind == "nan":
            xs[3, 1, 2] = np.nan
        elif kind == "label":
            ys[-1, 0] = 7
        elif kind == "shape":
            xs, ys = xs[:, :-1], ys[:, :-1]
        return xs, ys

    def eval_batches(B):
        rng = np.random.default_rng(12345)
        return [gen(rng, B) for _ in range(-(-n_eval // B))]

    def make_model(opts, seed):
        return recurrent_snn(n_in, 2, seed=seed, **opts)

    return Task("toy", n_in, 2, train_batch, eval_batches, make_model,
                options={"T": T, "n_in": n_in},
                model_defaults={"hidden": [16], "w_in_scale": 3.0})
