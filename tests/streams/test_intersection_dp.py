"""The intersection's tables for a partner under differential privacy (issue 17: "the same suppression
or noise applies"; docs/privacy-model.md (d)). A DP partner gets every window as the full grid the site
config defines for the camera (approaches, flow directions, classes, colour families, entry and exit
approaches), zeros included, with noise; statistics that rest on few vehicles are withheld.
Requirement ids: T5, T6, T7."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import fastavro
import pytest

from privaflow.schemas.codec import parsed_schema
from privaflow.schemas.site import parse_site_config
from privaflow.schemas.topics import PARTNER_TABLES, dp_topic_name
from privaflow.streams.consume import CameraState
from privaflow.streams.disclosure import Disclosure, Policy, grid
from privaflow.streams.tables import SPECS
from privaflow_stack.simulate import NO_NOISE
from privaflow_stack.simulate_intersection import simulate_intersection

TABLES = ("congestion", "intersection_volume", "turning_movements", "vehicle_colours")


@pytest.fixture
def released() -> tuple[Any, dict[str, list[dict[str, Any]]]]:
    sim = simulate_intersection(900.0, noise=NO_NOISE, seed=4)
    site = parse_site_config({**sim.site.model_dump(), "partners": [
        {"id": "lab", "tables": list(TABLES),
         "privacy": {"mechanism": "laplace", "epsilon_per_day": 100.0, "epsilon_per_window": 0.5}}]}, "<test>")
    state = CameraState.new(site, "overhead", policy=Policy(site))
    for i in range(0, len(sim.frames), 10):
        state.windows.add(state.observe(sim.frames[i:i + 10]))
    end = state.windows.max_event_ts or 0
    closed = state.windows.close(end + 3_600_000)
    out = Disclosure(Policy(site), "overhead").release(closed, end + 3_600_000)
    by_topic: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in out.records:
        by_topic[r.topic].append(r.value)
    return site, by_topic


def test_every_intersection_table_reaches_a_dp_partner_as_its_whole_grid(released: Any) -> None:
    site, by_topic = released
    for table in TABLES:
        rows = by_topic[dp_topic_name("lab", table)]
        assert rows, f"{table}: nothing published to the DP partner"
        dims = SPECS[table].dim_names
        cells = grid(table, site, "overhead")
        assert cells, table
        per_window: dict[int, set[tuple[str, ...]]] = defaultdict(set)
        for r in rows:
            per_window[r["window_start"]].add(tuple(str(r[d]) for d in dims))
        # every window holds every cell the config defines, zeros included: a row's existence says nothing
        assert all(seen == set(cells) for seen in per_window.values()), table
        schema = parsed_schema(PARTNER_TABLES[table])
        for r in rows:
            assert isinstance(r["count"], int) and r["count"] >= 0
            assert fastavro.validation.validate(r, schema, raise_errors=True)


def test_congestion_statistics_are_withheld_for_a_dp_partner(released: Any) -> None:
    """A queue length or a level of service from a noisy count has no DP release of its own: withheld;
    the frame count is not about vehicles and stays."""
    _site, by_topic = released
    rows = by_topic[dp_topic_name("lab", "congestion")]
    assert rows and all(r["queue_length_m"] is None and r["level_of_service"] is None and r["mean_speed_kmh"] is None
                        and r["suppressed"] is True for r in rows)
    assert any(r["samples"] > 0 for r in rows)  # frames analysed: not about vehicles, exact
    # turning movements: every entry and exit approach the camera sees, U-turns included
    turns = grid("turning_movements", _site, "overhead")
    assert {(t[1], t[2]) for t in turns} == {(a, b) for a in "nesw" for b in "nesw"}
