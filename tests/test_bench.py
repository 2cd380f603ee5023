"""``carbonx bench``: the suite runs, checks the engine's tape against the bare loop, and writes its JSON and plots.

Only the shape of the results is asserted here: speed is the benchmarks' business, never a test's.
The smallest workload the suite knows (``--quick``) takes a few seconds.
"""
from __future__ import annotations

import json

import pytest

from gateway.cli.main import main

pytest.importorskip("hdrh")
pytest.importorskip("matplotlib")


def test_bench_engine_quick_writes_results_and_plots(tmp_path, capsys):
    assert main(["bench", "engine", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
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
    assert "engine/bare" in out and "results:" in out


def test_bench_refuses_an_unknown_suite(capsys):
    with pytest.raises(SystemExit) as exit_status:
        main(["bench", "gatewayz"])
    assert exit_status.value.code == 2


@pytest.mark.slow
def test_bench_gateway_quick_measures_both_journal_policies(tmp_path, capsys):
    assert main(["bench", "gateway", "--quick", "--out", str(tmp_path)]) == 0
    gateway = json.loads(next(tmp_path.glob("*.json")).read_text())["gateway"]
    assert {(row["journal_fsync"], row["sessions"]) for row in gateway["maximum"]} == {
        (fsync, sessions) for fsync in ("batch", "off") for sessions in (1, 10)}
    for row in gateway["fixed_rate"]:
        assert row["answered"] > 0 and row["latency_ms"]["p50"] <= row["latency_ms"]["p99"] <= row["latency_ms"]["max"]
    assert len(list(tmp_path.glob("*-gateway-latency-vs-load.png"))) == 1
