"""From a batch of Kafka records to new per-camera state, closed windows, events and dead letters.

Plain Python, no Kafka client: `streams.app` hands a batch in and writes what comes out, so this
file holds every decision about a record and the tests drive it without a broker.

State of a camera is one JSON-able dict (one faust Table entry, keyed by camera id and therefore
co-partitioned with the detections)::

    {"tracks": TrackBook state, "windows": WindowStore state, "disclosure": Disclosure state,
     "approaches": ApproachBook state (cameras watching an intersection approach),
     "offsets": {"<partition>": last applied offset}, "max_ts": newest frame time,
     "open_cells": ..., "live_tracks": ...}

Every window the store closes goes through the camera's disclosure policy (`streams.disclosure`) at
once, in the same step: what partners and the operator receive (`Outcome.released`) is decided with
state that is checkpointed together with the windows, so a replay releases the same records.

A record whose offset is at or below the stored offset of its partition was applied before the
state was last written, so a replay after a crash skips it: state and offset mark travel in one
changelog message, which makes a restart neither lose nor double count.

The consumer must not skip records either, and faust-streaming's does around recovery (its fetcher
runs while it seeks back to the committed offsets; seen here as holes of ~50 records after a
SIGKILL, cf. faust-streaming issues #596 and #221). So the engine also keeps, per partition, the
highest offset applied (`upto`, written to the table after the camera states at each checkpoint, on
the same changelog partition; see `Checkpoints`); `holes()` names the ranges between it and what the
consumer delivered, the worker reads them directly (`streams.refetch`) and `merge()` puts them in
before `apply()`. The same mechanism replays what a crash between two checkpoints lost.

Watermark of a camera = its newest frame time; `WindowStore` keeps windows open for `grace_s` more.
Idle cameras (an edge that stopped, a video that ended) would keep their last windows open forever,
so the worker's timer sends a *tick* through Kafka (see `Tick`): when a camera has been silent for
`idle_timeout_s` of wall clock, its watermark advances by the wall-clock time elapsed since its last
record, as if frames without objects had kept coming. A tick goes through the same agent and the
same partition as the camera's records, so state has one writer and the changelog the right
partition.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from privaflow.schemas.codec import AvroSerde, DecodeError, RegistryError, epoch_ms, unframe
from privaflow.schemas.site import SiteConfig
from privaflow.schemas.vocabulary import VOCABULARIES
from privaflow.streams.approaches import ApproachBook
from privaflow.streams.disclosure import Disclosure, Policy, Released
from privaflow.streams.events import Crossing, ZoneVisit
from privaflow.streams.releases import ReleaseBook
from privaflow.streams.tables import ClosedWindow, WindowStore
from privaflow.streams.tracks import TrackBook

log = logging.getLogger(__name__)

STATE_VERSION = 1
COORD_EPS = 1e-4  # float32 rounding of normalised coordinates at the edge may overshoot 0..1 slightly
MISSING_SCHEMA_RETRY_S = 60.0
# how far ahead of the worker's clock a frame may be; the site sets it (windows.max_clock_skew_s)
DEFAULT_MAX_CLOCK_AHEAD_MS = 300_000


@dataclass(frozen=True, slots=True)
class Incoming:
    """One Kafka record as the engine sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record the worker cannot use, with why (`kind` is a short metric label, `reason` the detail)."""

    record: Incoming
    kind: str
    reason: str

    def headers(self) -> list[tuple[str, bytes]]:
        return [("error", self.reason[:1000].encode()), ("source_topic", self.record.topic.encode()),
                ("source_partition", str(self.record.partition).encode()),
                ("source_offset", str(self.record.offset).encode())]


@dataclass(frozen=True, slots=True)
class Tick:
    """Processing-time fallback for an idle camera: "no record after `offset`; advance the
    watermark to `watermark_ms`". Ignored when a record newer than `offset` has been applied since,
    so a replayed or overtaken tick changes nothing."""

    offset: int
    watermark_ms: int

    def encode(self) -> bytes:
        return json.dumps({"offset": self.offset, "watermark_ms": self.watermark_ms}).encode()

    @classmethod
    def decode(cls, payload: bytes) -> Tick:
        d = json.loads(payload)
        return cls(int(d["offset"]), int(d["watermark_ms"]))


class CameraState:
    """Everything the worker keeps for one camera (see the module docstring)."""

    __slots__ = ("camera_id", "book", "windows", "disclosure", "offsets", "max_ts", "approaches")

    def __init__(self, camera_id: str, book: TrackBook, windows: WindowStore, disclosure: Disclosure,
                 offsets: dict[int, int] | None = None, max_ts: int | None = None,
                 approaches: ApproachBook | None = None) -> None:
        self.camera_id, self.book, self.windows, self.disclosure = camera_id, book, windows, disclosure
        self.offsets: dict[int, int] = offsets if offsets is not None else {}
        self.max_ts = max_ts
        self.approaches = approaches  # None: the camera watches no intersection approach

    @classmethod
    def new(cls, site: SiteConfig, camera_id: str, policy: Policy | None = None) -> CameraState:
        return cls(camera_id, TrackBook(site, camera_id), WindowStore(site),
                   Disclosure(policy or Policy(site), camera_id), approaches=ApproachBook.for_camera(site, camera_id))

    def to_state(self) -> dict[str, Any]:
        windows = self.windows.to_state()
        out = {"version": STATE_VERSION, "tracks": self.book.to_state(), "windows": windows,
               "disclosure": self.disclosure.to_state(),
               "offsets": {str(p): o for p, o in self.offsets.items()}, "max_ts": self.max_ts,
               "open_cells": len(windows["cells"]), "live_tracks": len(self.book)}
        if self.approaches is not None:
            out["approaches"] = self.approaches.to_state()
        return out

    @classmethod
    def from_state(cls, site: SiteConfig, camera_id: str, state: dict[str, Any], policy: Policy | None = None
                   ) -> CameraState:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"camera state version {state.get('version')!r} is not {STATE_VERSION}")
        return cls(camera_id, TrackBook.from_state(site, camera_id, state["tracks"]),
                   WindowStore.from_state(site, state["windows"]),
                   Disclosure(policy or Policy(site), camera_id, state.get("disclosure")),
                   {int(p): int(o) for p, o in state["offsets"].items()}, state["max_ts"],
                   ApproachBook.from_state(site, camera_id, state.get("approaches")))

    def observe(self, frames: list[dict[str, Any]]) -> list[Any]:
        """The events of these frames: the track book's, then its approaches' (lane samples, crossings
        into and out of the intersection, turning movements)."""
        events: list[Any] = self.book.observe_many(frames)
        if self.approaches is not None:
            events += self.approaches.observe(frames, events)
        return events

    def expire(self, now_ms: int) -> list[Any]:
        """Tracks (and the vehicles the approaches remember) not seen for `track_expiry_s` before
        `now_ms` are over; returns the exits that implies."""
        if self.approaches is not None:
            self.approaches.expire(now_ms)
        return self.book.expire(now_ms)

    def close_windows(self, watermark_ms: int) -> tuple[list[ClosedWindow], Released]:
        """Close what the watermark has passed and put it through the disclosure policy."""
        closed = self.windows.close(watermark_ms)
        return closed, self.disclosure.release(closed, self.windows.watermark_ms)


@dataclass
class Outcome:
    """What one batch produced; `streams.app` publishes it, then writes `states` at its next checkpoint."""

    closed: list[ClosedWindow] = field(default_factory=list)
    released: Released = field(default_factory=Released)  # what the disclosure policy let out of `closed`
    idle_closed: Counter[str] = field(default_factory=Counter)  # of `closed`, per table, how many a tick closed
    events: list[Crossing | ZoneVisit] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    # camera key -> (its state, partition of its last record: the changelog partition to write it to);
    # the live object, snapshotted with `to_state()` when it is written
    states: dict[bytes, tuple[CameraState, int]] = field(default_factory=dict)
    upto: dict[int, int] = field(default_factory=dict)  # partition -> highest offset applied, if it advanced
    late: Counter[str] = field(default_factory=Counter)
    applied: int = 0
    skipped: int = 0  # replays of records already in the state
    ticks: int = 0
    detections: int = 0
    frame_ts: list[int] = field(default_factory=list)  # capture time of every applied frame (latency)


def upto_key(partition: int) -> bytes:
    """Table key of a partition's highest applied offset (NUL-prefixed: never a camera id)."""
    return b"\x00upto/%d" % partition


