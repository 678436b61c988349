"""The OpenAPI 3.1 document of privaflow's HTTP API. Row schemas come from the partner .avsc files
(partner/rows.py), so the published description is the Kafka contract seen as JSON."""

from __future__ import annotations

from typing import Any

from privaflow.partner.rows import avro_schema, row_json_schema
from privaflow.schemas.topics import PARTNER_TABLES, partner_topic_name


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("privaflow")
    except PackageNotFoundError:
        return "0.0.0"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str, bearer: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description,
                           "content": {"application/json": {"schema": _ref("Error")}}}
    if bearer:
        out["headers"] = {"WWW-Authenticate": {"description": "`Bearer` challenge (RFC 6750).",
                                               "schema": {"type": "string"}}}
    return out


_RANGE_PARAMS: list[dict[str, Any]] = [
    {"name": "site", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "Site id; defaults to the site this server serves (any other is 404)."},
    {"name": "from", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "Only windows with window_start >= this instant: ISO 8601 (UTC when no offset is "
                    "given) or epoch milliseconds.", "examples": {"iso": {"value": "2024-05-01T08:00:00Z"},
                                                                  "epoch_ms": {"value": "1714550400000"}}},
    {"name": "to", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "Only windows with window_start < this instant (same formats as `from`)."},
    {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "Continue after the last row of the previous page: its `next` (or the `Link` header's "
                    "rel=\"next\" URL, which carries the other parameters too). Rows that arrive meanwhile "
                    "are not skipped or repeated when they sort after the cursor."},
]


def _limit(default: int | None) -> dict[str, Any]:
    from privaflow.partner.api import PAGE_MAX

    schema: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": PAGE_MAX}
    if default is not None:
        schema["default"] = default
    return {"name": "limit", "in": "query", "required": False, "schema": schema,
            "description": "Rows per page" + ("." if default is not None else " (default: the whole period).")}


def _schema_name(table: str) -> str:
    return str(avro_schema(table)["name"])


def _table_response(table: str) -> dict[str, Any]:
    return {"type": "object", "title": f"{_schema_name(table)}Table",
            "properties": {"table": {"const": table},
                           "view": {"type": "string", "description": "Operator routes only: `operator` (every "
                                    "closed window, no suppression) or the partner id given as `as`."},
                           "shared": {"type": "boolean", "description": "Operator routes only: false when the "
                                      "partner given as `as` does not receive this table (no rows)."},
                           "rows": {"type": "array", "items": _ref(_schema_name(table)),
                                    "description": "Sorted by window_start, then the row's dimensions, then "
                                                   "window_end."},
                           "next": {"type": ["string", "null"],
                                    "description": "Cursor of the next page (pass it as `cursor`); null on "
                                                   "the last page."}},
            "required": ["table", "rows"], "additionalProperties": False}


def _tables_operation(operator: bool) -> dict[str, Any]:
    tables = list(PARTNER_TABLES)
    one_of = [_ref(f"{_schema_name(t)}Table") for t in tables]
    mapping = {t: f"#/components/schemas/{_schema_name(t)}Table" for t in tables}
    json_body = {"schema": {"oneOf": one_of, "discriminator": {"propertyName": "table", "mapping": mapping}}}
    from privaflow.partner.api import PAGE_DEFAULT

    params = [{"name": "table", "in": "path", "required": True, "schema": {"type": "string", "enum": tables},
               "description": "Partner table."}, *_RANGE_PARAMS, _limit(None if operator else PAGE_DEFAULT)]
    responses: dict[str, Any] = {
        "200": {"description": "One page of the table's current rows (closed windows, the disclosure policy "
                               "applied: under k-anonymity a cell below k is absent, so a missing row means "
                               "fewer than k, possibly none, and a value withheld within a row is null with "
                               "suppressed=true; under differential privacy every cell of the grid is there, "
                               "with noise).",
                "headers": {"Link": {"description": "`<URL>; rel=\"next\"`: the next page, when there is one.",
                                     "schema": {"type": "string"}}},
                "content": {"application/json": json_body}},
        "400": _error("A malformed, repeated or unknown query parameter (the message names it)."),
        "404": _error("Unknown table or site."),
    }
    if operator:
        params.append({"name": "as", "in": "query", "required": False, "schema": {"type": "string"},
                       "description": "A partner id: exactly the rows that partner receives (its shared, "
                                      "k-anonymous topic or its own differentially private one), for the "
                                      "dashboard's \"as partner X sees it\" switch. Without it, every closed "
                                      "window without suppression."})
        responses["401"] = _error("No token, or not the operator's (operator.token_env).", bearer=True)
        responses["403"] = _error("A partner's token: it never opens the operator view.")
        return {"tags": ["operator"], "operationId": "getOperatorTable", "summary": "Read a table (operator)",
                "description": "Unsuppressed aggregates for the operator dashboard, with the operator's token. "
                               "In production this path is routed by the operator ingress and never by the "
                               "partner ingress.",
                "parameters": params, "responses": responses}
    params.append({"name": "format", "in": "query", "required": False,
                   "schema": {"type": "string", "enum": ["json", "csv"], "default": "json"},
                   "description": "`csv`: a header of the row's field names, then one line per row; null "
                                  "is an empty cell, booleans true/false, arrays a JSON array in one cell."})
    responses["200"]["content"]["text/csv"] = {"schema": {"type": "string"}}
    responses["401"] = _error("No token, or a token that is not a partner's.", bearer=True)
    responses["403"] = _error("The partner does not receive this table.")
    return {"tags": ["partner"], "operationId": "getTable", "summary": "Read a partner table",
            "description": "The rows a partner receives on the Kafka topic `privaflow.partner.<table>.v1` "
                           f"(e.g. `{partner_topic_name('traffic_volume')}`), or for a differential-privacy "
                           "partner on its own `privaflow.partner.dp.<partner>.<table>.v1`, as JSON or CSV. "
                           "Only the tables configured for the token's partner are readable.",
            "parameters": params, "responses": responses}


