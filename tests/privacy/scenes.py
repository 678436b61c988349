"""Scenes for the attack suite: people and vehicles moving through one camera's picture, turned into
the detection records an edge would send, and run through the stream worker's own batch engine
(`streams.consume.Engine`: decoding, checks, TrackBook, WindowStore, the disclosure policy) exactly as
the worker runs them, minus Kafka. What comes out is everything a partner would receive.

A scene pair differs by one object; `differences` says what a partner could tell them apart by.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from privaflow.schemas.codec import AvroSerde
from privaflow.schemas.detections import batch_records
from privaflow.schemas.site import SiteConfig, parse_site_config
from privaflow.schemas.topics import DETECTIONS, dp_topic_name, operator_topic_name, partner_topic_name
from privaflow.streams.consume import Decoder, Engine, Incoming, Outcome
from privaflow.streams.releases import ReleaseBook
from tests.streams.harness import FakeRegistry

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a window boundary of every length used here
FPS = 10
TICKS = "ticks"

# One entrance camera: a door line across the middle, a shelf zone in the lower left, a till zone in
# the lower right. Short windows so scenes stay short.
BASE_SITE: dict[str, Any] = {
    "site_id": "shop",
    "cameras": [{"id": "door", "source": 0, "classes": ["person", "car"], "attributes": True,
                 "homography": [[20.0, 0.0, 0.0], [0.0, 20.0, 0.0], [0.0, 0.0, 1.0]]}],
    "lines": [{"id": "door-line", "camera": "door", "points": [[0.05, 0.5], [0.95, 0.5]], "directions": ["in", "out"]}],
    "zones": [{"id": "shelf", "camera": "door", "polygon": [[0.05, 0.6], [0.45, 0.6], [0.45, 0.95], [0.05, 0.95]]},
              {"id": "till", "camera": "door", "polygon": [[0.55, 0.6], [0.95, 0.6], [0.95, 0.95], [0.55, 0.95]]}],
    "windows": {"traffic_volume": 60, "occupancy": 60, "flow_lines": 60, "dwell": 60, "attributes": 60,
                "grace_s": 10},
    "counting": {"track_expiry_s": 3, "min_track_frames": 3},
}


def site_with(partners: list[dict[str, Any]], **changes: Any) -> SiteConfig:
    data = json.loads(json.dumps(BASE_SITE))
    for key, value in changes.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_site_config({**data, "partners": partners}, "<attack site>")


@dataclass(frozen=True)
class Walker:
    """One object: its track id, class and estimated attributes, and the straight legs of its path
    (normalised points), walked one leg after the other from `start_s` on at `step` per frame."""

    track: int
    path: tuple[tuple[float, float], ...]
    start_s: float
    step: float = 0.02
    cls: str = "person"
    age: str | None = None
    gender: str | None = None
    speed_kmh: float | None = None
    pause_s: float = 0.0  # stands still this long at the end of the first leg (a dwelling visitor)

    def positions(self) -> list[tuple[float, tuple[float, float]]]:
        """(seconds from scene start, foot point) per frame."""
        out: list[tuple[float, tuple[float, float]]] = []
        t = self.start_s
        for leg, (a, b) in enumerate(zip(self.path, self.path[1:], strict=False)):
            n = max(1, round(max(abs(b[0] - a[0]), abs(b[1] - a[1])) / self.step))
            for i in range(n + 1):
                out.append((t, (a[0] + (b[0] - a[0]) * i / n, a[1] + (b[1] - a[1]) * i / n)))
                t += 1 / FPS
            if leg == 0 and self.pause_s:
                for _ in range(round(self.pause_s * FPS)):
                    out.append((t, b))
                    t += 1 / FPS
        return out


def crossing_person(track: int, start_s: float, **kw: Any) -> Walker:
    """Walks in through the door line (top to bottom) and out of the picture."""
    x = 0.2 + (track % 30) * 0.02
    return Walker(track, ((x, 0.1), (x, 0.55), (0.5, 0.55)), start_s, **kw)


def frames(walkers: Iterable[Walker], duration_s: float, camera: str = "door", site_id: str = "shop",
           offset_s: float = 0.0) -> list[dict[str, Any]]:
    """The detection records of a scene, one per analysed frame (also when nobody is there)."""
    by_frame: dict[int, list[dict[str, Any]]] = {}
    for w in walkers:
        for t, (x, y) in w.positions():
            by_frame.setdefault(round(t * FPS), []).append(_detection(w, x, y))
    return [{"site_id": site_id, "camera_id": camera, "ts": T0 + round((offset_s + f / FPS) * 1000),
             "frame_seq": f, "frame_width": 640, "frame_height": 480, "detected": True,
             "detections": by_frame.get(f, [])} for f in range(round(duration_s * FPS))]


def _detection(w: Walker, x: float, y: float) -> dict[str, Any]:
    return {"track_id": w.track, "class_name": w.cls, "confidence": 0.9,
            "x1": max(0.0, x - 0.02), "y1": max(0.0, y - 0.1), "x2": min(1.0, x + 0.02), "y2": y,
            "foot_x": x, "foot_y": y, "world_x_m": None, "world_y_m": None, "speed_kmh": w.speed_kmh,
            "heading_deg": None, "colour": None, "age_bracket": w.age, "gender": w.gender}


class Worker:
    """The stream worker's engine for one site, fed encoded records batch by batch; keeps the state
    table as the worker's checkpoints would (after every batch), so a test can crash and replay, and
    the release book's topic as the publisher writes it (every outbox, before the partner records);
    a restart reads the book back from it, as the worker does."""

    def __init__(self, site: SiteConfig) -> None:
        self.site = site
        self.serde = AvroSerde(FakeRegistry(), "detection_batch", f"{DETECTIONS}-value")
        self.book_topic: list[bytes] = []  # values written to privaflow.dp-releases.v1, in order
        self.table: dict[bytes, dict[str, Any]] = {}
        self.offset = 0
        self.engine = self._engine()

    def _engine(self) -> Engine:
        decoder = Decoder(self.serde)
        decoder.fetch(self.serde.schema_id)
        book = ReleaseBook(self.site.site_id)
        for value in self.book_topic:
            book.read(value)
        return Engine(self.site, decoder, TICKS, book)

    def records(self, frames: list[dict[str, Any]]) -> list[Incoming]:
        out = []
        for f in frames:  # a record per frame: the finest replay a test can ask for
            [record] = batch_records([f], 1)
            out.append(Incoming(DETECTIONS, 0, self.offset, f["camera_id"].encode(), self.serde.encode(record)))
            self.offset += 1
        return out

    def apply(self, records: list[Incoming], checkpoint: bool = True) -> Outcome:
        out = self.engine.apply(records, self.table.get)
        self.book_topic += [r.value() for r in out.released.outbox]  # acknowledged before anything else
        if checkpoint:
            self.table.update({k: st.to_state() for k, (st, _) in out.states.items()})
        return out

    def restart(self, lose_book: bool = False) -> None:
        """A crash: the in-memory engine is gone, the table (the last checkpoint) and the release book's
        topic are what is left (`lose_book`: as if the releases had never been written to it)."""
        if lose_book:
            self.book_topic.clear()
        self.engine = self._engine()


Received = dict[str, dict[str, dict[str, Any]]]  # topic -> key -> value (the last one, as a compacted topic)


def topics_of(site: SiteConfig, partner_id: str) -> set[str]:
    """Every topic a partner may read (schemas/access.py gives it exactly these)."""
    p = next(p for p in site.partners if p.id == partner_id)
    return {dp_topic_name(p.id, t) if p.dp else partner_topic_name(t) for t in p.tables}


def received(outcomes: Iterable[Outcome], site: SiteConfig, partner_id: str) -> Received:
    """What the partner holds after these batches: every record on its topics."""
    topics = topics_of(site, partner_id)
    out: Received = {}
    for o in outcomes:
        for r in o.released.records:
            if r.topic in topics:
                out.setdefault(r.topic, {})[r.key] = r.value
    return out


def everything(outcomes: Iterable[Outcome]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every record released on any partner topic, in order (re-publications included)."""
    return [(r.topic, r.key, r.value) for o in outcomes for r in o.released.records
            if not r.topic.startswith(operator_topic_name("x").split("x")[0])]


