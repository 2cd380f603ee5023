"""Snapshots and start-up: the exchange's state rebuilt from its journal, exactly.

How this works
--------------
A data directory holds the journal (``journal.cxj``, :mod:`gateway.journal`),
snapshots (``snapshots/snapshot-<seq>.cxs``) and the settlement ledger.

A snapshot is the whole :class:`gateway.sequencer.Sequencer` (engine, order
tracker, market-data feed, outbound numbering and resend store) as of the end
of a committed batch, pickled, behind a header naming the journal it belongs
to, the seq of that batch's commit record, the journal offset just after it
and the engine's event seq, with a CRC-32 of the body. It is written to a
temporary file, fsynced, renamed into place, and the directory fsynced, so a
snapshot file is either whole or absent. It is only ever taken once the
journal is synced up to it. The journal stays the truth: a snapshot is a
shortcut, and a snapshot that is damaged, from another journal, from an
older program version (``SNAPSHOT_FORMAT``), or ahead of the ledger is passed
over for an older one, down to a replay of the whole journal.

Start-up (:func:`recover`): the newest usable snapshot, then every committed
batch of the journal after it, through the same ``Sequencer`` calls the live
gateway makes. A torn tail (a crash in the middle of writing a batch that
was never acknowledged) is cut off with a warning; damage followed by valid
records is refused (:class:`gateway.journal.JournalCorrupt`). Events the
ledger has not applied yet are settled as the replay produces them, so the
ledger resumes after its last applied event, exactly once.
"""
from __future__ import annotations

import gc
import logging
import os
import pickle
import signal
import struct
import time
import traceback
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from .journal import (EXECUTE, GENESIS, HEADER, OPERATOR, SESSION, SKIP, Genesis, JournalError, JournalReader,
                      JournalWriter, ScanResult, decode_command, fsync_path, read_genesis, truncate)
from .logs import log_event
from .sequencer import Sequencer

log = logging.getLogger("carbonx.recovery")

JOURNAL_NAME = "journal.cxj"
LEDGER_NAME = "ledger.sqlite3"
SNAPSHOT_DIR = "snapshots"
SNAPSHOT_MAGIC = b"CXSNAP01"
SNAPSHOT_FORMAT = 2  # raised whenever the pickled classes change shape: older snapshots are then passed over
SNAPSHOT_HEADER = struct.Struct(">8sI16sQQQII")  # magic, format, journal id, record seq, offset, event seq, crc, -
SNAPSHOTS_KEPT = 3
SETTLE_CHUNK = 20_000  # events settled in one ledger transaction during replay


@dataclass(frozen=True)
class SnapshotInfo:
    path: Path
    record_seq: int  # seq of the commit record the snapshot follows
    offset: int  # journal offset just after that record
    event_seq: int  # the engine's last event seq
    journal_id: bytes


@dataclass
class RecoveryReport:
    """What start-up found and did; logged, and printed by ``carbonx replay``."""

    journal: Path
    created: bool = False
    snapshot: SnapshotInfo | None = None
    snapshots_passed_over: list[str] = field(default_factory=list)
    batches: int = 0
    records: int = 0
    commands: int = 0
    last_seq: int = 0
    torn_bytes: int = 0
    torn_reason: str | None = None
    settled_events: int = 0
    seconds: float = 0.0
    command_counts: dict[str, int] = field(default_factory=dict)

    def fields(self) -> dict:
        return {"journal": str(self.journal), "created": self.created,
                "snapshot": None if self.snapshot is None else self.snapshot.path.name,
                "snapshots_passed_over": self.snapshots_passed_over, "batches": self.batches,
                "records": self.records, "commands": self.commands, "last_seq": self.last_seq,
                "torn_bytes": self.torn_bytes, "torn_reason": self.torn_reason,
                "settled_events": self.settled_events, "seconds": round(self.seconds, 3)}


@dataclass
class Recovered:
    core: Sequencer
    journal: JournalWriter
    genesis: Genesis
    report: RecoveryReport


def new_sequencer(genesis: Genesis) -> Sequencer:
    return Sequencer(genesis.instruments, genesis.compliance, genesis.md_levels, genesis.settlement_window,
                     genesis.resend_window)


