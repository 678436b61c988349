"""The disclosure policy's parts (streams/disclosure.py, docs/privacy-model.md rules b-d): what each
field is, the DP grid, contribution bounds, OpenDP's noise, the release book (a DP window released
once is released again unchanged), the daily budget and the policy's state.
The attacks on the whole are in tests/privacy/. Covers T6, T7.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest

from privaflow.schemas.site import ConfigError, parse_site_config
from privaflow.schemas.topics import dp_topic_name
from privaflow.streams import disclosure
from privaflow.streams.disclosure import (
    Disclosure,
    Policy,
    bounded,
    dp_fields,
    field_kinds,
    grid,
)
from privaflow.streams.releases import DpRelease, ReleaseBook
from privaflow.streams.tables import ClosedWindow, WindowContext

T0 = 1_767_225_600_000
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


def test_one_more_person_changes_a_release_by_at_most_the_epsilon_ratio() -> None:
    """Rule (d), empirically: over many releases (a fresh OpenDP draw each), the released count of a cell
    with 0 and with 1 person has the same distribution up to a factor e^epsilon (where both are well
    sampled)."""
    s, ctx = site(), WindowContext.of(site())
    eps, n = 1.0, 6000
    released: dict[int, list[int]] = {0: [], 1: []}
    for _ in range(n):
        for people in (0, 1):
            cells = {("l1", "in", "person"): tv(("l1", "in", "person"), tuple(range(people)))}
            rows = dict(dp_fields("traffic_volume", s, "c", cells, eps, 1, ctx))
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
    policy = Policy(site())
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
    out = Disclosure(Policy(s), "c").release(_closed_minute(T0, people=3), T0 + 71_000)
    topics = {r.topic for r in out.records}
    assert {"privaflow.partner.traffic-volume.v2", "privaflow.operator.traffic-volume.v2",
            "privaflow.operator.occupancy.v1"} <= topics
    [shared] = [r for r in out.records if r.topic == "privaflow.partner.traffic-volume.v2"]
    assert shared.value["count"] == 3


def _dp(records: list[Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(r.topic, r.key, r.value) for r in records if r.topic.startswith("privaflow.partner.dp.")]


def test_a_dp_window_in_the_release_book_is_released_again_unchanged_with_no_new_draw(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule (c) in DP mode: the first release of each window is drawn by OpenDP, goes to the outbox and
    spends epsilon; a replay from the checkpointed state with the book read back from the outbox's bytes
    returns exactly the same records, draws nothing (OpenDP is not called) and adds nothing to the
    outbox, while its ledger still counts the epsilon once (the checkpoint predates the release)."""
    policy = Policy(site())
    first = Disclosure(policy, "c")
    first.release([], T0)
    checkpoint = first.to_state()
    closed = _closed_minute(T0, people=3) + _closed_minute(T0 + 60_000, people=1)
    out = first.release(closed, T0 + 120_000 + 11_000)
    assert [(r.table, r.start_ms) for r in out.outbox] == [
        ("traffic_volume", T0), ("traffic_volume", T0 + 60_000), ("occupancy", T0), ("occupancy", T0 + 60_000)]
    assert out.spent == {("lab", "traffic_volume"): 2.0, ("lab", "occupancy"): 2.0}

    book = ReleaseBook("s")
    for release in out.outbox:  # what the publisher wrote to the topic, read back
        book.read(release.value())

    def no_draw(*args: Any) -> list[int]:
        raise AssertionError("a window in the book was drawn again")

    monkeypatch.setattr(disclosure, "noisy_counts", no_draw)
    replay = Disclosure(Policy(site(), book), "c", checkpoint)
    again = replay.release(closed, T0 + 120_000 + 11_000)
    assert _dp(again.records) == _dp(out.records) and len(_dp(out.records)) == 2 * (8 + 1)
    assert again.outbox == [] and again.spent == {}
    assert replay.ledger.remaining("lab", "2026-01-01") == first.ledger.remaining("lab", "2026-01-01")
    assert replay.cursors == first.cursors


def test_a_release_on_the_books_topic_holds_the_partners_noisy_fields_only() -> None:
    """The book's record (streams/releases.py) is the window's released grid: the partner schema's
    fields as released (noisy counts, withheld statistics as null), never a track id or a true count;
    it reads back as the same release."""
    out = Disclosure(Policy(site()), "c").release(_closed_minute(T0, people=4), T0 + 71_000)
    for release in out.outbox:
        assert DpRelease.decode(release.value()) == release
        assert release.key() == f"s|lab|{release.table}|c|{T0}|60000".encode()
        for _dims, fields in release.cells:
            assert set(fields) <= set(field_kinds(release.table)), fields
            assert all(field_kinds(release.table)[f] not in ("dimension", "site", "window") for f in fields)
    [occ] = [r for r in out.outbox if r.table == "occupancy"]
    assert occ.cells[0][1]["mean_present"] is None  # a statistic without a DP mechanism stays withheld


def test_the_release_book_forgets_what_no_replay_can_ask_for() -> None:
    """Like the ledger, the book keeps a camera's releases of the day its next window falls on and of the
    day before (a replay restarts from a checkpointed cursor, never further back)."""
    policy = Policy(site(windows={"traffic_volume": 3600, "occupancy": 3600, "grace_s": 11},
                         partners=[{"id": "lab", "tables": ["occupancy"], "privacy": {
                             "mechanism": "laplace", "epsilon_per_day": 100.0, "epsilon_per_window": 1.0}}]))
    d = Disclosure(policy, "c")
    d.release([], T0)
    hour = 3_600_000
    for h in range(4 * 24):
        d.release([], T0 + (h + 1) * hour + 11_000)
    assert d.cursors["lab"]["occupancy"][0] == T0 + 4 * 24 * hour  # the next window: day 5
    kept = [(hours, policy.book.get(("lab", "occupancy", "c", T0 + hours * hour, hour)) is not None)
            for hours in range(4 * 24)]
    assert [h for h, there in kept if there] == list(range(3 * 24, 4 * 24))  # day 4 kept, days 1 to 3 forgotten


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
