"""Every partner table, declared once, and the event-time tumbling windows that fill them.

A table is a `TableSpec`: its dimensions, the events that feed it, the aggregate kept per window
cell, the statistics computed when a window closes, its partner schema and how the dashboard and
the notices name it. The window store, the partner records, the worker's HTTP views, the metrics,
the governance texts, the OpenAPI document and the dashboard all iterate over `SPECS`; adding a
table is one spec here plus its `schemas/avro/partner_<name>.avsc`.

| table          | dims                                  | fed by                                  |
|----------------|---------------------------------------|-----------------------------------------|
| traffic_volume | line_id, direction, class_name        | every Crossing                          |
| occupancy      | zone_id                               | OccupancySample                         |
| flow_lines     | origin_zone_id, destination_zone_id   | ZoneVisit ENTRY with from_zone_id       |
| dwell          | zone_id                               | ZoneVisit EXIT with dwell_s             |
| attributes     | place_id, age_bracket, gender         | Crossing / ZoneVisit ENTRY with either  |
| congestion     | intersection_id, approach_id          | ApproachSample (streams/congestion.py)  |
| intersection_volume | intersection_id, approach_id, flow_direction, class_name | ApproachCrossing |
| turning_movements | intersection_id, entry_approach_id, exit_approach_id, class_name | TurningMovement |
| vehicle_colours | line_id, direction, class_name, colour_family | Crossing of a vehicle (T5)     |
| road_conditions| h3_cell, heading                      | mobile cameras' frames, over the fleet  |

road_conditions is the one table not kept per camera: its cells are places on a map that every
vehicle of a site passes, and its k counts distinct trips across all of them, so streams/road_worker.py
aggregates it over the site's mobile cameras (`RoadWindows` in streams/road_conditions.py); its spec
here gives it a name, dimensions, a schema and its partner fields like every other table.

Windows are aligned to the epoch, sized per table by `site.windows.<table>`, and stay open until the
watermark passes `window_end + grace_s`. An event for a window that has already closed is never
silently lost: it is counted in `late_dropped[table]`. One `WindowStore` per camera: every cell is
keyed by a line or zone, and a line or zone belongs to one camera.

Crowding levels (occupancy) from `capacity_ratio = p95_present / capacity`: below 0.05 EMPTY,
below 0.5 LOW, below 0.9 CROWDED, else FULL. A zone without a capacity has no ratio and reads
EMPTY when nobody was ever present in the window, else LOW: without a capacity there is no
honest basis for calling it crowded.

Every cell also keeps the pseudonymous track id of each contribution (a crossing, a visit, a person
standing in a zone), so that the disclosure policy (`streams.disclosure`) can count the *distinct
objects* behind a value and bound each track's contribution in differential-privacy mode. Track
ids stay in the worker's state: a `ClosedWindow` carries them for the policy, its `agg` never does,
and no partner or operator record has a field for them.

Counts that add up to a count another table publishes (a line's vehicle colours add up to its traffic
volume; the turning movements from an approach to at most its entering volume) are held together by
the disclosure policy's overlaps (`streams.disclosure.OVERLAPS`, rule (c)).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from privaflow.schemas.site import SiteConfig
from privaflow.schemas.topics import partner_topic_name
from privaflow.schemas.vocabulary import VEHICLE_CLASSES, colour_family
from privaflow.streams import congestion
from privaflow.streams.approaches import ApproachGeometry, site_approach_geometry
from privaflow.streams.events import (
    ApproachCrossing,
    ApproachSample,
    Crossing,
    Event,
    OccupancyFrames,
    OccupancySample,
    TurningMovement,
    ZoneVisit,
)

UNKNOWN = "unknown"
STATE_VERSION = 1
CROWDING_THRESHOLDS = ((0.05, "EMPTY"), (0.5, "LOW"), (0.9, "CROWDED"))  # else FULL

Dims = tuple[str, ...]
Cell = list[Any]  # a window cell's aggregate: plain lists and numbers, so state is JSON as it is


@dataclass(frozen=True)
class Dim:
    """One key dimension of a table: its partner field name and what its values are (`line`, `zone`,
    `place` (a line or a zone), `direction`, `class`, `age_bracket`, `gender`)."""

    name: str
    kind: str


@dataclass(frozen=True)
class WindowContext:
    """What a table's aggregate needs from the site config."""

    dwell_bins: tuple[float, ...]
    capacity: Mapping[str, int | None]
    approaches: Mapping[tuple[str, str], ApproachGeometry] = field(default_factory=dict)

    @classmethod
    def of(cls, site: SiteConfig) -> WindowContext:
        return cls(tuple(sorted(float(b) for b in site.counting.dwell_bins_s)), {z.id: z.capacity for z in site.zones},
                   site_approach_geometry(site))


