"""What a partner schema may contain: an allowlist, checked in code (T6, T7; docs/privacy-model.md).

Partner topics leave the operator's hands, so a partner schema may hold only what an aggregate over
a closed window needs, each field by its name and the one type its rule allows:

| rule              | fields                                                   | type                        |
|-------------------|----------------------------------------------------------|-----------------------------|
| window bound      | window_start, window_end                                 | long, timestamp-millis      |
| window length     | window_length_s                                          | int or long                 |
| site-config id    | CONFIG_DIMENSIONS (site_id, line_id, zone_id, ...)       | string                      |
| spatial cell      | SPATIAL_CELLS (h3_cell)                                  | string                      |
| closed vocabulary | class_name, age_bracket, gender, colour, crowding_level, | that vocabulary's Avro enum |
|                   | heading, congestion_level, colour_family,                |                             |
|                   | level_of_service, flow_direction                         |                             |
| count             | COUNTS (count, trips)                                    | int or long                 |
| flag              | suppressed                                               | boolean                     |
| statistic         | STATISTICS (mean_speed_kmh, median_dwell_s, ...)         | int, long, float or double  |
| bin list          | bin_upper_s / bin_counts                                 | array of float / of count   |
| class list        | furniture_classes / furniture_counts                     | array of class enum / count |

A spatial-cell dimension is the one kind of dimension whose values come neither from the site config
nor from a closed vocabulary: an H3 cell index (schemas/cells.py) of a moving camera's position. Its
type is a string like an id's; what keeps it coarse is the value check, not the schema: the road
worker skips (counting it, and logging why) a detection record whose cell is not a valid H3 index at
the site's configured resolution, and `partner_record` refuses to build a row from anything that is
not a valid H3 cell, so no finer cell and no coordinate written into the field is ever published.

Every rule except window bounds, flags and bin lists also allows the type as a union with null.
Anything else is refused: other names, nested records, maps, bytes, fixed, other arrays, unions of
two non-null types, named-type references, logical types outside the window bounds, and attributes
beyond what these types need (name, type, doc, default; namespace on the record; symbols and
default on an enum): a `"privacy"` marker on a field or a type says the schema was meant to carry
something a partner may not get. A schema that is not a record, or not JSON-shaped at all, gets a
violation too: the check never raises. Each violation is `"<record>.<field>: <rule broken>"`.

    >>> partner_schema_violations({"type": "record", "name": "R", "fields": [
    ...     {"name": "window_start", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ...     {"name": "tid", "type": "long"}]})
    ["R.tid: field name 'tid' is not in the partner allowlist"]
"""

from __future__ import annotations

import copy
from typing import Any

import fastavro

from privaflow.schemas.codec import load_schema
from privaflow.schemas.vocabulary import VOCABULARIES

WINDOW_BOUNDS = ("window_start", "window_end")
WINDOW_LENGTH = "window_length_s"
# Ids whose every value is written in the site config (never derived from what a camera saw); a new
# dimension of this kind is one more name here.
CONFIG_DIMENSIONS = ("site_id", "line_id", "zone_id", "place_id", "origin_zone_id", "destination_zone_id",
                     "direction", "approach_id", "intersection_id", "entry_approach_id", "exit_approach_id")
# Where a moving camera was, as an H3 cell at the site's resolution (values checked by schemas/cells.py)
SPATIAL_CELLS = ("h3_cell",)
# `trips`: distinct probe-vehicle trips that passed a cell (road_conditions counts k in trips)
COUNTS = ("count", "trips")
FLAGS = ("suppressed",)
# Named aggregate statistics. `samples` is the number of frames the occupancy statistics rest on: it
# counts frames, not objects (one per analysed frame, whoever is present), so it is a statistic about
# the observation, not a count of people to threshold. The congestion table's queue lengths (metres from
# the stop line), density (vehicles per km and lane) and delay (s per vehicle) are statistics over its
# window's frames.
STATISTICS = ("mean_speed_kmh", "p85_speed_kmh", "median_travel_s", "median_dwell_s", "mean_present", "max_present",
              "p95_present", "capacity_ratio", "samples", "median_speed_kmh", "mean_vehicles_ahead",
              "p85_vehicles_ahead", "mean_people", "queue_length_m", "mean_queue_length_m", "density_veh_per_km_lane",
              "mean_delay_s")
BIN_EDGES, BIN_COUNTS = "bin_upper_s", "bin_counts"
# A declared class list: which road-furniture classes (the class_name enum) and how many of each, index
# by index (road_conditions). Like the bin lists, the only arrays a partner schema may hold.
CLASS_LIST, CLASS_COUNTS = "furniture_classes", "furniture_counts"

