"""The disclosure policy's parts (streams/disclosure.py, docs/privacy-model.md rules b-d): what each
field is, the DP grid, contribution bounds, keyed noise, the daily budget and the policy's state.
The attacks on the whole are in tests/privacy/. Covers T6, T7.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pytest

from privaflow.schemas.site import ConfigError, parse_site_config
from privaflow.schemas.topics import dp_topic_name
from privaflow.streams.disclosure import (
    Disclosure,
    DisclosureError,
    Policy,
    bounded,
    dp_fields,
    field_kinds,
    grid,
)
from privaflow.streams.noise import cell_key, keyed_noisy_counts, laplace_scale, noisy_counts
from privaflow.streams.tables import ClosedWindow, WindowContext

T0 = 1_767_225_600_000
SECRET = b"a-test-secret-that-is-long-enough!!"
SITE: dict[str, Any] = {
    "site_id": "s", "cameras": [{"id": "c", "source": 0, "classes": ["person", "car"]}],
    "lines": [{"id": "l1", "camera": "c", "points": [[0.5, 0], [0.5, 1]]},
              {"id": "l2", "camera": "c", "points": [[0.2, 0], [0.2, 1]], "directions": ["up", "down"]}],
    "zones": [{"id": "z", "camera": "c", "polygon": [[0.6, 0.6], [1, 0.6], [1, 1]], "capacity": 10}],
    "windows": {"traffic_volume": 60, "occupancy": 60, "grace_s": 11},
    "partners": [{"id": "lab", "tables": ["traffic_volume", "occupancy"],
                  "privacy": {"mechanism": "laplace", "epsilon_per_day": 10.0, "epsilon_per_window": 1.0}}],
}


def site(**over: Any) -> Any:
    return parse_site_config({**SITE, **over}, "<test>")


def tv(dims: tuple[str, ...], tracks: tuple[int, ...], start: int = T0) -> ClosedWindow:
    return ClosedWindow("traffic_volume", "s", dims, start, start + 60_000,
                        {"count": len(tracks), "speed_samples": 0, "speed_objects": 0, "mean_speed_kmh": None,
                         "p85_speed_kmh": None}, tracks, (0,) * len(tracks))


def test_every_partner_field_has_a_kind_the_policy_knows() -> None:
    """The policy reads what a field is from its partner schema; none is left without a rule."""
    known = {"site", "dimension", "window", "window_length", "count", "flag", "statistic", "bin_edges", "bins", "level"}
    for table in ("traffic_volume", "occupancy", "flow_lines", "dwell", "attributes"):
        kinds = field_kinds(table)
        assert set(kinds.values()) <= known, kinds
    assert field_kinds("occupancy")["crowding_level"] == "level"
    assert field_kinds("traffic_volume")["class_name"] == "dimension"
    assert field_kinds("dwell")["bin_counts"] == "bins"


def test_the_dp_grid_comes_from_the_site_config_not_from_what_was_seen() -> None:
    s = site()
    assert grid("traffic_volume", s, "c") == [
        ("l1", "in", "person"), ("l1", "in", "car"), ("l1", "out", "person"), ("l1", "out", "car"),
        ("l2", "up", "person"), ("l2", "up", "car"), ("l2", "down", "person"), ("l2", "down", "car")]
    assert grid("occupancy", s, "c") == [("z",)]
    assert grid("attributes", s, "c") == []  # the camera estimates no attributes
    attrs = grid("attributes", site(cameras=[{"id": "c", "source": 0, "attributes": True}]), "c")
    assert len(attrs) == 3 * 9 * 3 and ("z", "70+", "female") in attrs and ("l1", "unknown", "unknown") in attrs


def test_each_track_adds_at_most_its_bound_to_a_windows_grid() -> None:
    """Rule (d): one track crossing both lines, twice each, counts once with a bound of 1."""
    a, b = tv(("l1", "in", "car"), (7, 8)), tv(("l2", "up", "car"), (7, 9, 7))
    assert bounded([a, None, b], [1, 1, 1], 1) == [[2], [0], [1]]
    assert bounded([a, None, b], [1, 1, 1], 2) == [[2], [0], [2]]


def test_keyed_noise_is_reproducible_per_key_and_has_opendps_distribution() -> None:
    """A re-publication draws the same noise (rule c); a different key, other noise; and the draws have
    the spread of the discrete Laplace at OpenDP's calibrated scale, as OpenDP's own draws do."""
    key = cell_key(SECRET, "lab", "traffic_volume", "1")
    assert keyed_noisy_counts([5] * 50, 1, 0.5, key) == keyed_noisy_counts([5] * 50, 1, 0.5, key)
    assert keyed_noisy_counts([5] * 50, 1, 0.5, key) != keyed_noisy_counts([5] * 50, 1, 0.5, cell_key(SECRET, "x"))
    n, true = 20_000, 100_000
    ours = np.array(keyed_noisy_counts([true] * n, 1, 0.5, key)) - true
    theirs = np.array(noisy_counts([true] * n, 1, 0.5)) - true
    p = math.exp(-1 / laplace_scale(1, 0.5))
    sd, p_zero = math.sqrt(2 * p) / (1 - p), (1 - p) / (1 + p)
    for draws in (ours, theirs):
        assert abs(draws.mean()) < 5 * sd / math.sqrt(n)
        assert draws.std() == pytest.approx(sd, rel=0.06)
        assert np.mean(draws == 0) == pytest.approx(p_zero, abs=5 * math.sqrt(p_zero * (1 - p_zero) / n))
    with pytest.raises(ValueError):
        keyed_noisy_counts([1], 1, 0.5, b"short")


def test_one_more_person_changes_a_release_by_at_most_the_epsilon_ratio() -> None:
    """Rule (d), empirically: over many keys (fresh noise each), the released count of a cell with 0 and
    with 1 person has the same distribution up to a factor e^epsilon (where both are well sampled)."""
    s, ctx = site(), WindowContext.of(site())
    eps, n = 1.0, 6000
    released: dict[int, list[int]] = {0: [], 1: []}
    for i in range(n):
        key = cell_key(SECRET, str(i))
        for people in (0, 1):
            cells = {("l1", "in", "person"): tv(("l1", "in", "person"), tuple(range(people)))}
            rows = dict(dp_fields("traffic_volume", s, "c", cells, eps, 1, key, ctx))
            released[people].append(rows[("l1", "in", "person")]["count"])
    for value in range(0, 3):
        p0 = released[0].count(value) / n
        p1 = released[1].count(value) / n
        assert p0 > 0.05 and p1 > 0.05
        assert p1 / p0 <= math.exp(eps) * 1.15 and p0 / p1 <= math.exp(eps) * 1.15


def _closed_minute(start: int, people: int = 0) -> list[ClosedWindow]:
    occ = ClosedWindow("occupancy", "s", ("z",), start, start + 60_000,
                       {"samples": 600, "mean_present": 0.1 * people, "max_present": people, "p95_present": people,
                        "capacity": 10, "capacity_ratio": people / 10, "crowding_level": "LOW" if people else "EMPTY"},
                       tuple(range(people)), (0,) * people)
    return [occ, *([tv(("l1", "in", "person"), tuple(range(people)), start)] if people else [])]


def test_a_dp_partner_gets_every_window_full_grid_and_spends_its_budget_then_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    """Rules (b), (d): every window of each table is released, zeros included, spending epsilon 1 per
    table window of a daily 10 per camera: five minutes of two tables, then the day's budget is gone,
    the windows after it publish nothing, counted, and the log says so once."""
    policy = Policy(site(), secret=SECRET)
    d = Disclosure(policy, "c")
    released, withheld = [], 0
    d.release([], T0)  # the camera's first records: nothing closes yet
    with caplog.at_level(logging.WARNING, logger="privaflow.streams.disclosure"):
        for minute in range(8):
            start = T0 + minute * 60_000
            out = d.release(_closed_minute(start, people=minute % 2), start + 60_000 + 11_000)
            released += [r for r in out.records if r.topic.startswith("privaflow.partner.dp.")]
            withheld += sum(out.withheld.values())
    tv_topic, occ_topic = dp_topic_name("lab", "traffic_volume"), dp_topic_name("lab", "occupancy")
    windows = {(r.topic, r.value["window_start"]) for r in released}
    assert {w for t, w in windows if t == tv_topic} == {w for t, w in windows if t == occ_topic} == {
        T0 + m * 60_000 for m in range(5)}
    assert len([r for r in released if r.topic == tv_topic]) == 5 * 8  # the whole grid, every window
    assert withheld == 3 * 2
    assert [m for m in caplog.messages if "budget" in m] and len([m for m in caplog.messages if "budget" in m]) == 1
    assert all(r.value["p95_present"] is not None and r.value["mean_present"] is None for r in released
               if r.topic == occ_topic)
    # the ledger and the cursors are state: a restarted worker picks up where it was
    again = Disclosure(policy, "c", d.to_state())
    assert again.ledger.remaining("lab", "2026-01-01") == pytest.approx(0.0)
    assert again.cursors == d.cursors


def test_k_anonymity_partners_and_the_operator_are_unaffected_by_a_dp_partner() -> None:
    """A DP partner gets its own topics; the shared topic and the operator's stay as they are."""
    s = site(partners=[*SITE["partners"], {"id": "city", "k_anonymity": 2, "tables": ["traffic_volume"]}])
    out = Disclosure(Policy(s, secret=SECRET), "c").release(_closed_minute(T0, people=3), T0 + 71_000)
    topics = {r.topic for r in out.records}
    assert {"privaflow.partner.traffic-volume.v2", "privaflow.operator.traffic-volume.v2",
            "privaflow.operator.occupancy.v1"} <= topics
    [shared] = [r for r in out.records if r.topic == "privaflow.partner.traffic-volume.v2"]
    assert shared.value["count"] == 3


