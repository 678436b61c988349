"""`privaflow api serve`: partner tables over HTTP, the operator dashboard and its data.

    GET /api/v1/tables/{table}?site=&from=&to=&format=json|csv   partners, bearer token
    GET /api/v1/openapi.json                                     the OpenAPI 3.1 description
    GET /healthz                                                 200 once every topic was read
    GET /api/v1/operator/tables/{table}?site=&from=&to=          operator, no token
    GET /api/v1/operator/site                                    lines, zones, cameras, partners
    GET /dashboard/...                                           partner/dashboard/ (static)

Rows come from `PartnerStore` (the compacted partner topics replayed into memory), so a partner
sees over HTTP exactly what its Kafka consumer would see (T7). Tokens: each partner's bearer token
is read from the environment variable its `token_env` names; a partner without one cannot use
HTTP. The operator routes have no authentication: the server binds to 127.0.0.1 unless told
otherwise, and in production the operator ingress routes them while the partner ingress routes
only /api/v1/tables, /api/v1/openapi.json and /healthz.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from aiohttp import web

from privaflow.partner.openapi import openapi_document
from privaflow.partner.rows import csv_text, json_row
from privaflow.partner.store import PartnerStore
from privaflow.schemas.codec import epoch_ms
from privaflow.schemas.site import ConfigError, Partner, SiteConfig
from privaflow.schemas.topics import PARTNER_TABLES
from privaflow.streams.tables import SPECS

log = logging.getLogger(__name__)

DASHBOARD_DIR = Path(__file__).parent / "dashboard"
_EPOCH_MS = re.compile(r"^-?\d+$")
# no client address and no headers in the access log: nothing about who asked, only what
ACCESS_LOG_FORMAT = '"%r" %s %b %Tfs'


def partner_tokens(site: SiteConfig, environ: Mapping[str, str] | None = None) -> dict[str, Partner]:
    """token -> partner, for partners whose `token_env` variable is set and not empty."""
    env = os.environ if environ is None else environ
    out: dict[str, Partner] = {}
    for p in site.partners:
        token = env.get(p.token_env, "").strip() if p.token_env else ""
        if not token:
            continue
        if token in out:
            raise ConfigError(f"partners {out[token].id!r} and {p.id!r} share a bearer token "
                              f"(${p.token_env})")
        out[token] = p
    return out


def parse_instant(value: str, name: str) -> int:
    """Epoch milliseconds from `1714550400000` or an ISO 8601 instant (UTC when it has no offset)."""
    v = value.strip()
    if _EPOCH_MS.match(v):
        return int(v)
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        raise web.HTTPBadRequest(text=_json_error(f"{name}: expected ISO 8601 or epoch milliseconds, "
                                                  f"got {value!r}"), content_type="application/json") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return epoch_ms(dt)


def _strict_dumps(obj: Any) -> str:
    """Standard JSON only (rows never hold NaN/Infinity: partner_rows turns them into null)."""
    return json.dumps(obj, allow_nan=False)


def _json_error(message: str) -> str:
    return json.dumps({"error": message})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def site_summary(site: SiteConfig) -> dict[str, Any]:
    """What the dashboard needs to draw a site; no tokens, no camera sources, no masks."""
    return {
        "site_id": site.site_id,
        "cameras": [c.id for c in site.cameras],
        "lines": [{"id": ln.id, "camera": ln.camera, "points": [list(p) for p in ln.points],
                   "directions": list(ln.directions)} for ln in site.lines],
        "zones": [{"id": z.id, "camera": z.camera, "polygon": [list(p) for p in z.polygon],
                   "capacity": z.capacity} for z in site.zones],
        "partners": [{"id": p.id, "name": p.name, "k_anonymity": p.k_anonymity, "tables": list(p.tables)}
                     for p in site.partners],
        "windows": site.windows.model_dump(),
        "tables": [{"name": s.name, "label": s.label, "dims": list(s.dim_names)} for s in SPECS.values()],
    }


class PartnerApi:
    """The request handlers, bound to one site, its store and its partners' tokens."""

    def __init__(self, site: SiteConfig, store: PartnerStore, tokens: dict[str, Partner]) -> None:
        self.site, self.store, self.tokens = site, store, tokens
        self._openapi = openapi_document()

    def _authenticate(self, request: web.Request) -> Partner | web.Response:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _error(401, "a bearer token is required",
                          {"WWW-Authenticate": 'Bearer realm="privaflow"'})
        token = token.strip()
        # compare against every token so the time taken does not tell which one nearly matched
        found = None
        for known, partner in self.tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                found = partner
        if found is None:
            return _error(401, "unknown token",
                          {"WWW-Authenticate": 'Bearer realm="privaflow", error="invalid_token"'})
        return found

    def _select(self, request: web.Request, table: str) -> list[dict[str, Any]] | web.Response:
        q = request.query
        site = q.get("site", self.site.site_id)
        if site != self.site.site_id:
            return _error(404, f"unknown site {site!r}")
        start = parse_instant(q["from"], "from") if "from" in q else None
        end = parse_instant(q["to"], "to") if "to" in q else None
        return [json_row(table, r) for r in self.store.rows(table, start, end)]

    async def partner_table(self, request: web.Request) -> web.StreamResponse:
        partner = self._authenticate(request)
        if isinstance(partner, web.Response):
            return partner
        table = request.match_info["table"]
        if table not in PARTNER_TABLES:
            return _error(404, f"unknown table {table!r}")
        if table not in partner.tables:
            return _error(403, f"table {table!r} is not shared with partner {partner.id!r}")
        fmt = request.query.get("format", "json")
        if fmt not in ("json", "csv"):
            return _error(400, f"format: expected json or csv, got {fmt!r}")
        rows = self._select(request, table)
        if isinstance(rows, web.Response):
            return rows
        headers = {"Cache-Control": "no-store"}
        if fmt == "csv":
            headers["Content-Disposition"] = f'inline; filename="{table}.csv"'
            return web.Response(text=csv_text(table, rows), content_type="text/csv", charset="utf-8",
                                headers=headers)
        return web.json_response({"table": table, "rows": rows}, headers=headers, dumps=_strict_dumps)

    async def operator_table(self, request: web.Request) -> web.StreamResponse:
        table = request.match_info["table"]
        if table not in PARTNER_TABLES:
            return _error(404, f"unknown table {table!r}")
        rows = self._select(request, table)
        if isinstance(rows, web.Response):
            return rows
        return web.json_response({"table": table, "rows": rows}, headers={"Cache-Control": "no-store"},
                                 dumps=_strict_dumps)

    async def operator_site(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(site_summary(self.site))

    async def openapi(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self._openapi)

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        st = self.store.status()
        status = "failed" if st["failure"] else ("ok" if st["ready"] else "starting")
        body = {"status": status, "site_id": self.site.site_id, "ready": st["ready"], "rows": st["rows"]}
        return web.json_response(body, status=200 if status == "ok" else 503)


def make_app(site: SiteConfig, store: PartnerStore, tokens: dict[str, Partner] | None = None,
             dashboard_dir: Path | None = DASHBOARD_DIR) -> web.Application:
    """The aiohttp application. The store's consumer thread starts and stops with the app."""
    handlers = PartnerApi(site, store, partner_tokens(site) if tokens is None else tokens)
    app = web.Application()

    async def _store_lifecycle(app: web.Application) -> Any:
        store.start()
        yield
        store.stop()

    app.cleanup_ctx.append(_store_lifecycle)
    r = app.router
    r.add_get("/healthz", handlers.healthz)
    r.add_get("/api/v1/openapi.json", handlers.openapi)
    r.add_get("/api/v1/tables/{table}", handlers.partner_table)
    r.add_get("/api/v1/operator/tables/{table}", handlers.operator_table)
    r.add_get("/api/v1/operator/site", handlers.operator_site)
    r.add_get("/", _redirect("/dashboard/"))
    r.add_get("/dashboard", _redirect("/dashboard/"))
    index = dashboard_dir / "index.html" if dashboard_dir else None

    async def dashboard_index(request: web.Request) -> web.StreamResponse:
        if index is None or not index.is_file():
            return _error(404, "the dashboard is not installed")
        return web.FileResponse(index)

    r.add_get("/dashboard/", dashboard_index)
    if dashboard_dir is not None and dashboard_dir.is_dir():
        r.add_static("/dashboard/", dashboard_dir, show_index=False, follow_symlinks=False)
    return app


def _redirect(location: str) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(location)

    return handler



def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------- command line

@click.group()
def api() -> None:
    """The HTTP server: partner tables (bearer tokens), the OpenAPI document and the operator dashboard."""


@api.command("serve")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="Site YAML file (partners and their token_env variables).")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="PRIVAFLOW_API_HOST",
              help="Address to bind. The operator routes have no token: keep the default, or put the "
                   "server behind ingresses that route operator paths for operators only.")
