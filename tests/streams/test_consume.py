"""The worker's batch loop (`streams.loop.BatchLoop`, the real one) without Kafka: DetectionBatch
records in, partner records out, equal to the in-process reference however the stream is cut into
batches, wherever a worker died, whatever the consumer skipped; replays are skipped, ticks close
idle cameras' windows exactly once, checkpoints write states before the marks that vouch for them.

Requirement ids: T5 (statistics per place, direction, time), T9 (no loss, no double count on restart).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import pytest

from privaflow.streams.consume import CameraState, Incoming, Tick, upto_key
from privaflow.streams.loop import BatchLoop
from privaflow_stack.simulate import simulate
from tests.streams.fakes import TICKS, Clock, MemoryConsumer, MemoryTable, Sent, close_idle, encode_log, make_loop
from tests.streams.harness import FakeRegistry, interleave, latest_by_key, reference, site_config

SITE = site_config()
CAMERAS = ("campus", "gate")
PARTITION = {"campus": 0, "gate": 1}
REGISTRY: Any = FakeRegistry()


@pytest.fixture(scope="module")
def frames() -> dict[str, list[dict[str, Any]]]:
    return {cam: simulate(SITE, cam, duration_s=40, fps=10, n_objects=15, seed=i).frames
            for i, cam in enumerate(CAMERAS)}


@pytest.fixture(scope="module")
def log(frames: dict[str, list[dict[str, Any]]]) -> list[Incoming]:
    """Two cameras' records (5 frames each), as they sit on partitions 0 and 1."""
    return encode_log(interleave(frames), REGISTRY, PARTITION)


