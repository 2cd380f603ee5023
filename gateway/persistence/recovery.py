"""Snapshots and start-up: the exchange's state rebuilt from its journal, exactly.

How this works
--------------
A data directory holds the journal (its segments and archives in ``journal/``,
:mod:`gateway.persistence.journal`, :mod:`gateway.persistence.segments`),
snapshots (``snapshots/snapshot-<seq>.cxs``) and the settlement ledger.

A snapshot is the whole :class:`gateway.pipeline.sequencer.Sequencer` (engine, order
tracker, market-data feed, outbound numbering and resend store) as of the end
of a committed batch, pickled, behind a header naming the journal it belongs
to, the seq of that batch's commit record, the offset just after it in the
segment that holds it, and the engine's event seq, with a CRC-32 of the body. It is written to a
temporary file, fsynced, renamed into place, and the directory fsynced, so a
snapshot file is either whole or absent. It is only ever taken once the
journal is synced up to it. The journal stays the truth: a snapshot is a
shortcut, and a snapshot that is damaged, from another journal, from an
older program version (``SNAPSHOT_FORMAT``), ahead of the ledger, or taken
before the journal's first record kept (archives removed after their
retention) is passed over for an older one, down to a replay of the whole
journal.

Start-up (:func:`recover`) checks before it changes anything, then replays:

0. a data directory from before segments has its ``journal.cxj`` moved into
   place as the first segment;
1. the journal's genesis (its first segment's) against the configured terms;
2. room to write: a probe file in the data directory, written and synced;
3. every record of every segment not yet archived, from the first to the end
   of the file (:func:`gateway.persistence.journal.scan_journal`: framing, CRC,
   seqs), the part a snapshot covers included. Damage followed by valid
   records is refused (:class:`gateway.persistence.errors.JournalCorrupt`), as
   is any damage in a segment before the last, or records missing between
   two segments (archives are checked as they are read);
4. every snapshot of this journal against it: the record seq and offset it
   names must be where its segment has that commit record;
5. what lies after the last commit record (a crash's unfinished batch, a
   torn tail) against the durable evidence of what was acknowledged: a
   snapshot past that commit record, and, after the replay, a ledger that
   settled events past it. Evidence refuses the start
   (:class:`gateway.persistence.errors.JournalTailAcknowledged`): a cut would drop
   acknowledged batches;
6. the replay: the newest usable snapshot, then every committed batch after
   it, through the same ``Sequencer`` calls the live gateway makes; events
   the ledger has not applied yet are settled as the replay produces them,
   so the ledger resumes after its last applied event, exactly once.

Only then is a torn tail cut off (with a warning). A failure to write, sync
or cut (a full disk) is a :class:`gateway.persistence.errors.JournalError` saying so;
the journal is as it was found. The result says how many commands were
journaled after the newest snapshot (``commands_since_snapshot``): the
gateway's count towards the next periodic snapshot starts there.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import os
import pickle
import signal
import sqlite3
import struct
import time
import traceback
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from exchange import COMPILED
from gateway.logs import log_event
from gateway.persistence.errors import JournalCorrupt, JournalError, JournalTailAcknowledged
from gateway.persistence.journal import (
    EXECUTE,
    GENESIS,
    HEADER,
    OPERATOR,
    SESSION,
    SKIP,
    Genesis,
    JournalReader,
    JournalScan,
    JournalWriter,
    ScanResult,
    decode_command,
    first_batch,
    read_genesis,
    scan_journal,
    truncate,
)
from gateway.persistence.segments import (
    FIRST_SEGMENT,
    Segment,
    fsync_path,
    journal_dir,
    journal_segments,
    move_legacy_journal,
    segments_at,
)
from gateway.pipeline.sequencer import Sequencer

log = logging.getLogger("carbonx.recovery")

LEDGER_NAME = "ledger.sqlite3"
SNAPSHOT_DIR = "snapshots"
SNAPSHOT_MAGIC = b"CXSNAP01"
SNAPSHOT_FORMAT = 9 + 1000 * COMPILED  # raised when the pickled classes change shape (older ones are passed over)
SNAPSHOT_HEADER = struct.Struct(">8sI16sQQQII")  # magic, format, journal id, record seq, offset, event seq, crc, -
SNAPSHOTS_KEPT = 3
SETTLE_CHUNK = 20_000  # events settled in one ledger transaction during replay
ROOM_PROBE = "start-probe.tmp"  # written, synced and removed at start-up: is there room to write?
ROOM_PROBE_BYTES = 256 << 10  # random bytes, so that a compressing file system stores them all


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
    # Commands journaled after the newest snapshot (all of them if there is none): the gateway counts on
    # from here towards ``snapshot_every``.
    commands_since_snapshot: int = 0
    checked_records: int = 0  # records the start-up check read (the whole journal)
    check_seconds: float = 0.0  # the time it took

    def fields(self) -> dict:
        return {
            "journal": str(self.journal),
            "created": self.created,
            "snapshot": None if self.snapshot is None else self.snapshot.path.name,
            "snapshots_passed_over": self.snapshots_passed_over,
            "batches": self.batches,
            "records": self.records,
            "commands": self.commands,
            "last_seq": self.last_seq,
            "commands_since_snapshot": self.commands_since_snapshot,
            "torn_bytes": self.torn_bytes,
            "torn_reason": self.torn_reason,
            "settled_events": self.settled_events,
            "checked_records": self.checked_records,
            "check_seconds": round(self.check_seconds, 3),
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Recovered:
    core: Sequencer
    journal: JournalWriter
    genesis: Genesis
    report: RecoveryReport

    @property
    def commands_since_snapshot(self) -> int:
        """Commands journaled after the newest snapshot: where the gateway's count towards the next one starts."""
        return self.report.commands_since_snapshot


