"""The partner-schema allowlist (schemas/privacy.py), as properties: schemas built only from allowed
constructs pass, one forbidden construct anywhere makes a schema fail naming where, and no input at
all makes the check raise. Covers T6, T7 (issue 12, deliverable "allowlist, not denylist")."""

from __future__ import annotations

import copy
import json
from typing import Any

import fastavro
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privaflow.schemas.privacy import (
    BIN_COUNTS,
    BIN_EDGES,
    CONFIG_DIMENSIONS,
    COUNTS,
    FLAGS,
    STATISTICS,
    WINDOW_BOUNDS,
    WINDOW_LENGTH,
    partner_schema_violations,
)
from privaflow.schemas.vocabulary import VOCABULARIES

ALLOWED_NAMES = {*WINDOW_BOUNDS, WINDOW_LENGTH, *CONFIG_DIMENSIONS, *VOCABULARIES, *COUNTS, *FLAGS, *STATISTICS,
                 BIN_EDGES, BIN_COUNTS}
LONG_MS = {"type": "long", "logicalType": "timestamp-millis"}
docs = st.one_of(st.none(), st.text(max_size=30))


def _maybe_null(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(inner, inner.map(lambda t: ["null", t]), inner.map(lambda t: [t, "null"]))


def _primitive(*names: str) -> st.SearchStrategy[Any]:
    return st.sampled_from(names).flatmap(lambda n: st.sampled_from([n, {"type": n}]))


@st.composite
def _enum(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    vocab = VOCABULARIES[kind]
    symbols = draw(st.lists(st.sampled_from(vocab.symbols), min_size=1, unique=True))
    out: dict[str, Any] = {"type": "enum", "name": draw(st.sampled_from(
        [vocab.enum_name, f"privaflow.partner.{vocab.enum_name}"])), "symbols": symbols}
    if draw(st.booleans()):
        out["default"] = draw(st.sampled_from(symbols))
    if draw(st.booleans()):
        out["doc"] = draw(st.text(max_size=20))
    return out


def allowed_type(name: str) -> st.SearchStrategy[Any]:
    """Every type the allowlist accepts for a field of this name."""
    if name in WINDOW_BOUNDS:
        return st.just(LONG_MS)
    if name == WINDOW_LENGTH or name in COUNTS:
        return _maybe_null(_primitive("int", "long"))
    if name in CONFIG_DIMENSIONS:
        return _maybe_null(_primitive("string"))
    if name in VOCABULARIES:
        return _maybe_null(_enum(name))
    if name in FLAGS:
        return _primitive("boolean")
    if name in STATISTICS:
        return _maybe_null(_primitive("int", "long", "float", "double"))
    if name == BIN_EDGES:
        return _primitive("float", "double").map(lambda t: {"type": "array", "items": t})
    assert name == BIN_COUNTS
    return _maybe_null(_primitive("int", "long")).map(lambda t: {"type": "array", "items": t})


@st.composite
def allowed_field(draw: st.DrawFn, name: str) -> dict[str, Any]:
    field: dict[str, Any] = {"name": name, "type": draw(allowed_type(name))}
    doc = draw(docs)
    if doc is not None:
        field["doc"] = doc
    if isinstance(field["type"], list) and field["type"][0] == "null" and draw(st.booleans()):
        field["default"] = None
    return field


@st.composite
def allowed_schema(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(sorted(ALLOWED_NAMES)), min_size=1, max_size=12, unique=True))
    schema: dict[str, Any] = {"type": "record", "name": draw(st.sampled_from(["TrafficVolume", "Zed", "R1"])),
                              "fields": [draw(allowed_field(n)) for n in names]}
    if draw(st.booleans()):
        schema["namespace"] = "privaflow.partner"
    if draw(st.booleans()):
        schema["doc"] = draw(st.text(max_size=30))
    return schema


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(allowed_schema())
def test_schemas_built_only_from_allowed_constructs_pass(schema: dict[str, Any]) -> None:
    assert partner_schema_violations(schema) == []
    fastavro.parse_schema(copy.deepcopy(schema))  # and they are real Avro


# ---------------------------------------------------------------- one forbidden construct

NAMED_RECORD = {"type": "record", "name": "Obj", "fields": [{"name": "x", "type": "float"}]}
forbidden_types = st.one_of(
    st.just("bytes"), st.just({"type": "bytes"}),
    st.just({"type": "fixed", "name": "F", "size": 16}),
    st.sampled_from(["int", "long", "float", "double", "string", "boolean"]).map(
        lambda t: {"type": "map", "values": t}),
    st.sampled_from(["int", "long", "float", "double", "string"]).map(lambda t: {"type": "array", "items": t}),
    st.just({"type": "array", "items": {"type": "array", "items": "int"}}),
    st.just({"type": "array", "items": "Obj"}),
    st.just(NAMED_RECORD), st.just("Obj"), st.just("privaflow.partner.CrowdingLevel"),
    st.just(["string", "long"]), st.just(["null", "string", "long"]), st.just(["null"]),
    st.just(["null", ["null", "long"]]),
    st.sampled_from(["timestamp-millis", "timestamp-micros", "time-millis", "date"]).map(
        lambda lt: {"type": "long" if "millis" not in lt or lt == "timestamp-millis" else "int", "logicalType": lt}),
    st.just({"type": "enum", "name": "Plate", "symbols": ["KA01AB1234"]}),
    st.just({"type": "long", "privacy": "pseudonymous"}),
    st.just({"type": "string", "connect.name": "x"}),
)


@st.composite
def forbidden_field(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """(a field breaking one rule, which rule family) for injection into a clean schema."""
    how = draw(st.sampled_from(["name", "type", "attribute", "enum symbol", "enum name", "array items"]))
    if how == "name":
        name = draw(st.text(min_size=1, max_size=20).filter(lambda n: n not in ALLOWED_NAMES))
        return {"name": name, "type": draw(st.sampled_from(["long", "string", LONG_MS])), "doc": "x"}, how
    name = draw(st.sampled_from(sorted(ALLOWED_NAMES)))
    if how == "attribute":
        field = draw(allowed_field(name))
        field[draw(st.sampled_from(["privacy", "aliases", "order", "x-anything"]))] = "pseudonymous"
        return field, how
    if how in ("enum symbol", "enum name"):
        kind = draw(st.sampled_from(sorted(VOCABULARIES)))
        enum = draw(_enum(kind))
        enum.pop("default", None)
        if how == "enum symbol":
            enum["symbols"] = [*enum["symbols"], draw(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True)
                                                  .filter(lambda s: s not in VOCABULARIES[kind].symbols))]
        else:
            enum["name"] = draw(st.sampled_from(["Plate", "Free", "Label"]))
        return {"name": kind, "type": draw(st.sampled_from([enum, ["null", enum]])), "doc": "x"}, how
    if how == "array items":
        name = draw(st.sampled_from([BIN_EDGES, BIN_COUNTS]))
        items = draw(st.sampled_from(["string", "bytes", {"type": "array", "items": "long"}, NAMED_RECORD,
                                      {"type": "map", "values": "long"}, ["null", "string"], ["long", "float"]]))
        return {"name": name, "type": {"type": "array", "items": items}, "doc": "x"}, how
    # a type forbidden in general may be the one a declared bin list is allowed to have
    t = draw(forbidden_types.filter(lambda t: not (
        (name == BIN_COUNTS and t in ({"type": "array", "items": "int"}, {"type": "array", "items": "long"}))
        or (name == BIN_EDGES and t in ({"type": "array", "items": "float"}, {"type": "array", "items": "double"})))))
    if name in WINDOW_BOUNDS and t == LONG_MS:
        t = "long"
    return {"name": name, "type": t, "doc": "x"}, how


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(allowed_schema(), forbidden_field(), st.integers(min_value=0, max_value=20))
def test_one_forbidden_construct_anywhere_makes_a_schema_fail_naming_its_field(
        schema: dict[str, Any], bad: tuple[dict[str, Any], str], at: int) -> None:
    field, _how = bad
    fields = [f for f in schema["fields"] if f["name"] != field["name"]]
    fields.insert(at % (len(fields) + 1), field)
    schema["fields"] = fields
    problems = partner_schema_violations(schema)
    assert any(p.startswith(f"{schema['name']}.{field['name']}:") for p in problems), problems


@settings(max_examples=200)
@given(allowed_schema(), st.sampled_from(["privacy", "aliases", "x-note"]), st.text(max_size=10))
def test_an_unknown_attribute_on_the_record_fails(schema: dict[str, Any], key: str, value: str) -> None:
    schema[key] = value
    assert any(f"attribute {key!r}" in p for p in partner_schema_violations(schema))


# ---------------------------------------------------------------- never a crash

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=10),
              st.sampled_from(["record", "enum", "array", "map", "bytes", "fixed", "null", "long", "count",
                               "type", "fields", "name", "symbols", "items", "values", "window_start"])),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(
        ["type", "name", "fields", "items", "values", "symbols", "logicalType", "default", "doc", "privacy",
         "namespace", "size"]) | st.text(max_size=5), inner, max_size=5)),
    max_leaves=25)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_any_json_value_gets_a_list_of_violations_never_an_exception(value: Any) -> None:
    problems = partner_schema_violations(value)
    assert isinstance(problems, list) and all(isinstance(p, str) for p in problems)
    if not problems:  # whatever passes is a real Avro record of allowed fields only
        fastavro.parse_schema(copy.deepcopy(value))
        assert {f["name"] for f in value["fields"]} <= ALLOWED_NAMES


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(json_values, st.sampled_from(sorted(ALLOWED_NAMES)))
def test_any_json_value_as_a_field_type_never_crashes(t: Any, name: str) -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": name, "type": t}]}
    problems = partner_schema_violations(schema)
    assert isinstance(problems, list) and all(isinstance(p, str) for p in problems)


