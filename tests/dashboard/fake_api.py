"""A stand-in for `privaflow api serve` with the same URL shapes, for the fast browser test: the
dashboard's static files plus the two operator endpoints, answering from in-memory records: the
operator's (no suppression) and, with `as=<partner>`, the partners' (only with the operator's token,
401 without it, as the real server).

It answers the way the real server does (partner/api.py): rows with start <= window_start < end,
timestamps as ISO 8601 UTC strings, JSON written by Python's json (so the dwell table's +inf bin edge
arrives as a bare `Infinity`, which the page must cope with).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from privaflow.partner.api import site_summary
from privaflow.schemas.site import SiteConfig

DASHBOARD = Path(__file__).resolve().parents[2] / "partner" / "dashboard"
PLAN_SVG = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 48"><rect width="64" height="48" fill="#eee"/>'
            '<path d="M4 4h56v40H4z" fill="none" stroke="#999" stroke-width="2"/></svg>')


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(value: str) -> int:
    if value.lstrip("-").isdigit():
        return int(value)
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def json_rows(rows: list[dict[str, Any]], start: int | None, end: int | None) -> list[dict[str, Any]]:
    out = [dict(r, window_start=iso(r["window_start"]), window_end=iso(r["window_end"])) for r in rows
           if (start is None or r["window_start"] >= start) and (end is None or r["window_start"] < end)]
    return sorted(out, key=lambda r: r["window_start"])


TOKEN = "fake-operator-token-0123456789"


@contextmanager
def fake_api(site: SiteConfig, tables: dict[str, list[dict[str, Any]]],
             partner_tables: dict[str, list[dict[str, Any]]] | None = None, token: str = TOKEN) -> Iterator[str]:
    """Serve on a free local port; yields the base URL. `tables` is the operator view, `partner_tables`
    what every partner gets of the tables it receives (default: the same)."""

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, directory=str(DASHBOARD), **kw)

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def _json(self, body: Any, status: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urlparse(self.path)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path.startswith("/api/v1/operator/") and self.headers.get("Authorization") != f"Bearer {token}":
                return self._json({"error": "unknown token"}, 401)
            if url.path == "/api/v1/operator/site":
                return self._json(site_summary(site))
            if url.path.startswith("/api/v1/operator/scene/"):  # no detection records here: empty scenes
                camera = url.path.rsplit("/", 1)[1]
                return self._json({"camera_id": camera, "kind": "fixed", "ts": None, "objects": [], "probe": None})
            if url.path == "/api/v1/operator/road-map":
                return self._json({"resolution": None, "cells": []})
            if url.path.startswith("/api/v1/operator/tables/"):
                table = url.path.rsplit("/", 1)[1]
                if table not in tables:
                    return self._json({"error": f"unknown table {table!r}"}, 404)
                start = _ms(q["from"]) if "from" in q else None
                end = _ms(q["to"]) if "to" in q else None
                partner = next((p for p in site.partners if p.id == q.get("as")), None)
                if partner is None:
                    return self._json({"table": table, "view": "operator", "shared": True,
                                       "rows": json_rows(tables[table], start, end)})
                shared = table in partner.tables
                rows = (partner_tables or tables)[table] if shared else []
                return self._json({"table": table, "view": partner.id, "shared": shared,
                                   "rows": json_rows(rows, start, end)})
            if url.path == "/plan.svg":  # an operator's floor plan, for ?plan=
                data = PLAN_SVG.encode()
                self.send_response(200)
                self.send_header("Content-Type", "image/svg+xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return None
            if url.path.startswith("/dashboard/"):
                self.path = url.path[len("/dashboard"):] or "/"
                return super().do_GET()
            self.send_error(404)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
