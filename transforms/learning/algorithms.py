"""Learning algorithms as values, each with its own options.

    bs.online(model, bs.es_d_rtrl(decay=0.9), optax.adam(1e-3))

An online algorithm is a frozen value with a written interface:

    prepare(graph) -> graph        its own checks and passes on the graph IR
    init(graph, batch, dtype) -> traces          (a NamedTuple of arrays)
    batch_axes(graph) -> the traces' structure with each array's batch axis
                         (None: shared by the batch), for sharding
    contract(graph, traces, signal, readout_signal, xs, dys) -> {op index: dL/dW_eff}
    advance(graph, traces, per_sample, xs) -> traces
    window_for(T, B) -> k          steps whose gradient factors one contraction takes

``signal`` is d l_t/d h_{t-1} per state slot, ``xs`` and ``dys`` each trained
op's input and output cotangent at this step, keyed by the op's index in
``graph.ops`` (the one index space of ops: traces, readout paths and
gradients use it too), ``per_sample(fn, traces)`` maps
``fn(traces, lin, hidden, ys, xs)`` over the batch with ``lin`` the
linearised cut step. BPTT is the value ``bptt()``: no traces, ``jax.grad``
of a scan. An option an algorithm does not have is a ``TypeError`` of its
constructor, never silently ignored.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import operator
from typing import Any, ClassVar

from transforms.errors import UnsupportedAlgorithmError
from transforms.ir.graph import MIXING, Graph
from transforms.ir.patch_forms import patch_form
from transforms.learning import d_rtrl as d_rtrl_traces
from transforms.learning import es_d_rtrl as es_d_rtrl_traces
from transforms.learning import low_rank_d_rtrl as low_rank_traces
from transforms.learning import modal_es
from transforms.learning.algorithm_specs import parse_spec, suffixes
from transforms.learning.feedback import random_feedback
from transforms.learning.readout_paths import layer_paths, linear_groups


def _check_traceable(graph: Graph, name: str):
    """D-RTRL keeps one trace entry per neuron and weight it reads: a weight
    element driving several neurons needs the op's patch form."""
    for op in graph.trained_ops():
        if not op.one_post and patch_form(graph, op) is None:
            raise UnsupportedAlgorithmError(
                f"{name} needs each weight element of {op.path} ({op.kind}, W "
                f"{op.weff_shape} -> y {op.y_shape}) to drive one neuron, or the op to be a "
                "plain dense product or an ungrouped convolution; it is neither",
                primitive=graph.traced.eqns[op.core[0]].primitive.name, path=op.path,
                source=op.source, hint="use algorithm='es_d_rtrl' (or 'bptt') for this model")


@dataclasses.dataclass(frozen=True)
class DRTRL:
    """D-RTRL: per weight element and neuron state, the trace with the
    per-neuron Jacobian block. ``trace_dtype`` (e.g. bfloat16) stores it
    smaller; arithmetic stays in the parameters' dtype."""
    trace_dtype: Any = None
    name: ClassVar[str] = "d_rtrl"
    online: ClassVar[bool] = True

    def prepare(self, graph: Graph) -> Graph:
        _check_traceable(graph, self.name)
        return graph

    def init(self, graph, batch, dtype):
        return d_rtrl_traces.init(graph, batch, dtype, self.trace_dtype)

    def batch_axes(self, graph):
        return d_rtrl_traces.batch_axes(graph)

    def contract(self, graph, traces, signal, readout_signal, xs, dys):
        return d_rtrl_traces.contract(graph, traces, signal, readout_signal, xs, dys)

    def advance(self, graph, traces, per_sample, xs):
        return d_rtrl_traces.advance(graph, traces, per_sample, xs)

    def window_for(self, T: int, batch: int) -> int:
        return 1


@dataclasses.dataclass(frozen=True)
class EProp(DRTRL):
    """e-prop: D-RTRL's traces with the output error broadcast back through
    the readout (``feedback="symmetric"``: W_out, which equals D-RTRL) or a
    fixed random matrix drawn with ``feedback_seed`` ("random")."""
    feedback: str = "symmetric"
    feedback_seed: int = 0
    name: ClassVar[str] = "e_prop"

    def __post_init__(self):
        if self.feedback not in ("symmetric", "random"):
            raise ValueError(f"feedback must be 'symmetric' or 'random', got {self.feedback!r}")

    def prepare(self, graph: Graph) -> Graph:
        graph = super().prepare(graph)
        if self.feedback == "random":
            graph = dataclasses.replace(graph, feedback=random_feedback(graph,
                                                                        self.feedback_seed))
        return graph


