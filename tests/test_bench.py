"""The benchmark suites (``python3 benchmarks/suite.py``): a program of the checkout that runs, checks the engine's
tape against the bare loop, and writes its JSON and plots; the product never imports it.

Only the shape of the results is asserted here: speed is the benchmarks' business, never a test's.
The smallest workload the suite knows (``--quick``) takes a few seconds.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

SUITE = REPO_ROOT / "benchmarks" / "suite.py"

pytest.importorskip("hdrh")
pytest.importorskip("matplotlib")


def suite(*arguments: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python3 benchmarks/suite.py ARGUMENTS`` as a reader of the README runs it, from the checkout's top."""
    return subprocess.run(
        [sys.executable, str(SUITE), *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_bench_engine_quick_writes_results_and_plots(tmp_path):
    run = suite("engine", "--quick", "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr
    results = json.loads(next(tmp_path.glob("*.json")).read_text())
    engine = results["engine"]
    assert [row["orders"] for row in engine["throughput"]] == [100_000]
    assert [row["depth"] for row in engine["depth"]] == [1_000, 10_000]
    for row in engine["throughput"] + engine["depth"]:
        assert row["engine_ops_per_s"] > 0 and row["bare_ops_per_s"] > 0 and row["trades"] > 0
        assert row["engine_to_bare"] == pytest.approx(row["engine_ops_per_s"] / row["bare_ops_per_s"], rel=1e-3)
    for row in engine["depth"]:
        latencies = row["latency_us"]
        assert set(latencies) == {"add", "aggressive add", "market", "cancel"}
        assert sum(stats["count"] for stats in latencies.values()) == row["commands"]  # every command timed once
        for stats in latencies.values():
            assert stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["p99.9"] <= stats["max"]
    assert engine["memory"]["bytes_per_resting_order"] > 0
    plots = sorted(path.name for path in tmp_path.glob("*.png"))
    assert len(plots) == 2 and any("throughput-vs-depth" in name for name in plots)
    assert "engine/bare" in run.stdout and "results:" in run.stdout
    assert "4/4" in run.stderr and "done" in run.stderr  # the progress bar


def test_bench_refuses_an_unknown_suite():
    run = suite("gatewayz", timeout=60)
    assert run.returncode == 2 and "invalid choice: 'gatewayz'" in run.stderr


def test_the_product_never_imports_its_benchmarks():
    """No module of exchange/ or gateway/ imports a module of benchmarks/ or names that folder, and the command
    line has no bench command (the suites run from a checkout, as their own program)."""
    modules = {path.stem for path in (REPO_ROOT / "benchmarks").glob("*.py")}
    for package in ("exchange", "gateway"):
        for path in (REPO_ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    assert not {alias.name.split(".")[0] for alias in node.names} & modules, path
                elif isinstance(node, ast.ImportFrom):
                    assert node.level or (node.module or "").split(".")[0] not in modules, path
                elif isinstance(node, ast.Constant):
                    assert node.value != "benchmarks", path
    run = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "bench"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2 and "invalid choice: 'bench'" in run.stderr


def test_bench_latency_plot_is_ticked_in_percentages(tmp_path):
    """The suites' latency plot has x = 1 / (1 - p): its ticks read 0%, 90%, 99%, ..., as HDR plots do,
    not as the powers of ten x is (setting the log scale resets ticks laid out before it)."""
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        from plots import new_plot, percentile_x, save_plot
    finally:
        sys.path.pop(0)
    figure, axis = new_plot()
    percentiles = (0.0, 50.0, 90.0, 99.0, 99.9, 99.99)
    axis.plot([percentile_x(p) for p in percentiles], [1, 2, 3, 5, 8, 13], marker=".", label="add")
    axis.set_xticks([1, 2, 10, 100], ["p0", "p50", "p90", "p99"])  # what a suite may have set before saving
    path = save_plot(figure, axis, tmp_path / "latency.png", title="latency", xlabel="percentile", ylabel="us")
    assert path.is_file() and axis.get_xlabel() == "percentile"
    low, high = axis.get_xlim()
    labels = [tick.get_text() for tick in axis.get_xticklabels() if low <= tick.get_position()[0] <= high]
    assert labels == ["0%", "90%", "99%", "99.9%", "99.99%"]
    assert not [tick.get_text() for tick in axis.get_xticklabels(minor=True) if tick.get_text()]


@pytest.mark.slow
def test_bench_gateway_quick_measures_both_journal_policies(tmp_path):
    run = suite("gateway", "--quick", "--out", str(tmp_path), timeout=1800)
    assert run.returncode == 0, run.stderr
    gateway = json.loads(next(tmp_path.glob("*.json")).read_text())["gateway"]
    assert {(row["journal_fsync"], row["sessions"]) for row in gateway["maximum"]} == {
        (fsync, sessions) for fsync in ("batch", "off") for sessions in (1, 10)
    }
    for row in gateway["fixed_rate"]:
        assert row["answered"] > 0 and row["latency_ms"]["p50"] <= row["latency_ms"]["p99"] <= row["latency_ms"]["max"]
    assert len(list(tmp_path.glob("*-gateway-latency-vs-load.png"))) == 1
