"""The dashboard end to end: operator and partner records on the real broker, `privaflow api serve`
reading them, the page in Debian's chromium signed in with the operator's token, and every number on
the page checked against the API's own answer, in the operator's view and as a partner sees it.
Covers G5 (crowding as icons and levels), T5 (congestion shown graphically), T6/T7 (withheld cells),
T8 (the operator view and its token; issue 12).

Leaves screenshots of both views in the test's tmp dir (dashboard-operator.png, dashboard-as-retailer.png)
and a copy in .privaflow/screenshots/.
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

from privaflow.schemas.codec import SchemaRegistry, serde_for_topic
from privaflow.schemas.topics import operator_topic_name, partner_topic_name
from tests.dashboard.reading import REPO, SCREENSHOTS, assert_page_matches, expected_values, snapshot
from tests.dashboard.sample_site import operator_rows, partner_rows, site_yaml

pytestmark = pytest.mark.integration

SERVE = [sys.executable, "-m", "privaflow", "api", "serve"]
TABLES = ("traffic_volume", "occupancy", "flow_lines", "dwell", "attributes")
# the fields that, with site and window start, key a partner record (streams/partners.py partner_key)
DIMS = {"traffic_volume": ("line_id", "direction", "class_name"), "occupancy": ("zone_id",),
        "flow_lines": ("origin_zone_id", "destination_zone_id"), "dwell": ("zone_id",),
        "attributes": ("place_id", "age_bracket", "gender")}


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


def _api_tables(base: str, site_id: str, shown: dict[str, Any], view: str | None = None
                ) -> dict[str, list[dict[str, Any]]]:
    """The API's answer for exactly the period the page fetched, in the page's view."""
    q = {"site": site_id, "from": shown["from"], "to": shown["to"], **({"as": view} if view else {})}
    out = {}
    with httpx.Client(base_url=base, timeout=10, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}) as client:
        for t in TABLES:
            r = client.get(f"/api/v1/operator/tables/{t}", params=q)
            r.raise_for_status()
            if r.json()["shared"]:
                out[t] = r.json()["rows"]
    return out


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

    api = _api_tables(base, site_id, shown)
    # the page shows the last hour; everything produced (the last half hour) is in it
    assert {t: len(api[t]) for t in TABLES} == {t: len(produced[t]) for t in TABLES}
    assert_page_matches(shown["values"], expected_values(api))
    assert page.locator("[data-value='suppressed']").count() == 0  # the operator's own numbers
    page.screenshot(path=str(tmp_path / "dashboard-operator.png"), full_page=True)

    assert shown["values"]["site-id"]["value"] == site_id
    assert "aggregates only — no images, no identities" in page.inner_text("header")

    # the switch: as the retailer sees it, from the partner topics
    page.select_option("[data-testid='view']", "retailer")
    page.wait_for_function(f"document.body.dataset.view === 'retailer' && "
                           f"Number(document.body.dataset.refreshes) > {shown['refreshes']}", timeout=30000)
    as_retailer = snapshot(page)
    assert_page_matches(as_retailer["values"], expected_values(_api_tables(base, site_id, as_retailer, "retailer")))
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
    # congestion drawn (T5): every zone of the concourse is a coloured polygon on the schematic
    assert page.locator(".schematic polygon").count() == 3
    assert page.locator("canvas").count() >= 5
    # it keeps itself current
    page.wait_for_function(f"Number(document.body.dataset.refreshes) > {shown['refreshes']}", timeout=15000)
    assert not page.errors, page.errors  # type: ignore[attr-defined]
    assert not page.outside_requests, page.outside_requests  # type: ignore[attr-defined]

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name in ("dashboard-operator.png", "dashboard-as-retailer.png"):
        (SCREENSHOTS / name).write_bytes((tmp_path / name).read_bytes())
    print(f"screenshots: {tmp_path / 'dashboard-operator.png'}, {tmp_path / 'dashboard-as-retailer.png'}")
