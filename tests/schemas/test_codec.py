"""Confluent wire format and decoding errors, without a registry (unit tests: the registry is faked)."""

from __future__ import annotations

import io
import json
import struct

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from privaflow.schemas.codec import (
    AvroSerde,
    DecodeError,
    RegistryError,
    SchemaRegistry,
    frame,
    load_schema,
    parsed_schema,
    unframe,
)


class FakeRegistry:
    """Stands in for the registry in unit tests only: one schema under id 7."""

    def __init__(self) -> None:
        self.registered: list[str] = []

    def register(self, subject: str, schema_json: str) -> int:
        self.registered.append(subject)
        return 7

    def schema_by_id(self, schema_id: int):
        from privaflow.schemas.codec import RegistryError

        if schema_id != 7:
            raise RegistryError(f"schema id {schema_id} not found")
        return parsed_schema("detection_batch")


def test_round_trip_uses_confluent_framing(sample_record) -> None:
    serde = AvroSerde(FakeRegistry(), "detection_batch", "privaflow.detections.v2-value")  # type: ignore[arg-type]
    rec = sample_record()
    payload = serde.encode(rec)
    assert payload[0] == 0 and struct.unpack(">I", payload[1:5])[0] == 7
    body = fastavro.schemaless_reader(io.BytesIO(payload[5:]), parsed_schema("detection_batch"))
    assert body["track_id"][1] == 1  # type: ignore[call-overload,index]
    out = serde.decode(payload)
    assert out["camera_id"] == "c" and out["detection_counts"] == [2] and len(out["x1"]) == 2
    assert out["ts"] == rec["ts"], "epoch milliseconds, as written"


@pytest.mark.parametrize("payload,reason", [
    (b"", "shorter than the 5-byte"),
    (b"\x01\x00\x00\x00\x07abc", "magic byte 1"),
    (b"\x00\x00\x00\x00\x09abc", "schema id 9 not found"),
    (b"\x00\x00\x00\x00\x07\xff\xff\xff", ""),
])
def test_undecodable_records_name_topic_partition_offset(payload: bytes, reason: str) -> None:
    serde = AvroSerde(FakeRegistry(), "detection_batch", "x-value")  # type: ignore[arg-type]
    with pytest.raises(DecodeError) as e:
        serde.decode(payload, "privaflow.detections.v2", 3, 1234)
    msg = str(e.value)
    assert "topic privaflow.detections.v2 partition 3 offset 1234" in msg and reason in msg
    assert (e.value.topic, e.value.partition, e.value.offset) == ("privaflow.detections.v2", 3, 1234)


@given(st.binary(max_size=200))
def test_decoder_never_crashes_on_garbage(data: bytes) -> None:
    serde = AvroSerde(FakeRegistry(), "detection_batch", "x-value")  # type: ignore[arg-type]
    try:
        serde.decode(frame(7, data), "t", 0, 0)
    except DecodeError:
        pass


@given(st.integers(0, 2**32 - 1), st.binary(max_size=50))
def test_frame_unframe_inverse(schema_id: int, body: bytes) -> None:
    assert unframe(frame(schema_id, body)) == (schema_id, body)


class _SilentFirstRegistry:
    """A TCP server that accepts every connection but answers only from the `silent`-th on: a
    registry that swallows requests (CI once saw one request wait 600 s for an answer)."""

    def __init__(self, silent: int) -> None:
        import socket
        import threading

        self.silent, self.accepted, self._held = silent, 0, []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        body = json.dumps({"schema": json.dumps(load_schema("detection_batch"))}).encode()
        while True:
            conn, _ = self.sock.accept()
            self.accepted += 1
            if self.accepted <= self.silent:
                self._held.append(conn)  # read nothing, answer nothing, keep it open
                continue
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            conn.close()


def test_a_request_the_registry_never_answers_is_retried_on_a_new_connection(caplog) -> None:
    server = _SilentFirstRegistry(silent=1)
    reg = SchemaRegistry(server.url, timeout=0.5, retries=2, backoff_s=0.01, auth=None)
    assert reg.schema_by_id(3)["name"] == "privaflow.DetectionBatch"
    assert server.accepted == 2
    assert "ReadTimeout" in caplog.text


def test_a_registry_that_never_answers_is_a_clear_error_not_a_hang() -> None:
    server = _SilentFirstRegistry(silent=99)
    reg = SchemaRegistry(server.url, timeout=0.3, retries=2, backoff_s=0.01, auth=None)
    answer = f"schema registry at {server.url} did not answer in time .ReadTimeout.* after 3 attempt"
    with pytest.raises(RegistryError, match=answer):
        reg.schema_by_id(3)
    assert server.accepted == 3


def test_addresses_follow_the_local_stack_port_variables(monkeypatch) -> None:
    """A user who moved the local stack with PRIVAFLOW_KAFKA_PORT / PRIVAFLOW_REGISTRY_PORT (as
    `privaflow stack up` honours them) reaches it from every command without also setting the URLs."""
    from privaflow.schemas.codec import bootstrap_servers, registry_url

    for var in ("PRIVAFLOW_BOOTSTRAP", "PRIVAFLOW_REGISTRY_URL", "PRIVAFLOW_KAFKA_PORT", "PRIVAFLOW_REGISTRY_PORT"):
        monkeypatch.delenv(var, raising=False)
    assert (bootstrap_servers(), registry_url()) == ("127.0.0.1:9092", "http://127.0.0.1:8081/apis/ccompat/v7")
    monkeypatch.setenv("PRIVAFLOW_KAFKA_PORT", "19092")
    monkeypatch.setenv("PRIVAFLOW_REGISTRY_PORT", "18081")
    assert (bootstrap_servers(), registry_url()) == ("127.0.0.1:19092", "http://127.0.0.1:18081/apis/ccompat/v7")
    monkeypatch.setenv("PRIVAFLOW_BOOTSTRAP", "kafka:9093")
    monkeypatch.setenv("PRIVAFLOW_REGISTRY_URL", "http://registry:8080/apis/ccompat/v7")
    assert (bootstrap_servers(), registry_url()) == ("kafka:9093", "http://registry:8080/apis/ccompat/v7")