def test_a_dp_partner_without_the_noise_secret_stops_the_worker_with_a_clear_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PRIVAFLOW_DP_SECRET", raising=False)
    d = Disclosure(Policy(site()), "c")  # building it needs no secret (config check)
    d.release([], T0)
    with pytest.raises(DisclosureError, match=r"PRIVAFLOW_DP_SECRET must hold at least 32 characters"):
        d.release(_closed_minute(T0), T0 + 71_000)


@pytest.mark.parametrize(("privacy", "message"), [
    ({"mechanism": "laplace"}, "epsilon_per_day: required with mechanism laplace"),
    ({"mechanism": "laplace", "epsilon_per_day": 1, "epsilon_per_window": 2}, "is more than epsilon_per_day"),
    ({"epsilon_per_day": 1}, "only with mechanism laplace"),
    ({"mechanism": "gauss", "epsilon_per_day": 1}, "mechanism"),
    ({"mechanism": "laplace", "epsilon_per_day": -1}, "epsilon_per_day"),
    ({"mechanism": "laplace", "epsilon_per_day": 1, "contributions_per_window": 0}, "contributions_per_window"),
])
def test_a_bad_privacy_block_is_refused_naming_its_field(privacy: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=r"partners\.0\.privacy") as e:
        site(partners=[{"id": "lab", "tables": ["traffic_volume"], "privacy": privacy}])
    assert message in str(e.value)


