"""From a batch of Kafka records to new per-camera state, closed windows, events and dead letters.

Plain Python, no Kafka client: `streams.loop` hands a batch in and writes what comes out, so this
file holds every decision about a record and the tests drive it without a broker.

A record is a `privaflow.DetectionBatch` (several frames of one camera, column by column,
`schemas.detections`). It is applied or refused as a whole: a record with a broken layout, a value
out of range or a foreign site, camera or key is a dead letter with the reason, its good frames
included (the edge never writes such a record; what does is a foreign or broken producer). The
frames of every camera in a Kafka batch go through one `TrackTable.observe`, so the per-detection
work is one vectorised pass over the batch.

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
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any

import numpy as np
from numpy.typing import NDArray

from privaflow.schemas.codec import AvroSerde, DecodeError, RegistryError, unframe
from privaflow.schemas.detections import layout_problem, record_frames
from privaflow.schemas.site import SiteConfig
from privaflow.schemas.vocabulary import VOCABULARIES
from privaflow.streams.approaches import ApproachBook
from privaflow.streams.columns import Columns
from privaflow.streams.disclosure import Disclosure, Policy, Released
from privaflow.streams.events import Crossing, ZoneVisit
from privaflow.streams.releases import ReleaseBook
from privaflow.streams.tables import ClosedWindow, WindowContext, WindowStore
from privaflow.streams.tracks import TrackBook, TrackTable

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
    """Everything the worker keeps for one camera (see the module docstring). Its tracks are rows
    of the engine's `TrackTable`, which `book` views."""

    __slots__ = ("camera_id", "book", "windows", "disclosure", "offsets", "max_ts", "approaches")

    def __init__(self, camera_id: str, book: TrackBook, windows: WindowStore, disclosure: Disclosure,
                 offsets: dict[int, int] | None = None, max_ts: int | None = None,
                 approaches: ApproachBook | None = None) -> None:
        self.camera_id, self.book, self.windows, self.disclosure = camera_id, book, windows, disclosure
        self.offsets: dict[int, int] = offsets if offsets is not None else {}
        self.max_ts = max_ts
        self.approaches = approaches  # None: the camera watches no intersection approach

    @classmethod
    def new(cls, site: SiteConfig, camera_id: str, tracks: TrackTable | None = None,
            ctx: WindowContext | None = None, policy: Policy | None = None) -> CameraState:
        book = TrackBook(site, camera_id, tracks)
        book.table.drop(camera_id)
        return cls(camera_id, book, WindowStore(site, ctx), Disclosure(policy or Policy(site), camera_id),
                   approaches=ApproachBook.for_camera(site, camera_id))

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
    def from_state(cls, site: SiteConfig, camera_id: str, state: dict[str, Any],
                   tracks: TrackTable | None = None, ctx: WindowContext | None = None,
                   policy: Policy | None = None) -> CameraState:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"camera state version {state.get('version')!r} is not {STATE_VERSION}")
        return cls(camera_id, TrackBook.from_state(site, camera_id, state["tracks"], tracks),
                   WindowStore.from_state(site, state["windows"], ctx),
                   Disclosure(policy or Policy(site), camera_id, state.get("disclosure")),
                   {int(p): int(o) for p, o in state["offsets"].items()}, state["max_ts"],
                   ApproachBook.from_state(site, camera_id, state.get("approaches")))

    def observe(self, frames: list[dict[str, Any]]) -> list[Any]:
        """The events of these frames (dicts with per-object `detections`, for tools and tests; the
        worker observes every camera of a batch at once, `Engine`): the track book's, then its
        approaches' (lane samples, crossings into and out of the intersection, turning movements)."""
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
    """What one batch produced; `streams.loop` publishes it, then writes `states` at its next checkpoint."""

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
    applied: int = 0  # records
    frames: int = 0  # frames in the applied records
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


