"""How a test reads the dashboard, and the reference reading of what it must show for given API rows:
the dashboard's rules (see partner/dashboard/app.js) written again, independently, in Python."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / ".privaflow" / "screenshots"


SNAPSHOT_JS = """() => {
  const values = {};
  for (const e of document.querySelectorAll('[data-testid][data-value]')) {
    values[e.dataset.testid] = {value: e.dataset.value, suppressed: e.dataset.suppressed ?? null,
                                text: e.textContent.trim()};
  }
  const sec = document.getElementById('sec-intersection');
  return {from: document.body.dataset.from, to: document.body.dataset.to,
          refreshes: document.body.dataset.refreshes, values,
          map: sec && !sec.hidden ? {from: sec.dataset.cgFrom, to: sec.dataset.cgTo} : null};
}"""
# the congestion map's geometry (partner/dashboard/congestion.js): an arm is ARM_PX long for the longest
# lane or queue of its intersection in the loaded hours, at least MIN_SPAN_M
ARM_PX, MIN_SPAN_M = 230, 10


def snapshot(page: Any) -> dict[str, Any]:
    """Everything the page shows, read in one go (one JS turn), with the period it was fetched for (and
    the span of the congestion map's slider, `map`, when the page shows one)."""
    return page.evaluate(SNAPSHOT_JS)


def api_reading(base: str, site_id: str, shown: dict[str, Any], token: str, view: str | None = None
                ) -> dict[str, Any]:
    """What the API answers for exactly what the page fetched, in the page's view (the operator's, or
    `view`: as that partner sees it): every table shared in that view for its period, the site, and the
    congestion rows of the map's span."""
    import httpx

    from privaflow.schemas.topics import PARTNER_TABLES

    as_view = {"as": view} if view else {}
    q = {"site": site_id, "from": shown["from"], "to": shown["to"], **as_view}
    with httpx.Client(base_url=base, timeout=10, headers={"Authorization": f"Bearer {token}"}) as client:
        site = client.get("/api/v1/operator/site").json()
        tables: dict[str, list[dict[str, Any]]] = {}
        for t in sorted(published(site) & set(PARTNER_TABLES)):  # what the page fetches
            r = client.get(f"/api/v1/operator/tables/{t}", params=q)
            r.raise_for_status()
            if r.json()["shared"]:
                tables[t] = r.json()["rows"]  # Python's json reads the bare Infinity it writes
        map_rows = None
        if shown.get("map") and "congestion" in tables:
            r = client.get("/api/v1/operator/tables/congestion",
                           params={"site": site_id, "from": shown["map"]["from"], "to": shown["map"]["to"], **as_view})
            r.raise_for_status()
            map_rows = r.json()["rows"]
    return {"tables": tables, "site": site, "map_rows": map_rows}


def published(site: dict[str, Any]) -> set[str]:
    """The tables the page shows: those some partner receives (all when nobody receives any)."""
    named = {t for p in site.get("partners", []) for t in p.get("tables", [])}
    return named or {t["name"] for t in site["tables"]}


def expected_map(site: dict[str, Any], map_rows: list[dict[str, Any]], window_start: str | None = None
                 ) -> dict[str, tuple[Any, str | None]]:
    """What the congestion map must show for the window starting at `window_start` (default: the latest
    in `map_rows`): per approach its level, queue (in metres and, drawn, in px at the intersection's
    scale), lanes drawn to the same scale, and the statistics beside it."""
    starts = sorted({r["window_start"] for r in map_rows})
    out: dict[str, tuple[Any, str | None]] = {}
    if window_start is None:
        window_start = starts[-1] if starts else None
    out["cg-window"] = (window_start or "", None)
    for x in site.get("intersections", []):
        rows = [r for r in map_rows if r["intersection_id"] == x["id"]]
        longest = max([MIN_SPAN_M, *(m for a in x["approaches"] for m in a["lane_lengths_m"]),
                       *(r["queue_length_m"] for r in rows if r["queue_length_m"])])
        scale = ARM_PX / longest
        out[f"cg-scale-{x['id']}"] = (scale, None)
        at = {r["approach_id"]: r for r in rows if r["window_start"] == window_start}
        for a in x["approaches"]:
            key, r = f"{x['id']}-{a['id']}", at.get(a["id"])
            out[f"cg-lane-px-{key}"] = (max(a["lane_lengths_m"]) * scale, None)
            ok = r is not None and not r["suppressed"]
            out[f"cg-queue-px-{key}"] = ((r["queue_length_m"] or 0) * scale if ok else 0, None)
            for testid, field in (("los", "level_of_service"), ("queue", "queue_length_m"),
                                  ("present", "mean_present"), ("max", "max_present"), ("speed", "mean_speed_kmh"),
                                  ("delay", "mean_delay_s")):
                value: Any = None if r is None else "suppressed" if r["suppressed"] else r[field]
                out[f"cg-{testid}-{key}"] = (value, None)
    return out


# ---------------------------------------------------------------- the reference reading

def _tally(counts: Iterable[int | None]) -> tuple[str, str]:
    """(data-value, data-suppressed): published sum, or "suppressed" when every cell was withheld."""
    counts = list(counts)
    known = [c for c in counts if c is not None]
    withheld = len(counts) - len(known)
    return ("suppressed" if not known and withheld else str(sum(known))), str(withheld)


def _weighted(pairs: Iterable[tuple[float | None, float | None]]) -> float | None:
    num = den = 0.0
    for value, weight in pairs:
        if value is None or not weight:
            continue
        num += value * weight
        den += weight
    return num / den if den else None


def expected_values(tables: dict[str, list[dict[str, Any]]], site: dict[str, Any] | None = None,
                    map_rows: list[dict[str, Any]] | None = None, map_window: str | None = None
                    ) -> dict[str, tuple[Any, str | None]]:
    """testid -> (data-value, data-suppressed) the page must show for these API rows (and, for a site
    with intersections, the congestion map at `map_window`, default the latest). Written from the
    dashboard's stated rules, independently of app.js and congestion.js."""
    out: dict[str, tuple[Any, str | None]] = {}

    def group(rows: list[dict[str, Any]], *fields: str) -> dict[tuple[str, ...], list[dict[str, Any]]]:
        g: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            g[tuple(r[f] for f in fields)].append(r)
        return g

    tv = tables.get("traffic_volume", [])
    for (line, d), rs in group(tv, "line_id", "direction").items():
        out[f"tv-total-{line}-{d}"] = _tally(r["count"] for r in rs)
    for (line, d, c), rs in group(tv, "line_id", "direction", "class_name").items():
        out[f"tv-class-{line}-{d}-{c}"] = _tally(r["count"] for r in rs)
        speeds = [r for r in rs if r["mean_speed_kmh"] is not None]
        if speeds:
            last = max(speeds, key=lambda r: r["window_start"])
            out[f"speed-mean-{line}-{d}-{c}"] = (last["mean_speed_kmh"], None)
            out[f"speed-p85-{line}-{d}-{c}"] = (last["p85_speed_kmh"], None)

    for (zone,), rs in group(tables.get("occupancy", []), "zone_id").items():
        last = max(rs, key=lambda r: r["window_start"])
        out[f"occ-level-{zone}"] = (last["crowding_level"], None)
        out[f"occ-p95-{zone}"] = (last["p95_present"], None)
        out[f"occ-mean-{zone}"] = (last["mean_present"], None)
        out[f"occ-max-{zone}"] = (last["max_present"], None)
        p95 = last["p95_present"]
        out[f"occ-icons-{zone}"] = (None if p95 is None else math.ceil(p95), None)  # withheld below k

    for (o, d), rs in group(tables.get("flow_lines", []), "origin_zone_id", "destination_zone_id").items():
        out[f"od-{o}-{d}"] = _tally(r["count"] for r in rs)
        out[f"od-travel-{o}-{d}"] = (_weighted((r["median_travel_s"], r["count"]) for r in rs), None)

    for (zone,), rs in group(tables.get("dwell", []), "zone_id").items():
        for i in range(len(rs[0]["bin_counts"])):
            out[f"dwell-{zone}-{i}"] = _tally(r["bin_counts"][i] for r in rs)
        out[f"dwell-median-{zone}"] = (_weighted(
            (r["median_dwell_s"], sum(c for c in r["bin_counts"] if c is not None)) for r in rs), None)

    for (place, age, g), rs in group(tables.get("attributes", []), "place_id", "age_bracket", "gender").items():
        out[f"attr-{place}-{age}-{g}"] = _tally(r["count"] for r in rs)

    if site is not None and site.get("intersections"):
        volumes = tables.get("intersection_volume", [])
        for (x, a, flow), rs in group(volumes, "intersection_id", "approach_id", "flow_direction").items():
            out[f"iv-total-{x}-{a}-{flow}"] = _tally(r["count"] for r in rs)
        for (x, a, flow, c), rs in group(volumes, "intersection_id", "approach_id", "flow_direction",
                                         "class_name").items():
            out[f"iv-{x}-{a}-{flow}-{c}"] = _tally(r["count"] for r in rs)
        for (x, o, d), rs in group(tables.get("turning_movements", []), "intersection_id", "entry_approach_id",
                                   "exit_approach_id").items():
            out[f"tm-{x}-{o}-{d}"] = _tally(r["count"] for r in rs)
        if map_rows is not None:
            out.update(expected_map(site, map_rows, map_window))
    for (c, f), rs in group(tables.get("vehicle_colours", []), "class_name", "colour_family").items():
        out[f"vc-{c}-{f}"] = _tally(r["count"] for r in rs)
    return out


def assert_page_matches(shown: dict[str, dict[str, Any]], expected: dict[str, tuple[Any, str | None]]) -> None:
    """Every expected number is on the page with the same value (floats to 1e-6), and the page shows no
    number the reference does not know about (besides site-wide fields)."""
    problems = []
    for testid, (value, suppressed) in expected.items():
        got = shown.get(testid)
        if got is None:
            problems.append(f"{testid}: not on the page (expected {value!r})")
            continue
        if suppressed is not None and got["suppressed"] != suppressed:
            problems.append(f"{testid}: {got['suppressed']} suppressed cells shown, API has {suppressed}")
        if value is None:
            ok = got["value"] == ""
        elif isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)):
            try:
                ok = math.isclose(float(got["value"]), float(value), rel_tol=1e-6, abs_tol=1e-9)
            except ValueError:
                ok = False
        else:
            ok = got["value"] == str(value)
        if not ok:
            problems.append(f"{testid}: page shows {got['value']!r}, API gives {value!r}")
        if value == "suppressed" and (got["text"] == "0" or not got["text"].startswith("<")):
            problems.append(f"{testid}: suppressed cell reads {got['text']!r}, expected '<k'")
    site_wide = {"site-id", "last-updated"}
    extra = sorted(set(shown) - set(expected) - site_wide - {t for t in shown if t.startswith("occ-capacity-")})
    if extra:
        problems.append(f"numbers on the page the API rows do not explain: {extra[:10]}")
    assert not problems, "dashboard disagrees with the API:\n  " + "\n  ".join(problems)
