"""Read back the records the worker's consumer skipped.

faust-streaming's consumer can skip records when a worker (re)starts: its fetcher delivers while it
seeks back to the committed offsets, and what was prefetched in between is dropped (seen here as a
hole of ~50 records after a SIGKILL; faust-streaming issues #596 and #221). The engine finds the
holes (`streams.consume.Engine.holes`); this reads exactly those offsets with a plain
confluent-kafka consumer, assigned (not subscribed: it joins no group and commits nothing).

Blocking calls: the worker runs them in a thread.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.consume import Incoming


class RefetchError(RuntimeError):
    """A hole could not be read back in time; the worker stops rather than lose it."""


class PartitionReader:
    """Reads offset ranges of one topic's partitions; `start_offset` says where a partition with no
    applied-offset mark in the state begins (the group's committed offset, else the log start)."""

    def __init__(self, config: Mapping[str, Any], topic: str, group_id: str, timeout_s: float = 60.0) -> None:
        self.config, self.topic, self.group_id, self.timeout_s = dict(config), topic, group_id, timeout_s
        self._consumer: Consumer | None = None

    def _client(self) -> Consumer:
        if self._consumer is None:
            # a group id is required by librdkafka; the reader never subscribes or commits with it
            self._consumer = Consumer({**self.config, "group.id": f"{self.group_id}-refetch",
                                       "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        return self._consumer

    def start_offset(self, partition: int) -> int:
        admin = AdminClient(self.config)
        request = ConsumerGroupTopicPartitions(self.group_id, [TopicPartition(self.topic, partition)])
        result = admin.list_consumer_group_offsets([request], request_timeout=self.timeout_s)
        committed = result[self.group_id].result(timeout=self.timeout_s).topic_partitions[0].offset
        if committed >= 0:
            return int(committed)
        low, _ = self._client().get_watermark_offsets(TopicPartition(self.topic, partition), timeout=self.timeout_s)
        return int(low)

    def lag(self, partitions: Collection[int] = (), applied: Mapping[int, int] | None = None) -> int:
        """Records after `applied` (partition -> highest applied offset; else `start_offset`) in
        `partitions` (default: all), with end offsets from the broker itself rather than from the
        worker's consumer, which may be the thing that is stuck."""
        applied = applied or {}
        if not partitions:
            partitions = list(AdminClient(self.config).list_topics(self.topic, timeout=self.timeout_s)
                              .topics[self.topic].partitions)
        total = 0
        for p in partitions:
            _, high = self._client().get_watermark_offsets(TopicPartition(self.topic, p), timeout=self.timeout_s)
            start = applied[p] + 1 if p in applied else self.start_offset(p)
            total += max(0, high - start)
        return total

    def read(self, partition: int, first: int, end: int) -> list[Incoming]:
        """Records with first <= offset < end (offsets that no longer exist are simply absent)."""
        c = self._client()
        c.assign([TopicPartition(self.topic, partition, first)])
        out: list[Incoming] = []
        deadline = time.monotonic() + self.timeout_s
        try:
            while True:
                position = c.position([TopicPartition(self.topic, partition)])[0].offset
                if position >= end:
                    return out
                if time.monotonic() > deadline:
                    raise RefetchError(f"{self.topic}[{partition}]: read back offsets {first}..{end - 1} only up to "
                                       f"{position - 1} in {self.timeout_s:.0f} s")
                for m in c.consume(500, 0.5):
                    if m.error() is not None:
                        raise RefetchError(f"{self.topic}[{partition}]: {m.error()}")
                    offset = m.offset()
                    if offset is not None and first <= offset < end:
                        out.append(Incoming(self.topic, partition, offset, m.key(), m.value()))
        except KafkaException as e:
            raise RefetchError(f"{self.topic}[{partition}]: {e}") from e
        finally:
            c.unassign()

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