_INTS = ("int", "long")
_NUMBERS = ("int", "long", "float", "double")
_RECORD_KEYS = {"type", "name", "namespace", "doc", "fields"}
_FIELD_KEYS = {"name", "type", "doc", "default"}
_ENUM_KEYS = {"type", "name", "namespace", "doc", "symbols", "default"}
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


class _Refused(Exception):
    """One broken rule for the field being checked."""


def partner_schema_violations(schema: Any, path: str = "") -> list[str]:
    """Every reason this schema may not be published to a partner; empty when it may. Never raises,
    whatever `schema` is (a JSON value as parsed from an .avsc file, or anything else)."""
    try:
        return _record_violations(schema, path)
    except Exception as e:  # a bug here must refuse the schema, never pass it or crash the caller
        return [f"{path or '<schema>'}: could not be checked ({type(e).__name__}: {e})"]


def _record_violations(schema: Any, path: str) -> list[str]:
    if not isinstance(schema, dict) or schema.get("type") != "record":
        what = _describe(schema)
        return [f"{path or '<schema>'}: a partner schema must be one record, not {what}"]
    name = schema.get("name")
    root = path or (name if isinstance(name, str) and name else "<schema>")
    problems = []
    if not isinstance(name, str) or not name:
        problems.append(f"{root}: the record has no name")
    problems += [f"{root}: attribute {k!r} is not allowed on the record" for k in _extra(schema, _RECORD_KEYS)]
    fields = schema.get("fields")
    if not isinstance(fields, list) or not fields:
        problems.append(f"{root}: the record has no fields")
        return problems
    seen: set[str] = set()
    for i, f in enumerate(fields):
        fname = f.get("name") if isinstance(f, dict) else None
        fpath = f"{root}.{fname}" if isinstance(fname, str) and fname else f"{root}.fields[{i}]"
        if not isinstance(f, dict):
            problems.append(f"{fpath}: a field must be a JSON object, not {_describe(f)}")
            continue
        if not isinstance(fname, str) or not fname:
            problems.append(f"{fpath}: the field has no name")
            continue
        if fname in seen:
            problems.append(f"{fpath}: the field appears twice")
        seen.add(fname)
        problems += [f"{fpath}: attribute {k!r} is not allowed on a field" for k in _extra(f, _FIELD_KEYS)]
        try:
            _check_field(fname, f.get("type"))
        except _Refused as e:
            problems.append(f"{fpath}: {e}")
    if not problems:  # allowed constructs only: let Avro itself judge the rest (defaults, enum symbols)
        try:
            fastavro.parse_schema(copy.deepcopy(schema))
        except Exception as e:
            problems.append(f"{root}: not a valid Avro schema: {e}")
    return problems


def field_kind(name: str) -> str:
    """What a partner field is, by the allowlist rule for its name: `window` (bounds), `window_length`,
    `id` (site-config ids), `cell` (a spatial cell), `vocabulary` (closed enums), `count`, `flag`,
    `statistic`, `bin_edges`, `bins`, `class_list` or `class_counts`. The disclosure policy
    (streams/disclosure.py) applies its rules by these kinds; KeyError for a name the allowlist refuses."""
    kinds: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("window", WINDOW_BOUNDS), ("window_length", (WINDOW_LENGTH,)), ("id", CONFIG_DIMENSIONS),
        ("cell", SPATIAL_CELLS), ("vocabulary", tuple(VOCABULARIES)), ("count", COUNTS), ("flag", FLAGS),
        ("statistic", STATISTICS), ("bin_edges", (BIN_EDGES,)), ("bins", (BIN_COUNTS,)),
        ("class_list", (CLASS_LIST,)), ("class_counts", (CLASS_COUNTS,)))
    for kind, names in kinds:
        if name in names:
            return kind
    raise KeyError(f"field name {name!r} is not in the partner allowlist")


def _check_field(name: str, t: Any) -> None:
    if name in WINDOW_BOUNDS:
        _timestamp_millis(t)
    elif name == WINDOW_LENGTH:
        _primitive(_nullable(t), _INTS, "a window length")
    elif name in CONFIG_DIMENSIONS:
        _primitive(_nullable(t), ("string",), "a site-config id")
    elif name in SPATIAL_CELLS:
        _primitive(t, ("string",), "a spatial cell (an H3 index)")
    elif name in VOCABULARIES:
        _vocabulary_enum(name, _nullable(t))
    elif name in COUNTS:
        _primitive(_nullable(t), _INTS, "a count")
    elif name in FLAGS:
        _primitive(t, ("boolean",), "a suppressed flag")
    elif name in STATISTICS:
        _primitive(_nullable(t), _NUMBERS, "a statistic")
    elif name == BIN_EDGES:
        _primitive(_array_items(t), ("float", "double"), "a bin edge")
    elif name == BIN_COUNTS:
        _primitive(_nullable(_array_items(t)), _INTS, "a bin count")
    elif name == CLASS_LIST:
        _vocabulary_enum("class_name", _array_items(t, "a class list"))
    elif name == CLASS_COUNTS:
        _primitive(_nullable(_array_items(t, "a class count list")), _INTS, "a class count")
    else:
        raise _Refused(f"field name {name!r} is not in the partner allowlist")


