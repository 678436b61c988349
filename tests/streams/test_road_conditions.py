"""The road_conditions table (streams/road_conditions.py, streams/road_worker.py): k counted in distinct
trips, one value per trip in every statistic, congestion levels, and windows that close the same way
live and on a replay. Covers G4, T5 (congestion shown per place, direction and time), T6."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privaflow.schemas.codec import parsed_schema
from privaflow.streams.road_conditions import ProbeFrame, RoadWindows, congestion_level, stats
from privaflow.streams.road_worker import RoadWorker

CELL = "892f5a32d97ffff"
OTHER = "892f5a32d93ffff"


def frames(trip: int, n: int, *, cell: str = CELL, ts0: int = 1_000, speed: float = 30.0, ahead: int = 0,
           people: int = 0, heading: str = "N", camera: str = "taxi-1",
           furniture: tuple[str, ...] = ()) -> list[ProbeFrame]:
    return [ProbeFrame(camera, ts0 + 200 * i, trip, cell, heading, speed, ahead, people,
                       furniture if i == 0 else ()) for i in range(n)]


def closed(w: RoadWindows) -> dict[tuple[str, str], dict]:
    return {dims: agg for _s, _e, dims, agg in w.close(10**12)}


def test_k_counts_distinct_trips_not_frames_or_vehicles() -> None:
    w = RoadWindows(600_000, 5_000)
    w.add(frames(1, 500), 2_000)  # one trip crawling through the cell: 500 frames
    w.add(frames(2, 3, camera="taxi-2"), 2_000)
    w.add(frames(2, 3, camera="taxi-2", ts0=5_000), 6_000)  # the same trip again: still one
    got = closed(w)[(CELL, "N")]
    assert got["trips"] == 2 and got["samples"] == 506


def test_a_cell_fewer_than_k_trips_passed_is_not_published_at_all(site_with_taxis) -> None:
    worker = RoadWorker.__new__(RoadWorker)  # only the row logic: no Kafka here
    worker.k, worker.publish_from_ms, worker.site = 3, 0, site_with_taxis
    from privaflow.streams.road_worker import RoadStats

    worker.stats = RoadStats()
    w = RoadWindows(60_000, 5_000)
    for trip in (1, 2, 3):
        w.add(frames(trip, 5), 2_000)
    for trip in (4, 5):
        w.add(frames(trip, 50, cell=OTHER), 2_000)  # many frames, two trips
    rows = list(worker.partner_rows(w.close(10**12)))
    assert [v["h3_cell"] for _k, v in rows] == [CELL]
    assert rows[0][1]["trips"] == 3 and not rows[0][1]["suppressed"]
    assert worker.stats.withheld == 1
    import fastavro

    fastavro.validation.validate(rows[0][1], parsed_schema("partner_road_conditions"), raise_errors=True)


def test_statistics_weigh_each_trip_once() -> None:
    w = RoadWindows(600_000, 5_000)
    w.add(frames(1, 300, speed=2.0, ahead=4), 2_000)  # stuck for a minute
    w.add(frames(2, 5, speed=40.0, ahead=0), 2_000)
    w.add(frames(3, 5, speed=50.0, ahead=1), 2_000)
    got = closed(w)[(CELL, "N")]
    assert got["median_speed_kmh"] == 40.0  # not the crawler's 2 km/h that 300 of 310 frames show
    assert got["mean_vehicles_ahead"] == pytest.approx((4 + 0 + 1) / 3)


def test_people_furniture_and_headings() -> None:
    w = RoadWindows(60_000, 5_000)
    w.add(frames(1, 4, people=2, furniture=("traffic light", "stop sign")), 2_000)
    w.add(frames(2, 4, people=0, furniture=("traffic light",)), 2_000)
    w.add(frames(3, 4, heading="S"), 2_000)
    got = closed(w)
    assert set(got) == {(CELL, "N"), (CELL, "S")}
    north = got[(CELL, "N")]
    assert north["mean_people"] == pytest.approx(1.0) and north["furniture"] == {"stop sign": 1, "traffic light": 2}


def test_frames_without_a_cell_or_a_heading_feed_nothing() -> None:
    w = RoadWindows(60_000, 5_000)
    w.add([ProbeFrame("t", 1_000, 1, None, None, None, 0, 3), ProbeFrame("t", 1_100, 1, CELL, None, 0.0, 0, 0)], 2_000)
    assert len(w) == 0


@pytest.mark.parametrize("speed,ahead,level", [
    (45.0, 5.0, "FREE"), (20.0, 0.0, "FREE"), (15.0, 3.0, "SLOW"), (3.0, 0.0, "SLOW"),  # a red light, a kerb
    (8.0, 1.5, "CONGESTED"), (3.0, 1.0, "CONGESTED"), (3.0, 2.5, "JAMMED"), (None, 3.0, None)])
def test_congestion_levels(speed: float | None, ahead: float, level: str | None) -> None:
    assert congestion_level(speed, ahead) == level


def test_a_record_that_reached_kafka_after_its_window_closed_is_late_the_same_way_live_and_replayed() -> None:
    def replay(order: list[tuple[list[ProbeFrame], int]], close_at: list[int]) -> tuple[dict, int]:
        w = RoadWindows(60_000, 10_000)
        out: dict = {}
        for (fs, rec_ts), bound in zip(order, close_at, strict=True):
            w.add(fs, rec_ts)
            out.update({(s, d): a["trips"] for s, _e, d, a in w.close(bound)})
        out.update({(s, d): a["trips"] for s, _e, d, a in w.close(10**12)})
        return out, w.late_dropped

    a = (frames(1, 3, ts0=50_000), 55_000)
    b = (frames(2, 3, ts0=58_000), 69_000)  # reached Kafka within the grace
    c = (frames(3, 3, ts0=59_000), 75_000)  # reached Kafka after end + grace: late, whenever it is read
    live = replay([a, b, c], [60_000, 70_000, 80_000])
    replayed = replay([c, b, a], [0, 0, 0])  # read in another order, nothing closed until the end
    assert live == replayed == ({(0, (CELL, "N")): 2}, 3)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.integers(1, 20)), min_size=1, max_size=30))
def test_trips_is_the_number_of_distinct_trip_ids(passes: list[tuple[int, int]]) -> None:
    cell = [{}]
    from privaflow.streams.road_conditions import add

    for trip, n in passes:
        for f in frames(trip, n):
            add(cell, f)
    assert stats(cell)["trips"] == len({t for t, _ in passes})
    assert stats(cell)["samples"] == sum(n for _, n in passes)


@pytest.fixture
def site_with_taxis():
    from privaflow.schemas.site import parse_site_config

    return parse_site_config({"site_id": "s", "cameras": [
        {"id": f"taxi-{i}", "source": "d.mp4", "kind": "mobile",
         "mobile": {"position": {"kind": "gpx", "path": "d.gpx"}}} for i in (1, 2)],
        "partners": [{"id": "maps", "k_anonymity": 3, "tables": ["road_conditions"]}]})


@pytest.mark.parametrize("smuggled", ["37.5105,-122.3305", "8f283082803ffff0", "", "KA-01-AB-1234"])
def test_a_partner_row_is_never_built_from_anything_but_an_h3_cell(smuggled: str) -> None:
    from privaflow.streams.disclosure import k_anonymous_record as partner_record
    from privaflow.streams.tables import ClosedWindow

    w = RoadWindows(60_000, 1_000)
    for trip in (1, 2):
        w.add(frames(trip, 3), 2_000)
    (_s, _e, _dims, agg), = w.close(10**12)
    with pytest.raises(ValueError, match="is not an H3 cell index"):
        partner_record(ClosedWindow("road_conditions", "s", (smuggled, "N"), 0, 60_000, agg), 2)


def test_the_road_worker_skips_a_record_whose_cell_is_not_at_the_site_resolution(site_with_taxis) -> None:
    from privaflow.schemas.cells import snap
    from privaflow.streams.road_worker import record_problem

    cell = snap(35.0, 139.0, 9)
    good = {"site_id": "s", "camera_id": "taxi-1", "ts": [1, 2], "frame_seq": [1, 2], "detected": [True, True],
            "detection_counts": [0, 0], "h3_cell": [cell, None], "probe_heading": ["NE", None]}
    assert record_problem(good, site_with_taxis, "taxi-1", 9) is None
    assert "resolution 12" in record_problem({**good, "h3_cell": [cell, snap(35.0, 139.0, 12)]}, site_with_taxis,
                                             "taxi-1", 9)
    assert "not a valid H3" in record_problem({**good, "h3_cell": ["35.0,139.0", cell]}, site_with_taxis,
                                              "taxi-1", 9)
    assert "compass" in record_problem({**good, "probe_heading": ["NE", "=HYPERLINK()"]}, site_with_taxis,
                                       "taxi-1", 9)
    assert "record key" in record_problem(good, site_with_taxis, "taxi-2", 9)
    assert "entries for 2 frames" in record_problem({**good, "h3_cell": [cell]}, site_with_taxis, "taxi-1", 9)


def test_the_road_worker_reads_every_frame_of_a_record_with_its_trip() -> None:
    from privaflow.schemas.detections import BatchBuilder
    from privaflow.streams.road_worker import probe_frames

    b = BatchBuilder("s", "taxi-1")
    cell = "89283082837ffff"
    b.add(1_000, 1, True, (640, 480), {"track_id": [], "class_name": [], "confidence": [], "x1": [], "y1": [],
                                       "x2": [], "y2": [], "foot_x": [], "foot_y": []})  # before the trip
    b.add(1_200, 2, True, (640, 480), {"track_id": [], "class_name": [], "confidence": [], "x1": [], "y1": [],
                                       "x2": [], "y2": [], "foot_x": [], "foot_y": [], "trip_id": 7,
                                       "h3_cell": cell, "probe_heading": "N", "probe_speed_kmh": 42.0,
                                       "vehicles_ahead": 2, "ahead_band": "mid", "people": 1,
                                       "furniture": ["stop sign"]})
    b.add(1_400, 3, True, (640, 480), {"track_id": [], "class_name": [], "confidence": [], "x1": [], "y1": [],
                                       "x2": [], "y2": [], "foot_x": [], "foot_y": [], "trip_id": 7,
                                       "h3_cell": None, "probe_heading": None, "probe_speed_kmh": None,
                                       "vehicles_ahead": 0, "people": 0, "furniture": []})
    record = b.take()
    assert record is not None and record["trip_id"] == [None, 7, 7] and record["furniture"] == [[], ["stop sign"], []]
    assert probe_frames(record) == [ProbeFrame("taxi-1", 1_200, 7, cell, "N", 42.0, 2, 1, ("stop sign",)),
                                    ProbeFrame("taxi-1", 1_400, 7, None, None, None, 0, 0, ())]
    assert probe_frames({**record, "trip_id": None}) == []