def openapi_document() -> dict[str, Any]:
    """The whole document, as served at /api/v1/openapi.json."""
    schemas: dict[str, Any] = {
        "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
        "Health": {"type": "object", "properties": {
            "status": {"type": "string", "enum": ["ok", "starting", "failed"]},
            "site_id": {"type": "string"},
            "ready": {"type": "boolean", "description": "Every partner topic has been read to its end once."},
            "rows": {"type": "object", "additionalProperties": {"type": "integer"}}},
            "required": ["status", "ready"]},
        "Point": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1},
                  "minItems": 2, "maxItems": 2, "description": "Normalised (x, y) in the frame, 0..1."},
        "Site": {"type": "object", "properties": {
            "site_id": {"type": "string"},
            "cameras": {"type": "array", "items": {"type": "string"}, "description": "Camera ids."},
            "lines": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "string"}, "camera": {"type": "string"},
                "points": {"type": "array", "items": _ref("Point"), "minItems": 2, "maxItems": 2},
                "directions": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2}}}},
            "zones": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "string"}, "camera": {"type": "string"},
                "polygon": {"type": "array", "items": _ref("Point"), "minItems": 3},
                "capacity": {"type": ["integer", "null"]}}}},
            "partners": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "string"}, "name": {"type": ["string", "null"]},
                "k_anonymity": {"type": ["integer", "null"]},
                "mechanism": {"type": "string", "enum": ["k_anonymity", "laplace"]},
                "tables": {"type": "array", "items": {"type": "string", "enum": list(PARTNER_TABLES)}}}}},
            "windows": {"type": "object", "additionalProperties": {"type": "integer"},
                        "description": "Window length per table in seconds, and grace_s."}},
            "required": ["site_id", "cameras", "lines", "zones", "partners"]},
    }
    for t in PARTNER_TABLES:
        schemas[_schema_name(t)] = row_json_schema(t)
        schemas[f"{_schema_name(t)}Table"] = _table_response(t)
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "privaflow partner API", "version": _version(),
            "description": "Closed-window aggregates of a privaflow site: the same rows as the partner "
                           "Kafka topics, with the disclosure policy applied (k-anonymity or differential "
                           "privacy). Nothing here identifies a person or "
                           "a vehicle (T6, T7). Authenticate with the bearer token issued to your "
                           "organisation.",
        },
        "tags": [{"name": "partner", "description": "Bearer token required."},
                 {"name": "operator", "description": "For the operator dashboard, with the operator's token; "
                                                     "not routed to partners."},
                 {"name": "meta"}],
        "security": [{"bearerAuth": []}],
        "paths": {
            "/api/v1/tables/{table}": {"get": _tables_operation(operator=False)},
            "/api/v1/openapi.json": {"get": {
                "tags": ["meta"], "operationId": "getOpenApi", "summary": "This document", "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}}}},
            "/healthz": {"get": {
                "tags": ["meta"], "operationId": "getHealth", "summary": "Liveness and readiness",
                "security": [],
                "responses": {"200": {"description": "Serving; all partner topics read to their end once.",
                                      "content": {"application/json": {"schema": _ref("Health")}}},
                              "503": {"description": "Still reading the topics, or the consumer failed.",
                                      "content": {"application/json": {"schema": _ref("Health")}}}}}},
            "/api/v1/operator/tables/{table}": {"get": _tables_operation(operator=True)},
            "/api/v1/operator/site": {"get": {
                "tags": ["operator"], "operationId": "getOperatorSite",
                "summary": "The site's layout for the dashboard (no tokens, no camera sources)",
                "responses": {"200": {"description": "Lines, zones, cameras and partners of the site.",
                                      "content": {"application/json": {"schema": _ref("Site")}}},
                              "401": _error("No token, or not the operator's.", bearer=True),
                              "403": _error("A partner's token: it never opens the operator view.")}}},
        },
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "One token per partner, issued by the operator; "
                                                              "the operator's own for the operator routes."}},
            "schemas": schemas,
        },
    }
