"""The retired v1 detections record (`privaflow.FrameDetections`: one frame, an array of
per-object records), kept here only as the fixed yardstick of `bench_streams.py`: a bare consumer
decoding the scenes as v1 records is what the stream worker used to be measured against.

Nothing in privaflow reads or writes v1 any more; the schema file is `bench/v1/frame_detections.avsc`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro

from privaflow.schemas.codec import SchemaRegistry, frame, unframe

SCHEMA_FILE = Path(__file__).resolve().parent / "v1" / "frame_detections.avsc"


class V1Serde:
    """Encodes frames (dicts with per-object `detections`) as v1 records under `subject`, and
    decodes them as the v1 worker did: writer schema from the registry by id, read into the local
    (reader) schema."""

    def __init__(self, registry: SchemaRegistry, subject: str) -> None:
        self.registry, self.subject = registry, subject
        self.text = SCHEMA_FILE.read_text()
        self.schema = fastavro.parse_schema(json.loads(self.text))
        self.schema_id = registry.register(subject, self.text)

    def encode(self, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, self.schema, record)
        return frame(self.schema_id, buf.getvalue())

    def decode(self, payload: bytes) -> dict[str, Any]:
        schema_id, body = unframe(payload)
        out = fastavro.schemaless_reader(io.BytesIO(body), self.registry.schema_by_id(schema_id), self.schema)
        assert isinstance(out, dict)
        return out
