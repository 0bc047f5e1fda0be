"""The GPU benchmarks in one command, merged into one JSON file.

Runs three benchmark scripts, each as it is and in its own process group:

- ``vs_braintrace``: lif-delta against braintrace and the hand-written floor
  at 100-200-200-10 (B 32, T 100 and 1000) and 300-400-400-20 (B 16, T 1000);
- ``memory_time``: time and XLA memory of BPTT / D-RTRL / ES-D-RTRL vs T;
- ``scale``: ES-D-RTRL online on 10^6 sparse LIF neurons, fan-in 100.

A machine with a GPU may be lent for a few minutes only, so the whole run
keeps to ``--budget`` seconds (default 450): each run has a share (``cap``)
and may also use what earlier runs left unused, but never the shares of the
runs after it; a run over its time is killed with its children. A run that
fails, times out or is not reached is recorded under ``errors`` with the
tail of its output and never stops the others. Outputs are read back
generically (gpu_suite_collect.py), including the partial CSVs of a killed
run, so report fields may change without breaking the suite.

    bash benchmarks/gpu_suite.sh --out bench_out/gpu      # a GPU machine: under 8 minutes
    bash benchmarks/gpu_suite.sh --tiny --out /tmp/tiny   # CPU-sized smoke run (CI)

Writes ``OUT/gpu_suite.json`` (rewritten after every run)::

    {"device", "device_kind", "platform", "backend", "jax", "probe", "started",
     "finished", "tiny", "budget_s", "command", "git", "env",
     "peer": {"braintrace", "skipped"},
     "sections": {NAME: {"status": ok|partial|failed|skipped, "reason"?,
                         "rows": [...], "runs": [{"label", "command", "out",
                         "status", "returncode", "timeout_s", "seconds",
                         "files": {file name: rows | object | text | null}}]}},
     "seconds": {"probe", NAME..., "total"},
     "errors": {NAME or "probe": [{"run", "status", "returncode", "seconds",
                                   "stderr_tail", "stdout_tail"}]}}

plus each run's own files under ``OUT/<run>/`` and its output under
``OUT/logs/``. Exit status 1 when every section that ran failed, 2 when the
JSON could not be written, else 0.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from common import Progress  # noqa: E402
from gpu_suite_collect import read_folder, rows_of, strict, tail  # noqa: E402

SECTIONS = ("vs_braintrace", "memory_time", "scale")
PLATFORMS = {"cpu": "cpu", "gpu": "cuda"}        # --device -> JAX_PLATFORMS
PROBE = ("import json, jax; d = jax.devices(); print(json.dumps({'jax': jax.__version__, "
         "'backend': jax.default_backend(), 'device': str(d[0]), "
         "'device_kind': d[0].device_kind, 'device_count': len(d)}))")


@dataclass
class Run:
    """One invocation of ``benchmarks/<section>.py``."""
    section: str
    name: str                       # its folder under OUT and its log files' name
    args: list[str]
    cap: float                      # seconds reserved for it within the budget
    primary: str | None = None      # the CSV whose rows are the section's rows
    tags: dict = field(default_factory=dict)


def vs_run(size, B, Ts, cap, extra):
    label = f"{size[0]}-{size[1]}-{size[1]}-{size[2]}"
    return Run("vs_braintrace", f"vs_braintrace_{label}_B{B}",
               ["--size", *map(str, size), "--B", str(B), "--T", *map(str, Ts), "--seeds", "0",
                *extra], cap, "timing.csv", {"size": label, "B": B})


def plan(device: str, tiny: bool) -> list[Run]:
    """The runs in the order they execute: the short ones first, so that
    the time they leave goes to the vs_braintrace runs, whose length is
    hardest to predict (each configuration starts its own process)."""
    if tiny:
        vs_extra = ["--reps", "1", "--grad-T", "10", "--libs", "brainscale", "braintrace", "hand",
                    "--algos", "es_d_rtrl", "--timeout", "120"]
        return [
            Run("scale", "scale", ["--neurons", "256", "--fan-in", "4", "--inputs", "8",
                                   "--fan-in-input", "2", "--outputs", "2", "--steps", "3",
                                   "--bptt-T", "4"], 150),
            Run("memory_time", "memory_time", ["--algorithms", "bptt,es_d_rtrl", "--T", "8,16",
                                               "--H", "8", "--batch", "2", "--reps", "1",
                                               "--jobs", "2", "--timeout", "120",
                                               "--device", device], 150, "memory_time.csv"),
            vs_run((6, 8, 3), 2, (10,), 240, vs_extra),
        ]
    vs_extra = ["--reps", "2", "--timeout", "120"]
    return [
        Run("scale", "scale", ["--neurons", "1000000", "--fan-in", "100", "--steps", "20",
                               "--bptt-T", "10", "30", "100"], 75),
        Run("memory_time", "memory_time", ["--T", "100,1000,3000", "--H", "200", "--batch", "32",
                                           "--reps", "2", "--timeout", "60", "--budget", "30",
                                           "--device", device], 75, "memory_time.csv"),
        vs_run((100, 200, 10), 32, (100, 1000), 140, vs_extra),
        vs_run((300, 400, 20), 16, (1000,), 140, vs_extra),
    ]


# -- running -------------------------------------------------------------------

def child_env(device: str) -> dict:
    """The environment of every run: the chosen JAX platform, this checkout
    on the path, unbuffered output (a killed run's log is complete up to
    the kill) and no up-front GPU allocation (vs_braintrace's parent holds
    a JAX client while its per-configuration children run)."""
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = PLATFORMS[device]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    return env


def probe(requested: str | None, timeout: float = 180):
    """(device, facts about the JAX backend or None, error or None). With no
    ``requested`` device: gpu if JAX's default backend is one, else cpu."""
    env = child_env(requested or "cpu")
    if requested is None:
        env.pop("JAX_PLATFORMS")
        if "JAX_PLATFORMS" in os.environ:
            env["JAX_PLATFORMS"] = os.environ["JAX_PLATFORMS"]
    try:
        proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return requested or "cpu", None, f"timeout after {timeout:g} s"
    if proc.returncode != 0:
        return requested or "cpu", None, proc.stderr[-3000:] or f"exit code {proc.returncode}"
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    return requested or ("gpu" if facts["backend"] == "gpu" else "cpu"), facts, None


