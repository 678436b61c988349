"""In-memory stand-ins for what `streams.loop.BatchLoop` talks to (unit tests: no broker): a topic
log, the state table, the consumer group's member, the reader of skipped records and the producer.
With them the tests drive the worker's real batch loop, records in and partner records out.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from privaflow.schemas.codec import AvroSerde
from privaflow.schemas.detections import batch_records
from privaflow.schemas.site import SiteConfig
from privaflow.schemas.topics import DETECTIONS, OPERATOR_PREFIX, all_topics, topic
from privaflow.streams.consume import Decoder, Engine, Incoming
from privaflow.streams.loop import BatchLoop
from privaflow.streams.publish import Publisher
from privaflow.streams.settings import TopicNames, WorkerSettings
from tests.streams.harness import FRAMES_PER_RECORD, FakeRegistry

TICKS = "test-idle-ticks"


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def encode_log(frames: Iterable[dict[str, Any]], registry: FakeRegistry, partition_of: Mapping[str, int],
               per_record: int = FRAMES_PER_RECORD) -> list[Incoming]:
    """Frames of any cameras in capture order -> DetectionBatch records as they sit on the
    detections topic: each camera on its partition, offsets from 0 per partition."""
    serde = AvroSerde(registry, topic(DETECTIONS).value_schema or "", topic(DETECTIONS).value_subject)  # type: ignore[arg-type]
    offsets: dict[int, int] = {}
    out = []
    for r in batch_records(frames, per_record):
        p = partition_of[r["camera_id"]]
        out.append(Incoming(DETECTIONS, p, offsets.get(p, 0), r["camera_id"].encode(), serde.encode(r)))
        offsets[p] = offsets.get(p, 0) + 1
    return out


class MemoryTable:
    """The state table: values kept as JSON (as the changelog would), every write with its partition."""

    def __init__(self) -> None:
        self.data: dict[bytes, dict[str, Any]] = {}
        self.writes: list[tuple[bytes, int]] = []

    def get(self, key: bytes) -> dict[str, Any] | None:
        value = self.data.get(key)
        return None if value is None else json.loads(json.dumps(value))

    def items(self) -> Iterable[tuple[bytes, dict[str, Any]]]:
        return [(k, json.loads(json.dumps(v))) for k, v in self.data.items()]

    def write(self, key: bytes, value: dict[str, Any], partition: int) -> None:
        self.data[key] = json.loads(json.dumps(value))
        self.writes.append((key, partition))


@dataclass
class MemoryConsumer:
    """The group member: owns partitions; the ends and commits come from the log it reads."""

    log: list[Incoming]
    partitions: set[int]
    committed_at: dict[int, int] = field(default_factory=dict)
    gen: int = 1
    passed_over: list[tuple[int, int, int]] = field(default_factory=list)

    def owned(self) -> set[int]:
        return set(self.partitions)

    def generation(self) -> int:
        return self.gen

    def ready(self) -> bool:
        return True

    def end_offset(self, partition: int) -> int | None:
        return 1 + max((m.offset for m in self.log if m.partition == partition), default=-1)

    def committed(self, partition: int) -> int | None:
        return self.committed_at.get(partition)

    async def pass_over(self, partition: int, first: int, last: int) -> None:
        self.passed_over.append((partition, first, last))


@dataclass
class MemoryReader:
    """Reads the log directly, as `streams.refetch.PartitionReader` reads the broker."""

    log: list[Incoming]
    consumer: MemoryConsumer
    reads: list[tuple[int, int, int]] = field(default_factory=list)

    async def start_offset(self, partition: int) -> int:
        return self.consumer.committed_at.get(partition, 0)

    async def read(self, partition: int, first: int, end: int) -> list[Incoming]:
        self.reads.append((partition, first, end))
        return [m for m in self.log if m.partition == partition and first <= m.offset < end]

    async def lag(self, partitions: Collection[int] = (), applied: Mapping[int, int] | None = None) -> int:
        applied = applied or {}
        return sum(max(0, (self.consumer.end_offset(p) or 0) - applied.get(p, -1) - 1) for p in partitions)


class Sent:
    """The producer (`streams.output.Output`): every record produced, acknowledged at once."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None, int | None, Any]] = []
        self.flushes = 0

    def produce(self, topic_name: str, key: bytes | None, value: bytes | None, partition: int | None = None,
                headers: Any = None) -> None:
        self.records.append((topic_name, key, value, partition, headers))

    async def flush(self) -> None:
        self.flushes += 1

    def on(self, topic_name: str) -> list[tuple[bytes | None, bytes | None, int | None, Any]]:
        return [(k, v, p, h) for t, k, v, p, h in self.records if t == topic_name]

    def partner(self, registry: FakeRegistry) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        """Partner topic -> (key, decoded value) in the order published (operator topics left out)."""
        out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for t in all_topics():
            if t.partner_table is None or t.name.startswith(OPERATOR_PREFIX):  # the operator's own view
                continue
            serde = AvroSerde(registry, t.value_schema or "", t.value_subject)  # type: ignore[arg-type]
            out[t.name] = [(k.decode(), serde.decode(v)) for k, v, _, _ in self.on(t.name) if k and v]
        return out


def make_loop(site: SiteConfig, log: list[Incoming], registry: FakeRegistry, *, table: MemoryTable | None = None,
              consumer: MemoryConsumer | None = None, clock: Clock | None = None, sent: Sent | None = None,
              checkpoint_s: float = 0.0, idle_timeout_s: float = 30.0) -> BatchLoop:
    """A worker's batch loop over in-memory parts (a fresh one per "process": pass the table on to
    restart)."""
    settings = WorkerSettings(site, topics=TopicNames(""), checkpoint_s=checkpoint_s, idle_timeout_s=idle_timeout_s)
    consumer = consumer or MemoryConsumer(log, {m.partition for m in log})
    sent = sent if sent is not None else Sent()
    decoder = Decoder(AvroSerde(registry, topic(DETECTIONS).value_schema or "",  # type: ignore[arg-type]
                                topic(DETECTIONS).value_subject))
    return BatchLoop(settings=settings, engine=Engine(site, decoder, TICKS),
                     publisher=Publisher(sent, registry, site, settings.topics),  # type: ignore[arg-type]
                     reader=MemoryReader(log, consumer), table=table if table is not None else MemoryTable(),
                     consumer=consumer, output=sent, ticks_topic=TICKS, clock=clock or Clock())


async def close_idle(loop: BatchLoop, clock: Clock, sent: Sent) -> None:
    """Let every camera go silent past the idle timeout and feed the ticks the loop sends back to
    it, as they would come round through the tick topic: the last windows close."""
    before = len(sent.on(TICKS))
    clock.now += 3600.0  # past every window's end and grace, whatever the window lengths
    await loop.tick_idle_cameras()
    ticks = [Incoming(TICKS, p or 0, before + i, k, v) for i, (k, v, p, _) in enumerate(sent.on(TICKS)[before:])]
    await loop.handle(ticks)
