"""The Faust application: the stream worker's whole dataflow on one screen.

    privaflow.detections.v2 ──┐                      ┌─> privaflow.partner.<table>.v1  (closed windows)
    <app>-idle-ticks ─────────┴─> apply_batches ─────┼─> privaflow.events.*.v1          (crossings, zone events)
                                    │   ▲            └─> privaflow.detections.dlq.v2    (unusable records)
                                    ▼   │
                              table camera-state (one entry per camera, changelog-backed)

    close_idle_windows (timer) ──> <app>-idle-ticks      HTTP: /healthz /readyz /metrics /tables/{table}

Records come in as raw bytes (each a DetectionBatch: several frames of one camera) and are decoded
by our AvroSerde (faust's codecs are not used). The agent takes batches of them and hands each to
`streams.loop.BatchLoop`, which does everything else in plain Python; what Faust does not offer
publicly goes through `streams.faust_compat`. With a differential-privacy partner, the book of DP
releases (`streams.releases`) is read from its topic to the end before the first batch and after
every rebalance, so a window another worker (or this one, before a crash) released is republished
unchanged; the publisher writes new releases to that topic before their partner records. Every
worker started with the same app id shares the partitions (consumer group `app_id`). A graceful
stop (SIGTERM) writes what is pending before Faust stops (`streams.worker`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, cast

import faust
from mode import CrashingSupervisor

from privaflow.schemas.codec import SchemaRegistry, serde_for_topic
from privaflow.schemas.topics import DETECTIONS, DP_RELEASES
from privaflow.streams.consume import Decoder, Engine
from privaflow.streams.faust_compat import (
    FaustConsumer,
    FaustTable,
    faust_config,
    incoming,
    lose_for_fault_injection,
    shorten_fetch_wait,
)
from privaflow.streams.loop import BatchLoop
from privaflow.streams.metrics import WorkerMetrics
from privaflow.streams.output import KafkaOutput
from privaflow.streams.publish import Publisher
from privaflow.streams.refetch import PartitionReader
from privaflow.streams.releases import BookReader, ReleaseBook
from privaflow.streams.settings import WorkerSettings
from privaflow.streams.tables import TABLES
from privaflow.streams.views import Query, QueryError, RecentWindows, table_view

log = logging.getLogger(__name__)

def ticks_topic_name(settings: WorkerSettings) -> str:
    return f"{settings.app_id}-idle-ticks"


@dataclass(frozen=True)
class Dataflow:
    """The faust app and the plain loop it drives (tests and the runner reach in here)."""

    app: faust.App
    loop: BatchLoop

    @property
    def publisher(self) -> Publisher:
        return self.loop.publisher


def make_app(settings: WorkerSettings, partitions: int, registry: SchemaRegistry | None = None) -> Dataflow:
    """Build the worker's faust app. `partitions` must be the detections topic's partition count:
    the state table and the tick topic are co-partitioned with it."""
    names = settings.topics
    registry = registry or SchemaRegistry(settings.registry_url)
    shorten_fetch_wait()
    app = faust.App(settings.app_id, **faust_config(settings, partitions))
    source = app.topic(names.detections, ticks_topic_name(settings), key_serializer="raw", value_serializer="raw")
    cameras = app.Table("camera-state", default=None, partitions=partitions, key_type=bytes,
                        help="per-camera tracks, open windows and applied offsets (JSON)")
    table = FaustTable(cameras)
    output = KafkaOutput(settings.librdkafka())
    site = settings.site
    book = ReleaseBook(site.site_id)
    releases = (BookReader(book, settings.bootstrap, names.prefix + DP_RELEASES, settings.aiokafka_auth())
                if any(p.dp for p in site.partners) else None)
    loop = BatchLoop(
        settings=settings,
        engine=Engine(site, Decoder(serde_for_topic(registry, DETECTIONS)), ticks_topic_name(settings), book),
        publisher=Publisher(output, registry, settings.site, names),
        reader=PartitionReader(settings.bootstrap, names.detections, settings.app_id, settings.aiokafka_auth()),
        table=table, consumer=FaustConsumer(app, names.detections), output=output,
        ticks_topic=ticks_topic_name(settings), metrics=WorkerMetrics(),
        recent=RecentWindows(settings.recent_closed_s, settings.recent_closed_max), releases=releases)

    @app.agent(source, supervisor_strategy=CrashingSupervisor)
    async def apply_batches(stream: faust.StreamT) -> None:
        batches = cast(faust.Stream, stream).take_events(settings.batch_max, within=settings.batch_within_s)
        async for events in batches:
            if settings.fault_unacked_offsets:
                events = lose_for_fault_injection(app, events, names.detections, *settings.fault_unacked_offsets)
            table.note(events)
            await loop.handle(incoming(events))

    @app.timer(interval=settings.idle_check_interval_s)
    async def close_idle_windows() -> None:
        await loop.tick_idle_cameras()

    @app.on_partitions_revoked.connect
    def _on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        loop.on_revoked()
        table.forget()

    @app.on_partitions_assigned.connect
    def _on_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        loop.on_assigned()

    @app.page("/healthz")
    async def healthz(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        stalled = await loop.stalled_for()
        if stalled is not None:
            log.error("no batch processed for %.0f s while records wait: reporting unhealthy", stalled)
            return self.json({"status": "stalled", "seconds_without_progress": round(stalled)}, status=503)
        return self.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        ready = loop.consumer.ready()
        body = {"ready": ready, "partitions": sorted(loop.consumer.owned()) if ready else [],
                "cameras": loop.engine.camera_count}
        return self.json(body, status=200 if ready else 503)

    @app.page("/metrics")
    async def metrics_page(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        body, content_type = loop.metrics.exposition()
        return self.bytes(body, content_type=content_type)

    @app.page("/tables/{table}")
    async def tables_page(self: faust.web.View, request: faust.web.Request, table: str) -> faust.web.Response:
        try:
            query = Query.parse(dict(request.query))
            return self.json(table_view(table, query, loop.open_windows(), loop.recent))
        except QueryError as e:
            return self.json({"error": str(e)}, status=404 if table not in TABLES else 400)

    return Dataflow(app, loop)
