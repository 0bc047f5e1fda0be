"""Smoke tests of the benchmark scripts at tiny sizes: they run, write their
files, and the numbers are sane (finite, cosines in [-1, 1], BPTT memory
growing with T while ES-D-RTRL's stays flat), and they print a progress line
as each configuration starts and ends."""
import csv
import importlib.util
import json
import math
import re
import types
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name):
    """Import benchmarks/<name>.py (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)        # not registered in sys.modules, as brainscale bench does
    return mod


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def assert_progress(out, n, prefix=""):
    """common.Progress's lines in ``out``: an end line with the elapsed time
    for each of the n configurations ([1/n] to [n/n]), at most one start line
    each (none for a skipped one)."""
    p = re.escape(prefix)
    ends = re.findall(rf"^{p}\[(\d+)/{n}\] .+: .* \(([\d.]+ s; )?\d+ s elapsed\)$", out, re.M)
    ends = [i for i, _ in ends]
    assert sorted(map(int, ends)) == list(range(1, n + 1)), out
    starts = re.findall(rf"^{p}\[(\d+)/{n}\] .+ \.\.\.$", out, re.M)
    assert len(set(starts)) == len(starts) and set(starts) <= set(ends), out


def test_fidelity_tiny(tmp_path, capsys):
    fid = load("fidelity")
    argv = ["--models", "lif,alif", "--n-rec", "16", "-T", "20", "-B", "2", "--seeds", "2",
            "--out", str(tmp_path)]
    assert fid.main(argv) == 0
    out = capsys.readouterr().out
    assert_progress(out, 2 * 2)                        # models x seeds
    assert "[1/4] lif seed 0 ...\n" in out
    for name in ("fidelity.csv", "fidelity.md", "fidelity.png"):
        assert (tmp_path / name).stat().st_size > 0
    rows = read_rows(tmp_path / "fidelity.csv")
    assert len(rows) == 2 * 2 * len(fid.ALGORITHMS)      # models x seeds x algorithms
    numeric = [k for k in fid.FIELDS if k not in ("model", "label", "algorithm")]
    for r in rows:
        for k in numeric:
            assert math.isfinite(float(r[k])), (k, r)
        for k in ("cos_all", "cos_l1", "cos_l2", "cos_out"):
            assert -1.0 <= float(r[k]) <= 1.0
        if r["algorithm"] == "bptt":
            assert abs(float(r["cos_all"]) - 1.0) < 1e-6
        assert 0.0 <= float(r["rate_l1"]) <= 1.0 and 0.0 <= float(r["rate_l2"]) <= 1.0
    md = (tmp_path / "fidelity.md").read_text()
    assert "d_rtrl" in md and "es_d_rtrl" in md and "es_adaptive" in md and "jax" in md
    assert all(float(r["ms_step"]) > 0 for r in rows)


def test_fidelity_takes_other_learners(tmp_path, capsys):
    fid = load("fidelity")
    argv = ["--models", "lif", "--n-rec", "8", "-T", "12", "-B", "2", "--seeds", "1",
            "--algorithms", "low_rank_d_rtrl:2,bptt,d_rtrl", "--out", str(tmp_path)]
    assert fid.main(argv) == 0
    rows = read_rows(tmp_path / "fidelity.csv")
    assert [r["algorithm"] for r in rows] == ["bptt", "low_rank_d_rtrl:2", "d_rtrl"]
    assert "low_rank_d_rtrl:2" in (tmp_path / "fidelity.md").read_text()
    with pytest.raises(SystemExit):
        fid.main(argv[:-4] + ["--algorithms", "low_rank_d_rtrl:two"])
    assert "low_rank_d_rtrl:two" in capsys.readouterr().err


def test_memory_time_tiny(tmp_path, capsys):
    mt = load("memory_time")
    # T 64 and 128 at batch 8: both multiples of the ES-D-RTRL window (about
    # 256 / B = 32 steps), so its temp memory compares like with like
    argv = ["--T", "64,128", "--H", "16", "--reps", "1", "--batch", "8", "--jobs", "2",
            "--device", "cpu", "--timeout", "120", "--out", str(tmp_path)]
    assert mt.main(argv) == 0
    # the parent prints around each child process; two at a time, numbered as they start
    assert_progress(capsys.readouterr().out, 3 * 2)
    for name in ("memory_time.csv", "memory_time.md", "memory_vs_T.png", "time_vs_T.png"):
        assert (tmp_path / name).stat().st_size > 0
    rows = read_rows(tmp_path / "memory_time.csv")
    assert len(rows) == 3 * 2
    assert all(r["status"] == "ok" for r in rows), rows
    for r in rows:
        for k in ("first_call_s", "step_s", "temp_mib", "peak_rss_mib", "loss"):
            assert math.isfinite(float(r[k])) and float(r[k]) >= 0, (k, r)
        assert r["backend"] == "cpu"
    temp = {(r["algorithm"], int(r["T"])): int(r["temp_bytes"]) for r in rows}
    assert temp["bptt", 128] > temp["bptt", 64]
    assert temp["es_d_rtrl", 128] <= 1.1 * temp["es_d_rtrl", 64]


def test_scale_tiny(tmp_path, capsys):
    sc = load("scale")
    argv = ["--neurons", "500", "--fan-in", "8", "--steps", "4", "--bptt-T", "5", "20",
            "--out", str(tmp_path)]
    assert sc.main(argv) == 0
    assert_progress(capsys.readouterr().out, 1 + 2)
    r = json.loads((tmp_path / "scale.json").read_text())
    o = r["online"]
    assert r["synapses"] == 500 * (8 + 10) and o["donate"] and "sparse" in o["op_kinds"]
    assert o["steps_with_gradient"] == 3                 # a new label each step: never silent
    assert o["compile_s"] > 0 and o["step_median_s"] > 0 and o["step_cpu_median_s"] > 0
    total = o["params_opt_GiB"] + o["indices_GiB"]
    assert o["indices_GiB"] * 2 ** 30 == 4 * 2 * r["synapses"]        # int32 pre and post
    assert math.isclose(o["rss_ratio"], o["peak_rss_GiB"] / total, rel_tol=1e-9)
    t5, t20 = r["bptt"]
    assert t5["T"] == 5 and t20["T"] == 20 and t20["xla_temp_GiB"] > 2 * t5["xla_temp_GiB"] > 0
    md = (tmp_path / "scale.md").read_text()
    assert "peak RSS / (parameters + optimizer state + indices)" in md and "| 20 |" in md


def test_local_rules_tiny(tmp_path, capsys):
    lr = load("local_rules")
    argv = ["--steps", "3", "--T", "6", "--sbp-iterations", "2", "--only", "es_d_rtrl",
            "softhebb + es_d_rtrl", "decolle", "sbp", "--out", str(tmp_path)]
    assert lr.main(argv) == 0
    assert_progress(capsys.readouterr().out, 4)
    rows = read_rows(tmp_path / "local_rules.csv")
    assert [r["method"] for r in rows] == ["es_d_rtrl", "softhebb + es_d_rtrl", "decolle", "sbp"]
    for r in rows:
        assert 0.0 <= float(r["accuracy"]) <= 1.0 and float(r["s_per_sequence"]) > 0
        assert float(r["mflop_per_sequence"]) > 0
    assert "| decolle |" in (tmp_path / "local_rules.md").read_text()


def test_local_rules_dmts_tiny(tmp_path):
    lr = load("local_rules")
    argv = ["--task", "dmts", "--delay", "20", "--n-eval", "8", "--steps", "2", "--only",
            "es_d_rtrl", "stdp + es_d_rtrl", "decolle", "--out", str(tmp_path)]
    assert lr.main(argv) == 0
    rows = read_rows(tmp_path / "local_rules.csv")
    assert [r["method"] for r in rows] == ["es_d_rtrl", "stdp + es_d_rtrl", "decolle"]
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    assert "DMTS (20 ms delay)" in (tmp_path / "local_rules.md").read_text()


def test_bench_progress(tmp_path, monkeypatch, capsys):
    """brainscale bench finds benchmarks/ and says which benchmark it starts
    and how long each took (stand-in benchmarks: the real ones run above)."""
    from brainscale.cli import bench
    assert bench.benchmarks_dir() == BENCH
    ran = []
    monkeypatch.setattr(bench, "QUICK", {"fidelity": ["--quick"], "vs_braintrace": [],
                                         "zoo_coverage": ["--quick"]})
    monkeypatch.setattr(bench, "peer_available", lambda: False)
    monkeypatch.setattr(bench, "_load", lambda name: types.SimpleNamespace(
        main=lambda argv: ran.append((name, argv)) or 0))
    done = bench.run_bench(str(tmp_path))
    assert [name for name, _ in ran] == ["fidelity", "zoo_coverage"]
    assert ran[0][1] == ["--quick", "--out", str(tmp_path / "fidelity")]
    assert done["vs_braintrace"].startswith("skipped") and done["fidelity"] >= 0
    out = capsys.readouterr().out
    assert_progress(out, 3, prefix="== ")
    assert "== [1/3] fidelity --quick ...\n" in out
    assert re.search(r"^== \[2/3\] vs_braintrace: skipped: braintrace", out, re.M), out


def test_es_profile_tiny(capsys):
    """The per-phase ablation runs every phase and the learner itself: one
    table row each, finite and positive."""
    prof = load("es_profile")
    assert prof.main(["--T", "12", "--B", "2", "--size", "6", "8", "3", "--reps", "1",
                      "--window", "4"]) == 0
    out = capsys.readouterr().out
    assert "window 4" in out
    for name in list(prof.PHASES) + ["train_sequence"]:
        row = re.search(rf"^\| {re.escape(name)} \| ([\d.]+) \|", out, re.M)
        assert row and float(row.group(1)) > 0, (name, out)


def test_window_tradeoff_tiny(capsys):
    """One row per window plus the default, each with a positive time, temp
    memory that grows with the window, and the default marked."""
    wt = load("window_tradeoff")
    assert wt.main(["--T", "8", "--B", "2", "--size", "5", "16", "3", "--windows", "1", "4",
                    "--reps", "1"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^\| (\d+)( \(default\))? \| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|",
                      out, re.M)
    windows = [int(r[0]) for r in rows]
    assert windows == sorted(set(windows)) and {1, 4} <= set(windows), out
    assert sum(bool(r[1]) for r in rows) == 1, out
    assert all(float(r[3]) > 0 and float(r[5]) > 0 for r in rows), out
    temp = {int(r[0]): float(r[4]) for r in rows}
    assert temp[4] > temp[1], out
    with pytest.raises(SystemExit):
        wt.main(["--windows", "0"])


def test_compile_profile_tiny(capsys):
    """Every phase is timed for BrainScale in its own process; the total is
    the phases' sum."""
    cp = load("compile_profile")
    assert cp.main(["--T", "5", "--B", "2", "--size", "4", "6", "3", "--algos", "es_d_rtrl",
                    "--libs", "brainscale"]) == 0
    out = capsys.readouterr().out
    row = re.search(r"^\| brainscale \| es_d_rtrl \| (.*) \|$", out, re.M)
    assert row, out
    cells = [float(c) for c in row.group(1).split(" | ")]
    phases, total, lines = cells[:len(cp.PHASES)], cells[-2], cells[-1]
    assert all(v >= 0 for v in phases) and phases[3] > 0 and lines > 100, out
    assert total == pytest.approx(sum(phases), abs=0.02), out


