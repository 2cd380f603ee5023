"""Trading days back to back at the market's peak rate: is the exchange's memory flat from day to day, and how
much disk does a day take?

usage: python3 benchmarks/soak_days.py [--days 10] [--seconds-a-day 60] [--rate 2000] [--sessions 20]
       [--fsync batch|off] [--out benchmarks/results]

How this works
--------------
``carbonx serve`` runs on its trading calendar with a simulated clock, so that each trading day passes in
``--seconds-a-day`` real seconds. The calendar is the benchmark's own (written for the run): every day of
the week trades, continuous trading from 00:15 to 23:45 of the venue's time, so that nearly all of the
load meets an open market (DOMAIN.md's peak: 1,000-2,000 order messages a second). Two load-generator
processes, ``--sessions`` sessions in all, send ``--rate`` order messages a second between them, on
schedule: DAY limit orders one lot at a time around EUR 70 (half the sessions sell, half buy, so that
most cross and trade), one in ten far from the market (it rests until the day's end expires it), and a
cancel of the session's oldest resting order one message in ten. Client order ids are never reused, so
every day leaves a day's worth of them for the end of day to release.

At each end of day (a ``days/YYYYMMDD/report.json`` appearing in the data directory) the benchmark reads
the server's resident memory (``VmRSS`` of ``/proc/PID/status``) and the sizes of the journal (the
segments being written, the archives of closed days, and what those archives hold uncompressed), the
snapshots and the ledger; between days it samples the memory every second for the plot. Printed: one line
a day, each day's memory against the first day's, and disk a day; written: a JSON file and a plot in
``--out``. (Archives are removed ``journal_archive_days`` days after they were written, days of the wall
clock: a run of minutes keeps them all, so the journal's disk here grows by a day's archive a day.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import zstandard  # noqa: E402
from gateway_bench import free_port, start_server  # noqa: E402
from gateway_suite import SECRET, accounts_file  # noqa: E402

from gateway.persistence.recovery import SNAPSHOTS_KEPT  # noqa: E402

FIRST_DAY = "2026-01-05"
CALENDAR = """# Made by benchmarks/soak_days.py: every day trades, nearly around the clock.
timezone = "Europe/Berlin"
weekend = []
[day]
opening_call = "00:10"
continuous = "00:15"
close = "23:45"
closing_call_minutes = 5
settlement_window_minutes = 10
"""
LOAD_PROCESSES = 2


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def journal_sizes(data: Path) -> dict:
    """The journal's disk: segments being written, archives (and what they hold uncompressed), in MB."""
    directory = data / "journal"
    archives = sorted((directory / "archive").glob("segment-*.cxj.zst")) if (directory / "archive").is_dir() else []
    raw = 0
    for archive in archives:
        with archive.open("rb") as file:
            raw += zstandard.frame_content_size(file.read(18))  # the size is in the frame's header
    segments = size_of_all(directory.glob("segment-*.cxj")) if directory.is_dir() else 0
    packed = size_of_all(archives)
    return {
        "journal_mb": round((segments + packed) / 2**20, 1),
        "segments_mb": round(segments / 2**20, 1),
        "archives_mb": round(packed / 2**20, 2),
        "archived_raw_mb": round(raw / 2**20, 1),
        "archived_days": len(archives),
    }


def size_of_all(paths) -> int:
    return sum(path.stat().st_size for path in paths)


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file()) if path.exists() else 0


# -- the load ----------------------------------------------------------------------------------------------


def generator(port: int, accounts: list[tuple[str, str]], rate: float, seconds: float, results) -> None:
    results.put(asyncio.run(_generate(port, accounts, rate, seconds)))


async def _generate(port: int, accounts: list[tuple[str, str]], rate: float, seconds: float) -> dict:
    from contextlib import AsyncExitStack

    from gateway.client import connect

    counts = {"sent": 0, "answers": 0}
    async with AsyncExitStack() as stack:
        clients = [
            (
                await stack.enter_async_context(
                    connect("127.0.0.1", port, account, SECRET, cancel_on_disconnect=False)
                ),
                side,
            )
            for account, side in accounts
        ]
        per_session = rate / len(clients)
        await asyncio.gather(*(_session(client, side, per_session, seconds, counts) for client, side in clients))
    return counts


async def _session(client, side: str, rate: float, seconds: float, counts: dict) -> None:
    """One session's flow, on schedule (an open loop); answers are read and counted, never waited for."""

    async def read() -> None:
        async for _ in client.messages():
            counts["answers"] += 1

    reader = asyncio.create_task(read(), name="soak-answers")
    resting: list[str] = []
    started = time.perf_counter()
    number = 0
    prefix = client.logon["session_id"]
    while (elapsed := time.perf_counter() - started) < seconds:
        due = number / rate
        if due > elapsed:
            await asyncio.sleep(due - elapsed)
        if number % 10 == 9 and resting:
            client.send({"type": "cancel_order", "client_order_id": resting.pop(0)})
        else:
            clid = f"{prefix}-{number}"
            far = number % 10 == 4
            offset = number * 7 % 11 - 5  # -5 ... 5 ticks around EUR 70
            price = (6850 if side == "B" else 7150) if far else 7000 + offset
            client.send(client.new_order_message("EUA", side, 1, price, client_order_id=clid, time_in_force="DAY"))
            resting.append(clid)
            del resting[:-50]  # the oldest of the last fifty is the one cancelled
        counts["sent"] += 1
        number += 1
    await asyncio.sleep(1.0)  # the last answers
    reader.cancel()


