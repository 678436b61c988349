"""One test per workaround in `streams.faust_compat` (faust-streaming 0.15.x): each fails when a faust
upgrade changes the behaviour the worker relies on, and says what to look at. Unit tests: a faust
app that is built but never started (no broker), real faust objects otherwise. Whether the whole
worker still loses and double counts nothing is for tests/streams/test_worker_integration.py and
tests/faults.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.events import Event
from faust.streams import _current_event
from faust.types import TP
from faust.types.tuples import Message

from privaflow.streams import faust_compat
from privaflow.streams.faust_compat import FaustConsumer, FaustTable, Worker, lose_for_fault_injection


@pytest.fixture
def app(tmp_path: Path) -> Iterator[faust.App]:
    app = faust.App(f"compat-{uuid.uuid4().hex[:8]}", broker="kafka://127.0.0.1:1", store="memory://",
                    datadir=str(tmp_path))
    app.topic("src", partitions=4)
    yield app
    _current_event.set(None)


def _event(app: faust.App, topic: str, partition: int, offset: int = 0) -> Event:
    message = Message(topic, partition, offset, 0.0, 0, [], b"k", b"v", None, tp=TP(topic, partition))
    return Event(app, b"k", b"v", {}, message)


def _table(app: faust.App) -> tuple[Any, list[int]]:
    """A table whose changelog sends are recorded (partition) instead of produced."""
    table = app.Table("state", partitions=4, key_type=bytes, default=None)
    sent: list[int] = []

    def send_changelog(partition: int, *args: Any, **kwargs: Any) -> Any:
        sent.append(partition)
        return SimpleNamespace(message=SimpleNamespace(partition=partition))

    table.send_changelog = send_changelog
    return table, sent


def test_the_worker_consumer_waits_100_ms_for_a_fetch_not_1500(app: faust.App) -> None:
    """faust builds its consumer with fetch_max_wait_ms=1500; records then reached the agent 1.3-1.7 s
    late. If this fails, faust builds its consumer elsewhere (or lets the wait be set): look there."""
    faust_compat.shorten_fetch_wait()
    faust_compat.shorten_fetch_wait()  # idempotent

    async def build() -> int:
        consumer = app.consumer._thread._create_worker_consumer(app.transport)  # type: ignore[attr-defined]
        return int(consumer._fetch_max_wait_ms)

    assert asyncio.run(build()) == faust_compat.FETCH_MAX_WAIT_MS == 100


def test_a_write_from_a_batch_goes_to_the_changelog_partition_it_is_given(app: faust.App) -> None:
    """faust takes a table write's changelog partition from the current event (#497): the adapter
    binds a record of the named partition while writing, and unbinds after."""
    table, sent = _table(app)
    adapter = FaustTable(table)
    adapter.note([_event(app, "src", 3), _event(app, "src", 1)])
    adapter.write(b"campus", {"n": 1}, 3)
    adapter.write(b"gate", {"n": 2}, 1)
    assert sent == [3, 1]
    assert _current_event.get(None) is None, "reads after a write must not stay bound to its partition"
    with pytest.raises(KeyError):
        adapter.write(b"street", {"n": 3}, 2)  # no record of partition 2 in the batch: never a guess


def test_reads_find_a_key_whatever_partition_the_batch_left_bound(app: faust.App, tmp_path: Path) -> None:
    """faust's RocksDB store looks a key up in the current event's partition only (#129/#130 fixed
    that for global tables only); the adapter's reads unbind first."""
    rocks = faust.App(f"compat-{uuid.uuid4().hex[:8]}", broker="kafka://127.0.0.1:1", store="rocksdb://",
                      datadir=str(tmp_path / "rocks"))
    rocks.topic("src", partitions=4)
    table, _ = _table(rocks)
    adapter = FaustTable(table)
    adapter.note([_event(rocks, "src", 3)])
    adapter.write(b"campus", {"n": 1}, 3)
    other = _event(rocks, "src", 1)
    _current_event.set(weakref.ref(other))
    assert table.get(b"campus") is None, ("faust now finds keys outside the bound partition: FaustTable.get "
                                          "no longer needs to unbind (the test of the adapter below still holds)")
    _current_event.set(weakref.ref(other))
    assert adapter.get(b"campus") == {"n": 1}


