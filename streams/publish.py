"""Producing what a batch produced: partner and operator records, internal events and dead letters.

The records for partner and operator topics are those the disclosure policy released
(`Outcome.released`, streams/disclosure.py); nothing here builds one.
`publish` returns only when the broker has acknowledged every record, and the worker writes camera
state only after that. A crash between the two re-publishes on replay instead of losing: partner
records are keyed `table|site|dims|window_start|window_length_s` on compacted topics, and replaying the same
records yields the same windows and the same released values, so a re-publication replaces a record
with an identical one. DP noise is the same because `publish` first writes the DP windows drawn now
(`Released.outbox`) to the release book's topic and awaits their acks, and only then sends any other
record (`_write_outbox`): a partner never holds a noisy value the book on Kafka lacks, and a replay
republishes it from the book (streams/releases.py).
Events and dead letters are at-least-once (a crash at the wrong moment may repeat a few).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from privaflow.schemas.codec import AvroSerde, SchemaRegistry, serde_for_topic
from privaflow.schemas.site import SiteConfig
from privaflow.schemas.topics import DP_RELEASES, LINE_CROSSINGS, ZONE_EVENTS, topics_for_site
from privaflow.streams.consume import Outcome
from privaflow.streams.events import Crossing, to_avro
from privaflow.streams.releases import DpRelease
from privaflow.streams.settings import TopicNames

# faust's Producer.send: (topic, key, value, partition, timestamp, headers) -> awaitable of the ack
SendFn = Callable[[str, bytes | None, bytes | None, int | None, float | None, Any], Awaitable[Awaitable[Any]]]


class Publisher:
    """Encodes with our AvroSerde (value) and a plain string key, sends, and awaits the acks."""

    def __init__(self, send: SendFn, registry: SchemaRegistry, site: SiteConfig, topics: TopicNames) -> None:
        self._send, self.site, self.topics = send, site, topics
        self._serdes: dict[str, AvroSerde] = {
            t.name: serde_for_topic(registry, t.name) for t in topics_for_site(site) if t.value_schema}

    def prepare(self) -> None:
        """Register or look up every schema id now (blocking), so publishing never waits on the registry."""
        for serde in self._serdes.values():
            _ = serde.schema_id

    async def publish(self, outcome: Outcome) -> Counter[str]:
        """Send everything in `outcome`; returns records sent per (physical) topic."""
        sent = await self._write_outbox(outcome.released.outbox)  # acknowledged before any partner record
        pending: list[Awaitable[Any]] = []

        async def send(topic: str, key: bytes | None, value: bytes | None, headers: Any = None) -> None:
            pending.append(await self._send(topic, key, value, None, None, headers))
            sent[topic] += 1

        for r in outcome.released.records:
            await send(self.topics.prefix + r.topic, r.key.encode(), self._serdes[r.topic].encode(r.value))
        for ev in outcome.events:
            canonical = LINE_CROSSINGS if isinstance(ev, Crossing) else ZONE_EVENTS
            payload = self._serdes[canonical].encode(to_avro(ev))
            await send(self.topics.prefix + canonical, ev.camera_id.encode(), payload)
        for dead in outcome.dead:
            dkey, dvalue = dead.record.key, dead.record.value
            # Kafka clients refuse a record with neither key nor value; its dead letter keeps an empty
            # value (the headers say why and where it came from)
            await send(self.topics.dlq, dkey, b"" if dkey is None and dvalue is None else dvalue, dead.headers())
        if pending:
            await asyncio.gather(*pending)
        return sent

    async def _write_outbox(self, outbox: list[DpRelease]) -> Counter[str]:
        """Write the DP releases drawn for this outcome to the release book's topic and await every ack
        (docs/privacy-model.md, rule c: a crash after this republishes them, before it nothing was sent)."""
        topic = self.topics.prefix + DP_RELEASES
        acks = [await self._send(topic, r.key(), r.value(), None, None, None) for r in outbox]
        if acks:
            await asyncio.gather(*acks)
        return Counter({topic: len(acks)} if acks else {})
