"""Fuzzed bad input through a real worker on the real broker (issue: bad input).

Hypothesis generates a few thousand records the worker cannot use (random bytes, short or wrongly
framed payloads, unknown schema ids, truncated or garbled Avro, and well-formed records that break
the contract: box or foot point outside 0..1, NaN confidence, a foreign site or camera, a key that is
not the camera, a null value) with valid frames of two simulated cameras in between. One worker
reads them all. Every bad record must come out on the dead-letter topic exactly once, unchanged and
with a reason naming its problem and where it came from; no good record may end up there; the
worker must stay up and account for every record in its metrics.

Garbled payloads (bit flips, overwrites, length varints, random tails after a valid header) are
sometimes still valid records; an in-process oracle (our serde and `frame_problem`, the worker's own
rules) says which, and the worker must agree with it record for record. Every other kind is bad by
construction, and the test checks that the oracle agrees before anything is sent.

Requirement ids: T9 (nothing silently lost), T6 (a reason names the problem, not a person).
"""

from __future__ import annotations

import math
import struct
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from privaflow.schemas.codec import AvroSerde, DecodeError  # noqa: E402
from privaflow.streams.consume import frame_problem  # noqa: E402
from privaflow_stack.simulate import simulate  # noqa: E402
from tests.streams.harness import (  # noqa: E402
    TEST_SITE,
    DetectionsProducer,
    Run,
    WorkerProcess,
    interleave,
    read_topic,
    write_config,
)

FUZZ_CASES = 3000
CAMERAS = frozenset(c["id"] for c in TEST_SITE["cameras"])
# the classes each camera counts: a garbled label outside them (or a vocabulary) is a dead letter too
CLASSES = {c["id"]: frozenset(c["classes"]) for c in TEST_SITE["cameras"]}
CAMERA_KEYS = sorted(c.encode() for c in CAMERAS)
# float32 values (Avro `float`; bounds exact in float32) outside the worker's 0..1 tolerance of 1e-4
OUTSIDE = (st.floats(min_value=1 + 2**-7, width=32) | st.floats(max_value=-(2**-7), width=32) | st.just(math.nan))
BAD_CONFIDENCE = (st.floats(min_value=1 + 2**-10, width=32) | st.floats(max_value=-(2**-10), width=32)
                  | st.just(math.nan))
GARBLE_VARINTS = (b"\xff\xff\xff\xff\x0f", b"\x01", b"\x7f", b"\x80\x80\x80\x80\x80\x01", b"\xfe\xff\xff\xff\x0f")


@dataclass(frozen=True)
class Case:
    """One fuzzed record: what it is, what to send, and words one of which its reason must contain
    (empty: any non-empty reason will do, e.g. fastavro's message about garbage)."""

    kind: str
    key: bytes | None
    value: bytes | None
    words: tuple[str, ...] = ()


