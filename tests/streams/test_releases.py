"""The book of DP releases on Kafka (streams/releases.py, streams/publish.py; docs/privacy-model.md
rule c): the publisher makes a batch's new DP releases durable before it sends any partner record,
and a fresh book reads them back from the topic. Covers T7, T9.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from privaflow.schemas.codec import SchemaRegistry
from privaflow.schemas.site import parse_site_config
from privaflow.schemas.topics import DP_RELEASES
from privaflow.streams.consume import Outcome
from privaflow.streams.disclosure import Disclosure, Policy
from privaflow.streams.output import KafkaOutput, PublishError
from privaflow.streams.publish import Publisher
from privaflow.streams.releases import BookReader, ReleaseBook
from privaflow.streams.settings import TopicNames
from privaflow.streams.tables import ClosedWindow
from tests.streams.harness import FakeRegistry, Run

T0 = 1_767_225_600_000
SITE = parse_site_config({
    "site_id": "s", "cameras": [{"id": "c", "source": 0, "classes": ["person", "car"]}],
    "lines": [{"id": "l1", "camera": "c", "points": [[0.5, 0], [0.5, 1]]}],
    "zones": [{"id": "z", "camera": "c", "polygon": [[0.6, 0.6], [1, 0.6], [1, 1]], "capacity": 10}],
    "windows": {"traffic_volume": 60, "occupancy": 60, "grace_s": 11},
    "partners": [{"id": "lab", "tables": ["traffic_volume", "occupancy"],
                  "privacy": {"mechanism": "laplace", "epsilon_per_day": 10.0, "epsilon_per_window": 1.0}}],
}, "<test>")


def _closed(start: int, people: int) -> list[ClosedWindow]:
    tracks = tuple(range(people))
    return [
        ClosedWindow("traffic_volume", "s", ("l1", "in", "person"), start, start + 60_000,
                     {"count": people, "speed_samples": 0, "speed_objects": 0, "mean_speed_kmh": None,
                      "p85_speed_kmh": None}, tracks, (0,) * people),
        ClosedWindow("occupancy", "s", ("z",), start, start + 60_000,
                     {"samples": 600, "mean_present": 0.1 * people, "max_present": people, "p95_present": people,
                      "capacity": 10, "capacity_ratio": people / 10, "crowding_level": "LOW"}, tracks, (0,) * people),
    ]


def _outcome(book: ReleaseBook | None = None) -> tuple[Outcome, list[ClosedWindow]]:
    d = Disclosure(Policy(SITE, book), "c")
    d.release([], T0)
    closed = _closed(T0, 3)
    return Outcome(closed=closed, released=d.release(closed, T0 + 71_000)), closed


def test_the_publisher_sends_partner_records_only_after_the_outbox_is_acknowledged() -> None:
    """Every release of the outbox is sent and acknowledged by the broker before the first partner
    (or operator) record leaves; if an ack fails, no partner record is sent at all."""
    outcome, _ = _outcome()
    assert len(outcome.released.outbox) == 2

    class Output:
        """The publisher's producer (streams/output.py): `flush` returns when the broker has acknowledged
        everything produced so far, and raises if it refused something."""

        def __init__(self, fail: bool) -> None:
            self.fail, self.log, self.pending = fail, [], []

        def produce(self, topic: str, key: Any, value: Any, partition: Any = None, headers: Any = None) -> None:
            self.log.append(("send", topic))
            self.pending.append(topic)

        async def flush(self) -> None:
            await asyncio.sleep(0)  # a later turn of the loop, as a real broker's answer
            pending, self.pending = self.pending, []
            self.log += [("ack", t) for t in pending]
            if self.fail and any(t.endswith(DP_RELEASES) for t in pending):
                raise PublishError("the broker refused 2 record(s)")

    async def publish(fail: bool) -> list[tuple[str, str]]:
        output = Output(fail)
        publisher = Publisher(output, FakeRegistry(), SITE, TopicNames("p."))  # type: ignore[arg-type]
        if fail:
            with pytest.raises(PublishError, match="refused"):
                await publisher.publish(outcome)
        else:
            sent = await publisher.publish(outcome)
            assert sent["p." + DP_RELEASES] == 2
        return output.log

    log = asyncio.run(publish(fail=False))
    book = [i for i, (what, topic) in enumerate(log) if topic == "p." + DP_RELEASES]
    others = [i for i, (what, topic) in enumerate(log) if topic != "p." + DP_RELEASES and what == "send"]
    assert len(book) == 4 and others  # two sends and two acks, then the rest
    assert max(book) < min(others), log
    assert {t for _, t in log} >= {"p.privaflow.partner.dp.lab.traffic-volume.v2",
                                   "p.privaflow.partner.dp.lab.occupancy.v1"}

    failed = asyncio.run(publish(fail=True))
    assert {t for _, t in failed} == {"p." + DP_RELEASES}, failed


@pytest.mark.integration
def test_a_release_published_by_one_worker_is_read_back_by_a_fresh_book(stack: Any, unique: str) -> None:
    """On the real broker: a Publisher writes a window's DP release to the book's topic (with the partner
    records after it); a fresh book reads it back, and a replay through it releases the same records
    without a new draw."""
    run = Run(unique, stack.bootstrap, stack.registry_url, site=SITE)
    run.create_topics()
    outcome, closed = _outcome()

    async def publish() -> None:
        output = KafkaOutput({"bootstrap.servers": stack.bootstrap})
        try:
            await Publisher(output, SchemaRegistry(stack.registry_url), SITE, run.names).publish(outcome)
        finally:
            output.close()

    try:
        asyncio.run(publish())
        book = ReleaseBook("s")
        reader = BookReader(book, stack.bootstrap, run.prefix + DP_RELEASES, timeout_s=60)
        assert asyncio.run(reader.catch_up()) == 2
        assert {r.book_key: r for r in outcome.released.outbox} == {
            k: book.get(k) for k in (r.book_key for r in outcome.released.outbox)}
        assert asyncio.run(reader.catch_up()) == 0  # nothing new since

        replay = Disclosure(Policy(SITE, book), "c")
        replay.release([], T0)
        again = replay.release(closed, T0 + 71_000)
        dp = [r for r in outcome.released.records if r.topic.startswith("privaflow.partner.dp.")]
        assert again.outbox == [] and [r for r in again.records if r.topic.startswith("privaflow.partner.dp.")] == dp
        assert len(dp) == 2 * 2 + 1  # the line's grid (in, out x person, car) and the zone
    finally:
        run.delete_topics()


def test_the_privacy_report_says_the_release_book_is_kept_and_by_whom() -> None:
    """The book is data the site keeps: the privacy report lists it for a camera with a DP partner (as
    long as the detections by default, readable by the workers only), and not for one without."""
    from privaflow.governance.report import privacy_report

    [kept] = [k for k in privacy_report(SITE)["cameras"][0]["kept"] if DP_RELEASES in k["topics"]]
    assert kept["retention_days"] == 7 and "no track id" in kept["description"]
    k_only = parse_site_config({**SITE.model_dump(mode="json", exclude_none=True),
                                "partners": [{"id": "city", "k_anonymity": 5, "tables": ["occupancy"]}]}, "<test>")
    assert not [k for k in privacy_report(k_only)["cameras"][0]["kept"] if DP_RELEASES in k["topics"]]
