"""Partner records: k-anonymity by distinct objects, schema validity, no identifiers, one k per shared
topic. The disclosure policy itself is tested in test_disclosure.py and, as attacks, in tests/privacy/.

Requirement ids: T6 (never identify a person or vehicle from derived records), T7 (share derived
statistics minus anything identifying), G5 (crowding published as levels), G1-G3 (the tables).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.validation import validate
from hypothesis import given, settings
from hypothesis import strategies as st

from privaflow.schemas.codec import parsed_schema
from privaflow.schemas.site import SiteConfig, load_site_config, parse_site_config
from privaflow.schemas.topics import PARTNER_TABLES, partner_topic_name
from privaflow.streams.disclosure import Policy, k_anonymous_fields, records_for_partners
from privaflow.streams.partners import partner_key, partner_value, strictest_k
from privaflow.streams.tables import ClosedWindow, WindowStore, camera_tables
from privaflow.streams.tracks import TrackBook
from privaflow_stack.simulate import REALISTIC, simulate

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_767_225_600_000
DEFAULT_DIMS = {"traffic_volume": ("l1", "in", "car"), "flow_lines": ("a", "b"), "dwell": ("a",),
                "occupancy": ("a",), "attributes": ("l1", "30-39", "female"), "congestion": ("x", "north"),
                "intersection_volume": ("x", "north", "entering", "car"),
                "turning_movements": ("x", "north", "east", "bus"),
                "vehicle_colours": ("l1", "in", "truck", "red"), "road_conditions": ("892f5a32d97ffff", "NW")}


def closed(table: str, agg: dict[str, Any], dims: tuple[str, ...] | None = None, objects: int | None = None,
           slots: tuple[int, ...] | None = None) -> ClosedWindow:
    """A closed cell whose contributions come from `objects` distinct tracks (default: one per count)."""
    n = int(agg.get("count", 0)) if objects is None else objects
    tracks = tuple(range(1, n + 1))
    return ClosedWindow(table, "s1", dims or DEFAULT_DIMS[table], T0, T0 + 60_000, agg, tracks,
                        slots if slots is not None else (0,) * n)


def record(c: ClosedWindow, k: int) -> dict[str, Any] | None:
    fields = k_anonymous_fields(c, k)
    return None if fields is None else partner_value(c, fields)


def volume(count: int, speeds: int | None = None) -> dict[str, Any]:
    n = count if speeds is None else speeds
    return {"count": count, "speed_samples": n, "speed_objects": n, "mean_speed_kmh": 42.0 if n else None,
            "p85_speed_kmh": 50.0 if n else None}


def valid(table: str, value: dict[str, Any]) -> bool:
    schema = parsed_schema(PARTNER_TABLES[table])
    ok = bool(validate(value, schema, raise_errors=True))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, value)  # and it really encodes
    return ok


@pytest.mark.parametrize("k", [1, 2, 5, 10])
def test_a_cell_below_k_is_not_published_and_at_k_it_is(k: int) -> None:
    """Covers T6, T7 and rules (a), (b): a cell with k-1 objects is absent (no row at all); with k it
    is published with its statistics."""
    if k > 1:
        assert record(closed("traffic_volume", volume(k - 1)), k) is None
        few = {"count": k - 1, "travel_objects": k - 1, "median_travel_s": 3.0}
        assert record(closed("flow_lines", few), k) is None
        assert record(closed("attributes", {"count": k - 1}), k) is None
    ok = record(closed("traffic_volume", volume(k)), k)
    assert ok is not None
    assert (ok["count"], ok["suppressed"], ok["mean_speed_kmh"], ok["p85_speed_kmh"]) == (k, False, 42.0, 50.0)
    flow = record(closed("flow_lines", {"count": k, "travel_objects": k, "median_travel_s": 3.0}), k)
    assert flow is not None and (flow["count"], flow["suppressed"], flow["median_travel_s"]) == (k, False, 3.0)
    attr = record(closed("attributes", {"count": k}), k)
    assert attr is not None and (attr["count"], attr["suppressed"]) == (k, False)


def test_k_counts_distinct_objects_not_events() -> None:
    """Rule (a): one person pacing between two zones five times is one object, not five."""
    pacing = closed("flow_lines", {"count": 5, "travel_objects": 1, "median_travel_s": 3.0}, objects=1)
    assert record(pacing, 2) is None
    five = closed("flow_lines", {"count": 5, "travel_objects": 5, "median_travel_s": 3.0})
    assert record(five, 5) is not None


def test_speeds_need_k_measured_objects_too() -> None:
    """A mean over fewer than k measured objects would be one car's speed (T6)."""
    v = record(closed("traffic_volume", volume(12, speeds=4)), 5)
    assert v is not None
    assert v["count"] == 12 and v["mean_speed_kmh"] is None and v["p85_speed_kmh"] is None and v["suppressed"]


