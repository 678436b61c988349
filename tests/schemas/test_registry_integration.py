"""The contract against the real broker and the real (Apicurio) registry, read by Confluent's own clients."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from privaflow.schemas.codec import AvroSerde, DecodeError, IncompatibleSchemaError, SchemaRegistry, load_schema_json

pytestmark = pytest.mark.integration


def _topic(stack, name: str, partitions: int = 1) -> str:
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result()
    return name


def _consume_one(stack, topic: str, partition: int = 0, timeout: float = 30):
    c = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": f"t-{topic}", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, partition, 0)])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is not None and m.error() is None:
                return m
    finally:
        c.close()
    raise AssertionError(f"nothing arrived on {topic} within {timeout}s")


def test_our_records_are_read_by_confluents_own_deserializer(stack, unique: str, sample_record) -> None:
    """Acceptance 2 (one way): our codec writes, confluent-kafka's AvroDeserializer reads."""
    topic = _topic(stack, f"test.detections.{unique}")
    serde = AvroSerde(SchemaRegistry(stack.registry_url), "detection_batch", f"{topic}-value")
    rec = sample_record(3)
    p = Producer({"bootstrap.servers": stack.bootstrap, "enable.idempotence": True})
    p.produce(topic, key=b"c", value=serde.encode(rec))
    assert p.flush(30) == 0

    msg = _consume_one(stack, topic)
    deser = AvroDeserializer(SchemaRegistryClient({"url": stack.registry_url, "timeout": 10}))
    out = deser(msg.value(), SerializationContext(topic, MessageField.VALUE))
    assert out["camera_id"] == "c" and out["track_id"] == [0, 1, 2]
    assert out["frame_width"] == 640


def test_confluents_own_serializer_is_read_by_our_codec(stack, unique: str, sample_record) -> None:
    """Acceptance 2 (reverse): confluent-kafka's AvroSerializer writes, our codec reads."""
    topic = _topic(stack, f"test.detections.{unique}")
    client = SchemaRegistryClient({"url": stack.registry_url, "timeout": 10})
    ser = AvroSerializer(client, load_schema_json("detection_batch"), conf={"auto.register.schemas": True})
    rec = sample_record(2)
    rec["ts"] = rec["ts"]
    p = Producer({"bootstrap.servers": stack.bootstrap})
    p.produce(topic, key=b"c", value=ser(rec, SerializationContext(topic, MessageField.VALUE)))
    assert p.flush(30) == 0

    msg = _consume_one(stack, topic)
    serde = AvroSerde(SchemaRegistry(stack.registry_url), "detection_batch", f"{topic}-value")
    out = serde.decode(msg.value(), msg.topic(), msg.partition(), msg.offset())
    assert out["site_id"] == "s" and out["detection_counts"] == [2]


def test_incompatible_change_is_refused_with_a_clear_message(stack, unique: str, sample_record) -> None:
    """Acceptance 3: a new required field breaks BACKWARD compatibility and the registry says no."""
    reg = SchemaRegistry(stack.registry_url)
    subject = f"test.compat.{unique}-value"
    original = load_schema_json("partner_occupancy")
    first = reg.register(subject, original)
    assert reg.register(subject, original) == first  # registering the same schema again is harmless

    schema = json.loads(original)
    compatible = json.loads(original)
    compatible["fields"].append({"name": "note", "type": ["null", "string"], "default": None, "doc": "x"})
    assert reg.is_compatible(subject, json.dumps(compatible)) is True

    schema["fields"].append({"name": "operator_shift", "type": "string", "doc": "no default: breaks readers"})
    assert reg.is_compatible(subject, json.dumps(schema)) is False
    with pytest.raises(IncompatibleSchemaError) as e:
        reg.register(subject, json.dumps(schema))
    assert subject in str(e.value) and "BACKWARD" in str(e.value)


