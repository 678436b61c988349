"""The road_conditions table: what vehicle-mounted cameras saw of each H3 cell, per direction and
window, over every mobile camera of a site (G4; docs/privacy-model.md).

A cell's aggregate holds, per pseudonymous trip that passed it, that trip's frames, summed probe
speed, vehicles ahead, people and furniture passed. When the window closes:

- `trips`: how many distinct trips passed (the table's k is counted in trips: a cell fewer than k
  trips passed is not published at all, since even a row with its numbers withheld would say "the
  probe vehicle was here");
- `median_speed_kmh`: the median over trips of each trip's mean speed in the cell, and
  `mean_vehicles_ahead` / `p85_vehicles_ahead` over each trip's mean per frame: one value per trip,
  so a trip that crawled through the cell for ten minutes weighs as much as one that passed in ten
  seconds, and no statistic is one trip's own value unless k is 1;
- `mean_people`: people per frame over the window's frames (people are only ever counted, G4);
- furniture: objects of each class passed, each counted once per trip, summed over trips;
- `congestion_level` from speed and vehicles ahead (`congestion_level`, thresholds below).

Congestion levels. Speed thresholds follow Japan's road-traffic information for ordinary roads (VICS /
JARTIC: below 10 km/h is congestion, 10-20 km/h crowded), and a fourth level for a standing queue.
Speed alone cannot tell a jam from a red light or a taxi waiting at a kerb, which is what vehicles
ahead are for: a slow probe with no vehicle ahead is held up by something else, not by traffic.

| level     | median probe speed | and mean vehicles ahead |
|-----------|--------------------|-------------------------|
| FREE      | >= 20 km/h         | any                     |
| SLOW      | 10-20 km/h         | any; or < 10 km/h with fewer than 1 ahead (a signal, a stop) |
| CONGESTED | < 10 km/h          | >= 1                    |
| JAMMED    | < 5 km/h           | >= 2 (a standing queue) |
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

FREE_KMH, SLOW_KMH, JAM_KMH = 20.0, 10.0, 5.0
QUEUE_AHEAD, JAM_AHEAD = 1.0, 2.0


@dataclass(frozen=True, slots=True)
class ProbeFrame:
    """One processed frame of a mobile camera, as the road table needs it (nothing else of the record)."""

    camera_id: str
    ts_ms: int
    trip_id: int
    cell: str | None
    heading: str | None
    speed_kmh: float | None
    vehicles_ahead: int
    people: int
    furniture: tuple[str, ...] = ()


def congestion_level(median_speed_kmh: float | None, mean_vehicles_ahead: float | None) -> str | None:
    """The level for a cell (see the module docstring); None without a speed."""
    if median_speed_kmh is None:
        return None
    ahead = mean_vehicles_ahead or 0.0
    if median_speed_kmh >= FREE_KMH:
        return "FREE"
    if median_speed_kmh >= SLOW_KMH or ahead < QUEUE_AHEAD:
        return "SLOW"
    if median_speed_kmh < JAM_KMH and ahead >= JAM_AHEAD:
        return "JAMMED"
    return "CONGESTED"


def _percentile(sorted_values: list[float], q: float) -> float | None:
    from privaflow.streams.tables import percentile  # one definition of a percentile (tables imports us)

    return percentile(sorted_values, q)


# ---------------------------------------------------------------- the cell aggregate (TableSpec parts)
# A cell is {trip id (str, for JSON state): [frames, speed sum, speed frames, ahead sum, people, {class: n}]}

def empty(_ctx: Any = None) -> list[Any]:
    return [{}]


def add(cell: list[Any], f: ProbeFrame, _ctx: Any = None) -> None:
    trips: dict[str, list[Any]] = cell[0]
    t = trips.get(str(f.trip_id))
    if t is None:
        t = trips[str(f.trip_id)] = [0, 0.0, 0, 0, 0, {}]
    t[0] += 1
    if f.speed_kmh is not None and math.isfinite(f.speed_kmh):
        t[1] += float(f.speed_kmh)
        t[2] += 1
    t[3] += int(f.vehicles_ahead)
    t[4] += int(f.people)
    for name in f.furniture:
        t[5][name] = t[5].get(name, 0) + 1


def stats(cell: list[Any], _dims: tuple[str, ...] = (), _ctx: Any = None) -> dict[str, Any]:
    trips: dict[str, list[Any]] = cell[0]
    frames = sum(t[0] for t in trips.values())
    speeds = sorted(t[1] / t[2] for t in trips.values() if t[2])
    ahead = sorted(t[3] / t[0] for t in trips.values() if t[0])
    furniture: dict[str, int] = {}
    for t in trips.values():
        for name, n in t[5].items():
            furniture[name] = furniture.get(name, 0) + int(n)
    median = _percentile(speeds, 0.5)
    mean_ahead = sum(ahead) / len(ahead) if ahead else None
    return {"trips": len(trips), "samples": frames, "median_speed_kmh": median,
            "speed_trips": len(speeds), "mean_vehicles_ahead": mean_ahead,
            "p85_vehicles_ahead": _percentile(ahead, 0.85),
            "mean_people": sum(t[4] for t in trips.values()) / frames if frames else None,
            "congestion_level": congestion_level(median, mean_ahead),
            "furniture": dict(sorted(furniture.items())),
            # the partner schema's declared class list, index by index (labels; the policy makes them symbols)
            "furniture_classes": sorted(furniture), "furniture_counts": [furniture[c] for c in sorted(furniture)]}


def feeds(f: ProbeFrame) -> tuple[tuple[str, str], ProbeFrame] | None:
    """The cell a frame feeds: a frame with a cell and a heading (a vehicle that has moved)."""
    if f.cell is None or f.heading is None:
        return None
    return (f.cell, f.heading), f


# ---------------------------------------------------------------- windows over a whole fleet

@dataclass
class _Window:
    end: int
    cells: dict[tuple[str, str], list[Any]] = field(default_factory=dict)


class RoadWindows:
    """Tumbling windows of the road_conditions table over every mobile camera of a site.

    Frames from several vehicles arrive through several partitions, so a window's end cannot be
    judged from event times alone. The rule, the same live and on a replay: a frame counts in its
    window when its record reached Kafka (the record's timestamp) no later than the window's end plus
    `grace_ms` (the site's grace plus the edge's `max_hold_s`: frames are held back at most that
    long, edge/trips.py, then wait at most the edge's batch time, 500 ms by default, inside the
    site's grace). `close(bound_ms)` closes every window whose end plus grace is at or before
    `bound_ms` (the consumer's judgement that no record older than that is still to come) exactly
    once; a frame for a closed window is counted in `late_dropped`, never added."""

    def __init__(self, size_ms: int, grace_ms: int) -> None:
        self.size_ms, self.grace_ms = size_ms, grace_ms
        self._windows: dict[int, _Window] = {}
        self._closed_through: int | None = None  # every window with end + grace <= this is closed
        self.late_dropped = 0

    def add(self, frames: Iterable[ProbeFrame], record_ts_ms: int) -> None:
        for f in frames:
            fed = feeds(f)
            if fed is None:
                continue
            start = f.ts_ms - f.ts_ms % self.size_ms
            end = start + self.size_ms
            if record_ts_ms > end + self.grace_ms or (
                    self._closed_through is not None and end + self.grace_ms <= self._closed_through):
                self.late_dropped += 1
                continue
            win = self._windows.get(start)
            if win is None:
                win = self._windows[start] = _Window(end)
            cell = win.cells.get(fed[0])
            if cell is None:
                cell = win.cells[fed[0]] = empty()
            add(cell, fed[1])

    def close(self, bound_ms: int) -> list[tuple[int, int, tuple[str, str], dict[str, Any]]]:
        """(window start, end, (cell, heading), statistics) of every window now closed, in order."""
        if self._closed_through is None or bound_ms > self._closed_through:
            self._closed_through = bound_ms
        out = []
        for start in sorted(s for s, w in self._windows.items() if w.end + self.grace_ms <= self._closed_through):
            win = self._windows.pop(start)
            out += [(start, win.end, dims, stats(cell)) for dims, cell in sorted(win.cells.items())]
        return out

    def open_starts(self) -> list[int]:
        return sorted(self._windows)

    def __len__(self) -> int:
        return sum(len(w.cells) for w in self._windows.values())