def test_dwell_bins_below_k_are_null_zero_included() -> None:
    """Rule (b) within a row: a bin with fewer than k visitors reads null whether it holds 0 or 4, so
    a null does not say 'somebody stayed this long'."""
    agg = {"count": 17, "bin_upper_s": [5.0, 15.0, math.inf], "bin_counts": [0, 4, 13], "median_dwell_s": 20.0}
    v = record(closed("dwell", agg, slots=(1,) * 4 + (2,) * 13), 5)
    assert v is not None
    assert v["bin_counts"] == [None, None, 13] and v["suppressed"] is True and v["median_dwell_s"] == 20.0
    at_k = record(closed("dwell", {**agg, "count": 17, "bin_counts": [0, 5, 12]}, slots=(1,) * 5 + (2,) * 12), 5)
    assert at_k is not None and at_k["bin_counts"] == [None, 5, 12]
    few = closed("dwell", {**agg, "count": 4, "bin_counts": [0, 4, 0]}, slots=(1,) * 4)
    assert record(few, 5) is None  # fewer than k visitors in the zone: no row
    assert valid("dwell", v) and valid("dwell", at_k)


def test_occupancy_keeps_its_level_and_withholds_statistics_of_fewer_than_k_people() -> None:
    """G5 and rule (a): one person present still reads LOW, but not how long or how many."""
    agg = {"samples": 600, "mean_present": 0.2, "max_present": 1, "p95_present": 1.0, "capacity": 10,
           "capacity_ratio": 0.1, "crowding_level": "LOW"}
    v = record(closed("occupancy", agg, objects=1), 100)
    assert v == {"site_id": "s1", "zone_id": "a", "window_start": T0, "window_end": T0 + 60_000,
                 "mean_present": None, "max_present": None, "p95_present": None, "capacity_ratio": None,
                 "crowding_level": "LOW", "samples": 600, "window_length_s": 60, "suppressed": True}
    assert valid("occupancy", v)
    crowd = record(closed("occupancy", agg, objects=100), 100)
    assert crowd is not None and crowd["max_present"] == 1 and crowd["suppressed"] is False


def test_key_is_stable_and_names_the_cell() -> None:
    c = closed("traffic_volume", volume(9))
    assert partner_key(c) == f"traffic_volume|s1|l1|in|car|{T0}|60" == partner_key(closed("traffic_volume", volume(1)))
    with pytest.raises(ValueError):
        k_anonymous_fields(c, 0)
    with pytest.raises(ValueError):
        partner_value(ClosedWindow("nope", "s1", (), T0, T0, {}), {})


def _road(passes: list[tuple[int, int, float | None, int, int, list[str]]]) -> dict[str, Any]:
    from privaflow.streams.road_conditions import ProbeFrame, add, empty, stats

    cell = empty()
    for trip, n, speed, ahead, people, furniture in passes:
        for i in range(n):
            add(cell, ProbeFrame("taxi", T0 + i, trip, "892f5a32d97ffff", "NW", speed, ahead, people,
                                 tuple(furniture) if i == 0 else ()))
    return stats(cell)