def run(site: SiteConfig, walkers: Iterable[Walker], duration_s: float, partner_id: str,
        batch_frames: int = 50) -> Received:
    """A scene through a fresh worker, then enough empty frames that every window closes."""
    worker = Worker(site)
    tail = site.windows.grace_s + max(site.windows.model_dump()[t] for t in
                                      ("traffic_volume", "occupancy", "flow_lines", "dwell", "attributes")) + 5
    fs = frames(walkers, duration_s + tail)
    outcomes = [worker.apply(worker.records(fs[i:i + batch_frames])) for i in range(0, len(fs), batch_frames)]
    return received(outcomes, site, partner_id)


def differences(a: Received, b: Received, allowed: Mapping[str, Iterable[str]] | None = None) -> list[str]:
    """How a partner holding `a` or `b` could tell which scene it was in, except by the fields the
    model allows to differ (`allowed`: table field names, e.g. {"crowding_level"})."""
    ok = {f for fields in (allowed or {}).values() for f in fields}
    out = []
    for topic in sorted(set(a) | set(b)):
        ka, kb = set(a.get(topic, {})), set(b.get(topic, {}))
        out += [f"{topic}: row {k} only in the first scene" for k in sorted(ka - kb)]
        out += [f"{topic}: row {k} only in the second scene" for k in sorted(kb - ka)]
        for k in sorted(ka & kb):
            va, vb = a[topic][k], b[topic][k]
            out += [f"{topic} {k}: {f} {va.get(f)!r} != {vb.get(f)!r}" for f in sorted(set(va) | set(vb))
                    if va.get(f) != vb.get(f) and f not in ok]
    return out