def execute(cmd, env, timeout, log: pathlib.Path):
    """Run ``cmd`` in its own process group, stdout and stderr to
    ``log``.out/.err; the whole group is killed at ``timeout``. Returns
    (exit code or None when killed, seconds)."""
    t0 = time.perf_counter()
    with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)      # its children too, if any are left
            except ProcessLookupError:
                pass
            proc.wait()
    return code, time.perf_counter() - t0


def share(cap: float, later: float, left: float) -> float:
    """A run's timeout: its cap plus what earlier runs left, keeping the
    later runs' caps; when the time left cannot cover every cap, each gets
    its proportional part."""
    return max(left - later, left * cap / (cap + later))


def do_run(run: Run, out: pathlib.Path, env: dict, timeout: float, extra: list[str]) -> tuple:
    """One run: (the run's record, its rows, an error record or None)."""
    folder = out / run.name
    script = HERE / f"{run.section}.py"
    cmd = [sys.executable, str(script), *run.args, *extra, "--out", str(folder)]
    tags = {"run": run.name, **run.tags}
    record = {"label": run.name, "command": shlex.join(
        ["python", os.path.relpath(script, ROOT), *cmd[2:]]), "out": str(folder),
        "timeout_s": round(timeout, 1)}
    if timeout < 1:
        record.update(status="not run", returncode=None, seconds=0.0, files={})
        return record, [], {"run": run.name, "status": "not run: no time left in the budget"}
    folder.mkdir(parents=True, exist_ok=True)
    log = out / "logs" / run.name
    code, seconds = execute(cmd, env, timeout, log)
    files = read_folder(folder)
    rows = rows_of(files, run.primary, tags)
    status = "ok" if code == 0 and rows else "partial" if rows else "failed"
    record.update(status=status, returncode=code, seconds=round(seconds, 2), files=files)
    error = None
    if status != "ok":
        why = (f"timeout after {timeout:.0f} s" if code is None else
               f"exit code {code}" if code else "wrote no rows")
        error = {"run": run.name, "status": why, "returncode": code, "seconds": round(seconds, 2),
                 "stderr_tail": tail(pathlib.Path(f"{log}.err")),
                 "stdout_tail": tail(pathlib.Path(f"{log}.out"), 1500)}
    return record, rows, error


def section_status(runs: list[dict]) -> str:
    states = {r["status"] for r in runs}
    return "ok" if states == {"ok"} else "failed" if states <= {"failed", "not run"} else "partial"


def write_json(path: pathlib.Path, doc: dict) -> bool:
    """Write ``doc`` as strict JSON (via a temporary file, so a reader never
    sees half of it); False if it could not be written."""
    try:
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(strict(doc), indent=1, allow_nan=False) + "\n")
        os.replace(tmp, path)
        return True
    except (OSError, TypeError, ValueError) as e:
        print(f"gpu_suite: could not write {path}: {e}", file=sys.stderr)
        return False


def peer_version():
    if importlib.util.find_spec("braintrace") is None:
        return None
    try:
        return importlib.metadata.version("braintrace")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def git_commit():
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head or None, "dirty": bool(dirty)}


