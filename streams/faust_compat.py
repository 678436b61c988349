"""The one door to faust-streaming: every private name, monkeypatch and workaround the worker needs.

The rest of `streams/` talks to the small protocols of `streams.loop` (`StateTable`,
`GroupConsumer`); this module implements them on Faust 0.15.x (pinned in pyproject.toml). Each
workaround says what it does, why, and which upstream issue it stands in for, and
`tests/streams/test_faust_compat.py` has a test per workaround that fails when an upgrade changes
the behaviour it relies on:

- `shorten_fetch_wait`: wraps `AIOKafkaConsumerThread._create_worker_consumer` (1500 ms fetch wait
  hard-coded; no upstream issue found).
- `FaustTable.write`: binds `faust.streams._current_event` so a write from a batch knows its
  changelog partition (faust-streaming #497: tables cannot be written from `take()`).
- `FaustTable.get`/`items`: unbinds it, since the RocksDB store then looks a key up in one partition
  only (#129/#130 fixed that for global tables only).
- `FaustConsumer.pass_over`: `Consumer._add_gap`, so commits pass records read back directly (#606:
  commits stop at the first unacked offset).
- `FaustConsumer.committed`: `Consumer._committed_offset` (no public accessor).
- `lose_for_fault_injection`: `Consumer._unacked_messages`, `Message.acked` (#606).
- `Worker._stop_on_signal`: mode's SIGTERM coroutine, to write pending state first (#254: no async
  shutdown hook).
- `Worker.on_setup_root_logger`: keeps the root logger's level (the spinner sets DEBUG; no upstream
  issue found).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, cast

import faust
from faust.streams import _current_event
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP

from privaflow.streams.consume import Incoming
from privaflow.streams.settings import WorkerSettings

log = logging.getLogger(__name__)

FETCH_MAX_WAIT_MS = 100


def shorten_fetch_wait() -> None:
    """faust hard-codes `fetch_max_wait_ms=1500` for its consumer. A fetch for partitions without
    data (the tick topic, quiet cameras) then parks for 1.5 s, and partitions with data wait for it:
    records reached the agent 1.3-1.7 s after they were produced (a bare aiokafka consumer: 17 ms).
    There is no setting for it (no upstream issue found), so faust's factory is wrapped once and
    sets aiokafka's attribute, which the consumer reads when it starts its fetcher."""
    create = AIOKafkaConsumerThread._create_worker_consumer
    if getattr(create, "privaflow", False):
        return

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer

    create_worker_consumer.privaflow = True  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]


def faust_config(s: WorkerSettings, partitions: int) -> dict[str, Any]:
    """`faust.App` settings for a worker."""
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
        # Faust's producer now carries the camera states only (~6 KB of JSON per camera, written in
        # bursts at each checkpoint): lz4 cuts the bytes the event loop has to push through its
        # socket several times over (aiokafka's lz4 extra, cramjam), and batches of up to 1 MB
        # gathered for 10 ms make a few produce requests of a burst instead of one per two states
        producer_compression_type="lz4",
        producer_linger=0.01,
        producer_max_batch_size=1 << 20,
    )
    creds = s.faust_credentials()
    if creds is not None:
        cfg["broker_credentials"] = creds
    if s.group_instance_id:
        cfg["consumer_group_instance_id"] = s.group_instance_id
    return cfg


