"""Export BrainScale flax.nnx networks to NIR (https://neuroir.org).

NIR is continuous time. BrainScale's exact exponential step of a LIF,
``v' = v_rest + (v - v_rest) d + R I (1 - d)`` with ``d = exp(-dt/tau)``, is
the zero-order-hold solution of NIR's ``tau dv/dt = (v_leak - v) + R I``
(input held constant over a step), so ``tau``, ``r = R`` and
``v_leak = v_rest`` are exported as they are, and ``dt`` and the integrator
go into the graph's metadata. Gains that BrainScale applies per step rather
than per unit of time go into ``r`` (see ``docs/nir.md``); ``w_in`` is 1.

Accepted structures (anything else raises ``NIRExportError``):

* ``RecurrentSNN`` (``recurrent_snn(...)``) and ``DMTSNet``: ``layers`` then ``out``;
* ``nnx.Sequential``, or a list/tuple of modules, applied in order;
* one layer: brainscale ``Linear`` / ``SparseLinear``, flax ``nnx.Linear``,
  ``LIF``, ``AlignPost`` / ``AlignPre``, ``Recurrent``, ``LeakyReadout``,
  ``LinearReadout``, and the spiking-CNN parts ``Conv2d``, ``SumPool2d``,
  ``AvgPool2d``, ``Flatten``, ``IF`` (rules in ``nir_conv``); in a sequence
  also ``Delta`` (skipped) and ``Expon`` directly before a ``LIF`` (the pair
  is one ``CubaLIF``); neurons and ``Expon`` on a vector or a feature map
  (fields are arrays of the population's shape);
* a ``NIRNetwork`` rebuilt by ``from_nir``.

``nir`` is imported inside the functions, so ``import brainscale`` does not
need it; without it ``to_nir`` stops at once with a ``MissingDependencyError``
naming the extra to install.
"""
from __future__ import annotations

import math

import numpy as np
from flax import nnx

from brainscale.interop import nir_conv
from brainscale.interop.nir_common import NIRExportError
from brainscale.nn import neurons
from brainscale.models.dmts_net import DMTSNet
from brainscale.models.recurrent_snn import RecurrentSNN
from brainscale.nn.neurons import ALIF, LIF
from brainscale.interop.nir_import import LeakyIntegrator, NIRNetwork
from brainscale.nn.projections import AlignPost, AlignPre, Linear, Recurrent, SparseLinear
from brainscale.nn.readout import LeakyReadout, LinearReadout
from brainscale.nn.surrogate import Surrogate
from brainscale.nn.synapses import Delta, Expon
from transforms.lowering.optional import require

__all__ = ["NIRExportError", "to_nir"]


def _join(path, name):
    return f"{path}.{name}" if path else name


def _where(path):
    return path or "(root)"


def _full(shape, value):
    """One value per neuron, as NIR stores it (``shape`` an int or a tuple)."""
    return np.full(shape, float(value), np.float64)


