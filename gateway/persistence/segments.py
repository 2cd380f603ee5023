"""The journal's files: segments one after another, and their compressed archives.

How this works
--------------
The journal (:mod:`gateway.persistence.journal`) is a chain of segment files
in the data directory's ``journal/`` folder, each named by the seq of its
first record (``segment-000000000001.cxj``, ...): a segment holds the
records from its first seq up to the one before the next segment's. The
exchange closes a segment and opens the next between two batches, at the
end of every trading day and when the segment reaches
``journal_segment_mb`` (:mod:`gateway.persistence.rotation`), and only once
the closed segment is on disk: every segment but the last ends with a
commit record, and only the last can end with a crash's torn tail. Each
segment opens with a copy of the journal's genesis record (the terms and
the journal's identity), so that a segment and a snapshot replay without
the segments before them.

Once a snapshot covers a whole segment (every record of it at or before the
snapshot's), the segment is archived: compressed with Zstandard (about 3.5
times smaller, at some 280 MB/s a core) into
``journal/archive/segment-<first seq>.cxj.zst``, written under a temporary
name, synced and renamed into place; then the segment is removed. Archives
are read like segments: by ``carbonx replay``, and by a start that falls
back to an older snapshot or replays from genesis. An archive is removed
``journal_archive_days`` days after it was written (0: never); from then on
a replay needs a snapshot taken after its records. ``zstd -d`` reads an
archive back into a segment file.

A data directory from before segments holds one ``journal.cxj``: a start
moves it into place as the first segment (its offsets, and so its
snapshots, unchanged).
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import zstandard

from gateway.logs import log_event
from gateway.persistence.errors import JournalError

log = logging.getLogger("carbonx.journal")

SEGMENT_DIR = "journal"  # in the data directory
ARCHIVE_DIR = "archive"  # in the journal's folder
LEGACY_NAME = "journal.cxj"  # the whole journal, in the data directory, before segments
SEGMENT_SUFFIX = ".cxj"
ARCHIVE_SUFFIX = ".cxj.zst"
FIRST_SEGMENT = f"{SEGMENT_DIR}/segment-{1:012d}{SEGMENT_SUFFIX}"  # relative to the data directory
ZSTD_LEVEL = 3  # the format's default: a ratio within 3% of level 9 at seven times its speed
_NAME = re.compile(r"segment-(\d{12})\.cxj(\.zst)?")


@dataclass(frozen=True)
class Segment:
    """One file of the journal: its first record's seq, where it is, and whether it is an archive."""

    first_seq: int
    path: Path
    archived: bool = False

    @property
    def data_dir(self) -> Path:
        """The data directory the segment is in (where its snapshots are)."""
        if _NAME.fullmatch(self.path.name) is None:  # a journal from before segments, or a file renamed
            return self.path.parent
        return self.path.parent.parent.parent if self.archived else self.path.parent.parent

    @contextlib.contextmanager
    def contents(self, head: int | None = None) -> Iterator[bytes | mmap.mmap]:
        """The segment's bytes: the file mapped, or an archive decompressed (JournalError if it cannot be);
        ``head``: an archive's first bytes only, as many as that (a segment's mapping costs nothing unread)."""
        if self.archived:
            try:
                with open(self.path, "rb") as file:
                    reader = zstandard.ZstdDecompressor().stream_reader(file)
                    data = reader.readall() if head is None else reader.read(head)
            except (OSError, zstandard.ZstdError) as error:
                raise JournalError(f"{self.path}: the archive cannot be read ({error})") from error
            yield data
            return
        try:
            file = open(self.path, "rb")  # noqa: SIM115 - closed below, after the caller is done with the mapping
        except OSError as error:
            raise JournalError(
                f"{self.path}: cannot be read ({error}); if the exchange is running, it may have archived the "
                "segment meanwhile: read the journal again"
            ) from error
        with file:
            if os.fstat(file.fileno()).st_size == 0:
                yield b""
                return
            with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view:
                yield view


def segment_name(first_seq: int) -> str:
    return f"segment-{first_seq:012d}{SEGMENT_SUFFIX}"


def journal_dir(data_dir: Path) -> Path:
    return data_dir / SEGMENT_DIR


def journal_segments(directory: Path) -> list[Segment]:
    """The journal's segments and archives in ``directory`` (a data directory's ``journal/``), by first seq.

    Where a segment and its archive are both there (a stop between the
    archive's rename and the segment's removal), the segment is the one used.
    """
    found: dict[int, Segment] = {}
    for folder, archived in ((directory / ARCHIVE_DIR, True), (directory, False)):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            match = _NAME.fullmatch(path.name)
            if match and bool(match.group(2)) == archived:
                found[int(match.group(1))] = Segment(int(match.group(1)), path, archived)
    return [found[seq] for seq in sorted(found)]


