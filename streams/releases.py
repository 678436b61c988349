"""The release book: every differentially private window released, so that a replay releases it again unchanged.

OpenDP draws its noise from the operating system and takes no seed (streams/noise.py). A window
published and then, after a crash, published again (the worker replays from its last checkpoint)
would carry a second, independent draw, and a partner who keeps both could average them
(docs/privacy-model.md, rule c). So the disclosure policy looks each DP window up in this book
first and returns what it released the first time; only a window not in it is drawn by OpenDP,
spends epsilon, and goes to `Released.outbox` (streams/disclosure.py).

The book is durable on Kafka: `schemas.topics.DP_RELEASES`, compacted, one record per
(partner, table, camera, window): key `site|partner|table|camera|start_ms|length_ms`, value the JSON
of the window's released grid (each cell's key dimensions and noisy fields, exactly what the
partner's records carry: no track id, no true count). The publisher writes the outbox and awaits the
acks before it sends any partner record of the same batch (streams/publish.py), so a partner never
holds a value the book could lose; the worker reads the topic to its end before its first batch and
after every rebalance (`BookReader.catch_up`, from streams/app.py).

JSON rather than Avro: the worker's own bookkeeping, read by nobody else (like Faust's changelog).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

log = logging.getLogger(__name__)

VERSION = 1
Dims = tuple[str, ...]
# partner, table, camera, window start (ms), window length (ms)
BookKey = tuple[str, str, str, int, int]


class ReleaseBookError(RuntimeError):
    """The book could not be read; the worker must not release DP windows without it."""


@dataclass(frozen=True)
class DpRelease:
    """One DP window of one camera as released to one partner: the noisy grid, cell by cell."""

    site_id: str
    partner: str
    table: str
    camera: str
    start_ms: int
    length_ms: int
    epsilon: float  # what its one draw spent
    cells: tuple[tuple[Dims, Mapping[str, Any]], ...]  # (key dimensions, released fields) in grid order

    @property
    def book_key(self) -> BookKey:
        return (self.partner, self.table, self.camera, self.start_ms, self.length_ms)

    def key(self) -> bytes:
        """The record key on the compacted topic (ids never hold "|": schemas/site.py)."""
        return "|".join((self.site_id, self.partner, self.table, self.camera, str(self.start_ms),
                         str(self.length_ms))).encode()

    def value(self) -> bytes:
        # bin edges end with +inf: Python's JSON writes and reads it as Infinity
        return json.dumps({"version": VERSION, "site_id": self.site_id, "partner": self.partner, "table": self.table,
                           "camera": self.camera, "window_start_ms": self.start_ms, "window_length_ms": self.length_ms,
                           "epsilon": self.epsilon, "cells": [[list(d), dict(f)] for d, f in self.cells]},
                          separators=(",", ":")).encode()

    @classmethod
    def decode(cls, value: bytes) -> DpRelease:
        d = json.loads(value)
        if d.get("version") != VERSION:
            raise ValueError(f"DP release version {d.get('version')!r} is not {VERSION}")
        return cls(d["site_id"], d["partner"], d["table"], d["camera"], int(d["window_start_ms"]),
                   int(d["window_length_ms"]), float(d["epsilon"]),
                   tuple((tuple(dims), dict(fields)) for dims, fields in d["cells"]))


class ReleaseBook:
    """The DP releases of one site, by (partner, table, camera, window start, window length)."""

    def __init__(self, site_id: str) -> None:
        self.site_id = site_id
        self._releases: dict[BookKey, DpRelease] = {}

    def __len__(self) -> int:
        return len(self._releases)

    def get(self, key: BookKey) -> DpRelease | None:
        return self._releases.get(key)

    def add(self, release: DpRelease) -> None:
        if release.site_id == self.site_id:
            self._releases[release.book_key] = release

    def read(self, value: bytes | None) -> None:
        """One record of the topic: another site's is ignored; an unreadable one is logged and
        skipped (its window, if replayed, is drawn anew: no worse than without a book)."""
        if value is None:  # a tombstone: nothing to keep (the book never writes one)
            return
        try:
            self.add(DpRelease.decode(value))
        except (ValueError, KeyError, TypeError) as e:
            log.error("unreadable DP release record skipped: %s", e)

    def forget(self, camera: str, before_ms: int) -> None:
        """Drop the camera's releases of windows starting before `before_ms` (no replay can ask for them)."""
        for key in [k for k in self._releases if k[2] == camera and k[3] < before_ms]:
            del self._releases[key]


class BookReader:
    """Reads the book's topic into a `ReleaseBook`: the first call from the beginning, later calls from
    where the last stopped, each up to the end the topic had when it started. A plain aiokafka consumer,
    assigned (no group, no commit), made and closed per call so it never outlives the event loop."""

    def __init__(self, book: ReleaseBook, bootstrap: str, topic: str, auth: Mapping[str, Any] | None = None,
                 timeout_s: float = 120.0) -> None:
        self.book, self.bootstrap, self.topic, self.timeout_s = book, bootstrap, topic, timeout_s
        self.auth = dict(auth or {})
        self._next: dict[int, int] = {}  # partition -> next offset to read

    async def catch_up(self) -> int:
        """Read what was written since the last call (everything, the first time); returns records read.
        ReleaseBookError if the topic is missing or its end is not reached within `timeout_s`."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest", **self.auth)
        deadline = time.monotonic() + self.timeout_s
        try:
            await asyncio.wait_for(consumer.start(), self.timeout_s)
            if self.topic not in await consumer.topics():  # all topics: never auto-creates this one
                raise ReleaseBookError(f"topic {self.topic} not found: the worker creates it at start "
                                       "(privaflow streams worker), or create it from schemas/topics.py")
            tps = [TopicPartition(self.topic, p) for p in await asyncio.wait_for(self._partitions(), self.timeout_s)]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                if tp.partition in self._next:
                    consumer.seek(tp, self._next[tp.partition])
                else:
                    await consumer.seek_to_beginning(tp)
            n = 0
            for tp in tps:
                while (position := await consumer.position(tp)) < ends[tp]:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise ReleaseBookError(f"{self.topic}[{tp.partition}]: read to offset {position} of "
                                               f"{ends[tp]} in {self.timeout_s:g} s; the broker is too slow or away")
                    got = await consumer.getmany(tp, timeout_ms=int(min(left, 1.0) * 1000))
                    for record in got.get(tp, []):
                        self.book.read(record.value)
                        n += 1
                self._next[tp.partition] = ends[tp]
            return n
        except TimeoutError:
            raise ReleaseBookError(f"could not reach {self.bootstrap} to read {self.topic} within "
                                   f"{self.timeout_s:g} s") from None
        finally:
            await consumer.stop()

    async def _partitions(self) -> list[int]:
        # a fresh consumer's own metadata lacks the topic until it fetches from it; the admin client asks
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **self.auth)
        await admin.start()
        try:
            [described] = await admin.describe_topics([self.topic])
            return sorted(int(p["partition"]) for p in described["partitions"])
        finally:
            await admin.close()