def _nullable(t: Any) -> Any:
    """The non-null branch of a union with null; any other union is refused."""
    if not isinstance(t, list):
        return t
    others = [b for b in t if b != "null"]
    if len(t) != 2 or len(others) != 1:
        raise _Refused(f"a union may only be a type together with null, not {_describe(t)}")
    if isinstance(others[0], list):
        raise _Refused("a union may not hold a union")
    return others[0]


def _primitive(t: Any, allowed: tuple[str, ...], what: str) -> None:
    kind = t
    if isinstance(t, dict):
        kind = t.get("type")
        if isinstance(kind, str) and kind in _PRIMITIVES:
            extra = _extra(t, {"type"})
            if extra:
                raise _Refused(f"attribute {extra[0]!r} is not allowed on {what}'s type")
    if isinstance(kind, str) and kind in allowed:
        return
    raise _Refused(f"{what} must be {' or '.join(allowed)}, not {_describe(t)}")


def _timestamp_millis(t: Any) -> None:
    if not (isinstance(t, dict) and t.get("type") == "long" and t.get("logicalType") == "timestamp-millis"):
        raise _Refused(f"a window bound must be a timestamp-millis long, not {_describe(t)}")
    extra = _extra(t, {"type", "logicalType"})
    if extra:
        raise _Refused(f"attribute {extra[0]!r} is not allowed on a window bound's type")


def _array_items(t: Any, what: str = "a bin list") -> Any:
    if not (isinstance(t, dict) and t.get("type") == "array"):
        raise _Refused(f"{what} must be an array, not {_describe(t)}")
    extra = _extra(t, {"type", "items"})
    if extra:
        raise _Refused(f"attribute {extra[0]!r} is not allowed on {what}")
    return t.get("items")


def _vocabulary_enum(name: str, t: Any) -> None:
    vocab = VOCABULARIES[name]
    if not (isinstance(t, dict) and t.get("type") == "enum"):
        raise _Refused(f"{name} must be the closed-vocabulary enum {vocab.enum_name}, not {_describe(t)}")
    extra = _extra(t, _ENUM_KEYS)
    if extra:
        raise _Refused(f"attribute {extra[0]!r} is not allowed on the enum {vocab.enum_name}")
    enum_name = t.get("name")
    if not isinstance(enum_name, str) or enum_name.rsplit(".", 1)[-1] != vocab.enum_name:
        raise _Refused(f"{name}'s enum must be named {vocab.enum_name}, not {enum_name!r}")
    symbols = t.get("symbols")
    if not isinstance(symbols, list) or not symbols:
        raise _Refused(f"the enum {vocab.enum_name} has no symbols")
    outside = [s for s in symbols if s not in vocab.symbols]
    if outside:
        raise _Refused(f"symbols {outside[:5]!r} are not in the closed vocabulary {name} "
                       "(schemas/vocabulary.py)")


def _extra(node: dict[str, Any], allowed: set[str]) -> list[str]:
    return sorted(str(k) for k in node if k not in allowed)


def _describe(t: Any) -> str:
    if isinstance(t, dict):
        kind = t.get("type")
        if kind in ("map", "array", "fixed", "record", "enum", "error"):
            return f"a {kind}"
        if isinstance(kind, str) and t.get("logicalType"):
            return f"{kind} with logicalType {t.get('logicalType')!r}"
        return f"type {kind!r}" if isinstance(kind, str) else "an object without a type name"
    if isinstance(t, list):
        return f"the union {t!r}"[:120]
    if isinstance(t, str):
        if t in _PRIMITIVES:
            return t
        return f"a reference to the named type {t!r}"
    if t is None:
        return "nothing (null)"
    return f"a JSON {type(t).__name__} ({t!r})"[:120]


def assert_partner_schemas_clean() -> None:
    """Refuse to run (ValueError) if any partner schema in schemas/avro breaks the allowlist."""
    from privaflow.schemas.topics import PARTNER_TABLES

    problems = [p for name in PARTNER_TABLES.values() for p in partner_schema_violations(load_schema(name))]
    if problems:
        raise ValueError("partner schemas may only hold what schemas/privacy.py allows:\n  " + "\n  ".join(problems))
