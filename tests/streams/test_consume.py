"""The worker's batch engine without Kafka: replays are skipped, results do not depend on how the
stream is cut into batches or where a worker died, ticks close idle cameras' windows exactly once.

Requirement ids: T5 (statistics per place, direction, time), T9 (no loss, no double count on restart).
"""

from __future__ import annotations

from typing import Any

import pytest

from privaflow.schemas.codec import AvroSerde  # noqa: E402
from privaflow.streams.consume import CameraState, Checkpoints, Decoder, Engine, Incoming, Tick, upto_key  # noqa: E402
from privaflow.streams.events import Crossing  # noqa: E402
from privaflow.streams.tables import ClosedWindow  # noqa: E402
from privaflow_stack.simulate import simulate  # noqa: E402
from tests.streams.harness import FakeRegistry, site_config  # noqa: E402

TOPIC, TICKS = "t.privaflow.detections.v1", "ticks"
SITE = site_config()
REGISTRY: Any = FakeRegistry()


def _serde() -> AvroSerde:
    return AvroSerde(REGISTRY, "frame_detections", "privaflow.detections.v1-value")


@pytest.fixture(scope="module")
def records() -> list[Incoming]:
    """Two cameras' frames, encoded, as they would sit on partitions 0 and 1."""
    serde = _serde()
    out, offsets = [], {0: 0, 1: 0}
    sims = {cam: simulate(SITE, cam, duration_s=40, fps=10, n_objects=15, seed=i)
            for i, cam in enumerate(("campus", "gate"))}
    frames = sorted((f for s in sims.values() for f in s.frames), key=lambda f: f["ts"])
    for f in frames:
        p = 0 if f["camera_id"] == "campus" else 1
        out.append(Incoming(TOPIC, p, offsets[p], f["camera_id"].encode(), serde.encode(f)))
        offsets[p] += 1
    return out


def _engine() -> Engine:
    decoder = Decoder(_serde())
    decoder.fetch(decoder.serde.schema_id)
    return Engine(SITE, decoder, TICKS)


def _run(batches: list[list[Incoming]], table: dict[bytes, dict[str, Any]] | None = None,
         engine: Engine | None = None) -> tuple[list[ClosedWindow], dict[bytes, dict[str, Any]]]:
    """Apply batches as the agent does: the table gets each batch's states after the batch."""
    table = {} if table is None else table
    engine = engine if engine is not None else _engine()
    closed: list[ClosedWindow] = []
    for batch in batches:
        out = engine.apply(batch, table.get)
        closed += out.closed
        table.update({k: st.to_state() for k, (st, _) in out.states.items()})
    return closed, table


def _cut(records: list[Incoming], size: int) -> list[list[Incoming]]:
    return [records[i:i + size] for i in range(0, len(records), size)]


def _read_back(by_offset: dict[tuple[int, int], Incoming], holes: dict[int, list[tuple[int, int]]]
               ) -> list[Incoming]:
    """What `streams.refetch` would read for `holes`."""
    return [by_offset[(p, o)] for p, ranges in holes.items() for first, end in ranges for o in range(first, end)]


def _run_checkpointed(batches: list[list[Incoming]], table: dict[bytes, dict[str, Any]]
                      ) -> tuple[Engine, list[ClosedWindow]]:
    """Apply batches as the agent does, one a second, states written whenever a checkpoint is due."""
    engine, checkpoints = _engine(), Checkpoints(interval_s=3.0)
    engine.upto = {0: -1, 1: -1}
    published: list[ClosedWindow] = []
    for clock, batch in enumerate(batches):
        out = engine.apply(batch, table.get)
        published += out.closed
        checkpoints.add(out, now=clock)
        if checkpoints.due(now=clock):
            table.update((key, value) for key, value, _ in checkpoints.take())
    return engine, published


def _assert_same_windows(published: list[ClosedWindow], reference: list[ClosedWindow]) -> None:
    """Every window of the run without a crash, and a window published again only with the same value."""
    by_key: dict[tuple[str, tuple[str, ...], int], ClosedWindow] = {}
    for c in published:
        assert by_key.setdefault(_key(c), c) == c, "a re-published window must be identical"
    assert sorted(by_key.values(), key=_key) == sorted(reference, key=_key)


