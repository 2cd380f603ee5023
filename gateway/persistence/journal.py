"""The journal: every sequenced input of the exchange, on disk before anything it caused is seen.

How this works
--------------
The engine is deterministic, so the exchange's whole state is a function of
its inputs in order. The gateway appends every input to this file before it
sends a single answer, market-data message or fill that the input caused;
after a crash, replaying the file rebuilds the state exactly (see
:mod:`gateway.persistence.recovery`). This is the design of LMAX, exchange-core and Aeron
Cluster: journal the input, not the output.

The file starts with an 8-byte magic, then records, each::

    length  u32 big-endian   bytes of the body
    crc     u32 big-endian   CRC-32 of the seq's 8 bytes followed by the body
    seq     u64 big-endian   1, 2, 3 ... with no gap
    body    MessagePack      an array whose first element is the record's kind

Record kinds (:data:`GENESIS` ... :data:`COMMIT`):

- ``genesis``: the first record: the instrument terms, compliance rules and
  market-data settings the state was built with, so that a journal replays
  on its own, without today's configuration files.
- ``execute``: commands the engine ran as one ``handle_all`` call, each with
  the account that asked (None: the gateway's cancel-on-disconnect) and the
  request's ``request_id``. The batch boundaries matter: the engine announces
  changed price levels once per call, so event sequence numbers depend on them.
- ``operator``: the exchange's own commands (accounts opened, deposits, the
  end of day, the registry's compliance feed), run as one call.
- ``skip``: an account's outbound ``seq`` numbers used by answers that change
  nothing (balances, book, refusals), so that numbering replays exactly.
- ``session``: an account logged on with cancel-on-disconnect in force. Its
  orders are cancelled when the session ends (an ``execute`` record of the
  gateway's mass cancel), or, if the exchange stopped first, at the next
  start: a stop ends every session.
- ``commit``: the end of a gateway batch. Only what ends with a commit was
  ever acknowledged; records after the last commit are an unfinished batch.

Commands are written as their class name and their field values in field
order, plain MessagePack (enums as their wire strings): readable by any
MessagePack library, independent of Python's pickling.

Writing is group commit: the gateway appends a batch's records to a buffer,
writes them with one ``write``, and (with ``fsync = "batch"``) one
``fdatasync`` covers every batch written since the last. Any failure to
write or sync is :class:`JournalFailure`: the exchange stops at once, the
way PostgreSQL treats a failed fsync, because after it nobody can say what
is on disk.

Reading: :class:`JournalReader` decodes committed batches for a replay;
:func:`scan_journal` checks the whole file at start-up without decoding
anything (framing, CRC, seqs; about 1 s a million records), so that damage
under a snapshot is found too and what follows the last commit record is
known before anything is replayed or cut (:mod:`gateway.persistence.recovery`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import mmap
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from exchange import ComplianceConfig, Instrument
from exchange.commands import COMMAND_TYPES

MAGIC = b"CXJRNL01"
HEADER = struct.Struct(">IIQ")  # length, crc, seq
MAX_RECORD = 64 * 1024 * 1024  # a body larger than this is damage, not a record
MIN_RECORD = HEADER.size + 1  # the smallest record: a header and a one-byte body
_NONZERO = re.compile(rb"[^\x00]")

GENESIS = "genesis"
EXECUTE = "execute"
OPERATOR = "operator"
SKIP = "skip"
SESSION = "session"
COMMIT = "commit"
KINDS = (GENESIS, EXECUTE, OPERATOR, SKIP, SESSION, COMMIT)

_FIELDS: dict[type, tuple[str, ...]] = {kind: tuple(f.name for f in dataclasses.fields(kind)) for kind in COMMAND_TYPES}
_BY_NAME: dict[str, type] = {kind.__name__: kind for kind in COMMAND_TYPES}

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode
COMMIT_BODY = _encode([COMMIT])  # a commit record's whole body: the scan knows commits by it


class JournalError(RuntimeError):
    """The journal cannot be used as it is; the message says where and why."""


class JournalFailure(JournalError):
    """Writing or syncing the journal failed: fatal, nothing pending may be acknowledged."""


class JournalCorrupt(JournalError):
    """A damaged record with valid records after it: not a torn tail, so nothing is truncated."""

    def __init__(self, path: Path, offset: int, seq: int, reason: str, message: str | None = None) -> None:
        super().__init__(
            message
            or (
                f"{path}: record {seq} at byte {offset} is damaged ({reason}), and valid records follow it; this is "
                "not a crash's torn tail. The journal is left as it is: restore it from a copy, or cut it at that "
                "offset by hand if the records after it may be given up"
            )
        )
        self.path = path
        self.offset = offset
        self.seq = seq
        self.reason = reason


class JournalTailAcknowledged(JournalCorrupt):
    """The journal's last records cannot be read or are missing, and something durable (a snapshot, the
    ledger) shows they were acknowledged: a crash's torn tail is cut off at start-up, these are not.
    ``offset`` and ``seq`` name the first record that cannot be read (or is missing); ``committed_end``
    is where the readable batches end."""

    def __init__(self, path: Path, offset: int, seq: int, reason: str, committed_end: int, evidence: str) -> None:
        super().__init__(
            path,
            offset,
            seq,
            reason,
            (
                f"{path}: record {seq} at byte {offset} cannot be read ({reason}), yet {evidence}: the batches from "
                f"byte {committed_end} on were acknowledged, so this is not a crash's torn tail, and the exchange "
                "does not start without them. Nothing was changed. Restore the journal from a copy; to give those "
                "batches up instead, see docs/DURABILITY.md, section 4"
            ),
        )
        self.committed_end = committed_end
        self.evidence = evidence


# -- commands and genesis as plain values ----------------------------------------------------------


def encode_command(command: object) -> list:
    """A command as [class name, field values in field order]."""
    kind = command.__class__
    return [kind.__name__, [getattr(command, name) for name in _FIELDS[kind]]]


def decode_command(value: list) -> object:
    name, values = value
    kind = _BY_NAME.get(name)
    if kind is None:
        raise JournalError(f"unknown command {name!r} in the journal")
    return kind(**dict(zip(_FIELDS[kind], values, strict=False)))  # a field added since, at the end: its default


def execute_record(inputs: list) -> list:
    """An ``execute`` record from (account or None, request_id, command) inputs."""
    return [EXECUTE, [[account, request_id, encode_command(command)] for account, request_id, command in inputs]]


def operator_record(commands: list) -> list:
    return [OPERATOR, [encode_command(command) for command in commands]]


def skip_record(account: str, count: int) -> list:
    return [SKIP, account, count]


def session_record(account: str) -> list:
    return [SESSION, account]


def commit_record() -> list:
    return [COMMIT]


def frame_record(seq: int, body: list) -> bytes:
    """One record as the file holds it: length, CRC-32 (of the seq's 8 bytes and the body), seq, body."""
    payload = _encode(body)
    return HEADER.pack(len(payload), zlib.crc32(payload, zlib.crc32(seq.to_bytes(8, "big"))), seq) + payload


def _init_fields(value: Instrument | ComplianceConfig) -> dict:
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.init}


