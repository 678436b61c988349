"""Trips of a mobile camera and the privacy rules of a moving one (G4): what may leave the edge, when.

The probe vehicle's path is personal data of its driver and passengers, so before a frame's record
leaves the edge:

- **Its position becomes an H3 cell** (schemas/cells.py) at the configured resolution, its heading
  one of eight compass sectors and its speed whole km/h: nothing finer is in the record, so neither
  coordinates nor a dead-reckoned path can be read back from it.
- **Trips are pseudonymous.** A trip id is a random 63-bit number drawn when a trip starts, and drawn
  again at every UTC midnight, so nothing links trips, or one trip's parts on two days. A trip ends
  when the vehicle stands (moves less than `STOP_RADIUS_M`) or loses its fixes for `trip_break_s`,
  and when the camera stops; the next movement starts a new trip.
- **Privacy zones.** No frame whose cell comes within `radius_m` of a configured place (a depot, a
  driver's home) is recorded, nor one whose cell comes within `trip_end_radius_m` of where its trip
  started. Cells, not positions, are compared: a published cell never reaches into a zone.
- **The end of a trip is not known until it has happened**, so records are held back: a record
  leaves only once the vehicle is far enough from it that, were the trip to end right now, the
  record's cell would lie outside the end zone. When the trip ends, every record still held is
  dropped: the last `trip_end_radius_m` of a trip never leave the vehicle. A record still held
  `max_hold_s` after capture (a crawl in a jam near where the trip might end) is dropped rather than
  published late, which bounds how far behind real time a mobile camera's records may arrive; the
  stream workers wait that long before treating a silent mobile camera as idle.
- Frames without a position (a gap in the fixes) are held with the others and leave when the next
  frame with a position leaves; frames before a trip's first fix are dropped, since they may be
  right at its start.

Time is the frames' capture time, never the wall clock, so a replayed drive behaves as a live one.

    >>> gate = TripGate(MobileSettings(position={"kind": "gpx", "path": "d.gpx"}))   # doctest: +SKIP
    >>> gate.offer(ts_ms, position, record)   # -> [(record, ProbeFields), ...] released in order
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from privaflow.edge.position import Position
from privaflow.schemas.cells import cell_within, distance_m, snap
from privaflow.schemas.mobile import MobileSettings
from privaflow.schemas.vocabulary import heading_bucket

STOP_RADIUS_M = 50.0  # standing still: GPS wanders a few metres, a car in a car park a few tens

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ProbeFields:
    """What a mobile camera's record says about the vehicle itself: its cell (None in a fix gap), its
    heading sector (None until it has moved), whole km/h and the pseudonymous trip id."""

    trip_id: int
    cell: str | None
    heading: str | None
    speed_kmh: float | None


@dataclass
class GateStats:
    trips: int = 0
    released: int = 0
    held: int = 0
    dropped_zone: int = 0  # cell within a privacy zone or the trip's start zone
    dropped_trip_end: int = 0  # still held when the trip ended
    dropped_no_trip: int = 0  # before the first fix, or standing after a trip ended
    dropped_stale: int = 0  # held longer than max_hold_s


@dataclass(slots=True)
class _Held(Generic[T]):
    ts_s: float
    item: T
    fields: ProbeFields


def new_trip_id() -> int:
    """A random positive 63-bit id (an Avro long): unlinkable, nothing to derive it from."""
    return secrets.randbits(63) or 1


class TripGate(Generic[T]):
    """Decides, frame by frame, which records of one mobile camera leave the edge and when (see the
    module docstring). `offer` takes a frame's time, position and record and returns the records
    released by it, in capture order, each with its `ProbeFields`; `end` ends the trip (the source
    ended, the agent stops) and drops what is held."""

    def __init__(self, settings: MobileSettings, trip_id: Callable[[], int] = new_trip_id) -> None:
        self.settings = settings
        self._new_id = trip_id
        self.stats = GateStats()
        self._held: deque[_Held[T]] = deque()
        self._trip: int | None = None
        self._trip_day: dt.date | None = None
        self._start: tuple[float, float] | None = None
        self._anchor: tuple[float, float, float] | None = None  # (lat, lon, since) of the latest stand
        self._stopped = False  # the trip ended standing here; the next trip starts when the vehicle moves
        self._stop_spot: tuple[float, float] | None = None
        self._last_fix_s: float | None = None

    @property
    def trip_id(self) -> int | None:
        return self._trip

    def offer(self, ts_ms: int, position: Position | None, item: T) -> list[tuple[T, ProbeFields]]:
        now = ts_ms / 1000.0
        s = self.settings
        if position is None:
            if self._trip is not None and self._last_fix_s is not None and now - self._last_fix_s >= s.trip_break_s:
                self.end()  # fixes lost for a trip break: the trip ended where they were lost
            if self._trip is None:
                self.stats.dropped_no_trip += 1
                return []
            self._rotate(now)
            self._hold(now, item, ProbeFields(self._trip, None, None, None))
            return self._release(now, None)
        self._last_fix_s = now
        if not self._moving(now, position):
            if self._trip is not None:
                self.end()  # stood still for a trip break: the trip ended here
            self._stopped = True
            if self._anchor is not None:
                self._stop_spot = (self._anchor[0], self._anchor[1])
        if self._stopped:
            self.stats.dropped_no_trip += 1
            return []
        if self._trip is None:
            # a trip that starts after a stand starts where the vehicle stood, not 50 m on
            self._begin(now, self._stop_spot or (position.lat, position.lon))
            self._stop_spot = None
        self._rotate(now)
        cell = snap(position.lat, position.lon, s.h3_resolution)
        if self._in_zone(cell):
            self.stats.dropped_zone += 1
            return self._release(now, position)
        heading = None if position.heading_deg is None else heading_bucket(position.heading_deg)
        assert self._trip is not None
        self._hold(now, item, ProbeFields(self._trip, cell, heading, float(round(position.speed_kmh))))
        return self._release(now, position)

    def end(self) -> int:
        """The trip ends now: every held record is dropped (it lies within the end zone). Returns how many."""
        dropped = len(self._held)
        self.stats.dropped_trip_end += dropped
        self._held.clear()
        self._trip = self._start = self._trip_day = None
        self.stats.held = 0
        return dropped

    # ------------------------------------------------------------------ internals

    def _begin(self, now: float, start: tuple[float, float]) -> None:
        self._trip, self._start = self._new_id(), start
        self._trip_day = _utc_day(now)
        self.stats.trips += 1

    def _rotate(self, now: float) -> None:
        day = _utc_day(now)
        if self._trip is not None and day != self._trip_day:
            # a new id at midnight: one trip's two days cannot be linked (it is not a new start: no zone)
            self._trip, self._trip_day = self._new_id(), day
            self.stats.trips += 1

    def _moving(self, now: float, p: Position) -> bool:
        """False once the vehicle has stayed within STOP_RADIUS_M for trip_break_s."""
        a = self._anchor
        if a is None or distance_m(a[0], a[1], p.lat, p.lon) > STOP_RADIUS_M:
            self._anchor = (p.lat, p.lon, now)
            self._stopped = False
            return True
        return now - a[2] < self.settings.trip_break_s

    def _in_zone(self, cell: str) -> bool:
        s = self.settings
        if any(cell_within(cell, z.lat, z.lon, z.radius_m) for z in s.privacy_zones):
            return True
        return (s.trip_end_radius_m > 0 and self._start is not None
                and cell_within(cell, self._start[0], self._start[1], s.trip_end_radius_m))

    def _hold(self, now: float, item: T, fields: ProbeFields) -> None:
        self._held.append(_Held(now, item, fields))

    def _clear_of_end(self, cell: str, p: Position) -> bool:
        """Were the trip to end at `p` now, would `cell` lie outside the end zone?"""
        r = self.settings.trip_end_radius_m
        return r <= 0 or not cell_within(cell, p.lat, p.lon, r)

    def _release(self, now: float, p: Position | None) -> list[tuple[T, ProbeFields]]:
        out: list[tuple[T, ProbeFields]] = []
        held, max_hold = self._held, self.settings.max_hold_s
        while held:
            head = held[0]
            if now - head.ts_s > max_hold:  # too late to leave: dropped, never published late
                held.popleft()
                self.stats.dropped_stale += 1
                continue
            if head.fields.cell is None:  # a gap frame goes with the next frame that has a cell
                nxt = next((h for h in held if h.fields.cell is not None), None)
                ok = nxt is not None and p is not None and self._clear_of_end(nxt.fields.cell, p)  # type: ignore[arg-type]
            else:
                ok = p is not None and self._clear_of_end(head.fields.cell, p)
            if not ok:
                break
            held.popleft()
            out.append((head.item, head.fields))
            self.stats.released += 1
        self.stats.held = len(held)
        return out


def _utc_day(ts_s: float) -> dt.date:
    return dt.datetime.fromtimestamp(ts_s, dt.UTC).date()
