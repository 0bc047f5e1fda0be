"""A training run over several processes, on JAX's distributed runtime.

Every process runs the same ``fit``; ``jax.distributed.initialize`` joins
them, and the mesh spans ``jax.devices()``, the devices of all of them. Each
process makes the whole batch of a step (a task's batch is a function of
``(seed, step)``) and places only its own devices' rows
(``brainscale.sharding``); XLA reduces the gradients across processes. So a
run gives the parameters of a one-process run up to summation order, and
may be resumed with another number of processes.

Process 0 alone writes the run folder. Whatever only it does (open the
folder, read a checkpoint) is followed by an agreement (``on_leader``): if it
failed, every process raises, so none waits for a partner that has gone.
The rest is collective and happens in the same order everywhere: evaluation
(outputs gathered), checkpoints (the state gathered to process 0, which
writes it), the per-step decision to stop on a signal (``max_over_processes``).

A process that fails on its own leaves at once (``run_as_worker``): a plain
exit would wait in JAX's shutdown barrier for partners that wait for it in
their next collective. The launcher (``brainscale.train.launcher``), or on
several hosts JAX's heartbeat, then stops the others.
"""
from __future__ import annotations

import os
import socket
import sys
import time
import traceback

import numpy as np

__all__ = ["initialize", "parse_coordinator", "process_count", "is_leader", "process_mesh",
           "check_same_config", "on_leader", "from_leader", "to_host", "max_over_processes", "run_as_worker",
           "LeaderError", "INIT_TIMEOUT_S"]

INIT_TIMEOUT_S = 300        # how long a process waits for all the others to join
_TEXT_BYTES = 4096          # an error message shared by on_leader (longer ones are cut)


class LeaderError(ValueError):
    """Process 0 failed at a step only it takes; raised on the other processes."""


def parse_coordinator(text: str, flag: str = "--coordinator") -> tuple[str, int]:
    """``(host, port)`` from ``HOST:PORT`` (``[IPv6]:PORT`` too)."""
    host, sep, port = str(text).rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{flag} {text!r}: expected HOST:PORT (e.g. 10.0.0.1:12345), the "
                         "address of process 0 and a free port on it")
    return host, int(port)


