"""How a partner record looks outside Avro: a JSON row, a CSV line and a JSON Schema, all derived
from the partner .avsc files so the HTTP API can never drift from the Kafka contract.

A row has exactly the Avro record's fields, in schema order. Timestamps (`timestamp-millis`) become
ISO 8601 UTC strings with milliseconds, Avro `float`s are written with the shortest decimal that
reads back as the same 32-bit value (12.3, not 12.300000190734863). JSON has no infinity, so a
non-finite float (the dwell table's last bin edge, +inf) is null; the JSON Schema says so.

    >>> r = json_row("occupancy", {"site_id": "s", "zone_id": "z", "window_start": 0, "window_end": 60000,
    ...     "mean_present": 1.2000000476837158, "max_present": 2, "p95_present": 2.0, "capacity_ratio": None,
    ...     "crowding_level": "LOW", "samples": 600})
    >>> r["window_start"], r["mean_present"], dims("occupancy", r)
    ('1970-01-01T00:00:00.000Z', 1.2, ('z',))
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import numpy as np

from privaflow.schemas.codec import epoch_ms, load_schema
from privaflow.schemas.topics import PARTNER_TABLES
from privaflow.streams.tables import SPECS

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


@cache
def avro_schema(table: str) -> dict[str, Any]:
    """The partner .avsc of a table as JSON; KeyError for a table that has none."""
    return load_schema(PARTNER_TABLES[table])


def field_names(table: str) -> list[str]:
    return [f["name"] for f in avro_schema(table)["fields"]]


def dim_fields(table: str) -> tuple[str, ...]:
    """The fields that, with the site and the window, make a record's key (its table's dimensions)."""
    return SPECS[table].dim_names


def dims(table: str, record: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(record[f]) for f in dim_fields(table))


def iso_utc(value: datetime | int) -> str:
    """`2024-05-01T08:00:00.000Z`."""
    ms = epoch_ms(value)
    return (EPOCH + ms * _MS).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _float32(x: float) -> float | None:
    return float(str(np.float32(x))) if math.isfinite(x) else None


def _convert(avro_type: Any, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(avro_type, list):  # a union: the non-null branch that fits (ours have one)
        branches = [t for t in avro_type if t != "null"]
        return _convert(branches[0], value) if len(branches) == 1 else value
    if isinstance(avro_type, dict):
        if avro_type.get("logicalType") in ("timestamp-millis", "timestamp-micros"):
            return iso_utc(value)
        if avro_type.get("type") == "array":
            return [_convert(avro_type["items"], v) for v in value]
        return _convert(avro_type["type"], value) if avro_type["type"] in _PRIMITIVES else value
    if avro_type == "float":
        return _float32(value)
    if avro_type == "double":
        return value if math.isfinite(value) else None
    return value


def json_row(table: str, record: dict[str, Any]) -> dict[str, Any]:
    """The record as a JSON-ready row: exactly the schema's fields, in order."""
    return {f["name"]: _convert(f["type"], record.get(f["name"])) for f in avro_schema(table)["fields"]}


# A spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(...) sends data away);
# OWASP's advice: a leading apostrophe makes it text. Partner values are closed vocabularies and
# site-config ids, so this is the last line of defence, not the first.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return str(value)


def csv_text(table: str, rows: list[dict[str, Any]]) -> str:
    """A header of the schema's field names, then one line per JSON row. Null is an empty cell,
    booleans are true/false, arrays (dwell bins) are JSON arrays inside one quoted cell, and text
    that a spreadsheet would run as a formula (starting with =, +, -, @, tab or CR) gets a leading
    apostrophe."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    names = field_names(table)
    w.writerow(names)
    for r in rows:
        w.writerow([_cell(r.get(n)) for n in names])
    return buf.getvalue()


# ---------------------------------------------------------------- JSON Schema (2020-12, as OpenAPI 3.1 uses)

_PRIMITIVES: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "boolean": {"type": "boolean"},
    "int": {"type": "integer", "format": "int32"},
    "long": {"type": "integer", "format": "int64"},
    # null only where the Avro value is not finite (+inf: the last dwell bin edge)
    "float": {"type": ["number", "null"], "format": "float"},
    "double": {"type": ["number", "null"], "format": "double"},
    "bytes": {"type": "string"},
    "null": {"type": "null"},
}


def json_schema_of(avro_type: Any) -> dict[str, Any]:
    """JSON Schema for the JSON form (`json_row`) of a value of an Avro type."""
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        nullable = len(branches) < len(avro_type)
        if len(branches) == 1:
            inner = json_schema_of(branches[0])
            kind = inner.get("type")
            if not nullable or (isinstance(kind, list) and "null" in kind):
                return inner
            if isinstance(kind, str) and "enum" not in inner:
                return {**inner, "type": [kind, "null"]}
            return {"anyOf": [inner, {"type": "null"}]}
        return {"anyOf": [json_schema_of(b) for b in branches] + ([{"type": "null"}] if nullable else [])}
    if isinstance(avro_type, str):
        if avro_type not in _PRIMITIVES:
            raise ValueError(f"named type reference {avro_type!r} is not supported in partner schemas")
        return dict(_PRIMITIVES[avro_type])
    kind = avro_type["type"]
    out: dict[str, Any]
    if avro_type.get("logicalType") in ("timestamp-millis", "timestamp-micros"):
        out = {"type": "string", "format": "date-time"}
    elif kind == "record":
        out = record_json_schema(avro_type)
    elif kind == "enum":
        out = {"type": "string", "enum": list(avro_type["symbols"])}
    elif kind == "array":
        out = {"type": "array", "items": json_schema_of(avro_type["items"])}
    elif kind == "map":
        out = {"type": "object", "additionalProperties": json_schema_of(avro_type["values"])}
    elif kind == "fixed":
        out = {"type": "string"}
    else:
        out = json_schema_of(kind)
    if avro_type.get("doc") and "description" not in out:
        out["description"] = avro_type["doc"]
    return out


def record_json_schema(record: dict[str, Any]) -> dict[str, Any]:
    props = {}
    for f in record["fields"]:
        s = json_schema_of(f["type"])
        if f.get("doc"):
            s["description"] = f["doc"]
        props[f["name"]] = s
    out: dict[str, Any] = {"type": "object", "title": record["name"], "properties": props,
                           "required": [f["name"] for f in record["fields"]], "additionalProperties": False}
    if record.get("doc"):
        out["description"] = record["doc"]
    return out


def row_json_schema(table: str) -> dict[str, Any]:
    """JSON Schema of one row of a partner table, from its .avsc."""
    return record_json_schema(avro_schema(table))