def new_sequencer(genesis: Genesis) -> Sequencer:
    return Sequencer(
        genesis.instruments, genesis.compliance, genesis.md_levels, genesis.resend_window, futures=genesis.futures
    )


# -- replay ------------------------------------------------------------------------------------


def apply_record(core: Sequencer, body: list, counts: dict[str, int] | None = None) -> int:
    """Carry out one journal record (not a commit) on the sequencer; the number of commands in it."""
    kind = body[0]
    if kind == EXECUTE:
        inputs = [(account, request_id, decode_command(command)) for account, request_id, command in body[1]]
        core.execute(inputs, [])  # the replayed messages are numbered and kept for resend, not sent
        commands = [command for _, _, command in inputs]
    elif kind == OPERATOR:
        commands = [decode_command(command) for command in body[1]]
        core.operator(commands, [])
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


def replay_batches(
    core: Sequencer,
    batches: Iterator[tuple[int, int, list[list]]],
    report: RecoveryReport,
    settle: Callable[[list], object] | None,
    ledger_cursor: int,
    counted_after: int = 0,
) -> None:
    """Apply committed batches as the gateway did (one ``commit`` each), settling events past the cursor;
    the commands of batches after record ``counted_after`` are counted in ``commands_since_snapshot``."""
    core.replaying = True
    unsettled: list = []
    try:
        for last_seq, _, bodies in batches:
            commands = 0
            for body in bodies:
                commands += apply_record(core, body, report.command_counts)
            report.commands += commands
            if last_seq > counted_after:
                report.commands_since_snapshot += commands
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
    header = SNAPSHOT_HEADER.pack(
        SNAPSHOT_MAGIC, SNAPSHOT_FORMAT, journal_id, record_seq, offset, core.engine.last_seq, zlib.crc32(body), 0
    )
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
    body = memoryview(data)[SNAPSHOT_HEADER.size :]
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