def _wait_for(host: str, port: int, timeout_s: float, flag: str) -> None:
    """Until process 0's coordinator accepts connections. JAX aborts the
    process (a C++ fatal error) when it cannot reach it; this says why first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host, port), timeout=2.0).close()
            return
        except OSError as e:
            if time.monotonic() > deadline:
                raise ValueError(f"{flag} {host}:{port}: no coordinator answered within "
                                 f"{timeout_s:g} s ({e.strerror or e}); start process 0 there, "
                                 "and open the port in its firewall") from None
            time.sleep(0.2)


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, timeout_s: float = INIT_TIMEOUT_S) -> None:
    """Join a run of ``num_processes`` processes whose process 0 listens at
    ``coordinator`` (``HOST:PORT``). ``coordinator=None``: JAX finds all three
    in the environment (SLURM, Open MPI, Cloud TPU, Kubernetes). Call before
    any other JAX work in the process. On CPU the processes exchange arrays
    with gloo over TCP."""
    import jax

    if jax.config.jax_cpu_collectives_implementation is None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # JAX's preemption service would catch SIGTERM and keep running; here SIGTERM
    # means what it means in a one-process run (checkpoint and stop, see fit)
    jax.config.update("jax_enable_preemption_service", False)
    if coordinator is not None:
        host, port = parse_coordinator(coordinator)
        if process_id != 0:
            _wait_for(host, port, timeout_s, "--coordinator")
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id,
                                   initialization_timeout=int(timeout_s))
    except (RuntimeError, ValueError, TypeError) as e:
        where = coordinator or "the cluster environment"
        raise ValueError(f"could not join the distributed run ({where}): {e}") from None


def process_count() -> int:
    import jax

    return jax.process_count()


def is_leader() -> bool:
    """Whether this is process 0, the one that writes the run folder."""
    import jax

    return jax.process_index() == 0


def process_mesh(cfg):
    """The batch mesh over every device of every process, for config ``cfg``;
    a batch size that does not split evenly is an error naming the key."""
    import jax

    from brainscale.sharding import batch_mesh

    devices = jax.devices()
    n, p = len(devices), jax.process_count()
    where = f"{n} devices of the {p} processes ({devices[0].platform})"
    if cfg.devices is not None and cfg.devices != n:
        raise ValueError(f"config key 'devices' ({cfg.devices}) must be null or {n}: with "
                         f"several processes the batch is split over all {where}")
    for key in ("batch_size", "eval_batch_size"):
        value = getattr(cfg, key)
        if value is not None and value % n:
            raise ValueError(f"config key {key!r} ({value}) must be a multiple of the {where}")
    return batch_mesh(devices)


def _gather_rows(row: np.ndarray) -> np.ndarray:
    """``row`` of every process, stacked in process order."""
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(row, tiled=False))


def _text_row(text: str) -> np.ndarray:
    data = text.encode("utf-8", "replace")[:_TEXT_BYTES]
    row = np.zeros(_TEXT_BYTES, np.uint8)
    row[:len(data)] = np.frombuffer(data, np.uint8)
    return row


def on_leader(fn):
    """``fn()`` on process 0 only, its value returned there (``None``
    elsewhere). If it raises, every process raises: process 0 its own
    exception, the others a ``LeaderError`` quoting it."""
    if process_count() == 1:
        return fn()
    value, error, text = None, None, ""
    if is_leader():
        try:
            value = fn()
        except Exception as e:                  # noqa: BLE001 - shared, then re-raised
            error, text = e, str(e) or type(e).__name__
    said = bytes(_gather_rows(_text_row(text))[0]).rstrip(b"\0").decode("utf-8", "replace")
    if error is not None:
        raise error
    if said:
        raise LeaderError(f"process 0: {said}")
    return value


def check_same_config(cfg) -> None:
    """Every process must train the same config (the same collectives in the
    same order); a process with another one is named in an error that every
    process raises. ``out_dir`` may differ: only process 0 writes."""
    import hashlib
    import json

    if process_count() == 1:
        return
    text = json.dumps({**cfg.to_dict(), "out_dir": None}, sort_keys=True)
    digest = hashlib.sha256(text.encode()).digest()
    rows = _gather_rows(np.frombuffer(digest, np.uint8))
    other = [i for i in range(len(rows)) if not np.array_equal(rows[i], rows[0])]
    if other:
        raise ValueError(f"process(es) {other} train another config than process 0: give every "
                         "process the same --config, flags and --set")


def from_leader(tree):
    """Process 0's values of ``tree`` in every process, bit for bit (the
    others pass a tree of the same shapes and dtypes: a template)."""
    import jax
    from jax.experimental import multihost_utils

    if process_count() == 1:
        return tree
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    hosts = [np.asarray(a, order="C") for a in leaves]      # 0-d stays 0-d
    # as bytes: the broadcast is a sum with zeros, exact on integers (not on -0.0)
    sent = multihost_utils.broadcast_one_to_all([h.reshape(-1).view(np.uint8) for h in hosts])
    return treedef.unflatten([np.asarray(s).view(h.dtype).reshape(h.shape)
                              for s, h in zip(sent, hosts)])


def to_host(tree):
    """Every leaf as one numpy array holding the whole value, in every
    process; the parts held by other processes' devices are gathered (a
    collective: every process calls it at the same point)."""
    import jax
    from jax.experimental import multihost_utils

    def one(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            if a.is_fully_replicated:
                return np.asarray(a.addressable_data(0))
            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return np.asarray(a)

    return jax.tree.map(one, tree)


def max_over_processes(value: int) -> int:
    """The largest of every process's ``value`` (e.g. a signal number, 0 for
    none), so that all take the same branch."""
    if process_count() == 1:
        return int(value)
    return int(_gather_rows(np.asarray([value], np.int32)).max())


def run_as_worker(fn) -> int:
    """``fn()``'s exit code, for a process of a distributed run. A failure
    (an exception or a non-zero code other than a signal's) ends the process
    at once with ``os._exit`` after the traceback or message is flushed: the
    partners are stopped by the launcher or JAX's heartbeat, and this one
    must not wait for them in the shutdown barrier."""
    alone = True                    # the exit is this process's own, not an agreed stop
    try:
        code = fn()
        alone = code <= 128         # > 128: a signal every process agreed to stop on
    except KeyboardInterrupt:       # a second Ctrl-C: this process stops where it is
        code = 130
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:                       # noqa: BLE001 - reported, then exit
        traceback.print_exc()
        code = 1
    if alone and code:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
