"""Producing what a batch produced: partner and operator records, internal events and dead letters.

The records for partner and operator topics are those the disclosure policy released
(`Outcome.released`, streams/disclosure.py); nothing here builds one.
`publish` returns only when the broker has acknowledged every record (through `streams.output`,
librdkafka), and the worker writes camera
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

from collections import Counter

from privaflow.schemas.codec import AvroSerde, SchemaRegistry, serde_for_topic
from privaflow.schemas.site import SiteConfig
from privaflow.schemas.topics import DP_RELEASES, LINE_CROSSINGS, ZONE_EVENTS, topics_for_site
from privaflow.streams.consume import Outcome
from privaflow.streams.events import Crossing, to_avro
from privaflow.streams.output import Output
from privaflow.streams.releases import DpRelease
from privaflow.streams.settings import TopicNames


class Publisher:
    """Encodes with our AvroSerde (value) and a plain string key, produces, and awaits the acks."""

    def __init__(self, output: Output, registry: SchemaRegistry, site: SiteConfig, topics: TopicNames) -> None:
        self.output, self.site, self.topics = output, site, topics
        self._serdes: dict[str, AvroSerde] = {
            t.name: serde_for_topic(registry, t.name) for t in topics_for_site(site) if t.value_schema}

    def prepare(self) -> None:
        """Register or look up every schema id now (blocking), so publishing never waits on the registry."""
        for serde in self._serdes.values():
            _ = serde.schema_id

    async def publish(self, outcome: Outcome) -> Counter[str]:
        """Produce everything in `outcome` and wait for the acks; returns records sent per
        (physical) topic. The DP releases drawn for it go first, acknowledged before any partner record."""
        sent = await self._write_outbox(outcome.released.outbox)
        produce = self.output.produce
        for r in outcome.released.records:
            topic = self.topics.prefix + r.topic
            produce(topic, r.key.encode(), self._serdes[r.topic].encode(r.value))
            sent[topic] += 1
        for ev in outcome.events:
            canonical = LINE_CROSSINGS if isinstance(ev, Crossing) else ZONE_EVENTS
            produce(self.topics.prefix + canonical, ev.camera_id.encode(), self._serdes[canonical].encode(to_avro(ev)))
            sent[self.topics.prefix + canonical] += 1
        for dead in outcome.dead:
            dkey, dvalue = dead.record.key, dead.record.value
            # Kafka clients refuse a record with neither key nor value; its dead letter keeps an empty
            # value (the headers say why and where it came from)
            produce(self.topics.dlq, dkey, b"" if dkey is None and dvalue is None else dvalue, headers=dead.headers())
            sent[self.topics.dlq] += 1
        if sent:
            await self.output.flush()
        return sent

    async def _write_outbox(self, outbox: list[DpRelease]) -> Counter[str]:
        """Write the DP releases drawn for this outcome to the release book's topic and wait for every
        ack (docs/privacy-model.md, rule c: a crash after this republishes them, before it nothing was
        sent; a refusal raises `PublishError` and no partner record goes out)."""
        if not outbox:
            return Counter()
        topic = self.topics.prefix + DP_RELEASES
        for r in outbox:
            self.output.produce(topic, r.key(), r.value())
        await self.output.flush()
        return Counter({topic: len(outbox)})