class _Exporter:
    """Collects NIR nodes and edges while walking a module."""

    def __init__(self, dt):
        import nir
        self.nir = nir
        self.nir_version = getattr(nir, "__version__", "")
        self.dt = None if dt is None else float(dt)
        self.dt_from = "the dt argument" if dt is not None else None
        self.nodes, self.edges = {}, []

    # -- bookkeeping --------------------------------------------------------
    def add(self, key, node, *sources):
        if key in self.nodes:
            raise NIRExportError(f"{key}: two NIR nodes would share this name")
        self.nodes[key] = node
        self.edges.extend((s, key) for s in sources if s is not None)
        return key

    def use_dt(self, path, dt):
        dt = float(dt)
        if self.dt is None:
            self.dt, self.dt_from = dt, _where(path)
        elif not math.isclose(dt, self.dt, rel_tol=1e-12):
            raise NIRExportError(
                f"{_where(path)}: built with dt={dt}, but {self.dt_from} uses dt={self.dt}; "
                "the decay factors are fixed at construction, so one graph needs one dt")

    # -- weight ops -----------------------------------------------------------
    def weight(self, key, w_in_out, bias=None, *sources):
        """``y = x @ W (+ b)`` with ``W`` of shape (in, out) -> NIR weight (out, in)."""
        w = np.asarray(w_in_out).T.copy()
        if bias is None:
            return self.add(key, self.nir.Linear(weight=w), *sources)
        return self.add(key, self.nir.Affine(weight=w, bias=np.asarray(bias).copy()), *sources)

    def comm(self, m, path, src):
        """A weight op; returns the key of its output (``src`` for ``Delta``)."""
        if isinstance(m, Delta):
            return src
        if isinstance(m, Linear):
            return self.weight(path, m.weight(), None if m.b is None else m.b[...], src)
        if isinstance(m, SparseLinear):
            return self.weight(path, m.to_dense(), None, src)
        if isinstance(m, LinearReadout):
            return self.weight(path, m.W[...], None if m.b is None else m.b[...], src)
        if isinstance(m, nnx.Linear):
            b = None if m.bias is None else m.bias[...]
            return self.weight(path, m.kernel[...], b, src)
        if type(m) in nir_conv.EXPORT_WEIGHT:
            return nir_conv.EXPORT_WEIGHT[type(m)](self, m, path, src)
        raise NIRExportError(f"{_where(path)}: {type(m).__name__} is not a weight op NIR can "
                             "express (use Linear, SparseLinear, nnx.Linear or Conv2d)")

    # -- neurons --------------------------------------------------------------
    def lif_tau(self, n, path):
        """The continuous ``tau`` whose exact step equals the module's step."""
        if n.integrator == "exp":
            return n.tau, {}
        if n.dt >= n.tau:
            raise NIRExportError(
                f"{_where(path)}: LIF with integrator='euler' and dt={n.dt} >= tau={n.tau} "
                "has decay 1 - dt/tau <= 0, which no continuous LIF has")
        # exp(-dt/tau') = 1 - dt/tau: NIR's exact step then equals our Euler step.
        return -n.dt / math.log1p(-n.dt / n.tau), {"integrator": "euler", "tau_euler": n.tau}

    def neuron(self, n, syn, path, *sources):
        """A neuron (with an optional ``Expon`` synapse in front) -> one NIR node."""
        nir = self.nir
        syn = None if isinstance(syn, Delta) else syn
        if syn is not None and not isinstance(syn, Expon):
            raise NIRExportError(
                f"{_where(path)}: synapse {type(syn).__name__} has no NIR node; only Expon "
                "(-> CubaLIF / CubaLI) or none (Delta) can be exported")
        if syn is not None:
            self.use_dt(path, syn.dt)
        if type(n) in nir_conv.EXPORT_NEURON:
            if syn is not None:
                raise NIRExportError(f"{_where(path)}: Expon then {type(n).__name__}: NIR has "
                                     "no current-based node for it (only CubaLIF, CubaLI)")
            return nir_conv.EXPORT_NEURON[type(n)](self, n, path, *sources)
        if isinstance(n, LIF):
            self.check_lif(n, path)
            self.use_dt(path, n.dt)
            tau, meta = self.lif_tau(n, path)
            k = dict(v_leak=_full(n.shape, n.v_rest), v_threshold=_full(n.shape, n.v_th),
                     v_reset=_full(n.shape, n.v_reset))
            if syn is None:
                node = nir.LIF(tau=_full(n.shape, tau), r=_full(n.shape, n.R), metadata=meta, **k)
            else:   # g' = g e + I feeds v: NIR's ZOH current is (1 - e) g, so r = R / (1 - e)
                node = nir.CubaLIF(tau_syn=_full(n.shape, syn.tau), tau_mem=_full(n.shape, tau),
                                   r=_full(n.shape, n.R / (1.0 - syn.decay)),
                                   w_in=_full(n.shape, 1.0), metadata=meta, **k)
            return self.add(path, node, *sources)
        if isinstance(n, LeakyIntegrator):
            self.use_dt(path, n.dt)
            k = dict(r=_full(n.shape, n.r if syn is None else n.r / (1.0 - syn.decay)),
                     v_leak=_full(n.shape, n.v_leak))
            if syn is None:
                return self.add(path, nir.LI(tau=_full(n.shape, n.tau), **k), *sources)
            return self.add(path, nir.CubaLI(tau_syn=_full(n.shape, syn.tau),
                                             tau_mem=_full(n.shape, n.tau),
                                             w_in=_full(n.shape, 1.0), **k), *sources)
        name = type(n).__name__
        if isinstance(n, ALIF):
            raise NIRExportError(
                f"{_where(path)}: ALIF has spike-frequency adaptation (threshold v_th + beta a); "
                "NIR has no adaptive neuron node, only LIF / CubaLIF with a fixed threshold")
        raise NIRExportError(f"{_where(path)}: neuron type {name} has no NIR node "
                             "(exportable: LIF and IF with reset='hard', LeakyReadout)")

    def check_lif(self, n, path):
        where = _where(path)
        if n.reset != "hard":
            raise NIRExportError(
                f"{where}: LIF with reset='soft' (reset by subtraction): NIR's LIF resets to "
                "v_reset; use reset='hard' to export")
        if n.tau_ref > 0:
            raise NIRExportError(
                f"{where}: LIF with a refractory period (tau_ref={n.tau_ref}): NIR's LIF has "
                "no refractory period; use tau_ref=0 to export")
        if not isinstance(n.spike_fn, Surrogate):
            raise NIRExportError(
                f"{where}: spike_fn {type(n.spike_fn).__name__} is not a brainscale Surrogate; "
                "NIR's LIF fires with the Heaviside step v > v_threshold")
        if not n.v_th > n.v_reset:
            raise NIRExportError(f"{where}: LIF needs v_th > v_reset (got {n.v_th}, {n.v_reset})")

    # -- layers ---------------------------------------------------------------
    def layer(self, m, path, src):
        """One module applied to the signal from ``src``; returns its output key."""
        if isinstance(m, (Linear, SparseLinear, LinearReadout, nnx.Linear, Delta)) \
                or type(m) in nir_conv.EXPORT_WEIGHT:
            return self.comm(m, path, src)
        if type(m) in nir_conv.EXPORT_LAYER:
            return nir_conv.EXPORT_LAYER[type(m)](self, m, path, src)
        if isinstance(m, (AlignPost, AlignPre)):
            kind = type(m).__name__
            if m.out != "cuba":
                raise NIRExportError(
                    f"{_where(path)}: {kind} with out='coba' (conductance times (E - v)): NIR "
                    "neurons take a current; use out='cuba' to export")
            if isinstance(m, AlignPre) and not isinstance(m.syn, Delta):
                raise NIRExportError(
                    f"{_where(path)}: AlignPre with presynaptic {type(m.syn).__name__}: NIR has "
                    "no presynaptic synapse node")
            src = self.comm(m.comm, _join(path, "comm"), src)
            syn = m.syn if isinstance(m, AlignPost) else None
            return self.neuron(m.post, syn, _join(path, "post"), src)
        if isinstance(m, Recurrent):
            return self.recurrent(m, path, src)
        if isinstance(m, LeakyReadout):
            w = self.weight(_join(path, "W"), m.W[...], None if m.b is None else m.b[...], src)
            self.use_dt(path, m.dt)     # r' = r d + y: the ZOH gain r (1 - d) must be 1
            li = self.nir.LI(tau=_full(m.n_out, m.tau), r=_full(m.n_out, 1.0 / (1.0 - m.decay)),
                             v_leak=_full(m.n_out, 0.0))
            return self.add(path or "out", li, w)
        if isinstance(m, Expon):
            raise NIRExportError(
                f"{_where(path)}: Expon must be followed directly by a LIF to export "
                "(the pair is one CubaLIF); NIR has no stand-alone synapse node")
        if isinstance(m, LeakyIntegrator) or type(m).__module__ == neurons.__name__ \
                or type(m) in nir_conv.EXPORT_NEURON:
            return self.neuron(m, None, path or type(m).__name__.lower(), src)
        if isinstance(m, (nnx.Sequential, list, tuple, nnx.List)):
            layers = m.layers if isinstance(m, nnx.Sequential) else m
            prefix = _join(path, "layers") if isinstance(m, nnx.Sequential) else path
            return self.sequence(list(layers), [f"{prefix}[{i}]" for i in range(len(layers))],
                                 src)
        if isinstance(m, (RecurrentSNN, DMTSNet)):         # the same layout
            n = len(m.layers)
            return self.sequence(list(m.layers) + [m.out],
                                 [_join(path, f"layers[{i}]") for i in range(n)]
                                 + [_join(path, "out")], src)
        if callable(m) and not isinstance(m, nnx.Module):
            what = getattr(m, "__name__", type(m).__name__)
            raise NIRExportError(f"{_where(path)}: function {what} has no NIR node")
        raise NIRExportError(
            f"{_where(path)}: unsupported module type {type(m).__name__}; to_nir reads "
            "RecurrentSNN, nnx.Sequential, lists, and the layer types listed in "
            "brainscale.interop.nir_export")

    def sequence(self, mods, paths, src):
        i = 0
        while i < len(mods):
            m, path = mods[i], paths[i]
            if isinstance(m, Expon):
                nxt = mods[i + 1] if i + 1 < len(mods) else None
                if not isinstance(nxt, (LIF, LeakyIntegrator)):
                    raise NIRExportError(
                        f"{_where(path)}: Expon must be followed directly by a LIF to export "
                        "(the pair is one CubaLIF); NIR has no stand-alone synapse node")
                src = self.neuron(nxt, m, paths[i + 1], src)
                i += 2
                continue
            src = self.layer(m, path, src)
            i += 1
        return src

    def recurrent(self, m, path, src):
        """``I = [x, spk] @ W`` -> input op and recurrent op both into the neuron,
        with the back edge neuron -> recurrent op (read one step late)."""
        w, b = m.linear.weight(), None if m.linear.b is None else m.linear.b[...]
        w_in = self.weight(_join(path, "w_in"), w[:m.n_in], b, src)
        key = _join(path, "neuron")
        w_rec = self.weight(_join(path, "w_rec"), w[m.n_in:], None)
        self.neuron(m.neuron, m.syn, key, w_in, w_rec)
        self.edges.append((key, w_rec))
        return key

    def network(self, net):
        """Re-export a ``NIRNetwork`` with its own keys and edges."""
        nir, shapes = self.nir, dict(net.shapes)
        for key, kind, preds in net.plan:
            if kind == "input":
                self.add(key, nir.Input(input_type=np.array(shapes[key])))
            elif kind == "output":
                self.add(key, nir.Output(output_type=np.array(shapes[key])))
            else:
                m = net.nodes[key]
                if isinstance(m, AlignPost):       # CubaLIF / CubaLI as rebuilt
                    self.neuron(m.post, m.syn, key)
                else:
                    self.layer(m, key, None)
            self.edges.extend((s, key) for s, _ in preds)


