"""The journal: every sequenced input of the exchange, on disk before anything it caused is seen.

How this works
--------------
The engine is deterministic, so the exchange's whole state is a function of
its inputs in order. The gateway appends every input to the journal before
it sends a single answer, market-data message or fill that the input caused;
after a crash, replaying the journal rebuilds the state exactly (see
:mod:`gateway.persistence.recovery`). This is the design of LMAX, exchange-core and Aeron
Cluster: journal the input, not the output.

The journal is a chain of segment files (:mod:`gateway.persistence.segments`:
a new one each trading day and past a size, closed ones archived once a
snapshot covers them). Each starts with an 8-byte magic, then records, each::

    length  u32 big-endian   bytes of the body
    crc     u32 big-endian   CRC-32 of the seq's 8 bytes followed by the body
    seq     u64 big-endian   1, 2, 3 ... with no gap, on from one segment to the next
    body    MessagePack      an array whose first element is the record's kind

Record kinds (:data:`GENESIS` ... :data:`COMMIT`):

- ``genesis``: the first record: the instrument terms, compliance rules and
  market-data settings the state was built with, and the journal's random
  id, so that a journal replays on its own, without today's configuration
  files. Every later segment opens with a copy (a batch of its own), so
  that a segment and a snapshot replay on their own too.
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

Reading: :class:`JournalReader` decodes committed batches for a replay,
across segments and archives; :func:`scan_journal` checks a whole segment
at start-up without decoding
anything (framing, CRC, seqs; about 1 s a million records), so that damage
under a snapshot is found too and what follows the last commit record is
known before anything is replayed or cut (:mod:`gateway.persistence.recovery`).
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
from msgspec.structs import astuple

from exchange import COMMAND_TYPES, ComplianceConfig, Instrument
from exchange.clearing import FuturesConfig
from exchange.commands import Command
from gateway.persistence.errors import JournalCorrupt, JournalError, JournalFailure
from gateway.persistence.segments import Segment, segment_name, segments_at, write_new_file

MAGIC = b"CXJRNL01"
HEADER = struct.Struct(">IIQ")  # length, crc, seq
MAX_RECORD = 64 * 1024 * 1024  # a body larger than this is damage, not a record
FIRST_BATCH_BYTES = 1 << 20  # a segment's genesis and commit records fit many times over
MIN_RECORD = HEADER.size + 1  # the smallest record: a header and a one-byte body
_NONZERO = re.compile(rb"[^\x00]")

GENESIS = "genesis"
EXECUTE = "execute"
OPERATOR = "operator"
SKIP = "skip"
SESSION = "session"
COMMIT = "commit"
KINDS = (GENESIS, EXECUTE, OPERATOR, SKIP, SESSION, COMMIT)

_FIELDS: dict[type, tuple[str, ...]] = {kind: kind.__struct_fields__ for kind in COMMAND_TYPES}
_BY_NAME: dict[str, type] = {kind.__name__: kind for kind in COMMAND_TYPES}

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode
COMMIT_BODY = _encode([COMMIT])  # a commit record's whole body: the scan knows commits by it


# -- commands and genesis as plain values ----------------------------------------------------------


def encode_command(command: Command) -> list:
    """A command as [class name, field values in field order]."""
    return [command.__class__.__name__, list(astuple(command))]


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


def segment_start(first_seq: int, genesis: Genesis, journal_id: bytes) -> bytes:
    """A segment's first bytes: the magic, the genesis record (the original, or a copy), its commit record."""
    return (
        MAGIC
        + frame_record(first_seq, [GENESIS, {**genesis.to_value(), "journal_id": journal_id}])
        + frame_record(first_seq + 1, commit_record())
    )


def _init_fields(value: Instrument) -> dict:
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.init}


