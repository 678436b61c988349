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

import h3

from privaflow.schemas.site import SiteConfig
from privaflow.schemas.topics import partner_topic_name
from privaflow.schemas.vocabulary import partner_symbols
from privaflow.streams.tables import SPECS, ClosedWindow


def partner_key(closed: ClosedWindow) -> str:
    """Stable key, so a republished window replaces itself on the compacted topic. The window length is
    in it: after a change of the site's windows, a 300-s window starting where a published 60-s window
    started is another record, not a replacement."""
    return (f"{closed.table}|{closed.site_id}|{'|'.join(closed.dims)}|{closed.window_start_ms}|"
            f"{window_length_s(closed)}")


def window_length_s(closed: ClosedWindow) -> int:
    return (closed.window_end_ms - closed.window_start_ms) // 1000


def partner_record(closed: ClosedWindow, k: int) -> tuple[str, dict[str, Any]]:
    """(key, value) for the partner schema of `closed.table` (schemas/avro/partner_*.avsc), with
    k-anonymity threshold `k` applied as the table's spec says (`TableSpec.partner_fields`)."""
    if k < 1:
        raise ValueError(f"k-anonymity threshold must be at least 1, got {k}")
    spec = SPECS.get(closed.table)
    if spec is None:
        raise ValueError(f"no partner schema for table {closed.table!r}")
    for dim, v in zip(spec.dims, closed.dims, strict=True):
        if dim.kind == "cell" and (not isinstance(v, str) or not h3.is_valid_cell(v)):
            # a spatial cell is the one dimension not from the config or a vocabulary: never anything else
            raise ValueError(f"{dim.name} {str(v)[:40]!r} is not an H3 cell index")
    value = {"site_id": closed.site_id, **dict(zip(spec.dim_names, closed.dims, strict=True)),
             "window_start": closed.window_start_ms, "window_end": closed.window_end_ms,
             "window_length_s": window_length_s(closed), **spec.partner_fields(closed.agg, k)}
    return partner_key(closed), partner_symbols(value)


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
