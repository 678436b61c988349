"""What the worker's HTTP views answer: open and recently closed windows as JSON, filtered.

Operator-internal, but still aggregates only: a window cell is a count or a statistic per line,
zone, direction, class or attribute bracket, never a track. Not k-anonymised (partners get the
partner topics, which are). Each worker answers for the cameras whose partitions it owns, and
remembers the windows it closed since it started (`RecentWindows`), so after a restart or a
rebalance the history starts empty; the partner topics are the durable record.

    GET /tables/traffic_volume?line=street-crosswalk&from=2026-01-01T00:00:00Z&state=closed

Filters: `site`; `zone` (occupancy, dwell, flow_lines origin or destination, attributes place);
`line` (traffic_volume, attributes place); `from`/`to` (epoch ms or ISO 8601; a window matches
when it overlaps [from, to)); `state` (`open`, `closed`, default both).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from privaflow.streams.tables import SPECS, TABLES, ClosedWindow


class QueryError(ValueError):
    """A bad query parameter; the message says which and what was expected."""


def _time_ms(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise QueryError(f"{name}: expected epoch milliseconds or an ISO 8601 time, got {value!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp() * 1000)


@dataclass(frozen=True)
class Query:
    """Filters of a /tables request."""

    site: str | None = None
    zone: str | None = None
    line: str | None = None
    from_ms: int | None = None
    to_ms: int | None = None
    state: str | None = None  # "open", "closed" or None for both

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> Query:
        unknown = set(params) - {"site", "zone", "line", "from", "to", "state"}
        if unknown:
            raise QueryError(f"unknown parameter(s) {', '.join(sorted(unknown))}; "
                             "expected site, zone, line, from, to, state")
        state = params.get("state") or None
        if state not in (None, "open", "closed"):
            raise QueryError(f"state: expected open or closed, got {state!r}")
        return cls(site=params.get("site") or None, zone=params.get("zone") or None,
                   line=params.get("line") or None,
                   from_ms=_time_ms("from", params["from"]) if params.get("from") else None,
                   to_ms=_time_ms("to", params["to"]) if params.get("to") else None, state=state)

    def matches(self, w: ClosedWindow) -> bool:
        if self.site is not None and w.site_id != self.site:
            return False
        if self.from_ms is not None and w.window_end_ms <= self.from_ms:
            return False
        if self.to_ms is not None and w.window_start_ms >= self.to_ms:
            return False
        spec = SPECS[w.table]
        if self.zone is not None and self.zone not in spec.dims_of_kind(w.dims, "zone", "place"):
            return False
        return self.line is None or self.line in spec.dims_of_kind(w.dims, "line", "place")


class RecentWindows:
    """Closed windows of the last `keep_s` seconds (by when they closed), at most `max_per_table`
    per table so a busy site cannot grow the worker's memory without bound."""

    def __init__(self, keep_s: float = 24 * 3600.0, max_per_table: int = 20_000) -> None:
        self.keep_s = keep_s
        self._by_table: dict[str, deque[tuple[float, ClosedWindow]]] = {
            t: deque(maxlen=max_per_table) for t in TABLES}

    def add(self, closed: Iterable[ClosedWindow], now: float | None = None) -> None:
        now = time.time() if now is None else now
        for c in closed:
            self._by_table[c.table].append((now, c))

    def windows(self, table: str, now: float | None = None) -> list[ClosedWindow]:
        now = time.time() if now is None else now
        q = self._by_table[table]
        while q and q[0][0] < now - self.keep_s:
            q.popleft()
        return [c for _, c in q]


def _finite(x: Any) -> Any:
    """JSON has no infinity (the last dwell bin's upper edge): null means unbounded."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, list):
        return [_finite(v) for v in x]
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    return x


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat().replace("+00:00", "Z")


def window_json(w: ClosedWindow, state: str) -> dict[str, Any]:
    """One window cell as JSON: its place and breakdown dims by name, bounds, and statistics."""
    return {"state": state, "table": w.table, "site_id": w.site_id,
            **dict(zip(SPECS[w.table].dim_names, w.dims, strict=True)),
            "window_start": w.window_start_ms, "window_end": w.window_end_ms,
            "window_start_iso": _iso(w.window_start_ms), "window_end_iso": _iso(w.window_end_ms),
            **_finite(w.agg)}


def table_view(table: str, query: Query, open_windows: Iterable[ClosedWindow], recent: RecentWindows
               ) -> dict[str, Any]:
    """The /tables/{table} answer."""
    if table not in TABLES:
        raise QueryError(f"unknown table {table!r}; expected one of {', '.join(TABLES)}")
    rows: list[tuple[int, tuple[str, ...], dict[str, Any]]] = []
    if query.state in (None, "open"):
        rows += [(w.window_start_ms, w.dims, window_json(w, "open"))
                 for w in open_windows if w.table == table and query.matches(w)]
    if query.state in (None, "closed"):
        rows += [(w.window_start_ms, w.dims, window_json(w, "closed"))
                 for w in recent.windows(table) if query.matches(w)]
    rows.sort(key=lambda r: (r[0], r[1], r[2]["state"]))
    return {"table": table, "dims": list(SPECS[table].dim_names),
            "filters": {k: v for k, v in vars(query).items() if v is not None},
            "count": len(rows), "windows": [r[2] for r in rows]}
