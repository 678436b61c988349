"""The dashboard end to end: operator and partner records on the real broker, `privaflow api serve`
reading them, the page in Debian's chromium signed in with the operator's token, and every number on
the page checked against the API's own answer, in the operator's view and as a partner sees it.
Covers G5 (crowding as icons and levels), T5 (congestion shown graphically: the crowding schematic and
the intersection's congestion map, queues drawn to scale), T1 (congestion per approach), T6/T7
(withheld cells), T8 (the operator view and its token; issue 12).

Leaves screenshots in the test's tmp dir and in .privaflow/screenshots/ (dashboard-operator.png,
dashboard-as-retailer.png, congestion-map.png).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from privaflow.partner.rows import dim_fields
from privaflow.schemas.codec import SchemaRegistry, serde_for_topic
from privaflow.schemas.topics import PARTNER_TABLES, operator_topic_name, partner_topic_name
from tests.dashboard.reading import (
    REPO,
    SCREENSHOTS,
    api_reading,
    assert_page_matches,
    expected_map,
    expected_values,
    snapshot,
)
from tests.dashboard.sample_site import operator_rows, partner_rows, site_yaml

pytestmark = pytest.mark.integration

SERVE = [sys.executable, "-m", "privaflow", "api", "serve"]
# the sample site's tables; road_conditions (vehicle-mounted cameras) has a browser test of its own
TABLES = tuple(t for t in PARTNER_TABLES if t != "road_conditions")
# the fields that, with site and window start, key a partner record (streams/partners.py partner_key)
DIMS = {t: dim_fields(t) for t in TABLES}
LOS_COLOURS = {"A": "#1a9850", "B": "#66bd63", "C": "#a6d96a", "D": "#fdae61", "E": "#f46d43", "F": "#a50026"}


OPERATOR_TOKEN = "dashboard-operator-token-0123456789"


def _produce(stack: Any, rows: dict[str, list[dict[str, Any]]], topic_of: Any = partner_topic_name) -> None:
    from confluent_kafka import Producer

    registry = SchemaRegistry(stack.registry_url)
    producer = Producer({"bootstrap.servers": stack.bootstrap, "enable.idempotence": True})
    failures: list[str] = []
    for table, records in rows.items():
        topic = topic_of(table)
        serde = serde_for_topic(registry, topic)
        for r in records:
            length = str((r["window_end"] - r["window_start"]) // 1000)
            key = "|".join([table, r["site_id"], *(r[f] for f in DIMS[table]), str(r["window_start"]), length])
            producer.produce(topic, key=key.encode(), value=serde.encode(r),
                             on_delivery=lambda err, _m: failures.append(str(err)) if err else None)
        producer.poll(0)
    assert producer.flush(30) == 0, "partner records not delivered within 30 s"
    assert not failures, failures
    registry.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(probe: Any, timeout: float, what: str, proc: subprocess.Popen[bytes], log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"`privaflow api serve` exited with {proc.returncode} while waiting for {what}:\n"
                        f"{log.read_text(errors='replace')[-3000:]}")
        try:
            got = probe()
        except httpx.HTTPError:
            got = None
        if got:
            return got
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; server log:\n"
                f"{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture
def served_site(stack: Any, unique: str, tmp_path: Path) -> Iterator[tuple[str, str, dict[str, list[dict]]]]:
    """A unique site's partner records on the broker and `privaflow api serve` answering for it:
    (base URL, site id, records produced)."""
    site_id = f"dash-{unique}"
    config = tmp_path / "site.yaml"
    text = site_yaml(site_id).replace("  purpose:", "  token_env: PRIVAFLOW_TOKEN_DASHBOARD_OPERATOR\n  purpose:")
    config.write_text(text, encoding="utf-8")
    rows = operator_rows(site_id)
    _produce(stack, rows, operator_topic_name)
    _produce(stack, partner_rows(site_id))

    port = _free_port()
    log = tmp_path / "api.log"
    env = {**os.environ, "PRIVAFLOW_BOOTSTRAP": stack.bootstrap, "PRIVAFLOW_REGISTRY_URL": stack.registry_url,
           "PRIVAFLOW_TOKEN_DASHBOARD_OPERATOR": OPERATOR_TOKEN}
    with log.open("wb") as out:
        proc = subprocess.Popen([*SERVE, "--config", str(config), "--port", str(port)], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=5, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}) as client:
            def all_rows_served() -> bool:
                return all(len(client.get(f"/api/v1/operator/tables/{t}", params={"site": site_id}).json()["rows"])
                           == len(rows[t]) for t in TABLES)

            _wait_for(all_rows_served, 90, "the server to serve every produced record", proc, log)
        yield base, site_id, rows
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_dashboard_shows_what_the_real_api_serves(served_site: tuple[str, str, dict], page: Any,
                                                  tmp_path: Path) -> None:
    base, site_id, produced = served_site
    # no token: the page asks for one and shows no number; the API says 401
    page.goto(f"{base}/dashboard/?refresh=3")
    page.wait_for_function("document.body.dataset.state === 'login'", timeout=30000)
    assert page.locator("[data-testid^='tv-']").count() == 0
    assert httpx.get(f"{base}/api/v1/operator/tables/traffic_volume").status_code == 401

    page.goto(f"{base}/dashboard/?refresh=3#token={OPERATOR_TOKEN}")
    page.wait_for_function("document.body.dataset.state === 'ready'", timeout=30000)
    shown = snapshot(page)

    reading = api_reading(base, site_id, shown, OPERATOR_TOKEN)
    api = reading["tables"]
    # the page shows the last hour; everything produced is in it (the last half hour; the map: 2.5 of its 3 hours)
    assert {t: len(api[t]) for t in TABLES if t != "congestion"} == {
        t: len(produced[t]) for t in TABLES if t != "congestion"}
    assert len(reading["map_rows"]) == len(produced["congestion"])
    assert_page_matches(shown["values"], expected_values(api, reading["site"], reading["map_rows"]))
    assert page.locator("[data-value='suppressed']").count() == 0  # the operator's own numbers
    page.screenshot(path=str(tmp_path / "dashboard-operator.png"), full_page=True)

    assert shown["values"]["site-id"]["value"] == site_id
    assert "aggregates only — no images, no identities" in page.inner_text("header")

    # the switch: as the retailer sees it, from the partner topics
    page.select_option("[data-testid='view']", "retailer")
    page.wait_for_function(f"document.body.dataset.view === 'retailer' && "
                           f"Number(document.body.dataset.refreshes) > {shown['refreshes']}", timeout=30000)
    as_retailer = snapshot(page)
    retailer = api_reading(base, site_id, as_retailer, OPERATOR_TOKEN, "retailer")
    assert_page_matches(as_retailer["values"], expected_values(retailer["tables"], retailer["site"],
                                                               retailer["map_rows"]))
    # k-anonymised cells: shown as "<5" in grey, never as 0
    withheld = page.locator("[data-value='suppressed'] > .supp")
    assert withheld.count() > 0
    assert set(withheld.all_inner_texts()) == {"<5"}
    page.screenshot(path=str(tmp_path / "dashboard-as-retailer.png"), full_page=True)
    page.select_option("[data-testid='view']", "")
    page.wait_for_function("document.body.dataset.view === 'operator'", timeout=30000)
    shown = snapshot(page)
    # station crowding (G5): a level word on every zone, one pictogram per person present
    for zone in ("gates", "hall", "shop"):
        assert shown["values"][f"occ-level-{zone}"]["text"] in {"EMPTY", "LOW", "CROWDED", "FULL"}
        n = int(shown["values"][f"occ-icons-{zone}"]["value"])
        assert page.locator(f"[data-testid='occ-icons-{zone}'] .person.on").count() == min(n, 40)
    # congestion drawn (T5): every zone is a coloured polygon on the schematics (the concourse's three,
    # the street's two lane zones)
    assert page.locator(".schematic polygon").count() == 5
    assert page.locator("canvas").count() >= 5
    # it keeps itself current
    page.wait_for_function(f"Number(document.body.dataset.refreshes) > {shown['refreshes']}", timeout=15000)
    assert not page.errors, page.errors  # type: ignore[attr-defined]
    assert not page.outside_requests, page.outside_requests  # type: ignore[attr-defined]

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name in ("dashboard-operator.png", "dashboard-as-retailer.png"):
        (SCREENSHOTS / name).write_bytes((tmp_path / name).read_bytes())
    print(f"screenshots: {tmp_path / 'dashboard-operator.png'}, {tmp_path / 'dashboard-as-retailer.png'}")


def test_congestion_map_shows_the_api_numbers_at_every_slider_position(
        served_site: tuple[str, str, dict], page: Any, tmp_path: Path) -> None:
    """Covers T1, T5 (congestion shown graphically per approach), T6 (a level from fewer than k vehicles
    is withheld): the slider walks the congestion windows of the last three hours; at each position the
    map's level, queue, speed, delay and vehicles per approach equal the API's row for that window, the
    lane is drawn in its level's colour, and the queue bar's length is the queue in metres at the map's
    scale."""
    base, site_id, produced = served_site
    # as the city sees it: a level from fewer than k vehicles is withheld there (the operator sees them all)
    page.goto(f"{base}/dashboard/?refresh=120&minutes=30&hours=3&as=city#token={OPERATOR_TOKEN}")
    page.wait_for_function("document.body.dataset.state === 'ready'", timeout=30000)
    shown = snapshot(page)
    assert shown["map"], "the page shows no congestion map for a site with an intersection"
    reading = api_reading(base, site_id, shown, OPERATOR_TOKEN, "city")
    site, rows = reading["site"], reading["map_rows"]
    starts = sorted({r["window_start"] for r in rows})
    # two and a half hours of one-minute windows, all inside the slider's three
    assert len(starts) == len({r["window_start"] for r in produced["congestion"]}) == 150
    slider = page.locator("#cg-slider")
    assert slider.get_attribute("max") == str(len(starts) - 1) and slider.input_value() == str(len(starts) - 1)

    def published(start: str) -> int:
        return sum(1 for r in rows if r["window_start"] == start and not r["suppressed"])

    longest = max(starts, key=lambda s: (published(s), max((r["queue_length_m"] or 0) for r in rows
                                                           if r["window_start"] == s)))
    withheld = next(s for s in starts if any(r["suppressed"] for r in rows if r["window_start"] == s))
    positions = sorted({0, len(starts) // 3, starts.index(withheld), starts.index(longest), len(starts) - 1})
    for i in positions:
        slider.fill(str(i))
        page.wait_for_function(f"document.getElementById('cg-window').dataset.value === {starts[i]!r}")
        now = snapshot(page)
        want = expected_map(site, rows, starts[i])
        assert_page_matches({k: v for k, v in now["values"].items() if k.startswith("cg-")}, want)
        at = {r["approach_id"]: r for r in rows if r["window_start"] == starts[i]}
        for a in site["intersections"][0]["approaches"]:
            key, r = f"forecourt-{a['id']}", at.get(a["id"])
            lane = page.locator(f"[data-testid='cg-lane-px-{key}']")
            bar = page.locator(f"[data-testid='cg-queue-px-{key}']")
            scale = float(bar.get_attribute("data-scale") or "nan")
            drawn = float(bar.get_attribute("width") or "nan")
            if r is not None and not r["suppressed"]:
                assert lane.get_attribute("fill") == LOS_COLOURS[r["level_of_service"]]
                assert drawn == pytest.approx(r["queue_length_m"] * scale, abs=1e-6)  # to scale
            else:
                assert lane.get_attribute("fill") == "#b4b9c1" and drawn == 0  # no level, no queue
        # the scale bar states the same scale the bars are drawn at
        assert float(page.locator("[data-testid='cg-scale-forecourt']").get_attribute("data-value") or 0) == \
            pytest.approx(scale)
    # moved off the right end, the map stays on the chosen window when the page refreshes
    slider.fill(str(starts.index(longest)))
    page.wait_for_function(f"document.getElementById('cg-window').dataset.value === {longest!r}")
    refreshes = snapshot(page)["refreshes"]
    page.evaluate("refresh()")  # one more refresh now rather than in two minutes
    page.wait_for_function(f"Number(document.body.dataset.refreshes) > {refreshes}", timeout=15000)
    assert page.locator("#cg-window").get_attribute("data-value") == longest
    assert not page.errors, page.errors  # type: ignore[attr-defined]
    assert not page.outside_requests, page.outside_requests  # type: ignore[attr-defined]

    section = page.locator("#sec-intersection")
    section.screenshot(path=str(tmp_path / "congestion-map.png"))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    section.screenshot(path=str(SCREENSHOTS / "congestion-map.png"))
    assert (tmp_path / "congestion-map.png").stat().st_size > 10_000
