"""Issue 12, finding 3: each construct that slipped through the old denylist of names is refused,
and the malformed schemas that crashed it get violations instead. Covers T6, T7.

Every case is a clean partner schema plus one construct; the refusal must name that construct's
field (or the schema, for a top-level one). Only `partner_schema_violations` is used, so the file
runs unchanged against the old module (all ten cases failed there)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from privaflow.schemas.codec import load_schema
from privaflow.schemas.privacy import partner_schema_violations

LONG_MS = {"type": "long", "logicalType": "timestamp-millis"}
OBJ = {"type": "record", "name": "Obj", "fields": [{"name": "x", "type": "float", "doc": "x"}]}


def _with(*fields: dict[str, Any]) -> dict[str, Any]:
    s = copy.deepcopy(load_schema("partner_traffic_volume"))
    s["fields"].extend(copy.deepcopy(list(fields)))
    return s


FIELD_CASES: dict[str, tuple[dict[str, Any], str]] = {
    # a per-object key under a name the old list did not hold
    "trackId": (_with({"name": "trackId", "type": "long", "doc": "x"}), "TrafficVolume.trackId"),
    "tid": (_with({"name": "tid", "type": ["null", "long"], "default": None, "doc": "x"}), "TrafficVolume.tid"),
    # an exact per-object time
    "event_time timestamp-millis": (_with({"name": "event_time", "type": LONG_MS, "doc": "x"}),
                                    "TrafficVolume.event_time"),
    # per-object lists under allowed names: the type is what is refused
    "array<float>": (_with({"name": "mean_present", "type": {"type": "array", "items": "float"}, "doc": "x"}),
                     "TrafficVolume.mean_present"),
    "array<array<int>>": (_with({"name": "bin_counts", "type": {"type": "array", "items": {
        "type": "array", "items": "int"}}, "doc": "x"}), "TrafficVolume.bin_counts"),
    "map<string,long>": (_with({"name": "samples", "type": {"type": "map", "values": "long"}, "doc": "x"}),
                         "TrafficVolume.samples"),
    # a record type defined once (outside any array) and then listed by name
    "array of a named record": (_with(
        {"name": "median_travel_s", "type": ["null", OBJ], "default": None, "doc": "x"},
        {"name": "median_dwell_s", "type": {"type": "array", "items": "Obj"}, "doc": "x"}),
        "TrafficVolume.median_dwell_s"),
    # the marker on the type instead of the field
    "privacy attribute on the type": (_with({"name": "max_present", "type": {
        "type": "long", "privacy": "pseudonymous"}, "doc": "x"}), "TrafficVolume.max_present"),
}


@pytest.mark.parametrize("case", FIELD_CASES)
def test_a_construct_the_denylist_let_through_is_refused_naming_its_field(case: str) -> None:
    schema, path = FIELD_CASES[case]
    problems = partner_schema_violations(schema)
    assert any(p.startswith(path + ":") for p in problems), problems


@pytest.mark.parametrize("schema", ["bytes", ["null", "bytes"], ["null", load_schema("partner_occupancy")]],
                         ids=["top-level bytes", "top-level union", "top-level union of a partner record"])
def test_a_schema_that_is_not_a_record_is_refused_not_a_crash(schema: Any) -> None:
    problems = partner_schema_violations(schema)
    assert problems and all(isinstance(p, str) for p in problems)
    assert "must be one record" in problems[0]
