"""Journaling and recovery on the standard workload: what the journal costs, and how long a restart takes.

Run: ``python3 benchmarks/recovery_bench.py --workload FILE [--snapshot-at 0.9]``
(FILE from ``benchmarks/workload.py``; 1,000,000 orders by default).

The workload is run the way the gateway runs it, without sockets: batches of
``--batch`` commands, each batch an ``execute`` journal record through
``Sequencer.execute`` (engine, order tracker, numbered messages, resend
store), then ``commit`` and one journal write. In the same process:

- baseline: the engine alone (``Engine.handle_all`` in the same batches),
  so the journaled run reads as a ratio of it;
- a snapshot taken after ``--snapshot-at`` of the orders (pickled size and
  time), and the same snapshot from a forked child as the exchange takes
  it (how long the engine pauses for the fork), then the rest of the
  workload journaled after it;
- recovery (``gateway.persistence.recovery.recover``, as ``carbonx serve`` starts) from
  the journal alone, and from the snapshot plus the journal after it. Both
  must rebuild the state hash of the live run, or the benchmark fails;
- the start-up check of the whole journal (``gateway.persistence.journal.scan_journal``:
  every record's framing and CRC), alone and as a share of each start; and
  the same check on the same commands journaled one to a batch (two records
  a command, the most records a million commands can make; written without
  the engine: the check reads only the framing), for its cost per record.

The journal is written to a temporary directory and synced once at the end:
the cost of fdatasync per batch is the gateway benchmark's subject.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_bench import (  # noqa: E402
    ACCOUNT_IDS,
    DEFAULT_BATCH,
    GENEROUS_CASH,
    GENEROUS_UNITS,
    SYMBOL,
    build_commands,
    read_workload,
    run_engine,
)

from exchange import CASH_ASSET, Deposit, OpenAccount  # noqa: E402
from gateway.config import load_instruments  # noqa: E402
from gateway.persistence.journal import (  # noqa: E402
    Genesis,
    JournalWriter,
    commit_record,
    execute_record,
    operator_record,
    scan_journal,
)
from gateway.persistence.recovery import (  # noqa: E402
    FIRST_SEGMENT,
    fork_snapshot,
    new_sequencer,
    recover,
    snapshot_bytes,
    write_snapshot,
)


def workload_genesis() -> Genesis:
    """The configured instruments, EUA without collar or band (the workload's semantics, as engine_bench)."""
    instruments = load_instruments()
    instruments[SYMBOL] = dataclasses.replace(
        instruments[SYMBOL], market_collar=None, price_band_bps=0, volatility_band_bps=0
    )
    return Genesis(instruments, None, md_levels=10, resend_window=2_000)


def funding() -> list:
    commands: list = []
    for account in ACCOUNT_IDS:
        commands += [
            OpenAccount(ts=1, account=account),
            Deposit(ts=1, account=account, asset=CASH_ASSET, amount=GENEROUS_CASH),
            Deposit(ts=1, account=account, asset=SYMBOL, amount=GENEROUS_UNITS),
        ]
    return commands


def journal_workload(data_dir: Path, commands: list, batch: int, snapshot_after: int) -> tuple[float, str, dict]:
    """Run and journal the commands as the gateway does; a snapshot after ``snapshot_after`` commands."""
    genesis = workload_genesis()
    core = new_sequencer(genesis)
    writer = JournalWriter.create(data_dir / FIRST_SEGMENT, genesis)
    opening = funding()
    writer.append(operator_record(opening))
    core.operator(opening, [])
    core.commit()
    writer.append(commit_record())
    writer.flush()
    snapshot: dict = {}
    started = time.perf_counter()
    for first in range(0, len(commands), batch):
        inputs = [
            (command.account, number, command) for number, command in enumerate(commands[first : first + batch], first)
        ]
        writer.append(execute_record(inputs))
        core.execute(inputs, [])
        core.commit()
        writer.append(commit_record())
        writer.flush()
        if not snapshot and first + batch >= snapshot_after:
            paused = time.perf_counter()
            data = snapshot_bytes(core, writer.journal_id, writer.next_seq - 1, writer.size)
            pickled = time.perf_counter() - paused
            write_snapshot(data_dir, writer.next_seq - 1, data)
            written = time.perf_counter()
            # The way the exchange takes it: a forked child pickles and writes; the parent pauses for the fork.
            pid = fork_snapshot(core, writer.journal_id, writer.next_seq - 1, writer.size, data_dir / "forked")
            forked = time.perf_counter()
            _, status = os.waitpid(pid, 0)
            if os.waitstatus_to_exitcode(status):
                raise SystemExit("the forked snapshot failed")
            snapshot = {
                "orders": first + batch,
                "bytes": len(data),
                "pickle_s": pickled,
                "total_s": written - paused,
                "fork_pause_s": forked - written,
                "child_s": time.perf_counter() - written,
            }
            started += time.perf_counter() - paused  # the snapshot is reported on its own
    elapsed = time.perf_counter() - started
    writer.sync()
    writer.close()
    return elapsed, core.engine.state_hash(), snapshot


def one_per_batch(path: Path, commands: list) -> None:
    """The commands journaled one to a batch (an execute and a commit record each), without running them."""
    genesis = workload_genesis()
    writer = JournalWriter.create(path, genesis)
    writer.append(operator_record(funding()))
    writer.append(commit_record())
    for number, command in enumerate(commands):
        writer.append(execute_record([(command.account, number, command)]))
        writer.append(commit_record())
        if number % 4096 == 0:
            writer.flush()
    writer.flush()
    writer.sync()
    writer.close()


def timed_check(path: Path, runs: int = 3) -> tuple[float, int]:
    """The start-up check of a whole journal: the best of ``runs`` (seconds, records)."""
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        scan = scan_journal(path)
        best = min(best, time.perf_counter() - started)
    if scan.torn_bytes:
        raise SystemExit(f"the check found a torn tail in {path}: {scan.torn_reason}")
    return best, scan.records


def timed_recovery(data_dir: Path, use_snapshot: bool) -> tuple[float, str, object]:
    if not use_snapshot:
        hidden = data_dir / "snapshots-hidden"
        (data_dir / "snapshots").rename(hidden)
    try:
        gc.collect()
        started = time.perf_counter()
        recovered = recover(data_dir, workload_genesis())
        elapsed = time.perf_counter() - started
        recovered.journal.close()
        return elapsed, recovered.core.engine.state_hash(), recovered.report
    finally:
        if not use_snapshot:
            hidden.rename(data_dir / "snapshots")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", type=Path, required=True, help="file written by benchmarks/workload.py")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="commands per batch (journal record)")
    parser.add_argument("--snapshot-at", type=float, default=0.9, help="share of the orders before the snapshot")
    args = parser.parse_args()
    rows = read_workload(args.workload)
    commands = build_commands(rows)
    print(
        f"carbonx recovery benchmark: python {sys.version.split()[0]}, {os.cpu_count()} cores, "
        f"{len(commands):,} commands, batch {args.batch}"
    )
    gc.collect()
    engine_s, _, events = run_engine(commands, args.batch)
    del events
    gc.collect()
    with tempfile.TemporaryDirectory(prefix="carbonx-recovery-bench-") as scratch:
        data_dir = Path(scratch)
        live_s, live_hash, snapshot = journal_workload(
            data_dir, commands, args.batch, int(len(commands) * args.snapshot_at)
        )
        size = (data_dir / FIRST_SEGMENT).stat().st_size
        print(f"engine alone:        {engine_s:6.2f} s  {len(commands) / engine_s:>10,.0f} commands/s  x1.00")
        print(
            f"sequenced+journaled: {live_s:6.2f} s  {len(commands) / live_s:>10,.0f} commands/s  "
            f"x{engine_s / live_s:.2f}  (journal {size / 1e6:,.1f} MB, {size / len(commands):.0f} bytes a command)"
        )
        print(
            f"snapshot after {snapshot['orders']:,} commands: {snapshot['bytes'] / 1e6:,.1f} MB, "
            f"pickled in {snapshot['pickle_s']:.2f} s, written and synced in "
            f"{snapshot['total_s'] - snapshot['pickle_s']:.2f} s by this process"
        )
        print(
            f"the same snapshot from a forked child (as the exchange takes it): engine paused "
            f"{snapshot['fork_pause_s'] * 1e3:.1f} ms for the fork, the child done in {snapshot['child_s']:.2f} s"
        )
        full_s, full_hash, full_report = timed_recovery(data_dir, use_snapshot=False)
        snap_s, snap_hash, snap_report = timed_recovery(data_dir, use_snapshot=True)
        print(
            f"recovery, journal alone:          {full_s:6.2f} s  ({full_report.commands:,} commands replayed, "
            f"{full_report.commands / full_s:,.0f}/s)  x1.00"
        )
        print(
            f"recovery, snapshot + journal tail: {snap_s:6.2f} s  ({snap_report.commands:,} commands replayed)"
            f"  x{full_s / snap_s:.2f} faster"
        )
        if not full_hash == snap_hash == live_hash:
            print(
                f"FAIL: state hashes differ: live {live_hash}, journal {full_hash}, snapshot {snap_hash}",
                file=sys.stderr,
            )
            return 1
        if snap_report.snapshot is None:
            print("FAIL: the recovery did not use the snapshot", file=sys.stderr)
            return 1
        print(f"state hash {live_hash} (live, journal replay and snapshot recovery agree)")
        check_s, records = timed_check(data_dir / FIRST_SEGMENT)
        print(
            f"start-up check of the whole journal: {check_s:.3f} s  ({records:,} records, {size / 1e6:,.1f} MB: "
            f"{check_s / records * 1e6:.2f} s a million records, {size / 1e6 / check_s:,.0f} MB/s)"
        )
        print(
            f"  within each start (recover's own figure): journal alone {full_report.check_seconds:.3f} s = "
            f"{full_report.check_seconds / full_s:.1%} of {full_s:.2f} s; snapshot + tail "
            f"{snap_report.check_seconds:.3f} s = {snap_report.check_seconds / snap_s:.1%} of {snap_s:.2f} s"
        )
        many = data_dir / "one-per-batch" / FIRST_SEGMENT
        one_per_batch(many, commands)
        many_size = many.stat().st_size
        many_s, many_records = timed_check(many)
        print(
            f"the same commands one to a batch: {many_records:,} records, {many_size / 1e6:,.1f} MB, checked in "
            f"{many_s:.2f} s: {many_s / many_records * 1e6:.2f} s a million records, "
            f"{many_size / 1e6 / many_s:,.0f} MB/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
