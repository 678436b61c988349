"""The Faust application: the stream worker's whole dataflow on one screen.

    privaflow.detections.v1 ──┐                      ┌─> privaflow.partner.<table>.v1  (closed windows)
    <app>-idle-ticks ─────────┴─> apply_batches ─────┼─> privaflow.events.*.v1          (crossings, zone events)
                                    │   ▲            └─> privaflow.detections.dlq.v1    (unusable records)
                                    ▼   │
                              table camera-state (one entry per camera, changelog-backed)

    close_idle_windows (timer) ──> <app>-idle-ticks      HTTP: /healthz /readyz /metrics /tables/{table}

Records come in as raw bytes and are decoded by our AvroSerde (faust's codecs are not used).
Faust costs ~0.2 ms per message, so the agent takes batches, `streams.consume.Engine` applies a
batch in plain Python, `streams.publish.Publisher` produces the results and waits for the acks,
and only then may the touched cameras' states be written to the table: at most every
`checkpoint_s`, once per camera (`streams.consume.Checkpoints`).
With a differential-privacy partner, the book of DP releases (`streams.releases`) is read from its
topic to the end before the first batch and after every rebalance, so a window another worker (or
this one, before a crash) released is republished unchanged; the publisher writes new releases to
that topic before their partner records.
Every worker started with the same app id shares the partitions (consumer group `app_id`).
Before a batch is applied, holes the consumer left in it are read back directly (`streams.refetch`);
after the camera states, the highest applied offset of each partition goes to the same table.
A graceful stop (SIGTERM) writes what is pending before Faust stops (`streams.worker`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import faust
from faust.streams import _current_event
from faust.types import TP
from mode import CrashingSupervisor

from privaflow.schemas.codec import SchemaRegistry, serde_for_topic
from privaflow.schemas.topics import DETECTIONS, DP_RELEASES
from privaflow.streams.consume import Checkpoints, Decoder, Engine, Incoming, Outcome, upto_key
from privaflow.streams.metrics import WorkerMetrics
from privaflow.streams.publish import Publisher
from privaflow.streams.refetch import PartitionReader
from privaflow.streams.releases import BookReader, ReleaseBook
from privaflow.streams.settings import WorkerSettings
from privaflow.streams.tables import TABLES, ClosedWindow, WindowStore
from privaflow.streams.views import Query, QueryError, RecentWindows, table_view

log = logging.getLogger(__name__)


def ticks_topic_name(settings: WorkerSettings) -> str:
    return f"{settings.app_id}-idle-ticks"


@dataclass(frozen=True)
class Dataflow:
    """The faust app and the plain objects it wires together (tests and the runner reach in here)."""

    app: faust.App
    engine: Engine
    publisher: Publisher
    metrics: WorkerMetrics
    recent: RecentWindows
    table: Any
    checkpoint: Callable[[], Awaitable[None]]  # write pending camera states now (graceful stop)


FETCH_MAX_WAIT_MS = 100


def shorten_fetch_wait() -> None:
    """faust hard-codes `fetch_max_wait_ms=1500` for its consumer. A fetch for partitions without
    data (the tick topic, quiet cameras) then parks for 1.5 s, and partitions with data wait for it:
    records reached the agent 1.3-1.7 s after they were produced (a bare aiokafka consumer: 17 ms).
    There is no setting for it, so wrap faust's factory once."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    create = AIOKafkaConsumerThread._create_worker_consumer
    if getattr(create, "privaflow", False):
        return

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts its fetcher
        return consumer

    create_worker_consumer.privaflow = True  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]