@dataclasses.dataclass(frozen=True)
class OSTL(DRTRL):
    """OSTL: D-RTRL on feed-forward layers; a recurrent weight would need the
    full layer Jacobian (O(N^3) memory), so it is refused."""
    name: ClassVar[str] = "ostl"

    def prepare(self, graph: Graph) -> Graph:
        graph = super().prepare(graph)
        for op in graph.trained_ops():
            if op.kind in MIXING and any(f"G{g}" in op.pre for g in op.groups):
                raise UnsupportedAlgorithmError(
                    f"OSTL on the recurrent weight {op.path} needs the full Jacobian of its "
                    "layer (O(N^3) memory), which is not implemented; D-RTRL is its "
                    "per-neuron diagonal", path=op.path, source=op.source,
                    hint="use algorithm='d_rtrl' (OSTL's diagonal) or 'bptt'")
        return graph


@dataclasses.dataclass(frozen=True)
class ESDRTRL:
    """ES-D-RTRL: each trace factorised into an input and a neuron part,
    smoothed with ``decay`` (alpha). Over a sequence, ``window`` steps at a
    time run their signals' VJP and their weight-gradient contraction as
    single products of ``window`` x B rows; the result is the same.
    ``window=None`` picks about ``WINDOW_ROWS`` rows (a divisor of T if one is
    near, else a last, shorter window): memory O(window B N), independent
    of T. ``adaptive``: each hidden group's input traces follow its own modes
    (``modal_es``: decays from the group's mean Jacobian, complex for
    rotating groups, kept as a running mean with rate ``adapt_rate``);
    ``decay`` then smooths the neuron factors. ``through_layers``: a
    lower layer's credit through the memory of the spiking layer above it is
    carried like a readout path (``readout_paths.layer_paths``)."""
    decay: float = 0.9
    window: int | None = None
    adaptive: bool = False
    adapt_rate: float = 0.99
    through_layers: bool = False
    name: ClassVar[str] = "es_d_rtrl"
    online: ClassVar[bool] = True
    WINDOW_ROWS: ClassVar[int] = 256

    def __post_init__(self):
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {self.decay}")
        if self.window is not None and int(self.window) < 1:
            raise ValueError(f"window must be a positive number of steps, got {self.window}")
        if not 0.0 <= self.adapt_rate < 1.0:
            raise ValueError(f"adapt_rate must be in [0, 1), got {self.adapt_rate}")
        if self.adaptive and self.through_layers:
            raise ValueError("through_layers is not available with adaptive=True")

    def extra_paths(self, graph: Graph, found) -> list:
        """Paths the learner adds to the readout paths ``found``: through
        spiking layers."""
        return layer_paths(graph, self.decay, found) if self.through_layers else []

    def path_weights(self, graph, traces):
        """Per readout path, the weights of a path through a spiking layer."""
        if not self.through_layers:
            return None
        return es_d_rtrl_traces.path_weights(graph, traces, self.decay)

    @property
    def _traces(self):
        return modal_es if self.adaptive else es_d_rtrl_traces

    def prepare(self, graph: Graph) -> Graph:
        return dataclasses.replace(graph, linear_groups=linear_groups(graph))

    def init(self, graph, batch, dtype):
        return self._traces.init(graph, batch, dtype)

    def batch_axes(self, graph):
        return self._traces.batch_axes(graph)

    def contract(self, graph, traces, signal, readout_signal, xs, dys):
        return self._traces.contract(graph, traces, signal, self.decay, readout_signal, xs, dys)

    def advance(self, graph, traces, per_sample, xs):
        if self.adaptive:
            return modal_es.advance(graph, traces, per_sample, self.decay, self.adapt_rate)
        return es_d_rtrl_traces.advance(graph, traces, per_sample, self.decay)

    def window_for(self, T: int, batch: int) -> int:
        """Steps per window: ``window``, or about WINDOW_ROWS / B, preferring
        a divisor of T within a factor 1.5 (no shorter last window)."""
        if self.window is not None:
            return max(1, min(int(self.window), T))
        k = max(1, min(T, round(self.WINDOW_ROWS / max(batch, 1))))
        near = [d for d in range(1, T + 1) if T % d == 0 and k / 1.5 <= d <= k * 1.5]
        return min(near, key=lambda d: abs(math.log(d / k))) if near else k

    def neuron_cotangents(self, graph, traces, signal, readout_signal):
        """u_t per op (the trace term is sum_b ex_{t-1} (x) u_t); ``traces``
        needs no input traces."""
        return self._traces.neuron_cotangents(graph, traces, signal, self.decay, readout_signal)

    def window_factors(self, graph, ex0, xs, dys, us):
        return self._traces.window_factors(graph, self.decay, ex0, xs, dys, us)


