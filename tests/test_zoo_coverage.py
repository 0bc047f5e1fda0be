"""The coverage benchmark's quick form (benchmarks/zoo_coverage.py --quick: one
zoo entry per family of quirks) against its targets: BPTT equal to the
independent reference on every model without a while_loop, D-RTRL exact on
every feed-forward single layer, every refusal a CompileError that names
the primitive, the source line and a fix."""
import importlib.util
from pathlib import Path

from gradcheck import float64

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _coverage():
    spec = importlib.util.spec_from_file_location("bench_zoo_coverage", BENCH / "zoo_coverage.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_quick_coverage_meets_the_targets(tmp_path):
    cov = _coverage()
    entries = [e for e in cov.ZOO if e.name in cov.QUICK]
    assert len(entries) == len(cov.QUICK)
    with float64():
        rows = cov.run(entries, T=6, B=2)
    refused = {(r["name"], a) for r in rows for a in cov.ALGORITHMS if r[a]["status"] != "ok"}
    assert refused == {("paper.complex_resonator", "d_rtrl"),   # a complex weight op
                       ("paper.complex_resonator", "es_d_rtrl"),
                       ("paper.adaptive_ode.while", "bptt")}    # reverse mode cannot
    for r in rows:
        assert r["reference"]["status"] == "ok", r["name"]
        if not r["has_while"]:
            assert r["bptt"]["rel"] < 1e-10, (r["name"], r["bptt"])
        if r["feedforward"] and r["d_rtrl"]["status"] == "ok":
            assert r["d_rtrl"]["rel"] < 1e-10, (r["name"], r["d_rtrl"])
        for alg in cov.ALGORITHMS:
            if r[alg]["status"] != "ok":
                assert r[alg]["named"], (r["name"], alg, r[alg])
    text = cov.markdown(rows, 6, 2)
    assert "| paper.RF.stacked *" in text and "## Summary" in text