@dataclass(frozen=True)
class Genesis:
    """What a journal's state was built with, besides its commands: replay needs nothing else."""

    instruments: dict[str, Instrument]
    compliance: ComplianceConfig | None
    md_levels: int
    resend_window: int

    def to_value(self) -> dict:
        compliance = None
        if self.compliance is not None:
            compliance = _init_fields(self.compliance)
            compliance["penalty_by_year"] = [list(pair) for pair in dict(compliance["penalty_by_year"]).items()]
        return {
            "format": 1,
            "instruments": [_init_fields(instrument) for instrument in self.instruments.values()],
            "compliance": compliance,
            "md_levels": self.md_levels,
            "resend_window": self.resend_window,
        }

    @classmethod
    def from_value(cls, value: dict) -> Genesis:
        if value.get("format") != 1:
            raise JournalError(f"journal genesis format {value.get('format')!r} is not known to this version")
        instruments = {entry["symbol"]: Instrument(**entry) for entry in value["instruments"]}
        compliance = value["compliance"]
        if compliance is not None:
            compliance = ComplianceConfig(
                **{**compliance, "penalty_by_year": tuple(tuple(pair) for pair in compliance["penalty_by_year"])}
            )
        # (a journal begun before the trading calendar also holds "settlement_window": the calendar sets it now)
        return cls(instruments, compliance, value["md_levels"], value["resend_window"])

    def differences(self, other: Genesis) -> list[str]:
        """What differs between two geneses, one phrase each (empty: the same)."""
        mine, theirs = self.to_value(), other.to_value()
        out = []
        for key in mine:
            if key == "instruments":
                a = {entry["symbol"]: entry for entry in mine[key]}
                b = {entry["symbol"]: entry for entry in theirs[key]}
                for symbol in sorted(a.keys() | b.keys()):
                    if symbol not in a or symbol not in b:
                        out.append(f"instrument {symbol} {'added' if symbol in b else 'removed'}")
                    else:
                        out += [
                            f"{symbol}.{name}: {a[symbol][name]!r} -> {b[symbol][name]!r}"
                            for name in a[symbol]
                            if a[symbol][name] != b[symbol][name]
                        ]
            elif mine[key] != theirs[key]:
                out.append(f"{key}: {mine[key]!r} -> {theirs[key]!r}")
        return out


