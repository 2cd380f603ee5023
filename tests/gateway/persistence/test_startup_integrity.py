"""The journal at start-up: checked whole before anything is changed, and nothing acknowledged is cut.

What this file proves
---------------------
1. Damage anywhere in the journal refuses the start, also in the part the
   newest snapshot covers (which the replay never reads), and a snapshot
   must name a commit record the journal has where the snapshot says; the
   file is left exactly as it was. The whole-file check
   (``gateway.persistence.journal.scan_journal``) finds what the replay's reader finds,
   on any cut, garbage and bit flip (hypothesis).
2. A tail that cannot be read (a damaged, cut or missing commit record) is
   a crash's torn tail only if nothing durable shows it was acknowledged:
   a ledger that settled its events, or a snapshot taken after it, refuses
   the start (``JournalTailAcknowledged``, naming the record and its
   offset) and nothing is cut; with no such evidence it is cut, as before.
   A snapshot past the journal's end refuses the start too: the journal lost
   acknowledged batches.
3. Recovery reports how many commands were journaled after the newest
   snapshot (``Recovered.commands_since_snapshot``), so that the gateway
   counts towards ``snapshot_every`` from there, not from 0 at each start.
4. A start on a full disk (a write, sync or truncate failing with ENOSPC,
   patched in; the settlement ledger failing the same way) is a
   ``JournalError`` saying so, the journal and the data directory as they
   were; ``carbonx serve`` reports it in one line on stderr, no traceback.

Journals are made with tests/gateway/persistence/test_journal.py's ``Live`` (the gateway's calls
without sockets), or by the running exchange where the path through
``running_exchange`` is the point.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from gateway_helpers import HOST, exchange_on_port, session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_journal import Live, base_journal, record_offsets, rows, standard_genesis, standard_journal

from exchange import ConfigError
from gateway.persistence.errors import JournalCorrupt, JournalError, JournalTailAcknowledged
from gateway.persistence.journal import HEADER, JournalReader, scan_journal
from gateway.persistence.recovery import (
    ROOM_PROBE,
    SNAPSHOT_DIR,
    SNAPSHOT_HEADER,
    journal_genesis_and_id,
    read_snapshot,
    recover,
    replay_journal,
    snapshot_files,
)
from gateway.persistence.segments import FIRST_SEGMENT

REPO_ROOT = Path(__file__).resolve().parents[3]


def files_of(directory: Path) -> dict[str, bytes]:
    """Every file under a directory and its bytes: what "nothing was changed" compares."""
    return {
        str(path.relative_to(directory)): path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()
    }


def commands_in(bodies: list) -> int:
    """The commands a batch's records hold (execute and operator records), as recovery counts them."""
    return sum(len(body[1]) for body in bodies if body[0] in ("execute", "operator"))


