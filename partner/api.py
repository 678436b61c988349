"""`privaflow api serve`: partner tables over HTTP, the operator dashboard and its data.

    GET /api/v1/tables/{table}?site=&from=&to=&format=json|csv&limit=&cursor=   partners, bearer token
    GET /api/v1/openapi.json                                     the OpenAPI 3.1 description
    GET /healthz                                                 200 once every topic was read
    GET /api/v1/operator/tables/{table}?site=&from=&to=&limit=&cursor=&as=      operator token
    GET /api/v1/operator/site                                    operator token: lines, zones, partners
    GET /api/v1/operator/scene/{camera}                          operator token: latest frame as objects (icon scene)
    GET /api/v1/operator/road-map?site=&from=&to=                operator token: road cells, polygons, congestion level
    GET /dashboard/...                                           partner/dashboard/ (static, no data)

Rows come from `PartnerStore` (the compacted partner topics replayed into memory), so a partner
sees over HTTP exactly what its Kafka consumer would see (T7): the shared k-anonymous topic of a
table, or a differential-privacy partner's own topic. Tokens: each partner's bearer token is read
from the environment variable its `token_env` names; a partner without one cannot use HTTP; a token
shorter than 16 characters is refused when the server starts. Table responses are pages of at most
`limit` rows (partners: 1000 unless asked otherwise, 10000 at most); `next` in the JSON body and a
`Link: <...>; rel="next"` header carry the cursor of the following page, null and absent on the last.
An unknown query parameter is a 400 naming it.

The operator routes want the operator's token (`operator.token_env` in the site config): without it
they answer 401, and a partner's token is refused with 403, whichever partner's. They serve every
closed window without suppression (the operator topics), or with `as=<partner id>` exactly what that
partner receives, for the dashboard's "as partner X sees it" switch. In production the partner
ingress routes only /api/v1/tables, /api/v1/openapi.json and /healthz.
"""

from __future__ import annotations

import base64
import binascii
import hmac
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
from privaflow.partner.rows import csv_text, dims, json_row
from privaflow.partner.scenes import LatestFrames, road_map
from privaflow.partner.store import OPERATOR, SHARED, PartnerStore
from privaflow.schemas.codec import epoch_ms
from privaflow.schemas.site import ConfigError, Partner, SiteConfig
from privaflow.schemas.topics import PARTNER_TABLES
from privaflow.streams.tables import SPECS

log = logging.getLogger(__name__)

DASHBOARD_DIR = Path(__file__).parent / "dashboard"
_EPOCH_MS = re.compile(r"^-?\d{1,15}$")
# datetime's range, years 1 to 9999: anything outside cannot be a window start
MIN_INSTANT_MS, MAX_INSTANT_MS = -62_135_596_800_000, 253_402_300_799_999
MIN_TOKEN_LENGTH = 16
PAGE_DEFAULT, PAGE_MAX = 1000, 10_000
PARTNER_PARAMS = ("site", "from", "to", "format", "limit", "cursor")
OPERATOR_PARAMS = ("site", "from", "to", "limit", "cursor", "as")
# no client address and no headers in the access log: nothing about who asked, only what
ACCESS_LOG_FORMAT = '"%r" %s %b %Tfs'


def _token(who: str, variable: str | None, env: Mapping[str, str]) -> str:
    """The token in `variable` ('' when unset); ConfigError, never showing it, when it is unfit."""
    token = env.get(variable, "").strip() if variable else ""
    if token and (len(token) < MIN_TOKEN_LENGTH or not (token.isascii() and token.isprintable()) or " " in token):
        # the message never shows the token, only what is wrong with it
        raise ConfigError(f"{who}: the token in ${variable} is {len(token)} characters of which "
                          f"{'all' if token.isascii() and token.isprintable() else 'not all'} are printable "
                          f"ASCII; expected at least {MIN_TOKEN_LENGTH} printable ASCII characters without "
                          "spaces (e.g. `openssl rand -hex 32`)")
    return token


