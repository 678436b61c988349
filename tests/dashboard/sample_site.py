"""A station-and-street test site and a plausible half hour of partner records for it.

The same records feed the fake API (fast browser test) and the real broker (integration test), so
both tests look at the same picture: a street line with cars (speeds known) and bicycles, a station
concourse with three zones and gate lines, transitions between zones, dwell times, and visitor
attributes at the shop door; and the forecourt junction the street camera watches (two approaches):
congestion per minute over the last two and a half hours (inside the map's three), vehicles entering
and leaving, turning movements, vehicle colours. `operator_rows` are the windows as the operator's
topics carry them (no suppression); `partner_rows` the same windows as partners receive them, with
the k-anonymity rules of streams/disclosure.py written again here: a cell below K is absent, a dwell
bin below K (zero included) is null, a median needs K visits, a congestion row below K keeps only its
frame count, and colours or turning movements give way when their total would reveal a withheld one.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

K = 5

SITE_YAML = """\
site_id: {site_id}
operator:
  name: Test Station Operations
  contact: privacy@test.example
  purpose: Show crowding at the gates and count traffic on the forecourt street.
cameras:
  - id: street
    source: street.mp4
    classes: [person, bicycle, car]
    homography: [[100, 0, 0], [0, 60, 0], [0, 0, 1]]
  - id: concourse
    source: concourse.mp4
    classes: [person]
lines:
  - id: street-stop-line
    camera: street
    points: [[0.1, 0.55], [0.9, 0.55]]
    directions: [southbound, northbound]
  - id: side-stop-line
    camera: street
    points: [[0.75, 0.6], [0.75, 0.95]]
    directions: [westbound, eastbound]
  - id: gate-line
    camera: concourse
    points: [[0.05, 0.3], [0.95, 0.3]]
    directions: [entering, leaving]
  - id: shop-door
    camera: concourse
    points: [[0.6, 0.4], [0.6, 0.85]]
    directions: [leaving-shop, into-shop]   # the shop is on the line's left (the right half)
zones:
  - id: north-lanes
    camera: street
    polygon: [[0.5, 0.05], [0.7, 0.05], [0.7, 0.55], [0.5, 0.55]]
  - id: east-lanes
    camera: street
    polygon: [[0.75, 0.6], [0.98, 0.6], [0.98, 0.78], [0.75, 0.78]]
  - id: gates
    camera: concourse
    polygon: [[0.05, 0.05], [0.95, 0.05], [0.95, 0.3], [0.05, 0.3]]
    capacity: 12
  - id: hall
    camera: concourse
    polygon: [[0.05, 0.3], [0.6, 0.3], [0.6, 0.95], [0.05, 0.95]]
    capacity: 20
  - id: shop
    camera: concourse
    polygon: [[0.6, 0.3], [0.95, 0.3], [0.95, 0.95], [0.6, 0.95]]
    capacity: 6
intersections:
  - id: forecourt
    name: Station Rd / Forecourt
    approaches:
      - id: north
        camera: street
        road: Station Road
        compass: N
        inbound: {{line: street-stop-line, direction: southbound}}
        outbound: {{line: street-stop-line, direction: northbound}}
        lanes: [north-lanes]
        free_flow_kmh: 40
      - id: east
        camera: street
        road: Forecourt
        compass: E
        inbound: {{line: side-stop-line, direction: westbound}}
        outbound: {{line: side-stop-line, direction: eastbound}}
        lanes: [east-lanes]
        free_flow_kmh: 30
windows:
  traffic_volume: 60
  occupancy: 60
  flow_lines: 300
  dwell: 300
  attributes: 900
partners:
  - id: city
    k_anonymity: {k}
    tables: [traffic_volume, occupancy, flow_lines, congestion, intersection_volume, turning_movements,
             vehicle_colours]
  - id: retailer
    k_anonymity: {k}
    tables: [occupancy, dwell, attributes]
