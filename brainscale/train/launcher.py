"""``brainscale train --processes N``: N processes on this machine that
train one run together through JAX's distributed runtime.

Every worker runs ``python -m brainscale.cli train`` on the config this
command resolved (written to a temporary file, so all train the very same
config), joined by ``--coordinator 127.0.0.1:PORT --num-processes N
--process-id I`` on a free port; process 0 hosts JAX's coordinator, bound to
this machine only. Process 0's output is this command's output; the others
write nothing to stdout and their stderr is kept, to be shown if one fails.

The first worker to fail ends the launch: the others are killed (they would
wait for it in their next collective), its message is shown and its exit
code returned. SIGINT and SIGTERM sent to this command go to every worker
once (the workers have their own sessions, so a terminal's Ctrl-C reaches
them only this way): they stop after the same step, checkpoint, and exit
with 128 + the signal's number, which this command returns.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

__all__ = ["launch", "free_port"]

_TAIL_LINES = 20


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the system's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _tail(path: str) -> list[str]:
    """The last lines of a worker's stderr, without native stack frames."""
    try:
        with open(path, errors="replace") as f:
            lines = [ln.rstrip() for ln in f]
    except OSError:
        return []
    keep = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("@ 0x")
            and not ln.startswith("*** Check failure")]
    return keep[-_TAIL_LINES:]


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def launch(config: dict, n: int, flags=(), python: str = sys.executable,
           err=sys.stderr) -> int:
    """Train ``config`` (a ``TrainConfig`` as a dict) with ``n`` local
    worker processes; ``flags``: further ``brainscale train`` flags for every
    worker (``--resume``, ``--no-plots``...). Returns the exit code: 0, a
    failed worker's code (128 + n for one killed by signal n), or 128 + the
    signal that stopped the run."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "JAX_COORDINATOR_BIND_ADDRESS": address}
    forwarded: list[int] = []
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="brainscale-launch-") as tmp:
        cfg_path = os.path.join(tmp, "config.json")
        with open(cfg_path, "w") as f:
            json.dump(config, f)
        errs = [os.path.join(tmp, f"stderr-{i}.txt") for i in range(n)]

        def forward(signum, frame):
            forwarded.append(signum)
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signum)

        main = threading.current_thread() is threading.main_thread()
        old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)} \
            if main else {}
        try:
            for i in range(n):
                cmd = [python, "-m", "brainscale.cli", "train", "--config", cfg_path, *flags,
                       "--coordinator", address, "--num-processes", str(n),
                       "--process-id", str(i)]
                with open(errs[i], "w") as ef:
                    procs.append(subprocess.Popen(
                        cmd, env=env, start_new_session=True,
                        stdout=None if i == 0 else subprocess.DEVNULL,
                        stderr=None if i == 0 else ef))
            return _wait(procs, errs, forwarded, err)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            for s, h in old.items():
                signal.signal(s, h)


def _wait(procs, errs, forwarded, err) -> int:
    """Until every worker has ended, or the first has failed (then the
    others are killed)."""
    n = len(procs)
    while True:
        codes = [p.poll() for p in procs]
        stopped = {128 + s for s in forwarded} | {-s for s in forwarded}
        for i, code in enumerate(codes):
            if code is None or code == 0 or code in stopped:
                continue
            for p in procs:
                if p.poll() is None:
                    p.kill()
            for p in procs:
                p.wait()
            if i != 0:
                lines = _tail(errs[i])
                print(f"process {i} of {n} ({_how(code)}) said:" if lines else
                      f"process {i} of {n} ({_how(code)}) wrote nothing to stderr", file=err)
                for line in lines:
                    print(f"  {line}", file=err)
            print(f"error: process {i} of {n} failed ({_how(code)}); the other processes "
                  "were stopped", file=err)
            err.flush()
            return code if code > 0 else 128 - code
        if all(c is not None for c in codes):
            done = [c for c in codes if c]
            return (done[0] if done[0] > 0 else 128 - done[0]) if done else 0
        time.sleep(0.05)
