"""The journal in segments and archives: replay and recovery across them, and the exchange rolling its own.

How it works
------------
``Live`` (tests/gateway/persistence/test_journal.py) drives a sequencer and its journal writer batch by batch
as the gateway does; here the writer also closes its segment between batches (``roll``), as the rotation does
at each day's end and past a size, and closed segments are archived as the rotation does once a snapshot
covers them. The reference is the same flow journaled in one file: every segmented journal must replay, and
recover, to its state hash and numbering.

Covered:

- (hypothesis) wherever the segments are closed, the journal replays to the live state and to the state of
  the same flow in one file; each segment is named by its first record's seq and opens with the journal's
  genesis;
- archives: a covered segment archived (compressed, read back before the segment goes) replays and
  recovers as before, from genesis and from a snapshot; ``zstd``'s format holds the segment's bytes;
- recovery across segments: a torn tail in the last segment is cut; damage in a closed segment, a segment
  missing, an archive missing, a segment of another journal are refused, nothing changed; a damaged newest
  snapshot falls back to an older one whose records are archived;
- retention: expired archives are removed; a start then needs a snapshot after them (it uses one, and says
  so without one), and ``carbonx replay`` starts from one;
- a data directory from before segments has its journal moved into place as the first segment;
- the exchange itself: trading days on the calendar close a segment each, the day's snapshot has it
  archived, a segment past ``journal_segment_mb`` is closed too, and a restart recovers across them all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zstandard
from calendar_helpers import TestClock, calendar_of, exchange, reached
from gateway_helpers import eventually, session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_journal import Live, rows, standard_genesis

from gateway.persistence.errors import JournalCorrupt, JournalError
from gateway.persistence.journal import GENESIS, HEADER, MAGIC, JournalWriter, first_batch, scan_journal
from gateway.persistence.recovery import journal_genesis_and_id, recover, replay_journal
from gateway.persistence.segments import (
    ARCHIVE_DIR,
    FIRST_SEGMENT,
    LEGACY_NAME,
    archive_segment,
    covered_segments,
    expired_archives,
    journal_dir,
    journal_segments,
    segments_at,
)

REPO_ROOT = Path(__file__).resolve().parents[3]


def segmented_journal(data_dir: Path, rolls: set[int], snapshots: set[int] = frozenset(), orders: int = 240) -> Live:
    """The standard flow in chunks of 24 rows (4 to a batch), the segment closed after the chunks in ``rolls``
    and a snapshot taken after those in ``snapshots`` (after the roll, where both)."""
    live = Live.create(data_dir)
    live.open_accounts()
    live.logon("carbon-fund")
    flow = rows(orders, seed=11)
    for number, start in enumerate(range(0, len(flow), 24)):
        live.order_flow(flow[start : start + 24])
        if number == 3:
            live.end_of_day(20240102)
        if number in rolls:
            live.journal.roll()
        if number in snapshots:
            live.snapshot(data_dir)
    return live


def state(core) -> tuple:
    return core.engine.state_hash(), core.counters()


def names(data_dir: Path) -> list[str]:
    return [f"{'archive/' if segment.archived else ''}{segment.path.name}" for segment in segments_at(data_dir)]


def carbonx_replay(where: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "replay", str(where), *options],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )


def archive_covered(data_dir: Path, covered_seq: int) -> list[Path]:
    """Archive what a snapshot after record ``covered_seq`` covers, as the rotation's pass does."""
    return [
        archive_segment(segment).archive
        for segment in covered_segments(journal_segments(journal_dir(data_dir)), covered_seq)
    ]