def recover(
    data_dir: Path, genesis: Genesis, *, ledger_cursor: int = 0, settle: Callable[[list], object] | None = None
) -> Recovered:
    """Open the data directory's journal (creating it with ``genesis`` if there is none) and rebuild the state.

    ``ledger_cursor``: the ledger's last applied event seq; events after it
    are passed to ``settle`` as the replay makes them, and a snapshot past
    it is not used. Everything is checked before the journal is changed
    (see the module notes); then a torn tail is cut off. Raises JournalError
    (JournalCorrupt, JournalTailAcknowledged) when the journal cannot be
    used as it is, or cannot be written: the journal is then as it was found.
    """
    started = time.perf_counter()
    data_dir.mkdir(parents=True, exist_ok=True)
    move_legacy_journal(data_dir)
    for left in journal_dir(data_dir).glob(".segment-*.new"):  # a segment being made when the exchange stopped
        with contextlib.suppress(OSError):
            left.unlink()
    segments = journal_segments(journal_dir(data_dir))
    journal_genesis, journal_id = journal_genesis_and_id(segments)
    if journal_genesis is None:
        return _new_journal(data_dir, genesis, segments, ledger_cursor, started)
    last = segments[-1]
    path = last.path
    if last.archived:
        raise JournalError(f"{path}: the journal's last segment is an archive; its segment is missing, or was moved")
    differences = journal_genesis.differences(genesis)
    if differences:
        raise JournalError(
            f"{path} was started with other terms (instruments, compliance, market data, resend "
            f"window) than the configuration's ({'; '.join(differences)}); start it with the terms "
            "it was made with, or give a new data directory"
        )
    check_room(data_dir)
    # After a crash the file's last writes may sit only in the page cache: sync them before replaying, so
    # that nothing settled or resent from this replay can be lost to a power cut afterwards. (The segments
    # before it were synced when they were closed.)
    try:
        fsync_path(path)
    except OSError as error:
        raise JournalError(f"{path}: syncing the journal as found failed ({error}); nothing was changed") from error

    files = snapshot_files(data_dir)
    reasons: dict[Path, str] = {}  # snapshot file -> why it is not used
    snapshots = _snapshots_of(files, journal_id, reasons)
    checking = time.perf_counter()
    scans = _scan_segments(segments, snapshots)
    check_seconds = time.perf_counter() - checking
    scan = scans[last]
    _check_snapshots_agree(segments, scans, snapshots)
    snapshot, counted_after = _usable_snapshot(
        snapshots, ledger_cursor if settle else None, reasons, segments[0].first_seq
    )

    core, report, result = replay_journal(
        segments,
        journal_genesis,
        snapshot,
        settle=_settling(settle),
        ledger_cursor=ledger_cursor,
        end=scan.committed_end,
        counted_after=counted_after,
        journal_id=journal_id,
    )
    if result.committed_end != scan.committed_end:  # a record that passed its CRC and does not replay
        raise JournalError(
            f"{path}: the batches from byte {result.committed_end} on cannot be replayed "
            f"({result.torn_reason}); nothing was changed"
        )
    chosen = None if snapshot is None else snapshot[0].path
    report.snapshots_passed_over = [
        f"{candidate.name}: {reasons[candidate]}"
        for candidate in itertools.takewhile(lambda each: each != chosen, files)
        if candidate in reasons
    ]
    report.torn_bytes, report.torn_reason = scan.torn_bytes, scan.torn_reason
    report.checked_records = sum(each.records for each in scans.values())
    report.check_seconds = check_seconds
    if ledger_cursor > core.engine.last_seq:
        if scan.torn_bytes:
            raise JournalTailAcknowledged(
                path,
                *_tail_problem(scan),
                scan.committed_end,
                f"the ledger has settled events up to seq {ledger_cursor}, past the last event of the batches "
                f"before it ({core.engine.last_seq})",
            )
        raise JournalError(
            f"the ledger has settled events up to seq {ledger_cursor}, past the journal's last "
            f"event {core.engine.last_seq}: the ledger belongs to another journal, or the "
            "journal lost acknowledged records"
        )
    if scan.torn_bytes:  # every check has passed: nothing durable shows the tail was acknowledged
        truncate(path, scan.committed_end)
        log_event(
            log,
            "journal_torn_tail",
            logging.WARNING,
            journal=str(path),
            offset=scan.committed_end,
            bytes=scan.torn_bytes,
            reason=scan.torn_reason,
        )
    try:
        writer = JournalWriter(path, scan.last_seq + 1, scan.committed_end, journal_id, journal_genesis)
    except OSError as error:
        raise JournalError(f"{path}: the journal cannot be opened for writing: {error}") from error
    report.seconds = time.perf_counter() - started
    return Recovered(core, writer, journal_genesis, report)


