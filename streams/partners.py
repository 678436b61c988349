"""Partner records: the only place that assembles values for partner topics (T6, T7).

A partner value is assembled from a closed window and the fields the disclosure policy released for
it (`streams.disclosure`), never from an event, so it cannot carry a track id or a per-object time.
What may be released, under k-anonymity or differential privacy, is the policy's to say; this module
only adds the site, the key dimensions and the window, and turns labels into the closed vocabularies'
enum symbols (a label outside them is a ValueError: the policy never publishes such a cell).
"""

from __future__ import annotations

from typing import Any

import h3

from privaflow.schemas.site import SiteConfig
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


def partner_value(closed: ClosedWindow, fields: dict[str, Any]) -> dict[str, Any]:
    """The record for the partner schema of `closed.table` (schemas/avro/partner_*.avsc): site, key
    dimensions and window from `closed`, the rest from `fields` as the disclosure policy released them,
    labels as enum symbols."""
    spec = SPECS.get(closed.table)
    if spec is None:
        raise ValueError(f"no partner schema for table {closed.table!r}")
    for dim, v in zip(spec.dims, closed.dims, strict=True):
        if dim.kind == "cell" and (not isinstance(v, str) or not h3.is_valid_cell(v)):
            # a spatial cell is the one dimension not from the config or a vocabulary: never anything else
            raise ValueError(f"{dim.name} {str(v)[:40]!r} is not an H3 cell index")
    value = {"site_id": closed.site_id, **dict(zip(spec.dim_names, closed.dims, strict=True)),
             "window_start": closed.window_start_ms, "window_end": closed.window_end_ms,
             "window_length_s": window_length_s(closed), **fields}
    return partner_symbols(value)


def strictest_k(site: SiteConfig) -> dict[str, int]:
    """table -> the largest k among the k-anonymity partners receiving it (one shared topic per
    table; tables no such partner receives are absent). Differential-privacy partners have topics of
    their own."""
    ks: dict[str, int] = {}
    for p in site.partners:
        if not p.dp:
            for table in p.tables:
                ks[table] = max(ks.get(table, 0), p.k_anonymity)
    return ks
