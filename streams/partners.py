"""Partner records: the only place that builds values for partner topics (T6, T7).

A partner value is built from a closed window's aggregate, never from an event, so it cannot carry
a track id or a per-object time. k-anonymity, per table:

- traffic_volume, flow_lines, attributes: a count below k is withheld (`count` null,
  `suppressed` true) and so is every statistic derived from it. Speed statistics are also withheld
  when fewer than k of the counted objects had a speed, since a mean over one car is that car's
  speed.
- dwell: every bin holding 1..k-1 visits is withheld (null) and `suppressed` is set; empty bins
  stay 0 (an empty bin says nothing about anyone). The median is withheld when the window holds
  fewer than k visits.
- occupancy: not suppressed. It is a head count per frame over a zone, not a breakdown of
  individuals by any attribute, and a station-gate crowding icon (G5) must read "EMPTY" or "LOW"
  precisely when few people are there.

One topic per table is shared by every partner receiving that table, so a topic is published
with the strictest (largest) k of those partners; a table no partner receives is not published.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from schemas.site import SiteConfig
from schemas.topics import partner_topic_name
from streams.tables import ClosedWindow


def partner_key(closed: ClosedWindow) -> str:
    """Stable key, so a republished window replaces itself on the compacted topic. The window length is
    in it: after a change of the site's windows, a 300-s window starting where a published 60-s window
    started is another record, not a replacement."""
    return (f"{closed.table}|{closed.site_id}|{'|'.join(closed.dims)}|{closed.window_start_ms}|"
            f"{window_length_s(closed)}")


def window_length_s(closed: ClosedWindow) -> int:
    return (closed.window_end_ms - closed.window_start_ms) // 1000


def _counted(agg: dict[str, Any], k: int) -> tuple[int | None, bool]:
    count = int(agg["count"])
    return (None, True) if count < k else (count, False)


def partner_record(closed: ClosedWindow, k: int) -> tuple[str, dict[str, Any]]:
    """(key, value) for the partner schema of `closed.table` (schemas/avro/partner_*.avsc), with
    k-anonymity threshold `k` applied as the module docstring says."""
    if k < 1:
        raise ValueError(f"k-anonymity threshold must be at least 1, got {k}")
    agg, dims = closed.agg, closed.dims
    base: dict[str, Any] = {"site_id": closed.site_id}
    window = {"window_start": closed.window_start_ms, "window_end": closed.window_end_ms,
              "window_length_s": window_length_s(closed)}
    value: dict[str, Any]
    if closed.table == "traffic_volume":
        count, suppressed = _counted(agg, k)
        speeds_ok = not suppressed and int(agg.get("speed_samples", 0)) >= k
        value = {**base, "line_id": dims[0], "direction": dims[1], "class_name": dims[2], **window,
                 "count": count, "suppressed": suppressed,
                 "mean_speed_kmh": _f(agg["mean_speed_kmh"]) if speeds_ok else None,
                 "p85_speed_kmh": _f(agg["p85_speed_kmh"]) if speeds_ok else None}
    elif closed.table == "flow_lines":
        count, suppressed = _counted(agg, k)
        value = {**base, "origin_zone_id": dims[0], "destination_zone_id": dims[1], **window,
                 "count": count, "suppressed": suppressed,
                 "median_travel_s": None if suppressed else _f(agg["median_travel_s"])}
    elif closed.table == "attributes":
        count, suppressed = _counted(agg, k)
        value = {**base, "place_id": dims[0], "age_bracket": dims[1], "gender": dims[2], **window,
                 "count": count, "suppressed": suppressed}
    elif closed.table == "dwell":
        counts = [None if 0 < int(c) < k else int(c) for c in agg["bin_counts"]]
        total = int(agg["count"])
        value = {**base, "zone_id": dims[0], **window, "bin_upper_s": [float(b) for b in agg["bin_upper_s"]],
                 "bin_counts": counts, "suppressed": any(c is None for c in counts),
                 "median_dwell_s": _f(agg["median_dwell_s"]) if total >= k else None}
    elif closed.table == "occupancy":
        value = {**base, "zone_id": dims[0], **window, "mean_present": float(agg["mean_present"]),
                 "max_present": int(agg["max_present"]), "p95_present": float(agg["p95_present"]),
                 "capacity_ratio": _f(agg["capacity_ratio"]), "crowding_level": agg["crowding_level"],
                 "samples": int(agg["samples"])}
    else:
        raise ValueError(f"no partner schema for table {closed.table!r}")
    return partner_key(closed), value


def _f(x: float | None) -> float | None:
    return None if x is None else float(x)


def strictest_k(site: SiteConfig) -> dict[str, int]:
    """table -> the largest k among the partners receiving it (tables nobody receives are absent)."""
    ks: dict[str, int] = {}
    for p in site.partners:
        for table in p.tables:
            ks[table] = max(ks.get(table, 0), p.k_anonymity)
    return ks


Record = tuple[str, dict[str, Any]]


def records_for_partners(closed: Iterable[ClosedWindow], site: SiteConfig) -> dict[str, list[Record]]:
    """Partner topic name -> (key, value) records for these closed windows, each table under the
    strictest k of the partners that receive it; tables no partner receives are left out."""
    ks = strictest_k(site)
    out: dict[str, list[Record]] = {}
    for c in closed:
        k = ks.get(c.table)
        if k is None:
            continue
        out.setdefault(partner_topic_name(c.table), []).append(partner_record(c, k))
    return out