def test_records_read_back_become_a_gap_faust_commits_past(app: faust.App) -> None:
    """faust commits a partition only up to its first unacked offset (#606); `pass_over` adds a gap,
    and faust's own commit arithmetic then goes past it."""
    consumer: Any = app.consumer
    tp = TP("det", 2)
    consumer._committed_offset[tp] = 100
    acked = [100, 101, 102, 103, 104, 110, 111, 112]

    def new_offset() -> int:
        consumer._acked[tp] = list(acked)
        consumer._acked_index[tp] = set(acked)
        return int(consumer._new_offset(tp))

    assert new_offset() == 105, "without a gap, commits stop at the first offset never acked"
    asyncio.run(FaustConsumer(app, "det").pass_over(2, 105, 109))
    assert new_offset() == 113
    assert FaustConsumer(app, "det").committed(2) == 100
    assert FaustConsumer(app, "det").committed(5) is None


def test_fault_injection_loses_a_record_faust_then_never_acks(app: faust.App) -> None:
    """`PRIVAFLOW_FAULT_UNACKED_OFFSETS` relies on faust's `ack()` passing over a message flagged
    acked, and on its set of unacked messages (#606)."""
    consumer: Any = app.consumer
    lost, kept = _event(app, "det", 0, 5), _event(app, "det", 0, 6)
    consumer._unacked_messages.add(lost.message)
    assert lose_for_fault_injection(app, [lost, kept], "det", 5, 5) == [kept]
    assert lost.message not in consumer._unacked_messages
    assert consumer.ack(lost.message) is False, "faust acks a message flagged acked again: the fault is gone"


def test_sigterm_writes_the_pending_checkpoint_before_faust_stops(app: faust.App) -> None:
    """mode's SIGTERM handler runs `_stop_on_signal` (there is no async shutdown hook, #254); the
    worker's override writes pending state first, while tables and producer still take writes."""
    calls: list[str] = []

    async def checkpoint() -> None:
        calls.append("checkpoint")

    async def stop() -> None:
        calls.append("stop")

    loop = asyncio.new_event_loop()
    try:
        worker = Worker(app, loglevel="warning", quiet=True, checkpoint=checkpoint, loop=loop)
        worker.stop = stop  # type: ignore[method-assign]
        worker._starting_fut = None
        worker._on_sigterm()
        loop.run_until_complete(worker._signal_stop_future)
    finally:
        loop.close()
    assert calls == ["checkpoint", "stop"]


def test_the_root_logger_keeps_the_chosen_level(app: faust.App) -> None:
    """faust's progress spinner sets the root logger to DEBUG, so every debug call in aiokafka and
    faust builds a record (~5% of the worker's CPU)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    root.addHandler(logging.NullHandler())
    try:
        faust.Worker(app, loglevel="warning", quiet=False).on_setup_root_logger(root, logging.WARNING)
        assert root.level == logging.DEBUG, "faust no longer lowers the root level: the override can go"
        Worker(app, loglevel="warning", quiet=False).on_setup_root_logger(root, logging.WARNING)
        assert root.level == logging.WARNING
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers


def test_private_faust_names_are_reached_from_the_adapter_only() -> None:
    """`grep faust streams/`: outside streams/faust_compat.py no private faust name is touched."""
    import re

    streams = Path(faust_compat.__file__).parent
    private = re.compile(r"\b(_current_event|_unacked_messages|_add_gap|_committed_offset|_create_worker_consumer|"
                         r"_stop_on_signal|_fetch_max_wait_ms|_acked\b|_thread\b)")
    offenders = [f"{p.name}:{i}" for p in sorted(streams.glob("*.py")) if p.name != "faust_compat.py"
                 for i, line in enumerate(p.read_text().splitlines(), 1) if private.search(line)]
    assert offenders == []