def cases(serde: AvroSerde, templates: list[dict[str, Any]]) -> st.SearchStrategy[Case]:
    """Every kind of bad record; `templates` are valid frames (with detections) to spoil."""
    encoded = [serde.encode(t) for t in templates]
    any_key = st.sampled_from(CAMERA_KEYS) | st.none() | st.binary(max_size=12)

    @st.composite
    def short(draw: st.DrawFn) -> Case:
        value = draw(st.binary(max_size=4))
        return Case("short", draw(any_key), value, ("shorter than the 5-byte", "null value"))

    @st.composite
    def random_bytes(draw: st.DrawFn) -> Case:
        return Case("random", draw(any_key), draw(st.binary(min_size=5, max_size=300)))

    @st.composite
    def wrong_magic(draw: st.DrawFn) -> Case:
        magic = draw(st.integers(1, 255))
        body = draw(st.sampled_from(encoded))[1:]
        return Case("magic", draw(any_key), bytes([magic]) + body, ("is not 0 (not Confluent Avro framing)",))

    @st.composite
    def unknown_id(draw: st.DrawFn) -> Case:
        sid = draw(st.integers(10_000_000, 2**32 - 1))  # far above any id a registry has handed out
        body = draw(st.sampled_from(encoded))[5:]
        return Case("unknown_id", b"campus", b"\x00" + struct.pack(">I", sid) + body, (f"schema id {sid}",))

    @st.composite
    def truncated(draw: st.DrawFn) -> Case:
        good = draw(st.sampled_from(encoded))
        return Case("truncated", draw(any_key), good[:draw(st.integers(5, len(good) - 1))])

    @st.composite
    def garbled(draw: st.DrawFn) -> Case:
        b = bytearray(draw(st.sampled_from(encoded)))
        op = draw(st.sampled_from(["flip", "overwrite", "varint", "tail"]))
        if op == "flip":
            for _ in range(draw(st.integers(1, 8))):
                b[draw(st.integers(5, len(b) - 1))] ^= 1 << draw(st.integers(0, 7))
        elif op == "overwrite":
            i = draw(st.integers(5, len(b) - 1))
            chunk = draw(st.binary(min_size=1, max_size=16))
            b[i:i + len(chunk)] = chunk
        elif op == "varint":
            i = draw(st.integers(5, len(b) - 1))
            b[i:i + 1] = draw(st.sampled_from(GARBLE_VARINTS))
        else:
            b = b[:5] + bytearray(draw(st.binary(max_size=64)))
        return Case("garbled", b"campus", bytes(b))  # may still be valid: the oracle decides

    def spoiled(kind: str, words: tuple[str, ...], change: Any) -> st.SearchStrategy[Case]:
        @st.composite
        def build(draw: st.DrawFn) -> Case:
            frame = draw(st.sampled_from(templates))
            frame = {**frame, "detections": [dict(d) for d in frame["detections"]]}
            key = change(draw, frame)
            return Case(kind, frame["camera_id"].encode() if key is ... else key, serde.encode(frame), words)
        return build()

    def box(draw: st.DrawFn, frame: dict[str, Any]) -> Any:
        det = draw(st.sampled_from(frame["detections"]))
        det[draw(st.sampled_from(["x1", "y1", "x2", "y2"]))] = draw(OUTSIDE)
        return ...

    def foot(draw: st.DrawFn, frame: dict[str, Any]) -> Any:
        draw(st.sampled_from(frame["detections"]))[draw(st.sampled_from(["foot_x", "foot_y"]))] = draw(OUTSIDE)
        return ...

    def confidence(draw: st.DrawFn, frame: dict[str, Any]) -> Any:
        draw(st.sampled_from(frame["detections"]))["confidence"] = draw(BAD_CONFIDENCE)
        return ...

    def frame_size(draw: st.DrawFn, frame: dict[str, Any]) -> Any:
        frame[draw(st.sampled_from(["frame_width", "frame_height"]))] = draw(st.integers(-(2**31), 0))
        return ...

    def site(draw: st.DrawFn, frame: dict[str, Any]) -> Any:
        frame["site_id"] = draw(st.text(max_size=40).filter(lambda s: s != TEST_SITE["site_id"]))
        return ...

    def camera(draw: st.DrawFn, frame: dict[str, Any]) -> Any:
        frame["camera_id"] = draw(st.text(max_size=40).filter(lambda s: s not in CAMERAS))
        return ...  # keyed by its own (unknown) camera id, as an edge would

    def key(draw: st.DrawFn, frame: dict[str, Any]) -> Any:
        frame["camera_id"] = cam = draw(st.sampled_from(sorted(CAMERAS)))
        return draw(any_key.filter(lambda k: k != cam.encode()))

    @st.composite
    def null(draw: st.DrawFn) -> Case:
        return Case("null", draw(any_key), None, ("null value",))

    return st.one_of(
        short(), random_bytes(), wrong_magic(), unknown_id(), truncated(), garbled(), null(),
        spoiled("box", ("not inside 0..1",), box),
        spoiled("foot", ("foot point",), foot),
        spoiled("confidence", ("confidence",), confidence),
        spoiled("frame_size", ("frame size",), frame_size),
        spoiled("site", ("not this worker's site",), site),
        spoiled("camera", ("not in the site config",), camera),
        spoiled("key", ("is not its camera_id",), key),
    )


