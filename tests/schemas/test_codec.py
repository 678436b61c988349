"""Confluent wire format and decoding errors, without a registry (unit tests: the registry is faked)."""

from __future__ import annotations

import io
import struct

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.codec import AvroSerde, DecodeError, frame, parsed_schema, unframe


class FakeRegistry:
    """Stands in for the registry in unit tests only: one schema under id 7."""

    def __init__(self) -> None:
        self.registered: list[str] = []

    def register(self, subject: str, schema_json: str) -> int:
        self.registered.append(subject)
        return 7

    def schema_by_id(self, schema_id: int):
        from schemas.codec import RegistryError

        if schema_id != 7:
            raise RegistryError(f"schema id {schema_id} not found")
        return parsed_schema("frame_detections")


def test_round_trip_uses_confluent_framing(sample_frame) -> None:
    serde = AvroSerde(FakeRegistry(), "frame_detections", "privaflow.detections.v1-value")  # type: ignore[arg-type]
    rec = sample_frame()
    payload = serde.encode(rec)
    assert payload[0] == 0 and struct.unpack(">I", payload[1:5])[0] == 7
    body = fastavro.schemaless_reader(io.BytesIO(payload[5:]), parsed_schema("frame_detections"))
    assert body["detections"][1]["track_id"] == 1
    out = serde.decode(payload)
    assert out["camera_id"] == "c" and len(out["detections"]) == 2
    assert out["ts"].timestamp() == pytest.approx(rec["ts"] / 1000)


@pytest.mark.parametrize("payload,reason", [
    (b"", "shorter than the 5-byte"),
    (b"\x01\x00\x00\x00\x07abc", "magic byte 1"),
    (b"\x00\x00\x00\x00\x09abc", "schema id 9 not found"),
    (b"\x00\x00\x00\x00\x07\xff\xff\xff", ""),
])
def test_undecodable_records_name_topic_partition_offset(payload: bytes, reason: str) -> None:
    serde = AvroSerde(FakeRegistry(), "frame_detections", "x-value")  # type: ignore[arg-type]
    with pytest.raises(DecodeError) as e:
        serde.decode(payload, "privaflow.detections.v1", 3, 1234)
    msg = str(e.value)
    assert "topic privaflow.detections.v1 partition 3 offset 1234" in msg and reason in msg
    assert (e.value.topic, e.value.partition, e.value.offset) == ("privaflow.detections.v1", 3, 1234)


@given(st.binary(max_size=200))
def test_decoder_never_crashes_on_garbage(data: bytes) -> None:
    serde = AvroSerde(FakeRegistry(), "frame_detections", "x-value")  # type: ignore[arg-type]
    try:
        serde.decode(frame(7, data), "t", 0, 0)
    except DecodeError:
        pass


@given(st.integers(0, 2**32 - 1), st.binary(max_size=50))
def test_frame_unframe_inverse(schema_id: int, body: bytes) -> None:
    assert unframe(frame(schema_id, body)) == (schema_id, body)