@dataclass(frozen=True)
class Genesis:
    """What a journal's state was built with, besides its commands: replay needs nothing else."""

    instruments: dict[str, Instrument]
    compliance: ComplianceConfig | None
    md_levels: int
    resend_window: int
    futures: FuturesConfig | None = None

    def to_value(self) -> dict:
        compliance = None if self.compliance is None else self.compliance.to_value()
        return {
            "format": 1,
            "instruments": [_init_fields(instrument) for instrument in self.instruments.values()],
            "compliance": compliance,
            "md_levels": self.md_levels,
            "resend_window": self.resend_window,
            "futures": None if self.futures is None else self.futures.to_value(),
        }

    @classmethod
    def from_value(cls, value: dict) -> Genesis:
        if value.get("format") != 1:
            raise JournalError(f"journal genesis format {value.get('format')!r} is not known to this version")
        # (a journal begun before the one-sided band has no "price_band_one_sided": its band held both sides)
        instruments = {
            entry["symbol"]: Instrument(**{"price_band_one_sided": False, **entry}) for entry in value["instruments"]
        }
        compliance = value["compliance"]
        if compliance is not None:
            compliance = ComplianceConfig.from_value(compliance)
        # (a journal begun before the trading calendar also holds "settlement_window": the calendar sets it now)
        # (a journal begun before futures has no "futures": it had none)
        futures = value.get("futures")
        return cls(
            instruments,
            compliance,
            value["md_levels"],
            value["resend_window"],
            None if futures is None else FuturesConfig.from_value(futures),
        )

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
    """Appends records to the journal's last segment; one ``flush`` writes a batch, ``sync`` makes it durable,
    ``roll`` closes the segment and goes on in a new one (:mod:`gateway.persistence.segments`)."""

    def __init__(self, path: Path, next_seq: int, size: int, journal_id: bytes, genesis: Genesis) -> None:
        self.path = path  # the segment being written
        self.journal_id = journal_id  # the genesis record's random id: snapshots name their journal by it
        self.genesis = genesis  # copied at the start of every new segment
        self.next_seq = next_seq  # the seq of the next record appended
        self.size = size  # bytes in the segment, counting everything flushed
        self.position = size  # bytes flushed by this writer and in the segment it started in: only ever grows
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._fd_lock = threading.Lock()  # the sync thread's fdatasync against a roll's change of segment
        self._buffer: list[bytes] = []
        self.failed: BaseException | None = None

    @classmethod
    def create(cls, path: Path, genesis: Genesis, *, replace: bool = False) -> JournalWriter:
        """A new journal: its first segment at ``path``, holding the magic and the committed genesis, synced.

        The file is written whole under a temporary name, synced and renamed
        into place: it appears complete or not at all, and a failure (a full
        disk) leaves nothing behind (:class:`JournalError`). ``replace``: a
        file already there (one that never committed its genesis) is
        replaced; otherwise an existing non-empty file is refused.
        """
        if not replace and path.exists() and path.stat().st_size > 0:
            raise JournalError(f"{path} exists: a journal is never overwritten")
        journal_id = os.urandom(16)
        data = segment_start(1, genesis, journal_id)
        try:
            write_new_file(path, data)
        except OSError as error:
            raise JournalError(f"{path}: the journal cannot be created: {error}") from error
        return cls(path, 3, len(data), journal_id, genesis)

    def roll(self) -> Path:
        """Close this segment and go on in a new one; its path. Call between batches, nothing buffered.

        The closed segment is synced first (whatever ``journal_fsync`` says),
        so that only the last segment can ever end torn; the new one is made
        whole (its magic, a copy of the genesis record, a commit) under a
        temporary name and renamed into place. A failure is
        :class:`JournalFailure`: the exchange stops, the journal whole.
        """
        assert not self._buffer, "a segment closes between batches"
        if self.failed is not None:
            raise JournalFailure(f"{self.path}: the journal failed earlier ({self.failed})")
        first_seq = self.next_seq
        path = self.path.with_name(segment_name(first_seq))
        data = segment_start(first_seq, self.genesis, self.journal_id)
        try:
            with self._fd_lock:
                os.fsync(self._fd)
            write_new_file(path, data)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except OSError as error:
            self.failed = error
            raise JournalFailure(f"{self.path}: closing the segment and opening {path.name} failed: {error}") from error
        with self._fd_lock:
            os.close(self._fd)
            self._fd = fd
        self.path, self.size, self.next_seq = path, len(data), first_seq + 2
        self.position += len(data)
        return path

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
        """Write everything buffered with one system call (more if the kernel takes less); the new position."""
        if self.failed is not None:
            raise JournalFailure(f"{self.path}: the journal failed earlier ({self.failed}); nothing is written")
        if not self._buffer:
            return self.position
        data = memoryview(b"".join(self._buffer))
        self._buffer.clear()
        try:
            while data:
                written = os.write(self._fd, data)
                data = data[written:]
                self.size += written
                self.position += written
        except OSError as error:
            self.failed = error
            raise JournalFailure(f"{self.path}: write failed: {error}") from error
        return self.position

    def sync(self) -> None:
        """fdatasync: everything flushed so far is on disk when this returns. Safe to call from a thread."""
        if self.failed is not None:
            raise JournalFailure(f"{self.path}: the journal failed earlier ({self.failed})")
        try:
            with self._fd_lock:
                os.fdatasync(self._fd)
        except OSError as error:
            self.failed = error
            raise JournalFailure(f"{self.path}: fdatasync failed: {error}") from error

    def close(self) -> None:
        with self._fd_lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class JournalSyncer:
    """A thread that fdatasyncs the journal whenever there are writes it has not synced, and tells the
    event loop how far each sync got (``on_synced(position)``, or ``on_failed(error)`` once, then it stops);
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
        self._synced = writer.position  # what was synced before the thread starts (JournalWriter.create syncs)
        self._target = writer.position
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="journal-sync", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def written(self, position: int) -> None:
        with self._ready:
            self._target = position
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
    """Reads a journal's committed batches across its segments and archives, checking every record, from the
    first or from a snapshot's place."""

    def __init__(self, journal: Path | Sequence[Segment], journal_id: bytes | None = None) -> None:
        """``journal``: a data directory, a journal folder or file (:func:`segments_at`), or its segments.
        ``journal_id``: the identity every segment's genesis record must carry (None: the first one read)."""
        self.segments = segments_at(Path(journal)) if isinstance(journal, (str, Path)) else list(journal)
        self.path = self.segments[-1].path  # the last segment: ``result``'s offsets are in it
        self.journal_id = journal_id
        self.result: ScanResult | None = None  # set when batches() is exhausted

    def batches(
        self, offset: int | None = None, expect_seq: int = 1, end: int | None = None
    ) -> Generator[tuple[int, int, list[list]], None, None]:
        """Yield (last seq, end offset in its segment, bodies) for each committed batch, the commit record excluded.

        From the first record (``expect_seq``, 1 unless the reader is given a
        later journal's own segments), or, given an ``offset``, from a
        snapshot's place: after record ``expect_seq - 1``, which ends at
        ``offset`` in the segment that holds it. Stops at the first record of
        the last segment that is short, misplaced or fails its CRC; if a
        valid record with a later seq follows it, the damage is in the middle
        and :class:`JournalCorrupt` is raised, as it is for any damage in a
        segment before the last (those end whole, or not at all). Then
        ``result`` says where the committed records end in the last segment.
        ``end``: read the last segment as if it ended there (start-up replays
        only what :func:`scan_journal` found committed).
        """
        segments = self.segments
        if offset is None:
            index = 0
            if segments[0].first_seq != expect_seq:
                raise JournalError(_missing(segments[0], expect_seq, "a replay from the journal's first record"))
        else:
            holding = [i for i, segment in enumerate(segments) if segment.first_seq < expect_seq]
            if not holding:
                raise JournalError(_missing(segments[0], expect_seq, f"a replay after record {expect_seq - 1}"))
            index = holding[-1]
        seq = expect_seq
        for number in range(index, len(segments)):
            segment = segments[number]
            last = number == len(segments) - 1
            if number > index and segment.first_seq != seq:
                raise JournalError(
                    f"{segment.path}: its first record is {segment.first_seq}, but the segment before it ends with "
                    f"record {seq - 1}: records {seq} to {segment.first_seq - 1} are missing"
                )
            with segment.contents() as view:
                size = len(view) if not last or end is None else min(len(view), end)
                if size < len(MAGIC) and last:
                    self.result = ScanResult(0, seq - 1, size, size, "no header" if size else None)
                    return
                if view[: len(MAGIC)] != MAGIC:
                    raise JournalError(f"{segment.path} is not a carbonx journal (no {MAGIC!r} header)")
                position = len(MAGIC) if number > index or offset is None else offset
                batches = self._batches(view, size, position, seq, segment.path)
                if position == len(MAGIC):  # the segment's first batch: its genesis names the journal
                    first = next(batches, None)
                    if first is not None:
                        self._check_identity(segment, first[2])
                        yield first
                yield from batches
            result = self.result
            assert result is not None  # set by _batches once read to its end
            if not last and result.torn_bytes:
                raise JournalCorrupt(
                    segment.path,
                    result.committed_end,
                    result.last_seq + 1,
                    result.torn_reason or "bytes after the last commit record",
                    (
                        f"{segment.path}: the segment's records stop at byte {result.committed_end} "
                        f"({result.torn_reason}) and later segments follow: a closed segment ends whole, so this is "
                        "damage, not a crash's torn tail. Nothing was changed; restore the segment from a copy"
                    ),
                )
            seq = result.last_seq + 1

    def _check_identity(self, segment: Segment, bodies: list[list]) -> None:
        if not bodies or bodies[0][0] != GENESIS:
            return
        journal_id = bytes(bodies[0][1]["journal_id"])
        if self.journal_id is None:
            self.journal_id = journal_id
        elif journal_id != self.journal_id:
            raise JournalError(f"{segment.path} belongs to another journal (its genesis record names another one)")

    def _batches(self, view: bytes | mmap.mmap, size: int, position: int, seq: int, path: Path):
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
                raise JournalCorrupt(path, position, seq, reason)
        elif batch:
            reason = "a batch without its commit record"
        self.result = ScanResult(committed_end, committed_seq, size, size - committed_end, reason)


