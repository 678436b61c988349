"""The Avro contract: every field documented, identifying fields marked, partner schemas clean."""

from __future__ import annotations

import copy
import json

import fastavro
import pytest

from privaflow.schemas.codec import load_schema, schema_names
from privaflow.schemas.privacy import assert_partner_schemas_clean, partner_schema_violations
from privaflow.schemas.topics import PARTNER_TABLES, all_topics, partner_topic_name


def _fields(node: object):
    if isinstance(node, dict):
        if node.get("type") == "record":
            for f in node["fields"]:
                yield node["name"], f
                yield from _fields(f["type"])
        elif node.get("type") == "array":
            yield from _fields(node["items"])
    elif isinstance(node, list):
        for b in node:
            yield from _fields(b)


@pytest.mark.parametrize("name", schema_names())
def test_every_schema_parses_and_documents_every_field(name: str) -> None:
    schema = load_schema(name)
    fastavro.parse_schema(schema)
    assert schema.get("doc"), f"{name}: record without doc"
    undocumented = [f"{rec}.{f['name']}" for rec, f in _fields(schema) if not f.get("doc")]
    assert not undocumented, f"{name}: fields without doc: {undocumented}"


def test_track_ids_in_internal_schemas_are_marked_pseudonymous() -> None:
    """covers T6: anything that links observations carries the privacy marker."""
    for name in ("detection_batch", "line_crossing", "zone_event"):
        marked = {f["name"] for _, f in _fields(load_schema(name)) if f.get("privacy") == "pseudonymous"}
        assert "track_id" in marked, name


@pytest.mark.parametrize("table,name", PARTNER_TABLES.items())
def test_partner_schemas_carry_nothing_identifying(table: str, name: str) -> None:
    """covers T6, T7: partner schemas hold only what the allowlist of schemas/privacy.py allows."""
    assert partner_schema_violations(load_schema(name)) == []


def test_the_partner_check_catches_each_kind_of_leak() -> None:
    base = load_schema("partner_traffic_volume")
    leaks = {
        "marked": {"name": "obj", "type": "long", "doc": "x", "privacy": "pseudonymous"},
        "bytes": {"name": "thumb", "type": ["null", "bytes"], "default": None, "doc": "x"},
        "per-object array": {"name": "objects", "doc": "x", "type": {"type": "array", "items": {
            "type": "record", "name": "O", "fields": [{"name": "x", "type": "float", "doc": "x"}]}}},
        "track id": {"name": "track_id", "type": "long", "doc": "x"},
        "exact time": {"name": "ts", "type": "long", "doc": "x"},
    }
    for what, field in leaks.items():
        s = copy.deepcopy(base)
        s["fields"].append(field)
        assert partner_schema_violations(s), f"{what} not caught"


def test_publishing_refuses_a_leaky_partner_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    from privaflow.schemas import privacy

    real = privacy.load_schema

    def leaky(name: str) -> dict:
        s = real(name)
        if name == "partner_occupancy":
            s = copy.deepcopy(s)
            s["fields"].append({"name": "track_id", "type": "long", "doc": "x", "privacy": "pseudonymous"})
        return s

    assert_partner_schemas_clean()
    monkeypatch.setattr(privacy, "load_schema", leaky)
    with pytest.raises(ValueError, match="track_id"):
        assert_partner_schemas_clean()


def test_topics_have_explicit_settings_and_schemas() -> None:
    topics = {t.name: t for t in all_topics(detections_retention_ms=123)}
    det = topics["privaflow.detections.v2"]
    assert det.config() == {"retention.ms": "123", "cleanup.policy": "delete"}
    assert det.value_subject == "privaflow.detections.v2-value" and det.value_schema == "detection_batch"
    assert not any(".v1" in name for name in topics if "detections" in name), "v1 detections are retired"
    for table in PARTNER_TABLES:
        t = topics[partner_topic_name(table)]
        assert "compact" in t.cleanup_policy and t.partner_table == table
    # v2: class_name became a closed-vocabulary enum, which the registry refuses as a v1 change
    assert partner_topic_name("traffic_volume") == "privaflow.partner.traffic-volume.v2"
    assert partner_topic_name("attributes") == "privaflow.partner.attributes.v2"
    assert partner_topic_name("occupancy") == "privaflow.partner.occupancy.v1"
    for t in topics.values():
        if t.value_schema:
            json.dumps(load_schema(t.value_schema))
