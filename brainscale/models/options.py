"""Typed option schemas for the ready networks.

Each network declares its JSON options as a frozen dataclass whose fields
carry a type, a default and one line of meaning (``option``). ``resolve``
checks a config's ``model`` object against it and returns every value the
network is built with (so a run folder records them all); ``describe``
prints the table that ``brainscale train --show-options`` shows.

    @dataclasses.dataclass(frozen=True)
    class MyNetOptions:
        hidden: list[int] = option([128], "hidden layer sizes")
        tau: float = option(20.0, "membrane time constant (ms)")

    resolve(MyNetOptions, {"hidden": [64]})   # {'hidden': [64], 'tau': 20.0}
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import types
import typing
from typing import Any, Literal

__all__ = ["option", "resolve", "describe", "fields"]


def option(default, help: str):
    """A dataclass field with a default (copied per instance) and its meaning."""
    return dataclasses.field(default_factory=lambda: copy.deepcopy(default),
                             metadata={"help": help})


def fields(schema) -> list[tuple[str, Any, Any, str]]:
    """``(name, type, default, help)`` for every option of ``schema``."""
    hints = typing.get_type_hints(schema)
    out = []
    for f in dataclasses.fields(schema):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING \
            else f.default
        out.append((f.name, hints[f.name], default, f.metadata.get("help", "")))
    return out


def type_name(tp) -> str:
    """``list[int]``, ``float``, ``'lif' | 'alif'``, ``dict | null``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join("null" if a is type(None) else type_name(a) for a in args)
    if origin is list:
        return f"list[{type_name(args[0])}]" if args else "list"
    return getattr(tp, "__name__", str(tp))


def _convert(value, tp, key: str):
    """``value`` as type ``tp`` (an int where a float is wanted becomes a
    float, a tuple where a list is wanted a list), or a ValueError naming the
    key, the type wanted and the value given."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    bad = ValueError(f"config key {key!r} must be {type_name(tp)}, got {value!r}")
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key)
            except ValueError:
                pass
        raise bad
    if origin is Literal:
        if value in args:
            return value
        raise bad
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise bad
        return [_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)] if args \
            else list(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise bad
    if tp is str or tp is dict:
        if isinstance(value, tp):
            return copy.deepcopy(value)
        raise bad
    raise TypeError(f"option {key!r}: unsupported type {tp!r} in a schema")


def resolve(schema, given: dict | None, where: str = "model",
            defaults: dict | None = None) -> dict:
    """Every option of ``schema``: its defaults, replaced by ``defaults``
    (e.g. a task's own), then by ``given``.

    An unknown key is an error that lists the valid ones with their defaults;
    a value of the wrong type is an error naming the key and the type.
    """
    defaults = dict(defaults or {})
    given = {**defaults, **dict(given or {})}
    table = [(n, tp, defaults.get(n, d), h) for n, tp, d, h in fields(schema)]
    known = {name for name, *_ in table}
    unknown = sorted(set(given) - known)
    if unknown:
        valid = ", ".join(f"{n}={d!r}" for n, _, d, _ in table)
        raise ValueError(f"unknown {where} option(s) {unknown}; valid options (defaults): "
                         f"{valid}")
    return {name: _convert(given[name], tp, f"{where}.{name}") if name in given else default
            for name, tp, default, _ in table}


def as_json(value) -> str:
    """A default as ``--set`` takes it: JSON where it can be, else repr."""
    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)


def describe(schema, defaults: dict | None = None, prefix: str = "model.") -> str:
    """A plain-text table of the options: name, type, default, meaning.
    ``defaults`` (e.g. a task's own) replace the schema's defaults."""
    defaults = defaults or {}
    rows = [(prefix + name, type_name(tp), as_json(defaults.get(name, default)), text)
            for name, tp, default, text in fields(schema)]
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"  {a:<{w[0]}}  {b:<{w[1]}}  {c:<{w[2]}}  {d}" for a, b, c, d in rows)