"""

LEVELS = ("EMPTY", "LOW", "CROWDED", "FULL")
DWELL_BINS = [5.0, 15.0, 30.0, 60.0, 120.0, 300.0, math.inf]


def site_yaml(site_id: str) -> str:
    return SITE_YAML.format(site_id=site_id, k=K)


def _count(n: int, k: int) -> tuple[int | None, bool]:
    return (None, True) if n < k else (n, False)


def _windows(length_s: int, minutes: int, now_ms: int) -> list[tuple[int, int]]:
    end = (now_ms // (length_s * 1000)) * length_s * 1000  # last closed window ends here
    n = max(1, minutes * 60 // length_s)
    return [(end - (i + 1) * length_s * 1000, end - i * length_s * 1000) for i in reversed(range(n))]


def _level(ratio: float) -> str:
    return "EMPTY" if ratio < 0.1 else "LOW" if ratio < 0.5 else "CROWDED" if ratio < 0.9 else "FULL"


def operator_rows(site_id: str, now_ms: int | None = None, minutes: int = 30, seed: int = 7,
                  congestion_hours: float = 2.5) -> dict[str, list[dict[str, Any]]]:
    """table -> operator Avro records: every window, nothing withheld."""
    return _rows(site_id, now_ms, minutes, seed, congestion_hours, k=0)


def partner_rows(site_id: str, now_ms: int | None = None, minutes: int = 30, seed: int = 7,
                 congestion_hours: float = 2.5) -> dict[str, list[dict[str, Any]]]:
    """table -> the partners' Avro records of the same windows (k-anonymity with K)."""
    rows = _rows(site_id, now_ms, minutes, seed, congestion_hours, k=K)
    for table in ("traffic_volume", "flow_lines", "attributes", "intersection_volume", "turning_movements",
                  "vehicle_colours"):
        rows[table] = [r for r in rows[table] if r["count"] is not None]  # below K: not published at all
    return rows