def record_problem(record: Mapping[str, Any], site_id: str, cameras: set[str] | frozenset[str], key: str | None,
                   max_ahead_ms: int = DEFAULT_MAX_CLOCK_AHEAD_MS) -> tuple[str, str] | None:
    """(kind, reason) when a schema-valid record is unusable as a whole, else None: a foreign site
    or camera, a key that is not its camera, columns that do not fit together, frames from the
    future (more than `max_ahead_ms` ahead of this worker's clock: accepted, it would move its
    camera's watermark past every later real frame, and those would be skipped as replays). The
    values of its detections are `detection_problem`'s."""
    if record["site_id"] != site_id:
        return "site", f"site_id {record['site_id']!r} is not this worker's site {site_id!r}"
    cam = record["camera_id"]
    if cam not in cameras:
        return "camera", f"camera {cam!r} is not in the site config"
    if key != cam:
        return "key", f"record key {key!r} is not its camera_id {cam!r} (records must be keyed by camera)"
    layout = layout_problem(record)
    if layout:
        return "layout", layout
    newest = max(record["ts"])
    if newest - time.time() * 1000 > max_ahead_ms:
        return "time", (f"frame time {newest} is more than {max_ahead_ms / 1000:g} s ahead of this worker's clock "
                        "(windows.max_clock_skew_s; is the edge's clock set?)")
    if record["frame_width"] <= 0 or record["frame_height"] <= 0:
        return "value", f"frame size {record['frame_width']}x{record['frame_height']} is not positive"
    return None


_VALUE_COLUMNS = ("x1", "y1", "x2", "y2", "foot_x", "foot_y", "confidence")


def _values_ok(cols: Mapping[str, Any]) -> NDArray[np.bool_]:
    """Per detection: box and foot point inside 0..1, confidence in 0..1 (NaN fails every test)."""
    x1, y1, x2, y2, fx, fy, conf = (np.asarray(cols[c], np.float64) for c in _VALUE_COLUMNS)
    lo, hi = -COORD_EPS, 1.0 + COORD_EPS
    return ((lo <= x1) & (x1 <= x2) & (x2 <= hi) & (lo <= y1) & (y1 <= y2) & (y2 <= hi)
            & (lo <= fx) & (fx <= hi) & (lo <= fy) & (fy <= hi) & (conf >= 0.0) & (conf <= 1.0))


# labels a record may carry besides the class (closed vocabularies: anything else, e.g. free text a
# hostile edge credential slipped in, is a dead letter, never a partner row)
LABELS: dict[str, frozenset[str]] = {kind: frozenset(VOCABULARIES[kind].labels)
                                     for kind in ("age_bracket", "gender", "colour")}


def _label_problem(record: Mapping[str, Any]) -> tuple[str, str] | None:
    for kind, allowed in LABELS.items():
        values = record.get(kind)
        if values is None:
            continue
        for i, v in enumerate(values):
            if v is not None and v not in allowed:
                return "label", f"detection {i}: {kind} {v[:40]!r} is not in the closed vocabulary"
    return None


def detection_problem(record: Mapping[str, Any], classes: Collection[str] | None = None) -> tuple[str, str] | None:
    """(kind, reason) for the first detection of a (layout-checked) record whose values are out of
    range, whose class is not one of `classes` (the camera's, from the site config) or whose age
    bracket, gender or colour is not in its closed vocabulary."""
    ok = _values_ok(record)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        x1, y1, x2, y2, fx, fy, conf = (float(record[c][i]) for c in _VALUE_COLUMNS)
        if not (-COORD_EPS <= x1 <= x2 <= 1 + COORD_EPS and -COORD_EPS <= y1 <= y2 <= 1 + COORD_EPS):
            return "box", f"detection {i}: box ({x1:.4g}, {y1:.4g}, {x2:.4g}, {y2:.4g}) is not inside 0..1"
        if not (-COORD_EPS <= fx <= 1 + COORD_EPS and -COORD_EPS <= fy <= 1 + COORD_EPS):
            return "box", f"detection {i}: foot point ({fx:.4g}, {fy:.4g}) is not inside 0..1"
        return "value", f"detection {i}: confidence {conf:.4g} is not in 0..1"
    if classes is not None:
        for i, c in enumerate(record["class_name"]):
            if c not in classes:
                return "class", (f"detection {i}: class {c[:40]!r} is not one of the classes of camera "
                                 f"{record['camera_id']!r} in the site config")
    return _label_problem(record)


