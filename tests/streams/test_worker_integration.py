"""The stream worker against the real broker and registry: simulated cameras in, partner topics out,
equal to the simulator's truth and to the in-process reference, record for record, also across a
SIGKILL and across a crash between publishing and writing state.

Requirement ids: G2, G3, G5, T5 (tables by place, direction, class, time), T6/T7 (partner topics
carry aggregates only), T9 (nothing lost or double counted when a worker dies).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from privaflow.schemas.detections import batch_records
from privaflow.schemas.topics import partner_topic_name
from privaflow_stack.simulate import Simulation, simulate
from tests.streams.harness import (
    FRAMES_PER_RECORD,
    TEST_SITE,
    DetectionsProducer,
    Run,
    WorkerProcess,
    conflicting_duplicates,
    interleave,
    latest_by_key,
    read_partner,
    read_partner_tables,
    reference,
    site_config,
    summed,
    write_config,
)

pytestmark = pytest.mark.integration

CAMERAS = ("campus", "street", "gate")


def _scenes(duration_s: float = 60, n_objects: int = 25) -> dict[str, Simulation]:
    site = site_config()
    return {cam: simulate(site, cam, duration_s=duration_s, fps=10, n_objects=n_objects, seed=i)
            for i, cam in enumerate(CAMERAS)}


def _expected(sims: dict[str, Simulation]) -> dict[str, dict[str, dict[str, Any]]]:
    return reference(site_config(), {c: s.frames for c, s in sims.items()})


def _assert_matches(got: dict[str, list[tuple[str, dict[str, Any]]]], expected: dict[str, dict[str, dict[str, Any]]],
                    sims: dict[str, Simulation], once: bool) -> None:
    for table, records in got.items():
        want = expected.get(partner_topic_name(table), {})
        assert not conflicting_duplicates(records), f"{table}: a window was published with two different values"
        if once:
            assert [k for k, n in Counter(k for k, _ in records).items() if n > 1] == [], \
                f"{table}: a window was published twice"
        assert latest_by_key(records) == want, f"{table}: published windows differ from the reference"
    # and the reference is the simulator's truth (zero noise: exact)
    truth_crossings = sum((s.truth.crossings for s in sims.values()), Counter())
    truth_transitions = sum((s.truth.transitions for s in sims.values()), Counter())
    final = {table: list(latest_by_key(records).items()) for table, records in got.items()}
    assert summed(final["traffic_volume"], ("line_id", "direction", "class_name")) == truth_crossings
    assert summed(final["flow_lines"], ("origin_zone_id", "destination_zone_id")) == truth_transitions
    dwell: Counter[str] = Counter()
    for _, v in final["dwell"]:
        dwell[v["zone_id"]] += sum(c or 0 for c in v["bin_counts"])  # with k = 1 a null bin holds no visit
    assert dwell == {z: len(d) for s in sims.values() for z, d in s.truth.dwell_s.items()}


def _metric(worker: WorkerProcess, name: str) -> float:
    total = 0.0
    for line in worker.get("/metrics").text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _produced(run: Run, duration_s: float = 60) -> tuple[dict[str, Simulation], DetectionsProducer]:
    """The run's topics, and every frame of fresh scenes produced to them and flushed."""
    run.create_topics()
    sims = _scenes(duration_s=duration_s)
    producer = DetectionsProducer(run)
    producer.frames(interleave({c: s.frames for c, s in sims.items()}))
    producer.flush()
    return sims, producer


def test_published_windows_equal_the_simulated_truth(stack: Any, unique: str, tmp_path: Path) -> None:
    run = Run(unique, stack.bootstrap, stack.registry_url)
    sims, producer = _produced(run)
    assert len({p for p, _ in producer.delivered.values()}) > 1, "cameras should spread over partitions"

    worker = WorkerProcess(run, write_config(TEST_SITE, tmp_path / "site.yaml"), tmp_path / "state",
                           tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        expected = _expected(sims)
        got = read_partner_tables(run, expected)
        _assert_matches(got, expected, sims, once=True)
        n_frames = sum(len(s.frames) for s in sims.values())
        assert _metric(worker, 'privaflow_detection_records_total{outcome="applied"}') == producer.sent
        assert _metric(worker, "privaflow_frames_total") == n_frames
        assert _metric(worker, "privaflow_late_records_total") == 0
        assert _metric(worker, 'privaflow_windows_closed_total{table="occupancy",trigger="idle"}') > 0, \
            "the last windows of a finished video close by the idle timer"
        assert worker.get("/healthz").status_code == 200
    finally:
        worker.stop()
        run.delete_topics()


def _committed_and_ends(run: Run) -> tuple[dict[int, int], dict[int, int]]:
    """The worker group's committed offset and the end offset of each detections partition that has
    records."""
    from confluent_kafka import Consumer, TopicPartition

    topic = run.names.detections
    c = Consumer({"bootstrap.servers": run.bootstrap, "group.id": run.app_id, "enable.auto.commit": False})
    try:
        parts = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        committed = {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, p) for p in parts],
                                                                      timeout=10)}
    finally:
        c.close()
    return {p: committed[p] for p in ends if ends[p] > 0}, {p: e for p, e in ends.items() if e > 0}


