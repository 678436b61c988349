"""Congestion per approach (streams/congestion.py): level of service from known densities and speeds,
the congestion table's statistics, and what a partner receives of them; issue 17.

Requirement ids: T1 (find the causes of congestion), T5 (congestion statistics per place and time,
shown graphically), T6/T7 (nothing from fewer than k vehicles).
"""

from __future__ import annotations

import io

import fastavro
import pytest

from privaflow.schemas.codec import parsed_schema
from privaflow.schemas.site import parse_site_config
from privaflow.streams.congestion import DELAY_LIMITS_S, delay_s, level_of_service
from privaflow.streams.disclosure import k_anonymous_record
from privaflow.streams.events import ApproachSample
from privaflow.streams.tables import WindowStore

T0 = 1_767_225_600_000
LANE_M = 60.0  # the site below: a lane zone from y 0.2 to 0.8 of the frame at 100 m per frame height


@pytest.mark.parametrize("delay,level", [
    (0.0, "A"), (10.0, "A"), (10.01, "B"), (20.0, "B"), (20.01, "C"), (35.0, "C"), (35.01, "D"), (55.0, "D"),
    (55.01, "E"), (80.0, "E"), (80.01, "F"), (3600.0, "F"),
])
def test_level_of_service_follows_the_hcm_signalised_intersection_thresholds(delay: float, level: str) -> None:
    """HCM 6th edition, Exhibit 19-8: control delay per vehicle, A up to 10 s ... F above 80 s."""
    assert level_of_service(delay) == level
    assert DELAY_LIMITS_S == (10.0, 20.0, 35.0, 55.0, 80.0)


@pytest.mark.parametrize("speed,free,delay", [
    (50.0, 50.0, 0.0),  # at the free-flow speed: no delay
    (60.0, 50.0, 0.0),  # faster than free flow is not negative delay
    (25.0, 50.0, 60 / (25 / 3.6) - 60 / (50 / 3.6)),  # 8.64 - 4.32 = 4.32 s
    (5.0, 50.0, 60 / (5 / 3.6) - 60 / (50 / 3.6)),  # 43.2 - 4.32 = 38.9 s
    (None, 50.0, 0.0),  # nobody there
])
def test_delay_is_the_lane_travelled_at_the_mean_speed_against_free_flow(speed: float | None, free: float,
                                                                          delay: float) -> None:
    assert delay_s(LANE_M, speed, free) == pytest.approx(delay)
    assert delay_s(LANE_M, 0.0, 50.0) > 80  # a lane that never moved is F, not a division by zero


def site(free_flow: float = 45.0, k: int = 5) -> object:
    return parse_site_config({
        "site_id": "s", "windows": {"congestion": 60},
        "cameras": [{"id": "c", "source": 0, "vehicles_only": True,
                     "homography": [[30, 0, 0], [0, 100, 0], [0, 0, 1]]}],
        "lines": [{"id": "stop", "camera": "c", "points": [[0.1, 0.2], [0.9, 0.2]]}],
        "zones": [{"id": "lane", "camera": "c", "polygon": [[0.4, 0.2], [0.6, 0.2], [0.6, 0.8], [0.4, 0.8]]}],
        "intersections": [{"id": "x", "approaches": [{"id": "n", "camera": "c", "road": "R", "compass": "N",
                                                     "inbound": {"line": "stop", "direction": "in"},
                                                     "lanes": ["lane"], "free_flow_kmh": free_flow}]}],
        "partners": [{"id": "city", "k_anonymity": k, "tables": ["congestion"]}]})


def window(present: list[int], speed_kmh: float | None, queue: list[float], vehicles: int, free: float = 45.0
           ) -> dict[str, object]:
    """One 60-s window of lane samples: `present[i]` vehicles in frame i, all at `speed_kmh`."""
    store = WindowStore(site(free))  # type: ignore[arg-type]
    tracks = tuple(range(1, vehicles + 1))
    store.add(ApproachSample("s", "c", "x", "n", T0 + 100 * i, p, (speed_kmh or 0.0) * p,
                             p if speed_kmh is not None else 0, q, tracks[:p] if i == 0 else tracks[:min(p, 1)])
              for i, (p, q) in enumerate(zip(present, queue, strict=True)))
    (closed,) = store.close(2**62)
    assert (closed.table, closed.dims) == ("congestion", ("x", "n"))
    return closed.agg