# -- segments replay as one file --------------------------------------------------------------------------


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rolls=st.sets(st.integers(0, 9), max_size=6))
def test_wherever_segments_close_the_journal_replays_to_the_state_of_one_file(tmp_path_factory, rolls):
    one = tmp_path_factory.mktemp("one")
    reference = segmented_journal(one, set())
    reference.close()
    many = tmp_path_factory.mktemp("many")
    live = segmented_journal(many, rolls)
    live.close()
    segments = segments_at(many)
    assert len(segments) == len(rolls) + 1
    genesis, journal_id = journal_genesis_and_id(segments)
    for segment in segments:
        scan = scan_journal(segment.path, (), segment.first_seq)
        assert scan.torn_bytes == 0 and scan.stop_reason is None, segment
        with segment.path.open("rb") as file:
            assert file.read(len(MAGIC)) == MAGIC
            assert HEADER.unpack(file.read(HEADER.size))[2] == segment.first_seq  # named by its first record
        bodies = first_batch(segment)
        assert bodies is not None and bodies[0][0] == GENESIS and bytes(bodies[0][1]["journal_id"]) == journal_id
    core, report, result = replay_journal(many, genesis)
    alone, _, _ = replay_journal(one, standard_genesis())
    assert state(core) == state(live.core) == state(alone)
    assert report.last_seq == live.journal.next_seq - 1 and result.torn_bytes == 0
    # the same commands, one more batch per segment opened (its genesis copy)
    assert report.commands == replay_journal(one, standard_genesis())[1].commands
    assert report.batches == replay_journal(one, standard_genesis())[1].batches + len(rolls)
    recovered = recover(many, standard_genesis())
    assert state(recovered.core) == state(live.core)
    assert recovered.journal.path == segments[-1].path and recovered.journal.next_seq == live.journal.next_seq


def test_a_writer_goes_on_in_the_new_segment_after_a_restart(tmp_path):
    live = segmented_journal(tmp_path, {2, 5})
    live.close()
    resumed = Live.resume(recover(tmp_path, standard_genesis()))
    resumed.order_flow(rows(60, seed=12))
    resumed.journal.roll()
    resumed.order_flow(rows(30, seed=13))
    resumed.close()
    assert len(segments_at(tmp_path)) == 4
    core, _, _ = replay_journal(tmp_path, standard_genesis())
    assert state(core) == state(resumed.core)


# -- archives ----------------------------------------------------------------------------------------------


def test_archived_segments_replay_and_recover_from_genesis_and_from_a_snapshot(tmp_path):
    live = segmented_journal(tmp_path, {2, 5}, snapshots={5})
    live.close()
    originals = {segment.first_seq: segment.path.read_bytes() for segment in segments_at(tmp_path)}
    snapshot = sorted((tmp_path / "snapshots").glob("snapshot-*.cxs"))[-1]
    archives = archive_covered(tmp_path, int(snapshot.stem.split("-")[1]))  # named by its record seq
    assert len(archives) == 2  # the two closed segments; never the last
    segments = segments_at(tmp_path)
    assert names(tmp_path) == [
        f"{ARCHIVE_DIR}/{segments[0].path.name}",
        f"{ARCHIVE_DIR}/{segments[1].path.name}",
        segments[2].path.name,
    ]
    assert segments[0].path.name == "segment-000000000001.cxj.zst"
    assert [segment.archived for segment in segments] == [True, True, False]
    for segment in segments[:2]:
        assert not (journal_dir(tmp_path) / segment.path.name[:-4]).exists()  # the segment itself is gone
        data = zstandard.ZstdDecompressor().stream_reader(segment.path.open("rb")).readall()
        assert data == originals[segment.first_seq]
        assert segment.path.stat().st_size * 2 < len(data)
    core, _, _ = replay_journal(tmp_path, standard_genesis())  # from genesis, through the archives
    assert state(core) == state(live.core)
    recovered = recover(tmp_path, standard_genesis())  # from the snapshot
    assert recovered.report.snapshot is not None and state(recovered.core) == state(live.core)
    snapshot.unlink()
    recovered = recover(tmp_path, standard_genesis())  # from genesis, through the archives
    assert recovered.report.snapshot is None and state(recovered.core) == state(live.core)


def test_a_damaged_newest_snapshot_falls_back_to_an_older_one_whose_records_are_archived(tmp_path):
    live = segmented_journal(tmp_path, {2, 5, 7}, snapshots={3, 7})
    live.close()
    newest = sorted((tmp_path / "snapshots").glob("snapshot-*.cxs"))[-1]
    archive_covered(tmp_path, int(newest.stem.split("-")[1]))
    assert [segment.archived for segment in segments_at(tmp_path)] == [True, True, True, False]
    data = bytearray(newest.read_bytes())
    data[-10] ^= 0xFF
    newest.write_bytes(bytes(data))
    recovered = recover(tmp_path, standard_genesis())
    assert recovered.report.snapshot is not None and recovered.report.snapshot.path != newest
    assert any("CRC mismatch" in line for line in recovered.report.snapshots_passed_over)
    assert state(recovered.core) == state(live.core)


