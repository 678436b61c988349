"""A bounded first-in-first-out queue of encoded records on local disk, for when the broker is away.

Records (never frames) are appended to segment files (`<n>.seg`: 4-byte little-endian length,
then the payload, repeated). Reading hands records out in order without removing them; `commit`
removes them once the broker has them, deleting whole segments as they empty and remembering
the position inside the oldest one in a small `head` file. When the spool would exceed
`max_bytes`, or the disk is full, the oldest segment goes first and its records are counted in
`dropped`. Each append is flushed to the OS (survives the agent crashing, not the machine).

    >>> import tempfile
    >>> s = DiskSpool(tempfile.mkdtemp(), max_bytes=1 << 20)
    >>> s.append(b"one"); s.append(b"two")
    >>> s.read(10), len(s)
    ([b'one', b'two'], 2)
    >>> s.commit(1); len(s), s.read(10)
    (1, [])
"""

from __future__ import annotations

import errno
import logging
import os
import struct
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

_LEN = struct.Struct("<I")
_FULL = {errno.ENOSPC, errno.EDQUOT}


@dataclass
class _Segment:
    n: int
    path: Path
    count: int
    nbytes: int
    records: list[bytes] | None = None  # in memory only for the segments being read or written


def _parse(path: Path) -> tuple[list[bytes], int]:
    """The complete records of a segment and the byte length they span (a torn tail is ignored)."""
    data = path.read_bytes()
    out, pos = [], 0
    while pos + _LEN.size <= len(data):
        (n,) = _LEN.unpack_from(data, pos)
        if pos + _LEN.size + n > len(data):
            break
        out.append(data[pos + _LEN.size: pos + _LEN.size + n])
        pos += _LEN.size + n
    return out, pos