@pytest.mark.parametrize("present,speed,level", [
    # free flow: one vehicle every other frame at 40 km/h; density 0.5 / 0.06 km = 8.3 veh/km/lane
    ([1, 0] * 300, 40.0, "A"),
    # a queue that moves: 3 vehicles at 12 km/h (50 veh/km/lane): 60/3.33 - 60/12.5 = 13.2 s
    ([3] * 600, 12.0, "B"),
    # crawling: 6 vehicles at 6 km/h (100 veh/km/lane): 36 - 4.8 = 31.2 s
    ([6] * 600, 6.0, "C"),
    # 8 vehicles at 4 km/h: 54 - 4.8 = 49.2 s
    ([8] * 600, 4.0, "D"),
    # 9 vehicles at 3 km/h: 72 - 4.8 = 67.2 s
    ([9] * 600, 3.0, "E"),
    # standing: 9 vehicles at 1 km/h (150 veh/km/lane): 216 - 4.8 = 211 s
    ([9] * 600, 1.0, "F"),
])
def test_level_of_service_from_known_densities_and_speeds(present: list[int], speed: float, level: str) -> None:
    """Covers T1, T5: a window of known presence and speed in a 60-m lane gives its density, mean speed,
    delay and level."""
    agg = window(present, speed, [0.0] * len(present), vehicles=max(present))
    mean = sum(present) / len(present)
    assert agg["mean_present"] == pytest.approx(mean)
    assert agg["max_present"] == max(present)
    assert agg["density_veh_per_km_lane"] == pytest.approx(mean / (LANE_M / 1000))
    assert agg["mean_speed_kmh"] == pytest.approx(speed)
    assert agg["mean_delay_s"] == pytest.approx(LANE_M / (speed / 3.6) - LANE_M / (45.0 / 3.6))
    assert agg["level_of_service"] == level
    assert agg["samples"] == len(present)


def test_queue_statistics_and_distinct_vehicles_of_a_window() -> None:
    queue = [0.0] * 200 + [14.0] * 200 + [35.0] * 200
    agg = window([2] * 600, 5.0, queue, vehicles=2)
    assert agg["queue_length_m"] == 35.0
    assert agg["mean_queue_length_m"] == pytest.approx((14.0 + 35.0) / 3)
    assert agg["count"] == 2  # distinct vehicles, not vehicle-frames
    empty = window([0] * 600, None, [0.0] * 600, vehicles=0)
    assert (empty["count"], empty["mean_speed_kmh"], empty["mean_delay_s"], empty["level_of_service"]) == (
        0, None, 0.0, "A")


def test_a_partner_gets_nothing_from_fewer_than_k_vehicles() -> None:
    """Covers T6, rule (a): four vehicles standing in a queue at night: their queue length, speed and the
    level would describe those four. Withheld below k; published from k on; the frame count stays."""
    from privaflow.streams.tables import ClosedWindow

    few = window([4] * 600, 1.0, [21.0] * 600, vehicles=4)
    record = k_anonymous_record(ClosedWindow("congestion", "s", ("x", "n"), T0, T0 + 60_000, few, tuple(range(4))), 5)
    assert record is not None  # a row per approach and window, whoever was there (rule b)
    _, value = record
    withheld = ("count", "mean_present", "max_present", "mean_speed_kmh", "density_veh_per_km_lane", "mean_delay_s",
                "queue_length_m", "mean_queue_length_m", "level_of_service")
    assert value["suppressed"] is True and all(value[f] is None for f in withheld) and value["samples"] == 600
    enough = window([5] * 600, 1.0, [28.0] * 600, vehicles=5)
    record = k_anonymous_record(ClosedWindow("congestion", "s", ("x", "n"), T0, T0 + 60_000, enough,
                                             tuple(range(5))), 5)
    assert record is not None
    _, value = record
    assert value["suppressed"] is False and value["level_of_service"] == "F" and value["queue_length_m"] == 28.0
    for v in (value,):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed_schema("partner_congestion"), v)
        buf.seek(0)
        assert fastavro.schemaless_reader(buf, parsed_schema("partner_congestion"))["level_of_service"] == "F"