def _key(c: ClosedWindow) -> tuple[str, tuple[str, ...], int]:
    return c.table, c.dims, c.window_start_ms


def test_results_do_not_depend_on_batch_boundaries(records: list[Incoming]) -> None:
    small, small_state = _run(_cut(records, 7))
    large, large_state = _run(_cut(records, 500))
    one, _ = _run([records])
    assert small and sorted(small, key=_key) == sorted(large, key=_key) == sorted(one, key=_key)
    assert small_state == large_state


def test_each_window_closes_once(records: list[Incoming]) -> None:
    closed, _ = _run(_cut(records, 50))
    keys = [_key(c) for c in closed]
    assert len(keys) == len(set(keys))


def test_a_replayed_batch_is_skipped(records: list[Incoming]) -> None:
    _, table = _run(_cut(records, 100))
    before = {k: dict(v) for k, v in table.items()}
    engine = _engine()  # a restarted worker: nothing cached, state from the table
    out = engine.apply(records[:300], table.get)
    assert out.skipped == 300 and out.applied == 0 and not out.closed and not out.events
    assert {k: st.to_state() for k, (st, _) in out.states.items()} == {}
    assert table == before


def test_a_crash_before_writing_state_replays_to_the_same_windows(records: list[Incoming]) -> None:
    """Publish, then die before the state write; restart from the last written state and from an
    older committed offset. Every window is published with the value of the run without a crash."""
    reference, _ = _run(_cut(records, 40))
    batches = _cut(records, 40)
    table: dict[bytes, dict[str, Any]] = {}
    published, _ = _run(batches[:10], table)
    lost = _engine().apply(batches[10], table.get)  # published but never written: the crash
    published += lost.closed
    committed = 5 * 40  # the consumer's committed offset lags the state
    again, _ = _run(_cut(records[committed:], 33), table)
    published += again
    _assert_same_windows(published, reference)


def test_holes_the_consumer_leaves_are_found_and_filled_in_offset_order(records: list[Incoming]) -> None:
    """faust's consumer can skip records after a restart (delivering 471..494, 542..799); the engine
    names the missing ranges per partition, and with them read back the result is the full run's."""
    reference, _ = _run(_cut(records, 40))
    engine = _engine()
    engine.upto = {0: -1, 1: -1}
    table: dict[bytes, dict[str, Any]] = {}
    closed: list[ClosedWindow] = []
    by_offset = {(m.partition, m.offset): m for m in records}
    skipped = {(0, o) for o in range(30, 55)} | {(1, o) for o in (0, 1, 2, 90)}
    for batch in _cut(records, 40):
        delivered = [m for m in batch if (m.partition, m.offset) not in skipped]
        delivered += batch[:3]  # and some delivered twice
        holes = engine.holes(delivered)
        for p, ranges in holes.items():
            for first, end in ranges:
                assert first < end and all((p, o) in skipped for o in range(first, end))
        refetched = _read_back(by_offset, holes)
        out = engine.apply(engine.merge(delivered, refetched), table.get)
        closed += out.closed
        table.update({k: st.to_state() for k, (st, _) in out.states.items()})
    assert sorted(closed, key=_key) == sorted(reference, key=_key)
    assert engine.upto == {p: max(m.offset for m in records if m.partition == p) for p in (0, 1)}


def test_a_crash_between_checkpoints_replays_from_the_marks(records: list[Incoming]) -> None:
    """States are written every few batches only; a crash loses what came after the last checkpoint
    while the consumer's committed offset is already past it. The restarted engine starts from the
    marks, the records in between are read back, and every window is published with the value of
    the run without a crash."""
    reference, _ = _run(_cut(records, 40))
    batches = _cut(records, 40)
    table: dict[bytes, dict[str, Any]] = {}
    engine, published = _run_checkpointed(batches[:11], table)
    marks = {p: table[upto_key(p)]["upto"] for p in (0, 1)}
    assert marks != engine.upto, "the last batches were applied and published but not written"

    restarted = _engine()
    restarted.upto = dict(marks)
    by_offset = {(m.partition, m.offset): m for m in records}
    read_back = 0
    for batch in _cut(records[11 * 40:], 33):  # the consumer resumes where it had committed
        holes = restarted.holes(batch)
        refetched = _read_back(by_offset, holes)
        read_back += len(refetched)
        out = restarted.apply(restarted.merge(batch, refetched), table.get)
        published += out.closed
        table.update({k: st.to_state() for k, (st, _) in out.states.items()})
    assert read_back == sum(engine.upto[p] - marks[p] for p in (0, 1))
    _assert_same_windows(published, reference)


