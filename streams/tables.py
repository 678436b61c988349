"""Event-time tumbling windows over crossings, zone visits and occupancy samples, in plain Python.

One `WindowStore` per site (or per worker: every cell is keyed by a line or zone, and a line or
zone belongs to one camera, so a camera's partition owns all of its cells). Windows are aligned to
the epoch, sized per table by `site.windows`, and stay open until the watermark passes
`window_end + grace_s`. An event for a window that has already closed is never silently lost: it
is counted in `late_dropped[table]`.

| table          | dims                                  | from                                    |
|----------------|---------------------------------------|-----------------------------------------|
| traffic_volume | line_id, direction, class_name        | every Crossing                          |
| attributes     | place_id, age_bracket, gender         | Crossing / ZoneVisit ENTRY with either  |
| flow_lines     | origin_zone_id, destination_zone_id   | ZoneVisit ENTRY with from_zone_id       |
| dwell          | zone_id                               | ZoneVisit EXIT with dwell_s             |
| occupancy      | zone_id                               | OccupancySample                         |

Crowding levels (occupancy) from `capacity_ratio = p95_present / capacity`: below 0.05 EMPTY,
below 0.5 LOW, below 0.9 CROWDED, else FULL. A zone without a capacity has no ratio and reads
EMPTY when nobody was ever present in the window, else LOW: without a capacity there is no
honest basis for calling it crowded.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from privaflow.schemas.site import SiteConfig
from privaflow.streams.events import Crossing, Event, OccupancySample, ZoneVisit

TABLES = ("traffic_volume", "occupancy", "flow_lines", "dwell", "attributes")
UNKNOWN = "unknown"
STATE_VERSION = 1
_AGGREGATED = frozenset({Crossing, ZoneVisit, OccupancySample})
CROWDING_THRESHOLDS = ((0.05, "EMPTY"), (0.5, "LOW"), (0.9, "CROWDED"))  # else FULL


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """One cell of one table for one window, with its statistics computed (`agg`). `dims` are the
    table's key dimensions in the order of the module table; nothing in it identifies a track."""

    table: str
    site_id: str
    dims: tuple[str, ...]
    window_start_ms: int
    window_end_ms: int
    agg: dict[str, Any]


