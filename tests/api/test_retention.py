"""Retention is enforced by the broker, not promised (T9): with a short retention, old detection
records really disappear from the log, and `privaflow retention apply` changes the broker's
topic configuration to what the site config says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from privaflow.schemas.codec import AvroSerde, SchemaRegistry
from privaflow.schemas.topics import (
    DAY_MS,
    DETECTIONS,
    LINE_CROSSINGS,
    ZONE_EVENTS,
    Topic,
    all_topics,
    apply_retention,
    ensure_topics,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def topic_config(bootstrap: str, name: str) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, name)
    return {k: v.value for k, v in admin.describe_configs([res])[res].result(timeout=30).items()}


def read_from_beginning(bootstrap: str, topic: str) -> list[int]:
    """Offsets a new consumer gets when it reads the whole partition (stops at its end, no sleeping)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"retention-check-{topic}",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got: list[int] = []
    try:
        for _ in range(300):
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    return got
                raise AssertionError(m.error())
            got.append(m.offset())
    finally:
        c.close()
    raise AssertionError(f"never reached the end of {topic}")


def test_old_detections_are_gone_from_the_broker_after_a_short_retention(stack, unique, kit, sample_record) -> None:
    name = f"test.retention.detections.{unique}"
    long = Topic(name, 1, 7 * DAY_MS, "delete", "detection_batch")
    assert ensure_topics(stack.bootstrap, [long]) == [name]

    serde = AvroSerde(SchemaRegistry(stack.registry_url), "detection_batch", f"{name}-value")
    p = Producer({"bootstrap.servers": stack.bootstrap, "enable.idempotence": True})
    for _ in range(20):
        p.produce(name, key=b"cam", value=serde.encode(sample_record(3)))
    assert p.flush(30) == 0
    assert read_from_beginning(stack.bootstrap, name) == list(range(20))

    # now the short retention, through the same code path `privaflow retention apply` uses; small
    # segments so the records do not sit in one active segment
    short = Topic(name, 1, 2000, "delete", "detection_batch", extra_config={"segment.ms": "1000"})
    assert apply_retention(stack.bootstrap, [short]) == {name: "2000"}
    cfg = topic_config(stack.bootstrap, name)
    assert cfg["retention.ms"] == "2000" and cfg["segment.ms"] == "1000"

    c = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": f"retention-wm-{unique}"})

    def log_start_past_records() -> tuple[int, int] | None:
        low, high = c.get_watermark_offsets(TopicPartition(name, 0), timeout=10, cached=False)
        return (low, high) if low >= 20 else None
    try:
        # the broker checks retention every 10 s (stack/conf/server.properties.tmpl)
        kit.wait_for(log_start_past_records, 90, "the log start offset to pass the 20 records",
                     interval=1.0)
        assert read_from_beginning(stack.bootstrap, name) == []  # nothing old can be read back (T9)
    finally:
        c.close()
        admin = AdminClient({"bootstrap.servers": stack.bootstrap})  # kept alive until the result
        admin.delete_topics([name])[name].result(30)


def test_retention_apply_sets_the_detections_retention_from_the_site_config(stack, tmp_path, kit) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump({**kit.site_dict("retention-site"),
                                   "retention": {"detections_days": 0.5, "partner_days": 365}}))
    env = {**os.environ, "PRIVAFLOW_BOOTSTRAP": stack.bootstrap, "PRIVAFLOW_REGISTRY_URL": stack.registry_url}
    defaults = [t for t in all_topics() if t.name in (DETECTIONS, LINE_CROSSINGS, ZONE_EVENTS)]
    try:
        out = subprocess.run([sys.executable, "-m", "privaflow", "retention", "apply", "--config", str(cfg)],
                             capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "0.5 days" in out.stdout
        for name in (DETECTIONS, LINE_CROSSINGS, ZONE_EVENTS):
            assert topic_config(stack.bootstrap, name)["retention.ms"] == str(DAY_MS // 2), name
    finally:
        apply_retention(stack.bootstrap, defaults)  # back to the default 7 days for everyone else
    assert topic_config(stack.bootstrap, DETECTIONS)["retention.ms"] == str(7 * DAY_MS)
