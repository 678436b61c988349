"""Dead letters: records the worker cannot use go to privaflow.detections.dlq.v2 with the original
bytes, the reason and where they came from; the worker carries on and the good records around
them still count. A record (several frames of one camera) is used or refused as a whole.

Requirement ids: T6 (the reason names the problem, never echoes a track id), T9 (nothing silently lost).
"""

from __future__ import annotations

import asyncio
import io
import json
import struct
from pathlib import Path
from typing import Any

import fastavro
import pytest

from privaflow.schemas.codec import AvroSerde, RegistryError, SchemaRegistry
from privaflow.schemas.detections import batch_records
from privaflow.streams.consume import Decoder, Engine, Incoming, Outcome, batch_problem
from privaflow.streams.publish import Publisher
from privaflow.streams.settings import TopicNames
from privaflow_stack.simulate import simulate
from tests.streams.fakes import Sent
from tests.streams.harness import (
    REPO,
    TEST_SITE,
    DetectionsProducer,
    FakeRegistry,
    Run,
    WorkerProcess,
    read_partner,
    read_topic,
    site_config,
    summed,
    write_config,
)

SITE = site_config()
CAMERAS = frozenset(c.id for c in SITE.cameras)


def _frame(**changes: Any) -> dict[str, Any]:
    det = {"track_id": 7, "class_name": "person", "confidence": 0.9, "x1": 0.1, "y1": 0.2, "x2": 0.3, "y2": 0.6,
           "foot_x": 0.2, "foot_y": 0.6, "world_x_m": None, "world_y_m": None, "speed_kmh": None,
           "heading_deg": None, "colour": None, "age_bracket": None, "gender": None}
    frame = {"site_id": SITE.site_id, "camera_id": "campus", "ts": 1_767_225_600_000, "frame_seq": 1,
             "frame_width": 640, "frame_height": 480, "detected": True, "detections": [det]}
    det.update({k: v for k, v in changes.items() if k in det})
    frame.update({k: v for k, v in changes.items() if k in frame and k != "detections"})
    return frame


def _record(**changes: Any) -> dict[str, Any]:
    """A record of two frames, the second one spoiled by `changes`."""
    good = _frame()
    return batch_records([good, {**_frame(**changes), "ts": changes.get("ts", good["ts"] + 100), "frame_seq": 2}],
                         5)[0]


@pytest.mark.parametrize(("changes", "kind", "words"), [
    ({"site_id": "elsewhere"}, "site", "not this worker's site"),
    ({"camera_id": "ghost"}, "camera", "not in the site config"),
    ({"x2": 1.7}, "box", "not inside 0..1"),
    ({"x1": 0.5, "x2": 0.2}, "box", "not inside 0..1"),
    ({"y1": float("nan")}, "box", "not inside 0..1"),
    ({"foot_y": -0.2}, "box", "foot point"),
    ({"confidence": 1.5}, "value", "confidence"),
    ({"class_name": "car"}, "class", "is not one of the classes of camera 'campus'"),
    ({"frame_width": 0}, "value", "frame size"),
    ({"ts": 253_402_214_400_000}, "time", "ahead of this worker's clock"),  # 9999-12-31 would stall the watermark
])
def test_semantically_invalid_records_are_named(changes: dict[str, Any], kind: str, words: str) -> None:
    if "site_id" in changes or "camera_id" in changes or "frame_width" in changes:
        record = batch_records([_frame(**changes)], 5)[0]  # one value per record
    else:
        record = _record(**changes)
    problem = batch_problem(record, SITE, record["camera_id"])
    assert problem is not None and problem[0] == kind and words in problem[1]
    assert "7" not in problem[1].replace("1.7", ""), "a reason never echoes the track id"


@pytest.mark.parametrize(("spoil", "words"), [
    (lambda r: r.update(frame_seq=r["frame_seq"][:1]), "column frame_seq has 1 entries for 2 frames"),
    (lambda r: r.update(detection_counts=[1, 2]), "for 3 detections"),
    (lambda r: r.update(detection_counts=[3, -1]), "negative detection count"),
    (lambda r: r.update(x1=r["x1"][:1]), "column x1 has 1 entries for 2 detections"),
    (lambda r: r.update(speed_kmh=[1.0]), "column speed_kmh has 1 entries"),
    (lambda r: r.update(ts=r["ts"][::-1]), "not in capture order"),
    (lambda r: r.update(ts=[], frame_seq=[], detected=[], detection_counts=[], **{c: [] for c in (
        "track_id", "class_name", "confidence", "x1", "y1", "x2", "y2", "foot_x", "foot_y")}), "without frames"),
])
def test_columns_that_do_not_fit_together_are_a_layout_dead_letter(spoil: Any, words: str) -> None:
    record = _record()
    spoil(record)
    problem = batch_problem(record, SITE, "campus")
    assert problem is not None and problem[0] == "layout" and words in problem[1]


