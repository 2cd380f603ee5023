"""The benchmark suites: measured figures as JSON, and plots of them.

usage: python3 benchmarks/suite.py [engine|gateway|marketdata|all] [--quick] [--out DIR]

A program of the source checkout, never part of the product (``pip install -e '.[bench]'`` first: it needs
hdrhistogram and matplotlib).

How this works
--------------
``run(["engine"], quick=False)`` measures, writes ``benchmarks/results/<stamp>-<commit>.json`` and PNG
plots beside it, and returns the results; :func:`main` does that for the suites named on the command line,
draws a progress bar on stderr and prints the figures to compare. Every figure is taken with its baseline in
the same process (the bare Python loop of ``engine_bench.py``), so a reader compares ratios, not absolute
rates that move with the machine's load.

Engine (the standard workload, ``workload.py`` beside this file):

- throughput at 100k, 1M and 5M orders (``--quick``: 100k), best of three runs with the collector paused,
  engine (``Engine.handle_all`` in batches of 256, pre-trade risk on) against the bare loop; the two
  trade tapes must be equal;
- cost against book depth: the workload generated to keep about 1k, 10k and 100k orders resting
  (``--depth``), the same two rates, and every command timed on its own;
- latency per command type, from those single-command timings, in HDR histograms (``hdrhistogram``):
  a passive add, an aggressive add (a limit order that crosses on entry), a market order, a cancel;
  percentiles p50, p90, p99, p99.9 and the maximum;
- memory per resting order (traced allocations of a book rebuilt with the final orders).

Gateway (``gateway_suite.py``): requests a second at the maximum rate with 1 to 1,000 sessions, and
acknowledgement latency against offered load, each with the journal synced per batch and not.
Market data (``marketdata_suite.py``): messages a second through a mosquitto broker to 1 to 100
subscribers, and the delay from a trade to its subscribers.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gateway_suite  # noqa: E402
import marketdata_suite  # noqa: E402
import workload  # noqa: E402
from engine_bench import (  # noqa: E402
    DEFAULT_BATCH,
    SYMBOL,
    benchmark_engine,
    build_commands,
    bytes_per_resting_order,
    read_workload,
    timed_runs,
)
from plots import new_plot, save_plot  # noqa: E402

from exchange import CancelOrder, OrderType, Side  # noqa: E402

RESULTS = HERE / "results"
SIZES = (100_000, 1_000_000, 5_000_000)
DEPTHS = (1_000, 10_000, 100_000)
QUICK_SIZES = (100_000,)
QUICK_DEPTHS = (1_000, 10_000)
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
COMMAND_TYPES = ("add", "aggressive add", "market", "cancel")
SEED = 42


class BenchmarkError(RuntimeError):
    """A benchmark could not run, or its result is wrong (a tape that differs from the bare loop's)."""


def workload_rows(orders: int, depth: int | None = None) -> list:
    """The standard workload's rows (engine_bench's tuples), generated into a temporary file."""
    arguments = {"orders": orders, "seed": SEED} | ({} if depth is None else {"depth": depth})
    with tempfile.NamedTemporaryFile("w+", suffix=".csv", newline="\n") as file:
        workload.write(file, **arguments)
        file.flush()
        return read_workload(Path(file.name))


def best_rates(rows: list, commands: list, runs: int) -> dict:
    """Best of ``runs`` engine and bare-loop runs (engine_bench.timed_runs); the two tapes must agree."""
    timings = timed_runs(rows, commands, runs)
    if timings.tape != timings.bare_tape:
        raise BenchmarkError("the engine's trade tape differs from the bare loop's")
    engine_rate, bare_rate = len(commands) / min(timings.engine_times), len(rows) / min(timings.bare_times)
    return {
        "commands": len(commands),
        "trades": len(timings.tape),
        "engine_ops_per_s": round(engine_rate),
        "bare_ops_per_s": round(bare_rate),
        "engine_to_bare": round(engine_rate / bare_rate, 4),
        "_engine": timings.engine,
    }


def command_type(engine, command) -> str:
    """Which of COMMAND_TYPES a command is, judged against the book just before it runs (asked outside the
    timed span)."""
    if command.__class__ is CancelOrder:
        return "cancel"
    if command.order_type is OrderType.MARKET:
        return "market"
    if command.side is Side.BUY:
        best = engine.depth(SYMBOL, Side.SELL, 1)
        return "aggressive add" if best and command.price >= best[0][0] else "add"
    best = engine.depth(SYMBOL, Side.BUY, 1)
    return "aggressive add" if best and command.price <= best[0][0] else "add"


def single_command_latencies(commands: list) -> dict:
    """Run every command on its own (``Engine.handle``), timed; an HDR histogram of nanoseconds per type."""
    from hdrh.histogram import HdrHistogram

    engine = benchmark_engine()
    histograms = {kind: HdrHistogram(1, 10_000_000_000, 3) for kind in COMMAND_TYPES}
    clock = time.perf_counter_ns
    handle = engine.handle
    gc.collect()
    gc.disable()
    try:
        for command in commands:
            kind = command_type(engine, command)
            started = clock()
            handle(command)
            histograms[kind].record_value(max(1, clock() - started))
    finally:
        gc.enable()
    return histograms


def summarise(histogram) -> dict:
    """Percentiles in microseconds, the count and the maximum."""
    out = {"count": histogram.get_total_count()}
    for percentile in PERCENTILES:
        out[f"p{percentile:g}"] = round(histogram.get_value_at_percentile(percentile) / 1000, 3)
    out["max"] = round(histogram.get_max_value() / 1000, 3)
    out["mean"] = round(histogram.get_mean_value() / 1000, 3)
    return out


def percentile_curve(histogram) -> list[tuple[float, float]]:
    """(percentile, microseconds) points for a percentile plot, from p0 to p99.99."""
    points = []
    for percentile in (0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99):
        points.append((percentile, histogram.get_value_at_percentile(percentile) / 1000))
    return points


def engine_steps(quick: bool) -> int:
    return len(QUICK_SIZES if quick else SIZES) + 1 + len(QUICK_DEPTHS if quick else DEPTHS)


def engine_suite(quick: bool, progress: Callable[[str], None]) -> dict:
    sizes = QUICK_SIZES if quick else SIZES
    depths = QUICK_DEPTHS if quick else DEPTHS
    runs = 1 if quick else 3
    results: dict = {"batch": DEFAULT_BATCH, "seed": SEED, "runs": runs, "throughput": [], "depth": []}
    largest = None
    for size in sizes:
        progress(f"engine: throughput at {size:,} orders")
        rows = workload_rows(size)
        commands = build_commands(rows)
        rates = best_rates(rows, commands, runs)
        largest = rates.pop("_engine")
        results["throughput"].append({"orders": size, **rates})
        del rows, commands
    progress("engine: memory per resting order")
    resting, per_order = bytes_per_resting_order(largest)
    results["memory"] = {"resting_orders": resting, "bytes_per_resting_order": round(per_order)}
    del largest
    latencies = {}
    for depth in depths:
        orders = max(100_000, 4 * depth) if quick else max(200_000, 4 * depth)
        progress(f"engine: {orders:,} orders keeping about {depth:,} resting")
        rows = workload_rows(orders, depth)
        commands = build_commands(rows)
        rates = best_rates(rows, commands, runs)
        engine = rates.pop("_engine")
        resting_now = engine.counts().open_orders  # the workload has no stop orders: every open order rests
        del engine
        histograms = single_command_latencies(commands)
        results["depth"].append(
            {
                "depth": depth,
                "orders": orders,
                "resting_at_end": resting_now,
                **rates,
                "latency_us": {kind: summarise(h) for kind, h in histograms.items()},
            }
        )
        latencies[depth] = {kind: percentile_curve(h) for kind, h in histograms.items()}
        del rows, commands
    results["_curves"] = latencies
    return results


def summary_lines(results: dict) -> list[str]:
    """What :func:`main` prints: the figures a reader compares, one line each."""
    lines = [
        f"commit {results['commit']}, {results['machine']['cpus']} cores, python {results['machine']['python']}"
        f"{', quick' if results['quick'] else ''}"
    ]
    engine = results.get("engine")
    if engine:
        for row in engine["throughput"]:
            lines.append(
                f"engine {row['orders']:>9,} orders: {row['engine_ops_per_s']:>9,} commands/s, bare loop "
                f"{row['bare_ops_per_s']:>9,}/s, engine/bare {row['engine_to_bare']:.3f}"
            )
        for row in engine["depth"]:
            lines.append(
                f"engine depth {row['depth']:>7,}: {row['engine_ops_per_s']:>9,} commands/s, engine/bare "
                f"{row['engine_to_bare']:.3f}; latency p50/p99/p99.9 us: "
                + ", ".join(
                    f"{kind} {stats['p50']:g}/{stats['p99']:g}/{stats['p99.9']:g}"
                    for kind, stats in row["latency_us"].items()
                    if stats["count"]
                )
            )
        lines.append(
            f"engine memory: {engine['memory']['bytes_per_resting_order']:,} bytes per resting order "
            f"({engine['memory']['resting_orders']:,} resting)"
        )
    if results.get("gateway"):
        lines += gateway_suite.summary_lines(results["gateway"])
    if results.get("marketdata"):
        lines += marketdata_suite.summary_lines(results["marketdata"])
    return lines


def machine() -> dict:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_1m": load,
    }


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def plot_engine(results: dict, stem: Path) -> list[Path]:
    """throughput against depth, and a latency percentile plot per command type (at the middle depth)."""
    depth_rows = results["depth"]
    figure, axis = new_plot()
    depths = [row["depth"] for row in depth_rows]
    axis.plot(depths, [row["engine_ops_per_s"] for row in depth_rows], marker="o", label="engine (risk checks)")
    axis.plot(depths, [row["bare_ops_per_s"] for row in depth_rows], marker="s", label="bare Python loop")
    written = [
        save_plot(
            figure,
            axis,
            stem.with_name(stem.name + "-throughput-vs-depth.png"),
            title="Engine throughput against book depth",
            xlabel="orders resting (workload --depth)",
            ylabel="commands per second",
        )
    ]
    curves = results["_curves"]
    depth = sorted(curves)[len(curves) // 2]
    figure, axis = new_plot()
    for kind, points in curves[depth].items():
        if points and any(value for _, value in points):
            axis.plot(
                [1 / (1 - percentile / 100) for percentile, _ in points],
                [value for _, value in points],
                marker=".",
                label=kind,
            )
    axis.set_yscale("log")
    axis.set_xticks([1, 2, 10, 100, 1000, 10000], ["p0", "p50", "p90", "p99", "p99.9", "p99.99"])
    written.append(
        save_plot(
            figure,
            axis,
            stem.with_name(stem.name + "-latency-by-command.png"),
            title=f"Engine latency per command type ({depth:,} orders resting)",
            xlabel="percentile",
            ylabel="microseconds per command",
        )
    )
    return written


SUITES = {
    "engine": (engine_suite, plot_engine, engine_steps),
    "gateway": (gateway_suite.gateway_suite, gateway_suite.plot_gateway, gateway_suite.steps),
    "marketdata": (marketdata_suite.marketdata_suite, marketdata_suite.plot_marketdata, marketdata_suite.steps),
}


def steps(targets: list[str], quick: bool) -> int:
    """How many progress steps ``run`` reports for these suites."""
    return sum(SUITES[target][2](quick) for target in targets if target in SUITES)


def run(
    targets: list[str], quick: bool, progress: Callable[[str], None], out_dir: Path = RESULTS
) -> tuple[dict, Path, list[Path]]:
    """Run the named suites; (results, the JSON file, the plots)."""
    unknown = [target for target in targets if target not in SUITES]
    if unknown:
        raise BenchmarkError(f"no benchmark suite {unknown[0]!r} here (known: {', '.join(SUITES)})")
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results: dict = {"commit": commit(), "started": started, "quick": quick, "machine": machine()}
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"{started.replace(':', '').replace('-', '')}-{results['commit']}"
    plots: list[Path] = []
    for target in targets:
        measure, plot, _ = SUITES[target]
        results[target] = measure(quick, progress)
        plots += plot(results[target], stem.with_name(stem.name + f"-{target}"))
        results[target].pop("_curves", None)
    path = stem.with_suffix(".json")
    path.write_text(json.dumps(results, indent=2) + "\n")
    return results, path, plots


PROGRAM = "benchmarks/suite.py"
EXTRAS = ("hdrh", "matplotlib")  # the bench extra of pyproject.toml: latency histograms and the plots


def progress_bar(total: int) -> Callable[[str], None]:
    """A ``progress`` for :func:`run`: each step a line on stderr with a bar of steps done and the seconds since."""
    started = time.monotonic()
    done = 0

    def progress(step: str) -> None:
        nonlocal done
        done += 1
        filled = round(20 * (done - 1) / max(1, total))
        print(
            f"[{'#' * filled}{'.' * (20 - filled)}] {done}/{total} {time.monotonic() - started:6.0f} s  {step}",
            file=sys.stderr,
            flush=True,
        )

    return progress


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description="run the benchmark suites: JSON results and PNG plots in benchmarks/results/"
    )
    parser.add_argument("target", nargs="?", default="all", choices=(*SUITES, "all"), help="which suite (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and one run each: minutes, not an hour")
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="folder for the JSON and plots (default: benchmarks/results)"
    )
    args = parser.parse_args(argv)
    missing = [name for name in EXTRAS if importlib.util.find_spec(name) is None]
    if missing:  # checked up front: a missing extra is a clear error, not a traceback after minutes
        print(f"{PROGRAM}: {', '.join(missing)} missing: python3 -m pip install -e '.[bench]'", file=sys.stderr)
        return 2
    targets = list(SUITES) if args.target == "all" else [args.target]
    total = steps(targets, args.quick)
    started = time.monotonic()
    try:
        results, path, plots = run(targets, args.quick, progress_bar(total), args.out)
    except BenchmarkError as error:
        print(f"{PROGRAM}: {error}", file=sys.stderr)
        return 1
    print(f"[{'#' * 20}] {total}/{total} {time.monotonic() - started:6.0f} s  done", file=sys.stderr)
    for line in summary_lines(results):
        print(line)
    print(f"results: {path}")
    for plot in plots:
        print(f"plot:    {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
