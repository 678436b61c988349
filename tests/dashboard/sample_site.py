"""A station-and-street test site and a plausible half hour of partner records for it.

The same records feed the fake API (fast browser test) and the real broker (integration test), so
both tests look at the same picture: a street line with cars (speeds known) and bicycles, a station
concourse with three zones and gate lines, transitions between zones, dwell times, and visitor
attributes at the shop door. `operator_rows` are the windows as the operator's topics carry them (no
suppression); `partner_rows` the same windows as partners receive them, with the k-anonymity rules of
streams/disclosure.py written again here: a cell below K is absent, a dwell bin below K (zero
included) is null, a median needs K visits.
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
  - id: concourse
    source: concourse.mp4
    classes: [person]
lines:
  - id: street-stop-line
    camera: street
    points: [[0.1, 0.55], [0.9, 0.55]]
    directions: [southbound, northbound]
  - id: gate-line
    camera: concourse
    points: [[0.05, 0.3], [0.95, 0.3]]
    directions: [entering, leaving]
  - id: shop-door
    camera: concourse
    points: [[0.6, 0.4], [0.6, 0.85]]
    directions: [leaving-shop, into-shop]   # the shop is on the line's left (the right half)
zones:
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
windows:
  traffic_volume: 60
  occupancy: 60
  flow_lines: 300
  dwell: 300
  attributes: 900
partners:
  - id: city
    k_anonymity: {k}
    tables: [traffic_volume, occupancy, flow_lines]
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


def operator_rows(site_id: str, now_ms: int | None = None, minutes: int = 30, seed: int = 7
                  ) -> dict[str, list[dict[str, Any]]]:
    """table -> operator Avro records: every window, nothing withheld."""
    return _rows(site_id, now_ms, minutes, seed, k=0)


def partner_rows(site_id: str, now_ms: int | None = None, minutes: int = 30, seed: int = 7
                 ) -> dict[str, list[dict[str, Any]]]:
    """table -> the partners' Avro records of the same windows (k-anonymity with K)."""
    rows = _rows(site_id, now_ms, minutes, seed, k=K)
    for table in ("traffic_volume", "flow_lines", "attributes"):
        rows[table] = [r for r in rows[table] if r["count"] is not None]  # below K: not published at all
    return rows


def _rows(site_id: str, now_ms: int | None, minutes: int, seed: int, k: int) -> dict[str, list[dict[str, Any]]]:
    """table -> Avro records (window times as epoch millis), newest window closed before now."""
    now_ms = now_ms or int(time.time() * 1000)
    rnd = random.Random(seed)
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in
                                            ("traffic_volume", "occupancy", "flow_lines", "dwell", "attributes")}

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
            mean = None if suppressed or speed is None else round(speed + rnd.gauss(0, 3), 1)
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
            out["flow_lines"].append({
                "site_id": site_id, "origin_zone_id": origin, "destination_zone_id": dest,
                "window_start": ws, "window_end": we, "count": count, "suppressed": suppressed,
                "median_travel_s": None if suppressed else round(travel + rnd.gauss(0, 2), 1)})
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
