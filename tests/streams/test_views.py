"""The worker's HTTP views: open and recently closed windows as JSON, filtered by site, zone, line,
time range and state; aggregates only.

Requirement ids: T5 (statistics per place, direction and time), G5 (crowding levels), T6 (no track
ids in anything the views return).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from privaflow.schemas.topics import partner_topic_name  # noqa: E402
from privaflow.streams.tables import ClosedWindow  # noqa: E402
from privaflow.streams.views import Query, QueryError, RecentWindows, table_view  # noqa: E402
from privaflow_stack.simulate import simulate  # noqa: E402
from tests.streams.harness import (  # noqa: E402
    TEST_SITE,
    DetectionsProducer,
    Run,
    WorkerProcess,
    interleave,
    read_partner,
    reference,
    write_config,
)

T0 = 1_767_225_600_000


def _w(table: str, dims: tuple[str, ...], start_s: int, site: str = "s", **agg: Any) -> ClosedWindow:
    return ClosedWindow(table, site, dims, T0 + start_s * 1000, T0 + (start_s + 60) * 1000, agg or {"count": 1})


OPEN = [_w("traffic_volume", ("l1", "in", "car"), 120), _w("occupancy", ("z1",), 120, samples=3),
        _w("flow_lines", ("z1", "z2"), 120), _w("attributes", ("z2", "20-29", "female"), 120)]
CLOSED = [_w("traffic_volume", ("l1", "in", "car"), 0), _w("traffic_volume", ("l2", "out", "bus"), 60),
          _w("traffic_volume", ("l1", "in", "car"), 60, site="other"),
          _w("dwell", ("z1",), 0, bin_upper_s=[5.0, float("inf")], bin_counts=[1, 0])]


def _recent() -> RecentWindows:
    r = RecentWindows(keep_s=100)
    r.add(CLOSED)
    return r


def _rows(table: str, **params: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = table_view(table, Query.parse(params), OPEN, _recent())["windows"]
    return rows


def test_line_site_and_state_filters() -> None:
    rows = _rows("traffic_volume", line="l1")
    assert {(r["line_id"], r["state"]) for r in rows} == {("l1", "open"), ("l1", "closed")}
    assert len(_rows("traffic_volume", line="l1", site="s")) == 2
    assert [r["site_id"] for r in _rows("traffic_volume", site="other")] == ["other"]
    assert {r["state"] for r in _rows("traffic_volume", state="closed")} == {"closed"}
    assert [r["state"] for r in _rows("traffic_volume", state="open")] == ["open"]
    assert _rows("occupancy", line="l1") == [], "a line filter matches no zone table"


def test_zone_filter_covers_every_table_with_a_zone() -> None:
    assert [r["zone_id"] for r in _rows("occupancy", zone="z1")] == ["z1"]
    assert [r["origin_zone_id"] for r in _rows("flow_lines", zone="z2")] == ["z1"], "destination matches too"
    assert [r["place_id"] for r in _rows("attributes", zone="z2")] == ["z2"]
    assert _rows("traffic_volume", zone="z1") == []


def test_time_range_selects_overlapping_windows() -> None:
    start = T0 + 60_000
    assert {r["window_start"] for r in _rows("traffic_volume", **{"from": str(start), "to": str(start + 1)})} == {start}
    iso = "2026-01-01T00:01:00Z"
    assert {r["window_start"] for r in _rows("traffic_volume", **{"from": iso})} == {start, start + 60_000}
    assert _rows("traffic_volume", to=str(T0)) == [], "a window ending at `from` or starting at `to` is out"


def test_rows_are_json_with_named_dims_and_no_infinity() -> None:
    view = table_view("dwell", Query(), OPEN, _recent())
    text = json.dumps(view, allow_nan=False)
    assert view["dims"] == ["zone_id"] and view["windows"][0]["bin_upper_s"] == [5.0, None]
    assert "track" not in text
    assert view["windows"][0]["window_start_iso"] == "2026-01-01T00:00:00Z"


@pytest.mark.parametrize("params", [{"state": "half"}, {"from": "yesterday"}, {"camera": "x"}])
def test_bad_parameters_say_what_was_expected(params: dict[str, str]) -> None:
    with pytest.raises(QueryError, match="expected"):
        Query.parse(params)


def test_unknown_table() -> None:
    with pytest.raises(QueryError, match="unknown table"):
        table_view("faces", Query(), [], RecentWindows())


def test_recent_windows_forget_old_and_excess_windows() -> None:
    r = RecentWindows(keep_s=100, max_per_table=2)
    r.add(CLOSED[:1], now=0)
    r.add(CLOSED[1:3], now=50)
    assert len(r.windows("traffic_volume", now=60)) == 2, "at most max_per_table"
    assert len(r.windows("traffic_volume", now=151)) == 0, "older than keep_s"


@pytest.mark.integration
def test_views_on_a_running_worker(stack: Any, unique: str, tmp_path: Path) -> None:
    run = Run(unique, stack.bootstrap, stack.registry_url)
    run.create_topics()
    sims = {cam: simulate(run.site, cam, duration_s=60, fps=10, n_objects=20, seed=i)
            for i, cam in enumerate(("campus", "street", "gate"))}
    producer = DetectionsProducer(run)
    for f in interleave({c: s.frames for c, s in sims.items()}):
        producer.frame(f)
    producer.flush()
    # a long idle timeout: the last windows stay open, so the view has open and closed ones
    worker = WorkerProcess(run, write_config(TEST_SITE, tmp_path / "site.yaml"), tmp_path / "state",
                           tmp_path / "worker.log", idle_timeout=3600).start()
    try:
        worker.wait_ready()
        expected = reference(run.site, {c: s.frames for c, s in sims.items()})
        want_tv = expected[partner_topic_name("traffic_volume")]
        last_start = max(v["window_start"] for v in want_tv.values())
        # every traffic window but the still-open last ones has been published
        read_partner(run, "traffic_volume",
                     lambda recs: {k for k, _ in recs} >= {k for k, v in want_tv.items()
                                                           if v["window_start"] < last_start}, timeout=90)
        assert worker.get("/healthz").status_code == 200

        def rows(table: str, **params: Any) -> list[dict[str, Any]]:
            r = worker.get(f"/tables/{table}", **params)
            assert r.status_code == 200, r.text
            assert "track" not in r.text
            out: list[dict[str, Any]] = r.json()["windows"]
            return out

        everything = rows("traffic_volume")
        assert {r["state"] for r in everything} == {"open", "closed"}
        got = {(r["line_id"], r["direction"], r["class_name"], r["window_start"]): r["count"] for r in everything}
        assert got == {(v["line_id"], v["direction"], v["class_name"], int(v["window_start"].timestamp() * 1000)):
                       v["count"] for v in want_tv.values()}
        crosswalk = rows("traffic_volume", line="street-crosswalk")
        assert crosswalk and {r["line_id"] for r in crosswalk} == {"street-crosswalk"}
        assert len(crosswalk) == sum(v["line_id"] == "street-crosswalk" for v in want_tv.values())
        assert rows("traffic_volume", site="not-this-site") == []
        assert {r["state"] for r in rows("traffic_volume", state="open")} == {"open"}
        assert {r["state"] for r in rows("traffic_volume", state="closed")} == {"closed"}

        hall = rows("occupancy", zone="gate-hall")
        assert hall and {r["zone_id"] for r in hall} == {"gate-hall"}
        assert all(r["crowding_level"] in ("EMPTY", "LOW", "CROWDED", "FULL") for r in hall)
        t1 = min(r["window_start"] for r in hall) + 10_000
        ranged = rows("occupancy", zone="gate-hall", **{"from": t1, "to": t1 + 10_000})
        assert [r["window_start"] for r in ranged] == [t1]
        flows = rows("flow_lines", zone="campus-east")
        assert flows and all("campus-east" in (r["origin_zone_id"], r["destination_zone_id"]) for r in flows)

        assert worker.get("/tables/faces").status_code == 404
        assert worker.get("/tables/occupancy", state="half").status_code == 400
        metrics = worker.get("/metrics").text
        assert 'privaflow_late_records_total{table="traffic_volume"} 0.0' in metrics
        assert "privaflow_frame_to_table_seconds_bucket" in metrics
    finally:
        worker.stop()
        run.delete_topics()