def make_app(settings: WorkerSettings, partitions: int, registry: SchemaRegistry | None = None) -> Dataflow:
    """Build the worker's faust app. `partitions` must be the detections topic's partition count:
    the state table and the tick topic are co-partitioned with it."""
    site, names = settings.site, settings.topics
    registry = registry or SchemaRegistry(settings.registry_url)
    shorten_fetch_wait()
    app = faust.App(settings.app_id, **_faust_config(settings, partitions))
    metrics, recent = WorkerMetrics(), RecentWindows(settings.recent_closed_s, settings.recent_closed_max)
    book = ReleaseBook(site.site_id)
    releases = (BookReader(book, settings.bootstrap, names.prefix + DP_RELEASES, settings.aiokafka_auth())
                if any(p.dp for p in site.partners) else None)
    engine = Engine(site, Decoder(serde_for_topic(registry, DETECTIONS)), ticks_topic_name(settings), book)
    publisher = Publisher(lambda *a: app.producer.send(*a), registry, site, names)
    reader = PartitionReader(settings.bootstrap, names.detections, settings.app_id, settings.aiokafka_auth())

    source = app.topic(names.detections, ticks_topic_name(settings), key_serializer="raw", value_serializer="raw")
    cameras = app.Table("camera-state", default=None, partitions=partitions, key_type=bytes,
                        help="per-camera tracks, open windows and applied offsets (JSON)")

    @app.agent(source, supervisor_strategy=CrashingSupervisor)
    async def apply_batches(stream: faust.StreamT) -> None:
        batches = cast(faust.Stream, stream).take_events(settings.batch_max, within=settings.batch_within_s)
        async for events in batches:
            async with in_batch:
                await _apply(events)
            publications["batches"] += 1
            if publications["batches"] == settings.fault_stall_after_batches:
                log.warning("fault injection: taking no more batches after batch %d", publications["batches"])
                await asyncio.Event().wait()

    @app.timer(interval=settings.idle_check_interval_s)
    async def close_idle_windows() -> None:
        await _tick_idle_cameras()

    # ---------------------------------------------------------------- plumbing of the agent

    publications = {"n": 0, "batches": 0}
    checkpoints = Checkpoints(settings.checkpoint_s)
    last_event: dict[int, faust.EventT] = {}  # per partition, a record to bind changelog writes to
    in_batch = asyncio.Lock()  # held from a batch's first step to its last: no checkpoint in between
    progress = {"at": time.monotonic()}  # monotonic time of the last processed batch (or of the start)
    book_stale = {"yes": True}  # the release book must be read up to the topic's end before a batch

    async def _apply(events: Sequence[faust.EventT]) -> None:
        started = time.perf_counter()
        if releases is not None and book_stale["yes"]:
            n = await releases.catch_up()
            book_stale["yes"] = False
            log.info("DP release book: read %d record(s), %d window release(s) held", n, len(book))
        if settings.fault_unacked_offsets:
            events = _lose(events, *settings.fault_unacked_offsets)
        for e in events:
            last_event[e.message.partition] = e
        batch = [Incoming(e.message.topic, e.message.partition, e.message.offset, e.message.key, e.message.value)
                 for e in events]
        batch = await _fill_holes(batch)
        for schema_id in engine.decoder.unknown_ids(m.value for m in batch if m.topic == names.detections):
            await asyncio.to_thread(engine.decoder.fetch, schema_id)
        try:
            outcome = engine.apply(batch, _load)
            sent = await publisher.publish(outcome)
        except BaseException:
            engine.forget()  # the cache may be ahead of the table now; the table is the truth
            checkpoints.clear()
            raise
        if outcome.closed and settings.fault_exit_after_publish is not None:
            publications["n"] += 1
            if publications["n"] >= settings.fault_exit_after_publish:
                log.warning("fault injection: exiting after publication %d, before writing state", publications["n"])
                os._exit(75)
        checkpoints.add(outcome, time.monotonic())
        if checkpoints.due(time.monotonic()):
            _write_checkpoint()
        _record(outcome, sent, len(batch), time.perf_counter() - started)
        progress["at"] = time.monotonic()

    def _lose(events: Sequence[faust.EventT], first: int, last: int) -> list[faust.EventT]:
        """Fault injection: the detections in [first, last] never reach the batch, and Faust never counts
        them as acked (its `ack()` passes over a message already flagged), as when it loses records."""
        kept = []
        for e in events:
            m = e.message
            if m.topic == names.detections and first <= m.offset <= last:
                m.acked = True
                cast(Any, app.consumer)._unacked_messages.discard(m)
            else:
                kept.append(e)
        return kept

    def _write_checkpoint() -> None:
        _write(checkpoints.take())  # states, then the marks that vouch for them

    def _write(writes: Iterable[tuple[bytes, Any, int]]) -> None:
        # the changelog partition is taken from the current event: make it one of the partition's records
        for key, value, p in writes:
            _current_event.set(weakref.ref(last_event[p]))
            cameras[key] = value
        # reads must not stay bound to that partition: faust's RocksDB store looks a key up only in
        # the current event's partition when there is one
        _current_event.set(None)

    async def checkpoint_now() -> None:
        """Write what is pending once the batch in progress (if any) is done: on a graceful stop,
        so that the next start replays nothing."""
        async with in_batch:
            _write_checkpoint()

    async def _fill_holes(batch: list[Incoming]) -> list[Incoming]:
        resumed: dict[int, int] = {}  # partition -> where the group's consumer resumed
        # ticks count: after a restart the wake-up tick may be all that comes (`_tick_idle_cameras`)
        for p in {m.partition for m in batch} - engine.upto.keys():
            mark, resumed[p] = cameras.get(upto_key(p)), await reader.start_offset(p)
            if mark:
                start = mark["upto"] + 1
            else:  # first time on this partition: a mark for where the group is, right away,
                # because faust may commit past what it delivers before the first checkpoint is due
                start = resumed[p]
                _write([(upto_key(p), {"upto": start - 1}, p)])
            engine.upto[p] = start - 1
        refetched: list[Incoming] = []
        delivered = {m.partition for m in batch if m.topic == names.detections}
        for p, ranges in engine.holes(batch, resumed).items():
            what = "the consumer skipped" if p in delivered else "the group had committed past the last checkpoint:"
            for first, end in ranges:
                got = await reader.read(p, first, end)
                log.warning("%s[%d]: %s offsets %d..%d; read %d record(s) back directly",
                            names.detections, p, what, first, end - 1, len(got))
                refetched += got
                # Faust never delivered these, so it never acks them, and it commits a partition only
                # up to its first unacked offset: without this its commits stop there for good (a
                # 500-camera load left three partitions committed at ~500 of ~38,000). A gap is Faust's
                # own way to pass over offsets it will not see; committing past them is safe, since
                # replay starts from our marks, not from Faust's commits.
                await cast(Any, app.consumer)._add_gap(TP(names.detections, p), first, end - 1)
        metrics.refetched.inc(len(refetched))
        return engine.merge(batch, refetched)  # also puts what the consumer delivered out of order in order

    def _load(key: bytes) -> dict[str, Any] | None:
        value: dict[str, Any] | None = cameras.get(key)
        return value

    def _record(outcome: Outcome, sent: dict[str, int], n: int, seconds: float) -> None:
        now_ms = time.time() * 1000.0
        for ts in outcome.frame_ts:
            metrics.latency.observe(max(0.0, (now_ms - ts) / 1000.0))
        m = metrics
        m.batch_size.observe(n)
        m.batch_seconds.observe(seconds)
        m.records.labels("applied").inc(outcome.applied)
        m.records.labels("replayed").inc(outcome.skipped)
        m.records.labels("dead_letter").inc(len(outcome.dead))
        m.detections.inc(outcome.detections)
        for table, k in outcome.late.items():
            m.late.labels(table).inc(k)
        for d in outcome.dead:
            m.dead_letters.labels(d.kind).inc()
        for topic, k in sent.items():
            m.published.labels(topic).inc(k)
        for (partner, table), eps in outcome.released.spent.items():
            m.dp_epsilon.labels(partner, table).inc(eps)
        for (partner, table), n in outcome.released.withheld.items():
            m.dp_withheld.labels(partner, table).inc(n)
        by_table = Counter(c.table for c in outcome.closed)
        for table, k in by_table.items():
            idle = outcome.idle_closed.get(table, 0)
            m.windows_closed.labels(table, "watermark").inc(k - idle)
            m.windows_closed.labels(table, "idle").inc(idle)
        m.cameras.set(engine.camera_count)
        recent.add(outcome.closed)
        if outcome.dead:
            log.warning("%d record(s) sent to the dead-letter topic (%s)", len(outcome.dead),
                        ", ".join(sorted({d.kind for d in outcome.dead})))

    # ---------------------------------------------------------------- idle cameras and rebalances

    seeded = {"generation": -1}

    def _owned() -> set[int]:
        return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == names.detections}

    async def _tick_idle_cameras() -> None:
        if not _ready():
            return
        owned, now = _owned(), time.monotonic()
        if seeded["generation"] != app.consumer_generation_id:
            engine.seed_activity(((k, v) for k, v in cameras.items()), owned, now)
            seeded["generation"] = app.consumer_generation_id
            for p in owned:  # a wake-up per partition, so that records committed past the last mark
                # are read back even if none follow them (`_fill_holes`); no camera key: applies nothing
                await app.producer.send(ticks_topic_name(settings), None, b"", p, None, None)
        for key, partition, tick in engine.idle_ticks(now, settings.idle_timeout_s, owned, _load):
            await app.producer.send(ticks_topic_name(settings), key, tick.encode(), partition, None, None)

    def _backlog(partition: int) -> bool:
        tp = TP(names.detections, partition)
        try:
            end = app.consumer.highwater(tp)
        except Exception:  # no fetch for this partition yet
            return True
        if end is None:
            return True
        seen = engine.positions.get(partition)
        if seen is None:  # nothing read since (re)start: the committed offset is where reading resumes
            committed = cast(Any, app.consumer)._committed_offset.get(tp)
            seen = committed - 1 if committed is not None else -1
        return bool(end > seen + 1)

    engine.backlog = _backlog

    @app.on_partitions_revoked.connect
    def _forget_on_revoke(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        engine.forget()
        checkpoints.clear()  # not written: the next owner replays from the partition's last mark
        last_event.clear()
        progress["at"] = time.monotonic()  # recovery after a rebalance is not a stall

    @app.on_partitions_assigned.connect
    def _restart_the_stall_clock(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        progress["at"] = time.monotonic()  # nor is waiting for the group to form (a dead member's session)
        # cameras new to this worker may have windows their last owner released after our last read
        book_stale["yes"] = True

    # ---------------------------------------------------------------- HTTP views

    def _ready() -> bool:
        recovery = cast(Any, app.tables).recovery
        return bool(recovery.completed.is_set() and not app.rebalancing and not app.in_recovery)

    def _open_windows() -> Iterable[ClosedWindow]:
        owned, cached = _owned(), dict(engine.cached())
        for st in cached.values():  # newer than the table until the next checkpoint
            yield from st.windows.open_windows()
        for key, state in list(cameras.items()):
            if key not in cached and state and any(int(p) in owned for p in state.get("offsets", {})):
                yield from WindowStore.from_state(site, state["windows"]).open_windows()

    async def _stalled_for() -> float | None:
        """Seconds without a processed batch while the group has records waiting, or None. Checked
        against the broker (not this worker's consumer, which may be what is stuck), and only once
        the worker has been quiet for `stall_timeout_s`."""
        quiet = time.monotonic() - progress["at"]
        if quiet < settings.stall_timeout_s:
            return None
        try:
            # faust's own committed offsets can stall behind records it never delivered (they were
            # read back directly), so what this worker applied counts first
            # all partitions if none owned; bounded: a probe must answer, and the reader may be busy
            # waiting for the broker on behalf of the agent
            lag = await asyncio.wait_for(reader.lag(_owned(), dict(engine.upto)), 10.0)
        except Exception as e:  # broker unreachable: not this process's fault, restarting will not help
            log.warning("liveness check could not read the group's lag: %s", e)
            return None
        return quiet if lag > 0 else None

    @app.page("/healthz")
    async def healthz(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        stalled = await _stalled_for()
        if stalled is not None:
            log.error("no batch processed for %.0f s while records wait: reporting unhealthy", stalled)
            return self.json({"status": "stalled", "seconds_without_progress": round(stalled)}, status=503)
        return self.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        ready = _ready()
        body = {"ready": ready, "partitions": sorted(_owned()) if ready else [], "cameras": engine.camera_count}
        return self.json(body, status=200 if ready else 503)

    @app.page("/metrics")
    async def metrics_page(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        body, content_type = metrics.exposition()
        return self.bytes(body, content_type=content_type)

    @app.page("/tables/{table}")
    async def tables_page(self: faust.web.View, request: faust.web.Request, table: str) -> faust.web.Response:
        try:
            query = Query.parse(dict(request.query))
            return self.json(table_view(table, query, _open_windows(), recent))
        except QueryError as e:
            status = 404 if table not in TABLES else 400
            return self.json({"error": str(e)}, status=status)

    return Dataflow(app, engine, publisher, metrics, recent, cameras, checkpoint_now)


def _faust_config(s: WorkerSettings, partitions: int) -> dict[str, Any]:
    cfg: dict[str, Any] = dict(
        broker=s.faust_broker(),
        store="rocksdb://" if s.store == "rocksdb" else "memory://",
        datadir=str(s.data_dir),
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=partitions,
        topic_replication_factor=s.replication_factor,
        table_standby_replicas=s.standby_replicas,
        consumer_auto_offset_reset="earliest",
        web_enabled=True,
        web_port=s.web_port,
        web_bind=s.web_host,
        web_in_thread=False,
        producer_acks=-1,
        # camera state is ~10 KB of JSON per camera per batch on the changelog; lz4 cuts the bytes the
        # event loop has to push through its socket several times over (aiokafka's lz4 extra, cramjam)
        producer_compression_type="lz4",
    )
    creds = s.faust_credentials()
    if creds is not None:
        cfg["broker_credentials"] = creds
    if s.group_instance_id:
        cfg["consumer_group_instance_id"] = s.group_instance_id
    return cfg
