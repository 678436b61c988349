"""The stream worker's batch loop: everything that happens to a batch of records between the
consumer and the table, in plain Python.

    handle(batch):  read back what the consumer skipped (holes above the partition's mark)
                    -> fetch unknown writer schemas (off the event loop)
                    -> Engine.apply: new camera states, closed windows, events, dead letters
                    -> Publisher.publish, and wait for the broker's acks
                    -> camera states and marks join the next checkpoint (at most every
                       `checkpoint_s`; states first, then the marks that vouch for them)
                    -> metrics

Faust is not imported here: the loop talks to the consumer group, the state table and the
producer through the small protocols below, which `streams.faust_compat` implements for Faust and
the tests implement with dicts and lists, so they drive this very loop without a broker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from privaflow.streams.consume import Checkpoints, Engine, Incoming, Outcome, upto_key
from privaflow.streams.metrics import WorkerMetrics
from privaflow.streams.output import Output
from privaflow.streams.publish import Publisher
from privaflow.streams.settings import WorkerSettings
from privaflow.streams.tables import ClosedWindow, WindowStore
from privaflow.streams.views import RecentWindows

log = logging.getLogger(__name__)


class StateTable(Protocol):
    """Where camera states and partition marks live: a changelog-backed table, partitioned like the
    detections (the key's changelog partition is named at every write)."""

    def get(self, key: bytes) -> dict[str, Any] | None: ...

    def items(self) -> Iterable[tuple[bytes, dict[str, Any]]]: ...

    def write(self, key: bytes, value: dict[str, Any], partition: int) -> None: ...


class GroupConsumer(Protocol):
    """What the loop needs to know from, and tell, the consumer group's member in this process."""

    def owned(self) -> set[int]:
        """Detections partitions assigned to this worker."""
        ...

    def generation(self) -> int:
        """Changes at every rebalance."""
        ...

    def ready(self) -> bool:
        """Assigned and recovered: the table holds every owned camera's state."""
        ...

    def end_offset(self, partition: int) -> int | None:
        """The partition's end as of the last fetch (None: not fetched yet)."""
        ...

    def committed(self, partition: int) -> int | None: ...

    async def pass_over(self, partition: int, first: int, last: int) -> None:
        """Offsets first..last were applied without the consumer delivering them (read back): its
        commits may go past them."""
        ...


class Reader(Protocol):
    """Reads a partition directly (`streams.refetch.PartitionReader`)."""

    async def start_offset(self, partition: int) -> int: ...

    async def read(self, partition: int, first: int, end: int) -> list[Incoming]: ...

    async def lag(self, partitions: Collection[int] = (), applied: Mapping[int, int] | None = None) -> int: ...


class BookCatchUp(Protocol):
    """Reads what was written to the DP release book's topic since the last call (`streams.releases`)."""

    async def catch_up(self) -> int: ...


@dataclass(eq=False)
class BatchLoop:
    """One worker's batch loop (see the module docstring). `handle` is the body of the consumer's
    loop; `tick_idle_cameras` of a timer; `checkpoint_now` runs on a graceful stop; `on_revoked` /
    `on_assigned` on rebalances. Holds the lock from a batch's first step to its last, so no
    checkpoint is written half way through one."""

    settings: WorkerSettings
    engine: Engine
    publisher: Publisher
    reader: Reader
    table: StateTable
    consumer: GroupConsumer
    output: Output
    ticks_topic: str
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)
    recent: RecentWindows = field(default_factory=RecentWindows)
    clock: Callable[[], float] = time.monotonic  # checkpoint interval, idle timeout, stall detection
    # the book of DP releases (with a differential-privacy partner): read to its topic's end before the
    # first batch and after every rebalance (docs/privacy-model.md, rule c)
    releases: BookCatchUp | None = None
    book_stale: bool = field(init=False, default=True)
    checkpoints: Checkpoints = field(init=False)
    lock: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)
    progress_at: float = field(init=False)  # when the last batch was done (or the group changed)
    batches: int = field(init=False, default=0)
    publications: int = field(init=False, default=0)  # batches that closed windows
    seeded_generation: int = field(init=False, default=-1)

    def __post_init__(self) -> None:
        self.checkpoints = Checkpoints(self.settings.checkpoint_s)
        self.progress_at = self.clock()
        self.engine.backlog = self.backlog

    # ---------------------------------------------------------------- a batch

    async def handle(self, batch: list[Incoming]) -> Outcome:
        """Apply one batch of detections and ticks, in consumption order."""
        async with self.lock:
            outcome = await self._apply(batch)
        self.batches += 1
        if self.batches == self.settings.fault_stall_after_batches:
            log.warning("fault injection: taking no more batches after batch %d", self.batches)
            await asyncio.Event().wait()
        return outcome

    async def _apply(self, batch: list[Incoming]) -> Outcome:
        started = time.perf_counter()
        if self.releases is not None and self.book_stale:
            n = await self.releases.catch_up()
            self.book_stale = False
            log.info("DP release book: read %d record(s)", n)
        batch = await self._fill_holes(batch)
        names = self.settings.topics
        decoder = self.engine.decoder
        for schema_id in decoder.unknown_ids(m.value for m in batch if m.topic == names.detections):
            await asyncio.to_thread(decoder.fetch, schema_id)
        try:
            outcome = self.engine.apply(batch, self.table.get, now=self.clock())
            sent = await self.publisher.publish(outcome)
        except BaseException:
            self.engine.forget()  # the cache may be ahead of the table now; the table is the truth
            self.checkpoints.clear()
            raise
        if outcome.closed:
            self.publications += 1
            if self.publications == self.settings.fault_exit_after_publish:
                log.warning("fault injection: exiting after publication %d, before writing state", self.publications)
                os._exit(75)
        now = self.clock()
        self.checkpoints.add(outcome, now)
        if self.checkpoints.due(now):
            self.write_checkpoint()
        self._record(outcome, sent, len(batch), time.perf_counter() - started)
        self.progress_at = self.clock()
        return outcome

    async def _fill_holes(self, batch: list[Incoming]) -> list[Incoming]:
        engine, names = self.engine, self.settings.topics
        resumed: dict[int, int] = {}  # partition -> where the group's consumer resumed
        # ticks count: after a restart the wake-up tick may be all that comes (`tick_idle_cameras`)
        for p in {m.partition for m in batch} - engine.upto.keys():
            mark, resumed[p] = self.table.get(upto_key(p)), await self.reader.start_offset(p)
            if mark:
                start = mark["upto"] + 1
            else:  # first time on this partition: a mark for where the group is, right away,
                # because the consumer may commit past what it delivers before the first checkpoint
                start = resumed[p]
                self.table.write(upto_key(p), {"upto": start - 1}, p)
            engine.upto[p] = start - 1
        refetched: list[Incoming] = []
        delivered = {m.partition for m in batch if m.topic == names.detections}
        for p, ranges in engine.holes(batch, resumed).items():
            what = "the consumer skipped" if p in delivered else "the group had committed past the last checkpoint:"
            for first, end in ranges:
                got = await self.reader.read(p, first, end)
                log.warning("%s[%d]: %s offsets %d..%d; read %d record(s) back directly",
                            names.detections, p, what, first, end - 1, len(got))
                refetched += got
                # the consumer never delivered these, so it never acks them, and it would commit the
                # partition only up to its first unacked offset (a 500-camera load left three
                # partitions committed at ~500 of ~38,000); committing past them is safe, since
                # replay starts from our marks, not from the group's commits
                await self.consumer.pass_over(p, first, end - 1)
        self.metrics.refetched.inc(len(refetched))
        return engine.merge(batch, refetched)  # also puts what the consumer delivered out of order in order

    def write_checkpoint(self) -> None:
        """Write what is pending: changed camera states, then the marks that vouch for them."""
        for key, value, partition in self.checkpoints.take():
            self.table.write(key, value, partition)

    async def checkpoint_now(self) -> None:
        """Write what is pending once the batch in progress (if any) is done: on a graceful stop,
        so that the next start replays nothing."""
        async with self.lock:
            self.write_checkpoint()

    def _record(self, outcome: Outcome, sent: Mapping[str, int], n: int, seconds: float) -> None:
        m = self.metrics
        now_ms = time.time() * 1000.0
        observe = m.latency.observe
        for ts in outcome.frame_ts:
            observe(max(0.0, (now_ms - ts) / 1000.0))
        m.batch_size.observe(n)
        m.batch_seconds.observe(seconds)
        m.records.labels("applied").inc(outcome.applied)
        m.records.labels("replayed").inc(outcome.skipped)
        m.records.labels("dead_letter").inc(len(outcome.dead))
        m.frames.inc(outcome.frames)
        m.detections.inc(outcome.detections)
        for table, k in outcome.late.items():
            m.late.labels(table).inc(k)
        for d in outcome.dead:
            m.dead_letters.labels(d.kind).inc()
        for topic, k in sent.items():
            m.published.labels(topic).inc(k)
        for (partner, table), eps in outcome.released.spent.items():
            m.dp_epsilon.labels(partner, table).inc(eps)
        for (partner, table), n in outcome.released.withheld.items():
            m.dp_withheld.labels(partner, table).inc(n)
        for table, k in Counter(c.table for c in outcome.closed).items():
            idle = outcome.idle_closed.get(table, 0)
            m.windows_closed.labels(table, "watermark").inc(k - idle)
            m.windows_closed.labels(table, "idle").inc(idle)
        m.cameras.set(self.engine.camera_count)
        self.recent.add(outcome.closed)
        if outcome.dead:
            log.warning("%d record(s) sent to the dead-letter topic (%s)", len(outcome.dead),
                        ", ".join(sorted({d.kind for d in outcome.dead})))

    # ---------------------------------------------------------------- idle cameras and rebalances

    async def tick_idle_cameras(self) -> None:
        """Send a tick through the camera's own partition for each camera silent for
        `idle_timeout_s` (see `streams.consume.Tick`); after a rebalance, first a wake-up per owned
        partition, so that records committed past the last mark are read back even if none follow."""
        if not self.consumer.ready():
            return
        owned, now = self.consumer.owned(), self.clock()
        generation = self.consumer.generation()
        if self.seeded_generation != generation:
            self.engine.seed_activity(self.table.items(), owned, now)
            self.seeded_generation = generation
            for p in owned:  # no camera key: applies nothing
                self.output.produce(self.ticks_topic, None, b"", p)
        for key, partition, tick in self.engine.idle_ticks(now, self.settings.idle_timeout_s, owned, self.table.get):
            self.output.produce(self.ticks_topic, key, tick.encode(), partition)

    def backlog(self, partition: int) -> bool:
        """Do records of this partition wait to be consumed? (Ticks could overtake them.)"""
        end = self.consumer.end_offset(partition)
        if end is None:
            return True
        seen = self.engine.positions.get(partition)
        if seen is None:  # nothing read since (re)start: the committed offset is where reading resumes
            committed = self.consumer.committed(partition)
            seen = committed - 1 if committed is not None else -1
        return bool(end > seen + 1)

    def on_revoked(self) -> None:
        self.engine.forget()
        self.checkpoints.clear()  # not written: the next owner replays from the partition's last mark
        self.progress_at = self.clock()  # recovery after a rebalance is not a stall

    def on_assigned(self) -> None:
        self.progress_at = self.clock()  # nor is waiting for the group to form (a dead member's session)
        self.book_stale = True  # cameras may have come from a worker that released DP windows meanwhile

    # ---------------------------------------------------------------- what the HTTP views ask

    async def stalled_for(self) -> float | None:
        """Seconds without a processed batch while the group has records waiting, or None. Checked
        against the broker (not this worker's consumer, which may be what is stuck), and only once
        the worker has been quiet for `stall_timeout_s`."""
        quiet = self.clock() - self.progress_at
        if quiet < self.settings.stall_timeout_s:
            return None
        try:
            # the group's committed offsets can stall behind records read back directly, so what this
            # worker applied counts first; all partitions if none owned; bounded: a probe must answer,
            # and the reader may be busy waiting for the broker on behalf of the batch
            lag = await asyncio.wait_for(self.reader.lag(self.consumer.owned(), dict(self.engine.upto)), 10.0)
        except Exception as e:  # broker unreachable: not this process's fault, restarting will not help
            log.warning("liveness check could not read the group's lag: %s", e)
            return None
        return quiet if lag > 0 else None

    def open_windows(self) -> Iterable[ClosedWindow]:
        """Every open window of the owned cameras, the cached ones first (newer than the table
        until the next checkpoint)."""
        owned, cached = self.consumer.owned(), dict(self.engine.cached())
        for st in cached.values():
            yield from st.windows.open_windows()
        site = self.settings.site
        for key, state in list(self.table.items()):
            if key not in cached and state and any(int(p) in owned for p in state.get("offsets", {})):
                yield from WindowStore.from_state(site, state["windows"]).open_windows()
