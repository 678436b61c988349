"""End to end through the real broker and registry: the demo's dashcam clip and GPS track, driven by two
probe vehicles at once, through two edge agents, Kafka and the road worker to the road-conditions
partner topic, read back with confluent-kafka's own deserializer as a partner would. Covers G4, T5, T6,
T7: positions leave the edge only as H3 cells, nothing of a trip's start or end leaves, and a cell is
published only when k distinct trips passed it."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from privaflow.edge.agent import Agent, build_detector
from privaflow.edge.position import read_track
from privaflow.edge.publish import KafkaSink
from privaflow.schemas.cells import cell_problem, cell_within
from privaflow.schemas.codec import SchemaRegistry, serde_for_topic
from privaflow.schemas.detections import record_frames
from privaflow.schemas.site import parse_site_config
from privaflow.schemas.topics import DETECTIONS, operator_topic_name, partner_topic_name
from privaflow.schemas.vocabulary import CONGESTION_LEVELS, HEADINGS
from privaflow.streams.road_worker import RoadWorker
from privaflow.streams.settings import TopicNames
from tests.conftest import media_path

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TRACK = REPO / "examples" / "tracks" / "drive.gpx"
K = 2
END_RADIUS_M = 150.0


def _site(site_id: str, cams: list[str]) -> Any:
    return parse_site_config({
        "site_id": site_id,
        "cameras": [{"id": c, "kind": "mobile", "source": str(media_path("drive.mp4")), "fps": 5, "detect_every": 2,
                     "classes": ["person", "bicycle", "car", "motorcycle", "bus", "truck", "traffic light",
                                 "stop sign"],
                     "mobile": {"position": {"kind": "gpx", "path": str(TRACK)}, "trip_end_radius_m": END_RADIUS_M,
                                "camera_hfov_deg": 60, "max_hold_s": 30}} for c in cams],
        "windows": {"road_conditions": 20, "grace_s": 2},
        "counting": {"track_expiry_s": 1},
        "partners": [{"id": "maps", "k_anonymity": K, "tables": ["road_conditions"]}]})


def _read(stack: Any, topic: str, value: Any, timeout_s: float = 60, quiet_s: float = 5) -> list[Any]:
    c = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": f"t-{topic}", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(3)])
    out: list[Any] = []
    deadline, last = time.monotonic() + timeout_s, time.monotonic()
    try:
        while time.monotonic() < deadline and time.monotonic() - last < quiet_s:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            out.append(value(m))
            last = time.monotonic()
    finally:
        c.close()
    return out


def test_dashcam_clip_and_track_to_the_partner_topic(stack: Any, unique: str, tmp_path: Path) -> None:
    site_id, cams = f"test-road-{unique}", [f"taxi-a-{unique}", f"taxi-b-{unique}"]
    site = _site(site_id, cams)
    topics = TopicNames(prefix=f"test.road.{unique}.")
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})
    # the road worker publishes the operator's unsuppressed view too (issue 12): its topic must exist
    operator = topics.prefix + operator_topic_name("road_conditions")
    for name, parts in ((topics.detections, 3), (topics.partner("road_conditions"), 3), (operator, 3)):
        admin.create_topics([NewTopic(name, parts, 1)])[name].result()
    registry = SchemaRegistry(stack.registry_url)

    # two probe vehicles drive the same recorded route at the same time: two trips through every cell
    agents = []
    for cam in cams:
        camera = site.camera(cam)
        sink = KafkaSink(tmp_path / cam, key=cam, topic=topics.detections, bootstrap=stack.bootstrap,
                         registry=registry)
        agents.append(Agent(site_id, camera, build_detector(camera), sink, status_every_s=0, max_frames=400))
    errors: list[BaseException] = []

    def drive(agent: Agent) -> None:
        try:
            agent.run()
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=drive, args=(a,)) for a in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    for a in agents:
        m = a.mobile
        assert m is not None and m.gate.stats.released > 20, m.status()
        assert m.gate.stats.dropped_zone > 0 and m.gate.stats.dropped_trip_end > 0  # start and end withheld

    # what left the edges: cells at the site's resolution, never a coordinate, nothing near start or end
    serde = serde_for_topic(registry, DETECTIONS)
    records = _read(stack, topics.detections, lambda m: serde.decode(m.value()))
    frames = [f for r in records for f in record_frames(r)]
    track = read_track(site.camera(cams[0]).mobile.position)  # type: ignore[union-attr]
    start, end = track._fixes[0], track._fixes[-1]
    assert len(frames) == sum(a.mobile.gate.stats.released for a in agents)  # type: ignore[union-attr]
    assert len(records) < len(frames)  # several frames a record
    for r in records:
        assert r["world_x_m"] is None and r["world_y_m"] is None  # no ground position of anything
    for f in frames:
        assert f["h3_cell"] is not None and cell_problem(f["h3_cell"], 9) is None
        assert not cell_within(f["h3_cell"], start.lat, start.lon, END_RADIUS_M)
        assert not cell_within(f["h3_cell"], end.lat, end.lon, END_RADIUS_M)
        assert f["probe_heading"] in HEADINGS and float(f["probe_speed_kmh"]).is_integer()
        for d in f["detections"]:
            assert set(d) >= {"track_id", "class_name"} and "lat" not in d and "lon" not in d
    assert len({f["trip_id"] for f in frames}) == 2

    # the road worker, as `privaflow streams road` runs it (its clock a little ahead, so the last
    # window need not be waited for: every record is in Kafka already)
    worker = RoadWorker(site, bootstrap=stack.bootstrap, registry=registry, topics=topics, kafka_config={},
                        settle_s=1, now=lambda: time.time() + 120)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (len(worker.windows) or worker.stats.records < len(records)):
            worker.poll(0.5)
    finally:
        worker.close_clients()
    assert worker.stats.records == len(records) and not worker.stats.skipped

    # a partner's consumer: confluent-kafka's own deserializer and the registry, nothing of privaflow
    deser = AvroDeserializer(SchemaRegistryClient({"url": stack.registry_url}))
    topic = topics.partner("road_conditions")
    rows = [r for r in _read(stack, topic, lambda m: deser(m.value(), SerializationContext(topic, MessageField.VALUE)))
            if r["site_id"] == site_id]
    assert rows, f"nothing published; withheld {worker.stats.withheld}"
    assert topic.endswith(partner_topic_name("road_conditions"))
    for r in rows:
        assert r["trips"] >= K and not r["suppressed"]
        assert cell_problem(r["h3_cell"], 9) is None and r["heading"] in HEADINGS
        assert r["congestion_level"] in CONGESTION_LEVELS and r["median_speed_kmh"] > 60  # a highway
        assert r["samples"] > 0 and r["mean_people"] is not None
        assert len(r["furniture_classes"]) == len(r["furniture_counts"])
        assert set(r) == {"site_id", "h3_cell", "heading", "window_start", "window_end", "window_length_s",
                          "trips", "suppressed", "samples", "median_speed_kmh", "mean_vehicles_ahead",
                          "p85_vehicles_ahead", "mean_people", "congestion_level", "furniture_classes",
                          "furniture_counts"}