# an event -> the cell it feeds (dims) and the value it adds, or None when it does not feed the table
Feed = Callable[[Any], "tuple[Dims, Any] | None"]
# a block of events and the table's window length (ms) -> for each cell it feeds: (dims, window
# start, a partial cell holding the block's contribution, how many events that is)
BlockFeed = Callable[[Any, int], "Iterable[tuple[Dims, int, Cell, int]]"]
# a cell -> the track id of each contribution to it, and the slot (bin) each went to
Contributions = Callable[[Cell, WindowContext], "tuple[tuple[int, ...], tuple[int, ...]]"]


@dataclass(frozen=True)
class TableSpec:
    """Everything about one partner table. `feeds` maps an event type to how it feeds the table;
    `empty`/`add`/`stats` are the cell's aggregate; `blocks` maps a block type (many events at
    once, e.g. `OccupancyFrames`) to how it feeds the table, `merge` adds a block's partial cell
    to a cell (the result equals adding its events one by one); `rebuild` adapts a restored cell to a changed
    config (or returns it unchanged); `places` names the config items of a camera that feed it (empty:
    the camera does not feed it).

    What the disclosure policy (`streams.disclosure`) needs to know about the table, besides what its
    partner schema says each field is: `contributions` gives each contribution's track and slot (the
    dwell bin; 0 for a single count); `support` names, per statistic, the `agg` key holding the number
    of distinct objects it rests on (default: the cell's distinct tracks; None: not about objects, e.g.
    `samples` counts frames); `always_present` says a row exists whether or not anyone was there
    (occupancy: one per zone and analysed window), so its existence needs no threshold; `dp_statistics`
    names statistics with a differentially private release of their own and the most one person can
    change them; `derive` recomputes fields that follow from released statistics (the crowding level
    from a noisy p95); `suppression` says the rule in words for notices and the privacy report."""

    name: str
    label: str
    schema: str
    dims: tuple[Dim, ...]
    feeds: Mapping[type, Feed]
    empty: Callable[[WindowContext], Cell]
    add: Callable[[Cell, Any, WindowContext], None]
    stats: Callable[[Cell, Dims, WindowContext], dict[str, Any]]
    places: Callable[[SiteConfig, str], tuple[str, ...]]
    suppression: str
    contributions: Contributions = lambda cell, _ctx: (tuple(cell[-1]), (0,) * len(cell[-1]))
    support: Mapping[str, str | None] = field(default_factory=dict)
    always_present: bool = False
    dp_statistics: Mapping[str, int] = field(default_factory=dict)
    derive: Callable[[dict[str, Any], Dims, WindowContext], dict[str, Any]] = lambda _f, _d, _c: {}
    # what k counts: distinct objects (the cell's tracks), or for road_conditions distinct trips (`agg["trips"]`)
    k_unit: str = "objects"
    notice: Mapping[str, str] = field(default_factory=dict)  # language -> how a public notice names it
    rebuild: Callable[[Cell, WindowContext], Cell] = lambda cell, _ctx: cell
    blocks: Mapping[type, BlockFeed] = field(default_factory=dict)
    merge: Callable[[Cell, Cell, WindowContext], None] | None = None

    @property
    def topic(self) -> str:
        return partner_topic_name(self.name)

    @property
    def dim_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dims)

    def window_s(self, site: SiteConfig) -> int:
        return int(getattr(site.windows, self.name))

    def dims_of_kind(self, dims: Dims, *kinds: str) -> tuple[str, ...]:
        """The values among `dims` whose dimension is of one of `kinds` (e.g. the zones of a cell)."""
        return tuple(v for d, v in zip(self.dims, dims, strict=True) if d.kind in kinds)


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """One cell of one table for one window, with its statistics computed (`agg`). `dims` are the
    table's key dimensions in the order of its spec. `tracks` holds the pseudonymous track id of each
    contribution and `slots` the slot (dwell bin) it went to, for the disclosure policy only: nothing
    that is published or served reads them, and `agg` identifies no track."""

    table: str
    site_id: str
    dims: Dims
    window_start_ms: int
    window_end_ms: int
    agg: dict[str, Any]
    tracks: tuple[int, ...] = ()
    slots: tuple[int, ...] = ()

    @property
    def objects(self) -> int:
        """Distinct tracks behind the cell."""
        return len(set(self.tracks))


