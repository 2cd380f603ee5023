"""Two versions of the exchange against each other: maximum requests a second and latency at a steady rate,
the runs alternating.

usage: python3 benchmarks/compare_gateway.py BASE_DIR NEW_DIR [--rounds 3] [--sessions 10 100]
       [--requests 200000] [--rate 5000] [--seconds 10] [--fsync batch|off]

How this works
--------------
Each directory is a checkout of carbonx (for example ``git worktree add
/tmp/base <commit>``). For each session count, ``carbonx serve`` is started
from one checkout, then the other, ``--rounds`` times in turn, each time
with a new data directory and the journal synced per batch; the load
generators of ``gateway_suite`` send orders and their cancels pipelined
from two processes. Alternating spreads the machine's noise over both; the
figures to read are the ratios of the best runs and of the medians (one
lucky run on a shared machine moves the first, not the second). Then, the same way, each
checkout is offered ``--rate`` requests a second for ``--seconds`` and the
latency of every answer is recorded: the figures to read are the ratios of
the medians of the runs' p50 and p99 (``--rate 0`` skips them).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gateway_suite  # noqa: E402
from gateway_bench import free_port  # noqa: E402


def one_run(checkout: Path, sessions: int, mode: str, amount: float, seconds: float, fsync: str = "batch") -> dict:
    """``gateway_suite.drive``'s figures for ``carbonx serve`` started from ``checkout``."""
    with tempfile.TemporaryDirectory(prefix="carbonx-compare-") as scratch:
        folder = Path(scratch)
        accounts = gateway_suite.accounts_file(folder, sessions)
        port = free_port()
        here = os.getcwd()
        os.chdir(checkout)  # ``python -m gateway.cli`` imports the package of the working directory
        try:
            server = gateway_suite.start_exchange(port, fsync, folder, accounts)
        finally:
            os.chdir(here)
        try:
            return gateway_suite.drive(port, server.pid, sessions, mode, amount, seconds)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sessions", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument(
        "--rate", type=float, default=5_000.0, help="requests a second offered for the latency runs (0: none)"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each latency run")
    parser.add_argument(
        "--fsync",
        choices=("batch", "off"),
        default="batch",
        help="the journal's sync (off: what the request path costs without the disk's latency)",
    )
    args = parser.parse_args()
    checkouts = (args.base, args.new)
    for sessions in args.sessions:
        runs: dict[Path, list[int]] = {checkout: [] for checkout in checkouts}
        for _ in range(args.rounds):
            for checkout in checkouts:
                runs[checkout].append(
                    one_run(checkout, sessions, "max", args.requests, 4.0, args.fsync)["requests_per_s"]
                )
        base, new = max(runs[args.base]), max(runs[args.new])
        typical = statistics.median(runs[args.new]) / statistics.median(runs[args.base])
        print(
            f"{sessions:>5} sessions: base {runs[args.base]} new {runs[args.new]} requests/s; "
            f"best new/base x{new / base:.2f}, median new/base x{typical:.2f}",
            flush=True,
        )
        if args.rate <= 0:
            continue
        latencies: dict[Path, list[dict]] = {checkout: [] for checkout in checkouts}
        for _ in range(args.rounds):
            for checkout in checkouts:
                latencies[checkout].append(
                    one_run(checkout, sessions, "rate", args.rate, args.seconds, args.fsync)["latency_ms"]
                )
        for percentile in ("p50", "p99"):
            figures = {checkout: sorted(run[percentile] for run in latencies[checkout]) for checkout in checkouts}
            base_figure, new_figure = (statistics.median(figures[checkout]) for checkout in checkouts)
            print(
                f"{sessions:>5} sessions at {args.rate:,.0f}/s: {percentile} base {figures[args.base]} new "
                f"{figures[args.new]} ms; median new/base x{new_figure / base_figure:.2f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