@dataclasses.dataclass(frozen=True)
class LowRankDRTRL:
    """D-RTRL's per-sample traces kept as their best rank-``rank``
    approximation (``low_rank_d_rtrl``): ES-D-RTRL's memory class (r input
    and r neuron factors per op), with the factors chosen by the trace
    itself rather than by a fixed input decay."""
    rank: int = 2
    name: ClassVar[str] = "low_rank_d_rtrl"
    online: ClassVar[bool] = True

    def __post_init__(self):
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"low_rank_d_rtrl's rank must be an integer >= 1, got {self.rank!r}")

    def prepare(self, graph: Graph) -> Graph:
        return graph

    def init(self, graph, batch, dtype):
        return low_rank_traces.init(graph, batch, dtype, self.rank)

    def batch_axes(self, graph):
        return low_rank_traces.batch_axes(graph)

    def contract(self, graph, traces, signal, readout_signal, xs, dys):
        return low_rank_traces.contract(graph, traces, signal, readout_signal, xs, dys)

    def advance(self, graph, traces, per_sample, xs):
        return low_rank_traces.advance(graph, traces, per_sample, self.rank)

    def window_for(self, T: int, batch: int) -> int:
        return 1


@dataclasses.dataclass(frozen=True)
class BPTT:
    """The exact reference: ``jax.grad`` of a scan over the step."""
    name: ClassVar[str] = "bptt"
    online: ClassVar[bool] = False

    def window_for(self, T: int, batch: int) -> int:
        return 1

    def chunk_for(self, T: int) -> int:
        """Steps a gradient flows back through: all of them."""
        return T


@dataclasses.dataclass(frozen=True)
class TBPTT:
    """Truncated BPTT, the baseline users run when BPTT's memory does not
    fit: the sequence is cut into chunks of ``k`` steps; the hidden state
    passes from one chunk to the next but its gradient is stopped there, so
    the loss at step t reaches back to its chunk's start (at most k steps).
    ``jax.grad`` runs per chunk: memory O(k), not O(T). Gradients summed over
    the chunks, one optimizer update per sequence."""
    k: int = 50
    name: ClassVar[str] = "tbptt"
    online: ClassVar[bool] = False

    def __post_init__(self):
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"tbptt's k (steps per truncation chunk) must be an integer "
                             f">= 1, got {self.k!r}")

    def window_for(self, T: int, batch: int) -> int:
        return 1

    def chunk_for(self, T: int) -> int:
        return min(self.k, T)


def d_rtrl(trace_dtype=None) -> DRTRL:
    return DRTRL(trace_dtype)


def e_prop(feedback: str = "symmetric", feedback_seed: int = 0, trace_dtype=None) -> EProp:
    return EProp(trace_dtype, feedback, int(feedback_seed))


def ostl(trace_dtype=None) -> OSTL:
    return OSTL(trace_dtype)


def es_d_rtrl(decay: float = 0.9, window: int | None = None, adaptive: bool = False,
              adapt_rate: float = 0.99, through_layers: bool = False) -> ESDRTRL:
    return ESDRTRL(float(decay), None if window is None else int(window), bool(adaptive),
                   float(adapt_rate), bool(through_layers))


def low_rank_d_rtrl(rank: int = 2) -> LowRankDRTRL:
    if isinstance(rank, numbers.Integral) and not isinstance(rank, bool):
        rank = operator.index(rank)
    return LowRankDRTRL(rank)


def bptt() -> BPTT:
    return BPTT()


def tbptt(k: int = 50) -> TBPTT:
    """``TBPTT(k)``; an integral number of any numeric type is taken as int."""
    if isinstance(k, numbers.Integral) and not isinstance(k, bool):
        k = operator.index(k)
    elif isinstance(k, numbers.Real) and not isinstance(k, bool) and math.isfinite(k) \
            and k == int(k):
        k = int(k)
    return TBPTT(k)


BY_NAME = {"d_rtrl": d_rtrl, "es_d_rtrl": es_d_rtrl, "low_rank_d_rtrl": low_rank_d_rtrl,
           "e_prop": e_prop, "ostl": ostl,
           "bptt": bptt, "tbptt": tbptt}


def from_name(name: str, **options):
    """The algorithm ``name`` with the options given (None: not given); the
    name may carry a suffix (``"tbptt:50"``, ``"es_d_rtrl:adaptive"``:
    ``algorithm_specs``). An option it does not have, or one given twice
    with two values, is an error naming it."""
    if name.partition(":")[0] not in BY_NAME:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {sorted(BY_NAME)}"
                         " (or a form with a suffix: " + ", ".join(suffixes()) + ")")
    name, implied = parse_spec(name, BY_NAME)
    given = {k: v for k, v in options.items() if v is not None}
    for k, v in implied.items():
        if k in given and given[k] != v:
            raise ValueError(f"algorithm {name!r}: the suffix sets {k}={v!r} and the "
                             f"keyword {k}={given[k]!r}; give one")
    given = implied | given
    try:
        return BY_NAME[name](**given)
    except TypeError:
        import inspect
        own = set(inspect.signature(BY_NAME[name]).parameters)
        bad = sorted(set(given) - own)
        raise ValueError(f"algorithm {name!r} has no option {bad[0]!r} (its options: "
                         f"{sorted(own) or 'none'})") from None