# -- the run -----------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--seconds-a-day", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=2000.0, help="order messages a second, in all")
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--fsync", choices=("batch", "off"), default="batch")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    speed = 86_400 / args.seconds_a_day
    with tempfile.TemporaryDirectory(prefix="carbonx-soak-") as scratch:
        folder = Path(scratch)
        calendar = folder / "calendar.toml"
        calendar.write_text(CALENDAR)
        accounts = accounts_file(folder, args.sessions)
        data = folder / "data"
        port = free_port()
        server = start_server(
            port,
            args.fsync,
            data,
            options=["--accounts", str(accounts), "--calendar", str(calendar)],
            serve_options=[
                "--schedule",
                "calendar",
                "--clock-start",
                f"{FIRST_DAY}T00:12",
                "--clock-speed",
                str(speed),
                "--max-sessions",
                "2000",
            ],
        )
        try:
            return _soak(args, server.pid, port, data)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=120)


def _soak(args: argparse.Namespace, pid: int, port: int, data: Path) -> int:
    names = [f"bench-{number:04d}" for number in range(1, args.sessions + 1)]
    sides = [(name, "S" if index % 2 else "B") for index, name in enumerate(names)]
    shares = [sides[index::LOAD_PROCESSES] for index in range(LOAD_PROCESSES)]
    seconds = args.days * args.seconds_a_day + args.seconds_a_day / 2  # past the last day's end
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [
        context.Process(
            target=generator,
            name=f"soak-load-{index}",
            args=(port, share, args.rate * len(share) / len(sides), seconds, results),
        )
        for index, share in enumerate(shares)
    ]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    days: list[dict] = []
    samples: list[tuple[float, int]] = []
    seen: set[str] = set()
    print(
        f"soak: {args.days} days of {args.seconds_a_day:g} s at {args.rate:,.0f} order messages/s, "
        f"{args.sessions} sessions, fsync {args.fsync}",
        flush=True,
    )
    while len(days) < args.days and time.monotonic() - started < seconds + 120:
        time.sleep(1.0)
        samples.append((round(time.monotonic() - started, 1), rss_kb(pid)))
        folder = data / "days"
        for report in sorted(folder.glob("*/report.json")) if folder.exists() else []:
            day = report.parent.name
            if day in seen:
                continue
            seen.add(day)
            figures = json.loads(report.read_text())
            row = {
                "trading_date": day,
                "seconds": round(time.monotonic() - started, 1),
                "rss_mb": round(rss_kb(pid) / 1024, 1),
                **journal_sizes(data),
                "snapshots_mb": round(size_of(data / "snapshots") / 2**20, 1),
                "ledger_mb": round(size_of(data / "ledger.sqlite3") / 2**20, 1),
                "trades": figures["instruments"]["EUA"]["trades"],
                "expired_orders": figures["expired_orders"],
                "open_orders_after": figures["open_orders"],
            }
            days.append(row)
            first = days[0]["rss_mb"]
            print(
                f"  day {day}: RSS {row['rss_mb']:.1f} MB ({row['rss_mb'] / first:.3f} of day 1), journal "
                f"{row['journal_mb']:.1f} MB ({row['archived_days']} days archived: {row['archives_mb']:.1f} MB "
                f"holding {row['archived_raw_mb']:.1f}), snapshots {row['snapshots_mb']:.1f} MB, ledger "
                f"{row['ledger_mb']:.1f} MB; {row['trades']:,} trades, {row['expired_orders']:,} expired",
                flush=True,
            )
    reports = [results.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join()
    sent = sum(report["sent"] for report in reports)
    answers = sum(report["answers"] for report in reports)
    elapsed = time.monotonic() - started
    print(f"sent {sent:,} order messages ({sent / elapsed:,.0f}/s), {answers:,} answers", flush=True)
    if len(days) >= 2:
        pairs = list(zip(days, days[1:], strict=False))
        rss = [row["rss_mb"] for row in days]

        def a_day(key: str) -> float:
            return sum(row[key] - before[key] for before, row in pairs) / len(pairs)

        print(
            f"RSS at the days' ends: {min(rss):.1f}-{max(rss):.1f} MB, last/first x{rss[-1] / rss[0]:.3f}; "
            f"disk a day: journal {a_day('archived_raw_mb'):.1f} MB written, {a_day('archives_mb'):.1f} MB kept "
            f"(archived), ledger {a_day('ledger_mb'):.1f} MB; snapshots {min(r['snapshots_mb'] for r in days):.1f}-"
            f"{max(r['snapshots_mb'] for r in days):.1f} MB (the newest {SNAPSHOTS_KEPT} kept)",
            flush=True,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"days": days, "samples": samples, "rate": args.rate, "sessions": args.sessions, "sent": sent}
    (args.out / "soak_days.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(result, args.out / "soak_days.png")
    return 0 if len(days) >= args.days else 1


def _plot(result: dict, path: Path) -> None:
    """Resident memory over the run (time on a linear axis), the days' ends marked."""
    import matplotlib.pyplot as plt
    from plots import new_plot

    figure, axis = new_plot()
    axis.plot([t for t, _ in result["samples"]], [kb / 1024 for _, kb in result["samples"]], label="resident memory")
    axis.plot(
        [row["seconds"] for row in result["days"]],
        [row["rss_mb"] for row in result["days"]],
        "o",
        label="at each end of day",
    )
    axis.set_ylim(bottom=0)
    axis.set_title(f"carbonx serve, {len(result['days'])} trading days at {result['rate']:,.0f} order messages/s")
    axis.set_xlabel("seconds of the run")
    axis.set_ylabel("MB")
    axis.grid(True, alpha=0.3)
    axis.legend()
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
