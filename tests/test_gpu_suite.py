"""benchmarks/gpu_suite.sh at CPU sizes: one JSON file with the three
sections' rows; vs_braintrace recorded as skipped where braintrace is not
installed; a failing section recorded under ``errors`` while the others
still run; a non-zero exit only when every section failed."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER = importlib.util.find_spec("braintrace") is not None


def suite(out, *flags):
    """Run the suite's shell script with this interpreter on CPU; returns
    (exit code, the parsed JSON, combined output)."""
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_suite.sh"), "--tiny",
                           "--device", "cpu", "--out", str(out), *flags],
                          env=env, capture_output=True, text=True, timeout=600)
    text = (out / "gpu_suite.json").read_text()
    doc = json.loads(text, parse_constant=reject)
    return proc.returncode, doc, proc.stdout + proc.stderr


def reject(constant):
    raise AssertionError(f"the JSON is not strict: {constant}")


def test_tiny_run_has_every_section(tmp_path):
    code, doc, log = suite(tmp_path)
    assert code == 0, log
    for key in ("device", "jax", "started", "finished", "sections", "seconds", "errors", "peer"):
        assert key in doc, key
    assert doc["platform"] == "cpu" and doc["backend"] == "cpu" and doc["tiny"] is True
    assert doc["errors"] == {}, doc["errors"]
    sections = doc["sections"]
    assert set(sections) == {"vs_braintrace", "memory_time", "scale"}
    for name in ("memory_time", "scale"):
        assert sections[name]["status"] == "ok" and sections[name]["rows"], name
        assert doc["seconds"][name] > 0
    assert {r["algorithm"] for r in sections["memory_time"]["rows"]} == {"bptt", "es_d_rtrl"}
    assert all(r["status"] == "ok" for r in sections["memory_time"]["rows"])
    run = sections["scale"]["runs"][0]
    assert run["command"].startswith("python benchmarks/scale.py") and "scale.json" in run["files"]
    vs = sections["vs_braintrace"]
    assert doc["peer"]["skipped"] is (not PEER)
    if PEER:
        assert vs["status"] == "ok" and {r["lib"] for r in vs["rows"]} == {
            "brainscale", "braintrace", "hand"}
        assert vs["runs"][0]["files"]["agreement.csv"]
    else:
        assert vs["status"] == "skipped" and "braintrace" in vs["reason"] and not vs["rows"]
    assert doc["seconds"]["total"] >= sum(doc["seconds"][n] for n in ("memory_time", "scale"))


def test_failing_section_is_recorded_and_the_others_run(tmp_path):
    # scale runs first and fails on an unknown flag; memory_time (one
    # configuration) still runs after it
    code, doc, log = suite(tmp_path, "--sections", "scale", "memory_time",
                           "--section-args", "scale=--no-such-flag",
                           "--section-args", "memory_time=--algorithms bptt --T 8")
    assert code == 0, log
    assert set(doc["sections"]) == {"scale", "memory_time"}
    assert doc["sections"]["scale"]["status"] == "failed" and not doc["sections"]["scale"]["rows"]
    (error,) = doc["errors"]["scale"]
    assert error["status"] == "exit code 2" and "--no-such-flag" in error["stderr_tail"]
    rows = doc["sections"]["memory_time"]["rows"]
    assert [(r["algorithm"], r["T"], r["status"]) for r in rows] == [("bptt", 8, "ok")]
    assert "memory_time" not in doc["errors"]


def test_exit_status_when_every_section_fails(tmp_path):
    code, doc, log = suite(tmp_path, "--sections", "scale",
                           "--section-args", "scale=--no-such-flag")
    assert code == 1, log
    assert doc["sections"]["scale"]["status"] == "failed" and doc["errors"]["scale"]