def test_valid_records_pass_and_a_key_must_be_the_camera() -> None:
    record = _record()
    assert batch_problem(record, SITE, "campus") is None
    assert batch_problem(_record(x2=1.00001), SITE, "campus") is None, "float32 rounding"
    problem = batch_problem(record, SITE, "street")
    assert problem is not None and problem[0] == "key"


def _decoder() -> tuple[Decoder, AvroSerde]:
    serde = AvroSerde(FakeRegistry(), "detection_batch", "privaflow.detections.v2-value")  # type: ignore[arg-type]
    decoder = Decoder(serde)
    decoder.fetch(serde.schema_id)
    return decoder, serde


def test_engine_sends_undecodable_and_invalid_records_to_dead_letters() -> None:
    decoder, serde = _decoder()
    good = serde.encode(_record())
    body = good[5:]
    batch = [
        Incoming("t", 0, 0, b"campus", b"garbage"),
        Incoming("t", 0, 1, b"campus", b"\x00" + struct.pack(">I", 999_999) + body),
        Incoming("t", 0, 2, b"campus", b"\x01" + good[1:]),
        Incoming("t", 0, 3, b"campus", serde.encode(_record(x2=1.7))),
        Incoming("t", 1, 0, b"ghost", serde.encode(batch_records([_frame(camera_id="ghost")], 5)[0])),
        Incoming("t", 1, 1, None, good),
        Incoming("t", 0, 4, b"campus", good),
        Incoming("t", 0, 5, b"campus", serde.encode(_record(class_name="car"))),
    ]
    assert decoder.unknown_ids(m.value for m in batch) == {999_999}
    decoder.fetch(999_999)  # not in the registry: remembered as missing, its records are dead letters
    out = Engine(SITE, decoder, "ticks").apply(batch, lambda key: None)
    dead = {(d.record.partition, d.record.offset): d for d in out.dead}
    assert sorted(dead) == [(0, 0), (0, 1), (0, 2), (0, 3), (0, 5), (1, 0), (1, 1)]
    assert dead[(0, 0)].kind == "decode" and "shorter than" not in dead[(0, 0)].reason
    assert dead[(0, 1)].kind == "unknown_schema" and "999999" in dead[(0, 1)].reason
    assert "magic byte 1" in dead[(0, 2)].reason
    assert dead[(0, 3)].kind == "box"
    assert dead[(1, 0)].kind == "camera" or dead[(1, 0)].kind == "key"
    assert dead[(1, 1)].kind == "key"
    assert dead[(0, 5)].kind == "class"
    assert out.applied == 1 and out.frames == 2, "the one good record, both its frames"
    assert out.states[b"campus"][0].to_state()["offsets"] == {"0": 5}, "dead letters of a camera still advance its mark"
    headers = dict(dead[(0, 3)].headers())
    assert headers["source_topic"] == b"t" and headers["source_partition"] == b"0"
    assert headers["source_offset"] == b"3" and b"not inside" in headers["error"]


def test_an_unreachable_registry_is_an_error_not_a_dead_letter() -> None:
    class Down(FakeRegistry):
        def schema_by_id(self, schema_id: int) -> Any:
            raise RegistryError("schema registry at http://x unreachable: ConnectError")

    decoder = Decoder(AvroSerde(Down(), "detection_batch", "s"))  # type: ignore[arg-type]
    with pytest.raises(RegistryError):
        decoder.fetch(1)


def test_publisher_writes_dead_letters_with_original_bytes_and_headers() -> None:
    decoder, _ = _decoder()
    out: Outcome = Engine(SITE, decoder, "ticks").apply([Incoming("src", 2, 9, b"campus", b"junk")], lambda k: None)
    sent = Sent()
    publisher = Publisher(sent, FakeRegistry(), SITE, TopicNames("p."))  # type: ignore[arg-type]
    counts = asyncio.run(publisher.publish(out))
    assert counts == {"p.privaflow.detections.dlq.v2": 1} and sent.flushes == 1, "published, then acknowledged"
    topic, key, value, _, headers = sent.records[0]
    assert (topic, key, value) == ("p.privaflow.detections.dlq.v2", b"campus", b"junk")
    assert dict(headers)["source_offset"] == b"9" and dict(headers)["source_partition"] == b"2"