def partner_tokens(site: SiteConfig, environ: Mapping[str, str] | None = None) -> dict[str, Partner]:
    """token -> partner, for partners whose `token_env` variable is set and not empty."""
    env = os.environ if environ is None else environ
    out: dict[str, Partner] = {}
    for p in site.partners:
        token = _token(f"partner {p.id!r}", p.token_env, env)
        if not token:
            continue
        if token in out:
            raise ConfigError(f"partners {out[token].id!r} and {p.id!r} share a bearer token "
                              f"(${p.token_env})")
        out[token] = p
    return out


def operator_token(site: SiteConfig, environ: Mapping[str, str] | None = None) -> str | None:
    """The operator's dashboard token (`operator.token_env`), or None when none is set; ConfigError when
    it is unfit or is also a partner's."""
    env = os.environ if environ is None else environ
    variable = site.operator.token_env if site.operator else None
    token = _token("operator", variable, env)
    if not token:
        return None
    for p in site.partners:
        if p.token_env and env.get(p.token_env, "").strip() == token:
            raise ConfigError(f"the operator's token (${variable}) is also partner {p.id!r}'s (${p.token_env}): "
                              "a partner's token must never open the operator view")
    return token


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=_json_error(message), content_type="application/json")


def parse_instant(value: str, name: str) -> int:
    """Epoch milliseconds from `1714550400000` or an ISO 8601 instant (UTC when it has no offset), within
    years 1 to 9999; anything else is a 400 naming the parameter."""
    v = value.strip()
    shown = value if len(value) <= 40 else value[:40] + "..."
    expected = f"{name}: expected ISO 8601 or epoch milliseconds (years 1 to 9999), got {shown!r}"
    if _EPOCH_MS.match(v):
        ms = int(v)
    elif len(v) > 64:  # no ISO 8601 instant is this long; do not hand it to the parser
        raise _bad_request(expected)
    else:
        try:
            dt = datetime.fromisoformat(v)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            ms = epoch_ms(dt)
        except (ValueError, OverflowError):
            raise _bad_request(expected) from None
    if not MIN_INSTANT_MS <= ms <= MAX_INSTANT_MS:
        raise _bad_request(expected)
    return ms