class DiskSpool:
    """FIFO of byte records in `directory`, at most `max_bytes` on disk."""

    def __init__(self, directory: str | Path, max_bytes: int = 256 << 20,
                 segment_bytes: int = 1 << 20) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.segment_bytes = max_bytes, max(64, min(segment_bytes, max_bytes // 4 or 64))
        self.dropped = 0  # records lost to the bound or a full disk
        self.disk_full = False
        self._segments: deque[_Segment] = deque()
        self._tail: BinaryIO | None = None
        self._skip = 0  # committed records at the start of the oldest segment
        self._out = 0  # records handed out by read() and not yet committed
        self._ghost = 0  # handed-out records whose segment was dropped; their commits are ignored
        self._bytes = 0
        self._count = 0
        self._recover()

    # ---- inspection

    def __len__(self) -> int:
        """Records waiting (including any handed out and not committed)."""
        return self._count - self._skip

    @property
    def nbytes(self) -> int:
        return self._bytes

    # ---- writing

    def append(self, payload: bytes) -> None:
        """Add a record at the end; drops the oldest segment(s) to respect the bound or a full disk."""
        size = _LEN.size + len(payload)
        for attempt in range(3):
            try:
                self._write(payload, size)
                self.disk_full = False
                break
            except OSError as e:
                if e.errno not in _FULL:
                    raise
                self.disk_full = True
                if attempt == 2 or not self._drop_oldest(keep_tail=False):
                    self.dropped += 1
                    log.warning("spool disk full and nothing older to drop; record dropped")
                    return
        while self._bytes > self.max_bytes and len(self._segments) > 1:
            self._drop_oldest(keep_tail=True)

    def _write(self, payload: bytes, size: int) -> None:
        seg = self._segments[-1] if self._segments and self._tail is not None else None
        if seg is None or seg.nbytes + size > self.segment_bytes:
            seg = self._new_segment()
        assert self._tail is not None
        try:
            self._tail.write(_LEN.pack(len(payload)) + payload)
            self._tail.flush()
        except OSError:
            try:  # never leave a torn record behind a failed write
                self._tail.truncate(seg.nbytes)
                self._tail.seek(seg.nbytes)
            except OSError:
                pass
            raise
        seg.nbytes += size
        seg.count += 1
        if seg.records is not None:
            seg.records.append(payload)
        self._bytes += size
        self._count += 1

    def _new_segment(self) -> _Segment:
        self._close_tail()
        n = self._segments[-1].n + 1 if self._segments else 1
        seg = _Segment(n, self.dir / f"{n:012d}.seg", 0, 0, [])
        self._tail = open(seg.path, "ab")  # noqa: SIM115 - kept open while it is the tail
        self._segments.append(seg)
        return seg

    # ---- reading

    def read(self, max_records: int) -> list[bytes]:
        """The next records after those already handed out, oldest first; not yet removed."""
        out: list[bytes] = []
        pos = self._skip + self._out
        for seg in self._segments:
            if len(out) >= max_records:
                break
            if pos >= seg.count:
                pos -= seg.count
                continue
            records = self._load(seg)
            take = records[pos: pos + max_records - len(out)]
            out.extend(take)
            pos = 0
        self._out += len(out)
        return out

    def commit(self, n: int) -> None:
        """Remove the `n` oldest handed-out records (the broker has them)."""
        ghost = min(n, self._ghost)
        self._ghost -= ghost
        n = min(n - ghost, self._out)
        self._out -= n
        self._skip += n
        while self._segments and self._skip >= self._segments[0].count and (
                len(self._segments) > 1 or self._skip > 0):
            seg = self._segments[0]
            if len(self._segments) == 1:
                self._close_tail()
            self._skip -= seg.count
            self._remove(seg)
        self._write_head()

    def rewind(self) -> None:
        """Forget what was handed out and not committed: it will be read again."""
        self._out, self._ghost = 0, 0

    def push_front(self, payloads: list[bytes]) -> None:
        """Put records back before everything else (records the producer still held at shutdown)."""
        if not payloads:
            return
        self.rewind()
        self._compact_head()
        n = self._segments[0].n - 1 if self._segments else 0
        seg = _Segment(n, self.dir / f"{n:012d}.seg", 0, 0)
        with open(seg.path, "wb") as f:
            for p in payloads:
                f.write(_LEN.pack(len(p)) + p)
            seg.nbytes, seg.count = f.tell(), len(payloads)
        self._segments.appendleft(seg)
        self._bytes += seg.nbytes
        self._count += seg.count
        self._write_head()

    def close(self) -> None:
        self._close_tail()
        self._write_head()

    # ---- internals

    def _load(self, seg: _Segment) -> list[bytes]:
        if seg.records is None:
            seg.records, _ = _parse(seg.path)
        return seg.records

    def _drop_oldest(self, keep_tail: bool) -> bool:
        if not self._segments or (keep_tail and len(self._segments) == 1):
            return False
        seg = self._segments[0]
        if len(self._segments) == 1:
            self._close_tail()
        lost = seg.count - self._skip
        in_flight = min(self._out, lost)
        self._out -= in_flight
        self._ghost += in_flight
        self.dropped += lost - in_flight  # in-flight ones may still arrive at the broker
        self._skip = 0
        self._remove(seg)
        self._write_head()
        log.warning("spool over its bound (%d bytes) or disk full: dropped %d oldest records",
                    self.max_bytes, lost - in_flight)
        return True

    def _remove(self, seg: _Segment) -> None:
        self._segments.popleft()
        self._bytes -= seg.nbytes
        self._count -= seg.count
        seg.path.unlink(missing_ok=True)

    def _compact_head(self) -> None:
        """Rewrite the oldest segment without its committed records, so `push_front` can precede it."""
        if not self._segments or self._skip == 0:
            return
        seg = self._segments[0]
        records = self._load(seg)[self._skip:]
        is_tail = len(self._segments) == 1 and self._tail is not None
        self._close_tail()
        tmp = seg.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            for p in records:
                f.write(_LEN.pack(len(p)) + p)
            size = f.tell()
        os.replace(tmp, seg.path)
        self._bytes += size - seg.nbytes
        self._count -= self._skip
        seg.nbytes, seg.count, seg.records, self._skip = size, len(records), list(records), 0
        if is_tail:
            self._tail = open(seg.path, "ab")  # noqa: SIM115

    def _close_tail(self) -> None:
        if self._tail is not None:
            self._tail.close()
            self._tail = None
        if self._segments and self._segments[-1] is not self._segments[0]:
            self._segments[-1].records = None  # re-read from disk if ever needed; frees memory

    def _write_head(self) -> None:
        head = self.dir / "head"
        if not self._segments or self._skip == 0:
            head.unlink(missing_ok=True)
            return
        try:
            tmp = self.dir / "head.tmp"
            tmp.write_text(f"{self._segments[0].n} {self._skip}\n")
            os.replace(tmp, head)
        except OSError as e:  # a full disk only risks re-sending a few records after a restart
            log.warning("cannot record spool position: %s", e)

    def _recover(self) -> None:
        for path in sorted(self.dir.glob("*.seg"), key=lambda p: int(p.stem)):
            records, end = _parse(path)
            if end < path.stat().st_size:
                log.warning("spool segment %s ends in a torn record; truncating it", path.name)
                with open(path, "r+b") as f:
                    f.truncate(end)
            if not records:
                path.unlink()
                continue
            self._segments.append(_Segment(int(path.stem), path, len(records), end))
            self._bytes += end
            self._count += len(records)
        head = self.dir / "head"
        if head.exists() and self._segments:
            try:
                n, skip = (int(v) for v in head.read_text().split())
            except ValueError:
                n, skip = -1, 0
            if n == self._segments[0].n:
                self._skip = min(skip, self._segments[0].count)
        if self._segments:
            log.info("spool holds %d records from a previous run", len(self))
