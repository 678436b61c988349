"""What per-track state produces: line crossings, zone entries/exits and per-frame occupancy; and,
at an intersection's approaches (`streams.approaches`), per-frame lane samples, crossings that enter
or leave the intersection and turning movements.

Events carry a track id (pseudonymous, internal topics only); nothing here is ever published to a
partner — `streams.partners` builds partner values from windowed aggregates, never from events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ZoneEventKind = Literal["ENTRY", "EXIT"]


@dataclass(frozen=True, slots=True)
class Crossing:
    """A track crossed a counting line (after hysteresis), at the event time of the completing frame."""

    site_id: str
    camera_id: str
    line_id: str
    direction: str
    class_name: str
    ts_ms: int
    track_id: int
    speed_kmh: float | None
    age_bracket: str | None
    gender: str | None
    colour: str | None = None  # vehicles: the colour the edge voted for the track (T5); not in line_crossing.avsc


@dataclass(frozen=True, slots=True)
class ZoneVisit:
    """A track entered or left a zone. Exits carry the dwell time; entries carry the zone the track
    left last and the travel time since. `age_bracket`/`gender` are an addition to the contract so
    entries can feed the attributes table (G1); `zone_event.avsc` has no field for them yet."""

    site_id: str
    camera_id: str
    zone_id: str
    kind: ZoneEventKind
    class_name: str
    ts_ms: int
    track_id: int
    dwell_s: float | None
    from_zone_id: str | None
    travel_s: float | None
    age_bracket: str | None = None
    gender: str | None = None


@dataclass(frozen=True, slots=True)
class OccupancySample:
    """How many people stood in a zone in one frame (one sample per zone per frame), and their track
    ids (so that the occupancy table knows how many distinct people a window's statistics rest on)."""

    site_id: str
    camera_id: str
    zone_id: str
    ts_ms: int
    present: int
    tracks: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class OccupancyFrames:
    """The occupancy samples of consecutive frames of one camera as one block: `present[f][k]`
    people stood in zone `zone_ids[k]` in the frame captured at `ts_ms[f]`. What the stream worker
    hands its windows: a sample per frame and zone is too small a thing to route one by one.
    `inside[k]`: (frame time, track) of every person seen in zone k in these frames (for the
    disclosure policy: how many distinct people a window's statistics rest on)."""

    site_id: str
    camera_id: str
    zone_ids: tuple[str, ...]
    ts_ms: list[int]
    present: list[list[int]]
    inside: tuple[tuple[tuple[int, int], ...], ...] = ()

    def samples(self) -> list[OccupancySample]:
        """The same as single samples, frame after frame, zone after zone."""
        inside = self.inside or tuple(() for _ in self.zone_ids)
        return [OccupancySample(self.site_id, self.camera_id, z, t, row[k],
                                tuple(tid for ts, tid in inside[k] if ts == t))
                for t, row in zip(self.ts_ms, self.present, strict=True) for k, z in enumerate(self.zone_ids)]


@dataclass(frozen=True, slots=True)
class ApproachSample:
    """One frame at one intersection approach: vehicles present in its lane zones, the sum and number of
    their known ground speeds, the queue length behind the stop line (metres, 0: no queue), and the
    tracks present that have proven themselves (seen for `counting.min_track_frames` frames), so a
    window can count distinct vehicles."""

    site_id: str
    camera_id: str
    intersection_id: str
    approach_id: str
    ts_ms: int
    present: int
    speed_sum_kmh: float
    speeds: int
    queue_m: float
    tracks: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ApproachCrossing:
    """A vehicle crossed an approach's inbound line towards the intersection (`entering`) or its outbound
    line away from it (`leaving`)."""

    site_id: str
    camera_id: str
    intersection_id: str
    approach_id: str
    flow_direction: str
    class_name: str
    ts_ms: int
    track_id: int
    speed_kmh: float | None


@dataclass(frozen=True, slots=True)
class TurningMovement:
    """A vehicle that entered the intersection on one approach left it on another (or the same: a
    U-turn), both seen by one camera; at the time it left."""

    site_id: str
    camera_id: str
    intersection_id: str
    entry_approach_id: str
    exit_approach_id: str
    class_name: str
    ts_ms: int
    track_id: int


Event = Crossing | ZoneVisit | OccupancySample | ApproachSample | ApproachCrossing | TurningMovement


def to_avro(event: Crossing | ZoneVisit) -> dict[str, Any]:
    """The record for `line_crossing.avsc` or `zone_event.avsc` (ts as epoch ms)."""
    if isinstance(event, Crossing):
        return {
            "site_id": event.site_id, "camera_id": event.camera_id, "line_id": event.line_id,
            "direction": event.direction, "class_name": event.class_name, "ts": event.ts_ms,
            "track_id": event.track_id, "speed_kmh": event.speed_kmh, "age_bracket": event.age_bracket,
            "gender": event.gender,
        }
    if isinstance(event, ZoneVisit):
        return {
            "site_id": event.site_id, "camera_id": event.camera_id, "zone_id": event.zone_id,
            "kind": event.kind, "class_name": event.class_name, "ts": event.ts_ms,
            "track_id": event.track_id, "dwell_s": event.dwell_s, "from_zone_id": event.from_zone_id,
            "travel_s": event.travel_s,
        }
    raise TypeError(f"no Avro schema for {type(event).__name__} (occupancy samples are aggregated in-process)")


def event_to_json(event: Event) -> dict[str, Any]:
    """A tagged plain dict (for state snapshots); `event_from_json` inverts it."""
    d: dict[str, Any] = {"type": type(event).__name__}
    for name in event.__slots__:  # type: ignore[union-attr]
        d[name] = getattr(event, name)
    return d


_TYPES: dict[str, type[Event]] = {t.__name__: t for t in (  # type: ignore[misc]
    Crossing, ZoneVisit, OccupancySample, ApproachSample, ApproachCrossing, TurningMovement)}


def event_from_json(d: dict[str, Any]) -> Event:
    fields = dict(d)
    cls = _TYPES[fields.pop("type")]
    if cls is ApproachSample:
        fields["tracks"] = tuple(fields["tracks"])
    return cls(**fields)