# ---------------------------------------------------------------- statistics

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


# ---------------------------------------------------------------- the tables' aggregates

def _count_and_values(_ctx: WindowContext) -> Cell:
    # count; the measured value (speed, travel time; None when unmeasured) and the track of each contribution
    return [0, [], []]


def _add_count_and_value(cell: Cell, fed: tuple[int, float | None], _ctx: WindowContext) -> None:
    track, value = fed
    cell[0] += 1
    cell[1].append(None if value is None else float(value))
    cell[2].append(track)


def _add_one(cell: Cell, track: int, _ctx: WindowContext) -> None:
    cell[0] += 1
    cell[1].append(track)


def _measured(cell: Cell) -> tuple[list[float], int]:
    """The measured values of a count cell, sorted, and how many distinct tracks they come from."""
    pairs = [(v, t) for v, t in zip(cell[1], cell[2], strict=True) if v is not None]
    return sorted(v for v, _ in pairs), len({t for _, t in pairs})


def _volume_stats(cell: Cell, _dims: Dims, _ctx: WindowContext) -> dict[str, Any]:
    speeds, speed_objects = _measured(cell)
    return {"count": cell[0], "speed_samples": len(speeds), "speed_objects": speed_objects,
            "mean_speed_kmh": sum(speeds) / len(speeds) if speeds else None,
            "p85_speed_kmh": percentile(speeds, 0.85)}


def _flow_stats(cell: Cell, _dims: Dims, _ctx: WindowContext) -> dict[str, Any]:
    times, travel_objects = _measured(cell)
    return {"count": cell[0], "travel_objects": travel_objects, "median_travel_s": percentile(times, 0.5)}


def _count_rebuild(cell: Cell, _ctx: WindowContext) -> Cell:
    if len(cell) == 3:
        return cell
    # a cell from before track ids were kept: its values were measured ones only; tracks unknown (-1, one
    # object) so the policy can only under-count its distinct objects
    return [cell[0], [*cell[1], *[None] * (cell[0] - len(cell[1]))], [-1] * cell[0]]


def _dwell_empty(ctx: WindowContext) -> Cell:
    return [[0] * (len(ctx.dwell_bins) + 1), [], []]  # visits per bin, the dwell times, their tracks


def _dwell_bin(ctx: WindowContext, dwell_s: float) -> int:
    # bin i counts upper[i-1] <= dwell < upper[i]; the last bin is open-ended
    return bisect.bisect_right(ctx.dwell_bins, dwell_s)


def _dwell_add(cell: Cell, fed: tuple[int, float], ctx: WindowContext) -> None:
    track, dwell_s = fed
    cell[0][_dwell_bin(ctx, dwell_s)] += 1
    cell[1].append(dwell_s)
    cell[2].append(track)


def _dwell_stats(cell: Cell, _dims: Dims, ctx: WindowContext) -> dict[str, Any]:
    values = sorted(cell[1])
    return {"count": len(values), "bin_upper_s": [*ctx.dwell_bins, math.inf], "bin_counts": list(cell[0]),
            "median_dwell_s": percentile(values, 0.5)}


def _dwell_contributions(cell: Cell, ctx: WindowContext) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return tuple(cell[2]), tuple(_dwell_bin(ctx, v) for v in cell[1])


def _dwell_rebuild(cell: Cell, ctx: WindowContext) -> Cell:
    tracks = cell[2] if len(cell) == 3 else [-1] * len(cell[1])
    if len(cell[0]) == len(ctx.dwell_bins) + 1 and len(cell) == 3:
        return cell
    counts = [0] * (len(ctx.dwell_bins) + 1)  # the bins changed since the snapshot: recount the values
    for v in cell[1]:
        counts[_dwell_bin(ctx, v)] += 1
    return [counts, cell[1], tracks]