def _cursor(key: tuple[int, tuple[str, ...], int]) -> str:
    raw = json.dumps([key[0], list(key[1]), key[2]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _parse_cursor(value: str) -> tuple[int, tuple[str, ...], int]:
    """The position a `next` cursor names: (window_start, dims, window_end) of the last row given out."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        start, dim_values, end = raw
        if not (isinstance(start, int) and isinstance(end, int) and isinstance(dim_values, list)
                and all(isinstance(d, str) for d in dim_values)):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise _bad_request("cursor: not a cursor this API gave out (use the `next` of the previous page)") from None
    return start, tuple(dim_values), end


def _row_key(table: str, record: dict[str, Any]) -> tuple[int, tuple[str, ...], int]:
    return epoch_ms(record["window_start"]), dims(table, record), epoch_ms(record["window_end"])


def _strict_dumps(obj: Any) -> str:
    """Standard JSON only (rows never hold NaN/Infinity: partner_rows turns them into null)."""
    return json.dumps(obj, allow_nan=False)


def _json_error(message: str) -> str:
    return json.dumps({"error": message})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def site_summary(site: SiteConfig) -> dict[str, Any]:
    """What the dashboard needs to draw a site; no tokens, no camera sources, no masks. Approaches carry
    their lane zones' lengths on the ground, which the congestion map draws queues against."""
    from privaflow.streams.approaches import approach_geometry

    return {
        "site_id": site.site_id,
        "cameras": [c.id for c in site.cameras],
        "lines": [{"id": ln.id, "camera": ln.camera, "points": [list(p) for p in ln.points],
                   "directions": list(ln.directions)} for ln in site.lines],
        "zones": [{"id": z.id, "camera": z.camera, "polygon": [list(p) for p in z.polygon],
                   "capacity": z.capacity} for z in site.zones],
        "intersections": [{"id": x.id, "name": x.name, "approaches": [
            {"id": a.id, "camera": a.camera, "road": a.road, "compass": a.compass, "lanes": list(a.lanes),
             "inbound": a.inbound.model_dump(), "outbound": a.outbound.model_dump() if a.outbound else None,
             "free_flow_kmh": a.free_flow_kmh,
             "lane_lengths_m": [round(m, 1) for m in approach_geometry(site, x, a).lane_lengths_m]}
            for a in x.approaches]} for x in site.intersections],
        "partners": [{"id": p.id, "name": p.name, "k_anonymity": None if p.dp else p.k_anonymity,
                      "mechanism": p.privacy.mechanism, "tables": list(p.tables)} for p in site.partners],
        "windows": site.windows.model_dump(),
        "tables": [{"name": s.name, "label": s.label, "dims": list(s.dim_names)} for s in SPECS.values()],
        "mobile_cameras": [c.id for c in site.mobile_cameras()],
    }


class PartnerApi:
    """The request handlers, bound to one site, its store and its partners' tokens."""

    def __init__(self, site: SiteConfig, store: PartnerStore, tokens: dict[str, Partner],
                 operator: str | None = None, frames: LatestFrames | None = None) -> None:
        self.site, self.store, self.tokens, self.operator, self.frames = site, store, tokens, operator, frames
        self._openapi = openapi_document()

    def _bearer(self, request: web.Request) -> str | web.Response:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _error(401, "a bearer token is required",
                          {"WWW-Authenticate": 'Bearer realm="privaflow"'})
        token = token.strip()
        if not (token.isascii() and token.isprintable()) or len(token) > 4096:
            # headers that are not UTF-8 arrive with surrogates; no token we issue looks like that
            return _error(401, "malformed token: expected printable ASCII",
                          {"WWW-Authenticate": 'Bearer realm="privaflow", error="invalid_token"'})
        return token

    def _partner_of(self, token: str) -> Partner | None:
        # compare against every token so the time taken does not tell which one nearly matched
        found = None
        for known, partner in self.tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                found = partner
        return found

    def _authenticate(self, request: web.Request) -> Partner | web.Response:
        token = self._bearer(request)
        if isinstance(token, web.Response):
            return token
        found = self._partner_of(token)
        if found is None:
            return _error(401, "unknown token",
                          {"WWW-Authenticate": 'Bearer realm="privaflow", error="invalid_token"'})
        return found

    def _authenticate_operator(self, request: web.Request) -> web.Response | None:
        """None when the request carries the operator's token, else the 401/403 to answer."""
        token = self._bearer(request)
        if isinstance(token, web.Response):
            return token
        is_operator = self.operator is not None and hmac.compare_digest(self.operator.encode(), token.encode())
        if is_operator:
            return None
        if self._partner_of(token) is not None:
            return _error(403, "a partner's token does not open the operator view")
        why = "unknown token" if self.operator else "the operator view is off: operator.token_env is not set"
        return _error(401, why, {"WWW-Authenticate": 'Bearer realm="privaflow operator", error="invalid_token"'})

    @staticmethod
    def view_of(partner: Partner) -> str:
        """The store view a partner reads: its own DP topic, or the table's shared topic."""
        return partner.id if partner.dp else SHARED

    def _select(self, request: web.Request, table: str, known: tuple[str, ...], default_limit: int | None,
                view: str = SHARED) -> tuple[list[dict[str, Any]], str | None]:
        """One page of rows and the cursor of the next page (None on the last); 400 for a parameter
        that is unknown, repeated or malformed."""
        q = request.query
        unknown = sorted(set(q) - set(known))
        if unknown:
            raise _bad_request(f"unknown query parameter{'s' * (len(unknown) > 1)} "
                               f"{', '.join(repr(u[:40]) for u in unknown[:5])}; expected {', '.join(known)}")
        repeated = sorted(k for k in set(q) if len(q.getall(k)) > 1)
        if repeated:
            raise _bad_request(f"{repeated[0]}: given more than once")
        site = q.get("site", self.site.site_id)
        if site != self.site.site_id:
            raise web.HTTPNotFound(text=_json_error(f"unknown site {site[:80]!r}"), content_type="application/json")
        start = parse_instant(q["from"], "from") if "from" in q else None
        end = parse_instant(q["to"], "to") if "to" in q else None
        limit = default_limit
        if "limit" in q:
            v = q["limit"].strip()
            if not (v.isdigit() and len(v) <= 6 and 1 <= int(v) <= PAGE_MAX):
                raise _bad_request(f"limit: expected a whole number from 1 to {PAGE_MAX}, got {v[:40]!r}")
            limit = int(v)
        after = _parse_cursor(q["cursor"]) if "cursor" in q else None
        keyed = sorted(((_row_key(table, r), r) for r in self.store.rows(table, start, end, view)),
                       key=lambda kr: kr[0])
        if after is not None:
            keyed = [kr for kr in keyed if kr[0] > after]
        page = keyed if limit is None else keyed[:limit]
        more = limit is not None and len(keyed) > limit
        return [json_row(table, r) for _, r in page], _cursor(page[-1][0]) if more else None

    @staticmethod
    def _page_headers(request: web.Request, next_cursor: str | None) -> dict[str, str]:
        headers = {"Cache-Control": "no-store"}
        if next_cursor is not None:
            url = request.rel_url.update_query({"cursor": next_cursor})
            headers["Link"] = f'<{url}>; rel="next"'
        return headers

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
            return _error(400, f"format: expected json or csv, got {fmt[:40]!r}")
        rows, next_cursor = self._select(request, table, PARTNER_PARAMS, PAGE_DEFAULT, self.view_of(partner))
        headers = self._page_headers(request, next_cursor)
        if fmt == "csv":
            headers["Content-Disposition"] = f'inline; filename="{table}.csv"'
            return web.Response(text=csv_text(table, rows), content_type="text/csv", charset="utf-8",
                                headers=headers)
        return web.json_response({"table": table, "rows": rows, "next": next_cursor}, headers=headers,
                                 dumps=_strict_dumps)

    async def operator_table(self, request: web.Request) -> web.StreamResponse:
        denied = self._authenticate_operator(request)
        if denied is not None:
            return denied
        table = request.match_info["table"]
        if table not in PARTNER_TABLES:
            return _error(404, f"unknown table {table!r}")
        view, shared = OPERATOR, True
        as_partner = request.query.get("as")
        if as_partner is not None:
            partner = next((p for p in self.site.partners if p.id == as_partner), None)
            if partner is None:
                return _error(404, f"as: unknown partner {as_partner[:80]!r}")
            view, shared = self.view_of(partner), table in partner.tables
        # the dashboard reads a whole period: no page size unless it asks for one
        rows, next_cursor = self._select(request, table, OPERATOR_PARAMS, None, view)
        if not shared:
            rows, next_cursor = [], None  # that partner does not receive this table
        body = {"table": table, "view": as_partner or OPERATOR, "shared": shared, "rows": rows, "next": next_cursor}
        return web.json_response(body, headers=self._page_headers(request, next_cursor), dumps=_strict_dumps)

    async def operator_site(self, request: web.Request) -> web.StreamResponse:
        denied = self._authenticate_operator(request)
        if denied is not None:
            return denied
        return web.json_response(site_summary(self.site))

    async def operator_scene(self, request: web.Request) -> web.StreamResponse:
        denied = self._authenticate_operator(request)
        if denied is not None:
            return denied
        camera = request.match_info["camera"]
        kinds = {c.id: c.kind for c in self.site.cameras}
        if camera not in kinds:
            return _error(404, f"unknown camera {camera[:80]!r}")
        scene = self.frames.scene(camera) if self.frames is not None else None
        if scene is None:  # nothing seen yet (or scenes are off): an empty scene, not an error
            scene = {"camera_id": camera, "kind": kinds[camera], "ts": None, "objects": [], "probe": None}
        return web.json_response(scene, headers={"Cache-Control": "no-store"})

    async def operator_road_map(self, request: web.Request) -> web.StreamResponse:
        denied = self._authenticate_operator(request)
        if denied is not None:
            return denied
        rows, _ = self._select(request, "road_conditions", ("site", "from", "to"), None, OPERATOR)
        return web.json_response(road_map(rows, self.site.h3_resolution()), headers={"Cache-Control": "no-store"},
                                 dumps=_strict_dumps)

    async def openapi(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self._openapi)

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        st = self.store.status()
        status = "failed" if st["failure"] else ("ok" if st["ready"] else "starting")
        body = {"status": status, "site_id": self.site.site_id, "ready": st["ready"], "rows": st["rows"]}
        return web.json_response(body, status=200 if status == "ok" else 503)


def make_app(site: SiteConfig, store: PartnerStore, tokens: dict[str, Partner] | None = None,
             dashboard_dir: Path | None = DASHBOARD_DIR, operator: str | None = None,
             frames: LatestFrames | None = None) -> web.Application:
    """The aiohttp application. The store's (and the scenes') consumer threads start and stop with the app.
    `operator`: the operator's token (default: the one in the variable the site's `operator.token_env`
    names; without either there is no operator view)."""
    handlers = PartnerApi(site, store, partner_tokens(site) if tokens is None else tokens,
                          operator_token(site) if operator is None else operator, frames)
    app = web.Application()

    async def _store_lifecycle(app: web.Application) -> Any:
        store.start()
        if frames is not None:
            frames.start()
        yield
        if frames is not None:
            frames.stop()
        store.stop()

    app.cleanup_ctx.append(_store_lifecycle)
    r = app.router
    r.add_get("/healthz", handlers.healthz)
    r.add_get("/api/v1/openapi.json", handlers.openapi)
    r.add_get("/api/v1/tables/{table}", handlers.partner_table)
    r.add_get("/api/v1/operator/tables/{table}", handlers.operator_table)
    r.add_get("/api/v1/operator/site", handlers.operator_site)
    r.add_get("/api/v1/operator/scene/{camera}", handlers.operator_scene)
    r.add_get("/api/v1/operator/road-map", handlers.operator_road_map)
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



# ---------------------------------------------------------------- command line

@click.group()
def api() -> None:
    """The HTTP server: partner tables (bearer tokens), the OpenAPI document and the operator dashboard."""


@api.command("serve")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="Site YAML file (partners and their token_env variables).")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="PRIVAFLOW_API_HOST",
              help="Address to bind. Partner routes want a partner's token, operator routes and the data of "
                   "the dashboard the operator's (operator.token_env).")