def test_vs_truncated_quick_and_its_crossover_rule(tmp_path, monkeypatch):
    """Every algorithm at every delay with accuracy and XLA memory; BPTT's
    memory grows with T faster than TBPTT-k's; the crossover is the first
    delay from which ES-D-RTRL stays ahead at no more memory."""
    vt = load("vs_truncated")
    rows, cross = vt.main(["--quick", "--out", str(tmp_path)], log=lambda *a: None)
    assert [(r["delay"], r["algorithm"]) for r in rows] == [
        (d, a) for d in (4.0, 24.0) for a in ("es_d_rtrl", "tbptt:4", "bptt")]
    assert all(0 <= r["final_accuracy"] <= 1 and r["temp_MiB"] > 0 for r in rows)
    mem = {(r["delay"], r["algorithm"]): r["temp_MiB"] for r in rows}
    assert mem[24.0, "bptt"] / mem[4.0, "bptt"] > mem[24.0, "tbptt:4"] / mem[4.0, "tbptt:4"]
    assert set(cross) == {"tbptt:4"}
    for name in ("vs_truncated.csv", "vs_truncated.json", "accuracy_vs_memory.png"):
        assert (tmp_path / name).stat().st_size > 0

    def row(d, a, acc, mib):
        return {"delay": d, "algorithm": a, "final_accuracy": acc, "total_MiB": mib}
    synthetic = [row(10, "es_d_rtrl", 0.6, 1), row(10, "tbptt:50", 0.9, 2),
                 row(100, "es_d_rtrl", 0.9, 1), row(100, "tbptt:50", 0.5, 2),
                 row(100, "tbptt:10", 0.5, 0.5),          # less memory: not a win
                 row(400, "es_d_rtrl", 0.9, 1), row(400, "tbptt:50", 0.5, 2),
                 row(400, "tbptt:10", 0.5, 2), row(10, "tbptt:10", 0.9, 2),
                 row(10, "tbptt:200", 0.5, 2), row(100, "tbptt:200", 0.95, 2),   # win, loss,
                 row(400, "tbptt:200", 0.5, 2)]                                  # win again
    assert vt.crossovers(synthetic, 0.02) == {"tbptt:10": 400, "tbptt:50": 100,
                                              "tbptt:200": 400}
    assert vt.crossovers(synthetic, 0.5) == {"tbptt:10": None, "tbptt:50": None,
                                             "tbptt:200": None}
    # several seeds: the mean decides (seed 0 alone would win at delay 10)
    seeds = [dict(row(d, a, acc, 1 if a == "es_d_rtrl" else 2), seed=k)
             for k, accs in enumerate([(0.9, 0.8, 0.9, 0.5), (0.6, 0.8, 0.95, 0.5)])
             for d, a, acc in zip((10, 10, 100, 100), ("es_d_rtrl", "tbptt:50") * 2, accs)]
    assert vt.crossovers(seeds, 0.02) == {"tbptt:50": 100}
    means = vt.seed_means(seeds)
    assert means[10, "es_d_rtrl"]["final_accuracy"] == pytest.approx(0.75)
    assert means[10, "es_d_rtrl"]["final_sd"] == pytest.approx(0.15)
    monkeypatch.setenv("BRAINSCALE_CACHE", str(tmp_path / "cache"))
    for task in ("evidence", "psmnist"):      # each task brings its own quick options
        rows, _ = vt.main(["--quick", "--task", task, "--algorithms", "tbptt:4",
                           "--out", str(tmp_path / task)], log=lambda *a: None)
        assert rows and all(0 <= r["final_accuracy"] <= 1 for r in rows)
    with pytest.raises(SystemExit):
        vt.main(["--quick", "--algorithms", "tbptt:0"])
    with pytest.raises(SystemExit):
        vt.main(["--quick", "--algorithms", "bptt:5"])


