"""The partner API against careless or hostile input (issue 13 finding 8): headers that are not UTF-8,
instants with thousands of digits, one-character tokens, unknown parameters, and tables too large for
one response. No broker needed: the store is filled in memory, the server is the real aiohttp app."""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from click.testing import CliRunner

from privaflow.partner.api import make_app, partner_tokens
from privaflow.partner.store import PartnerStore
from privaflow.schemas.site import ConfigError, parse_site_config
from tests.api.background import BackgroundServer

TOKEN = "city-0123456789abcdef"
OPERATOR = "operator-0123456789abcdef"
T0 = 1_714_550_400_000
SITE = {"site_id": "s", "cameras": [{"id": "c", "source": 0}],
        "partners": [{"id": "city", "tables": ["traffic_volume"], "token_env": "PRIVAFLOW_TOKEN_CITY"}]}


class _MemoryStore(PartnerStore):
    """The partner store without a consumer: rows are put in with `apply`."""

    def start(self) -> None:
        self._ready.set()

    def stop(self, timeout: float = 10.0) -> None:
        pass


def _row(i: int, line: str = "l") -> dict[str, Any]:
    return {"site_id": "s", "line_id": line, "direction": "in", "class_name": "car", "window_start": T0 + i * 60_000,
            "window_end": T0 + (i + 1) * 60_000, "count": 5 + i % 3, "suppressed": False, "mean_speed_kmh": None,
            "p85_speed_kmh": None, "window_length_s": 60}


@pytest.fixture(scope="module")
def server() -> Any:
    site = parse_site_config(SITE)
    store = _MemoryStore("s", "unused:9092", object(), {})  # type: ignore[arg-type]
    for i in range(1250):  # two lines: rows with the same window_start differ by their dimensions
        for line in ("a", "b"):
            store.apply("traffic_volume", f"k{i}{line}", _row(i, line))
    tokens = partner_tokens(site, {"PRIVAFLOW_TOKEN_CITY": TOKEN})
    with BackgroundServer(make_app(site, store, tokens, operator=OPERATOR)) as s:
        yield s


def _get(server: Any, **params: str) -> httpx.Response:
    return httpx.get(f"{server.url}/api/v1/tables/traffic_volume", params=params,
                     headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)


def test_an_authorization_header_that_is_not_utf8_is_a_401_not_a_500(server: Any) -> None:
    host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"GET /api/v1/tables/traffic_volume HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Authorization: Bearer \xff\xfe\xc3\x28token\r\n\r\n")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"malformed token" in answer


@pytest.mark.parametrize("value", ["1" * 5000, "9" * 20, "-" + "9" * 16, "99999-01-01T00:00:00Z", "2024-05-01" * 50,
                                   "253402300800000"])
def test_instants_out_of_range_are_a_400_naming_the_parameter(server: Any, value: str) -> None:
    r = _get(server, **{"from": value})
    assert r.status_code == 400 and r.json()["error"].startswith("from: expected ISO 8601 or epoch milliseconds")
    assert len(r.json()["error"]) < 200, "the value is not echoed in full"
    assert _get(server, to=value).json()["error"].startswith("to: ")


def test_unknown_or_repeated_query_parameters_are_a_400_naming_them(server: Any) -> None:
    r = _get(server, form="2024-05-01T08:00:00Z")  # a typo for `from`: silently ignored, it returned everything
    assert r.status_code == 400
    assert r.json()["error"] == ("unknown query parameter 'form'; expected site, from, to, format, limit, cursor")
    r = httpx.get(f"{server.url}/api/v1/tables/traffic_volume?from=1&from=2",
                  headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 400 and r.json()["error"] == "from: given more than once"
    op = httpx.get(f"{server.url}/api/v1/operator/tables/traffic_volume", params={"format": "csv"},
                   headers={"Authorization": f"Bearer {OPERATOR}"})
    assert op.status_code == 400 and "'format'" in op.json()["error"]


def test_large_tables_come_in_pages_with_a_continuation(server: Any) -> None:
    first = _get(server)
    body = first.json()
    assert len(body["rows"]) == 1000 and body["next"], "1000 rows per page unless asked otherwise"
    assert f'cursor={body["next"]}' in first.headers["link"] and first.headers["link"].endswith('rel="next"')
    seen, page, pages = list(body["rows"]), body, 1
    while page["next"]:
        page = _get(server, cursor=page["next"]).json()
        seen += page["rows"]
        pages += 1
    assert pages == 3 and len(seen) == 2500
    keys = [(r["window_start"], r["line_id"]) for r in seen]
    assert keys == sorted(keys) and len(set(keys)) == 2500, "every row once, in order"

    # the Link header carries the other parameters: following it walks the same filtered table
    frm = "2024-05-01T20:00:00Z"
    url, total = f"{server.url}/api/v1/tables/traffic_volume?from={frm}&limit=333&format=csv", 0
    while url:
        r = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
        total += len(r.text.splitlines()) - 1
        url = server.url + r.headers["link"][1:].split(">")[0] if "link" in r.headers else ""
    assert total == 2 * (1250 - 12 * 60)


@pytest.mark.parametrize("params,error", [
    ({"limit": "0"}, "limit: expected a whole number from 1 to 10000"),
    ({"limit": "10001"}, "limit: expected a whole number from 1 to 10000"),
    ({"limit": "1" * 5000}, "limit: expected a whole number from 1 to 10000"),
    ({"cursor": "not-a-cursor"}, "cursor: not a cursor this API gave out"),
])
def test_bad_page_parameters_are_a_400(server: Any, params: dict[str, str], error: str) -> None:
    r = _get(server, **params)
    assert r.status_code == 400 and r.json()["error"].startswith(error)


def test_tokens_shorter_than_16_characters_are_refused_when_the_server_starts(tmp_path: Any) -> None:
    site = parse_site_config(SITE)
    for token in ("Zq9W", "0123456789abcde", "ünïcode-token-0123456789"):
        with pytest.raises(ConfigError) as e:
            partner_tokens(site, {"PRIVAFLOW_TOKEN_CITY": token})
        assert "partner 'city': the token in $PRIVAFLOW_TOKEN_CITY" in str(e.value) and "at least 16" in str(e.value)
        assert token not in str(e.value), "the message never shows the token"
    assert set(partner_tokens(site, {"PRIVAFLOW_TOKEN_CITY": "0123456789abcdef"})) == {"0123456789abcdef"}

    from privaflow.cli import main

    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump(SITE))
    r = CliRunner().invoke(main, ["api", "serve", "--config", str(cfg), "--port", "0"],
                           env={"PRIVAFLOW_TOKEN_CITY": "x"})
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit)
    assert "error: partner 'city': the token in $PRIVAFLOW_TOKEN_CITY" in r.output