@click.option("--port", default=8000, show_default=True, type=int, envvar="PRIVAFLOW_API_PORT")
def serve(config_path: str, host: str, port: int) -> None:
    """Serve the site's partner tables, read from the partner topics since their beginning.

    \b
    Partners:   curl -H "Authorization: Bearer $TOKEN" http://HOST:PORT/api/v1/tables/traffic_volume
    Operators:  http://HOST:PORT/dashboard/ (asks for the operator's token; #token=... in the URL fills it in)
    """
    from privaflow.schemas.site import load_site_config

    site = load_site_config(config_path)
    tokens = partner_tokens(site)
    for p in site.partners:
        if not any(tp is p for tp in tokens.values()):
            why = f"${p.token_env} is not set" if p.token_env else "no token_env in the config"
            click.echo(f"partner {p.id}: no HTTP access ({why})", err=True)
    operator = operator_token(site)
    if operator is None:
        why = (f"${site.operator.token_env} is not set" if site.operator and site.operator.token_env
               else "no operator.token_env in the config")
        click.echo(f"operator view: off ({why}); the dashboard will refuse every token", err=True)
    store = PartnerStore(site.site_id, dp_partners=[p.id for p in site.partners if p.dp])
    click.echo(f"privaflow api: site {site.site_id}, http://{host}:{port}/ (dashboard /dashboard/, "
               f"OpenAPI /api/v1/openapi.json)")
    web.run_app(make_app(site, store, tokens, operator=operator, frames=LatestFrames(site)), host=host, port=port,
                access_log_format=ACCESS_LOG_FORMAT, print=None)


@api.command("openapi")
def print_openapi() -> None:
    """Print the OpenAPI 3.1 document (the same as GET /api/v1/openapi.json)."""
    click.echo(json.dumps(openapi_document(), indent=2))
