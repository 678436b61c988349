"""Fuzzing the two places where outside input enters: the record decoder and the config loader.

Mutation fuzzing from valid seeds (bit flips, truncation, splices, random bytes) finds far more
decoder paths than random bytes alone. 100k cases each; no crash, no hang, only our own errors.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import yaml

from privaflow.schemas.codec import AvroSerde, DecodeError, RegistryError, parsed_schema
from privaflow.schemas.site import ConfigError, parse_site_config

CASES = 100_000
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "site.yaml"


class OneSchemaRegistry:
    """Unit-test stand-in for the registry: knows schema id 1 only."""

    def register(self, subject: str, schema_json: str) -> int:
        return 1

    def schema_by_id(self, schema_id: int):
        if schema_id != 1:
            raise RegistryError(f"schema id {schema_id} not found")
        return parsed_schema("detection_batch")


def _mutate(rng: random.Random, seed: bytes) -> bytes:
    b = bytearray(seed)
    op = rng.randrange(6)
    if op == 0 and b:  # flip bits
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif op == 1:  # truncate
        b = b[: rng.randrange(len(b) + 1)]
    elif op == 2:  # insert random bytes
        i = rng.randrange(len(b) + 1)
        b[i:i] = rng.randbytes(rng.randint(1, 16))
    elif op == 3 and b:  # overwrite a varint with a huge or negative length
        i = rng.randrange(5, len(b)) if len(b) > 5 else 0
        b[i:i + 1] = rng.choice([b"\xff\xff\xff\xff\x0f", b"\x01", b"\x7f", b"\x80\x80\x80\x80\x80\x01"])
    elif op == 4:  # random tail after a valid header
        b = b[:5] + bytearray(rng.randbytes(rng.randint(0, 64)))
    else:  # duplicate a slice
        if b:
            i, j = sorted(rng.randrange(len(b) + 1) for _ in range(2))
            b[i:i] = b[i:j]
    return bytes(b)


@pytest.mark.slow
def test_decoder_survives_100k_mutated_records(sample_record) -> None:
    serde = AvroSerde(OneSchemaRegistry(), "detection_batch", "x-value")  # type: ignore[arg-type]
    seeds = [serde.encode(sample_record(n, frames=f)) for n, f in ((0, 1), (1, 1), (3, 2), (12, 5))]
    rng = random.Random(20261122)
    decoded = rejected = 0
    for i in range(CASES):
        payload = _mutate(rng, rng.choice(seeds))
        try:
            out = serde.decode(payload, "privaflow.detections.v2", 0, i)
            assert isinstance(out, dict) and "track_id" in out
            decoded += 1
        except DecodeError as e:
            assert e.offset == i and e.reason
            rejected += 1
    assert decoded + rejected == CASES and rejected > CASES // 4


def _mutate_config(rng: random.Random, data: dict) -> dict:
    d = copy.deepcopy(data)
    junk = [None, -1, 0, 1.5, 1e9, "", "x" * 300, [], {}, [[0.5]], [[2, 2], [0, 0]], True, "🙂", {"a": 1}]
    for _ in range(rng.randint(1, 4)):
        # pick a random path into the structure and replace, delete or add something there
        node, key = d, None
        path = []
        while isinstance(node, dict | list) and node and rng.random() < 0.7:
            key = rng.choice(list(node.keys())) if isinstance(node, dict) else rng.randrange(len(node))
            path.append(key)
            parent, node = node, node[key]
        if not path:
            d[rng.choice(["extra", "site_id", "cameras"])] = rng.choice(junk)
            continue
        op = rng.randrange(3)
        if op == 0:
            parent[key] = rng.choice(junk)
        elif op == 1 and isinstance(parent, dict):
            del parent[key]
        elif isinstance(parent, dict):
            parent[rng.choice(["typo", "max_widht", "k"])] = rng.choice(junk)
    return d


@pytest.mark.slow
def test_config_loader_survives_100k_mutated_configs() -> None:
    base = yaml.safe_load(EXAMPLE.read_text())
    rng = random.Random(7)
    ok = bad = 0
    for _ in range(CASES):
        data = _mutate_config(rng, base)
        try:
            parse_site_config(data, "fuzz.yaml")
            ok += 1
        except ConfigError as e:
            msg = str(e)
            assert msg.startswith("fuzz.yaml"), msg
            # names a field (a dotted path line) or the cross-reference that failed
            assert "\n  " in msg or "expected a mapping" in msg, msg
            bad += 1
    assert ok + bad == CASES and bad > CASES // 2