# -- replay ------------------------------------------------------------------------------------

def apply_record(core: Sequencer, body: list, counts: dict[str, int] | None = None) -> int:
    """Carry out one journal record (not a commit) on the sequencer; the number of commands in it."""
    kind = body[0]
    if kind == EXECUTE:
        inputs = [(account, request_id, decode_command(command)) for account, request_id, command in body[1]]
        core.execute(inputs)
        commands = [command for _, _, command in inputs]
    elif kind == OPERATOR:
        commands = [decode_command(command) for command in body[1]]
        core.operator(commands)
    elif kind == SKIP:
        core.skip(body[1], body[2])
        return 0
    elif kind == SESSION:
        core.session_started(body[1])
        return 0
    elif kind == GENESIS:
        return 0
    else:
        raise JournalError(f"record kind {kind!r} cannot be replayed")
    if counts is not None:
        for command in commands:
            name = command.__class__.__name__
            counts[name] = counts.get(name, 0) + 1
    return len(commands)


def replay_batches(core: Sequencer, batches: Iterator[tuple[int, int, list[list]]], report: RecoveryReport,
                   settle: Callable[[list], None] | None, ledger_cursor: int) -> None:
    """Apply committed batches as the gateway did (one ``commit`` each), settling events past the cursor."""
    core.replaying = True
    unsettled: list = []
    try:
        for last_seq, _, bodies in batches:
            for body in bodies:
                report.commands += apply_record(core, body, report.command_counts)
            report.records += len(bodies) + 1
            report.batches += 1
            report.last_seq = last_seq
            events, _, _ = core.commit()
            if settle is not None and events and events[-1].seq > ledger_cursor:
                unsettled += [event for event in events if event.seq > ledger_cursor]
                if len(unsettled) >= SETTLE_CHUNK:
                    settle(unsettled)
                    report.settled_events += len(unsettled)
                    unsettled = []
        if settle is not None and unsettled:
            settle(unsettled)
            report.settled_events += len(unsettled)
    finally:
        core.replaying = False


# -- snapshots ------------------------------------------------------------------------------------

def snapshot_bytes(core: Sequencer, journal_id: bytes, record_seq: int, offset: int) -> bytes:
    """The snapshot file's bytes for the sequencer as it is now (call between batches, journal synced)."""
    body = pickle.dumps(core, protocol=pickle.HIGHEST_PROTOCOL)
    header = SNAPSHOT_HEADER.pack(SNAPSHOT_MAGIC, SNAPSHOT_FORMAT, journal_id, record_seq, offset,
                                  core.engine.counters.seq, zlib.crc32(body), 0)
    return header + body


def snapshot_path(data_dir: Path, record_seq: int) -> Path:
    return data_dir / SNAPSHOT_DIR / f"snapshot-{record_seq:012d}.cxs"


def write_snapshot(data_dir: Path, record_seq: int, data: bytes) -> Path:
    """Write a snapshot durably (temporary file, fsync, rename, directory fsync); keep the newest few."""
    final = snapshot_path(data_dir, record_seq)
    directory = final.parent
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".{final.name}.tmp"
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, final)
    fsync_path(directory)
    for old in sorted(directory.glob("snapshot-*.cxs"))[:-SNAPSHOTS_KEPT]:
        old.unlink()
    return final


def fork_snapshot(core: Sequencer, journal_id: bytes, record_seq: int, offset: int, data_dir: Path) -> int:
    """Write a snapshot from a forked copy of this process; returns the child's pid at once.

    The child sees the state exactly as it is at the fork (copy-on-write),
    pickles and writes it, and exits with status 0 (1 on any failure, after
    printing why on stderr). The caller goes on matching meanwhile and
    collects the child with ``os.waitpid``. This is how Redis writes its
    snapshots: the market pauses for the fork (milliseconds), not for the
    copy (a second or more for a large state). The child blocks SIGINT and
    SIGTERM, so that a Ctrl-C meant for the exchange does not cut a snapshot
    half way (its temporary file would stay behind, harmless), and it never
    runs the parent's clean-up (``os._exit``).
    """
    pid = os.fork()
    if pid:
        return pid
    status = 1
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        # The parent's files stay the parent's: its sockets, the data directory's lock (a restart after the
        # parent died must not wait for this child), the journal. Standard streams stay for diagnostics.
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        gc.disable()  # a collection would touch, and so copy, every page of the parent's heap
        write_snapshot(data_dir, record_seq, snapshot_bytes(core, journal_id, record_seq, offset))
        status = 0
    except BaseException:  # noqa: BLE001 - the child reports through its exit status
        traceback.print_exc()
    finally:
        os._exit(status)