def batch_problem(record: Mapping[str, Any], site: SiteConfig, key: str | None,
                  max_ahead_ms: int | None = None) -> tuple[str, str] | None:
    """Everything the worker checks about one decoded record, in the order it does: None when it
    is applied, else (kind, reason) of its dead letter."""
    cameras = frozenset(c.id for c in site.cameras)
    ahead = int(site.windows.max_clock_skew_s * 1000) if max_ahead_ms is None else max_ahead_ms
    problem = record_problem(record, site.site_id, cameras, key, ahead)
    if problem:
        return problem
    return detection_problem(record, frozenset(site.camera(record["camera_id"]).classes))


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
        self.tracks = TrackTable(site)  # every cached camera's tracks
        self._slot = {c.id: self.tracks.camera(c.id).slot for c in site.cameras}
        # (camera slot, class code): does the camera count the class? Codes of the site's classes
        # only; any other name is no class of any camera
        self._class_code = {name: int(self.tracks.class_codes([name])[0])
                            for name in sorted({n for c in site.cameras for n in c.classes})}
        self._allowed = np.zeros((len(site.cameras), max(self._class_code.values(), default=0) + 2), bool)
        for c in site.cameras:
            for name in c.classes:
                self._allowed[self._slot[c.id], self._class_code[name]] = True
        self._allowed[:, -1] = False  # where code -1 (unknown) lands
        self.windows_ctx = WindowContext.of(site)
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
        self.tracks.clear()
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
            st = (CameraState.new(self.site, cam, self.tracks, self.windows_ctx, self.policy) if raw is None
                  else CameraState.from_state(self.site, cam, raw, self.tracks, self.windows_ctx, self.policy))
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
        work: list[tuple[bytes, CameraState, list[tuple[Incoming, dict[str, Any]]], int | None]] = []
        ticks: list[tuple[bytes, CameraState, list[int]]] = []
        for key, idxs in by_key.items():
            if key is not None and key.decode("utf-8", "replace") in self.cameras:
                st, records, last_i, tick_idxs = self._take_records(key, batch, idxs, load, now, out)
                work.append((key, st, records, last_i))
                if tick_idxs:
                    ticks.append((key, st, tick_idxs))
            else:
                self._reject_all(batch, idxs, None if key is None else key.decode("utf-8", "replace"), out)
        late_before = {key: dict(st.windows.late_dropped) for key, st, _, _ in work}
        self._observe(work, out)
        # ticks come after their camera's records (`merge` puts them last): a record since the tick
        # was sent makes it stale
        for key, st, tick_idxs in ticks:
            for i in tick_idxs:
                if self._tick(st, batch[i], out):
                    out.states[key] = (st, batch[i].partition)
        for key, st, _, last_i in work:
            for table, n in st.windows.late_dropped.items():
                if n > late_before[key].get(table, 0):
                    out.late[table] += n - late_before[key].get(table, 0)
            if last_i is not None:
                out.states[key] = (st, batch[last_i].partition)
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
                record = self.decoder.decode(m)
            except DecodeError as e:
                out.dead.append(DeadLetter(m, _dead_kind(e.reason), e.reason))
                continue
            problem = record_problem(record, self.site.site_id, self.cameras, cam, self.max_ahead_ms)
            kind, reason = problem or ("key", f"record key {cam!r} is not a camera of the site config")
            out.dead.append(DeadLetter(m, kind, reason))

    def _take_records(self, key: bytes, batch: Sequence[Incoming], idxs: list[int],
                      load: Callable[[bytes], dict[str, Any] | None], now: float, out: Outcome
                      ) -> tuple[CameraState, list[tuple[Incoming, dict[str, Any]]], int | None, list[int]]:
        """One camera's records of the batch: replays skipped, the rest decoded and checked as a
        whole (dead letters); returns (state, usable records, index of its last new record, ticks)."""
        st = self._state(key, load)
        cam = st.camera_id
        records: list[tuple[Incoming, dict[str, Any]]] = []
        ticks: list[int] = []
        last_i: int | None = None
        for i in idxs:
            m = batch[i]
            if m.topic == self.tick_topic:
                ticks.append(i)
                continue
            if m.offset <= st.offsets.get(m.partition, -1):
                out.skipped += 1
                continue
            st.offsets[m.partition] = m.offset
            last_i = i
            self.activity[key] = (m.partition, m.offset, now)
            try:
                record = self.decoder.decode(m)
            except DecodeError as e:
                out.dead.append(DeadLetter(m, _dead_kind(e.reason), e.reason))
                continue
            problem = record_problem(record, self.site.site_id, self.cameras, cam, self.max_ahead_ms)
            if problem:
                out.dead.append(DeadLetter(m, *problem))
                continue
            records.append((m, record))
        return st, records, last_i, ticks

    def _observe(self, work: list[tuple[bytes, CameraState, list[tuple[Incoming, dict[str, Any]]], int | None]],
                 out: Outcome) -> None:
        """Every camera's decoded records through one value check and one `TrackTable.observe_batch`
        (the records of a camera one after the other), then into each camera's windows."""
        todo = [(st, recs) for _key, st, recs, _last in work if recs]
        if not todo:
            return
        records = [r for _, recs in todo for _, r in recs]
        cols = Columns.from_records(records)
        codes, bad = self._check_values(todo, records, cols)
        if bad:  # rare: those records go to the dead letters, the batch is built again without them
            kept = []
            for st, recs in todo:
                good = []
                for m, r in recs:
                    if id(r) in bad:
                        out.dead.append(DeadLetter(m, *bad[id(r)]))
                    else:
                        good.append((m, r))
                if good:
                    kept.append((st, good))
            todo = kept
            if not todo:
                return
            records = [r for _, recs in todo for _, r in recs]
            cols = Columns.from_records(records)
            codes = None
        cams = [(st.camera_id, sum(len(r["ts"]) for _, r in recs)) for st, recs in todo]
        observed = self.tracks.observe_batch(cols, cams, codes=codes)
        ts = cols.ts.tolist()
        out.frame_ts.extend(ts)
        out.detections += len(cols)
        out.frames += cols.frames
        out.applied += len(records)
        at = 0
        for (st, recs), (_cam, n_frames), seen in zip(todo, cams, observed, strict=True):
            newest = max(ts[at:at + n_frames])
            at += n_frames
            if st.max_ts is None or newest > st.max_ts:
                st.max_ts = newest
            events = seen.events
            if st.approaches is not None:  # an intersection's camera: its approaches see the frames one by one
                frames = [f for _m, r in recs for f in record_frames(r)]
                events = [*events, *st.approaches.observe(frames, events)]
            st.windows.add(events)
            if seen.occupancy is not None:
                st.windows.add((seen.occupancy,))
            out.events.extend(e for e in events if isinstance(e, Crossing | ZoneVisit))
            closed, released = st.close_windows(st.max_ts)
            out.closed.extend(closed)
            out.released.extend(released)

    def _check_values(self, todo: list[tuple[CameraState, list[tuple[Incoming, dict[str, Any]]]]],
                      records: list[dict[str, Any]], cols: Columns
                      ) -> tuple[NDArray[np.int32] | None, dict[int, tuple[str, str]]]:
        """(class codes, id(record) -> (kind, reason) for the records with a detection whose values
        are out of range or whose class is not one of its camera's), for the whole batch at once."""
        values: dict[str, Any] = {"foot_x": cols.foot_x, "foot_y": cols.foot_y}  # already arrays
        for c in ("x1", "y1", "x2", "y2", "confidence"):
            values[c] = list(chain.from_iterable(r[c] for r in records)) if len(records) > 1 else records[0][c]
        ok = _values_ok(values)
        codes = np.fromiter(map(self._class_code.get, cols.class_name, repeat(-1)), np.int32, len(cols))
        counts = [len(r["track_id"]) for r in records]
        slots = np.repeat(np.array([self._slot[st.camera_id] for st, recs in todo for _ in recs], np.int64), counts)
        ok &= self._allowed[slots, codes] & (codes >= 0)
        for kind, allowed in LABELS.items():  # attribute cameras only: rare columns
            if any(r.get(kind) is not None for r in records):
                labels = [v for r in records for v in (r.get(kind) or [None] * len(r["track_id"]))]
                if not allowed.issuperset(v for v in labels if v is not None):
                    ok &= np.fromiter((v is None or v in allowed for v in labels), bool, len(labels))
        if ok.all():
            return codes, {}
        bad: dict[int, tuple[str, str]] = {}
        ends = np.cumsum(counts)
        for i in sorted(set(np.searchsorted(ends, np.flatnonzero(~ok), side="right").tolist())):
            r = records[i]
            problem = detection_problem(r, self.classes[r["camera_id"]])
            assert problem is not None, "the batch check and the record check disagree"
            bad[id(r)] = problem
        return None, bad

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