# -- writing -------------------------------------------------------------------------------------


class JournalWriter:
    """Appends records to an open journal file; one ``flush`` writes a batch, ``sync`` makes it durable."""

    def __init__(self, path: Path, next_seq: int, size: int, journal_id: bytes) -> None:
        self.path = path
        self.journal_id = journal_id  # the genesis record's random id: snapshots name their journal by it
        self.next_seq = next_seq  # the seq of the next record appended
        self.size = size  # bytes in the file, counting everything flushed
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._buffer: list[bytes] = []
        self._buffered = 0
        self.failed: BaseException | None = None

    @classmethod
    def create(cls, path: Path, genesis: Genesis, *, replace: bool = False) -> JournalWriter:
        """A new journal holding its magic and committed genesis, synced with its directory.

        The file is written whole under a temporary name, synced and renamed
        into place: it appears complete or not at all, and a failure (a full
        disk) leaves nothing behind (:class:`JournalError`). ``replace``: a
        file already there (one that never committed its genesis) is
        replaced; otherwise an existing non-empty file is refused.
        """
        if not replace and path.exists() and path.stat().st_size > 0:
            raise JournalError(f"{path} exists: a journal is never overwritten")
        journal_id = os.urandom(16)
        data = (
            MAGIC
            + frame_record(1, [GENESIS, {**genesis.to_value(), "journal_id": journal_id}])
            + frame_record(2, commit_record())
        )
        temporary = path.with_name(f".{path.name}.new")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, path)
            fsync_path(path.parent)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise JournalError(f"{path}: the journal cannot be created: {error}") from error
        return cls(path, 3, len(data), journal_id)

    def append(self, body: list) -> int:
        """Buffer one record; returns its seq."""
        seq = self.next_seq
        self.next_seq = seq + 1
        self._buffer.append(frame_record(seq, body))
        return seq

    @property
    def buffered(self) -> bool:
        return bool(self._buffer)

    def flush(self) -> int:
        """Write everything buffered with one system call (more if the kernel takes less); the new size."""
        if self.failed is not None:
            raise JournalFailure(f"{self.path}: the journal failed earlier ({self.failed}); nothing is written")
        if not self._buffer:
            return self.size
        data = memoryview(b"".join(self._buffer))
        self._buffer.clear()
        try:
            while data:
                written = os.write(self._fd, data)
                data = data[written:]
                self.size += written
        except OSError as error:
            self.failed = error
            raise JournalFailure(f"{self.path}: write failed: {error}") from error
        return self.size

    def sync(self) -> None:
        """fdatasync: everything flushed so far is on disk when this returns. Safe to call from a thread."""
        if self.failed is not None:
            raise JournalFailure(f"{self.path}: the journal failed earlier ({self.failed})")
        try:
            os.fdatasync(self._fd)
        except OSError as error:
            self.failed = error
            raise JournalFailure(f"{self.path}: fdatasync failed: {error}") from error

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class JournalSyncer:
    """A thread that fdatasyncs the journal whenever there are writes it has not synced, and tells the
    event loop how far each sync got (``on_synced(size)``, or ``on_failed(error)`` once, then it stops);
    ``timed(seconds)``, if given, is told how long each sync took (in this thread: it must not block).

    The event loop only records how far it has written (``written``): it
    neither waits for the disk nor wakes up for anything but a finished
    sync, so it matches the next batch while the disk takes the last ones.
    """

    def __init__(self, writer: JournalWriter, loop, on_synced, on_failed, timed=None) -> None:
        self.writer = writer
        self._timed = timed
        self._loop = loop
        self._on_synced = on_synced
        self._on_failed = on_failed
        self._ready = threading.Condition()
        self._synced = writer.size  # what was synced before the thread starts (JournalWriter.create syncs)
        self._target = writer.size
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="journal-sync", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def written(self, size: int) -> None:
        with self._ready:
            self._target = size
            self._ready.notify()

    def stop(self) -> None:
        with self._ready:
            self._stopping = True
            self._ready.notify()
        self._thread.join()

    def _run(self) -> None:
        try:
            while True:
                with self._ready:
                    while self._target <= self._synced and not self._stopping:
                        self._ready.wait()
                    if self._target <= self._synced:
                        return
                    target = self._target
                started = time.perf_counter()
                self.writer.sync()
                if self._timed is not None:
                    self._timed(time.perf_counter() - started)
                self._synced = target
                self._loop.call_soon_threadsafe(self._on_synced, target)
        except BaseException as error:  # fdatasync failed (JournalFailure), or anything else: the loop must know
            try:
                self._loop.call_soon_threadsafe(self._on_failed, error)
            except RuntimeError:  # the event loop is closed: nobody is waiting any more
                pass