@pytest.fixture(scope="module")
def expected(frames: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    return reference(SITE, frames)


def _cut(records: list[Incoming], size: int) -> list[list[Incoming]]:
    return [records[i:i + size] for i in range(0, len(records), size)]


async def _drive(loop: BatchLoop, batches: list[list[Incoming]]) -> None:
    for batch in batches:
        await loop.handle(batch)


def _run(log: list[Incoming], batches: list[list[Incoming]], **kw: Any) -> tuple[BatchLoop, Sent, Clock]:
    """A worker's life: the batches, then silence until the idle timer closed the last windows."""
    sent, clock = kw.pop("sent", None) or Sent(), kw.pop("clock", None) or Clock()
    loop = make_loop(SITE, log, REGISTRY, sent=sent, clock=clock, **kw)

    async def life() -> None:
        await _drive(loop, batches)
        for _ in range(2):  # a wake-up can read records back: then their cameras tick again
            await close_idle(loop, clock, sent)

    asyncio.run(life())
    return loop, sent, clock


def _assert_exact(sent: Sent, expected: dict[str, dict[str, dict[str, Any]]], once: bool = True) -> None:
    for topic, records in sent.partner(REGISTRY).items():
        seen: dict[str, dict[str, Any]] = {}
        for k, v in records:
            assert seen.setdefault(k, v) == v, f"{topic} {k}: published again with another value"
        if once:
            assert [k for k, n in Counter(k for k, _ in records).items() if n > 1] == [], f"{topic}: published twice"
        assert latest_by_key(records) == expected.get(topic, {}), f"{topic}: differs from the reference"


def test_results_do_not_depend_on_batch_boundaries(log: list[Incoming], expected: Any) -> None:
    tables = []
    for size in (1, 7, 500):
        loop, sent, _ = _run(log, _cut(log, size))
        _assert_exact(sent, expected)
        tables.append({k: v for k, v in loop.table.items() if not k.startswith(b"\x00")})  # type: ignore[attr-defined]
    assert tables[0] == tables[1] == tables[2], "the same camera states whatever the batches"
    assert sum(len(v) for v in expected.values()) > 50, "the scenes close plenty of windows"


def test_a_replayed_batch_is_skipped(log: list[Incoming]) -> None:
    loop, _, _ = _run(log, _cut(log, 100))
    before = dict(loop.table.items())
    restarted = make_loop(SITE, log, REGISTRY, table=loop.table)  # type: ignore[arg-type]
    out = asyncio.run(restarted.handle(log[:60]))
    assert out.skipped == 60 and out.applied == 0 and not out.closed and not out.events
    assert dict(restarted.table.items()) == before


def test_a_crash_before_writing_state_replays_to_the_same_windows(log: list[Incoming], expected: Any) -> None:
    """Publish, then die before the state write (states written after every batch here); restart
    from the last written state and from an older committed offset. Every window is published with
    the value of the run without a crash."""
    batches = _cut(log, 8)
    sent, table = Sent(), MemoryTable()
    first = make_loop(SITE, log, REGISTRY, table=table, sent=sent)
    asyncio.run(_drive(first, batches[:10]))
    first.write_checkpoint = lambda: None  # type: ignore[method-assign]  # the crash: no state for batch 10
    asyncio.run(first.handle(batches[10]))
    committed = {p: 5 for p in (0, 1)}  # the group's committed offsets lag the state
    replay = [m for m in log if m.offset >= committed[m.partition]]
    consumer = MemoryConsumer(log, {0, 1}, committed_at=committed)
    _run(log, _cut(replay, 7), table=table, sent=sent, consumer=consumer)
    _assert_exact(sent, expected, once=False)


def test_holes_the_consumer_leaves_are_read_back_and_passed_over(log: list[Incoming], expected: Any) -> None:
    """faust's consumer can skip records after a restart (delivering 471..494, 542..799); the loop
    reads the missing ranges back, tells the consumer to commit past them, and the result is the
    full run's."""
    skipped = {(0, o) for o in range(6, 11)} | {(1, o) for o in (0, 1, 2, 19)}
    batches = []
    for batch in _cut(log, 8):
        delivered = [m for m in batch if (m.partition, m.offset) not in skipped]
        batches.append(delivered + batch[:3])  # and some delivered twice, out of order
    missing = skipped - {(m.partition, m.offset) for b in batches for m in b}
    loop, sent, _ = _run(log, batches)
    _assert_exact(sent, expected)
    passed = {(p, o) for p, first, last in loop.consumer.passed_over for o in range(first, last + 1)}  # type: ignore[attr-defined]
    assert passed == missing and len(missing) >= 5
    assert loop.engine.upto == {p: max(m.offset for m in log if m.partition == p) for p in (0, 1)}
    assert loop.metrics.refetched._value.get() == len(missing)


def test_a_crash_between_checkpoints_replays_from_the_marks(log: list[Incoming], expected: Any) -> None:
    """States are written every few seconds only; a crash loses what came after the last checkpoint
    while the consumer's committed offset is already past it. The restarted loop starts from the
    marks, reads the records in between back, and every window is published with the value of the
    run without a crash."""
    sent, table, clock = Sent(), MemoryTable(), Clock()
    first = make_loop(SITE, log, REGISTRY, table=table, sent=sent, clock=clock, checkpoint_s=3.0)

    async def until_crash() -> None:
        for batch in _cut(log, 8)[:11]:  # a batch a second
            await first.handle(batch)
            clock.now += 1.0

    asyncio.run(until_crash())
    marks = {p: table.data[upto_key(p)]["upto"] for p in (0, 1)}
    assert marks != first.engine.upto, "the last batches were applied and published but not written"
    resumed = {p: first.engine.upto[p] + 1 for p in (0, 1)}  # the group committed what it was delivered
    consumer = MemoryConsumer(log, {0, 1}, committed_at=resumed)
    rest = [m for m in log if m.offset >= resumed[m.partition]]
    loop, sent, _ = _run(log, _cut(rest, 7), table=table, sent=sent, consumer=consumer)
    assert sum(end - first_ for _, first_, end in loop.reader.reads) == sum(resumed[p] - marks[p] - 1 for p in (0, 1))  # type: ignore[attr-defined]
    _assert_exact(sent, expected, once=False)


def test_a_crash_between_checkpoints_with_nothing_after_it_is_read_back_on_a_wake_up_tick(
        log: list[Incoming], expected: Any) -> None:
    """The same crash at the very end: the consumer had committed everything, so after the restart
    no record comes at all (cameras gone quiet). The loop's wake-up tick per partition, with where
    the group resumed, reads back everything above the marks."""
    sent, table, clock = Sent(), MemoryTable(), Clock()
    first = make_loop(SITE, log, REGISTRY, table=table, sent=sent, clock=clock, checkpoint_s=3.0)
    batches = _cut(log, 8)

    async def until_crash() -> None:
        for batch in batches[:-2]:
            await first.handle(batch)
            clock.now += 1.0
        first.write_checkpoint = lambda: None  # type: ignore[method-assign]  # the last two: applied, never written
        for batch in batches[-2:]:
            await first.handle(batch)
            clock.now += 1.0

    asyncio.run(until_crash())
    marks = {p: table.data[upto_key(p)]["upto"] for p in (0, 1)}
    resumed = {p: first.engine.upto[p] + 1 for p in (0, 1)}
    assert all(marks[p] + 1 < resumed[p] for p in (0, 1)), "the crash must leave records above the marks"
    consumer = MemoryConsumer(log, {0, 1}, committed_at=resumed)
    loop, sent, _ = _run(log, [], table=table, sent=sent, consumer=consumer)  # nothing but the wake-up
    assert sorted(loop.reader.reads) == [(p, marks[p] + 1, resumed[p]) for p in (0, 1)]  # type: ignore[attr-defined]
    assert not sent.on("privaflow.detections.dlq.v2"), "a wake-up tick applies nothing and is no dead letter"
    _assert_exact(sent, expected, once=False)


def test_checkpoints_wait_their_interval_and_write_states_before_marks(log: list[Incoming]) -> None:
    clock = Clock()
    loop = make_loop(SITE, log, REGISTRY, clock=clock, checkpoint_s=2.0)
    table: MemoryTable = loop.table  # type: ignore[assignment]

    async def steps() -> None:
        await loop.handle(log[:4])
        first_marks = list(table.writes)
        assert [k for k, _ in first_marks] == [upto_key(0), upto_key(1)], "a mark for each new partition at once"
        clock.now += 1.0
        await loop.handle(log[4:8])
        clock.now += 0.9
        await loop.handle(log[8:10])
        assert table.writes == first_marks, "nothing before the interval has passed"
        clock.now += 0.1
        await loop.handle(log[10:12])
        written = table.writes[len(first_marks):]
        assert [k for k, _ in written] == [b"campus", b"gate", upto_key(0), upto_key(1)], \
            "one write per camera, marks last"
        assert [p for _, p in written] == [0, 1, 0, 1], "each on its camera's changelog partition"
        assert table.data[b"campus"]["offsets"] == {"0": max(m.offset for m in log[:12] if m.partition == 0)}

    asyncio.run(steps())


def test_records_at_or_below_the_applied_mark_are_replays(log: list[Incoming]) -> None:
    table = MemoryTable()
    for p in (0, 1):
        table.write(upto_key(p), {"upto": 3}, p)
    loop = make_loop(SITE, log, REGISTRY, table=table)
    batch = [m for m in log if m.offset <= 6]
    out = asyncio.run(loop.handle(batch))
    assert out.skipped == 8 and out.applied == 6 and out.upto == {0: 6, 1: 6}
    assert loop.reader.reads == [], "nothing above the mark is missing"  # type: ignore[attr-defined]
    assert loop.engine.holes([m for m in log if m.offset in (9, 11)]) == {0: [(7, 9), (10, 11)],
                                                                          1: [(7, 9), (10, 11)]}


def test_state_round_trips_through_json(log: list[Incoming]) -> None:
    loop = make_loop(SITE, log, REGISTRY)
    asyncio.run(_drive(loop, _cut(log[:40], 10)))
    for key, state in loop.table.items():
        if not key.startswith(b"\x00"):
            again = CameraState.from_state(SITE, key.decode(), json.loads(json.dumps(state))).to_state()
            assert again == state


def test_ticks_close_an_idle_cameras_windows_once(log: list[Incoming], expected: Any) -> None:
    campus = [m for m in log if m.key == b"campus"]
    sent, clock = Sent(), Clock()
    loop = make_loop(SITE, campus, REGISTRY, sent=sent, clock=clock)
    asyncio.run(_drive(loop, _cut(campus, 10)))
    state = CameraState.from_state(SITE, "campus", loop.table.get(b"campus"))  # type: ignore[arg-type]
    assert state.windows.open_windows(), "the last windows stay open while nothing else arrives"
    last = campus[-1].offset

    stale = asyncio.run(loop.handle([Incoming(TICKS, 0, 0, b"campus", Tick(last - 1, state.max_ts + 10**6).encode())]))
    assert stale.ticks == 0 and not stale.closed, "a tick overtaken by a record is ignored"

    assert asyncio.run(_idle(loop, clock, 1.0)) == [], "not silent long enough"
    ticks = asyncio.run(_idle(loop, clock, loop.settings.idle_timeout_s))
    assert [(k, p) for k, p, _ in ticks] == [(b"campus", 0)]
    tick = Tick.decode(ticks[0][2])
    assert tick.offset == last and tick.watermark_ms > state.max_ts  # type: ignore[operator]

    out = asyncio.run(loop.handle([Incoming(TICKS, 0, 1, b"campus", ticks[0][2])]))
    assert out.ticks == 1 and out.closed and sum(out.idle_closed.values()) == len(out.closed)
    replay = make_loop(SITE, campus, REGISTRY, table=loop.table)  # type: ignore[arg-type]
    again = asyncio.run(replay.handle([Incoming(TICKS, 0, 1, b"campus", ticks[0][2])]))
    assert not again.closed, "a replayed tick closes nothing twice"
    assert asyncio.run(_idle(loop, clock, 3600.0)) == [], "nothing left open: the camera stops ticking"
    published = sent.partner(REGISTRY)
    every = [k for records in published.values() for k, _ in records]
    assert len(every) == len(set(every)), "each window once"
    want = {k for topic in expected.values() for k in topic if "campus" in k}
    assert want <= set(every)


async def _idle(loop: BatchLoop, clock: Clock, seconds: float) -> list[tuple[bytes | None, int, bytes]]:
    """Advance the clock, run the idle timer; returns the (key, partition, value) of camera ticks sent."""
    sent: Sent = loop.output  # type: ignore[assignment]
    before = len(sent.on(TICKS))
    clock.now += seconds
    await loop.tick_idle_cameras()
    return [(k, p or 0, v or b"") for k, v, p, _ in sent.on(TICKS)[before:] if k is not None]


# ---------------------------------------------------------------- clock skew (issue 13)


def _with_future_record(frames: list[dict[str, Any]], at: int, ahead_ms: int) -> tuple[list[Incoming], int]:
    """The campus camera's records of 5 frames, with a one-frame record stamped `ahead_ms` in the
    future after the frame `at` (an edge whose clock jumped); returns the log and that record's offset."""
    import time

    now = int(time.time() * 1000)
    records = encode_log(frames[:at], REGISTRY, PARTITION)
    future = encode_log([dict(frames[at], ts=now + ahead_ms)], REGISTRY, PARTITION)[0]
    rest = encode_log(frames[at:], REGISTRY, PARTITION)
    spot = len(records)
    log = [*records, Incoming(future.topic, 0, spot, future.key, future.value),
           *(Incoming(m.topic, 0, spot + 1 + m.offset, m.key, m.value) for m in rest)]
    return log, spot


def _crossings(sent: Sent) -> list[tuple[str, ...]]:
    return sorted((v["line_id"], v["direction"], v["window_start"].isoformat(), str(v["count"]))
                  for k, v in sent.partner(REGISTRY).get("privaflow.partner.traffic-volume.v2", []))


def test_one_record_from_the_future_costs_that_record_not_the_cameras_counts() -> None:
    """A record stamped 23 h ahead used to be accepted: the camera's next frames were then older than
    its newest and skipped as replays, and nothing was counted. It is a dead letter now (the whole
    record), and every other record counts as if it had never been sent."""
    import time

    now = int(time.time() * 1000)
    frames = simulate(SITE, "campus", duration_s=30, fps=10, n_objects=12, seed=5, t0_ms=now - 60_000).frames
    plain = encode_log(frames, REGISTRY, PARTITION)
    _, reference_sent, _ = _run(plain, _cut(plain, 6))
    assert len(_crossings(reference_sent)) >= 3
    for ahead_ms in (23 * 3600_000, 10 * 60_000):  # beyond the default of 5 minutes
        log, spot = _with_future_record(frames, 50, ahead_ms)
        _, sent, _ = _run(log, _cut(log, 6))
        assert _crossings(sent) == _crossings(reference_sent), f"{ahead_ms} ms ahead"
        dead = sent.on("privaflow.detections.dlq.v2")
        assert [dict(h)["source_offset"] for _, _, _, h in dead] == [str(spot).encode()]
        reason = dict(dead[0][3])["error"].decode()
        assert "ahead of this worker's clock" in reason and "max_clock_skew_s" in reason


def test_the_accepted_clock_skew_is_configurable() -> None:
    import time

    from privaflow.schemas.site import parse_site_config
    from tests.streams.harness import TEST_SITE

    now = int(time.time() * 1000)
    frames = simulate(SITE, "campus", duration_s=5, fps=10, n_objects=2, seed=1, t0_ms=now + 9 * 60_000).frames
    log = encode_log(frames, REGISTRY, PARTITION)
    strict = asyncio.run(make_loop(SITE, log, REGISTRY).handle(log))
    assert {d.kind for d in strict.dead} == {"time"} and strict.applied == 0
    lenient = parse_site_config({**TEST_SITE, "windows": {**TEST_SITE.get("windows", {}), "max_clock_skew_s": 900}})
    out = asyncio.run(make_loop(lenient, log, REGISTRY).handle(log))
    assert out.dead == [] and out.applied == len(log)