def test_an_archive_that_does_not_read_back_is_refused_not_replayed_past(tmp_path):
    live = segmented_journal(tmp_path, {2, 5})
    live.close()
    archive_covered(tmp_path, live.journal.next_seq - 1)
    first = segments_at(tmp_path)[0]
    data = bytearray(first.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.path.write_bytes(bytes(data))
    with pytest.raises(JournalError, match="archive cannot be read"):
        replay_journal(tmp_path, standard_genesis())


# -- recovery across segments --------------------------------------------------------------------------


def test_a_torn_tail_is_cut_in_the_last_segment(tmp_path):
    live = segmented_journal(tmp_path, {2, 5})
    live.close()
    last = segments_at(tmp_path)[-1].path
    size = last.stat().st_size
    with last.open("ab") as file:
        file.write(b"\x00\x00\x01\x00garbage of a batch never committed")
    recovered = recover(tmp_path, standard_genesis())
    assert recovered.report.torn_bytes > 0 and last.stat().st_size == size
    assert state(recovered.core) == state(live.core)


def test_damage_in_a_closed_segment_is_refused_and_nothing_is_changed(tmp_path):
    live = segmented_journal(tmp_path, {2, 5})
    live.close()
    closed = segments_at(tmp_path)[1].path
    data = bytearray(closed.read_bytes())
    data[-3] ^= 0xFF  # its last record, the commit of its last batch: a torn tail if it were the last segment
    closed.write_bytes(bytes(data))
    before = {path: path.read_bytes() for path in journal_dir(tmp_path).iterdir() if path.is_file()}
    with pytest.raises(JournalCorrupt, match="closed segment ends whole"):
        recover(tmp_path, standard_genesis())
    assert {path: path.read_bytes() for path in journal_dir(tmp_path).iterdir() if path.is_file()} == before


def test_a_missing_segment_or_archive_is_refused(tmp_path):
    live = segmented_journal(tmp_path, {2, 5, 7})
    live.close()
    middle = segments_at(tmp_path)[1]
    kept = tmp_path / "kept"
    shutil.move(middle.path, kept)
    with pytest.raises(JournalCorrupt, match="records are missing between them"):
        recover(tmp_path, standard_genesis())
    shutil.move(kept, middle.path)
    archive_covered(tmp_path, live.journal.next_seq - 1)
    archived = segments_at(tmp_path)[1]
    assert archived.archived
    archived.path.unlink()
    with pytest.raises(JournalError, match="are missing"):
        recover(tmp_path, standard_genesis())  # no snapshot: the replay from genesis reaches the hole


def test_a_segment_of_another_journal_is_refused(tmp_path):
    mine, other = tmp_path / "mine", tmp_path / "other"
    segmented_journal(mine, {2}).close()
    segmented_journal(other, {2}).close()  # the same flow: its seqs line up, its identity does not
    second = segments_at(mine)[1].path
    shutil.copyfile(segments_at(other)[1].path, second)
    with pytest.raises(JournalError, match="belongs to another journal"):
        recover(mine, standard_genesis())


# -- retention ------------------------------------------------------------------------------------------


def test_expired_archives_are_removed_and_a_start_then_needs_a_snapshot_after_them(tmp_path):
    live = segmented_journal(tmp_path, {2, 5}, snapshots={6})
    live.close()
    snapshot = sorted((tmp_path / "snapshots").glob("snapshot-*.cxs"))[-1]
    archive_covered(tmp_path, int(snapshot.stem.split("-")[1]))
    segments = segments_at(tmp_path)
    now = time.time()
    assert expired_archives(segments, 30, now) == []
    old = now - 31 * 86_400
    os.utime(segments[0].path, (old, old))
    assert expired_archives(segments, 30, now) == [segments[0]]
    assert expired_archives(segments, 0, now) == []  # 0: kept for ever
    segments[0].path.unlink()  # as the rotation's pass does
    recovered = recover(tmp_path, standard_genesis())
    assert recovered.report.snapshot is not None and state(recovered.core) == state(live.core)
    replayed = carbonx_replay(tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    assert f"state hash {live.core.engine.state_hash()}" in replayed.stdout
    assert "from       snapshot-" in replayed.stdout and "2 segments (1 archived)" in replayed.stdout
    snapshot.unlink()
    with pytest.raises(JournalError, match="archive retention|retention"):
        recover(tmp_path, standard_genesis())
    refused = carbonx_replay(tmp_path)
    assert refused.returncode == 1 and "removed after their retention" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr


def test_carbonx_replay_reads_across_segments_and_archives(tmp_path):
    live = segmented_journal(tmp_path, {2, 5}, snapshots={6})
    live.close()
    snapshot = sorted((tmp_path / "snapshots").glob("snapshot-*.cxs"))[-1]
    archive_covered(tmp_path, int(snapshot.stem.split("-")[1]))
    for where in (tmp_path, journal_dir(tmp_path)):
        replayed = carbonx_replay(where, "--check-snapshot")
        assert replayed.returncode == 0, replayed.stderr
        assert f"state hash {live.core.engine.state_hash()}" in replayed.stdout
        assert "3 segments (2 archived)" in replayed.stdout and "the same state" in replayed.stdout


# -- a data directory from before segments ------------------------------------------------------------------


def test_a_journal_from_before_segments_is_moved_into_place_with_its_snapshots(tmp_path):
    genesis = standard_genesis()
    live = Live(Live.create(tmp_path / "scratch").core, JournalWriter.create(tmp_path / LEGACY_NAME, genesis))
    live.open_accounts()
    live.order_flow(rows(80, seed=3))
    live.snapshot(tmp_path)  # its offset is in the one file: unchanged by the move
    live.order_flow(rows(40, seed=4))
    live.close()
    shutil.rmtree(tmp_path / "scratch")
    data = (tmp_path / LEGACY_NAME).read_bytes()
    recovered = recover(tmp_path, genesis)
    assert not (tmp_path / LEGACY_NAME).exists() and (tmp_path / FIRST_SEGMENT).read_bytes() == data
    assert recovered.report.snapshot is not None and state(recovered.core) == state(live.core)
    # both at once: which is the journal cannot be told
    (tmp_path / LEGACY_NAME).write_bytes(data)
    with pytest.raises(JournalError, match="which one is the journal cannot be told"):
        recover(tmp_path, genesis)


# -- the exchange rolling its own ------------------------------------------------------------------------------


async def test_each_trading_day_closes_a_segment_the_days_snapshot_has_archived_and_a_restart_reads_them(tmp_path):
    clock = TestClock(calendar_of(), "2026-01-05 07:50")
    async with exchange(tmp_path, clock) as gateway:
        async with session(gateway, "utility-north") as seller, session(gateway, "bank") as buyer:
            for day, date in (("2026-01-05", 20260105), ("2026-01-06", 20260106)):
                clock.set(f"{day} 08:00")
                await reached(gateway, date, "continuous:EUA")
                for price in (7000, 7010, 7020):
                    await seller.new_order("EUA", "S", 1, price)
                    await buyer.new_order("EUA", "B", 1, price)
                clock.set(f"{day} 18:00")
                await eventually(lambda date=date: gateway.engine.last_closed_date == date)
        await eventually(lambda: gateway.rotation.archived == 2, timeout=20)
        assert gateway.rotation.rolled == 2
        hash_before = gateway.engine.state_hash()
    segments = segments_at(tmp_path)
    assert [segment.archived for segment in segments] == [True, True, False]
    async with exchange(tmp_path, clock) as again:
        assert again.engine.state_hash() == hash_before
    core, _, _ = replay_journal(tmp_path, standard_genesis_of_the_exchange(tmp_path))
    assert core.engine.state_hash() == hash_before


def standard_genesis_of_the_exchange(data_dir: Path):
    genesis, _ = journal_genesis_and_id(segments_at(data_dir))
    assert genesis is not None
    return genesis


async def test_a_segment_past_its_size_is_closed_while_trading(tmp_path):
    clock = TestClock(calendar_of(), "2026-01-05 08:00")
    async with exchange(tmp_path, clock) as gateway:
        await reached(gateway, 20260105, "continuous:EUA")
        gateway.rotation.segment_bytes = 4096  # (journal_segment_mb counts MiB: a few KiB here, for speed)
        async with session(gateway, "bank") as buyer:
            for number in range(60):
                await buyer.new_order("EUA", "B", 1, 6000 + number)
        await eventually(lambda: gateway.rotation.rolled >= 2)
        hash_before = gateway.engine.state_hash()
        segments = segments_at(tmp_path)
        assert len(segments) == gateway.rotation.rolled + 1
        assert all(segment.path.stat().st_size < 4096 + 2048 for segment in segments[:-1])
    async with exchange(tmp_path, clock) as again:
        assert again.engine.state_hash() == hash_before
