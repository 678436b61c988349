"""What a stream worker produces (partner records, events, dead letters, ticks), through librdkafka.

Faust's producer (aiokafka, in Python) costs tens of microseconds per message and a future each;
at 900 cameras a worker publishes ~2,500 events a second besides the partner records, and that was
a tenth of its CPU. `KafkaOutput` hands records to librdkafka (confluent-kafka), which batches,
compresses and sends them in its own threads; `flush` waits, off the event loop, until the broker
has acknowledged everything produced so far. Camera states still go through Faust's table (its
changelog).

Keys are partitioned with murmur2, as Kafka's Java clients and aiokafka do, so that a window
re-published after a restart lands on the partition of its first publication and replaces it on
the compacted partner topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaError, Message, Producer

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]] | None


class Output(Protocol):
    """Where the worker's results go: `produce` queues a record (returns at once), `flush` returns
    once everything produced so far is acknowledged by the broker and raises if any was refused."""

    def produce(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
                headers: Headers = None) -> None: ...

    async def flush(self) -> None: ...


class PublishError(RuntimeError):
    """The broker refused a record for good; the worker stops and its next start replays the batch."""


class KafkaOutput:
    """`Output` over a librdkafka producer (idempotent, acks from all in-sync replicas, lz4)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._refused: list[str] = []
        self._producer = Producer({
            **config,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "lz4",
            "linger.ms": 5,
            "partitioner": "murmur2_random",  # Java's and aiokafka's: a key's partition never changes
            "queue.buffering.max.messages": 1_000_000,
            "logger": logging.getLogger("privaflow.streams.output.librdkafka"),
        })

    def produce(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
                headers: Headers = None) -> None:
        kwargs: dict[str, Any] = {} if partition is None else {"partition": partition}
        while True:
            try:
                self._producer.produce(topic, value, key, headers=list(headers) if headers else None,
                                       on_delivery=self._delivered, **kwargs)
                break
            except BufferError:  # librdkafka's queue is full: let deliveries drain it
                self._producer.poll(0.05)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._refused.append(f"{msg.topic()}: {err.str()}")

    async def flush(self) -> None:
        # delivery reports are served here (flush polls), not per record: a poll per record cost
        # as much as the record
        while await asyncio.to_thread(self._producer.flush, 1.0):
            pass  # still waiting for acks (a broker that is away: its records are retried meanwhile)
        if self._refused:
            refused, self._refused = self._refused, []
            raise PublishError(f"the broker refused {len(refused)} record(s): {'; '.join(refused[:3])}")

    def close(self, timeout_s: float = 30.0) -> None:
        left = self._producer.flush(timeout_s)
        if left:
            log.warning("%d record(s) not acknowledged at shutdown; the next start publishes them again", left)