def segments_at(path: Path) -> list[Segment]:
    """The journal that ``path`` names: a data directory, a journal folder, or one file (a segment, an
    archive, or a journal from before segments). JournalError if there is none there."""
    path = Path(path)
    if path.is_dir():
        if (path / LEGACY_NAME).is_file() and not journal_segments(journal_dir(path)):
            return [Segment(1, path / LEGACY_NAME)]
        segments = journal_segments(journal_dir(path)) or journal_segments(path)
        if not segments:
            raise JournalError(f"{path}: no journal there (no {SEGMENT_DIR}/segment-*.cxj, no {LEGACY_NAME})")
        return segments
    if not path.is_file():
        raise JournalError(f"{path}: no such file or directory")
    match = _NAME.fullmatch(path.name)
    if match is None:
        return [Segment(1, path)]  # one journal file under any other name: the whole journal, from seq 1
    return [Segment(int(match.group(1)), path, bool(match.group(2)))]


def move_legacy_journal(data_dir: Path) -> None:
    """A data directory's ``journal.cxj`` from before segments becomes its first segment (durably)."""
    legacy = data_dir / LEGACY_NAME
    if not legacy.exists():
        return
    directory = journal_dir(data_dir)
    if journal_segments(directory):
        raise JournalError(
            f"{data_dir} holds both {LEGACY_NAME} (a journal from before segments) and segments in {directory}: "
            "which one is the journal cannot be told. Nothing was changed; move the one that is not out"
        )
    try:
        directory.mkdir(exist_ok=True)
        os.replace(legacy, data_dir / FIRST_SEGMENT)
        fsync_path(directory)
        fsync_path(data_dir)
    except OSError as error:
        raise JournalError(f"{legacy}: moving it to {FIRST_SEGMENT} failed: {error}") from error
    log_event(log, "journal_moved", source=str(legacy), segment=str(data_dir / FIRST_SEGMENT))


def fsync_path(path: Path) -> None:
    """fsync a file, or a directory (so that a file created or renamed in it survives a crash), by its path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new_file(path: Path, data: bytes) -> None:
    """A new file holding ``data``, whole or not at all: written under a temporary name, synced, renamed
    into place, the directory synced. OSError if any step fails (the temporary file is then removed)."""
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
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


# -- archives ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Archived:
    """A segment archived: its first seq, its size and the archive's, how long it took."""

    first_seq: int
    archive: Path
    bytes: int
    compressed_bytes: int
    seconds: float


def archive_segment(segment: Segment) -> Archived:
    """Compress a closed segment into the archive folder (durably), then remove the segment.

    The archive carries Zstandard's content checksum and size; it is read
    back and compared with the segment before the segment goes, so that a
    bad write costs a segment kept, never a record lost. OSError or
    JournalError if any step fails: the segment is then still there.
    """
    started = time.perf_counter()
    directory = segment.path.parent / ARCHIVE_DIR
    directory.mkdir(exist_ok=True)
    final = directory / (segment.path.name + ".zst")
    temporary = directory / f".{final.name}.new"
    size = segment.path.stat().st_size
    try:
        with open(segment.path, "rb") as source, open(temporary, "wb") as target:
            compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
            compressor.copy_stream(source, target, size=size)
            target.flush()
            os.fsync(target.fileno())
        with open(temporary, "rb") as written, open(segment.path, "rb") as source:
            if not _same_contents(zstandard.ZstdDecompressor().stream_reader(written), source):
                raise JournalError(f"{temporary}: the archive does not read back as {segment.path}")
        os.replace(temporary, final)
        fsync_path(directory)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    segment.path.unlink()
    fsync_path(segment.path.parent)
    return Archived(segment.first_seq, final, size, final.stat().st_size, time.perf_counter() - started)


def _same_contents(first, second, chunk: int = 1 << 20) -> bool:
    while True:
        a, b = first.read(chunk), second.read(chunk)
        if a != b:
            return False
        if not a:
            return True


def covered_segments(segments: list[Segment], covered_seq: int) -> list[Segment]:
    """The segments (not archives, never the last) whose records are all at or before ``covered_seq``."""
    return [
        segment
        for segment, following in zip(segments, segments[1:], strict=False)
        if not segment.archived and following.first_seq <= covered_seq + 1
    ]


def expired_archives(segments: list[Segment], days: int, now: float) -> list[Segment]:
    """The archives written more than ``days`` days before ``now`` (seconds since the epoch; 0 days: none)."""
    if days <= 0:
        return []
    oldest = now - days * 86_400
    return [segment for segment in segments if segment.archived and segment.path.stat().st_mtime < oldest]


def disk_usage(data_dir: Path) -> dict[str, int]:
    """Bytes on disk: the journal's segments, its archives, the snapshots (the ledger and day files apart)."""
    directory = journal_dir(data_dir)
    return {
        "segments": _bytes_in(directory, "segment-*" + SEGMENT_SUFFIX),
        "archives": _bytes_in(directory / ARCHIVE_DIR, "segment-*" + ARCHIVE_SUFFIX),
        "snapshots": _bytes_in(data_dir / "snapshots", "snapshot-*.cxs"),
    }


def _bytes_in(directory: Path, pattern: str) -> int:
    total = 0
    for path in directory.glob(pattern) if directory.is_dir() else ():
        with contextlib.suppress(OSError):  # archived or removed meanwhile
            total += path.stat().st_size
    return total
