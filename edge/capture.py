"""Frames in: a video file, an RTSP/HTTP stream, a camera device or a folder of images.

Capture runs in its own thread and hands frames to inference through a bounded queue (2 slots).
In real-time mode a full queue drops its oldest frame (counted) so inference always sees the
newest picture; otherwise capture waits, so a file is analysed completely, as fast as possible.
Frames are only ever held in memory.

    >>> cap = Capture(".privaflow/media/vtest.avi", fps=10, realtime=False)   # doctest: +SKIP
    >>> with cap:
    ...     for frame in cap.frames():
    ...         print(frame.seq, frame.ts_ms, frame.image.shape)
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "udp://", "tcp://", "rtmp://")


class CaptureError(RuntimeError):
    """A source that can never produce frames (missing file, not a video, empty folder, no such camera)."""


@dataclass(slots=True)
class Frame:
    """One captured picture. `seq` counts frames offered to analysis (a gap is a dropped frame);
    `ts_ms` is the event time in UTC epoch milliseconds."""

    image: np.ndarray
    seq: int
    ts_ms: int


@dataclass
class CaptureStats:
    """Counters the agent reports; written by the capture thread only."""

    decoded: int = 0  # frames read from the source
    emitted: int = 0  # frames handed to analysis
    dropped: int = 0  # frames discarded because analysis fell behind
    corrupt: int = 0  # frames that could not be decoded
    reconnects: int = 0
    connected: bool = False


def source_kind(source: str | int) -> str:
    """'device', 'stream', 'images' or 'file'."""
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return "device"
    if source.lower().startswith(STREAM_SCHEMES):
        return "stream"
    if Path(source).is_dir():
        return "images"
    return "file"


def missing_device(index: int) -> str | None:
    """Why camera device `index` does not exist, or None when it may (only Linux can tell before opening)."""
    if sys.platform.startswith("linux"):
        node = Path(f"/dev/video{index}")
        if not node.exists():
            return f"{node} does not exist"
    return None


def _device_backend() -> int:
    # V4L2 is what every Linux camera speaks; CAP_ANY would also try GStreamer and FFmpeg first
    if sys.platform.startswith("linux") and cv2.videoio_registry.hasBackend(cv2.CAP_V4L2):
        return int(cv2.CAP_V4L2)
    return int(cv2.CAP_ANY)


class _End:
    """Queue sentinel: the source is exhausted (or failed with `error`)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class _Lost(Exception):
    """A live source stopped delivering; reconnect."""


class _Corrupt(Exception):
    """One frame could not be decoded; skip it."""


# ---------------------------------------------------------------- readers (capture thread only)

class _VideoFile:
    """A video file, read at most at `fps` by skipping frames on their own timestamps."""

    live = False

    def __init__(self, path: str, fps: float) -> None:
        p = Path(path)
        if not p.exists():
            raise CaptureError(f"{path}: no such file")
        if not p.is_file():
            raise CaptureError(f"{path}: not a regular file")
        if p.stat().st_size == 0:
            raise CaptureError(f"{path}: zero-byte file, not a video")
        self.path, self.period_ms = path, 1000.0 / fps
        self.cap = cv2.VideoCapture(path)
        if not self.cap.isOpened():
            raise CaptureError(f"{path}: cannot be opened as a video (not a video, or an unsupported codec)")
        self.frame_count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_ms = 1000.0 / (self.cap.get(cv2.CAP_PROP_FPS) or 25.0)
        self.last_pos = -1.0
        self.grabbed = 0
        self.next_due_ms = 0.0
        self.start_ms = time.time() * 1000.0
        first = None
        for _ in range(25):  # a damaged first frame is skipped like any other
            try:
                first = self._next()
                break
            except _Corrupt:
                continue
        if first is None:
            self.cap.release()
            raise CaptureError(f"{path}: no decodable frame (truncated or corrupt video)")
        self.pending: tuple[np.ndarray, float] | None = first

    def _next(self) -> tuple[np.ndarray, float] | None:
        """The next frame that is due, with its position in ms; None at the end of the file."""
        while self.cap.grab():
            self.grabbed += 1
            pos = float(self.cap.get(cv2.CAP_PROP_POS_MSEC))
            if pos <= self.last_pos:  # a container without usable timestamps: count frames instead
                pos = self.last_pos + self.frame_ms
            self.last_pos = pos
            if pos + 1e-3 < self.next_due_ms:
                continue  # subsample to the analysis rate; decode (retrieve) only frames we keep
            ok, image = self.cap.retrieve()
            if not ok or image is None or image.size == 0:
                raise _Corrupt
            # Due times advance in fixed steps so a 25 fps file at 10 fps keeps a 100 ms grid.
            self.next_due_ms = max(self.next_due_ms + self.period_ms, pos - self.period_ms / 2)
            return image, pos
        if self.frame_count and self.grabbed < self.frame_count - 1:
            log.warning("video ended after %d of %d frames (truncated file?)", self.grabbed, self.frame_count)
        return None

    def read(self) -> tuple[np.ndarray, int, float] | None:
        """(image, event ts ms, media position s) or None at the end."""
        if self.pending is not None:
            (image, pos), self.pending = self.pending, None
        else:
            got = self._next()
            if got is None:
                return None
            image, pos = got
        return image, int(self.start_ms + pos), pos / 1000.0

    def close(self) -> None:
        self.cap.release()