def _occupancy_empty(_ctx: WindowContext) -> Cell:
    return [[], []]  # histogram: people present -> frames; the distinct tracks of people seen inside


def _occupancy_add(cell: Cell, fed: tuple[int, tuple[int, ...]], _ctx: WindowContext) -> None:
    present, tracks = fed
    hist = cell[0]
    if present >= len(hist):
        hist.extend([0] * (present + 1 - len(hist)))
    hist[present] += 1
    if tracks:
        seen = cell[1]
        for t in tracks:
            i = bisect.bisect_left(seen, t)
            if i == len(seen) or seen[i] != t:
                seen.insert(i, t)


def _occupancy_rebuild(cell: Cell, _ctx: WindowContext) -> Cell:
    # a cell from before track ids were kept knows no object: its statistics stay withheld below k
    return cell if len(cell) == 2 else [cell[0], []]


def _occupancy_block(block: OccupancyFrames, size_ms: int) -> Iterator[tuple[Dims, int, Cell, int]]:
    """A block of per-frame head counts -> per zone and window, the histogram of its frames and the
    distinct people seen inside."""
    hists: dict[tuple[int, int], list[int]] = {}
    for t, row in zip(block.ts_ms, block.present, strict=True):
        start = t - t % size_ms
        for k, present in enumerate(row):
            hist = hists.get((k, start))
            if hist is None:
                hist = hists[(k, start)] = []
            if present >= len(hist):
                hist.extend([0] * (present + 1 - len(hist)))
            hist[present] += 1
    people: dict[tuple[int, int], set[int]] = {}
    for k, seen in enumerate(block.inside):
        for t, track in seen:
            people.setdefault((k, t - t % size_ms), set()).add(track)
    for (k, start), hist in hists.items():
        yield (block.zone_ids[k],), start, [hist, sorted(people.get((k, start), ()))], sum(hist)


def _occupancy_merge(cell: Cell, part: Cell, _ctx: WindowContext) -> None:
    hist, more = cell[0], part[0]
    if len(more) > len(hist):
        hist.extend([0] * (len(more) - len(hist)))
    for present, frames in enumerate(more):
        hist[present] += frames
    if len(part) > 1 and part[1]:
        cell[1][:] = sorted(set(cell[1]).union(part[1]))


def _occupancy_stats(cell: Cell, dims: Dims, ctx: WindowContext) -> dict[str, Any]:
    hist: list[int] = cell[0]
    samples = sum(hist)
    max_present = max((v for v, c in enumerate(hist) if c), default=0)
    p95 = hist_percentile(hist, 0.95) or 0.0
    capacity = ctx.capacity.get(dims[0])
    ratio = p95 / capacity if capacity else None
    return {"samples": samples,
            "mean_present": sum(v * c for v, c in enumerate(hist)) / samples if samples else 0.0,
            "max_present": max_present, "p95_present": p95, "capacity": capacity,
            "capacity_ratio": ratio, "crowding_level": crowding_level(ratio, max_present)}


def _occupancy_derive(released: dict[str, Any], dims: Dims, ctx: WindowContext) -> dict[str, Any]:
    """The ratio and level that follow from a released (noisy) p95: post-processing, no extra cost."""
    p95 = released.get("p95_present")
    capacity = ctx.capacity.get(dims[0])
    ratio = p95 / capacity if p95 is not None and capacity else None
    return {"capacity_ratio": ratio, "crowding_level": crowding_level(ratio, 1 if p95 else 0)}


def _vehicle(class_name: str) -> bool:
    return class_name in VEHICLE_CLASSES


def _approaches_of(site: SiteConfig, camera: str) -> tuple[str, ...]:
    return tuple(a.id for _x, a in site.approaches_for(camera))


def _turning_places(site: SiteConfig, camera: str) -> tuple[str, ...]:
    # a turning movement needs an entry and an exit approach of one intersection seen by the one camera
    by_x: dict[str, list[str]] = {}
    for x, a in site.approaches_for(camera):
        by_x.setdefault(x.id, []).append(a.id)
    return tuple(a for ids in by_x.values() if len(ids) > 1 for a in ids)