def draw_cases(strategy: st.SearchStrategy[Case], n: int) -> list[Case]:
    """`n` examples of `strategy`, the same ones on every run (no database, derandomised)."""
    out: list[Case] = []

    @settings(max_examples=n, database=None, derandomize=True, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(case: Case) -> None:
        out.append(case)

    collect()
    return out


def usable(serde: AvroSerde, key: bytes | None, value: bytes | None) -> bool:
    """The oracle: would the worker's rules apply this record (rather than dead-letter it)?"""
    if value is None:
        return False
    try:
        frame = serde.decode(value)
    except DecodeError:
        return False
    cam = None if key is None else key.decode("utf-8", "replace")
    return frame_problem(frame, TEST_SITE["site_id"], CAMERAS, cam, classes=CLASSES) is None


def metric(worker: WorkerProcess, name: str, **labels: str) -> float:
    """Sum of a counter's `_total` samples whose labels include `labels`."""
    total = 0.0
    for family in text_string_to_metric_families(worker.get("/metrics").text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def wait_accounted(worker: WorkerProcess, total: int, timeout: float) -> float:
    """Poll /metrics until the worker has counted `total` records (applied, dead-lettered or replayed);
    returns the count. A crashed agent stops the web server but not always the process, so the log
    is checked too, to fail at once rather than at the deadline."""
    deadline = time.monotonic() + timeout
    seen = 0.0
    while time.monotonic() < deadline:
        if not worker.alive() or "Crashed reason=" in worker.log_path.read_text(errors="replace"):
            raise AssertionError("the worker crashed:\n" + worker.log_tail(30))
        try:
            seen = sum(metric(worker, "privaflow_detection_records_total", outcome=o)
                       for o in ("applied", "dead_letter", "replayed"))
        except httpx.HTTPError:
            pass  # not serving yet
        if seen >= total:
            break
        time.sleep(0.5)
    return seen


def end_offsets(bootstrap: str, topic: str) -> int:
    """Records in `topic` right now (sum of high watermarks; the run's topics start at offset 0)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"watermarks-{time.monotonic_ns()}"})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
    finally:
        c.close()


@pytest.mark.integration
def test_fuzzed_bad_records_all_land_in_the_dead_letter_topic(stack: Any, unique: str, tmp_path: Path) -> None:
    run = Run(unique, stack.bootstrap, stack.registry_url)
    run.create_topics()
    producer = DetectionsProducer(run)
    serde = producer.serde
    sims = {cam: simulate(run.site, cam, duration_s=60, fps=10, n_objects=12, seed=i)
            for i, cam in enumerate(("campus", "street"))}
    valid = interleave({cam: s.frames for cam, s in sims.items()})
    templates = [f for f in simulate(run.site, "campus", duration_s=20, fps=5, n_objects=8, seed=99).frames
                 if f["detections"]][:40]
    fuzz = draw_cases(cases(serde, templates), FUZZ_CASES)
    assert len(fuzz) == FUZZ_CASES

    # the oracle must agree that everything but a garbled record is bad, and every frame good
    verdict = [usable(serde, c.key, c.value) for c in fuzz]
    wrongly_usable = [c for c, ok in zip(fuzz, verdict, strict=True) if ok and c.kind != "garbled"]
    assert not wrongly_usable, f"bad by construction, yet usable: {wrongly_usable[:3]}"
    assert all(usable(serde, f["camera_id"].encode(), serde.encode(f)) for f in valid)

    # a few fuzzed records after every valid frame, so the worker must keep going between them
    bad: dict[int, Case] = {}
    good: set[int] = set()
    per_frame = math.ceil(len(fuzz) / len(valid))
    for i, f in enumerate(valid):
        good.add(producer.frame(f))
        for c, ok in zip(fuzz[i * per_frame:(i + 1) * per_frame], verdict[i * per_frame:(i + 1) * per_frame],
                         strict=True):
            seq = producer.raw(c.key, c.value)
            if ok:
                good.add(seq)
            else:
                bad[seq] = c
    producer.flush()
    assert len(good) + len(bad) == len(valid) + len(fuzz)
    where = {producer.delivered[seq]: c for seq, c in bad.items()}
    good_spots = {producer.delivered[seq] for seq in good}

    worker = WorkerProcess(run, write_config(TEST_SITE, tmp_path / "site.yaml"), tmp_path / "state",
                           tmp_path / "worker.log").start()
    try:
        # the worker counts a batch after its dead letters are acknowledged: once every record is
        # counted, the dead-letter topic is complete
        total = len(good) + len(bad)
        seen = wait_accounted(worker, total, timeout=120)
        assert seen == total, f"worker accounted for {seen} of {total} records\n{worker.log_tail()}"
        assert metric(worker, "privaflow_detection_records_total", outcome="replayed") == 0
        assert metric(worker, "privaflow_detection_records_total", outcome="applied") == len(good)
        assert metric(worker, "privaflow_dead_letters_total") == len(bad)

        n_dlq = end_offsets(run.bootstrap, run.names.dlq)
        dlq = read_topic(run.bootstrap, run.names.dlq, lambda recs: len(recs) >= n_dlq, timeout=60)
        assert len(dlq) == n_dlq == len(bad), f"{n_dlq} dead letters on the topic, {len(dlq)} read, {len(bad)} bad"
        missing = dict(where)
        for m in dlq:
            h = {k: v.decode() for k, v in m.headers() or []}
            assert h["source_topic"] == run.names.detections
            spot = (int(h["source_partition"]), int(h["source_offset"]))
            assert spot not in good_spots, f"a usable record was dead-lettered: {h}"
            assert spot in missing, f"dead letter for no bad record, or twice for one: {h}"
            c = missing.pop(spot)
            assert h["error"].strip(), f"{c.kind} record without a reason"
            assert not c.words or any(w in h["error"] for w in c.words), (c.kind, c.words, h["error"])
            # a record with neither key nor value cannot be produced as such: its dead letter has an empty value
            original = b"" if c.key is None and c.value is None else c.value
            assert m.value() == original and m.key() == c.key, f"{c.kind}: the dead letter is not the original"
        assert not missing, f"bad records not dead-lettered: {Counter(c.kind for c in missing.values())}"
        assert worker.alive(), worker.log_tail()
        assert "Traceback" not in worker.log_path.read_text(errors="replace"), worker.log_tail()
    finally:
        worker.stop()
        run.delete_topics()
    kinds = dict(sorted(Counter(c.kind for c in bad.values()).items()))
    print(f"\n{len(fuzz)} fuzzed records ({len(bad)} bad: {kinds}, {len(fuzz) - len(bad)} garbled but usable)"
          f" among {len(valid)} valid frames")


@pytest.mark.integration
def test_a_record_without_key_and_value_is_a_dead_letter(stack: Any, unique: str, tmp_path: Path) -> None:
    run = Run(unique, stack.bootstrap, stack.registry_url)
    run.create_topics()
    producer = DetectionsProducer(run)
    frames = simulate(run.site, "campus", duration_s=2, fps=10, n_objects=1, seed=5).frames
    for f in frames[:10]:
        producer.frame(f)
    spot = producer.raw(None, None)
    for f in frames[10:]:
        producer.frame(f)
    producer.flush()
    worker = WorkerProcess(run, write_config(TEST_SITE, tmp_path / "site.yaml"), tmp_path / "state",
                           tmp_path / "worker.log").start()
    try:
        assert wait_accounted(worker, len(frames) + 1, timeout=90) == len(frames) + 1, worker.log_tail(20)
        dlq = read_topic(run.bootstrap, run.names.dlq, lambda recs: len(recs) >= 1, timeout=30)
        assert len(dlq) == 1
        h = {k: v.decode() for k, v in dlq[0].headers() or []}
        assert (int(h["source_partition"]), int(h["source_offset"])) == producer.delivered[spot]
        assert "null value" in h["error"]
    finally:
        worker.stop()
        run.delete_topics()