def test_copy_curriculum_quick(tmp_path):
    """The curriculum lengthens the string only after the loss window meets
    the threshold: lengths never drop, grow by one at a time, and the
    learned length is one less than the one being trained."""
    cc = load("copy_curriculum")
    rows = cc.main(["--quick", "--out", str(tmp_path)], log=lambda *a: None)
    assert [r["algorithm"] for r in rows] == ["d_rtrl", "bptt"]
    for r in rows:
        rec = r["records"]
        assert [x["step"] for x in rec] == list(range(1, len(rec) + 1))
        learned = [x["learned"] for x in rec]
        assert all(0 <= b - a <= 1 for a, b in zip(learned, learned[1:]))
        assert all(x["learned"] in (x["L"] - 1, x["L"]) for x in rec)
        assert r["learned"] == learned[-1] >= 2
        assert all(math.isfinite(x["bits"]) and x["bits"] >= 0 for x in rec)
        # a length is learned exactly when the window's mean loss is under the threshold
        since, window = 0, []
        for x in rec:
            window = (window + [x["bits"]])[-2:]                 # --quick: window 2
            grew = x["learned"] > since
            assert grew == (len(window) == 2 and sum(window) / 2 < 0.99), (x, window)
            if grew:
                since, window = x["learned"], []
    assert (tmp_path / "copy_curriculum.png").stat().st_size > 0
    with pytest.raises(SystemExit):
        cc.main(["--algorithms", "rtrl"])
    assert cc.parse_args(["--quick", "--steps", "7"]).steps == 7     # flags win over --quick