def test_windows_a_partner_could_tile_into_each_other_must_nest() -> None:
    with pytest.raises(ConfigError, match=r"windows\.attributes: 90 s and windows\.traffic_volume 60 s must be"):
        site(windows={"traffic_volume": 60, "attributes": 90},
             partners=[{"id": "p", "tables": ["traffic_volume", "attributes"]}])
    site(windows={"traffic_volume": 60, "attributes": 900}, partners=[{"id": "p", "tables": ["traffic_volume",
                                                                                              "attributes"]}])


def test_the_operator_token_variable_is_never_a_partners() -> None:
    with pytest.raises(ConfigError, match="a partner's token must never open the operator view"):
        site(operator={"name": "o", "contact": "c", "purpose": "p", "token_env": "PRIVAFLOW_TOKEN_X"},
             partners=[{"id": "p", "tables": ["occupancy"], "token_env": "PRIVAFLOW_TOKEN_X"}])


@pytest.mark.parametrize(("partner", "message"), [
    ({"id": "maps", "k_anonymity": 1, "tables": ["road_conditions"]}, "partners.0.k_anonymity: 1 would publish"),
    ({"id": "maps", "tables": ["road_conditions"], "privacy": {"mechanism": "laplace", "epsilon_per_day": 1}},
     "partners.0.privacy: road_conditions cannot go to a differential-privacy partner"),
])
def test_road_conditions_need_k_of_two_trips_and_no_dp_yet(partner: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        site(partners=[partner])