aggs = {
    "traffic_volume": st.builds(volume, st.integers(0, 50)),
    "flow_lines": st.fixed_dictionaries({"count": st.integers(0, 50), "travel_objects": st.integers(0, 50),
                                         "median_travel_s": st.none() | st.floats(0, 1e4)}),
    "attributes": st.fixed_dictionaries({"count": st.integers(0, 50)}),
    "dwell": st.lists(st.integers(0, 30), min_size=7, max_size=7).map(lambda c: {
        "count": sum(c), "bin_upper_s": [5, 15, 30, 60, 120, 300, math.inf], "bin_counts": c,
        "median_dwell_s": 12.5 if sum(c) else None}),
    "occupancy": st.fixed_dictionaries({
        "samples": st.integers(1, 10_000), "mean_present": st.floats(0, 100), "max_present": st.integers(0, 500),
        "p95_present": st.floats(0, 100), "capacity": st.none() | st.integers(1, 100),
        "capacity_ratio": st.none() | st.floats(0, 10),
        "crowding_level": st.sampled_from(["EMPTY", "LOW", "CROWDED", "FULL"])}),
    "congestion": st.fixed_dictionaries({
        "count": st.integers(0, 50), "samples": st.integers(1, 10_000), "mean_present": st.floats(0, 100),
        "max_present": st.integers(0, 500), "mean_speed_kmh": st.none() | st.floats(0, 200),
        "density_veh_per_km_lane": st.floats(0, 500), "mean_delay_s": st.floats(0, 1e4),
        "queue_length_m": st.floats(0, 500),
        "mean_queue_length_m": st.floats(0, 500), "level_of_service": st.sampled_from("ABCDEF")}),
    "intersection_volume": st.builds(volume, st.integers(0, 50)),
    "turning_movements": st.fixed_dictionaries({"count": st.integers(0, 50)}),
    "vehicle_colours": st.fixed_dictionaries({"count": st.integers(0, 50)}),
    "road_conditions": st.lists(st.tuples(st.integers(1, 8), st.integers(1, 30), st.none() | st.floats(0, 200),
                                          st.integers(0, 9), st.integers(0, 20),
                                          st.lists(st.sampled_from(["traffic light", "stop sign", "bench"]),
                                                   max_size=2)), min_size=1, max_size=12).map(_road),
}



@settings(max_examples=200, deadline=None)
@given(data=st.data(), table=st.sampled_from(sorted(PARTNER_TABLES)), k=st.integers(1, 20))
def test_every_partner_value_validates_against_its_schema(data: Any, table: str, k: int) -> None:
    """Covers T7: what is published is exactly the partner Avro schema."""
    agg = data.draw(aggs[table])
    slots = tuple(i for i, n in enumerate(agg["bin_counts"]) for _ in range(n)) if table == "dwell" else None
    value = record(closed(table, agg, objects=data.draw(st.integers(0, 60)) if table in ("occupancy", "congestion")
                          else None,
                          slots=slots), k)
    assert value is None or valid(table, value)