def test_malformed_python_values_get_violations() -> None:
    recursive: dict[str, Any] = {"type": "record", "name": "R"}
    recursive["fields"] = [{"name": "count", "type": recursive}]
    cases: list[Any] = [None, 3, 1.5, "bytes", b"bytes", ["null", "bytes"], [], {}, object(),
                        {"type": "record"}, {"type": "record", "name": "R"},
                        {"type": "record", "name": "R", "fields": []},
                        {"type": "record", "name": "R", "fields": "count"},
                        {"type": "record", "name": "R", "fields": [None, 3, {"type": "long"}, {"name": 5}]},
                        {"type": "record", "name": "R", "fields": [{"name": "count", "type": "R"}]},
                        recursive]
    for value in cases:
        problems = partner_schema_violations(value)
        assert problems and all(isinstance(p, str) for p in problems), value


def test_violations_name_the_field_and_the_rule() -> None:
    schema = {"type": "record", "name": "Visits", "privacy": "internal", "fields": [
        {"name": "window_start", "type": "long"},
        {"name": "count", "type": {"type": "map", "values": "long"}},
        {"name": "gender", "type": "string"},
        {"name": "age_bracket", "type": {"type": "enum", "name": "AgeBracket", "symbols": ["age_20_29", "x"]}},
        {"name": "ts", "type": LONG_MS},
        {"name": "suppressed", "type": ["null", "boolean"]},
        {"name": "count", "type": "long"},
    ]}
    assert partner_schema_violations(schema) == [
        "Visits: attribute 'privacy' is not allowed on the record",
        "Visits.window_start: a window bound must be a timestamp-millis long, not long",
        "Visits.count: a count must be int or long, not a map",
        "Visits.gender: gender must be the closed-vocabulary enum Gender, not string",
        "Visits.age_bracket: symbols ['x'] are not in the closed vocabulary age_bracket (schemas/vocabulary.py)",
        "Visits.ts: field name 'ts' is not in the partner allowlist",
        "Visits.suppressed: a suppressed flag must be boolean, not the union ['null', 'boolean']",
        "Visits.count: the field appears twice",
    ]
    json.dumps(schema)  # the example is a JSON schema file's content, as the lint command reads it