def snapshot_files(data_dir: Path) -> list[Path]:
    """Snapshot files, newest first."""
    directory = data_dir / SNAPSHOT_DIR
    return sorted(directory.glob("snapshot-*.cxs"), reverse=True) if directory.is_dir() else []


def _parse_header(path: Path, data: bytes) -> tuple[SnapshotInfo, int]:
    if len(data) < SNAPSHOT_HEADER.size:
        raise JournalError("shorter than its header")
    magic, version, journal_id, record_seq, offset, event_seq, crc, _ = SNAPSHOT_HEADER.unpack_from(data)
    if magic != SNAPSHOT_MAGIC:
        raise JournalError("not a carbonx snapshot")
    if version != SNAPSHOT_FORMAT:
        raise JournalError(f"format {version}, this program reads {SNAPSHOT_FORMAT}")
    return SnapshotInfo(path, record_seq, offset, event_seq, journal_id), crc


def read_snapshot_header(path: Path) -> SnapshotInfo:
    """A snapshot's header alone (cheap: the body is not read); raises JournalError if it is not one."""
    with open(path, "rb") as file:
        return _parse_header(path, file.read(SNAPSHOT_HEADER.size))[0]


def read_snapshot(path: Path) -> tuple[SnapshotInfo, Sequencer]:
    """A snapshot's header and sequencer; raises JournalError saying why it cannot be used."""
    data = path.read_bytes()
    info, crc = _parse_header(path, data)
    body = memoryview(data)[SNAPSHOT_HEADER.size:]
    if zlib.crc32(body) != crc:
        raise JournalError("CRC mismatch")
    try:
        core = pickle.loads(body)
    except Exception as error:  # a snapshot from another version of the classes: passed over, never fatal
        raise JournalError(f"cannot be loaded: {error!r}") from error
    if not isinstance(core, Sequencer):
        raise JournalError("does not hold a sequencer")
    return info, core


# -- start-up ---------------------------------------------------------------------------------------

def recover(data_dir: Path, genesis: Genesis, *, ledger_cursor: int = 0,
            settle: Callable[[list], None] | None = None) -> Recovered:
    """Open the data directory's journal (creating it with ``genesis`` if there is none) and rebuild the state.

    ``ledger_cursor``: the ledger's last applied event seq; events after it
    are passed to ``settle`` as the replay makes them, and a snapshot past
    it is not used. A torn tail is cut off. Raises JournalError (or
    JournalCorrupt) when the journal cannot be used as it is.
    """
    started = time.perf_counter()
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / JOURNAL_NAME
    journal_genesis, journal_id = journal_genesis_and_id(path)
    if journal_genesis is None:
        if ledger_cursor:
            raise JournalError(f"the ledger has settled events up to seq {ledger_cursor} but {path} holds no "
                               "journal: the ledger belongs to another journal")
        if path.exists():
            path.unlink()  # a header or genesis never committed: nothing was ever acknowledged
        writer = JournalWriter.create(path, genesis)
        report = RecoveryReport(path, created=True, last_seq=writer.next_seq - 1,
                                seconds=time.perf_counter() - started)
        return Recovered(new_sequencer(genesis), writer, genesis, report)
    differences = journal_genesis.differences(genesis)
    if differences:
        raise JournalError(f"{path} was started with other terms (instruments, compliance, market data, resend "
                           f"window) than the configuration's ({'; '.join(differences)}); start it with the terms "
                           "it was made with, or give a new data directory")
    # After a crash the file's last writes may sit only in the page cache: sync them before replaying, so
    # that nothing settled or resent from this replay can be lost to a power cut afterwards.
    fsync_path(path)
    passed_over: list[str] = []
    snapshot = newest_snapshot(path, journal_id, ledger_cursor if settle else None, passed_over)
    core, report, result = replay_journal(path, journal_genesis, snapshot, settle=settle, ledger_cursor=ledger_cursor)
    report.snapshots_passed_over = passed_over
    if result.torn_bytes:
        log_event(log, "journal_torn_tail", logging.WARNING, journal=str(path), offset=result.committed_end,
                  bytes=result.torn_bytes, reason=result.torn_reason)
        truncate(path, result.committed_end)
    if ledger_cursor > core.engine.counters.seq:
        raise JournalError(f"the ledger has settled events up to seq {ledger_cursor}, past the journal's last "
                           f"event {core.engine.counters.seq}: the ledger belongs to another journal, or the "
                           "journal lost acknowledged records")
    writer = JournalWriter(path, result.last_seq + 1, result.committed_end, journal_id)
    report.seconds = time.perf_counter() - started
    return Recovered(core, writer, journal_genesis, report)