@pytest.mark.integration
def test_dead_letters_on_the_real_broker(stack: Any, unique: str, tmp_path: Path) -> None:
    run = Run(unique, stack.bootstrap, stack.registry_url)
    run.create_topics()
    sim = simulate(run.site, "campus", duration_s=40, fps=10, n_objects=15, seed=3)
    producer = DetectionsProducer(run)
    good = producer.serde.encode(batch_records(sim.frames[:1], 1)[0])
    # a record of the retired v1 contract (one frame, per-object records) produced to the v2 topic
    v1_schema = (REPO / "bench" / "v1" / "frame_detections.avsc").read_text()
    v1_id = SchemaRegistry(run.registry_url).register(f"{run.prefix}privaflow.detections.v1-value", v1_schema)
    v1_body = io.BytesIO()
    fastavro.schemaless_writer(v1_body, fastavro.parse_schema(json.loads(v1_schema)), sim.frames[10])
    bad: dict[int, str] = {}
    for i, f in enumerate(sim.frames):
        producer.frame(f)
        if i == 20:
            bad[producer.raw(b"campus", b"\x00" + struct.pack(">I", v1_id) + v1_body.getvalue())] = "SchemaResolution"
        if i == 50:
            bad[producer.raw(b"campus", b"\x00\x01")] = "shorter than the 5-byte"
        if i == 75:
            bad[producer.raw(b"campus", good[:5] + b"\xff\xff\xff")] = "Error"  # registered id, broken body
        if i == 100:
            bad[producer.raw(b"campus", b"\x00" + struct.pack(">I", 987_654) + good[5:])] = "987654"
        if i == 150:
            bad[producer.raw(b"campus", b"\x07" + good[1:])] = "magic byte 7"
        if i == 200:
            bad[producer.frame(dict(f, detections=[dict(f["detections"][0], x2=1.7)]) if f["detections"]
                               else dict(f, frame_width=0))] = "0..1" if f["detections"] else "frame size"
        if i == 250:
            bad[producer.frame(dict(f, camera_id="ghost"))] = "not in the site config"
    producer.flush()

    worker = WorkerProcess(run, write_config(TEST_SITE, tmp_path / "site.yaml"), tmp_path / "state",
                           tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        dlq = read_topic(run.bootstrap, run.names.dlq, lambda recs: len(recs) >= len(bad), timeout=90)
        assert len(dlq) == len(bad), worker.log_tail()
        where = {producer.delivered[seq]: words for seq, words in bad.items()}
        for m in dlq:
            h = {k: v.decode() for k, v in m.headers()}
            assert h["source_topic"] == run.names.detections
            spot = (int(h["source_partition"]), int(h["source_offset"]))
            assert spot in where, f"unexpected dead letter {h}"
            assert where.pop(spot) in h["error"], h["error"]
        assert where == {}
        # the good records around the bad ones still count, exactly
        tv = read_partner(run, "traffic_volume",
                          lambda recs: summed(recs, ("line_id", "direction", "class_name")) == sim.truth.crossings,
                          timeout=90)
        assert summed(tv, ("line_id", "direction", "class_name")) == sim.truth.crossings
        assert worker.alive()
    finally:
        worker.stop()
        run.delete_topics()


@pytest.mark.parametrize(("changes", "words"), [
    ({"age_bracket": "=HYPERLINK(\"x\")"}, "age_bracket"),
    ({"gender": "plate KA-01-1234"}, "gender"),
    ({"colour": "ultraviolet"}, "colour"),
])
def test_a_label_outside_its_closed_vocabulary_is_a_dead_letter_not_a_partner_row(changes: dict[str, Any],
                                                                                   words: str) -> None:
    """Free text a hostile edge credential slips into an attribute (docs/privacy-model.md rule e)
    never reaches a table: the record is refused, naming the field (T6)."""
    record = _record(**changes)
    problem = batch_problem(record, SITE, "campus")
    assert problem is not None and problem[0] == "label" and words in problem[1]
    decoder, serde = _decoder()
    out = Engine(SITE, decoder, "ticks").apply([Incoming("t", 0, 0, b"campus", serde.encode(record))], lambda k: None)
    assert [d.kind for d in out.dead] == ["label"] and out.applied == 0
    ok = Engine(SITE, decoder, "ticks").apply([Incoming("t", 0, 0, b"campus", serde.encode(_record(
        age_bracket="20-29", gender="female", colour="red")))], lambda k: None)
    assert ok.dead == [] and ok.applied == 1