def _new_journal(
    data_dir: Path, genesis: Genesis, segments: list[Segment], ledger_cursor: int, started: float
) -> Recovered:
    """A start with no committed genesis: a new journal (the first segment, if one is there, never
    committed its genesis: nothing was ever acknowledged, and it is replaced whole)."""
    if segments and (len(segments) > 1 or segments[0].first_seq != 1):
        raise JournalError(
            f"{segments[0].path} holds no committed genesis record, yet it is not the first segment of a new "
            "journal alone: damaged, or not a carbonx journal. Nothing was changed"
        )
    if ledger_cursor:
        raise JournalError(
            f"the ledger has settled events up to seq {ledger_cursor} but {data_dir} holds no "
            "journal: the ledger belongs to another journal"
        )
    check_room(data_dir)
    writer = JournalWriter.create(data_dir / FIRST_SEGMENT, genesis, replace=True)
    report = RecoveryReport(writer.path, created=True, last_seq=writer.next_seq - 1)
    report.seconds = time.perf_counter() - started
    return Recovered(new_sequencer(genesis), writer, genesis, report)


def _holder(segments: list[Segment], record_seq: int) -> Segment | None:
    """The segment holding record ``record_seq`` (None: one before the journal's first)."""
    holder = None
    for segment in segments:
        if segment.first_seq > record_seq:
            break
        holder = segment
    return holder


def _scan_segments(
    segments: list[Segment], snapshots: list[tuple[SnapshotInfo, str | None]]
) -> dict[Segment, JournalScan]:
    """Every segment not yet archived checked whole (:func:`scan_journal`), each at the offsets of the
    snapshots taken in it. A segment before the last must end with a commit record, and each must begin
    where the one before it ends: otherwise JournalCorrupt (the records are damaged or missing)."""
    scans: dict[Segment, JournalScan] = {}
    previous: JournalScan | None = None
    for segment in segments:
        if segment.archived:  # checked as it is read, if a replay reaches back to it
            previous = None
            continue
        checkpoints = [info.offset for info, _ in snapshots if _holder(segments, info.record_seq) == segment]
        scan = scan_journal(segment.path, checkpoints, segment.first_seq)
        if previous is not None and previous.last_seq + 1 != segment.first_seq:
            raise JournalCorrupt(
                segment.path,
                0,
                previous.last_seq + 1,
                "missing",
                (
                    f"{segment.path}: the segment before it ends with record {previous.last_seq}, and this one begins "
                    f"with record {segment.first_seq}: records are missing between them. Nothing was changed; "
                    "restore the journal's segments from a copy"
                ),
            )
        if segment != segments[-1] and scan.torn_bytes:
            offset, seq, reason = _tail_problem(scan)
            raise JournalCorrupt(
                segment.path,
                offset,
                seq,
                reason,
                (
                    f"{segment.path}: record {seq} at byte {offset} cannot be read ({reason}), and later segments "
                    "follow: a closed segment ends whole, so this is damage, not a crash's torn tail. Nothing was "
                    "changed; restore the segment from a copy"
                ),
            )
        scans[segment] = previous = scan
    return scans


def check_room(data_dir: Path) -> None:
    """Refuse to start (JournalError) unless the data directory takes a test write: a probe file of
    ROOM_PROBE_BYTES, written, synced and removed. A start on a full disk (or a read-only one) is then
    refused before anything is changed, rather than failing half way."""
    probe = data_dir / ROOM_PROBE
    try:
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(os.urandom(ROOM_PROBE_BYTES))
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(probe)
    except OSError as error:
        raise JournalError(
            f"{data_dir}: no room to write ({error}): a test write of {ROOM_PROBE_BYTES >> 10} "
            "KiB failed, and a start writes to the journal, the ledger and snapshots. Nothing was "
            "changed: free some space (or make the directory writable) and start again"
        ) from error


def _settling(settle: Callable[[list], object] | None) -> Callable[[list], object] | None:
    """``settle``, with a ledger that cannot be written (a full disk) reported as a JournalError."""
    if settle is None:
        return None

    def guarded(events: list) -> None:
        try:
            settle(events)
        except (OSError, sqlite3.Error) as error:
            raise JournalError(
                f"settling the replayed events in the ledger failed ({error}); the journal was "
                "not changed, and the ledger keeps what it had settled: free some space and start "
                "again"
            ) from error

    return guarded