class _LiveSource:
    """An RTSP/HTTP stream or a camera device; wall-clock event time, subsampled to `fps`.

    A camera device that does not exist when capture starts is a `CaptureError`; one that goes away
    later (a USB camera unplugged) is a lost source like a dropped stream, and is reconnected."""

    live = True

    def __init__(self, source: str | int, fps: float, timeout_ms: int = 10_000) -> None:
        self.source, self.period_s, self.timeout_ms = source, 1.0 / fps, timeout_ms
        self.device = int(source) if source_kind(source) == "device" else None
        if self.device is not None and (why := missing_device(self.device)):
            raise CaptureError(f"camera device {self.device} not found: {why}")
        self.cap: cv2.VideoCapture | None = None
        self.next_due = 0.0

    def connect(self) -> None:
        if self.device is not None:
            cap = cv2.VideoCapture(self.device, _device_backend())
        else:
            timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self.timeout_ms,
                        cv2.CAP_PROP_READ_TIMEOUT_MSEC, self.timeout_ms]
            cap = cv2.VideoCapture(str(self.source), cv2.CAP_FFMPEG, timeouts)
        if not cap.isOpened():
            cap.release()
            raise _Lost("cannot open")
        self.cap = cap

    def read(self) -> tuple[np.ndarray, int, float] | None:
        if self.cap is None:
            self.connect()
        assert self.cap is not None
        while True:
            if not self.cap.grab():
                self.close()
                raise _Lost("read failed")
            now = time.monotonic()
            if now < self.next_due:
                continue
            self.next_due = max(self.next_due + self.period_s, now - self.period_s / 2)
            ok, image = self.cap.retrieve()
            if not ok or image is None or image.size == 0:
                raise _Corrupt
            return image, int(time.time() * 1000), now

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class _ImageFolder:
    """Sorted image files, one analysed frame each, `1/fps` apart in event time."""

    live = False

    def __init__(self, path: str, fps: float) -> None:
        self.files = sorted(p for p in Path(path).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise CaptureError(f"{path}: image folder holds no {'/'.join(sorted(IMAGE_SUFFIXES))} files")
        self.period_ms, self.i, self.start_ms = 1000.0 / fps, 0, time.time() * 1000.0
        # like a video's first frame: a folder whose pictures are all unreadable is an error, not "0 frames"
        self.pending: np.ndarray | None = None
        while self.i < len(self.files) and self.pending is None:
            self.pending = cv2.imread(str(self.files[self.i]), cv2.IMREAD_COLOR)
            self.i += 1
        if self.pending is None:
            raise CaptureError(f"{path}: none of its {len(self.files)} image files can be decoded (corrupt, or "
                               "not the format their names say)")
        self.skipped = self.i - 1  # unreadable files before the first good one

    def read(self) -> tuple[np.ndarray, int, float] | None:
        if self.skipped:
            self.skipped -= 1
            raise _Corrupt  # counted as corrupt frames, as if read in order
        if self.pending is not None:
            first, self.pending = self.pending, None
            pos_ms = (self.i - 1) * self.period_ms
            return first, int(self.start_ms + pos_ms), pos_ms / 1000.0
        if self.i >= len(self.files):
            return None
        path, pos_ms = self.files[self.i], self.i * self.period_ms
        self.i += 1
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise _Corrupt
        return image, int(self.start_ms + pos_ms), pos_ms / 1000.0

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- the capture thread

class Capture:
    """Reads `source` in a background thread and yields `Frame`s from `frames()`.

    `realtime` (default: True for live sources, False for files and folders) drops the oldest
    queued frame when analysis falls behind; False never drops, capture waits instead.
    `pace` replays a file or folder at its own speed (as a camera would deliver it) instead of as
    fast as analysis can go. `prepare` runs on each frame in the capture thread before hand-off (the
    agent passes its privacy filter, so only downscaled, masked frames ever reach analysis, and the
    resize overlaps with inference).
    Permanent errors raise `CaptureError` from `start()`; a lost live source reconnects with
    exponential backoff (1 s doubling to `max_backoff_s`); an undecodable frame is skipped and counted.
    """

    def __init__(self, source: str | int, fps: float, realtime: bool | None = None, pace: bool = False,
                 queue_size: int = 2, max_backoff_s: float = 30.0,
                 prepare: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        if not 1 <= queue_size <= 2:
            raise ValueError("queue_size must be 1 or 2: a longer queue only adds latency")
        self.source, self.fps, self.kind = source, fps, source_kind(source)
        self.realtime = self.kind in ("device", "stream") if realtime is None else realtime
        self.pace, self.prepare = pace, prepare
        self.max_backoff_s = max_backoff_s
        self.stats = CaptureStats()
        self._queue: queue.Queue[Frame | _End] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reader: _VideoFile | _LiveSource | _ImageFolder | None = None

    def start(self) -> Capture:
        """Open the source (raising `CaptureError` at once if it can never work) and start reading."""
        if self.kind == "file":
            self._reader = _VideoFile(str(self.source), self.fps)
        elif self.kind == "images":
            self._reader = _ImageFolder(str(self.source), self.fps)
        else:
            self._reader = _LiveSource(self.source, self.fps)
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread.start()
        return self

    def __enter__(self) -> Capture:
        return self.start() if self._thread is None else self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop reading and release the source; frames still queued are discarded."""
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=15)
        try:  # wake a consumer blocked in frames() on another thread
            self._queue.put_nowait(_End())
        except queue.Full:
            pass

    def frames(self, timeout_s: float | None = None) -> Iterator[Frame]:
        """Frames until the source ends or `stop()`; re-raises an error from the capture thread.
        `timeout_s`: give up waiting for a frame after this long (None: wait for ever)."""
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=timeout_s)
            except queue.Empty:
                return
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item

    # -- capture thread

    def _run(self) -> None:
        assert self._reader is not None
        first_backoff = min(1.0, self.max_backoff_s)
        reader, seq, backoff, bad_run = self._reader, 0, first_backoff, 0
        clock0: tuple[float, float] | None = None  # (monotonic, media position) for pacing
        try:
            while not self._stop.is_set():
                try:
                    got = reader.read()
                except _Corrupt:
                    self.stats.corrupt += 1
                    bad_run += 1
                    if reader.live and bad_run >= 50 and isinstance(reader, _LiveSource):
                        reader.close()  # a stream that only yields garbage: reconnect on the next read
                        bad_run = 0
                    continue
                except _Lost as e:
                    self.stats.connected = False
                    self.stats.reconnects += 1
                    log.warning("camera source lost (%s); reconnecting in %.1f s", e, backoff)
                    if self._stop.wait(backoff):
                        break
                    backoff = min(backoff * 2, self.max_backoff_s)
                    continue
                if got is None:
                    break
                self.stats.connected, backoff, bad_run = True, first_backoff, 0
                image, ts_ms, pos_s = got
                self.stats.decoded += 1
                if self.pace and not reader.live:
                    clock0 = clock0 or (time.monotonic(), pos_s)
                    delay = clock0[0] + (pos_s - clock0[1]) - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                self._offer(Frame(image if self.prepare is None else self.prepare(image), seq, ts_ms))
                seq += 1
        except Exception as e:  # surface anything unexpected in the consumer, never die silently
            log.exception("capture failed")
            self._put_end(_End(e))
            return
        finally:
            reader.close()
        self._put_end(_End())

    def _offer(self, frame: Frame) -> None:
        if self.realtime:
            while True:
                try:
                    self._queue.put_nowait(frame)
                    break
                except queue.Full:
                    try:
                        self._queue.get_nowait()  # drop the oldest: analysis wants the newest picture
                        self.stats.dropped += 1
                    except queue.Empty:
                        pass
        else:
            while not self._stop.is_set():
                try:
                    self._queue.put(frame, timeout=0.2)
                    break
                except queue.Full:
                    continue
        self.stats.emitted += 1

    def _put_end(self, end: _End) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(end, timeout=0.2)
                return
            except queue.Full:
                continue

