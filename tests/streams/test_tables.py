"""WindowStore: event-time tumbling windows per table, grace, exactly-once closing, statistics, state.

Requirement ids: T5 (statistics per place, direction and time window), G2 (flow lines, dwell),
G5 (crowding levels), G1 (attributes), T7 (only aggregates leave).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privaflow.schemas.codec import load_schema
from privaflow.schemas.site import SiteConfig, parse_site_config
from privaflow.schemas.topics import PARTNER_TABLES
from privaflow.streams.events import Crossing, Event, OccupancySample, ZoneVisit
from privaflow.streams.tables import (
    SPECS,
    TABLES,
    ClosedWindow,
    WindowStore,
    crowding_level,
    hist_percentile,
    percentile,
)
from privaflow.streams.tracks import TrackBook

T0 = 1_767_225_600_000
SIZES_S: dict[str, Any] = {"traffic_volume": 60, "occupancy": 10, "flow_lines": 300, "dwell": 120, "attributes": 900,
                           "vehicle_colours": 600}
GRACE_MS = 30_000


def make_site() -> SiteConfig:
    return parse_site_config({
        "site_id": "s1",
        "cameras": [{"id": "cam", "source": 0}],
        "lines": [{"id": "l1", "camera": "cam", "points": [[0.5, 0.1], [0.5, 0.9]]},
                  {"id": "l2", "camera": "cam", "points": [[0.1, 0.5], [0.9, 0.5]]}],
        "zones": [{"id": "a", "camera": "cam", "polygon": [[0, 0], [0.5, 0], [0.5, 0.5]], "capacity": 20},
                  {"id": "b", "camera": "cam", "polygon": [[0.5, 0.5], [1, 0.5], [1, 1]]}],
        "windows": dict(SIZES_S, grace_s=GRACE_MS // 1000),
        "counting": {"dwell_bins_s": [5, 15, 30, 60]},
    }, "<test>")


SITE = make_site()


def crossing(ts: int, line: str = "l1", direction: str = "in", cls: str = "car", speed: float | None = None,
             age: str | None = None, gender: str | None = None) -> Crossing:
    return Crossing("s1", "cam", line, direction, cls, ts, 12345, speed, age, gender)


def entry(ts: int, zone: str = "b", origin: str | None = "a", travel: float | None = 3.0,
          age: str | None = None, gender: str | None = None) -> ZoneVisit:
    return ZoneVisit("s1", "cam", zone, "ENTRY", "person", ts, 12345, None, origin, travel, age, gender)


def leave(ts: int, zone: str = "a", dwell: float | None = 12.0) -> ZoneVisit:
    return ZoneVisit("s1", "cam", zone, "EXIT", "person", ts, 12345, dwell, None, None)


def sample(ts: int, zone: str = "a", present: int = 3) -> OccupancySample:
    return OccupancySample("s1", "cam", zone, ts, present)


ts_strategy = st.integers(T0, T0 + 3_600_000)
events_strategy = st.lists(st.one_of(
    st.builds(crossing, ts_strategy, st.sampled_from(["l1", "l2"]), st.sampled_from(["in", "out"]),
              st.sampled_from(["car", "person"]), st.none() | st.floats(0, 120),
              st.none() | st.sampled_from(["20-29", "30-39"]), st.none() | st.sampled_from(["female", "male"])),
    st.builds(entry, ts_strategy, st.sampled_from(["a", "b"]), st.none() | st.sampled_from(["a", "b"]),
              st.floats(0, 100), st.none() | st.just("40-49"), st.none() | st.just("male")),
    st.builds(leave, ts_strategy, st.sampled_from(["a", "b"]), st.none() | st.floats(0, 500)),
    st.builds(sample, ts_strategy, st.sampled_from(["a", "b"]), st.integers(0, 30)),
), max_size=60)


Cell = tuple[str, tuple[str, ...]]


def feeds(ev: Event) -> list[Cell]:
    """The reference: which (table, dims) cells an event belongs to, per the module docstring."""
    out: list[Cell]
    if isinstance(ev, OccupancySample):
        return [("occupancy", (ev.zone_id,))]
    if isinstance(ev, Crossing):
        out = [("traffic_volume", (ev.line_id, ev.direction, ev.class_name))]
        if ev.class_name in ("car", "motorcycle", "bus", "truck"):  # vehicles: by colour family too (T5)
            out.append(("vehicle_colours", (ev.line_id, ev.direction, ev.class_name, "unknown")))
        if ev.age_bracket or ev.gender:
            out.append(("attributes", (ev.line_id, ev.age_bracket or "unknown", ev.gender or "unknown")))
        return out
    if ev.kind == "EXIT":
        return [("dwell", (ev.zone_id,))] if ev.dwell_s is not None else []
    out = [("flow_lines", (ev.from_zone_id, ev.zone_id))] if ev.from_zone_id else []
    if ev.age_bracket or ev.gender:
        out.append(("attributes", (ev.zone_id, ev.age_bracket or "unknown", ev.gender or "unknown")))
    return out


def cell_count(w: ClosedWindow) -> int:
    return int(w.agg["samples"] if w.table == "occupancy" else w.agg["count"])


@settings(max_examples=150, deadline=None)
@given(events=events_strategy)
def test_every_event_lands_in_exactly_one_window_per_table(events: list[Event]) -> None:
    """Covers T5: each record is counted once per table it feeds, in the window holding its time."""
    store = WindowStore(SITE)
    store.add(events)
    closed = store.close(2**62)
    got = Counter({(w.table, w.dims, w.window_start_ms): cell_count(w) for w in closed})
    expected: Counter[tuple[str, tuple[str, ...], int]] = Counter()
    for ev in events:
        for table, dims in feeds(ev):
            size = SIZES_S[table] * 1000
            expected[(table, dims, ev.ts_ms - ev.ts_ms % size)] += 1
    assert got == expected
    for w in closed:
        assert w.window_end_ms - w.window_start_ms == SIZES_S[w.table] * 1000
        assert w.window_start_ms % (SIZES_S[w.table] * 1000) == 0
        assert w.site_id == "s1"
    assert store.open_windows() == [] and store.close(2**62) == []


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 900_000)), max_size=80), data=st.data())
def test_closing_is_exactly_once_and_nothing_is_silently_lost(steps: list[tuple[int, int]], data: Any) -> None:
    """Windows close when the watermark passes end + grace, each once; late records are counted."""
    store = WindowStore(SITE)
    clock = T0
    fed: Counter[str] = Counter()
    emitted: Counter[str] = Counter()
    seen: set[tuple[str, tuple[str, ...], int]] = set()
    for op, jump in steps:
        clock += jump // 10
        if op == 0:  # close at a watermark that trails the clock
            watermark = clock - data.draw(st.integers(0, 120_000))
            for w in store.close(watermark):
                key = (w.table, w.dims, w.window_start_ms)
                assert key not in seen
                seen.add(key)
                assert w.window_end_ms + GRACE_MS <= max(watermark, store.watermark_ms or watermark)
                emitted[w.table] += cell_count(w)
            for w in store.open_windows():
                assert w.window_end_ms + GRACE_MS > (store.watermark_ms or -math.inf)
        else:  # records arrive out of order, up to ~5 minutes late
            ts = clock - data.draw(st.integers(0, 300_000))
            ev = data.draw(st.sampled_from([crossing(ts, age="20-29"), entry(ts), leave(ts), sample(ts)]))
            for table, _ in feeds(ev):
                fed[table] += 1
            store.add([ev])
    for w in store.close(2**62):
        emitted[w.table] += cell_count(w)
    for table in TABLES:
        assert emitted[table] + store.late_dropped[table] == fed[table]


def test_grace_lets_late_records_in_until_the_window_closes() -> None:
    store = WindowStore(SITE)
    store.add([crossing(T0 + 1000)])
    assert store.close(T0 + 60_000 + GRACE_MS - 1) == []
    store.add([crossing(T0 + 2000)])  # late but within grace: counted
    (w,) = store.close(T0 + 60_000 + GRACE_MS)
    assert (w.table, w.agg["count"], w.window_start_ms, w.window_end_ms) == ("traffic_volume", 2, T0, T0 + 60_000)
    store.add([crossing(T0 + 3000, age="20-29")])  # its traffic window has closed; attributes' has not
    assert store.late_dropped["traffic_volume"] == 1 and store.late_dropped["attributes"] == 0
    assert store.close(T0) == []  # a lower watermark changes nothing
    assert store.watermark_ms == T0 + 60_000 + GRACE_MS
    assert store.max_event_ts == T0 + 3000


def test_traffic_volume_statistics() -> None:
    """Covers T5: count, mean and 85th-percentile speed per line, direction and class."""
    speeds = [31.0, 45.5, 50.0, 38.0, 62.0, 41.0, 47.0]
    store = WindowStore(SITE)
    store.add([crossing(T0 + i, speed=s) for i, s in enumerate(speeds)] + [crossing(T0 + 99)])
    (w,) = [c for c in store.close(2**62) if c.table == "traffic_volume"]
    assert w.dims == ("l1", "in", "car")
    assert w.agg["count"] == 8 and w.agg["speed_samples"] == 7
    assert w.agg["mean_speed_kmh"] == pytest.approx(np.mean(speeds))
    assert w.agg["p85_speed_kmh"] == pytest.approx(np.percentile(speeds, 85))


def test_flow_lines() -> None:
    """Covers G2: origin-destination counts with the median travel time."""
    store = WindowStore(SITE)
    store.add([entry(T0, travel=t) for t in (2.0, 9.0, 4.0)] + [entry(T0, origin=None), entry(T0, travel=None)])
    (w,) = store.close(2**62)
    assert (w.table, w.dims) == ("flow_lines", ("a", "b"))
    assert (w.agg["count"], w.agg["median_travel_s"]) == (4, 4.0)


def test_attributes_cells_by_place_age_and_gender() -> None:
    """Covers G1: visitors by place, age bracket and gender, unknown where not estimated."""
    store = WindowStore(SITE)
    store.add([entry(T0, origin=None, age="40-49"), crossing(T0, gender="female"), crossing(T0, gender="female"),
               entry(T0, origin=None)])
    attrs = {w.dims: w.agg["count"] for w in store.close(2**62) if w.table == "attributes"}
    assert attrs == {("b", "40-49", "unknown"): 1, ("l1", "unknown", "female"): 2}


def test_dwell_bins_and_median() -> None:
    """Covers G2: bins are [lower, upper) with a final open bin; a dwell on an edge goes up a bin."""
    store = WindowStore(SITE)
    dwells = [0.0, 4.9, 5.0, 14.0, 29.9, 30.0, 59.0, 60.0, 400.0]
    store.add([leave(T0, dwell=d) for d in dwells] + [leave(T0, dwell=None)])
    (w,) = store.close(2**62)
    assert w.agg["bin_upper_s"] == [5.0, 15.0, 30.0, 60.0, math.inf]
    assert w.agg["bin_counts"] == [2, 2, 1, 2, 2]
    assert w.agg["count"] == 9 and w.agg["median_dwell_s"] == pytest.approx(np.median(dwells))


@settings(max_examples=100, deadline=None)
@given(present=st.lists(st.integers(0, 40), min_size=1, max_size=200))
def test_occupancy_statistics_match_numpy(present: list[int]) -> None:
    """Covers G5: mean, max and p95 of people present per frame, capacity ratio and crowding level."""
    store = WindowStore(SITE)
    store.add([sample(T0 + i, "a", p) for i, p in enumerate(present)])
    store.add([sample(T0 + i, "b", p) for i, p in enumerate(present)])
    a, b = store.close(2**62)
    p95 = float(np.percentile(present, 95))
    assert a.agg["samples"] == len(present) and a.agg["max_present"] == max(present)
    assert a.agg["mean_present"] == pytest.approx(np.mean(present))
    assert a.agg["p95_present"] == pytest.approx(p95)
    assert a.agg["capacity_ratio"] == pytest.approx(p95 / 20)
    assert a.agg["crowding_level"] == crowding_level(p95 / 20, max(present))
    assert b.agg["capacity"] is None and b.agg["capacity_ratio"] is None
    assert b.agg["crowding_level"] == ("EMPTY" if max(present) == 0 else "LOW")


def test_crowding_levels() -> None:
    assert [crowding_level(r, 5) for r in (0.0, 0.049, 0.05, 0.49, 0.5, 0.89, 0.9, 1.7)] == \
        ["EMPTY", "EMPTY", "LOW", "LOW", "CROWDED", "CROWDED", "FULL", "FULL"]
    assert crowding_level(None, 0) == "EMPTY" and crowding_level(None, 3) == "LOW"


def test_percentile_helpers() -> None:
    assert percentile([], 0.5) is None and hist_percentile([0, 0], 0.5) is None
    values = [1.0, 2.0, 2.0, 7.0, 9.0]
    for q in (0.0, 0.3, 0.5, 0.85, 0.95, 1.0):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q * 100))
    assert hist_percentile([1, 0, 2, 0, 0, 0, 0, 1], 0.95) == pytest.approx(np.percentile([0, 2, 2, 7], 95))


@settings(max_examples=40, deadline=None)
@given(events=events_strategy)
def test_open_windows_show_what_close_would_publish(events: list[Event]) -> None:
    store = WindowStore(SITE)
    store.add(events)
    assert store.open_windows() == store.close(2**62)


@settings(max_examples=80, deadline=None)
@given(before=events_strategy, after=events_strategy, watermark=st.integers(T0, T0 + 3_600_000))
def test_state_round_trips_through_json_with_identical_behaviour(before: list[Event], after: list[Event],
                                                                 watermark: int) -> None:
    """A restarted worker restores its windows from the changelog and publishes exactly the same."""
    a = WindowStore(SITE)
    a.add(before)
    first = a.close(watermark)
    b = WindowStore.from_state(SITE, json.loads(json.dumps(a.to_state(), allow_nan=False)))
    assert b.open_windows() == a.open_windows()
    for store in (a, b):
        store.add(after)
    assert b.close(watermark + 600_000) == a.close(watermark + 600_000)
    assert b.close(2**62) == a.close(2**62)
    assert b.late_dropped == a.late_dropped
    assert all(w.table in TABLES for w in first)


def test_a_snapshot_does_not_change_when_the_store_carries_on() -> None:
    store = WindowStore(SITE)
    store.add([crossing(T0, speed=10.0), leave(T0), sample(T0)])
    state = store.to_state()
    frozen = json.dumps(state)
    store.add([crossing(T0, speed=20.0), leave(T0), sample(T0, present=9)])
    assert json.dumps(state) == frozen and len(store) == 4  # the car is in vehicle_colours too
    restored = WindowStore.from_state(SITE, state)
    restored.add([crossing(T0, speed=30.0)])
    assert json.dumps(state) == frozen


def test_restored_dwell_cells_follow_new_bins() -> None:
    store = WindowStore(SITE)
    store.add([leave(T0, dwell=d) for d in (1.0, 20.0, 100.0)])
    state = json.loads(json.dumps(store.to_state()))
    other = parse_site_config({**SITE.model_dump(), "counting": {"dwell_bins_s": [10, 1000]}}, "<test>")
    (w,) = WindowStore.from_state(other, state).close(2**62)
    assert w.agg["bin_counts"] == [1, 2, 0]
    with pytest.raises(ValueError):
        WindowStore.from_state(SITE, {**state, "version": 0})


def test_unknown_events_are_refused() -> None:
    with pytest.raises(TypeError):
        WindowStore(SITE).add([object()])  # type: ignore[list-item]


def test_every_partner_schema_is_one_table_spec_with_the_same_dimensions() -> None:
    """Adding a table is its spec plus its partner schema; the two cannot drift apart."""
    assert set(SPECS) == set(PARTNER_TABLES)
    for name, spec in SPECS.items():
        # the version moves when the schema changes incompatibly (schemas/topics.py PARTNER_TOPIC_VERSIONS)
        assert spec.schema == PARTNER_TABLES[name] and re.fullmatch(
            rf"privaflow\.partner\.{name.replace('_', '-')}\.v\d+", spec.topic)
        fields = [f["name"] for f in load_schema(spec.schema)["fields"]]
        assert fields[:len(spec.dims) + 1] == ["site_id", *spec.dim_names]
        assert fields[len(spec.dims) + 1:len(spec.dims) + 3] == ["window_start", "window_end"]
        assert set(spec.notice) == {"en", "ja"} and spec.label and spec.suppression


def test_cells_know_the_distinct_tracks_behind_them() -> None:
    """Issue 12, rule (a): k counts distinct objects. A person pacing between two zones is one object
    however many entries; the occupancy cell knows who stood in the zone during the window (the head
    counts alone cannot tell three frames of one person from one frame of three)."""
    store = WindowStore(SITE)
    store.add([entry(T0 + i) for i in range(4)])  # one track (12345) entering four times
    store.add([OccupancySample("s1", "cam", "a", T0 + i, 1, (7,)) for i in range(3)])
    store.add([OccupancySample("s1", "cam", "a", T0 + 10, 3, (7, 8, 9))])
    by_table = {c.table: c for c in store.close(2**62)}
    assert by_table["flow_lines"].agg["count"] == 4 and by_table["flow_lines"].objects == 1
    assert by_table["occupancy"].agg["max_present"] == 3 and by_table["occupancy"].objects == 3
    assert "tracks" not in by_table["occupancy"].agg  # never in what is published or served


def test_a_person_standing_in_a_zone_is_in_its_occupancy_samples() -> None:
    """The track book names who stood inside each zone in each frame (persons only, as the head count)."""
    site = parse_site_config({"site_id": "s1", "cameras": [{"id": "cam", "source": 0}],
                              "zones": [{"id": "a", "camera": "cam", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}],
                              "counting": {"min_track_frames": 1}}, "<test>")
    book = TrackBook(site, "cam")
    det = lambda tid, x, cls="person": {"track_id": tid, "class_name": cls, "foot_x": x, "foot_y": 0.5}  # noqa: E731
    [s] = [e for e in book.observe({"ts": T0, "detections": [det(1, 0.2), det(2, 0.8), det(3, 0.3, "car")]})
           if isinstance(e, OccupancySample)]
    assert (s.present, s.tracks) == (1, (1,))
