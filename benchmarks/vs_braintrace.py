"""BrainScale against braintrace (the paper's published library) in one run.

The lif-delta network (see lif_delta.py) is built with braintrace 0.2.6's own
modules; its initial weights are loaded into BrainScale's version, and both
see identical data. Reported:

1. gradient agreement: each library's D-RTRL and ES-D-RTRL against each other
   and against BPTT (overall, the two LIF layers alone, and their norm
   ratio), plus firing rates; BrainScale's compiled learners also against
   the hand-written floor of lif_delta.py.
2. time and memory of one training step (reset + gradient over T + SGD) for
   every library x algorithm x T, each configuration in its own process:
   median seconds per step after compilation, compile seconds, XLA temp MiB,
   peak RSS MiB; and the hand-written floor beside them.

    python benchmarks/vs_braintrace.py --out bench_out/vs_braintrace [--T 100 1000]

Needs the peer extra: pip install -e ".[peer]".
"""
from __future__ import annotations

import argparse
import json
import pathlib

import subprocess
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402
from common import peak_rss_mib, write_csv  # noqa: E402

ALGOS = ("bptt", "d_rtrl", "es_d_rtrl")


# -- the peer ------------------------------------------------------------------
def peer_model(seed, size=None, ff_scale=10.0, rec_scale=2.0, tau_o=10.0):
    import brainpy.state
    import brainstate
    import braintools
    import braintrace
    import jax.numpy as jnp
    from lif_delta import N_IN, N_OUT, N_REC
    N_IN, N_REC, N_OUT = size or (N_IN, N_REC, N_OUT)

    class Layer(brainstate.nn.Module):
        def __init__(self, n_in, n_rec):
            super().__init__()
            self.neu = brainpy.state.LIF(n_rec, R=1., tau=10., V_th=1., V_reset=0., V_rest=0.,
                                         spk_fun=braintools.surrogate.ReluGrad(),
                                         spk_reset="soft",
                                         V_initializer=braintools.init.ZeroInit())
            w = jnp.concatenate([braintools.init.KaimingNormal(ff_scale)([n_in, n_rec]),
                                 braintools.init.KaimingNormal(rec_scale)([n_rec, n_rec])])
            self.syn = brainpy.state.DeltaProj(
                comm=braintrace.nn.Linear(n_in + n_rec, n_rec, w_init=w), post=self.neu)

        def update(self, spk):
            self.syn(jnp.concatenate([spk, self.neu.get_spike()], axis=-1))
            self.neu(0.)
            return self.neu.get_spike()

    class Net(brainstate.nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2 = Layer(N_IN, N_REC), Layer(N_REC, N_REC)
            self.out = braintrace.nn.LeakyRateReadout(N_REC, N_OUT, tau=tau_o,
                                                      w_init=braintools.init.KaimingNormal())

        def update(self, x):
            return self.out(self.l2(self.l1(x)))

    brainstate.environ.set(dt=1.0)
    brainstate.random.seed(seed)
    return Net()


def peer_params(net):
    """The peer's initial weights in BrainScale's lif_delta layout."""
    import jax.numpy as jnp
    layer = lambda l: {"w": jnp.asarray(l.syn.comm.weight.value["weight"]),
                       "b": jnp.asarray(l.syn.comm.weight.value["bias"])}
    return {"l1": layer(net.l1), "l2": layer(net.l2), "out": {"w": jnp.asarray(net.out.W.value)}}


def peer_grad_fn(net, algo, B, x0, decay):
    """A jitted ``(xs, ys) -> (grads as lif_delta pytree, loss)`` for the peer."""
    import brainstate
    import braintools
    import braintrace
    import jax.numpy as jnp

    def ce(out, y):
        return braintools.metric.softmax_cross_entropy_with_integer_labels(out, y).mean()

    brainstate.nn.init_all_states(net, batch_size=B)
    if algo == "bptt":
        target, params = net, net.states(brainstate.ParamState)

        @brainstate.transform.jit
        def grad_fn(xs, ys):
            brainstate.nn.reset_all_states(net, batch_size=B)

            def total():
                losses = brainstate.transform.for_loop(lambda x: ce(net(x), ys[0]), xs)
                return losses.mean()
            return brainstate.transform.grad(total, params, return_value=True)()
    else:
        method = braintrace.D_RTRL if algo == "d_rtrl" else braintrace.ES_D_RTRL
        kw = {} if algo == "d_rtrl" else {"decay_or_rank": decay}
        target = braintrace.compile(net, method, x0, batch_size=B, **kw)
        params = target.param_states

        @brainstate.transform.jit
        def grad_fn(xs, ys):
            brainstate.nn.reset_all_states(target, batch_size=B)
            return target.etrace_grad(xs, step_fn=lambda x: ce(target(x), ys[0]),
                                      reduction="mean", loss_output="scalar", return_value=True)

    def to_tree(g):
        flat = {}
        for key, v in g.items():
            name = "/".join(map(str, key))
            if isinstance(v, dict):
                for k2, v2 in v.items():
                    flat[f"{name}/{k2}"] = jnp.asarray(v2)
            else:
                flat[name] = jnp.asarray(v)
        pick = lambda sub: next(v for k, v in flat.items() if all(s in k for s in sub))
        return {"l1": {"w": pick(("l1", "weight/weight")), "b": pick(("l1", "weight/bias"))},
                "l2": {"w": pick(("l2", "weight/weight")), "b": pick(("l2", "weight/bias"))},
                "out": {"w": pick(("out", "W"))}}

    return grad_fn, params, to_tree


# -- one timed configuration (run in a subprocess) -------------------------------
def peer_train_fn(net, algo, B, x0, decay, lr=1e-3):
    """The peer's jitted training step: gradient over the sequence, SGD."""
    import brainstate
    import jax

    grad_fn, pstates, _ = peer_grad_fn(net, algo, B, x0, decay)

    @brainstate.transform.jit
    def fn(xs, ys):
        grads, loss = grad_fn(xs, ys)
        for k, st in pstates.items():
            st.value = jax.tree.map(lambda w, g: w - lr * g, st.value, grads[k])
        return loss
    return fn


def run_one(lib, algo, T, B, decay, reps, seed, size=None):
    import jax
    import optax
    import lif_delta as ld

    import brainscale as bs      # imports before the clock, as the peer's are (peer_model)

    xs, ys = ld.make_data(T, B, seed + 1, **_data_size(size))
    net = peer_model(seed, size)
    params = peer_params(net)
    t0 = time.time()
    if lib in ("brainscale", "brainscale_plain"):
        learner = bs.online(ld.model(params), common.algorithm(algo, decay), optimizer=optax.sgd(1e-3),
                            readout_paths=lib == "brainscale")
        state = learner.init(jax.random.PRNGKey(0), xs[0])
        fn, args = learner.train_sequence, (state, xs, ys)
        call = lambda: fn(*args)[1]["loss"]
    elif lib == "hand":
        fn = jax.jit(lambda p, x, y: jax.tree.map(
            lambda w, g: w - 1e-3 * g, p, ld.hand_grads(p, x, y, algo, decay)[0]))
        args = (params, xs, ys)
        call = lambda: fn(*args)
    else:
        fn = peer_train_fn(net, algo, B, xs[0], decay)
        args = (xs, ys)
        call = lambda: fn(*args)
    t_build = time.time() - t0
    warm = []
    for _ in range(2):
        t1 = time.time()
        jax.block_until_ready(call())
        warm.append(time.time() - t1)
    times = []
    for _ in range(reps):
        t1 = time.time()
        jax.block_until_ready(call())
        times.append(time.time() - t1)
    try:
        temp = fn.lower(*args).compile().memory_analysis().temp_size_in_bytes / 2 ** 20
    except Exception:            # noqa: BLE001 - reported as missing, never hidden
        temp = float("nan")
    return dict(lib=lib, algo=algo, T=T, B=B, build_s=t_build, compile_s=warm[0],
                step_s=float(np.median(times)), step_min_s=float(np.min(times)),
                temp_MiB=temp, rss_MiB=peak_rss_mib(),
                device=str(jax.devices()[0]))


# -- gradient agreement (in process) ----------------------------------------------
def cos(a, b):
    a, b = np.ravel(a), np.ravel(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def flat(tree, keys=None):
    import jax
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return np.concatenate([np.ravel(np.asarray(v, np.float64)) for p, v in leaves
                           if keys is None or jax.tree_util.keystr(p[:1]) in keys])


def _data_size(size):
    return {} if size is None else {"n_in": size[0], "n_out": size[2]}


def agreement(T, B, decay, seed, size=None):
    import jax
    import jax.numpy as jnp
    import brainscale as bs
    import lif_delta as ld

    xs, ys = ld.make_data(T, B, seed + 1, **_data_size(size))
    grads = {}
    for algo in ALGOS:
        net = peer_model(seed, size)
        fn, _, to_tree = peer_grad_fn(net, algo, B, xs[0], decay)
        g, _ = fn(xs, ys)
        grads[("braintrace", algo)] = to_tree(g)
    params = peer_params(peer_model(seed, size))
    for algo in ALGOS:
        learner = bs.online(ld.model(params), common.algorithm(algo, decay))
        state = learner.init(jax.random.PRNGKey(0), xs[0])
        grads[("brainscale", algo)] = learner.sequence_grad(state, xs, ys)[0]
        grads[("hand", algo)] = jax.jit(lambda p, x, y: ld.hand_grads(p, x, y, algo, decay))(
            params, xs, ys)[0]
        if algo != "bptt":
            plain = bs.online(ld.model(params), common.algorithm(algo, decay), readout_paths=False)
            grads[("brainscale_plain", algo)] = plain.sequence_grad(
                plain.init(jax.random.PRNGKey(0), xs[0]), xs, ys)[0]
    hid = ["['l1']", "['l2']"]
    rows = []
    ref = grads[("brainscale", "bptt")]
    for (lib, algo), g in grads.items():
        rows.append(dict(seed=seed, T=T, lib=lib, algo=algo,
                         cos_bptt=cos(flat(g), flat(ref)),
                         norm_ratio=float(np.linalg.norm(flat(g)) / np.linalg.norm(flat(ref))),
                         lif_cos_bptt=cos(flat(g, hid), flat(ref, hid)),
                         lif_norm_ratio=float(np.linalg.norm(flat(g, hid)) / np.linalg.norm(flat(ref, hid))),
                         cos_other_lib=cos(flat(g), flat(other := grads[(
                             "braintrace" if lib != "braintrace" else "brainscale", algo)])),
                         lif_cos_other_lib=cos(flat(g, hid), flat(other, hid))))
    rel_hand = {a: float(np.linalg.norm(flat(grads[("brainscale", a)]) - flat(grads[("hand", a)]))
                         / np.linalg.norm(flat(grads[("hand", a)]))) for a in ALGOS}
    learner = bs.online(ld.model(params), algorithm="bptt")
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    h, r1, r2 = state.hidden, [], []
    for x in xs:
        h, _ = jax.vmap(lambda hh, xx: ld.apply(params, hh, xx))(h, x)
        r1.append(jnp.mean(h["v1"] > 1.0)), r2.append(jnp.mean(h["v2"] > 1.0))
    rates = (float(np.mean(r1)), float(np.mean(r2)))
    return rows, rel_hand, rates


# -- driver -------------------------------------------------------------------------
def write_partial(path, rows):
    """The rows so far, so that a run killed part-way (a time limit) leaves
    what it measured; the report at the end rewrites the file."""
    write_csv(path, rows, sorted({k for r in rows for k in r}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench_out/vs_braintrace")
    ap.add_argument("--T", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--B", type=int, default=32)
    ap.add_argument("--size", type=int, nargs=3, metavar=("IN", "HIDDEN", "OUT"),
                    default=[100, 200, 10], help="lif-delta sizes: IN -> HIDDEN -> HIDDEN -> OUT")
    ap.add_argument("--decay", type=float, default=0.99, help="ES-D-RTRL decay (braintrace's default)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--grad-T", type=int, default=100)
    ap.add_argument("--skip-agreement", action="store_true",
                    help="time and memory only (no gradient-agreement table)")
    ap.add_argument("--libs", nargs="+",
                    default=["brainscale", "brainscale_plain", "braintrace", "hand"],
                    help="brainscale_plain: readout_paths=False, the peer's algorithm exactly")
    ap.add_argument("--algos", nargs="+", default=list(ALGOS))
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--one", nargs=3, metavar=("LIB", "ALGO", "T"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        lib, algo, T = args.one
        print(json.dumps(run_one(lib, algo, int(T), args.B, args.decay, args.reps, args.seeds[0],
                                 tuple(args.size))))
        return
    from vs_braintrace_report import write_vs_braintrace
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    agree, rel_hand, rates = [], {}, []
    seeds = [] if args.skip_agreement else args.seeds
    progress = common.Progress(len(seeds) + len(args.T) * len(args.algos) * len(args.libs))
    for seed in seeds:
        i = progress.start(f"gradient agreement seed {seed} T={args.grad_T}")
        rows, rh, rt = agreement(args.grad_T, args.B, args.decay, seed, tuple(args.size))
        agree += rows
        rel_hand[seed] = rh
        rates.append(rt)
        progress.done(i, f"rates {rt[0]:.3f} / {rt[1]:.3f}, compiled vs hand rel. error "
                      + ", ".join(f"{a} {e:.1e}" for a, e in rh.items()))
        write_partial(out / "agreement.csv", agree)
    timing = []
    for T in args.T:
        for algo in args.algos:
            for lib in args.libs:
                i = progress.start(f"{lib} {algo} T={T}")
                cmd = [sys.executable, __file__, "--one", lib, algo, str(T), "--B", str(args.B),
                       "--decay", str(args.decay), "--reps", str(args.reps),
                       "--size", *map(str, args.size),
                       "--seeds", str(args.seeds[0])]
                try:
                    res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
                    row = json.loads(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 else \
                        dict(lib=lib, algo=algo, T=T, error=(res.stderr.strip().splitlines()
                                                            or [f"exit code {res.returncode}"])[-1][:200])
                except subprocess.TimeoutExpired:
                    row = dict(lib=lib, algo=algo, T=T, error=f"timeout after {args.timeout} s")
                timing.append(row)
                write_partial(out / "timing.csv", timing)
                progress.done(i, f"error: {row['error']}" if "error" in row else
                              f"{row['step_s']:.4f} s/step, first call {row['compile_s']:.1f} s, "
                              f"temp {row['temp_MiB']:.1f} MiB")
    write_vs_braintrace(out, agree, rel_hand, rates, timing, " ".join(sys.argv))


if __name__ == "__main__":
    main()
