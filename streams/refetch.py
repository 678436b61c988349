"""Read back the records the worker's consumer skipped.

faust-streaming's consumer can skip records when a worker (re)starts: its fetcher delivers while it
seeks back to the committed offsets, and what was prefetched in between is dropped (seen here as a
hole of ~50 records after a SIGKILL; faust-streaming issues #596 and #221). A crash between two
checkpoints leaves the same kind of hole above the last written mark. The engine finds the holes
(`streams.consume.Engine.holes`); this reads exactly those offsets with a plain aiokafka consumer,
assigned (not subscribed: it joins no group and commits nothing).

aiokafka, not confluent-kafka: librdkafka's consumer segfaulted here (in its rdk:main thread) when
it was asked to read while the broker was down, taking the worker with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from privaflow.streams.consume import Incoming

log = logging.getLogger(__name__)


class RefetchError(RuntimeError):
    """A hole could not be read back in time; the worker stops rather than lose it."""


class PartitionReader:
    """Reads offset ranges of one topic's partitions; `start_offset` says where a partition with no
    applied-offset mark in the state begins (the group's committed offset, else the log start).
    One operation at a time; each retries while the broker is away and gives up with `RefetchError`
    (the worker stops, its supervisor restarts it) after `timeout_s`."""

    def __init__(self, bootstrap: str, topic: str, group_id: str, auth: Mapping[str, Any] | None = None,
                 timeout_s: float = 300.0) -> None:
        self.bootstrap, self.topic, self.group_id, self.timeout_s = bootstrap, topic, group_id, timeout_s
        self.auth = dict(auth or {})
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._lock = asyncio.Lock()

    async def _clients(self) -> tuple[AIOKafkaConsumer, AIOKafkaAdminClient]:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                        auto_offset_reset="earliest", **self.auth)
            await consumer.start()
            self._consumer = consumer
        if self._admin is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **self.auth)
            await admin.start()
            self._admin = admin
        return self._consumer, self._admin

    async def _run(self, what: str, step: Any) -> Any:
        """`step()` until it succeeds, retrying what the broker refuses or times out (it may be down
        for a while: the worker waits for it rather than crash) until `timeout_s` have passed."""
        loop = asyncio.get_running_loop()
        deadline, backoff = loop.time() + self.timeout_s, 1.0
        async with self._lock:
            while True:
                try:
                    return await asyncio.wait_for(step(), max(1.0, deadline - loop.time()))
                except (KafkaError, TimeoutError) as e:
                    if loop.time() + backoff >= deadline:
                        raise RefetchError(f"{self.topic}: {what} did not succeed in {self.timeout_s:.0f} s "
                                           f"({type(e).__name__}: {e})") from None
                    log.warning("%s: %s failed (%s); retrying in %.0f s", self.topic, what, type(e).__name__, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10.0)

    async def start_offset(self, partition: int) -> int:
        async def step() -> int:
            consumer, admin = await self._clients()
            tp = TopicPartition(self.topic, partition)
            committed = (await admin.list_consumer_group_offsets(self.group_id, partitions=[tp])).get(tp)
            if committed is not None and committed.offset >= 0:
                return int(committed.offset)
            return int((await consumer.beginning_offsets([tp]))[tp])

        result: int = await self._run(f"the start offset of partition {partition}", step)
        return result

    async def lag(self, partitions: Collection[int] = (), applied: Mapping[int, int] | None = None) -> int:
        """Records after `applied` (partition -> highest applied offset; else `start_offset`) in
        `partitions` (default: all), with end offsets from the broker itself rather than from the
        worker's consumer, which may be the thing that is stuck."""
        applied = applied or {}

        async def ends() -> dict[int, int]:
            consumer, _ = await self._clients()
            wanted = list(partitions)
            if not wanted:
                await consumer.topics()  # fresh metadata
                wanted = sorted(consumer.partitions_for_topic(self.topic) or ())
            got = await consumer.end_offsets([TopicPartition(self.topic, p) for p in wanted])
            return {tp.partition: int(end) for tp, end in got.items()}

        total = 0
        for p, end in (await self._run("end offsets", ends)).items():
            start = applied[p] + 1 if p in applied else await self.start_offset(p)
            total += max(0, end - start)
        return total

    async def read(self, partition: int, first: int, end: int) -> list[Incoming]:
        """Records with first <= offset < end (offsets that no longer exist are simply absent)."""
        async def step() -> list[Incoming]:
            consumer, _ = await self._clients()
            tp = TopicPartition(self.topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, first)
            out: list[Incoming] = []
            try:
                while await consumer.position(tp) < end:
                    got = await consumer.getmany(tp, timeout_ms=500, max_records=500)
                    out += [Incoming(self.topic, partition, m.offset, m.key, m.value)
                            for m in got.get(tp, ()) if first <= m.offset < end]
            finally:
                consumer.assign([])
            return out

        result: list[Incoming] = await self._run(f"reading back partition {partition} offsets {first}..{end - 1}",
                                                 step)
        return result

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._admin is not None:
            await self._admin.close()
            self._admin = None