def replay_journal(path: Path, genesis: Genesis, snapshot: tuple[SnapshotInfo, Sequencer] | None = None, *,
                   settle: Callable[[list], None] | None = None, ledger_cursor: int = 0
                   ) -> tuple[Sequencer, RecoveryReport, ScanResult]:
    """Rebuild the state from a journal (after ``snapshot`` if given), reading only: nothing is cut or written."""
    started = time.perf_counter()
    report = RecoveryReport(path)
    if snapshot is None:
        core, offset, expect_seq = new_sequencer(genesis), None, 1
    else:
        info, core = snapshot
        offset, expect_seq = info.offset, info.record_seq + 1
        report.snapshot = info
    reader = JournalReader(path)
    replay_batches(core, reader.batches(offset, expect_seq), report, settle, ledger_cursor)
    result = reader.result
    report.last_seq = result.last_seq
    report.torn_bytes, report.torn_reason = result.torn_bytes, result.torn_reason
    report.seconds = time.perf_counter() - started
    return core, report, result


def newest_snapshot(journal: Path, journal_id: bytes, ledger_cursor: int | None,
                    passed_over: list[str]) -> tuple[SnapshotInfo, Sequencer] | None:
    """The newest snapshot beside the journal that belongs to it, ends on one of its commit records (the
    record after it, if any, is the next seq) and (given a ledger cursor) that the ledger has settled up
    to; each one passed over is described in ``passed_over``."""
    for candidate in snapshot_files(journal.parent):
        try:
            info = read_snapshot_header(candidate)
            if info.journal_id != journal_id:
                raise JournalError("belongs to another journal")
            mismatch = _journal_mismatch(journal, info.offset, info.record_seq + 1)
            if mismatch:
                raise JournalError(mismatch)
            if ledger_cursor is not None and info.event_seq > ledger_cursor:
                raise JournalError("the ledger has not settled up to it")
            _, core = read_snapshot(candidate)
        except (JournalError, OSError) as refused:
            passed_over.append(f"{candidate.name}: {refused}")
            continue
        return info, core
    return None


def _journal_mismatch(journal: Path, offset: int, seq: int) -> str | None:
    """None if ``offset`` is the journal's end or the start of its record ``seq`` (a header check); else why not."""
    with open(journal, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if offset == size:
            return None
        if offset > size:
            return "past the journal's end"
        file.seek(offset)
        header = file.read(HEADER.size)
    if len(header) == HEADER.size and HEADER.unpack(header)[2] == seq:
        return None
    return "does not end on a record of the journal as it is now"


def journal_genesis_and_id(path: Path) -> tuple[Genesis | None, bytes]:
    """The journal's genesis and id, or (None, b"") when the file holds no committed genesis."""
    if not path.exists():
        return None, b""
    batches = JournalReader(path).batches()
    try:
        for _, _, bodies in batches:
            return read_genesis(bodies[0]), journal_id_of(bodies[0])
    finally:
        batches.close()
    return None, b""


def journal_id_of(genesis_body: list) -> bytes:
    """The journal's identity: its genesis record's random id (snapshots name the journal they belong to)."""
    return bytes(genesis_body[1]["journal_id"])