def fsync_path(path: Path) -> None:
    """fsync a file, or a directory (so that a file created or renamed in it survives a crash), by its path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- reading ----------------------------------------------------------------------------------------


@dataclass
class ScanResult:
    """Where a journal's committed records end, and what lies after them."""

    committed_end: int  # byte offset just after the last commit record
    last_seq: int  # seq of that commit record (0: none)
    file_size: int
    torn_bytes: int  # bytes after committed_end: a crash's unfinished batch or torn record
    torn_reason: str | None


class JournalReader:
    """Reads a journal's committed batches, checking every record, from the start or from an offset."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.result: ScanResult | None = None  # set when batches() is exhausted

    def batches(
        self, offset: int | None = None, expect_seq: int = 1, end: int | None = None
    ) -> Generator[tuple[int, int, list[list]], None, None]:
        """Yield (last seq, end offset, bodies) for each committed batch, the commit record excluded.

        Stops at the first record that is short, misplaced or fails its CRC;
        if a valid record with a later seq follows it, the damage is in the
        middle and :class:`JournalCorrupt` is raised. Then ``result`` says
        where the committed records end. ``end``: read as if the file ended
        there (start-up replays only what :func:`scan_journal` found committed).
        """
        with open(self.path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if end is not None:
                size = min(size, end)
            if size < len(MAGIC):
                self.result = ScanResult(0, 0, size, size, "no header" if size else None)
                return
            with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view:
                if view[: len(MAGIC)] != MAGIC:
                    raise JournalError(f"{self.path} is not a carbonx journal (no {MAGIC!r} header)")
                yield from self._batches(view, size, len(MAGIC) if offset is None else offset, expect_seq)

    def _batches(self, view: mmap.mmap, size: int, position: int, seq: int):
        committed_end, committed_seq = position, seq - 1
        batch: list[list] = []
        header_size = HEADER.size
        unpack = HEADER.unpack_from
        crc32 = zlib.crc32
        reason = None
        while position < size:
            if size - position < header_size:
                reason = "a record header cut short"
                break
            length, crc, record_seq = unpack(view, position)
            end = position + header_size + length
            if record_seq != seq:
                reason = f"seq {record_seq} where {seq} was due"
                break
            if length > MAX_RECORD or end > size:
                reason = "a record cut short"
                break
            payload = view[position + header_size : end]
            if crc32(payload, crc32(record_seq.to_bytes(8, "big"))) != crc:
                reason = "CRC mismatch"
                break
            body = _decode(payload)
            if type(body) is not list or not body or body[0] not in KINDS:
                reason = "not a journal record"
                break
            position = end
            seq += 1
            if body[0] == COMMIT:
                yield record_seq, end, batch
                batch = []
                committed_end, committed_seq = end, record_seq
            else:
                batch.append(body)
        if reason is not None:
            later = _find_valid_record(view, size, position, seq)
            if later is not None:
                raise JournalCorrupt(self.path, position, seq, reason)
        elif batch:
            reason = "a batch without its commit record"
        self.result = ScanResult(committed_end, committed_seq, size, size - committed_end, reason)


def _find_valid_record(view: mmap.mmap, size: int, damaged_at: int, seq: int) -> int | None:
    """The offset of a whole, valid record after the damage at ``damaged_at`` (where record ``seq`` was due).

    Every offset after the damage is tried (runs of zero bytes, which a
    crash can leave at the end of a file, are skipped at C speed). A record
    there counts only with a sequence number the bytes in between could
    hold (each record takes at least MIN_RECORD bytes) and a matching CRC,
    so random bytes pass for one once in billions of tries.
    """
    unpack = HEADER.unpack_from
    position = damaged_at + 1
    last_start = size - HEADER.size
    while position <= last_start:
        length, crc, candidate = unpack(view, position)
        if not (length or crc or candidate):  # zeros: go to the first byte that is not, less a header
            following = _NONZERO.search(view, position)
            if following is None:
                return None
            position = max(position + 1, following.start() - HEADER.size + 1)
            continue
        end = position + HEADER.size + length
        if (
            seq <= candidate <= seq + (position - damaged_at) // MIN_RECORD
            and end <= size
            and zlib.crc32(view[position + HEADER.size : end], zlib.crc32(candidate.to_bytes(8, "big"))) == crc
        ):
            return position
        position += 1
    return None


# -- the check at start-up ------------------------------------------------------------------------------


@dataclass
class JournalScan:
    """What :func:`scan_journal` found: how far the journal's records are whole and valid, from the first."""

    file_size: int
    records: int  # whole, valid records from the first, seqs 1..records
    valid_end: int  # offset just after the last of them
    committed_end: int  # offset just after the last commit record among them (the magic's end: none)
    last_seq: int  # that commit record's seq (0: none)
    stop_reason: str | None  # why the valid records stop before the end of the file (None: they reach it)
    # Of the offsets asked about, those at which a valid record ends: offset -> (its seq, whether a commit).
    record_ends: dict[int, tuple[int, bool]]

    @property
    def next_seq(self) -> int:
        """The seq due at ``valid_end``."""
        return self.records + 1

    @property
    def torn_bytes(self) -> int:
        """Bytes after the last commit record: a crash's unfinished batch, if nothing shows it was acknowledged."""
        return self.file_size - self.committed_end

    @property
    def torn_reason(self) -> str | None:
        if self.stop_reason is not None:
            return self.stop_reason
        return "a batch without its commit record" if self.torn_bytes else None