def _rows(site_id: str, now_ms: int | None, minutes: int, seed: int, congestion_hours: float, k: int
          ) -> dict[str, list[dict[str, Any]]]:
    """table -> Avro records (window times as epoch millis), newest window closed before now."""
    now_ms = now_ms or int(time.time() * 1000)
    rnd = random.Random(seed)
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in (
        "traffic_volume", "occupancy", "flow_lines", "dwell", "attributes", "congestion", "intersection_volume",
        "turning_movements", "vehicle_colours", "road_conditions")}
    _junction(site_id, now_ms, minutes, congestion_hours, rnd, out, k)

    minute_windows = _windows(60, minutes, now_ms)
    for i, (ws, we) in enumerate(minute_windows):
        rush = 0.6 + 0.6 * i / len(minute_windows) + 0.15 * math.sin(i / 2)  # building up to a peak now
        for line, direction, cls, base, speed in (
                ("street-stop-line", "southbound", "car", 14, 38.0),
                ("street-stop-line", "northbound", "car", 11, 42.0),
                ("street-stop-line", "southbound", "bicycle", 4, None),
                ("street-stop-line", "northbound", "bicycle", 3, None),
                ("gate-line", "entering", "person", 22, None),
                ("gate-line", "leaving", "person", 16, None),
                ("shop-door", "into-shop", "person", 6, None),
                ("shop-door", "leaving-shop", "person", 5, None)):
            count, suppressed = _count(max(0, round(base * rush + rnd.gauss(0, 2))), k)
            drawn = rnd.gauss(0, 3)  # drawn whether or not withheld: the operator's and partners' rows agree
            mean = None if suppressed or speed is None else round(speed + drawn, 1)
            out["traffic_volume"].append({
                "site_id": site_id, "line_id": line, "direction": direction, "class_name": cls,
                "window_start": ws, "window_end": we, "count": count, "suppressed": suppressed,
                "mean_speed_kmh": mean, "p85_speed_kmh": None if mean is None else round(mean * 1.18, 1)})
        for zone, cap, typical in (("gates", 12, 8.0), ("hall", 20, 6.0), ("shop", 6, 4.8)):
            p95 = max(0.0, round(typical * rush + rnd.gauss(0, 1), 1))
            out["occupancy"].append({
                "site_id": site_id, "zone_id": zone, "window_start": ws, "window_end": we,
                "mean_present": round(p95 * 0.7, 2), "max_present": math.ceil(p95 * 1.1),
                "p95_present": p95, "capacity_ratio": round(p95 / cap, 3),
                "crowding_level": _level(p95 / cap), "samples": 600, "suppressed": False})

    for ws, we in _windows(300, minutes, now_ms):
        for origin, dest, base, travel in (("gates", "hall", 40, 18.0), ("hall", "gates", 35, 21.0),
                                           ("hall", "shop", 9, 12.0), ("shop", "hall", 8, 14.0),
                                           ("gates", "shop", 2, 30.0)):
            count, suppressed = _count(max(0, round(base + rnd.gauss(0, 4))), k)
            median = round(travel + rnd.gauss(0, 2), 1)
            out["flow_lines"].append({
                "site_id": site_id, "origin_zone_id": origin, "destination_zone_id": dest,
                "window_start": ws, "window_end": we, "count": count, "suppressed": suppressed,
                "median_travel_s": None if suppressed else median})
        for zone, shape in (("gates", [30, 22, 9, 3, 1, 0, 0]), ("shop", [2, 6, 9, 8, 5, 3, 1])):
            raw = [max(0, round(c + rnd.gauss(0, 1.5))) for c in shape]
            counts = [None if c < k else c for c in raw]
            median = round((8.0 if zone == "gates" else 45.0) + rnd.gauss(0, 2), 1)
            out["dwell"].append({
                "site_id": site_id, "zone_id": zone, "window_start": ws, "window_end": we,
                "bin_upper_s": DWELL_BINS, "bin_counts": counts, "suppressed": any(c is None for c in counts),
                "median_dwell_s": median if sum(raw) >= k else None})

    for ws, we in _windows(900, minutes, now_ms):
        for age, weight in (("age_10_19", 0.6), ("age_20_29", 1.6), ("age_30_39", 1.4), ("age_40_49", 1.0),
                            ("age_50_59", 0.7), ("age_60_69", 0.5), ("unknown", 0.3)):
            for gender, g in (("female", 1.1), ("male", 0.9), ("unknown", 0.25)):
                count, suppressed = _count(max(0, round(9 * weight * g + rnd.gauss(0, 1.5))), k)
                out["attributes"].append({
                    "site_id": site_id, "place_id": "shop-door", "age_bracket": age, "gender": gender,
                    "window_start": ws, "window_end": we, "count": count, "suppressed": suppressed})
    return out


# approach -> (its lane zone's length on the ground through the homography above, m; free-flow km/h)
APPROACHES = {"north": (30.0, 40.0), "east": (23.0, 30.0)}
FAMILIES = ("white", "black", "grey", "red", "blue", "other", "unknown")


def _los(delay: float) -> str:
    for limit, level in zip((10, 20, 35, 55, 80), "ABCDE", strict=False):
        if delay <= limit:
            return level
    return "F"


def _group_withheld(counts: list[int], k: int) -> set[int]:
    """streams/disclosure.py's overlaps, written again for a total equal to the cells' sum: below k, then
    the smallest others until the withheld ones hold at least k."""
    out = {i for i, c in enumerate(counts) if 0 < c < k}
    rest = sorted((c, i) for i, c in enumerate(counts) if i not in out and c > 0)
    while out and rest and sum(counts[i] for i in out) < k:
        out.add(rest.pop(0)[1])
    return out