@click.option("--port", default=8000, show_default=True, type=int, envvar="PRIVAFLOW_API_PORT")
def serve(config_path: str, host: str, port: int) -> None:
    """Serve the site's partner tables, read from the partner topics since their beginning.

    \b
    Partners:   curl -H "Authorization: Bearer $TOKEN" http://HOST:PORT/api/v1/tables/traffic_volume
    Operators:  http://HOST:PORT/dashboard/
    """
    from privaflow.schemas.site import load_site_config

    site = load_site_config(config_path)
    tokens = partner_tokens(site)
    for p in site.partners:
        if not any(tp is p for tp in tokens.values()):
            why = f"${p.token_env} is not set" if p.token_env else "no token_env in the config"
            click.echo(f"partner {p.id}: no HTTP access ({why})", err=True)
    if not _is_loopback(host):
        log.warning("binding %s: /api/v1/operator/* and /dashboard/ have no authentication; route them "
                    "only through the operator ingress", host)
    store = PartnerStore(site.site_id)
    click.echo(f"privaflow api: site {site.site_id}, http://{host}:{port}/ (dashboard /dashboard/, "
               f"OpenAPI /api/v1/openapi.json)")
    web.run_app(make_app(site, store, tokens), host=host, port=port, access_log_format=ACCESS_LOG_FORMAT,
                print=None)


@api.command("openapi")
def print_openapi() -> None:
    """Print the OpenAPI 3.1 document (the same as GET /api/v1/openapi.json)."""
    click.echo(json.dumps(openapi_document(), indent=2))
