"""The dashboard in a real browser against a stand-in server (no Kafka): quick to run, and the place to
check rendering rules (suppressed cells, speeds, floor plan, refresh) without the stack.
Covers G5 (crowding as icons and levels), T5 (congestion shown graphically), T6/T7 (suppressed cells)."""

from __future__ import annotations

import re
from typing import Any

from privaflow.schemas.site import parse_site_config
from tests.dashboard.fake_api import fake_api
from tests.dashboard.reading import SCREENSHOTS, api_reading, assert_page_matches, expected_values, snapshot
from tests.dashboard.sample_site import partner_rows, site_yaml

SITE_ID = "fake-station"


def _site() -> Any:
    import yaml

    return parse_site_config(yaml.safe_load(site_yaml(SITE_ID)), "sample_site")


def _expected(base: str, shown: dict[str, Any]) -> dict[str, Any]:
    api = api_reading(base, SITE_ID, shown)
    return expected_values(api["tables"], api["site"], api["map_rows"])


def test_dashboard_shows_the_api_numbers(page: Any) -> None:
    rows = partner_rows(SITE_ID)
    with fake_api(_site(), rows) as base:
        page.goto(f"{base}/dashboard/?refresh=2")
        page.wait_for_function("document.body.dataset.state === 'ready'", timeout=15000)
        shown = snapshot(page)
        assert_page_matches(shown["values"], _expected(base, shown))

        assert shown["values"]["site-id"]["value"] == SITE_ID
        assert "aggregates only — no images, no identities" in page.inner_text("header")
        # withheld cells read "<5" in grey, never 0
        supp = page.locator("[data-value='suppressed'] > .supp")
        assert supp.count() > 0
        assert set(supp.all_inner_texts()) == {"<5"}
        assert page.locator("[data-value='suppressed'] .supp").first.evaluate(
            "e => getComputedStyle(e).color") == "rgb(138, 143, 152)"
        # speeds exist for cars, so the speed block is shown
        assert page.locator("#speed-block").is_visible()
        # one person pictogram per person present (p95, rounded up), per zone
        for zone in ("gates", "hall", "shop"):
            n = int(shown["values"][f"occ-icons-{zone}"]["value"])
            assert page.locator(f"[data-testid='occ-icons-{zone}'] .person.on").count() == min(n, 40)
        # levels carry a word, not only a colour
        assert page.inner_text("[data-testid='occ-level-gates']") in {"EMPTY", "LOW", "CROWDED", "FULL"}
        # the page keeps refreshing by itself
        page.wait_for_function(f"Number(document.body.dataset.refreshes) > {shown['refreshes']}", timeout=10000)
        assert not page.errors, page.errors  # type: ignore[attr-defined]
        assert not page.outside_requests, page.outside_requests  # type: ignore[attr-defined]
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "dashboard-fake.png"), full_page=True)


def test_floor_plan_and_api_outage(page: Any) -> None:
    with fake_api(_site(), partner_rows(SITE_ID)) as base:
        page.goto(f"{base}/dashboard/?refresh=1&plan=/plan.svg")
        page.wait_for_function("document.body.dataset.state === 'ready'", timeout=15000)
        hrefs = page.eval_on_selector_all(".schematic image", "es => es.map(e => e.getAttribute('href'))")
        assert hrefs and all(h == f"{base}/plan.svg" for h in hrefs)
        assert not page.errors, page.errors  # type: ignore[attr-defined]
    # the server is gone: the page says its numbers are stale instead of going blank
    page.wait_for_function("document.getElementById('health').textContent.startsWith('stale')", timeout=10000)
    assert re.search(r"\d", page.inner_text("[data-testid='last-updated']"))


def test_a_script_url_is_not_used_as_floor_plan(page: Any) -> None:
    with fake_api(_site(), partner_rows(SITE_ID)) as base:
        page.goto(f"{base}/dashboard/?plan=javascript:alert(1)")
        page.wait_for_function("document.body.dataset.state === 'ready'", timeout=15000)
        assert page.locator(".schematic image").count() == 0