class Checkpoints:
    """Camera states and partition marks changed since they were last written to the table.

    Writing every touched camera's state after every batch cost a fifth of the worker's time (JSON
    and changelog bytes), most of it at light load, where batches are small. So states are written
    at most every `interval_s`: all changed states first, then the marks of their partitions. A crash
    in between only costs a replay, because what is above a partition's mark is read again (by the
    consumer or, if it committed past it, by `holes()`). The first `add` after a write starts the
    interval, so a burst after a quiet spell is written a full interval later, not at once."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._states: dict[bytes, tuple[CameraState, int]] = {}
        self._upto: dict[int, int] = {}
        self._since: float | None = None

    def add(self, out: Outcome, now: float) -> None:
        """Call once `out` is published: its states may be written from now on."""
        if (out.states or out.upto) and self._since is None:
            self._since = now
        self._states.update(out.states)
        self._upto.update(out.upto)

    def due(self, now: float) -> bool:
        return self._since is not None and now - self._since >= self.interval_s

    def take(self) -> list[tuple[bytes, dict[str, Any], int]]:
        """(table key, value, changelog partition) to write in this order; forgets them."""
        writes = [(key, st.to_state(), p) for key, (st, p) in self._states.items()]
        writes += [(upto_key(p), {"upto": upto}, p) for p, upto in self._upto.items()]
        self.clear()
        return writes

    def clear(self) -> None:
        """Drop what is pending (the engine forgot its cache: the table is the truth again)."""
        self._states.clear()
        self._upto.clear()
        self._since = None


# labels a detection may carry, each from its closed vocabulary (schemas/vocabulary.py): anything else is
# free text from whoever holds the edge credential, never a partner row (docs/privacy-model.md, rule e)
_LABELS = {kind: frozenset(VOCABULARIES[kind].labels) for kind in ("age_bracket", "gender", "colour")}


def label_problem(detections: list[dict[str, Any]], classes: frozenset[str] | None) -> tuple[str, str] | None:
    """('label', reason) for the first detection whose class is not one the camera counts (`classes`)
    or whose age bracket, gender or colour is outside its closed vocabulary; the value is shown
    shortened and escaped, as it may be anything."""
    for i, d in enumerate(detections):
        c = d["class_name"]
        if classes is not None and c not in classes:
            return "label", (f"detection {i}: class {c[:40]!r} is not one of the camera's classes "
                             f"({', '.join(sorted(classes))})")
        for kind, allowed in _LABELS.items():
            v = d.get(kind)
            if v is not None and v not in allowed:
                return "label", f"detection {i}: {kind} {v[:40]!r} is not in the closed vocabulary"
    return None


def frame_problem(frame: dict[str, Any], site_id: str, cameras: set[str] | frozenset[str], key: str | None,
                  max_ahead_ms: int = DEFAULT_MAX_CLOCK_AHEAD_MS,
                  classes: Mapping[str, frozenset[str]] | None = None) -> tuple[str, str] | None:
    """(kind, reason) when a schema-valid record is semantically unusable, else None. A frame more than
    `max_ahead_ms` ahead of this worker's clock is unusable: accepted, it would move its camera's
    watermark past every later real frame, and those would be skipped as replays. With `classes`
    (camera -> the classes it counts), a label outside the camera's classes or a closed vocabulary
    makes the frame unusable too (`label_problem`)."""
    if frame["site_id"] != site_id:
        return "site", f"site_id {frame['site_id']!r} is not this worker's site {site_id!r}"
    cam = frame["camera_id"]
    if cam not in cameras:
        return "camera", f"camera {cam!r} is not in the site config"
    if key != cam:
        return "key", f"record key {key!r} is not its camera_id {cam!r} (records must be keyed by camera)"
    ahead_ms = epoch_ms(frame["ts"]) - time.time() * 1000
    if ahead_ms > max_ahead_ms:
        return "time", (f"frame time {frame['ts']} is more than {max_ahead_ms / 1000:g} s ahead of this worker's "
                        "clock (windows.max_clock_skew_s; is the edge's clock set?)")
    if frame["frame_width"] <= 0 or frame["frame_height"] <= 0:
        return "value", f"frame size {frame['frame_width']}x{frame['frame_height']} is not positive"
    lo, hi = -COORD_EPS, 1.0 + COORD_EPS
    for i, d in enumerate(frame["detections"]):
        x1, y1, x2, y2 = d["x1"], d["y1"], d["x2"], d["y2"]
        # written so that NaN fails every comparison and lands here
        if not (lo <= x1 <= x2 <= hi and lo <= y1 <= y2 <= hi):
            return "box", f"detection {i}: box ({x1:.4g}, {y1:.4g}, {x2:.4g}, {y2:.4g}) is not inside 0..1"
        if not (lo <= d["foot_x"] <= hi and lo <= d["foot_y"] <= hi):
            return "box", f"detection {i}: foot point ({d['foot_x']:.4g}, {d['foot_y']:.4g}) is not inside 0..1"
        if not 0.0 <= d["confidence"] <= 1.0:
            return "value", f"detection {i}: confidence {d['confidence']:.4g} is not in 0..1"
    if classes is not None:
        return label_problem(frame["detections"], classes.get(cam))
    return None


class Decoder:
    """Confluent-framed Avro -> dict with our AvroSerde, telling records that can never be read
    (dead letters) from a registry that is merely unreachable (an error: the worker stops and a
    restart replays, nothing is lost). Writer schemas are fetched by `prefetch` off the event loop."""

    def __init__(self, serde: AvroSerde) -> None:
        self.serde = serde
        self._known: set[int] = set()
        self._missing: dict[int, float] = {}  # schema id -> monotonic time it was found missing

    def unknown_ids(self, payloads: Iterable[bytes | None]) -> set[int]:
        ids: set[int] = set()
        now = time.monotonic()
        for p in payloads:
            try:
                sid, _ = unframe(p)  # type: ignore[arg-type]
            except ValueError:
                continue
            if sid not in self._known and now - self._missing.get(sid, -math.inf) > MISSING_SCHEMA_RETRY_S:
                ids.add(sid)
        return ids

    def fetch(self, schema_id: int) -> None:
        """Blocking registry lookup; call in a thread. RegistryError other than not-found propagates."""
        try:
            self.serde.registry.schema_by_id(schema_id)
        except RegistryError as e:
            if "not found" not in str(e):
                raise
            self._missing[schema_id] = time.monotonic()
            log.warning("schema id %d is not in the registry; its records go to the dead-letter topic", schema_id)
        else:
            self._known.add(schema_id)

    def decode(self, m: Incoming) -> dict[str, Any]:
        if m.value is None:
            raise DecodeError("null value", m.topic, m.partition, m.offset)
        try:
            sid, _ = unframe(m.value)
        except ValueError as e:
            raise DecodeError(str(e), m.topic, m.partition, m.offset) from None
        if sid not in self._known:
            # not prefetched, or found missing: never block the event loop on the registry here
            raise DecodeError(f"schema id {sid} not found in the registry", m.topic, m.partition, m.offset)
        return self.serde.decode(m.value, m.topic, m.partition, m.offset)


def _dead_kind(reason: str) -> str:
    return "unknown_schema" if "schema id" in reason else "decode"


class Engine:
    """Applies batches to per-camera state. Keeps decoded state of the cameras it has seen in memory
    (the faust Table stays the truth: `forget()` on rebalance, `load` reads the table)."""

    def __init__(self, site: SiteConfig, decoder: Decoder, tick_topic: str, book: ReleaseBook | None = None) -> None:
        self.site = site
        self.policy = Policy(site, book)  # `book`: the DP releases read from Kafka (streams/releases.py)
        self.decoder = decoder
        self.tick_topic = tick_topic
        self.cameras = frozenset(c.id for c in site.cameras)
        self.classes = {c.id: frozenset(c.classes) for c in site.cameras}
        self.max_ahead_ms = site.windows.max_clock_skew_s * 1000
        self._cache: dict[bytes, CameraState] = {}
        # camera key -> (partition, last applied offset, monotonic time of its last record)
        self.activity: dict[bytes, tuple[int, int, float]] = {}
        # detections partition -> offset of the last record this engine has seen in it
        self.positions: dict[int, int] = {}
        # detections partition -> highest offset applied; every offset below it was applied or does
        # not exist. Unknown partitions are not checked for holes (the worker loads it first).
        self.upto: dict[int, int] = {}
        # partition -> True while detection records of that partition wait to be consumed; ticks come
        # through their own topic and could overtake them (e.g. a backlog after a restart)
        self.backlog: Callable[[int], bool] = lambda _partition: False

    def forget(self) -> None:
        """Drop cached state (partitions moved, or a batch failed half way)."""
        self._cache.clear()
        self.activity.clear()
        self.positions.clear()
        self.upto.clear()

    @property
    def camera_count(self) -> int:
        """Cameras whose state is cached (no __len__: an engine without cameras is still an engine)."""
        return len(self._cache)

    def cached(self) -> Iterable[tuple[bytes, CameraState]]:
        return self._cache.items()

    def _state(self, key: bytes, load: Callable[[bytes], dict[str, Any] | None]) -> CameraState:
        st = self._cache.get(key)
        if st is None:
            cam = key.decode()
            raw = load(key)
            st = (CameraState.new(self.site, cam, self.policy) if raw is None
                  else CameraState.from_state(self.site, cam, raw, self.policy))
            self._cache[key] = st
        return st

    def apply(self, batch: Sequence[Incoming], load: Callable[[bytes], dict[str, Any] | None],
              now: float | None = None) -> Outcome:
        """Apply a batch (records of any cameras and partitions, in consumption order)."""
        now = time.monotonic() if now is None else now
        out = Outcome()
        by_key: dict[bytes | None, list[int]] = {}
        upto_before = dict(self.upto)
        for i, m in enumerate(batch):
            if m.topic != self.tick_topic:
                if m.offset > self.positions.get(m.partition, -1):
                    self.positions[m.partition] = m.offset
                if m.offset <= upto_before.get(m.partition, -1):
                    out.skipped += 1  # delivered again: applied before (or before the last restart)
                    continue
                if m.partition in self.upto and m.offset > self.upto[m.partition]:
                    self.upto[m.partition] = out.upto[m.partition] = m.offset
            by_key.setdefault(m.key, []).append(i)
        for key, idxs in by_key.items():
            if key is not None and key.decode("utf-8", "replace") in self.cameras:
                self._apply_camera(key, batch, idxs, load, now, out)
            else:
                self._reject_all(batch, idxs, None if key is None else key.decode("utf-8", "replace"), out)
        return out

    def holes(self, batch: Sequence[Incoming], ends: Mapping[int, int] | None = None
              ) -> dict[int, list[tuple[int, int]]]:
        """partition -> [(first, end)) ranges of offsets above `upto` the batch skips over. `ends`
        (partition -> where the group's consumer resumed) also makes [upto + 1, end) a hole of a
        partition that has no record in the batch: Faust may have committed past the last mark and
        then nothing more may come (a crash between checkpoints, then a silent camera)."""
        offsets: dict[int, set[int]] = {}
        for m in batch:
            if m.topic != self.tick_topic and m.partition in self.upto and m.offset > self.upto[m.partition]:
                offsets.setdefault(m.partition, set()).add(m.offset)
        out: dict[int, list[tuple[int, int]]] = {}
        for p, offs in offsets.items():
            expected = self.upto[p] + 1
            for o in sorted(offs):
                if o > expected:
                    out.setdefault(p, []).append((expected, o))
                expected = o + 1
        for p, end in (ends or {}).items():
            if p in self.upto and p not in offsets and end > self.upto[p] + 1:
                out[p] = [(self.upto[p] + 1, end)]
        return out

    def merge(self, batch: Sequence[Incoming], refetched: Iterable[Incoming]) -> list[Incoming]:
        """The batch with the records read back for its holes: per partition in offset order, each
        offset once, ticks last (a tick is only valid if no newer record of its camera came)."""
        records = {(m.partition, m.offset): m for m in (*batch, *refetched) if m.topic != self.tick_topic}
        return [records[po] for po in sorted(records)] + [m for m in batch if m.topic == self.tick_topic]

    def _reject_all(self, batch: Sequence[Incoming], idxs: list[int], cam: str | None, out: Outcome) -> None:
        for i in idxs:
            m = batch[i]
            if m.topic == self.tick_topic:
                continue
            try:
                frame = self.decoder.decode(m)
            except DecodeError as e:
                out.dead.append(DeadLetter(m, _dead_kind(e.reason), e.reason))
                continue
            problem = frame_problem(frame, self.site.site_id, self.cameras, cam, self.max_ahead_ms)
            kind, reason = problem or ("key", f"record key {cam!r} is not a camera of the site config")
            out.dead.append(DeadLetter(m, kind, reason))

    def _apply_camera(self, key: bytes, batch: Sequence[Incoming], idxs: list[int],
                      load: Callable[[bytes], dict[str, Any] | None], now: float, out: Outcome) -> None:
        st = self._state(key, load)
        cam = st.camera_id
        late_before = dict(st.windows.late_dropped)
        frames: list[dict[str, Any]] = []
        last_i: int | None = None
        for i in idxs:
            m = batch[i]
            if m.topic == self.tick_topic:
                self._observe(st, frames, out)
                frames = []
                if self._tick(st, m, out):
                    last_i = i
                continue
            if m.offset <= st.offsets.get(m.partition, -1):
                out.skipped += 1
                continue
            st.offsets[m.partition] = m.offset
            last_i = i
            self.activity[key] = (m.partition, m.offset, now)
            try:
                frame = self.decoder.decode(m)
            except DecodeError as e:
                out.dead.append(DeadLetter(m, _dead_kind(e.reason), e.reason))
                continue
            problem = frame_problem(frame, self.site.site_id, self.cameras, cam, self.max_ahead_ms, self.classes)
            if problem:
                out.dead.append(DeadLetter(m, *problem))
                continue
            frames.append(frame)
        self._observe(st, frames, out)
        if last_i is None:
            return
        for table, n in st.windows.late_dropped.items():
            if n > late_before.get(table, 0):
                out.late[table] += n - late_before.get(table, 0)
        out.states[key] = (st, batch[last_i].partition)

    def _observe(self, st: CameraState, frames: list[dict[str, Any]], out: Outcome) -> None:
        if not frames:
            return
        events = st.observe(frames)
        st.windows.add(events)
        for f in frames:
            t = epoch_ms(f["ts"])
            out.frame_ts.append(t)
            if st.max_ts is None or t > st.max_ts:
                st.max_ts = t
            out.detections += len(f["detections"])
        out.applied += len(frames)
        out.events.extend(e for e in events if isinstance(e, Crossing | ZoneVisit))
        if st.max_ts is not None:
            closed, released = st.close_windows(st.max_ts)
            out.closed.extend(closed)
            out.released.extend(released)

    def _tick(self, st: CameraState, m: Incoming, out: Outcome) -> bool:
        try:
            tick = Tick.decode(m.value or b"")
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring malformed tick at %s[%d]@%d", m.topic, m.partition, m.offset)
            return False
        if st.offsets.get(m.partition, -1) != tick.offset:
            return False  # a record came after the tick was sent: the camera is not idle
        if self.backlog(m.partition):
            return False  # records of this partition are still on their way: not idle, just behind
        out.ticks += 1
        events = st.expire(tick.watermark_ms)
        st.windows.add(events)
        out.events.extend(e for e in events if isinstance(e, Crossing | ZoneVisit))
        closed, released = st.close_windows(tick.watermark_ms)
        out.closed.extend(closed)
        out.released.extend(released)
        out.idle_closed.update(c.table for c in closed)
        return True

    # ------------------------------------------------------------------ idle cameras

    def seed_activity(self, items: Iterable[tuple[bytes, dict[str, Any]]], partitions: set[int], now: float
                      ) -> None:
        """Start the idle clock of cameras found in the table (after a restart or a rebalance) that
        this worker owns and has not heard from yet."""
        for key, state in items:
            if key in self.activity or not state or not state.get("offsets"):
                continue
            p, off = max(((int(p), int(o)) for p, o in state["offsets"].items()), key=lambda po: po[1])
            if p in partitions and (state.get("open_cells") or state.get("live_tracks")):
                self.activity[key] = (p, off, now)

    def idle_ticks(self, now: float, idle_timeout_s: float, partitions: set[int],
                   load: Callable[[bytes], dict[str, Any] | None]) -> list[tuple[bytes, int, Tick]]:
        """(key, partition, tick) for every owned camera silent for `idle_timeout_s` that still has
        open windows or live tracks. The watermark advances by the silent wall-clock time."""
        out = []
        for key, (p, off, since) in list(self.activity.items()):
            silent = now - since
            if p not in partitions or silent < idle_timeout_s:
                continue
            st = self._cache.get(key)
            if st is None:
                raw = load(key)
                if raw is None:
                    continue
                st = self._state(key, lambda _k, _raw=raw: _raw)  # type: ignore[misc]
            if st.max_ts is None or (len(st.book) == 0 and not st.windows.open_windows()):
                self.activity.pop(key, None)  # nothing left to close: stop ticking until it speaks again
                continue
            out.append((key, p, Tick(off, st.max_ts + int(silent * 1000))))
        return out