def test_depth_quick(tmp_path, capsys):
    dp = load("depth")
    assert dp.main(["--quick", "--out", str(tmp_path)]) == 0
    rows = read_rows(tmp_path / "depth.csv")
    assert {r["algorithm"] for r in rows} == {"d_rtrl", "es_d_rtrl", "es_layers"}
    for r in rows:
        for k in ("cos_l1", "cos_l2", "cos_out"):
            assert -1.0 <= float(r[k]) <= 1.0
    by = {r["algorithm"]: r for r in rows}
    # the option leaves the top layer alone and gives the bottom one more credit
    assert float(by["es_layers"]["cos_l2"]) == pytest.approx(float(by["es_d_rtrl"]["cos_l2"]),
                                                             abs=1e-6)
    assert float(by["es_layers"]["ratio_l1"]) > float(by["es_d_rtrl"]["ratio_l1"])
    assert "es_layers" in (tmp_path / "depth.md").read_text()
    with pytest.raises(SystemExit):
        dp.main(["--models", "nonesuch"])


def test_gradient_rank_quick(tmp_path, monkeypatch):
    """The per-sample rank profile rises with r to 1 at full rank (6
    neurons), and low-rank D-RTRL at full rank (18 = 3 rows x 6 neurons) is
    D-RTRL, row for row."""
    pytest.importorskip("mlxtend")
    monkeypatch.setenv("BRAINSCALE_CACHE", str(tmp_path / "cache"))
    gr = load("gradient_rank")
    out = gr.main(["--quick", "--out", str(tmp_path)], log=lambda *a: None)
    at = out["at"]["0"]
    for weight in {r["weight"] for r in at["rank"]}:
        cos = [r["sample_cos"] for r in at["rank"] if r["weight"] == weight]
        assert all(b >= a - 1e-9 for a, b in zip(cos, cos[1:])), cos
        assert cos[-1] > 1 - 1e-6
    fid = {(r["algorithm"], r["weight"]): r for r in at["fidelity"]}
    for (alg, weight), r in fid.items():
        if alg == "low_rank_d_rtrl:18":
            assert r["cos"] == pytest.approx(fid["d_rtrl", weight]["cos"], abs=1e-5)
            assert r["ratio"] == pytest.approx(fid["d_rtrl", weight]["ratio"], rel=1e-4)
    assert (tmp_path / "gradient_rank.json").is_file()