def first_batch(segment: Segment) -> list[list] | None:
    """A segment's first committed batch (its genesis record, and the commit's excluded), or None if it
    has none; an archive's first megabyte is all that is decompressed for it."""
    with segment.contents(head=FIRST_BATCH_BYTES) as view:
        if len(view) < len(MAGIC):
            return None
        if view[: len(MAGIC)] != MAGIC:
            raise JournalError(f"{segment.path} is not a carbonx journal (no {MAGIC!r} header)")
        batches = JournalReader([segment])._batches(view, len(view), len(MAGIC), segment.first_seq, segment.path)
        try:
            for _, _, bodies in batches:
                return bodies
        finally:
            batches.close()
    return None


def _missing(first: Segment, seq: int, what: str) -> str:
    return (
        f"{what} needs record {seq}, and the journal begins with record {first.first_seq} ({first.path.name}): the "
        "segments before it were archived and their archives removed after their retention (journal_archive_days). "
        "A replay starts from a snapshot taken after them"
    )


def _find_valid_record(view: bytes | mmap.mmap, size: int, damaged_at: int, seq: int) -> int | None:
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
    """What :func:`scan_journal` found: how far a segment's records are whole and valid, from its first."""

    file_size: int
    records: int  # whole, valid records from the first, seqs first_seq .. first_seq + records - 1
    valid_end: int  # offset just after the last of them
    committed_end: int  # offset just after the last commit record among them (the magic's end: none)
    last_seq: int  # that commit record's seq (first_seq - 1: none)
    stop_reason: str | None  # why the valid records stop before the end of the file (None: they reach it)
    # Of the offsets asked about, those at which a valid record ends: offset -> (its seq, whether a commit).
    record_ends: dict[int, tuple[int, bool]]
    first_seq: int = 1  # the seq of the segment's first record

    @property
    def next_seq(self) -> int:
        """The seq due at ``valid_end``."""
        return self.first_seq + self.records

    @property
    def torn_bytes(self) -> int:
        """Bytes after the last commit record: a crash's unfinished batch, if nothing shows it was acknowledged."""
        return self.file_size - self.committed_end

    @property
    def torn_reason(self) -> str | None:
        if self.stop_reason is not None:
            return self.stop_reason
        return "a batch without its commit record" if self.torn_bytes else None


def scan_journal(path: Path, checkpoints=(), first_seq: int = 1) -> JournalScan:
    """Check every record of a journal segment, from the first (``first_seq``) to the end of the file:
    framing, CRC, consecutive seqs.

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
            return JournalScan(size, 0, 0, 0, first_seq - 1, "no header" if size else None, {}, first_seq)
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view:
            if hasattr(mmap, "MADV_SEQUENTIAL"):
                view.madvise(mmap.MADV_SEQUENTIAL)
            if view[: len(MAGIC)] != MAGIC:
                raise JournalError(f"{path} is not a carbonx journal (no {MAGIC!r} header)")
            with memoryview(view) as data:
                return _scan(path, view, data, size, sorted(set(checkpoints)), first_seq)


def _scan(
    path: Path, view: mmap.mmap, data: memoryview, size: int, checkpoints: list[int], first_seq: int
) -> JournalScan:
    header_size = HEADER.size
    unpack = HEADER.unpack_from
    crc32 = zlib.crc32
    commit_length = len(COMMIT_BODY)
    position = committed_end = len(MAGIC)
    seq, last_seq = first_seq, first_seq - 1
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
    return JournalScan(size, seq - first_seq, position, committed_end, last_seq, reason, record_ends, first_seq)


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