def scan_journal(path: Path, checkpoints=()) -> JournalScan:
    """Check every record of the journal, from the first to the end of the file: framing, CRC, seqs 1..N.

    Nothing is decoded: each record costs a header unpack and a CRC-32 of
    its bytes (the seq and the body lie side by side, so one call), and the
    file is read through a sequential memory map; no object outlives its
    record. Commit records are known by their fixed body. A record that
    fails its check is the end of the valid records if nothing valid
    follows it (a torn tail, as :class:`JournalReader` sees it); if a valid
    record follows, :class:`JournalCorrupt` names it. ``checkpoints``:
    offsets (a snapshot's journal size) for which ``record_ends`` says
    which record, if any, ends exactly there.
    """
    path = Path(path)
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size < len(MAGIC):
            return JournalScan(size, 0, 0, 0, 0, "no header" if size else None, {})
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view:
            if hasattr(mmap, "MADV_SEQUENTIAL"):
                view.madvise(mmap.MADV_SEQUENTIAL)
            if view[: len(MAGIC)] != MAGIC:
                raise JournalError(f"{path} is not a carbonx journal (no {MAGIC!r} header)")
            with memoryview(view) as data:
                return _scan(path, view, data, size, sorted(set(checkpoints)))


def _scan(path: Path, view: mmap.mmap, data: memoryview, size: int, checkpoints: list[int]) -> JournalScan:
    header_size = HEADER.size
    unpack = HEADER.unpack_from
    crc32 = zlib.crc32
    commit_length = len(COMMIT_BODY)
    position = committed_end = len(MAGIC)
    seq, last_seq = 1, 0
    record_ends: dict[int, tuple[int, bool]] = {}
    waiting = iter(checkpoints)
    checkpoint = next(waiting, size + 1)
    last_header = size - header_size
    while position <= last_header:  # the hot loop: one test for every way a record can fail, reasons below
        length, crc, record_seq = unpack(data, position)
        end = position + header_size + length
        if record_seq != seq or end > size or crc32(data[position + 8 : end]) != crc:  # CRC: the seq's bytes and body
            break
        if length == commit_length and data[position + header_size : end] == COMMIT_BODY:
            committed_end, last_seq = end, seq
        while checkpoint <= end:
            if checkpoint == end:
                record_ends[end] = (seq, committed_end == end)
            checkpoint = next(waiting, size + 1)
        position = end
        seq += 1
    reason = None
    if position < size:
        if position > last_header:
            reason = "a record header cut short"
        else:
            length, _, record_seq = unpack(data, position)
            if record_seq != seq:
                reason = f"seq {record_seq} where {seq} was due"
            elif length > MAX_RECORD or position + header_size + length > size:
                reason = "a record cut short"
            else:
                reason = "CRC mismatch"
        if _find_valid_record(view, size, position, seq) is not None:
            raise JournalCorrupt(path, position, seq, reason)
    return JournalScan(size, seq - 1, position, committed_end, last_seq, reason, record_ends)


def truncate(path: Path, size: int) -> None:
    """Cut the journal back to ``size`` bytes (a torn tail), durably; JournalError if that fails."""
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as error:
        raise JournalError(f"{path}: cutting the torn tail off at byte {size} failed: {error}") from error


def read_genesis(body: list) -> Genesis:
    if body[0] != GENESIS:
        raise JournalError(f"the journal's first record is {body[0]!r}, not its genesis")
    return Genesis.from_value(body[1])