def _vehicle_lines(site: SiteConfig, camera: str) -> tuple[str, ...]:
    return _lines_of(site, camera) if any(_vehicle(c) for c in site.camera(camera).classes) else ()


def _attributes(place: str, age: str | None, gender: str | None, track: int) -> tuple[Dims, int] | None:
    if age is None and gender is None:
        return None
    return (place, age or UNKNOWN, gender or UNKNOWN), track


def _lines_of(site: SiteConfig, camera: str) -> tuple[str, ...]:
    return tuple(ln.id for ln in site.lines_for(camera))


def _zones_of(site: SiteConfig, camera: str) -> tuple[str, ...]:
    return tuple(z.id for z in site.zones_for(camera))


def _people_zones(site: SiteConfig, camera: str) -> tuple[str, ...]:
    # occupancy is a head count of people: a camera that does not count them has none (streams.tracks)
    return _zones_of(site, camera) if "person" in site.camera(camera).classes else ()


def _attribute_places(site: SiteConfig, camera: str) -> tuple[str, ...]:
    return (*_lines_of(site, camera), *_zones_of(site, camera)) if site.camera(camera).attributes else ()


SPECS: dict[str, TableSpec] = {s.name: s for s in (
    TableSpec(
        name="traffic_volume", label="Traffic volume", schema="partner_traffic_volume",
        dims=(Dim("line_id", "line"), Dim("direction", "direction"), Dim("class_name", "class")),
        feeds={Crossing: lambda e: ((e.line_id, e.direction, e.class_name), (e.track_id, e.speed_kmh))},
        empty=_count_and_values, add=_add_count_and_value, stats=_volume_stats, places=_lines_of,
        rebuild=_count_rebuild, support={"mean_speed_kmh": "speed_objects", "p85_speed_kmh": "speed_objects"},
        suppression="a cell with fewer than k distinct objects is not published; its speed statistics need k "
                    "measured objects (else null, suppressed=true)",
        notice={"en": "traffic volumes (by place, direction, type and time)",
                "ja": "通過数（場所・方向・種類・時間帯ごと）"}),
    TableSpec(
        name="occupancy", label="Occupancy", schema="partner_occupancy",
        dims=(Dim("zone_id", "zone"),),
        feeds={OccupancySample: lambda e: ((e.zone_id,), (e.present, e.tracks))},
        blocks={OccupancyFrames: _occupancy_block}, merge=_occupancy_merge,
        empty=_occupancy_empty, add=_occupancy_add, stats=_occupancy_stats, places=_people_zones,
        rebuild=_occupancy_rebuild, contributions=lambda cell, _ctx: (tuple(cell[1]), (0,) * len(cell[1])),
        support={"samples": None}, always_present=True, dp_statistics={"p95_present": 1}, derive=_occupancy_derive,
        suppression="the head-count statistics need k distinct people present in the window (else null, "
                    "suppressed=true); the crowding level is always published (G5)",
        notice={"en": "occupancy (people present per area)", "ja": "混雑度（エリアごとの人数）"}),
    TableSpec(
        name="flow_lines", label="Flow lines", schema="partner_flow_lines",
        dims=(Dim("origin_zone_id", "zone"), Dim("destination_zone_id", "zone")),
        feeds={ZoneVisit: lambda e: ((e.from_zone_id, e.zone_id), (e.track_id, e.travel_s))
               if e.kind == "ENTRY" and e.from_zone_id is not None else None},
        empty=_count_and_values, add=_add_count_and_value, stats=_flow_stats, places=_zones_of,
        rebuild=_count_rebuild, support={"median_travel_s": "travel_objects"},
        suppression="a cell with fewer than k distinct objects is not published, nor its travel time",
        notice={"en": "movements between areas (flow lines)", "ja": "エリア間の移動数（動線）"}),
    TableSpec(
        name="dwell", label="Dwell time", schema="partner_dwell",
        dims=(Dim("zone_id", "zone"),),
        feeds={ZoneVisit: lambda e: ((e.zone_id,), (e.track_id, float(e.dwell_s)))
               if e.kind == "EXIT" and e.dwell_s is not None else None},
        empty=_dwell_empty, add=_dwell_add, stats=_dwell_stats, places=_zones_of, rebuild=_dwell_rebuild,
        contributions=_dwell_contributions,
        suppression="a zone's row needs k distinct visitors; every bin with fewer than k (none included) is "
                    "null; the median needs k visitors",
        notice={"en": "dwell-time distributions", "ja": "滞在時間の分布"}),
    TableSpec(
        name="attributes", label="Visitor attributes", schema="partner_attributes",
        dims=(Dim("place_id", "place"), Dim("age_bracket", "age_bracket"), Dim("gender", "gender")),
        feeds={Crossing: lambda e: _attributes(e.line_id, e.age_bracket, e.gender, e.track_id),
               ZoneVisit: lambda e: _attributes(e.zone_id, e.age_bracket, e.gender, e.track_id)
               if e.kind == "ENTRY" else None},
        empty=lambda _ctx: [0, []], add=_add_one, stats=lambda cell, _d, _c: {"count": cell[0]},
        rebuild=lambda cell, _ctx: cell if len(cell) == 2 else [cell[0], [-1] * cell[0]],
        places=_attribute_places,
        suppression="a cell with fewer than k distinct objects is not published; cells that would let a "
                    "withheld count be recomputed from traffic_volume are withheld too",
        notice={"en": "counts by estimated age group and gender", "ja": "推定年代・性別ごとの人数"}),
    TableSpec(
        name="congestion", label="Congestion", schema="partner_congestion",
        dims=(Dim("intersection_id", "intersection"), Dim("approach_id", "approach")),
        feeds={ApproachSample: lambda e: ((e.intersection_id, e.approach_id), e)},
        empty=lambda _ctx: congestion.empty(), add=lambda cell, e, _ctx: congestion.add(cell, e),
        stats=lambda cell, dims, ctx: congestion.stats(cell, dims, ctx.approaches), places=_approaches_of,
        contributions=lambda cell, _ctx: (tuple(cell[5]), (0,) * len(cell[5])),
        # a row per approach and analysed window, whoever was there (like occupancy)
        always_present=True, support={"samples": None, "level_of_service": "objects"},
        derive=lambda _f, _d, _c: {"level_of_service": None},
        suppression="fewer than k distinct vehicles in the window: the count, every statistic and the level "
                    "of service are withheld (null, suppressed=true); the row itself is always published",
        notice={"en": "congestion per approach (vehicles waiting, queue length, level of service)",
                "ja": "流入路ごとの渋滞状況（滞留台数・渋滞長・サービス水準）"}),
    TableSpec(
        name="intersection_volume", label="Intersection volume", schema="partner_intersection_volume",
        dims=(Dim("intersection_id", "intersection"), Dim("approach_id", "approach"),
              Dim("flow_direction", "flow_direction"), Dim("class_name", "class")),
        feeds={ApproachCrossing: lambda e: ((e.intersection_id, e.approach_id, e.flow_direction, e.class_name),
                                            (e.track_id, e.speed_kmh))},
        empty=_count_and_values, add=_add_count_and_value, stats=_volume_stats, places=_approaches_of,
        rebuild=_count_rebuild, support={"mean_speed_kmh": "speed_objects", "p85_speed_kmh": "speed_objects"},
        suppression="a cell with fewer than k distinct vehicles is not published; its speed statistics need k "
                    "measured vehicles (else null, suppressed=true)",
        notice={"en": "vehicles entering and leaving the intersection (by approach, type and time)",
                "ja": "交差点の流入・流出交通量（流入路・車種・時間帯ごと）"}),
    TableSpec(
        name="turning_movements", label="Turning movements", schema="partner_turning_movements",
        dims=(Dim("intersection_id", "intersection"), Dim("entry_approach_id", "approach"),
              Dim("exit_approach_id", "approach"), Dim("class_name", "class")),
        feeds={TurningMovement: lambda e: ((e.intersection_id, e.entry_approach_id, e.exit_approach_id,
                                            e.class_name), e.track_id)},
        empty=lambda _ctx: [0, []], add=_add_one, stats=lambda cell, _d, _c: {"count": cell[0]},
        places=_turning_places,
        suppression="a cell with fewer than k distinct vehicles is not published; movements that would let a "
                    "withheld one be worked out from the entering volume are withheld too",
        notice={"en": "turning movements (from which approach to which, by vehicle type)",
                "ja": "方向別交通量（右左折・直進）"}),
    TableSpec(
        name="vehicle_colours", label="Vehicle colours", schema="partner_vehicle_colours",
        dims=(Dim("line_id", "line"), Dim("direction", "direction"), Dim("class_name", "class"),
              Dim("colour_family", "colour_family")),
        feeds={Crossing: lambda e: ((e.line_id, e.direction, e.class_name, colour_family(e.colour)), e.track_id)
               if _vehicle(e.class_name) else None},
        empty=lambda _ctx: [0, []], add=_add_one, stats=lambda cell, _d, _c: {"count": cell[0]},
        places=_vehicle_lines,
        suppression="a cell with fewer than k distinct vehicles is not published; colours that would let a "
                    "withheld one be worked out from the traffic volume are withheld too",
        notice={"en": "vehicle counts by type and colour family", "ja": "車種・色系統ごとの台数"}),
)}