def all_values(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        return [v for x in obj.values() for v in all_values(x)] + list(obj)
    if isinstance(obj, list | tuple):
        return [v for x in obj for v in all_values(x)]
    return [obj]


def pipeline(site: SiteConfig, camera: str, n_objects: int) -> tuple[list[ClosedWindow], set[int]]:
    sim = simulate(site, camera, duration_s=600, fps=10, n_objects=n_objects, noise=REALISTIC, seed=3)
    book, store = TrackBook(site, camera), WindowStore(site)
    for f in sim.frames:
        store.add(book.observe(f))
    store.add(book.expire_all())
    track_ids = {d["track_id"] for f in sim.frames for d in f["detections"]}
    return store.close(2**62), track_ids


def test_end_to_end_values_are_valid_and_carry_no_track_id() -> None:
    """Covers T6, T7: from simulated frames to partner topics, no value or key contains a track id,
    no field is named like one, and every value validates."""
    site = load_site_config(ROOT / "examples" / "site.yaml")
    site = parse_site_config({**site.model_dump(), "cameras": [
        {**c.model_dump(), "attributes": True} for c in site.cameras]}, "<test>")
    windows, track_ids = pipeline(site, "campus", 150)
    published = records_for_partners(windows, site, policy=Policy(site))
    # road_conditions is the fleet's table, published by the road worker (tests/streams/test_road_e2e.py);
    # the intersection tables come from the street cameras, not from this campus scene
    received = {t for p in site.partners if not p.dp for t in p.tables}
    assert {partner_topic_name(t) for t in camera_tables(site, "campus") if t in received} <= set(published)
    n = 0
    for topic, records in published.items():
        table = next(t for t in PARTNER_TABLES if topic.endswith(partner_topic_name(t).split(".", 2)[2]))
        for key, value in records:
            n += 1
            assert valid(table, value)
            assert "track_id" not in value
            leaked = {v for v in all_values(value) if isinstance(v, int) and not isinstance(v, bool)} & track_ids
            assert not leaked
            assert not any(str(t) in key for t in track_ids)
    assert n > 10


def test_the_strictest_k_wins_on_a_shared_topic() -> None:
    """Covers T6: two partners share the traffic-volume topic; it is published under the larger k."""
    site = parse_site_config({
        "site_id": "s1", "cameras": [{"id": "cam", "source": 0}],
        "lines": [{"id": "l1", "camera": "cam", "points": [[0.5, 0], [0.5, 1]]}],
        "zones": [{"id": "a", "camera": "cam", "polygon": [[0, 0], [0.4, 0], [0.4, 0.4]]},
                  {"id": "b", "camera": "cam", "polygon": [[0.6, 0.6], [1, 0.6], [1, 1]]}],
        "partners": [{"id": "city", "k_anonymity": 5, "tables": ["traffic_volume", "occupancy"]},
                     {"id": "shop", "k_anonymity": 10, "tables": ["traffic_volume", "dwell"]}],
    }, "<test>")
    assert strictest_k(site) == {"traffic_volume": 10, "occupancy": 5, "dwell": 10}
    windows = [closed("traffic_volume", volume(7)), closed("traffic_volume", volume(10), ("l1", "out", "car")),
               closed("flow_lines", {"count": 50, "travel_objects": 50, "median_travel_s": 2.0})]
    out = records_for_partners(windows, site)
    assert list(out) == [partner_topic_name("traffic_volume")]  # nobody receives flow_lines
    [(_, ten)] = out[partner_topic_name("traffic_volume")]  # seven is absent: k=5 alone would have published it
    assert (ten["direction"], ten["count"], ten["suppressed"]) == ("out", 10, False)


def test_no_partners_means_nothing_is_published() -> None:
    site = parse_site_config({"site_id": "s1", "cameras": [{"id": "cam", "source": 0}],
                              "zones": [{"id": "a", "camera": "cam", "polygon": [[0, 0], [0.4, 0], [0.4, 0.4]]}]},
                             "<test>")
    assert records_for_partners([closed("occupancy", {
        "samples": 1, "mean_present": 0.0, "max_present": 0, "p95_present": 0.0, "capacity": None,
        "capacity_ratio": None, "crowding_level": "EMPTY"})], site) == {}


def test_windows_of_different_lengths_never_replace_each_other() -> None:
    """Issue 13 finding 7: after the site changed traffic_volume windows from 60 s to 300 s, a 300-s
    window overwrote the published 60-s window starting at the same instant (same key on a compacted
    topic). The length is in the key and in the record now, and a partner's table keeps both."""
    from privaflow.partner.store import PartnerStore
    from privaflow.streams.events import Crossing

    start = T0 - T0 % 300_000  # a 300-s window and a 60-s window start here
    values: dict[int, tuple[str, dict[str, Any]]] = {}
    for length in (60, 300):
        site = parse_site_config({"site_id": "s1", "cameras": [{"id": "c", "source": 0}],
                                  "lines": [{"id": "l1", "camera": "c", "points": [[0.5, 0], [0.5, 1]]}],
                                  "windows": {"traffic_volume": length},
                                  "partners": [{"id": "p", "k_anonymity": 1, "tables": ["traffic_volume"]}]})
        store = WindowStore(site)
        store.add([Crossing("s1", "c", "l1", "in", "car", start + 5_000 + i, i, None, None, None) for i in range(3)])
        [(key, value)] = records_for_partners(store.close(start + 400_000), site)[partner_topic_name("traffic_volume")]
        assert value["window_length_s"] == length and value["count"] == 3 and valid("traffic_volume", value)
        values[length] = (key, value)
    assert values[60][0] == f"traffic_volume|s1|l1|in|car|{start}|60" != values[300][0]

    table = PartnerStore("s1", bootstrap="unused:9092", registry=object(), kafka_config={})  # type: ignore[arg-type]
    for key, value in values.values():  # as the compacted topic delivers them: later keys replace earlier ones
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed_schema("partner_traffic_volume"), value)
        buf.seek(0)
        table.apply("traffic_volume", key, fastavro.schemaless_reader(buf, parsed_schema("partner_traffic_volume")))
    assert sorted(r["window_length_s"] for r in table.rows("traffic_volume")) == [60, 300]