class FaustTable:
    """`streams.loop.StateTable` over a Faust table keyed by camera id (bytes), values JSON."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self._last_event: dict[int, Any] = {}  # partition -> a record of it, to bind changelog writes to

    def note(self, events: Sequence[Any]) -> None:
        """Remember, per partition, one event of the batch being taken."""
        for e in events:
            self._last_event[e.message.partition] = e

    def forget(self) -> None:
        self._last_event.clear()

    def get(self, key: bytes) -> dict[str, Any] | None:
        # faust's RocksDB store looks a key up only in the current event's partition when there is
        # one (faust-streaming #129/#130 fixed that for global tables only), and the batch's events
        # leave one behind: unbind before reading
        _current_event.set(None)
        value: dict[str, Any] | None = self.table.get(key)
        return value

    def items(self) -> Iterable[tuple[bytes, dict[str, Any]]]:
        _current_event.set(None)
        return list(self.table.items())

    def write(self, key: bytes, value: dict[str, Any], partition: int) -> None:
        # faust takes a write's changelog partition (and RocksDB's) from the current event, and has
        # none outside per-event iteration (faust-streaming #497: writing to a table from `take()`
        # raises); bind one of the partition's records while writing
        _current_event.set(weakref.ref(self._last_event[partition]))
        try:
            self.table[key] = value
        finally:
            _current_event.set(None)


class FaustConsumer:
    """`streams.loop.GroupConsumer` over a Faust app's consumer, for the detections topic."""

    def __init__(self, app: faust.App, topic: str) -> None:
        self.app, self.topic = app, topic

    def owned(self) -> set[int]:
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == self.topic}

    def generation(self) -> int:
        return int(self.app.consumer_generation_id)

    def ready(self) -> bool:
        recovery = cast(Any, self.app.tables).recovery
        return bool(recovery.completed.is_set() and not self.app.rebalancing and not self.app.in_recovery)

    def end_offset(self, partition: int) -> int | None:
        try:
            end = self.app.consumer.highwater(TP(self.topic, partition))
        except Exception:  # no fetch for this partition yet
            return None
        return None if end is None else int(end)

    def committed(self, partition: int) -> int | None:
        # no public accessor for what faust last committed (aiokafka's `committed` asks the broker)
        value = cast(Any, self.app.consumer)._committed_offset.get(TP(self.topic, partition))
        return None if value is None else int(value)

    async def pass_over(self, partition: int, first: int, last: int) -> None:
        # faust commits a partition only up to its first unacked offset (faust-streaming #606): a
        # gap is its own way to pass over offsets it will not deliver
        await cast(Any, self.app.consumer)._add_gap(TP(self.topic, partition), first, last)


def incoming(events: Sequence[Any]) -> list[Incoming]:
    """Faust events -> the engine's records."""
    return [Incoming(m.topic, m.partition, m.offset, m.key, m.value) for m in (e.message for e in events)]


def lose_for_fault_injection(app: faust.App, events: Sequence[Any], topic: str, first: int, last: int) -> list[Any]:
    """Fault injection: the records of `topic` at offsets first..last never reach the batch, and
    Faust never counts them as acked (its `ack()` passes over a message already flagged acked), as
    when it loses records it delivered (faust-streaming #606 is how that stalls its commits)."""
    kept = []
    for e in events:
        m = e.message
        if m.topic == topic and first <= m.offset <= last:
            m.acked = True
            cast(Any, app.consumer)._unacked_messages.discard(m)
        else:
            kept.append(e)
    return kept


class Worker(faust.Worker):
    """faust's worker with a graceful stop that writes pending state first and a root logger that
    keeps the chosen level."""

    def __init__(self, *args: Any, checkpoint: Callable[[], Awaitable[None]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._checkpoint = checkpoint

    async def _stop_on_signal(self, signal: signal.Signals) -> None:
        # before faust stops anything, while tables and producer still take writes: mode's SIGTERM
        # handler is the one place early enough, and `on_before_shutdown` is no coroutine
        # (faust-streaming #254)
        if self._checkpoint is not None:
            try:
                await asyncio.wait_for(self._checkpoint(), timeout=30)
            except Exception:  # the stop must go on; the next start replays from the last checkpoint
                log.exception("could not write the last checkpoint on the way out")
        await super()._stop_on_signal(signal)

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        # Faust's progress spinner sets the root logger to DEBUG, so every debug call in aiokafka
        # and faust builds a log record (~5% of the worker's CPU at load); keep the chosen level
        logger.setLevel(level)