def test_records_faust_loses_are_read_back_and_its_commits_go_past_them(stack: Any, unique: str,
                                                                         tmp_path: Path) -> None:
    """Under load Faust can lose records it delivered (a 500-camera bench_load run: offsets 552..560 of a
    partition). The worker reads them back, so the tables stay exact; and Faust, which commits only up
    to its first unacked offset, must still commit past them. Otherwise the group's lag, which KEDA
    scales on, grows for ever, and a restart re-reads everything since."""
    run = Run(unique, stack.bootstrap, stack.registry_url)
    sims, producer = _produced(run)
    worker = WorkerProcess(run, write_config(TEST_SITE, tmp_path / "site.yaml"), tmp_path / "state",
                           tmp_path / "worker.log", extra_env={"PRIVAFLOW_FAULT_UNACKED_OFFSETS": "100-109"}).start()
    try:
        worker.wait_ready()
        expected = _expected(sims)
        _assert_matches(read_partner_tables(run, expected), expected, sims, once=True)
        lost = 10 * sum(1 for end in _committed_and_ends(run)[1].values() if end > 110)  # offsets 100..109
        assert lost > 0 and _metric(worker, "privaflow_refetched_records_total") >= lost
        deadline = time.monotonic() + 60  # Faust commits every 2.8 s
        while (state := _committed_and_ends(run))[0] != state[1] and time.monotonic() < deadline:
            time.sleep(1)
        committed, ends = state
        assert committed == ends, f"committed offsets stopped short of the ends {ends}: {committed}"
    finally:
        worker.stop()
        run.delete_topics()


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_sigkill_in_the_middle_loses_and_duplicates_nothing(stack: Any, unique: str, tmp_path: Path,
                                                            store: str) -> None:
    """Frames arrive live (paced); the worker is SIGKILLed after it published some windows and
    restarted at once; published windows still equal the reference exactly. With the production
    store (RocksDB, kept in the state dir across the restart) as with the in-memory one."""
    run = Run(unique, stack.bootstrap, stack.registry_url)
    run.create_topics()
    sims = _scenes(duration_s=60)
    frames = interleave({c: s.frames for c, s in sims.items()})
    producer = DetectionsProducer(run)
    config = write_config(TEST_SITE, tmp_path / "site.yaml")

    records = batch_records(frames, FRAMES_PER_RECORD)

    def produce_live() -> None:  # ~150 frames/s: the whole scene takes ~12 s
        for i, r in enumerate(records):
            producer.record(r)
            if i % 6 == 5:
                producer.producer.flush(5)
                time.sleep(0.2)
        producer.flush()

    static = {**run.static_member, "PRIVAFLOW_STREAMS_STORE": store}
    first = WorkerProcess(run, config, tmp_path / "state", tmp_path / "worker1.log", extra_env=static).start()
    feeder = threading.Thread(target=produce_live, daemon=True)
    second = None
    try:
        first.wait_ready()
        feeder.start()
        some = read_partner(run, "occupancy", lambda recs: len(recs) >= 4, timeout=60)
        assert len(some) >= 4
        assert feeder.is_alive(), "the kill should happen while frames are still arriving"
        first.kill()
        second = WorkerProcess(run, config, tmp_path / "state", tmp_path / "worker2.log", extra_env=static,
                               port=first.port).start()
        second.wait_ready()
        feeder.join(timeout=120)
        expected = _expected(sims)
        got = read_partner_tables(run, expected)
        _assert_matches(got, expected, sims, once=False)
    finally:
        first.kill()
        if second is not None:
            second.stop()
        run.delete_topics()


def test_crash_between_publishing_and_writing_state_republishes_identically(stack: Any, unique: str,
                                                                             tmp_path: Path) -> None:
    """The worst moment to die: windows are on the partner topics, the state that closed them is
    not in the changelog yet. The restarted worker replays and publishes the same keys with the
    same values: the compacted topic ends up exactly right."""
    run = Run(unique, stack.bootstrap, stack.registry_url)
    sims, producer = _produced(run)
    config = write_config(TEST_SITE, tmp_path / "site.yaml")
    static = run.static_member
    first = WorkerProcess(run, config, tmp_path / "state", tmp_path / "worker1.log",
                          extra_env={**static, "PRIVAFLOW_FAULT_EXIT_AFTER_PUBLISH": "2"}).start()
    second = None
    try:
        assert first.proc is not None
        first.proc.wait(timeout=120)
        assert first.proc.returncode == 75, first.log_tail()
        second = WorkerProcess(run, config, tmp_path / "state", tmp_path / "worker2.log", extra_env=static,
                               port=first.port).start()
        second.wait_ready()
        expected = _expected(sims)
        got = read_partner_tables(run, expected)
        _assert_matches(got, expected, sims, once=False)
        republished = [k for records in got.values() for k, n in Counter(k for k, _ in records).items() if n > 1]
        assert republished, "the replay should have re-published the windows of the interrupted batch"
    finally:
        first.kill()
        if second is not None:
            second.stop()
        run.delete_topics()