def test_a_crash_between_checkpoints_with_nothing_after_it_is_read_back_on_a_wake_up_tick(
        records: list[Incoming]) -> None:
    """The same crash at the very end: the consumer had committed everything, so after the restart
    no record comes at all (a camera gone quiet). The worker's wake-up tick per partition, with
    where the group resumed, is enough to read back everything above the marks."""
    reference, _ = _run(_cut(records, 40))
    table: dict[bytes, dict[str, Any]] = {}
    batches = _cut(records, 40)
    engine, published = _run_checkpointed(batches[:-2], table)
    for batch in batches[-2:]:  # the crash: the last two applied and published, never written
        published += engine.apply(batch, table.get).closed
    marks = {p: table[upto_key(p)]["upto"] for p in (0, 1)}
    resumed = {p: engine.upto[p] + 1 for p in (0, 1)}  # the group committed all it was delivered
    assert all(marks[p] + 1 < resumed[p] for p in (0, 1)), "the crash must leave records above the marks"

    restarted = _engine()
    restarted.upto = dict(marks)
    wake = [Incoming(TICKS, p, 7, None, b"") for p in (0, 1)]
    assert restarted.holes(wake) == {}, "without where the group resumed there is nothing to compare with"
    holes = restarted.holes(wake, resumed)
    assert holes == {p: [(marks[p] + 1, resumed[p])] for p in (0, 1)}
    by_offset = {(m.partition, m.offset): m for m in records}
    refetched = _read_back(by_offset, holes)
    out = restarted.apply(restarted.merge(wake, refetched), table.get)
    assert not out.dead, "a wake-up tick applies nothing and is no dead letter"
    published += out.closed
    assert restarted.upto == engine.upto
    _assert_same_windows(published, reference)


def test_checkpoints_wait_their_interval_and_write_states_before_marks(records: list[Incoming]) -> None:
    engine, checkpoints = _engine(), Checkpoints(interval_s=2.0)
    engine.upto = {0: -1, 1: -1}
    checkpoints.add(engine.apply(records[:30], {}.get), now=100.0)
    checkpoints.add(engine.apply(records[30:60], {}.get), now=101.0)
    assert not checkpoints.due(now=101.9)
    assert checkpoints.due(now=102.0)
    writes = checkpoints.take()
    keys = [key for key, _, _ in writes]
    assert keys == [b"campus", b"gate", upto_key(0), upto_key(1)], "one write per camera, marks last"
    assert writes[0][1]["offsets"] == {"0": max(m.offset for m in records[:60] if m.partition == 0)}
    assert [p for _, _, p in writes] == [0, 1, 0, 1], "each on its camera's changelog partition"
    assert checkpoints.take() == [] and not checkpoints.due(now=1e9)


def test_records_at_or_below_the_applied_mark_are_replays(records: list[Incoming]) -> None:
    engine = _engine()
    engine.upto = {0: 10, 1: 10}
    batch = [m for m in records if m.offset <= 20]
    assert engine.holes(batch) == {}
    out = engine.apply(batch, {}.get)
    assert out.skipped == 22 and out.applied == 20
    assert out.upto == {0: 20, 1: 20}
    assert engine.holes([m for m in records if m.offset in (25, 27)]) == {0: [(21, 25), (26, 27)],
                                                                           1: [(21, 25), (26, 27)]}


def test_state_round_trips_through_json(records: list[Incoming]) -> None:
    import json

    _, table = _run(_cut(records[:200], 50))
    for key, state in table.items():
        again = CameraState.from_state(SITE, key.decode(), json.loads(json.dumps(state))).to_state()
        assert again == state


def _tick(p: int, offset: int, tick: Tick) -> Incoming:
    return Incoming(TICKS, p, offset, b"campus", tick.encode())