def _mobile(site: SiteConfig, camera: str) -> tuple[str, ...]:
    return (camera,) if site.camera(camera).kind == "mobile" else ()


def _road_spec() -> TableSpec:
    from privaflow.streams import road_conditions as road  # defined there; it uses `percentile` above

    return TableSpec(
        name="road_conditions", label="Road conditions", schema="partner_road_conditions",
        dims=(Dim("h3_cell", "cell"), Dim("heading", "heading")),
        feeds={}, empty=road.empty, add=road.add, stats=road.stats, places=_mobile, k_unit="trips",
        contributions=lambda _cell, _ctx: ((), ()),  # kept per trip by streams/road_conditions.py, not per track
        support={"samples": None, "median_speed_kmh": "speed_trips", "congestion_level": "speed_trips"},
        suppression="a cell fewer than k distinct trips passed is not published; the speed and congestion "
                    "level also need k trips with a speed",
        notice={"en": "road conditions per map cell (probe speed, congestion, vehicles ahead, road furniture)",
                "ja": "地図上の区画ごとの道路状況（走行速度・渋滞度・前方車両数・道路附属物）"})


SPECS["road_conditions"] = _road_spec()
TABLES: tuple[str, ...] = tuple(SPECS)


def camera_tables(site: SiteConfig, camera_id: str) -> tuple[str, ...]:
    """The tables a camera feeds (those with a place of this camera)."""
    return tuple(s.name for s in SPECS.values() if s.places(site, camera_id))