def _applied(worker: WorkerProcess) -> float:
    return _metric(worker, 'privaflow_detection_records_total{outcome="applied"}')


def test_records_the_consumer_skips_are_read_back(stack: Any, unique: str, tmp_path: Path) -> None:
    """A consumer that resumes past records the state never saw (faust's fetcher does this around
    recovery; here the committed offsets are moved ahead by hand, which is deterministic): the
    worker reads the skipped records back directly and the tables are still exact."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    run = Run(unique, stack.bootstrap, stack.registry_url)
    run.create_topics()
    sims = _scenes(duration_s=60)
    records = batch_records(interleave({c: s.frames for c, s in sims.items()}), FRAMES_PER_RECORD)
    half = len(records) // 2
    producer = DetectionsProducer(run)
    for r in records[:half]:
        producer.record(r)
    producer.flush()
    config = write_config(TEST_SITE, tmp_path / "site.yaml")
    # the idle timer must not close windows while the second half is held back
    first = WorkerProcess(run, config, tmp_path / "state", tmp_path / "worker1.log", idle_timeout=600).start()
    second = None
    try:
        first.wait_ready()
        deadline = time.monotonic() + 60
        while _applied(first) < half and time.monotonic() < deadline:
            time.sleep(0.3)
        assert _applied(first) == half
        assert first.stop() == 0
        for r in records[half:]:
            producer.record(r)
        producer.flush()
        first_of_second: dict[int, int] = {}
        for seq in range(half, len(records)):
            p, off = producer.delivered[seq]
            first_of_second[p] = min(off, first_of_second.get(p, off))
        skip = 5
        ahead = [TopicPartition(run.names.detections, p, off + skip) for p, off in first_of_second.items()]
        admin = AdminClient({"bootstrap.servers": stack.bootstrap})
        admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(run.app_id, ahead)])[run.app_id].result(30)

        second = WorkerProcess(run, config, tmp_path / "state", tmp_path / "worker2.log").start()
        second.wait_ready()
        expected = _expected(sims)
        got = read_partner_tables(run, expected)
        _assert_matches(got, expected, sims, once=False)
        log = second.log_path.read_text()
        for p, off in first_of_second.items():
            assert f"[{p}]: the consumer skipped offsets {off}..{off + skip - 1};" in log
        # at least those (faust's own fetcher race at start-up can add holes of its own)
        assert _metric(second, "privaflow_refetched_records_total") >= skip * len(first_of_second)
    finally:
        first.kill()
        if second is not None:
            second.stop()
        run.delete_topics()


def test_a_crash_after_the_group_committed_past_the_checkpoint_loses_nothing_with_no_record_after_it(
        stack: Any, unique: str, tmp_path: Path) -> None:
    """Faust commits what it was delivered every few seconds; the worker writes its state only
    every `checkpoint_s`. Killed after such a commit and before its checkpoint, with no record
    coming after the restart (the cameras went quiet): the restarted worker still reads everything
    above its last marks back, and the tables are exact, the last windows included."""
    from confluent_kafka import ConsumerGroupTopicPartitions
    from confluent_kafka.admin import AdminClient

    run = Run(unique, stack.bootstrap, stack.registry_url)
    sims, producer = _produced(run, duration_s=30)
    ends: dict[int, int] = {}
    for p, off in producer.delivered.values():
        ends[p] = max(ends.get(p, 0), off + 1)
    config = write_config(TEST_SITE, tmp_path / "site.yaml")
    static = run.static_member
    # no checkpoint after the first marks, and no idle close: the last windows are only in memory
    first = WorkerProcess(run, config, tmp_path / "state", tmp_path / "worker1.log", idle_timeout=600,
                          extra_env={**static, "PRIVAFLOW_CHECKPOINT_S": "3600"}).start()
    second = None
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})

    def committed() -> dict[int, int]:
        group = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(run.app_id)])[run.app_id].result(10)
        return {tp.partition: tp.offset for tp in group.topic_partitions if tp.topic == run.names.detections}

    try:
        first.wait_ready()
        deadline = time.monotonic() + 60
        while committed() != ends:
            assert time.monotonic() < deadline, f"committed {committed()}, log ends at {ends}\n{first.log_tail()}"
            time.sleep(0.5)
        first.kill()
        second = WorkerProcess(run, config, tmp_path / "state", tmp_path / "worker2.log", extra_env=static,
                               port=first.port).start()
        second.wait_ready()
        expected = _expected(sims)
        got = read_partner_tables(run, expected, timeout=60)
        _assert_matches(got, expected, sims, once=False)
        assert _metric(second, "privaflow_refetched_records_total") > 0, second.log_tail()
        assert "the group had committed past the last checkpoint: offsets 0.." in second.log_path.read_text()
    finally:
        first.kill()
        if second is not None:
            second.stop()
        run.delete_topics()