class _Window:
    __slots__ = ("end", "cells")

    def __init__(self, end: int) -> None:
        self.end = end
        self.cells: dict[tuple[str, ...], list[Any]] = {}


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Linear-interpolation percentile (numpy's default) of an already sorted list; None when empty."""
    if not sorted_values:
        return None
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _hist_value(hist: list[int], rank: int) -> int:
    """The value at 0-based `rank` of the sample that the histogram (value -> count) describes."""
    seen = 0
    for value, count in enumerate(hist):
        seen += count
        if rank < seen:
            return value
    raise IndexError(rank)


def hist_percentile(hist: list[int], q: float) -> float | None:
    """`percentile` of the integer sample described by `hist[value] = count`, without expanding it."""
    n = sum(hist)
    if n == 0:
        return None
    pos = q * (n - 1)
    lo = math.floor(pos)
    v_lo = _hist_value(hist, lo)
    v_hi = _hist_value(hist, min(lo + 1, n - 1))
    return v_lo + (v_hi - v_lo) * (pos - lo)


def crowding_level(capacity_ratio: float | None, max_present: int) -> str:
    if capacity_ratio is None:
        return "EMPTY" if max_present == 0 else "LOW"
    for limit, level in CROWDING_THRESHOLDS:
        if capacity_ratio < limit:
            return level
    return "FULL"


class WindowStore:
    """Tumbling event-time windows for every partner table of one site. `add` assigns events to
    their windows, `close(watermark)` returns each window exactly once when the watermark has
    passed its end plus grace, and forgets it."""

    def __init__(self, site: SiteConfig) -> None:
        self.site_id = site.site_id
        w = site.windows
        self._size_ms = {t: int(getattr(w, t)) * 1000 for t in TABLES}
        self._grace_ms = int(w.grace_s) * 1000
        self._bins = sorted(float(b) for b in site.counting.dwell_bins_s)
        self._capacity = {z.id: z.capacity for z in site.zones}
        self._windows: dict[str, dict[int, _Window]] = {t: {} for t in TABLES}
        self._watermark: int | None = None
        self.late_dropped: dict[str, int] = dict.fromkeys(TABLES, 0)
        self.max_event_ts: int | None = None  # newest event time added; a natural watermark source

    @property
    def watermark_ms(self) -> int | None:
        """The highest watermark passed to `close` so far."""
        return self._watermark

    def _cell(self, table: str, dims: tuple[str, ...], ts: int) -> list[Any] | None:
        size = self._size_ms[table]
        start = ts - ts % size
        windows = self._windows[table]
        win = windows.get(start)
        if win is None:
            if self._watermark is not None and start + size + self._grace_ms <= self._watermark:
                self.late_dropped[table] += 1  # its window has been published already
                return None
            win = windows[start] = _Window(start + size)
        cell = win.cells.get(dims)
        if cell is None:
            cell = win.cells[dims] = self._empty(table)
        return cell

    def _empty(self, table: str) -> list[Any]:
        if table == "traffic_volume":
            return [0, []]  # count, speeds
        if table == "flow_lines":
            return [0, []]  # count, travel times
        if table == "dwell":
            return [[0] * (len(self._bins) + 1), []]  # bin counts, dwell values
        if table == "occupancy":
            return [[]]  # histogram: present -> frames
        return [0]  # attributes: count

    def add(self, events: Iterable[Event]) -> None:
        """Assign each event to its window in every table it feeds."""
        max_ts = self.max_event_ts
        for ev in events:
            if type(ev) not in _AGGREGATED:
                raise TypeError(f"WindowStore cannot aggregate {type(ev).__name__}")
            ts = ev.ts_ms
            if max_ts is None or ts > max_ts:
                max_ts = ts
            if type(ev) is OccupancySample:
                cell = self._cell("occupancy", (ev.zone_id,), ts)
                if cell is not None:
                    hist = cell[0]
                    p = ev.present
                    if p >= len(hist):
                        hist.extend([0] * (p + 1 - len(hist)))
                    hist[p] += 1
            elif type(ev) is Crossing:
                cell = self._cell("traffic_volume", (ev.line_id, ev.direction, ev.class_name), ts)
                if cell is not None:
                    cell[0] += 1
                    if ev.speed_kmh is not None:
                        cell[1].append(float(ev.speed_kmh))
                if ev.age_bracket is not None or ev.gender is not None:
                    self._attribute(ev.line_id, ev.age_bracket, ev.gender, ts)
            elif type(ev) is ZoneVisit:
                if ev.kind == "ENTRY":
                    if ev.from_zone_id is not None:
                        cell = self._cell("flow_lines", (ev.from_zone_id, ev.zone_id), ts)
                        if cell is not None:
                            cell[0] += 1
                            if ev.travel_s is not None:
                                cell[1].append(float(ev.travel_s))
                    if ev.age_bracket is not None or ev.gender is not None:
                        self._attribute(ev.zone_id, ev.age_bracket, ev.gender, ts)
                elif ev.dwell_s is not None:
                    cell = self._cell("dwell", (ev.zone_id,), ts)
                    if cell is not None:
                        d = float(ev.dwell_s)
                        # bin i counts upper[i-1] <= dwell < upper[i]; the last bin is open-ended
                        cell[0][bisect.bisect_right(self._bins, d)] += 1
                        cell[1].append(d)
        self.max_event_ts = max_ts

    def _attribute(self, place: str, age: str | None, gender: str | None, ts: int) -> None:
        cell = self._cell("attributes", (place, age or UNKNOWN, gender or UNKNOWN), ts)
        if cell is not None:
            cell[0] += 1

    # ------------------------------------------------------------------ results

    def _stats(self, table: str, dims: tuple[str, ...], cell: list[Any]) -> dict[str, Any]:
        if table == "traffic_volume":
            speeds = sorted(cell[1])
            return {"count": cell[0], "speed_samples": len(speeds),
                    "mean_speed_kmh": sum(speeds) / len(speeds) if speeds else None,
                    "p85_speed_kmh": percentile(speeds, 0.85)}
        if table == "flow_lines":
            travel = sorted(cell[1])
            return {"count": cell[0], "median_travel_s": percentile(travel, 0.5)}
        if table == "dwell":
            values = sorted(cell[1])
            return {"count": len(values), "bin_upper_s": [*self._bins, math.inf], "bin_counts": list(cell[0]),
                    "median_dwell_s": percentile(values, 0.5)}
        if table == "occupancy":
            hist: list[int] = cell[0]
            samples = sum(hist)
            max_present = max((v for v, c in enumerate(hist) if c), default=0)
            p95 = hist_percentile(hist, 0.95) or 0.0
            capacity = self._capacity.get(dims[0])
            ratio = p95 / capacity if capacity else None
            return {"samples": samples,
                    "mean_present": sum(v * c for v, c in enumerate(hist)) / samples if samples else 0.0,
                    "max_present": max_present, "p95_present": p95, "capacity": capacity,
                    "capacity_ratio": ratio, "crowding_level": crowding_level(ratio, max_present)}
        return {"count": cell[0]}

    def close(self, watermark_ms: int) -> list[ClosedWindow]:
        """Close and return (once) every window whose end plus grace is at or before the watermark.
        A watermark lower than a previous one changes nothing."""
        if self._watermark is None or watermark_ms > self._watermark:
            self._watermark = watermark_ms
        wm = self._watermark
        out: list[ClosedWindow] = []
        for table in TABLES:
            windows = self._windows[table]
            for start in sorted(s for s, w in windows.items() if w.end + self._grace_ms <= wm):
                win = windows.pop(start)
                out.extend(ClosedWindow(table, self.site_id, dims, start, win.end, self._stats(table, dims, cell))
                           for dims, cell in sorted(win.cells.items()))
        out.sort(key=lambda c: (c.window_start_ms, c.table, c.dims))
        return out

    def open_windows(self) -> list[ClosedWindow]:
        """Snapshots of every window still open, with statistics so far (for the HTTP view)."""
        out = [ClosedWindow(table, self.site_id, dims, start, win.end, self._stats(table, dims, cell))
               for table in TABLES for start, win in self._windows[table].items()
               for dims, cell in win.cells.items()]
        out.sort(key=lambda c: (c.window_start_ms, c.table, c.dims))
        return out

    # ------------------------------------------------------------------ state

    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable snapshot (plain dicts, lists, numbers, strings; no infinities)."""
        cells = [[table, start, win.end, list(dims), _copy_cell(cell)]
                 for table in TABLES for start, win in self._windows[table].items()
                 for dims, cell in win.cells.items()]
        return {"version": STATE_VERSION, "site_id": self.site_id, "watermark": self._watermark,
                "max_event_ts": self.max_event_ts, "late_dropped": dict(self.late_dropped), "cells": cells}

    @classmethod
    def from_state(cls, site: SiteConfig, state: dict[str, Any]) -> WindowStore:
        """Rebuild from `to_state()`. Restored windows keep their own bounds even if the configured
        window lengths have changed since."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"window state version {state.get('version')!r} is not {STATE_VERSION}")
        store = cls(site)
        store._watermark = state["watermark"]
        store.max_event_ts = state["max_event_ts"]
        store.late_dropped.update({t: int(n) for t, n in state["late_dropped"].items()})
        nbins = len(store._bins) + 1
        for table, start, end, dims, cell in state["cells"]:
            win = store._windows[table].get(start)
            if win is None:
                win = store._windows[table][start] = _Window(int(end))
            if table == "dwell" and len(cell[0]) != nbins:  # bins changed: rebuild from the raw values
                counts = [0] * nbins
                for v in cell[1]:
                    counts[bisect.bisect_right(store._bins, v)] += 1
                cell = [counts, cell[1]]
            win.cells[tuple(dims)] = _copy_cell(cell)
        return store

    def __len__(self) -> int:
        """Number of open cells (cheap, unlike `open_windows`)."""
        return sum(len(w.cells) for windows in self._windows.values() for w in windows.values())


def _copy_cell(cell: list[Any]) -> list[Any]:
    # a snapshot must not share lists with the live store, in either direction
    return [list(x) if isinstance(x, list) else x for x in cell]
