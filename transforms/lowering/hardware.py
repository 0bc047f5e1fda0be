"""Hardware profiles: what one neuromorphic chip offers, as data.

A profile is a JSON object (the built-in ones are in ``transforms/lowering/profiles``;
a user's own is any file of the same form). Every figure comes with its
source in ``sources``, and the report repeats them, so a reader can tell a
datasheet number from an assumption or a fit.

Fields: ``mesh`` [rows, cols] of routers, ``cores_per_router``; per core
``max_neurons``, ``max_axons_in`` (distinct presynaptic neurons, times
``axons_per_input``), ``max_axons_out`` (sum over its neurons of the distinct
destination cores; null: no limit), ``synapse_memory_bytes`` (null: a
crossbar with a slot for every axon-neuron pair); ``weight_bits`` [min, max]
and ``default_weight_bits``; ``trace_bits`` for the learning-state check;
``energy_pj`` (null where nothing is published): finite non-negative
picojoules. Every field is typed and range-checked on load, errors naming
the file and the field; the mesh is bounded (at most ``MAX_MESH_SIDE``
routers a side, ``MAX_CORES`` cores in all) so a typo cannot make placement
allocate gigabytes.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os

from transforms.errors import CompileError

PROFILE_DIR = os.path.join(os.path.dirname(__file__), "profiles")
MAX_MESH_SIDE = 256
MAX_CORES = 2 ** 18
ENERGY_KEYS = ("synaptic_op", "neuron_update_inactive", "neuron_update_active",
               "spike_within_tile", "hop_east_west", "hop_north_south", "learning_update")


class ProfileError(CompileError):
    """A hardware profile that is missing a field or holds a bad value."""


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    title: str
    mesh: tuple[int, int]
    cores_per_router: int
    max_neurons: int
    max_axons_in: int
    max_axons_out: int | None
    synapse_memory_bytes: int | None
    weight_bits: tuple[int, int]
    default_weight_bits: int
    axons_per_input: int = 1
    trace_bits: int = 8
    energy_pj: dict | None = None
    sources: dict = dataclasses.field(default_factory=dict)

    @property
    def n_cores(self) -> int:
        return self.mesh[0] * self.mesh[1] * self.cores_per_router

    def check_weight_bits(self, bits: int) -> int:
        lo, hi = self.weight_bits
        if not lo <= int(bits) <= hi:
            raise ProfileError(f"{self.name}: weights of {bits} bits are not supported; "
                               f"the profile allows {lo} to {hi} bits")
        return int(bits)

    def replace(self, **kw) -> "Profile":
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_INT_FIELDS = ("cores_per_router", "max_neurons", "max_axons_in", "default_weight_bits",
               "axons_per_input", "trace_bits")
_OPTIONAL_INT = ("max_axons_out", "synapse_memory_bytes")


def profile_from_dict(d: dict, where: str = "profile") -> Profile:
    """Validate a profile dict; errors name the field and the file."""
    if not isinstance(d, dict):
        raise ProfileError(f"{where}: a profile is a JSON object")
    known = {f.name for f in dataclasses.fields(Profile)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ProfileError(f"{where}: unknown fields {unknown}; known: {sorted(known)}")
    for key in ("name", "mesh", "max_neurons", "max_axons_in", "weight_bits"):
        if key not in d:
            raise ProfileError(f"{where}: missing field {key!r}")
    d = dict(d)
    d.setdefault("title", d["name"])
    d.setdefault("cores_per_router", 1)
    d.setdefault("max_axons_out", None)
    d.setdefault("synapse_memory_bytes", None)
    d.setdefault("axons_per_input", 1)
    d.setdefault("trace_bits", 8)
    d.setdefault("default_weight_bits", d["weight_bits"][1] if isinstance(
        d["weight_bits"], list) and len(d["weight_bits"]) == 2 else None)
    for key in ("name", "title"):
        if not isinstance(d[key], str) or not d[key]:
            raise ProfileError(f"{where}: {key!r} must be a non-empty string, got {d[key]!r}")
    mesh = d["mesh"]
    if not (isinstance(mesh, (list, tuple)) and len(mesh) == 2
            and all(isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in mesh)):
        raise ProfileError(f"{where}: 'mesh' must be [rows, cols] of positive integers, "
                           f"got {mesh!r}")
    if max(mesh) > MAX_MESH_SIDE:
        raise ProfileError(f"{where}: 'mesh' {list(mesh)} exceeds {MAX_MESH_SIDE} routers a "
                           "side (the bound on one chip's mesh)")
    wb = d["weight_bits"]
    if not (isinstance(wb, (list, tuple)) and len(wb) == 2
            and all(isinstance(b, int) and not isinstance(b, bool) and 1 <= b <= 32 for b in wb)
            and wb[0] <= wb[1]):
        raise ProfileError(f"{where}: 'weight_bits' must be [min, max] bits, 1 to 32, "
                           f"got {wb!r}")
    for key in _INT_FIELDS + _OPTIONAL_INT:
        v = d.get(key)
        if v is None and key in _OPTIONAL_INT:
            continue
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ProfileError(f"{where}: {key!r} must be a positive integer, got {v!r}")
    cores = mesh[0] * mesh[1] * d["cores_per_router"]
    if cores > MAX_CORES:
        raise ProfileError(f"{where}: mesh {list(mesh)} x cores_per_router "
                           f"{d['cores_per_router']} is {cores} cores, over the bound of "
                           f"{MAX_CORES}")
    energy = d.get("energy_pj")
    if energy is not None:
        if not isinstance(energy, dict):
            raise ProfileError(f"{where}: 'energy_pj' must be an object {{key: picojoules}} or "
                               f"null, got {type(energy).__name__} {energy!r}")
        bad = sorted(k for k in energy if k not in ENERGY_KEYS)
        if bad:
            raise ProfileError(f"{where}: unknown energy_pj keys {bad}; known: "
                               f"{list(ENERGY_KEYS)}")
        for k, v in energy.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) \
                    or not math.isfinite(v) or v < 0:
                raise ProfileError(f"{where}: energy_pj.{k} must be a finite non-negative "
                                   f"number of picojoules, got {v!r}")
    sources = d.get("sources", {})
    if not isinstance(sources, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in sources.items()):
        raise ProfileError(f"{where}: 'sources' must be an object {{field: citation}} of "
                           f"strings, got {type(sources).__name__}")
    p = Profile(**{**d, "mesh": tuple(mesh), "weight_bits": tuple(wb)})
    p.check_weight_bits(p.default_weight_bits)
    return p


def _refuse_constant(path, name):
    raise ProfileError(f"{path}: {name} is not a number a profile may hold")


def builtin_profiles() -> list[str]:
    return sorted(f[:-5] for f in os.listdir(PROFILE_DIR) if f.endswith(".json"))


def load_profile(name_or_path: str) -> Profile:
    """A built-in profile by name (``loihi1``, ``loihi2``, ``tianjic``,
    ``truenorth``) or a user's JSON file."""
    path = name_or_path
    if not os.path.exists(path):
        path = os.path.join(PROFILE_DIR, f"{name_or_path}.json")
        if not os.path.exists(path):
            raise ProfileError(f"no hardware profile {name_or_path!r}: not a file and not "
                               f"one of {builtin_profiles()}")
    if not os.path.isfile(path):
        raise ProfileError(f"{path}: not a file")
    try:
        with open(path, "rb") as f:
            d = json.loads(f.read().decode("utf-8"),
                           parse_constant=lambda c: _refuse_constant(path, c))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProfileError(f"{path}: not valid JSON: {e}") from None
    except OSError as e:
        raise ProfileError(f"{path}: unreadable ({e.strerror})") from None
    return profile_from_dict(d, where=path)