def test_undecodable_record_from_the_broker_names_topic_partition_offset(stack, unique: str, sample_record) -> None:
    """Acceptance 5."""
    topic = _topic(stack, f"test.garbage.{unique}", partitions=2)
    p = Producer({"bootstrap.servers": stack.bootstrap})
    p.produce(topic, value=b"not avro at all", partition=1)
    assert p.flush(30) == 0
    msg = _consume_one(stack, topic, partition=1)
    serde = AvroSerde(SchemaRegistry(stack.registry_url), "detection_batch", f"{topic}-value")
    with pytest.raises(DecodeError, match=rf"topic {topic} partition 1 offset 0"):
        serde.decode(msg.value(), msg.topic(), msg.partition(), msg.offset())


def test_schemas_check_cli_reports_compatibility(stack) -> None:
    import subprocess
    import sys

    from privaflow.schemas.codec import register_all

    register_all(SchemaRegistry(stack.registry_url))
    r = subprocess.run([sys.executable, "-m", "privaflow", "schemas", "check"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "privaflow.detections.v2-value" in r.stdout and "compatible" in r.stdout


def _as_v1(stem: str) -> str:
    """The schema as it was before its categorical fields became enums (v1: plain strings)."""
    schema = json.loads(load_schema_json(stem))
    for f in schema["fields"]:
        if isinstance(f["type"], dict) and f["type"].get("type") == "enum" and f["name"] != "crowding_level":
            f["type"] = "string"
    return json.dumps(schema)


@pytest.mark.parametrize("stem", ["partner_traffic_volume", "partner_attributes"])
def test_string_to_enum_is_refused_by_the_registry_so_the_topic_version_moves(stack, unique: str,
                                                                             stem: str) -> None:
    """Why traffic-volume and attributes moved to .v2 topics (schemas/topics.py): under the old
    subject the registry refuses the enum schema (Avro cannot read a string as an enum, in either
    direction), so the change goes to a new subject instead of overriding the compatibility rule."""
    from privaflow.schemas.topics import PARTNER_TABLES, partner_topic_name, topic

    reg = SchemaRegistry(stack.registry_url)
    old_subject = f"test.v1.{unique}-value"
    reg.register(old_subject, _as_v1(stem))
    assert reg.is_compatible(old_subject, load_schema_json(stem)) is False
    with pytest.raises(IncompatibleSchemaError, match="ENUM not compatible with writer type: STRING"):
        reg.register(old_subject, load_schema_json(stem))

    table = next(t for t, s in PARTNER_TABLES.items() if s == stem)
    new = topic(partner_topic_name(table))
    assert new.name.endswith(".v2") and new.value_subject != old_subject
    assert reg.register(f"test.v2.{unique}-value", load_schema_json(stem)) > 0


def test_many_clients_registering_the_same_new_subjects_at_once_all_succeed(stack, unique: str) -> None:
    """Issue 13 finding 1: `make demo` starts two edge agents and a worker that register the same
    subjects at once on an empty registry; Apicurio answers the second client that creates a subject's
    rule with 409 "A rule named 'COMPATIBILITY' already exists", which must count as success. Each
    thread has its own client (its own connections), all released at the same instant; subjects are
    new, so the registry is empty for them."""
    import threading

    clients = 12
    subjects = [f"test.race.{unique}.{i}-value" for i in range(5)]
    schema = load_schema_json("partner_traffic_volume")
    start = threading.Barrier(clients)
    ids: dict[str, set[int]] = {s: set() for s in subjects}
    failures: list[str] = []

    def register() -> None:
        reg = SchemaRegistry(stack.registry_url)
        try:
            start.wait()
            for s in subjects:
                ids[s].add(reg.register(s, schema))
        except Exception as e:  # collected: an exception in a thread would not fail the test
            failures.append(f"{type(e).__name__}: {e}")
        finally:
            reg.close()

    threads = [threading.Thread(target=register) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert failures == []
    assert all(len(found) == 1 for found in ids.values()), ids  # one schema id per subject, whoever won
    http = httpx.Client(timeout=10)
    for s in subjects:
        assert http.get(f"{stack.registry_url}/config/{s}").json()["compatibilityLevel"] == "BACKWARD"