def _snapshots_of(
    files: list[Path], journal_id: bytes, reasons: dict[Path, str]
) -> list[tuple[SnapshotInfo, str | None]]:
    """The snapshots of this journal, newest first, each with why its format cannot be loaded (None: it can).
    Their headers are evidence of how far the journal was synced whatever their format; the others are
    given a reason in ``reasons``."""
    found = []
    for candidate in files:
        try:
            with open(candidate, "rb") as file:
                data = file.read(SNAPSHOT_HEADER.size)
        except OSError as error:
            reasons[candidate] = str(error)
            continue
        if len(data) < SNAPSHOT_HEADER.size:
            reasons[candidate] = "shorter than its header"
            continue
        magic, version, journal, record_seq, offset, event_seq, _, _ = SNAPSHOT_HEADER.unpack(data)
        if magic != SNAPSHOT_MAGIC:
            reasons[candidate] = "not a carbonx snapshot"
        elif journal != journal_id:
            reasons[candidate] = "belongs to another journal"
        else:
            refusal = None if version == SNAPSHOT_FORMAT else f"format {version}, this program reads {SNAPSHOT_FORMAT}"
            found.append((SnapshotInfo(candidate, record_seq, offset, event_seq, journal), refusal))
    return found


def _tail_problem(scan: JournalScan) -> tuple[int, int, str]:
    """(offset, seq, reason) of the first record after the last commit that cannot be read or is missing."""
    if scan.stop_reason is not None:
        return scan.valid_end, scan.next_seq, scan.stop_reason
    if scan.torn_bytes:
        return scan.file_size, scan.next_seq, "missing: the records before it end without their commit record"
    return scan.file_size, scan.next_seq, "missing: the journal ends there"


def _check_snapshots_agree(
    segments: list[Segment], scans: dict[Segment, JournalScan], snapshots: list[tuple[SnapshotInfo, str | None]]
) -> None:
    """Every snapshot of this journal names a commit record the journal has where it says (JournalCorrupt
    if not), and none lies past the last commit record (JournalTailAcknowledged: a snapshot is taken only
    once the journal is synced up to it, so what it follows was acknowledged, and is damaged or lost).
    Snapshots taken in an archived segment, or in one no longer kept, are checked when they are used."""
    last = segments[-1]
    tail = scans[last]
    ahead = []
    for info, _ in snapshots:
        holder = _holder(segments, info.record_seq)
        if holder is None or holder not in scans:
            continue
        scan = scans[holder]
        if holder == last and info.offset > tail.committed_end:
            ahead.append(info)
            continue
        found = scan.record_ends.get(info.offset)
        if found == (info.record_seq, True):
            continue
        there = (
            "no record ends there"
            if found is None
            else f"record {found[0]} ends there" + ("" if found[1] else ", and it is not a commit record")
        )
        raise JournalCorrupt(
            holder.path,
            info.offset,
            info.record_seq,
            there,
            (
                f"{holder.path}: {info.path.name} was taken after record {info.record_seq}, ending at byte "
                f"{info.offset}, but in the journal {there}: it is not the journal the snapshot was taken of "
                "(damaged, cut or rewritten since). Nothing was changed. Restore the journal from a copy; or, if the "
                f"journal is right, move the snapshot out of {info.path.parent} and start again"
            ),
        )
    if ahead:
        newest = max(ahead, key=lambda info: info.record_seq)
        raise JournalTailAcknowledged(
            last.path,
            *_tail_problem(tail),
            tail.committed_end,
            f"{newest.path.name} was taken after record {newest.record_seq}, ending at byte {newest.offset}, "
            f"past the last commit record ({tail.last_seq}, ending at byte {tail.committed_end})",
        )


def _usable_snapshot(
    snapshots: list[tuple[SnapshotInfo, str | None]],
    ledger_cursor: int | None,
    reasons: dict[Path, str],
    first_seq: int = 1,
) -> tuple[tuple[SnapshotInfo, Sequencer] | None, int]:
    """The newest snapshot to start from, and the record after which commands count as journaled since the
    newest snapshot (a newer one the ledger has not settled up to will be usable once this start has).
    ``first_seq``: the journal's first record kept; a snapshot taken before it cannot be replayed from."""
    counted_after = None
    for info, refusal in snapshots:
        if refusal is not None:
            reasons[info.path] = refusal
        elif info.record_seq + 1 < first_seq:
            reasons[info.path] = f"taken before record {first_seq}, the journal's first kept (archive retention)"
        elif ledger_cursor is not None and info.event_seq > ledger_cursor:
            reasons[info.path] = "the ledger has not settled up to it"
            if counted_after is None:
                counted_after = info.record_seq
        else:
            try:
                _, core = read_snapshot(info.path)
            except (JournalError, OSError) as refused:
                reasons[info.path] = str(refused)
                continue
            return (info, core), info.record_seq if counted_after is None else counted_after
    return None, 0 if counted_after is None else counted_after


