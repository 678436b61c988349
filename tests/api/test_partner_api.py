"""The partner HTTP API against the real broker and registry: records produced with our codec into
the real partner topics come back over HTTP, as JSON and CSV, only to the partner allowed to see
them (T7, T8: bearer token per partner)."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import jsonschema
import pytest
import yaml

from privaflow.partner.api import make_app
from privaflow.partner.store import PartnerStore
from privaflow.schemas.site import parse_site_config
from privaflow.schemas.topics import operator_topic_name
from tests.api.background import BackgroundServer

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CITY_TOKEN = "city-" + uuid.uuid4().hex
RETAILER_TOKEN = "retailer-" + uuid.uuid4().hex
OPERATOR_TOKEN = "operator-" + uuid.uuid4().hex
AVSC = REPO / "schemas" / "avro"


def iso(kit, w: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp((kit.T0 + w * kit.WINDOW_MS) / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def expected_traffic(kit, site_id: str) -> list[dict]:
    """What the city must see, in order (window_start, then line, direction, class)."""
    def row(w, direction, cls, count, speed=None):
        return {"site_id": site_id, "line_id": "stop-line", "direction": direction, "class_name": cls,
                "window_start": iso(kit, w), "window_end": iso(kit, w + 1), "count": count,
                "suppressed": count is None, "mean_speed_kmh": speed,
                "p85_speed_kmh": None if speed is None else speed + 5, "window_length_s": 60}
    return [row(0, "northbound", "bus", None), row(0, "northbound", "car", 12, 31.5),
            row(0, "southbound", "car", 7), row(1, "northbound", "car", 9), row(2, "southbound", "truck", 6)]


@pytest.fixture(scope="module")
def served(stack, kit, produce_partner):
    """One site with a few rows in every table it shares, served in-process on a free port."""
    site_id = f"test-api-{uuid.uuid4().hex[:8]}"
    tv = kit.traffic
    dims = lambda r: (r["line_id"], r["direction"], r["class_name"])  # noqa: E731
    items = []
    # out of order on purpose; w1's count is republished (the newer value must win)
    for r in (tv(site_id, 2, "stop-line", "southbound", "truck", 6),
              tv(site_id, 1, "stop-line", "northbound", "car", 3),
              tv(site_id, 0, "stop-line", "southbound", "car", 7),
              tv(site_id, 0, "stop-line", "northbound", "car", 12, 31.5),
              tv(site_id, 0, "stop-line", "northbound", "bus", None),
              tv(site_id, 1, "stop-line", "northbound", "car", 9),
              tv(f"other-{site_id}", 0, "stop-line", "northbound", "car", 99)):
        items.append(("traffic_volume", kit.key("traffic_volume", r, dims(r)), r))
    occ = {"site_id": site_id, "zone_id": "queue", "window_start": kit.T0, "window_end": kit.T0 + kit.WINDOW_MS,
           "mean_present": 2.2, "max_present": 4, "p95_present": 3.5, "capacity_ratio": 0.29,
           "crowding_level": "LOW", "samples": 600, "window_length_s": 60}
    dwell = {"site_id": site_id, "zone_id": "lobby", "window_start": kit.T0, "window_end": kit.T0 + 300_000,
             "bin_upper_s": [5.0, 15.0, float("inf")], "bin_counts": [12, None, 0], "suppressed": True,
             "median_dwell_s": 4.5, "window_length_s": 300}
    attrs = {"site_id": site_id, "place_id": "door", "age_bracket": "age_20_29", "gender": "female",
             "window_start": kit.T0, "window_end": kit.T0 + 900_000, "count": 11, "suppressed": False,
             "window_length_s": 900}
    items += [("occupancy", kit.key("occupancy", occ, ("queue",)), occ),
              ("dwell", kit.key("dwell", dwell, ("lobby",)), dwell),
              ("attributes", kit.key("attributes", attrs, ("door", "age_20_29", "female")), attrs)]
    produce_partner(items)
    # the operator's own tables: the same windows without suppression
    operator_rows = [tv(site_id, 0, "stop-line", "northbound", "bus", 2), tv(site_id, 0, "stop-line", "northbound",
                                                                              "car", 12, 31.5)]
    produce_partner([("traffic_volume", kit.key("traffic_volume", r, dims(r)), r) for r in operator_rows],
                    operator_topic_name)

    site = parse_site_config(kit.site_dict(site_id))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(kit.token_env("city", site_id), CITY_TOKEN)
        mp.setenv(kit.token_env("retailer", site_id), RETAILER_TOKEN)
        mp.setenv(kit.token_env("operator", site_id), OPERATOR_TOKEN)
        store = PartnerStore(site_id, stack.bootstrap, kafka_config={})
        app = make_app(site, store)  # tokens read from the environment, as `api serve` does
    with BackgroundServer(app) as server:
        client = httpx.Client(base_url=server.url, timeout=10)
        kit.wait_for(lambda: client.get("/healthz").status_code == 200, 60, "the API to read the partner topics")
        # produced before the server started, so "ready" means they are all in; check anyway
        kit.wait_for(lambda: len(get(client, "traffic_volume", CITY_TOKEN).json()["rows"]) == 5, 30,
                     "five traffic rows")
        yield server, client, site_id
        client.close()


def get(client: httpx.Client, table: str, token: str | None, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get(f"/api/v1/tables/{table}", params=params, headers=headers)


def test_a_partner_reads_its_table_as_json_sorted_latest_value_per_key(served, kit) -> None:
    _, client, site_id = served
    r = get(client, "traffic_volume", CITY_TOKEN)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"table", "rows", "next"} and body["table"] == "traffic_volume" and body["next"] is None
    assert body["rows"] == expected_traffic(kit, site_id)  # exactly the Avro fields; no other site's rows


def test_csv_has_a_header_and_the_same_rows(served, kit) -> None:
    _, client, site_id = served
    r = get(client, "traffic_volume", CITY_TOKEN, format="csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    reader = csv.DictReader(io.StringIO(r.text))
    avsc = json.loads((AVSC / "partner_traffic_volume.avsc").read_text())
    assert reader.fieldnames == [f["name"] for f in avsc["fields"]]
    rows = list(reader)
    want = expected_traffic(kit, site_id)
    assert len(rows) == len(want)
    for got, exp in zip(rows, want, strict=True):
        assert got["window_start"] == exp["window_start"] and got["class_name"] == exp["class_name"]
        assert got["count"] == ("" if exp["count"] is None else str(exp["count"]))
        assert got["suppressed"] == ("true" if exp["suppressed"] else "false")
        assert got["mean_speed_kmh"] == ("" if exp["mean_speed_kmh"] is None else str(exp["mean_speed_kmh"]))


def test_dwell_arrays_and_the_retailers_tables(served, kit) -> None:
    _, client, site_id = served
    rows = get(client, "dwell", RETAILER_TOKEN).json()["rows"]
    assert rows == [{"site_id": site_id, "zone_id": "lobby", "window_start": iso(kit, 0),
                     "window_end": iso(kit, 5), "bin_upper_s": [5.0, 15.0, None],
                     "bin_counts": [12, None, 0], "suppressed": True, "median_dwell_s": 4.5,
                     "window_length_s": 300}]
    line = get(client, "dwell", RETAILER_TOKEN, format="csv").text.splitlines()[1]
    assert '"[12,null,0]"' in line
    attrs = get(client, "attributes", RETAILER_TOKEN).json()["rows"]
    assert [(a["place_id"], a["age_bracket"], a["gender"], a["count"]) for a in attrs] == [("door", "age_20_29",
                                                                                         "female", 11)]


def test_time_range_filters_on_window_start(served, kit) -> None:
    _, client, _ = served
    want = expected_traffic(kit, served[2])
    r = get(client, "traffic_volume", CITY_TOKEN, **{"from": iso(kit, 1), "to": str(kit.T0 + 2 * kit.WINDOW_MS)})
    assert r.json()["rows"] == [want[3]]  # from inclusive (ISO), to exclusive (epoch ms)
    r = get(client, "traffic_volume", CITY_TOKEN, **{"from": "2024-05-01T08:01:00"})  # no offset: UTC
    assert [x["window_start"] for x in r.json()["rows"]] == [iso(kit, 1), iso(kit, 2)]
    r = get(client, "traffic_volume", CITY_TOKEN, **{"from": "2024-05-01T17:01:00+09:00", "to": iso(kit, 2)})
    assert r.json()["rows"] == [want[3]]  # 17:01 JST is 08:01 UTC
    assert get(client, "traffic_volume", CITY_TOKEN, to=str(kit.T0)).json()["rows"] == []
    bad = get(client, "traffic_volume", CITY_TOKEN, **{"from": "yesterday"})
    assert bad.status_code == 400 and "from" in bad.json()["error"]


def test_tokens_decide_who_sees_what(served) -> None:
    _, client, site_id = served
    missing = get(client, "traffic_volume", None)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = get(client, "traffic_volume", "not-a-token")
    assert wrong.status_code == 401 and "invalid_token" in wrong.headers["WWW-Authenticate"]
    basic = client.get("/api/v1/tables/traffic_volume", headers={"Authorization": "Basic Y2l0eTpjaXR5"})
    assert basic.status_code == 401
    assert get(client, "dwell", CITY_TOKEN).status_code == 403  # the retailer's table
    assert get(client, "traffic_volume", RETAILER_TOKEN).status_code == 403
    assert get(client, "occupancy", CITY_TOKEN).json()["rows"][0]["crowding_level"] == "LOW"
    assert get(client, "no_such_table", CITY_TOKEN).status_code == 404
    assert get(client, "traffic_volume", CITY_TOKEN, site="elsewhere").status_code == 404
    assert get(client, "traffic_volume", CITY_TOKEN, site=site_id).status_code == 200
    assert get(client, "traffic_volume", CITY_TOKEN, format="xml").status_code == 400


def test_openapi_document_is_valid_and_describes_the_rows(served) -> None:
    _, client, _ = served
    doc = client.get("/api/v1/openapi.json").json()
    try:
        from openapi_spec_validator import validate
    except ImportError:
        validate = None
    if validate is not None:
        validate(doc)
    assert doc["openapi"].startswith("3.1.") and doc["info"]["title"] and doc["info"]["version"]
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        **doc["components"]["securitySchemes"]["bearerAuth"], "type": "http", "scheme": "bearer"}
    op = doc["paths"]["/api/v1/tables/{table}"]["get"]
    assert {"200", "401", "403", "404"} <= set(op["responses"])
    assert {"application/json", "text/csv"} <= set(op["responses"]["200"]["content"])
    assert {p["name"] for p in op["parameters"]} == {"table", "site", "from", "to", "format", "limit", "cursor"}
    for path in ("/healthz", "/api/v1/openapi.json", "/api/v1/operator/tables/{table}", "/api/v1/operator/site"):
        assert "get" in doc["paths"][path] and doc["paths"][path]["get"]["responses"]

    schemas = doc["components"]["schemas"]
    refs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(doc)
    for ref in refs:
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    for name, schema in schemas.items():
        jsonschema.Draft202012Validator.check_schema(schema), name

    # row schemas are the .avsc files: same field names, same order, all required
    for stem, name in (("partner_traffic_volume", "TrafficVolume"), ("partner_dwell", "Dwell"),
                       ("partner_occupancy", "Occupancy"), ("partner_attributes", "Attributes"),
                       ("partner_flow_lines", "FlowLine")):
        fields = [f["name"] for f in json.loads((AVSC / f"{stem}.avsc").read_text())["fields"]]
        assert list(schemas[name]["properties"]) == fields and schemas[name]["required"] == fields


def test_served_rows_validate_against_the_published_schemas(served) -> None:
    _, client, _ = served
    doc = client.get("/api/v1/openapi.json").json()
    from referencing import Registry, Resource

    registry = Registry().with_resource("urn:privaflow:openapi", Resource.from_contents(
        {"$schema": "https://json-schema.org/draft/2020-12/schema", **doc}))
    for table, token in (("traffic_volume", CITY_TOKEN), ("occupancy", CITY_TOKEN), ("dwell", RETAILER_TOKEN),
                         ("attributes", RETAILER_TOKEN)):
        body = get(client, table, token).json()
        resp = doc["paths"]["/api/v1/tables/{table}"]["get"]["responses"]["200"]["content"]["application/json"]
        validator = jsonschema.Draft202012Validator(
            {"$ref": "urn:privaflow:openapi#/paths/~1api~1v1~1tables~1{table}/get/responses/200/content/"
                     "application~1json/schema"}, registry=registry)
        assert resp["schema"]["oneOf"]
        validator.validate(body)
        assert body["rows"]


def test_operator_endpoints_want_the_operator_token_and_show_no_secrets(served, kit) -> None:
    """Issue 12: the operator view shows unsuppressed aggregates, so no token is a 401 and a partner's
    token a 403; with the operator's token, the operator topics, or with `as` what one partner gets."""
    _, client, site_id = served
    for path in ("/api/v1/operator/tables/traffic_volume", "/api/v1/operator/site"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer not-the-operator-token"}).status_code == 401
        for partner_token in (CITY_TOKEN, RETAILER_TOKEN):
            assert client.get(path, headers={"Authorization": f"Bearer {partner_token}"}).status_code == 403
    client.headers["Authorization"] = f"Bearer {OPERATOR_TOKEN}"
    r = client.get("/api/v1/operator/tables/traffic_volume")
    assert r.status_code == 200
    assert [(row["class_name"], row["count"]) for row in r.json()["rows"]] == [("bus", 2), ("car", 12)]
    assert r.json()["view"] == "operator" and r.json()["shared"] is True
    as_city = client.get("/api/v1/operator/tables/traffic_volume", params={"as": "city"}).json()
    assert as_city == {"table": "traffic_volume", "view": "city", "shared": True,
                       "rows": expected_traffic(kit, site_id), "next": None}
    as_press = client.get("/api/v1/operator/tables/traffic_volume", params={"as": "press"}).json()
    assert (as_press["shared"], as_press["rows"]) == (False, [])  # the press does not receive it
    assert client.get("/api/v1/operator/tables/traffic_volume", params={"as": "nobody"}).status_code == 404
    dwell = client.get("/api/v1/operator/tables/dwell", params={"as": "retailer"}).json()
    assert dwell["rows"][0]["zone_id"] == "lobby"
    assert client.get("/api/v1/operator/tables/nope").status_code == 404
    site = client.get("/api/v1/operator/site").json()
    assert site["site_id"] == site_id and site["cameras"] == ["north", "hall"]
    assert site["lines"][0] == {"id": "stop-line", "camera": "north", "points": [[0.1, 0.5], [0.9, 0.5]],
                                "directions": ["northbound", "southbound"]}
    assert site["zones"][0]["polygon"] == [[0.1, 0.3], [0.9, 0.3], [0.9, 0.7]] and site["zones"][0]["capacity"] == 12
    assert [(p["id"], p["tables"]) for p in site["partners"]] == [
        ("city", ["traffic_volume", "occupancy"]), ("retailer", ["dwell", "attributes"]), ("press", ["occupancy"])]
    text = client.get("/api/v1/operator/site").text
    del client.headers["Authorization"]
    for secret in (CITY_TOKEN, RETAILER_TOKEN, OPERATOR_TOKEN, "token_env", "PRIVAFLOW_TOKEN_TEST", "rtsp://"):
        assert secret not in text


def test_new_records_and_tombstones_reach_a_running_server(served, kit, produce_partner) -> None:
    _, client, site_id = served
    new = kit.traffic(site_id, 3, "stop-line", "northbound", "car", 8)
    gone = kit.traffic(site_id, 2, "stop-line", "southbound", "truck", 6)
    produce_partner([("traffic_volume", kit.key("traffic_volume", new, ("stop-line", "northbound", "car")), new),
                     ("traffic_volume", kit.key("traffic_volume", gone, ("stop-line", "southbound", "truck")), None)])

    def windows() -> list[str] | None:
        rows = get(client, "traffic_volume", CITY_TOKEN, **{"from": iso(kit, 2)}).json()["rows"]
        return [r["window_start"] for r in rows] if [r["count"] for r in rows] == [8] else None
    assert kit.wait_for(windows, 30, "the new window to appear and the tombstoned one to go") == [iso(kit, 3)]


def test_health_reports_ready_and_row_counts(served) -> None:
    _, client, site_id = served
    h = client.get("/healthz").json()
    assert h["status"] == "ok" and h["ready"] is True and h["site_id"] == site_id
    assert h["rows"]["dwell"] == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_command_reads_tokens_from_the_environment(stack, kit, produce_partner, tmp_path) -> None:
    """`api serve` as a process: config file, token from the env var named by token_env, --port."""
    site_id = f"test-serve-{uuid.uuid4().hex[:8]}"
    r = kit.traffic(site_id, 0, "stop-line", "northbound", "car", 5)
    produce_partner([("traffic_volume", kit.key("traffic_volume", r, ("stop-line", "northbound", "car")), r)])
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump(kit.site_dict(site_id)))
    port = _free_port()
    env = {**os.environ, kit.token_env("city", site_id): "s3cret-s3cret-s3cret", "PRIVAFLOW_BOOTSTRAP": stack.bootstrap,
           "PRIVAFLOW_REGISTRY_URL": stack.registry_url}
    proc = subprocess.Popen([sys.executable, "-c", "from privaflow.partner.api import api; api()", "serve",
                             "--config", str(cfg), "--port", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"

        def rows() -> list | None:
            try:
                resp = httpx.get(f"{url}/api/v1/tables/traffic_volume",
                                 headers={"Authorization": "Bearer s3cret-s3cret-s3cret"})
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                return None
            return resp.json()["rows"] if resp.status_code == 200 and resp.json()["rows"] else None
        got = kit.wait_for(rows, 60, "api serve to answer with the produced row")
        assert [(x["site_id"], x["count"]) for x in got] == [(site_id, 5)]
        assert httpx.get(f"{url}/", follow_redirects=False).headers["location"] == "/dashboard/"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "retailer: no HTTP access" in out and "press: no HTTP access (no token_env" in out
    assert "s3cret" not in out
