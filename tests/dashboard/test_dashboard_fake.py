"""The dashboard in a real browser against a stand-in server (no Kafka): quick to run, and the place to
check rendering rules (the operator's sign-in and view, the partner switch, suppressed cells, speeds,
floor plan, refresh) without the stack.
Covers G5 (crowding as icons and levels), T5 (congestion shown graphically), T6/T7 (suppressed cells),
T8 (the operator view wants the operator's token; issue 12)."""

from __future__ import annotations

import re
from typing import Any

from privaflow.schemas.site import parse_site_config
from tests.dashboard.fake_api import TOKEN, fake_api
from tests.dashboard.reading import SCREENSHOTS, api_reading, assert_page_matches, expected_values, snapshot
from tests.dashboard.sample_site import operator_rows, partner_rows, site_yaml

SITE_ID = "fake-station"


def _site() -> Any:
    import yaml

    return parse_site_config(yaml.safe_load(site_yaml(SITE_ID)), "sample_site")


def _expected(base: str, shown: dict[str, Any], view: str | None = None) -> dict[str, Any]:
    api = api_reading(base, SITE_ID, shown, TOKEN, view)
    return expected_values(api["tables"], api["site"], api["map_rows"])


def test_the_operator_view_wants_the_operators_token(page: Any) -> None:
    """Issue 12: no token, a sign-in form and no numbers; a wrong token, the form again with why; the
    operator's token, the dashboard."""
    with fake_api(_site(), operator_rows(SITE_ID), partner_rows(SITE_ID)) as base:
        page.goto(f"{base}/dashboard/?refresh=2")
        page.wait_for_function("document.body.dataset.state === 'login'", timeout=15000)
        assert page.locator("#login").is_visible() and not page.locator("main").is_visible()
        assert page.locator("[data-testid^='tv-']").count() == 0
        page.fill("#token", "a-partner-token-is-not-enough")
        page.click("#login-form button")
        page.wait_for_function("document.getElementById('login-error').textContent.includes('unknown token')",
                               timeout=15000)
        page.fill("#token", TOKEN)
        page.click("#login-form button")
        page.wait_for_function("document.body.dataset.state === 'ready'", timeout=15000)
        assert not page.locator("#login").is_visible()
        assert "operator view" in page.inner_text("[data-testid='view-note']")
        # the token stays out of the address bar and the page's markup
        assert TOKEN not in page.url and TOKEN not in page.content()


def test_dashboard_shows_the_api_numbers_and_switches_to_a_partners_view(page: Any) -> None:
    with fake_api(_site(), operator_rows(SITE_ID), partner_rows(SITE_ID)) as base:
        page.goto(f"{base}/dashboard/?refresh=2#token={TOKEN}")
        page.wait_for_function("document.body.dataset.state === 'ready'", timeout=15000)
        assert TOKEN not in page.url  # read from the fragment, then dropped from the address bar
        shown = snapshot(page)
        assert_page_matches(shown["values"], _expected(base, shown))
        assert page.locator("[data-value='suppressed']").count() == 0  # the operator's numbers: nothing withheld

        assert shown["values"]["site-id"]["value"] == SITE_ID
        assert "aggregates only — no images, no identities" in page.inner_text("header")

        # as the retailer sees it: its tables only, withheld cells read "<5" in grey, never 0
        page.select_option("[data-testid='view']", "retailer")
        page.wait_for_function(f"document.body.dataset.view === 'retailer' && "
                               f"Number(document.body.dataset.refreshes) > {shown['refreshes']}", timeout=15000)
        as_retailer = snapshot(page)
        assert_page_matches(as_retailer["values"], _expected(base, as_retailer, "retailer"))
        assert "as retailer sees it" in page.inner_text("[data-testid='view-note']")
        assert page.locator("#sec-traffic").is_hidden()  # the retailer does not receive traffic volumes
        supp = page.locator("[data-value='suppressed'] > .supp")
        assert supp.count() > 0
        assert set(supp.all_inner_texts()) == {"<5"}
        assert page.locator("[data-value='suppressed'] .supp").first.evaluate(
            "e => getComputedStyle(e).color") == "rgb(138, 143, 152)"
        assert "as=retailer" in page.url
        page.select_option("[data-testid='view']", "")
        # the view's name changes at once; its numbers with the next refresh
        page.wait_for_function(f"document.body.dataset.view === 'operator' && "
                               f"Number(document.body.dataset.refreshes) > {as_retailer['refreshes']}", timeout=15000)
        shown = snapshot(page)
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
        page.goto(f"{base}/dashboard/?refresh=1&plan=/plan.svg#token={TOKEN}")
        page.wait_for_function("document.body.dataset.state === 'ready'", timeout=15000)
        hrefs = page.eval_on_selector_all(".schematic image", "es => es.map(e => e.getAttribute('href'))")
        assert hrefs and all(h == f"{base}/plan.svg" for h in hrefs)
        assert not page.errors, page.errors  # type: ignore[attr-defined]
    # the server is gone: the page says its numbers are stale instead of going blank
    page.wait_for_function("document.getElementById('health').textContent.startsWith('stale')", timeout=10000)
    assert re.search(r"\d", page.inner_text("[data-testid='last-updated']"))


def test_a_script_url_is_not_used_as_floor_plan(page: Any) -> None:
    with fake_api(_site(), partner_rows(SITE_ID)) as base:
        page.goto(f"{base}/dashboard/?plan=javascript:alert(1)#token={TOKEN}")
        page.wait_for_function("document.body.dataset.state === 'ready'", timeout=15000)
        assert page.locator(".schematic image").count() == 0