def replay_journal(
    journal: Path | list[Segment],
    genesis: Genesis,
    snapshot: tuple[SnapshotInfo, Sequencer] | None = None,
    *,
    settle: Callable[[list], object] | None = None,
    ledger_cursor: int = 0,
    end: int | None = None,
    counted_after: int | None = None,
    journal_id: bytes | None = None,
) -> tuple[Sequencer, RecoveryReport, ScanResult]:
    """Rebuild the state from a journal (a path as :func:`gateway.persistence.segments.segments_at` reads it,
    or its segments), after ``snapshot`` if given, its last segment up to byte ``end`` if given, reading
    only: nothing is cut or written. ``commands_since_snapshot`` counts the commands after record
    ``counted_after`` (default: after the snapshot, or all)."""
    started = time.perf_counter()
    reader = JournalReader(journal, journal_id)
    report = RecoveryReport(reader.path)
    if snapshot is None:
        core, offset, expect_seq = new_sequencer(genesis), None, 1
    else:
        info, core = snapshot
        offset, expect_seq = info.offset, info.record_seq + 1
        report.snapshot = info
    if counted_after is None:
        counted_after = expect_seq - 1
    replay_batches(core, reader.batches(offset, expect_seq, end), report, settle, ledger_cursor, counted_after)
    result = reader.result
    assert result is not None  # the reader's scan result is set once its batches are read to the end, as above
    report.last_seq = result.last_seq
    report.torn_bytes, report.torn_reason = result.torn_bytes, result.torn_reason
    report.seconds = time.perf_counter() - started
    return core, report, result


def newest_snapshot(
    data_dir: Path, segments: list[Segment], journal_id: bytes, ledger_cursor: int | None, passed_over: list[str]
) -> tuple[SnapshotInfo, Sequencer] | None:
    """The newest snapshot in ``data_dir`` that belongs to the journal of ``segments``, ends on one of its
    commit records (the record after it, if any, is the next seq) and (given a ledger cursor) that the
    ledger has settled up to; each one passed over is described in ``passed_over``."""
    for candidate in snapshot_files(data_dir):
        try:
            info = read_snapshot_header(candidate)
            if info.journal_id != journal_id:
                raise JournalError("belongs to another journal")
            mismatch = _journal_mismatch(segments, info.offset, info.record_seq + 1)
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


def _journal_mismatch(segments: list[Segment], offset: int, seq: int) -> str | None:
    """None if ``offset``, in the segment holding record ``seq - 1``, is that segment's end or the start of
    record ``seq`` (a header check); else why not."""
    holder = _holder(segments, seq - 1)
    if holder is None:
        return f"taken before record {segments[0].first_seq}, the journal's first kept (archive retention)"
    with holder.contents() as view:
        size = len(view)
        if offset == size:
            return None
        if offset > size:
            return f"past the end of {holder.path.name}"
        header = view[offset : offset + HEADER.size]
    if len(header) == HEADER.size and HEADER.unpack(header)[2] == seq:
        return None
    return f"does not end on a record of {holder.path.name} as it is now"


def journal_genesis_and_id(journal: Path | list[Segment]) -> tuple[Genesis | None, bytes]:
    """The journal's genesis and id, from its first segment kept (or a path as
    :func:`gateway.persistence.segments.segments_at` reads it), or (None, b"") when there is no committed one."""
    segments = segments_at(journal) if isinstance(journal, Path) else journal
    if not segments:
        return None, b""
    bodies = first_batch(segments[0])
    if not bodies:
        return None, b""
    return read_genesis(bodies[0]), journal_id_of(bodies[0])


def journal_id_of(genesis_body: list) -> bytes:
    """The journal's identity: its genesis record's random id (snapshots name the journal they belong to)."""
    return bytes(genesis_body[1]["journal_id"])