# -- command line -----------------------------------------------------------------

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench_out/gpu", help="output folder")
    ap.add_argument("--device", choices=sorted(PLATFORMS), default=None,
                    help="JAX platform of every run (default: gpu if JAX sees one, else cpu)")
    ap.add_argument("--tiny", action="store_true", help="CPU-sized sizes: seconds, for CI")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for all runs together (default 450; 600 with --tiny)")
    ap.add_argument("--skip-peer", action="store_true",
                    help="skip vs_braintrace (also done when braintrace is not importable)")
    ap.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    ap.add_argument("--section-args", action="append", default=[], metavar="NAME=ARGS",
                    help="extra arguments for every run of a section, appended (so they "
                         "override), e.g. --section-args 'scale=--neurons 500000'")
    args = ap.parse_args(argv)
    args.extra = {}
    for item in args.section_args:
        name, sep, rest = item.partition("=")
        if not sep or name not in SECTIONS:
            ap.error(f"--section-args {item!r}: expected NAME=ARGS, NAME one of "
                     f"{', '.join(SECTIONS)}")
        args.extra.setdefault(name, []).extend(shlex.split(rest))
    if args.budget is None:
        args.budget = 600.0 if args.tiny else 450.0
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    out = pathlib.Path(args.out).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    path = out / "gpu_suite.json"
    device, facts, probe_error = probe(args.device)
    peer = peer_version()
    skip_peer = args.skip_peer or peer is None
    env = child_env(device)
    doc = {"device": (facts or {}).get("device", f"{device} (probe failed)"),
           "device_kind": (facts or {}).get("device_kind"), "platform": device,
           "backend": (facts or {}).get("backend"), "jax": (facts or {}).get("jax"), "probe": facts,
           "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
           "finished": None, "tiny": args.tiny, "budget_s": args.budget,
           "command": shlex.join(["python", "benchmarks/gpu_suite.py", *(argv or sys.argv[1:])]),
           "git": git_commit(),
           "env": {k: env.get(k) for k in ("JAX_PLATFORMS", "XLA_PYTHON_CLIENT_PREALLOCATE")},
           "peer": {"braintrace": peer, "skipped": skip_peer},
           "sections": {}, "seconds": {"probe": round(time.perf_counter() - t0, 2)}, "errors": {}}
    if probe_error:
        doc["errors"]["probe"] = [{"run": "probe", "status": "failed", "stderr_tail": probe_error}]
    runs = [r for r in plan(device, args.tiny) if r.section in args.sections]
    sections = doc["sections"]
    if "vs_braintrace" in args.sections and skip_peer:
        why = ("--skip-peer" if args.skip_peer else
               "braintrace is not importable (pip install -e '.[peer]')")
        sections["vs_braintrace"] = {"status": "skipped", "reason": why, "rows": [], "runs": []}
        runs = [r for r in runs if r.section != "vs_braintrace"]
    print(f"gpu_suite: device {doc['device']} ({device}), jax {doc['jax']}, braintrace {peer}, "
          f"{len(runs)} runs, budget {args.budget:g} s; logs in {out / 'logs'}", flush=True)
    progress = Progress(len(runs), prefix="== ")
    deadline = t0 + args.budget
    write_json(path, doc)
    for i, run in enumerate(runs):
        later = sum(r.cap for r in runs[i + 1:])
        timeout = share(run.cap, later, deadline - time.perf_counter())
        k = progress.start(f"{run.name} (at most {max(timeout, 0):.0f} s)")
        record, rows, error = do_run(run, out, env, timeout, args.extra.get(run.section, []))
        sec = sections.setdefault(run.section, {"status": None, "rows": [], "runs": []})
        sec["runs"].append(record)
        sec["rows"] += rows
        sec["status"] = section_status(sec["runs"])
        spent = doc["seconds"].get(run.section, 0) + record["seconds"]
        doc["seconds"][run.section] = round(spent, 2)
        if error:
            doc["errors"].setdefault(run.section, []).append(error)
        progress.done(k, f"{record['status']}, {len(rows)} rows"
                      + (f" ({error['status']})" if error else ""))
        write_json(path, doc)
    doc["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    doc["seconds"]["total"] = round(time.perf_counter() - t0, 2)
    wrote = write_json(path, doc)
    ran = [s for s in sections.values() if s["status"] != "skipped"]
    print(f"gpu_suite: wrote {path} in {doc['seconds']['total']:.0f} s; "
          + ", ".join(f"{n} {s['status']}" for n, s in sections.items()), flush=True)
    if not wrote:
        return 2
    return 1 if ran and all(s["status"] == "failed" for s in ran) else 0


if __name__ == "__main__":
    sys.exit(main())
