"""What a partner schema may not contain, checked in code.

Partner topics leave the operator's hands, so their schemas must not be able to carry anything
that identifies or links observations: no field marked with a `privacy` attribute (track ids and
the like), no per-object array of records, no bytes/fixed field that could smuggle pixels or
feature vectors, and no field whose name suggests a per-object key or exact timestamp.
"""

from __future__ import annotations

from typing import Any

from privaflow.schemas.codec import load_schema

FORBIDDEN_NAMES = {"track_id", "object_id", "person_id", "face", "plate", "embedding", "feature", "image",
                   "crop", "pixels", "ts", "timestamp"}


def partner_schema_violations(schema: dict[str, Any], path: str = "") -> list[str]:
    """Every reason this schema may not be published to a partner; empty when it may."""
    problems: list[str] = []
    _walk(schema, path or schema.get("name", "<schema>"), problems, inside_array=False)
    return problems


def _walk(node: Any, path: str, problems: list[str], inside_array: bool) -> None:
    if isinstance(node, str):
        if node in ("bytes", "fixed"):
            problems.append(f"{path}: {node} field")
        return
    if isinstance(node, list):  # union
        for branch in node:
            _walk(branch, path, problems, inside_array)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind in ("bytes", "fixed"):
        problems.append(f"{path}: {kind} field")
    elif kind == "array":
        items = node.get("items")
        if _is_record(items):
            problems.append(f"{path}: array of records (a per-object list)")
        _walk(items, path + "[]", problems, inside_array=True)
    elif kind == "map":
        _walk(node.get("values"), path + "{}", problems, inside_array)
    elif kind == "record":
        for f in node.get("fields", []):
            fpath = f"{path}.{f['name']}"
            if "privacy" in f:
                problems.append(f"{fpath}: marked privacy={f['privacy']!r}")
            if f["name"].lower() in FORBIDDEN_NAMES:
                problems.append(f"{fpath}: field name suggests identifying or per-object data")
            _walk(f["type"], fpath, problems, inside_array)
    elif isinstance(kind, dict | list):
        _walk(kind, path, problems, inside_array)


def _is_record(node: Any) -> bool:
    if isinstance(node, dict):
        return node.get("type") == "record"
    if isinstance(node, list):
        return any(_is_record(b) for b in node)
    return False


def assert_partner_schemas_clean() -> None:
    """Refuse to run (ValueError) if any partner schema in schemas/avro could leak identifying data."""
    from privaflow.schemas.topics import PARTNER_TABLES

    problems = [p for name in PARTNER_TABLES.values() for p in partner_schema_violations(load_schema(name))]
    if problems:
        raise ValueError("partner schemas may not carry identifying data:\n  " + "\n  ".join(problems))
