"""`privaflow stack up --secure`: real clients with real credentials against SCRAM + ACLs
(the same roles as the Kubernetes KafkaUsers). Runs a private broker on its own ports."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from schemas.topics import DETECTIONS, partner_topic_name
from stack.local import LocalStack, Ports
from stack.local import home as default_home

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory, stack) -> Iterator[LocalStack]:
    h = tmp_path_factory.mktemp("secure-home")
    (h / "stack").symlink_to(default_home() / "stack")
    old = os.environ.get("PRIVAFLOW_HOME")
    os.environ["PRIVAFLOW_HOME"] = str(h)
    s = LocalStack(Ports(29092, 29093, 28081, 29081), secure=True)
    try:
        s.up(registry=False)
        yield s
    finally:
        s.down()
        if old is None:
            os.environ.pop("PRIVAFLOW_HOME", None)
        else:
            os.environ["PRIVAFLOW_HOME"] = old


def _produce(s: LocalStack, user: str, topic: str, password: str | None = None) -> KafkaError | None:
    cfg = {"bootstrap.servers": s.bootstrap, **s.client_config(user), "message.timeout.ms": 10000}
    if password is not None:
        cfg["sasl.password"] = password
    errors: list[KafkaError] = []
    p = Producer(cfg)
    p.produce(topic, key=b"k", value=b"v", on_delivery=lambda err, _msg: errors.append(err))
    p.flush(20)
    return errors[0] if errors else KafkaError(KafkaError._TIMED_OUT)


def _read_error(s: LocalStack, user: str, topic: str, group: str) -> KafkaError | None:
    """None if the user could consume (or saw no error within the deadline), else the error."""
    c = Consumer({"bootstrap.servers": s.bootstrap, **s.client_config(user), "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error():
                return m.error()
            return None
        return None
    finally:
        c.close()


def test_edge_may_write_detections_but_not_read_them(secure: LocalStack) -> None:
    assert _produce(secure, "edge", DETECTIONS) is None
    err = _read_error(secure, "edge", DETECTIONS, f"edge-{uuid.uuid4().hex[:6]}")
    denied = (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED)
    assert err is not None and err.code() in denied


def test_partner_cannot_read_detections_nor_write_anything(secure: LocalStack) -> None:
    """covers T6, T8: a partner's credentials reach only its own aggregates."""
    err = _read_error(secure, "partner-city", DETECTIONS, "partner-city-x")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    for topic in (DETECTIONS, partner_topic_name("traffic_volume")):
        perr = _produce(secure, "partner-city", topic)
        assert perr is not None and perr.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (topic, perr)


def test_partner_reads_only_its_own_tables(secure: LocalStack) -> None:
    assert _produce(secure, "streams", partner_topic_name("traffic_volume")) is None
    assert _produce(secure, "streams", partner_topic_name("attributes")) is None
    assert _read_error(secure, "partner-city", partner_topic_name("traffic_volume"), "partner-city-a") is None
    # the city partner was not granted the store-entrance attributes table
    err = _read_error(secure, "partner-city", partner_topic_name("attributes"), "partner-city-b")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_streams_reads_detections(secure: LocalStack) -> None:
    assert _produce(secure, "edge", DETECTIONS) is None
    c = Consumer({"bootstrap.servers": secure.bootstrap, **secure.client_config("streams"),
                  "group.id": "privaflow-streams-test", "enable.auto.commit": False})
    try:
        total = sum(c.get_watermark_offsets(TopicPartition(DETECTIONS, p), timeout=15)[1] for p in range(6))
        assert total >= 1
    finally:
        c.close()


def test_wrong_password_is_refused(secure: LocalStack) -> None:
    err = _produce(secure, "edge", DETECTIONS, password="not-the-password")
    assert err is not None
    assert err.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._TIMED_OUT,
                          KafkaError._MSG_TIMED_OUT), err


def test_credentials_file_is_private(secure: LocalStack) -> None:
    mode = Path(secure.credentials_file).stat().st_mode & 0o777
    assert mode == 0o600
    with pytest.raises(KafkaException):
        Consumer({"bootstrap.servers": secure.bootstrap, "group.id": "x", "security.protocol": "SASL_PLAINTEXT",
                  "sasl.mechanism": "PLAIN"}).list_topics(timeout=5)