def to_nir(module, *, dt=None, input_shape=None):
    """Export ``module`` (see the accepted structures above) to a ``nir.NIRGraph``.

    ``metadata`` holds ``dt``, ``integrator='exp'`` and ``producer='brainscale'``.
    ``input_shape`` is one sample's input shape, needed when the first part
    does not fix it (a ``Conv2d`` or a pooling layer: ``(C, H, W)``); NIR
    works out the other shapes from it. Raises ``NIRExportError`` naming the
    module path and the reason when a part has no exact NIR form, or when
    the parts' shapes do not fit together.
    """
    require("nir", what="NIR export (to_nir)")
    ex = _Exporter(dt)
    nir = ex.nir
    if isinstance(module, NIRNetwork):
        ex.network(module)
    else:
        last = ex.layer(module, "", "input")
        first = next((k for s, k in ex.edges if s == "input"), None)
        if first is None:
            raise NIRExportError(f"{type(module).__name__}: nothing to export (an identity)")
        in_type = _input_type(ex.nodes[first], first, input_shape)
        ex.nodes = {"input": nir.Input(input_type=in_type), **ex.nodes}
        out_type = ex.nodes[last].output_type["output"]     # None: NIR infers it
        ex.add("output", nir.Output(output_type=None if out_type is None
                                    else np.array(out_type)), last)
    meta = {"integrator": "exp", "producer": "brainscale"}
    if ex.dt is not None:
        meta = {"dt": ex.dt, **meta}
    try:
        return nir.NIRGraph(nodes=ex.nodes, edges=ex.edges, metadata=meta)
    except (ValueError, AssertionError) as e:   # NIR's shape inference names the nodes
        raise NIRExportError(f"the parts' shapes do not fit together: {e}") from None


def _input_type(node, key, input_shape):
    """The Input node's shape: the first node's, or ``input_shape``."""
    own = node.input_type.get("input") if node.input_type else None
    given = None if input_shape is None else np.array([int(n) for n in input_shape])
    if own is None and given is None:
        raise NIRExportError(f"{key}: {type(node).__name__} does not fix its input's shape; "
                             "pass to_nir(..., input_shape=(C, H, W)) for one sample")
    if own is not None and given is not None and tuple(own) != tuple(given):
        raise NIRExportError(f"{key}: takes input shape {tuple(int(n) for n in own)}, but "
                             f"input_shape={tuple(given)}")
    return np.array(own) if given is None else given