def test_ticks_close_an_idle_cameras_windows_once(records: list[Incoming]) -> None:
    campus = [r for r in records if r.key == b"campus"]
    engine = _engine()
    closed, table = _run([campus], engine=engine)
    state = CameraState.from_state(SITE, "campus", table[b"campus"])
    assert state.windows.open_windows(), "the last windows stay open while nothing else arrives"
    last = campus[-1].offset

    stale = engine.apply([_tick(0, 0, Tick(last - 1, state.max_ts + 10**6))], table.get)
    assert stale.ticks == 0 and not stale.closed, "a tick overtaken by a record is ignored"

    ticks = engine.idle_ticks(now=10**9, idle_timeout_s=2, partitions={0}, load=table.get)
    assert [(k, p) for k, p, _ in ticks] == [(b"campus", 0)]
    assert ticks[0][2].offset == last and ticks[0][2].watermark_ms > state.max_ts
    assert engine.idle_ticks(now=10**9, idle_timeout_s=2, partitions={1}, load=table.get) == []

    flush = Tick(last, state.max_ts + 10**6)
    out = engine.apply([_tick(0, 1, flush)], table.get)
    assert out.ticks == 1 and out.closed and sum(out.idle_closed.values()) == len(out.closed)
    table.update({k: st.to_state() for k, (st, _) in out.states.items()})
    assert not CameraState.from_state(SITE, "campus", table[b"campus"]).windows.open_windows()
    replay = _engine().apply([_tick(0, 1, flush)], table.get)
    assert not replay.closed, "a replayed tick closes nothing twice"
    assert engine.idle_ticks(now=10**9, idle_timeout_s=2, partitions={0}, load=table.get) == [], \
        "nothing left open: the camera stops ticking"

    reference, _ = _run([campus])
    every = {_key(c) for c in closed + out.closed}
    assert len(every) == len(closed) + len(out.closed)
    assert {_key(c) for c in reference} <= every


# ---------------------------------------------------------------- issue 13 finding 6: clock skew


def _crossings_with(frames: list[dict[str, Any]], site: Any = SITE) -> tuple[list[tuple[Any, ...]], Any]:
    serde = _serde()
    batch = [Incoming(TOPIC, 0, i, b"campus", serde.encode(f)) for i, f in enumerate(frames)]
    decoder = Decoder(serde)
    decoder.fetch(serde.schema_id)
    out = Engine(site, decoder, TICKS).apply(batch, {}.get)
    return [(e.line_id, e.direction, e.ts_ms) for e in out.events if isinstance(e, Crossing)], out


def test_one_frame_from_the_future_costs_one_record_not_the_cameras_counts() -> None:
    """One frame stamped 23 h ahead (an edge whose clock jumped) used to be accepted: the camera's
    next frames were then older than its newest and skipped as replays, and nothing was counted. It is
    a dead letter now, and every other frame counts as if it had never been sent."""
    import time

    now = int(time.time() * 1000)
    frames = simulate(SITE, "campus", duration_s=30, fps=10, n_objects=12, seed=5, t0_ms=now - 60_000).frames
    reference, _ = _crossings_with(frames)
    assert len(reference) >= 5
    for ahead_ms in (23 * 3600_000, 10 * 60_000):  # beyond the default of 5 minutes
        future = dict(frames[50], ts=now + ahead_ms)
        got, out = _crossings_with(frames[:50] + [future] + frames[50:])
        assert got == reference, f"{ahead_ms} ms ahead"
        assert [(d.kind, d.record.offset) for d in out.dead] == [("time", 50)]
        assert "ahead of this worker's clock" in out.dead[0].reason and "max_clock_skew_s" in out.dead[0].reason


def test_the_accepted_clock_skew_is_configurable() -> None:
    import time

    from privaflow.schemas.site import parse_site_config
    from tests.streams.harness import TEST_SITE

    now = int(time.time() * 1000)
    frames = simulate(SITE, "campus", duration_s=5, fps=10, n_objects=2, seed=1, t0_ms=now + 9 * 60_000).frames
    _, strict = _crossings_with(frames)
    assert {d.kind for d in strict.dead} == {"time"} and strict.applied == 0
    lenient = parse_site_config({**TEST_SITE, "windows": {**TEST_SITE.get("windows", {}), "max_clock_skew_s": 900}})
    _, out = _crossings_with(frames, lenient)
    assert out.dead == [] and out.applied == len(frames)