def _junction(site_id: str, now_ms: int, minutes: int, hours: float, rnd: random.Random,
              out: dict[str, list[dict[str, Any]]], k: int) -> None:
    windows = _windows(60, int(hours * 60), now_ms)
    for i, (ws, we) in enumerate(windows):
        peak = 0.5 + 0.5 * math.sin(math.pi * i / len(windows)) + 0.2 * math.sin(i / 5)
        for approach, (lane_m, free) in APPROACHES.items():
            vehicles = max(0, round((14 if approach == "north" else 6) * peak + rnd.gauss(0, 2)))
            speed = max(2.0, free * (1.05 - 0.8 * peak) + rnd.gauss(0, 2))
            delay = max(0.0, lane_m / (speed / 3.6) - lane_m / (free / 3.6))
            # the worker sees queues inside the lane zones only
            queue = min(lane_m, max(0.0, round(lane_m * (peak - 0.3) * 1.4 + rnd.gauss(0, 4), 1)))
            row = {"site_id": site_id, "intersection_id": "forecourt", "approach_id": approach,
                   "window_start": ws, "window_end": we, "samples": 600, "window_length_s": 60}
            if vehicles < k:
                row.update(count=None, suppressed=True, mean_present=None, max_present=None, mean_speed_kmh=None,
                           density_veh_per_km_lane=None, mean_delay_s=None, queue_length_m=None,
                           mean_queue_length_m=None, level_of_service=None)
            else:
                present = round(vehicles * 0.25, 2)
                row.update(count=vehicles, suppressed=False, mean_present=present, max_present=math.ceil(present * 2),
                           mean_speed_kmh=round(speed, 1), density_veh_per_km_lane=round(present / lane_m * 1000, 1),
                           mean_delay_s=round(delay, 1), queue_length_m=queue,
                           mean_queue_length_m=round(queue * 0.4, 1), level_of_service=_los(round(delay, 1)))
            out["congestion"].append(row)

    for ws, we in _windows(300, minutes, now_ms):
        for approach, flow, base in (("north", "entering", 40), ("north", "leaving", 30), ("east", "entering", 12),
                                     ("east", "leaving", 20)):
            for cls, share in (("car", 0.85), ("truck", 0.15)):
                count, suppressed = _count(max(0, round(base * share + rnd.gauss(0, 2))), k)
                drawn = round(25 + rnd.gauss(0, 3), 1)
                speed = None if suppressed else drawn
                out["intersection_volume"].append({
                    "site_id": site_id, "intersection_id": "forecourt", "approach_id": approach,
                    "flow_direction": flow, "class_name": cls, "window_start": ws, "window_end": we,
                    "count": count, "suppressed": suppressed, "mean_speed_kmh": speed,
                    "p85_speed_kmh": None if speed is None else round(speed * 1.2, 1), "window_length_s": 300})

    for ws, we in _windows(900, minutes, now_ms):
        # from north, one movement (published alone); from east a U-turn below K withholds both (the group)
        for entry, exits in (("north", (("east", 24),)), ("east", (("north", 9), ("east", 1)))):
            counts = [max(0, round(n + rnd.gauss(0, 1))) for _, n in exits]
            withheld = _group_withheld(counts, k)
            for j, ((exit_, _), n) in enumerate(zip(exits, counts, strict=True)):
                if n:
                    out["turning_movements"].append({
                        "site_id": site_id, "intersection_id": "forecourt", "entry_approach_id": entry,
                        "exit_approach_id": exit_, "class_name": "car", "window_start": ws, "window_end": we,
                        "count": None if j in withheld else n, "suppressed": j in withheld, "window_length_s": 900})
        for line, direction in (("street-stop-line", "southbound"), ("street-stop-line", "northbound")):
            counts = [max(0, round(n + rnd.gauss(0, 1.5))) for n in (40, 22, 25, 9, 8, 3, 2)]
            withheld = _group_withheld(counts, k)
            for j, (family, n) in enumerate(zip(FAMILIES, counts, strict=True)):
                if n:
                    out["vehicle_colours"].append({
                        "site_id": site_id, "line_id": line, "direction": direction, "class_name": "car",
                        "colour_family": family, "window_start": ws, "window_end": we,
                        "count": None if j in withheld else n, "suppressed": j in withheld, "window_length_s": 900})