# ---------------------------------------------------------------- windows

class _Window:
    __slots__ = ("end", "cells")

    def __init__(self, end: int) -> None:
        self.end = end
        self.cells: dict[Dims, Cell] = {}


class WindowStore:
    """Tumbling event-time windows for every table of one camera. `add` assigns events to their
    windows, `close(watermark)` returns each window exactly once when the watermark has passed its
    end plus grace, and forgets it."""

    def __init__(self, site: SiteConfig, ctx: WindowContext | None = None) -> None:
        self.site_id = site.site_id
        self._ctx = ctx or WindowContext.of(site)
        self._size_ms = {t: s.window_s(site) * 1000 for t, s in SPECS.items()}
        self._grace_ms = int(site.windows.grace_s) * 1000
        self._windows: dict[str, dict[int, _Window]] = {t: {} for t in TABLES}
        self._watermark: int | None = None
        self.late_dropped: dict[str, int] = dict.fromkeys(TABLES, 0)
        self.max_event_ts: int | None = None  # newest event time added; a natural watermark source
        # per event type: the tables it may feed, how, and how a value joins a cell
        self._routes: dict[type, list[tuple[str, Feed, Callable[[Cell, Any, WindowContext], None]]]] = {}
        self._blocks: dict[type, list[tuple[str, BlockFeed, Callable[[Cell, Cell, WindowContext], None]]]] = {}
        for spec in SPECS.values():
            for etype, feed in spec.feeds.items():
                self._routes.setdefault(etype, []).append((spec.name, feed, spec.add))
            for btype, block_feed in spec.blocks.items():
                assert spec.merge is not None, f"{spec.name}: a block feed needs `merge`"
                self._blocks.setdefault(btype, []).append((spec.name, block_feed, spec.merge))

    @property
    def watermark_ms(self) -> int | None:
        """The highest watermark passed to `close` so far."""
        return self._watermark

    def _cell(self, table: str, dims: Dims, ts: int, events: int = 1) -> Cell | None:
        size = self._size_ms[table]
        start = ts - ts % size
        windows = self._windows[table]
        win = windows.get(start)
        if win is None:
            if self._watermark is not None and start + size + self._grace_ms <= self._watermark:
                self.late_dropped[table] += events  # its window has been published already
                return None
            win = windows[start] = _Window(start + size)
        cell = win.cells.get(dims)
        if cell is None:
            cell = win.cells[dims] = SPECS[table].empty(self._ctx)
        return cell

    def add(self, events: Iterable[Event | OccupancyFrames]) -> None:
        """Assign each event to its window in every table it feeds."""
        max_ts = self.max_event_ts
        routes, ctx = self._routes, self._ctx
        for ev in events:
            route = routes.get(type(ev))
            if route is None:
                if type(ev) not in self._blocks:
                    raise TypeError(f"WindowStore cannot aggregate {type(ev).__name__}")
                latest = self._add_block(ev)
                if latest is not None and (max_ts is None or latest > max_ts):
                    max_ts = latest
                continue
            assert not isinstance(ev, OccupancyFrames)
            ts = ev.ts_ms
            if max_ts is None or ts > max_ts:
                max_ts = ts
            for table, feed, add in route:
                fed = feed(ev)
                if fed is not None:
                    cell = self._cell(table, fed[0], ts)
                    if cell is not None:
                        add(cell, fed[1], ctx)
        self.max_event_ts = max_ts

    def _add_block(self, block: Any) -> int | None:
        """A block of events (e.g. `OccupancyFrames`) into every table it feeds; its newest time."""
        for table, feed, merge in self._blocks[type(block)]:
            for dims, start, part, n in feed(block, self._size_ms[table]):
                cell = self._cell(table, dims, start, n)
                if cell is not None:
                    merge(cell, part, self._ctx)
        return max(block.ts_ms, default=None)

    # ------------------------------------------------------------------ results

    def _closed(self, table: str, start: int, win: _Window, dims: Dims, cell: Cell) -> ClosedWindow:
        spec = SPECS[table]
        tracks, slots = spec.contributions(cell, self._ctx)
        return ClosedWindow(table, self.site_id, dims, start, win.end, spec.stats(cell, dims, self._ctx),
                            tracks, slots)

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
                out.extend(self._closed(table, start, win, dims, cell) for dims, cell in sorted(win.cells.items()))
        out.sort(key=lambda c: (c.window_start_ms, c.table, c.dims))
        return out

    def open_windows(self) -> list[ClosedWindow]:
        """Snapshots of every window still open, with statistics so far (for the HTTP view)."""
        out = [self._closed(table, start, win, dims, cell)
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
    def from_state(cls, site: SiteConfig, state: dict[str, Any], ctx: WindowContext | None = None) -> WindowStore:
        """Rebuild from `to_state()`. Restored windows keep their own bounds even if the configured
        window lengths have changed since."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"window state version {state.get('version')!r} is not {STATE_VERSION}")
        store = cls(site, ctx)
        store._watermark = state["watermark"]
        store.max_event_ts = state["max_event_ts"]
        store.late_dropped.update({t: int(n) for t, n in state["late_dropped"].items() if t in SPECS})
        for table, start, end, dims, cell in state["cells"]:
            if table not in SPECS:
                continue  # a table this version no longer has
            win = store._windows[table].get(start)
            if win is None:
                win = store._windows[table][start] = _Window(int(end))
            win.cells[tuple(dims)] = _copy_cell(SPECS[table].rebuild(cell, store._ctx))
        return store

    def __len__(self) -> int:
        """Number of open cells (cheap, unlike `open_windows`)."""
        return sum(len(w.cells) for windows in self._windows.values() for w in windows.values())


def _copy_cell(cell: Cell) -> Cell:
    # a snapshot must not share lists with the live store, in either direction
    return [list(x) if isinstance(x, list) else x for x in cell]