def test_records_written_before_the_window_length_field_still_decode() -> None:
    """The new field has a default, so the change is BACKWARD compatible: a record written with the old
    schema (the same fields minus window_length_s) reads with null there."""
    for name in PARTNER_TABLES.values():
        from privaflow.schemas.codec import load_schema

        new = fastavro.parse_schema(load_schema(name))
        raw = load_schema(name)
        old = fastavro.parse_schema({**raw, "fields": [f for f in raw["fields"] if f["name"] != "window_length_s"]})
        table = next(t for t, n in PARTNER_TABLES.items() if n == name)
        value = record(closed(table, _AGGS[table], objects=6, slots=(0,) * 6), 1)
        assert value is not None
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, old, {k: v for k, v in value.items() if k != "window_length_s"})
        buf.seek(0)
        assert fastavro.schemaless_reader(buf, old, new)["window_length_s"] is None


_AGGS: dict[str, dict[str, Any]] = {
    "traffic_volume": volume(6),
    "flow_lines": {"count": 6, "travel_objects": 6, "median_travel_s": 3.0},
    "attributes": {"count": 6},
    "dwell": {"count": 6, "bin_upper_s": [5.0, math.inf], "bin_counts": [6, 0], "median_dwell_s": 2.0},
    "occupancy": {"samples": 10, "mean_present": 1.0, "max_present": 2, "p95_present": 2.0, "capacity": None,
                  "capacity_ratio": None, "crowding_level": "LOW"},
    "congestion": {"count": 6, "samples": 10, "mean_present": 1.0, "max_present": 2, "mean_speed_kmh": 20.0,
                   "density_veh_per_km_lane": 12.5, "mean_delay_s": 21.0, "queue_length_m": 14.0,
                   "mean_queue_length_m": 3.5, "level_of_service": "C"},
    "intersection_volume": volume(6),
    "turning_movements": {"count": 6},
    "vehicle_colours": {"count": 6},
    "road_conditions": {"trips": 3, "samples": 30, "median_speed_kmh": 25.0, "speed_trips": 3,
                        "mean_vehicles_ahead": 1.0, "p85_vehicles_ahead": 2.0, "mean_people": 0.5,
                        "congestion_level": "FREE", "furniture": {"traffic light": 2},
                        "furniture_classes": ["traffic light"], "furniture_counts": [2]},
}