def flip(path: Path, offset: int) -> bytes:
    """Flip one bit of the file at ``offset``; the file's new bytes."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))
    return bytes(data)


# -- 1. the whole journal is checked, the part a snapshot covers too ---------------------------------------


@pytest.mark.parametrize("where", ["length", "crc", "seq", "body", "commit"])
def test_damage_in_the_part_a_snapshot_covers_refuses_the_start(tmp_path, where):
    live, snapshot = standard_journal(tmp_path, orders=300, snapshot_after=200)
    live.close()
    info, _ = read_snapshot(snapshot)
    path = tmp_path / FIRST_SEGMENT
    path.parent.mkdir(parents=True, exist_ok=True)
    records = record_offsets(path.read_bytes())
    if where == "commit":  # the commit record the snapshot follows: the last record it covers
        offset, seq, length = next(record for record in records if record[1] == info.record_seq)
        at = offset + 5
    else:  # an early execute record, far before the snapshot
        victim = live.committed[3].last_seq + 1
        offset, seq, length = next(record for record in records if record[1] == victim)
        assert live.committed[4].bodies[0][0] == "execute"
        at = {"length": offset + 3, "crc": offset + 5, "seq": offset + 15, "body": offset + HEADER.size + length // 2}[
            where
        ]
    assert offset + HEADER.size + length <= info.offset  # the snapshot covers the damage
    damaged = flip(path, at)

    with pytest.raises(JournalCorrupt) as caught:
        recover(tmp_path, standard_genesis())
    assert (caught.value.offset, caught.value.seq) == (offset, seq)
    assert f"record {seq} at byte {offset} is damaged" in str(caught.value)
    assert path.read_bytes() == damaged  # nothing cut, nothing appended


async def test_the_running_exchange_refuses_a_journal_damaged_before_its_snapshot(tmp_path):
    async with exchange_on_port(data_dir=str(tmp_path)) as gateway:
        async with session(gateway, "bank", cancel_on_disconnect=False) as bank:
            for number in range(12):
                await bank.new_order("EUA", "S", 1, 7100 + number)
    path = tmp_path / FIRST_SEGMENT
    path.parent.mkdir(parents=True, exist_ok=True)
    records = record_offsets(path.read_bytes())
    [snapshot] = snapshot_files(tmp_path)
    assert read_snapshot(snapshot)[0].offset == path.stat().st_size  # the stop's snapshot covers everything
    offset, seq, length = records[len(records) // 2]
    damaged = flip(path, offset + HEADER.size + length // 2)
    with pytest.raises(ConfigError, match=f"record {seq} at byte {offset} is damaged"):
        async with exchange_on_port(data_dir=str(tmp_path)):
            pass
    assert path.read_bytes() == damaged


@pytest.mark.parametrize("field", ["record_seq", "offset"])
def test_a_snapshot_that_does_not_match_the_journal_refuses_the_start(tmp_path, field):
    live = Live.create(tmp_path)
    live.open_accounts()
    live.order_flow(rows(120, seed=41)[:60])
    snapshot = live.snapshot(tmp_path)
    live.order_flow(rows(120, seed=41)[60:])
    live.close()
    # The same journal's id, a valid body, but a record seq or journal size the journal does not have there:
    # the journal is not the one the snapshot was taken of (damaged, cut and written again, rewritten).
    data = bytearray(snapshot.read_bytes())
    magic, version, journal_id, record_seq, offset, event_seq, crc, spare = SNAPSHOT_HEADER.unpack_from(data)
    if field == "record_seq":
        record_seq += 1
    else:
        offset += 1
    SNAPSHOT_HEADER.pack_into(data, 0, magic, version, journal_id, record_seq, offset, event_seq, crc, spare)
    snapshot.write_bytes(bytes(data))
    before = files_of(tmp_path)

    with pytest.raises(JournalCorrupt) as caught:
        recover(tmp_path, standard_genesis())
    assert f"{snapshot.name} was taken after record {record_seq}, ending at byte {offset}" in str(caught.value)
    assert (caught.value.offset, caught.value.seq) == (offset, record_seq)
    assert files_of(tmp_path) == before


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_whole_file_check_finds_what_the_replay_finds(data):
    journal_bytes, committed, _ = base_journal()
    cut = data.draw(st.integers(min_value=0, max_value=len(journal_bytes)), label="cut")
    damaged = bytearray(journal_bytes[:cut] + data.draw(st.binary(max_size=200), label="garbage"))
    for at in data.draw(
        st.lists(st.integers(min_value=8, max_value=max(8, len(damaged) - 1)), max_size=2), label="flips"
    ):
        if at < len(damaged):
            damaged[at] ^= 0x01
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / FIRST_SEGMENT
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes(damaged))
        reader = JournalReader(path)
        try:
            for _ in reader.batches():
                pass
        except JournalCorrupt as corrupt:
            with pytest.raises(JournalCorrupt) as caught:
                scan_journal(path)
            assert (caught.value.offset, caught.value.seq) == (corrupt.offset, corrupt.seq)
            return
        except JournalError:
            with pytest.raises(JournalError, match="not a carbonx journal"):
                scan_journal(path)
            return
        scan = scan_journal(path, [batch.end for batch in committed])
    expected = reader.result
    assert (scan.committed_end, scan.last_seq, scan.torn_bytes) == (
        expected.committed_end,
        expected.last_seq,
        expected.torn_bytes,
    )
    if expected.torn_bytes:
        assert scan.torn_reason == expected.torn_reason
    # A checkpoint is reported exactly where one of the valid commit records ends.
    assert {end for end, (_, commit) in scan.record_ends.items() if commit} == {
        batch.end for batch in committed if batch.end <= scan.committed_end
    }


# -- 2. a tail that something durable shows acknowledged is never cut ---------------------------------------


def journal_with_a_trading_last_batch(data_dir: Path) -> Live:
    live = Live.create(data_dir)
    live.open_accounts()
    live.order_flow(rows(80, seed=43), skips=False)
    live.close()
    assert live.last.bodies[-1][0] == "execute"  # the last batch made events: the ledger can show it settled
    return live


def damage_the_last_batch(path: Path, how: str) -> tuple[int, int]:
    """Damage the journal's last (commit) record: (its offset, its seq)."""
    data = path.read_bytes()
    offset, seq, length = record_offsets(data)[-1]
    assert offset + HEADER.size + length == len(data)
    if how == "crc":
        flip(path, offset + 5)
    elif how == "cut":
        path.write_bytes(data[: offset + HEADER.size + length // 2])
    else:  # "missing": the file ends where the commit record was due
        path.write_bytes(data[:offset])
    return offset, seq


@pytest.mark.parametrize("how", ["crc", "cut", "missing"])
@pytest.mark.parametrize("evidence", ["ledger", "snapshot"])
def test_a_damaged_commit_record_of_an_acknowledged_batch_refuses_the_start_and_nothing_is_cut(tmp_path, how, evidence):
    live = journal_with_a_trading_last_batch(tmp_path)
    settled: list = []
    options = {}
    if evidence == "ledger":  # the ledger settled the last batch's events: it was synced and acknowledged
        options = {"ledger_cursor": live.core.engine.counters.seq, "settle": settled.extend}
    else:  # a snapshot taken after the last batch: it too was synced before it was taken
        live.snapshot(tmp_path)
    path = tmp_path / FIRST_SEGMENT
    path.parent.mkdir(parents=True, exist_ok=True)
    offset, seq = damage_the_last_batch(path, how)
    before = files_of(tmp_path)

    with pytest.raises(JournalTailAcknowledged) as caught:
        recover(tmp_path, standard_genesis(), **options)
    assert files_of(tmp_path) == before  # nothing cut: the check came first
    error = caught.value
    assert (error.offset, error.seq, error.committed_end) == (offset, seq, live.committed[-2].end)
    assert f"record {seq} at byte {offset} cannot be read" in str(error)
    assert f"the batches from byte {live.committed[-2].end} on were acknowledged" in str(error)
    assert ("the ledger has settled events up to seq" if evidence == "ledger" else "was taken after record") in str(
        error
    )


@pytest.mark.parametrize("how", ["crc", "cut", "missing"])
def test_a_torn_tail_that_nothing_shows_acknowledged_is_still_cut(tmp_path, how):
    # The ledger settled, and a snapshot was taken, up to the batch before the torn one: a crash while
    # writing the last batch, before it was synced or acknowledged. It is cut off, as it always was.
    live = Live.create(tmp_path)
    live.open_accounts()
    live.order_flow(rows(80, seed=43)[:40], skips=False)
    cursor = live.core.engine.counters.seq
    live.snapshot(tmp_path)
    live.order_flow(rows(80, seed=43)[40:44], skips=False)
    live.close()
    previous = live.committed[-2]
    path = tmp_path / FIRST_SEGMENT
    path.parent.mkdir(parents=True, exist_ok=True)
    damage_the_last_batch(path, how)
    settled: list = []
    recovered = recover(tmp_path, standard_genesis(), ledger_cursor=cursor, settle=settled.extend)
    assert recovered.report.torn_bytes > 0 and path.stat().st_size == previous.end
    assert recovered.core.engine.state_hash() == previous.state_hash
    assert recovered.report.snapshot is not None and not settled
    recovered.journal.close()


def test_a_snapshot_past_the_end_of_the_journal_refuses_the_start(tmp_path):
    # A snapshot of a later state, then the journal lost its last batches (restored from an older copy, or
    # not synced before a power loss with journal_fsync = off): they were acknowledged.
    live = Live.create(tmp_path)
    live.open_accounts()
    live.order_flow(rows(120, seed=47)[:60])
    kept = live.last
    live.order_flow(rows(120, seed=47)[60:])
    snapshot = live.snapshot(tmp_path)
    live.close()
    path = tmp_path / FIRST_SEGMENT
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(path.read_bytes()[: kept.end])
    before = files_of(tmp_path)
    with pytest.raises(JournalTailAcknowledged) as caught:
        recover(tmp_path, standard_genesis())
    assert (caught.value.offset, caught.value.seq) == (kept.end, kept.last_seq + 1)
    assert f"{snapshot.name} was taken after record {live.last.last_seq}" in str(caught.value)
    assert files_of(tmp_path) == before


async def test_the_running_exchange_refuses_to_cut_a_batch_its_ledger_settled(tmp_path):
    async with exchange_on_port(data_dir=str(tmp_path)) as gateway:
        async with (
            session(gateway, "bank", cancel_on_disconnect=False) as bank,
            session(gateway, "broker", cancel_on_disconnect=False) as broker,
        ):
            await bank.new_order("EUA", "S", 5, 7000, client_order_id="s1")
            await broker.new_order("EUA", "B", 2, 7000, client_order_id="b1")  # a trade: settled
    shutil.rmtree(tmp_path / SNAPSHOT_DIR)  # the ledger is the only evidence left
    path = tmp_path / FIRST_SEGMENT
    path.parent.mkdir(parents=True, exist_ok=True)
    records = record_offsets(path.read_bytes())
    offset, seq, _ = records[-1]
    damaged = flip(path, offset + 5)  # the last commit record: the trade's batch
    with pytest.raises(ConfigError, match=f"record {seq} at byte {offset} cannot be read .*the ledger has settled"):
        async with exchange_on_port(data_dir=str(tmp_path)):
            pass
    assert path.read_bytes() == damaged


# -- 3. commands journaled since the newest snapshot -----------------------------------------------------


def test_recovery_reports_the_commands_journaled_since_the_newest_snapshot(tmp_path):
    live = Live.create(tmp_path)
    live.open_accounts()
    flow = rows(200, seed=53)
    live.order_flow(flow[:80])
    older = live.snapshot(tmp_path)
    live.order_flow(flow[80:140])
    after_older = len(live.committed)
    newer = live.snapshot(tmp_path)
    live.order_flow(flow[140:])
    live.close()
    at_older = next(
        index for index, batch in enumerate(live.committed) if batch.last_seq == read_snapshot(older)[0].record_seq
    )
    since_newer = sum(commands_in(batch.bodies) for batch in live.committed[after_older:])
    since_older = sum(commands_in(batch.bodies) for batch in live.committed[at_older + 1 :])
    everything = sum(commands_in(batch.bodies) for batch in live.committed[1:])
    assert 0 < since_newer < since_older < everything

    recovered = recover(tmp_path, standard_genesis())
    assert recovered.report.snapshot.path == newer
    assert recovered.commands_since_snapshot == recovered.report.commands == since_newer
    assert recovered.report.fields()["commands_since_snapshot"] == since_newer
    recovered.journal.close()

    # The newest snapshot ahead of the ledger: the start replays from the older one (and settles), but
    # the newest is usable from now on, so the count is the commands after it.
    settled: list = []
    recovered = recover(
        tmp_path, standard_genesis(), ledger_cursor=read_snapshot(older)[0].event_seq, settle=settled.extend
    )
    assert recovered.report.snapshot.path == older and recovered.report.commands == since_older
    assert recovered.commands_since_snapshot == since_newer
    recovered.journal.close()

    # No snapshot: everything the journal holds counts.
    shutil.rmtree(tmp_path / SNAPSHOT_DIR)
    recovered = recover(tmp_path, standard_genesis())
    assert recovered.commands_since_snapshot == recovered.report.commands == everything
    recovered.journal.close()


def test_a_new_journal_has_no_commands_since_a_snapshot(tmp_path):
    recovered = recover(tmp_path, standard_genesis())
    assert recovered.report.created and recovered.commands_since_snapshot == 0
    recovered.journal.close()


async def test_the_gateway_counts_towards_the_next_snapshot_from_the_newest_one(tmp_path):
    async with exchange_on_port(data_dir=str(tmp_path), snapshot_every=0) as gateway:
        async with session(gateway, "bank", cancel_on_disconnect=False) as bank:
            for number in range(30):
                await bank.new_order("EUA", "S", 1, 7100 + number)
    shutil.rmtree(tmp_path / SNAPSHOT_DIR)  # as after crashes: no snapshot since the journal began
    path = tmp_path / FIRST_SEGMENT
    path.parent.mkdir(parents=True, exist_ok=True)
    since = replay_journal(path, journal_genesis_and_id(path)[0])[1].commands
    async with exchange_on_port(data_dir=str(tmp_path), snapshot_every=since + 3) as gateway:
        async with session(gateway, "bank", cancel_on_disconnect=False) as bank:
            for number in range(5):  # 3 more commands make a snapshot due: counted from 0, it never is
                await bank.new_order("EUA", "S", 1, 7200 + number)
    assert gateway.snapshots.taken == 2  # the periodic one (the stop waits for it) and the stop's


# -- 4. a full disk ------------------------------------------------------------------------------------


def journal_with_a_torn_tail(data_dir: Path) -> Live:
    live, _ = standard_journal(data_dir, orders=120, snapshot_after=60)
    live.close()
    with open(data_dir / FIRST_SEGMENT, "ab") as file:
        file.write(b"\x00\x00\x00\x30 half a record")  # a crash in the middle of writing a batch
    return live


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("call", ["write", "fsync", "ftruncate"])
def test_a_start_on_a_full_disk_is_refused_and_changes_nothing(tmp_path, monkeypatch, call):
    journal_with_a_torn_tail(tmp_path)
    before = files_of(tmp_path)
    monkeypatch.setattr(os, call, disk_full)
    with pytest.raises(JournalError) as caught:
        recover(tmp_path, standard_genesis())
    monkeypatch.undo()
    assert "No space left on device" in str(caught.value) and "\n" not in str(caught.value)
    assert files_of(tmp_path) == before  # the torn tail still there, no probe file left behind
    recovered = recover(tmp_path, standard_genesis())  # with room again, it starts and cuts the tail
    assert recovered.report.torn_bytes > 0
    recovered.journal.close()


@pytest.mark.parametrize("call", ["write", "fsync", "replace"])
@pytest.mark.parametrize("content", ["none", "genesis_without_commit"])
def test_a_new_journal_on_a_full_disk_is_not_begun(tmp_path, monkeypatch, call, content):
    path = tmp_path / FIRST_SEGMENT
    path.parent.mkdir(parents=True, exist_ok=True)
    if content == "genesis_without_commit":
        scratch = tmp_path / "scratch"
        Live.create(scratch).close()
        written = (scratch / FIRST_SEGMENT).read_bytes()
        shutil.rmtree(scratch)
        path.write_bytes(written[: record_offsets(written)[-1][0]])  # the genesis whole, its commit lost
    before = files_of(tmp_path)
    monkeypatch.setattr(os, call, disk_full)
    with pytest.raises(JournalError, match="No space left on device"):
        recover(tmp_path, standard_genesis())
    monkeypatch.undo()
    assert files_of(tmp_path) == before
    recovered = recover(tmp_path, standard_genesis())
    assert recovered.report.created
    recovered.journal.close()


def test_a_ledger_that_cannot_be_written_during_the_replay_changes_nothing_in_the_journal(tmp_path):
    journal_with_a_torn_tail(tmp_path)
    shutil.rmtree(tmp_path / SNAPSHOT_DIR)
    before = files_of(tmp_path)

    def ledger_full(events: list) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    with pytest.raises(
        JournalError,
        match="settling the replayed events in the ledger failed "
        r"\(database or disk is full\)",
    ):
        recover(tmp_path, standard_genesis(), settle=ledger_full)
    assert files_of(tmp_path) == before


# The exchange process with the disk full: the calls patched before gateway.cli.main runs `carbonx serve`.
FULL_DISK = """
import errno, os, sys
def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
setattr(os, sys.argv[1], full)
from gateway.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("call", ["write", "fsync", "ftruncate"])
async def test_carbonx_serve_on_a_full_disk_says_so_in_one_line_and_changes_nothing(tmp_path, call):
    async with exchange_on_port(data_dir=str(tmp_path)) as gateway:
        async with session(gateway, "bank", cancel_on_disconnect=False) as bank:
            await bank.new_order("EUA", "S", 2, 7100)
    path = tmp_path / FIRST_SEGMENT
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as file:
        file.write(b"\x00\x00\x00\x30 half a record")
    journal = path.read_bytes()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            FULL_DISK,
            call,
            "serve",
            "--data-dir",
            str(tmp_path),
            "--host",
            HOST,
            "--port",
            "0",
            "--log-level",
            "WARNING",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("carbonx: configuration error: journal.data_dir: ") and "No space left" in lines[0]
    assert path.read_bytes() == journal
    assert not (tmp_path / ROOM_PROBE).exists()
