"""Serving an aiohttp app from a thread, for tests that talk to it over real HTTP."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web

from privaflow.partner.api import ACCESS_LOG_FORMAT


class BackgroundServer:
    """An app served from a thread with its own event loop:
    `with BackgroundServer(app) as s: httpx.get(s.url + "/healthz")`. Port 0 picks a free port."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app, self.host, self.port = app, host, port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="api-server", daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _start(self) -> int:
        self._runner = web.AppRunner(self.app, access_log_format=ACCESS_LOG_FORMAT)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        return int(self._runner.addresses[0][1])

    def start(self, timeout: float = 30) -> BackgroundServer:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout)
        return self

    def stop(self, timeout: float = 30) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout)
            self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._loop.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
