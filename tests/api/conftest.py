"""Helpers for the API, governance and retention tests: a site config per test, partner records
produced with our codec into the real partner topics, and polling with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

WINDOW_MS = 60_000
T0 = 1_714_550_400_000  # 2024-05-01T08:00:00Z


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Call `probe` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def token_env(partner: str, site_id: str) -> str:
    """The variable holding a partner's token for one test's site (the config wants PRIVAFLOW_TOKEN_...)."""
    return f"PRIVAFLOW_TOKEN_TEST_{partner.upper()}_{site_id.upper().replace('-', '_').replace('.', '_')}"


def site_dict(site_id: str, **over: Any) -> dict[str, Any]:
    """A small valid site config (two cameras, a line, two zones, two partners) as YAML data."""
    data: dict[str, Any] = {
        "site_id": site_id,
        "operator": {"name": "Demo Town Traffic Office", "contact": "privacy@demo-town.example",
                     "purpose": "Counting vehicles to plan signal timings.",
                     "token_env": token_env("operator", site_id)},
        "cameras": [
            {"id": "north", "source": "rtsp://cam-north.invalid/stream", "max_width": 640,
             "privacy_masks": [[[0.0, 0.0], [0.5, 0.0], [0.5, 0.2], [0.0, 0.2]],
                               [[0.5, 0.8], [1.0, 0.8], [1.0, 1.0], [0.5, 1.0]]],
             "classes": ["car", "bus", "truck", "motorcycle"]},
            {"id": "hall", "source": 0, "max_width": 480, "attributes": True, "classes": ["person"]},
        ],
        "lines": [{"id": "stop-line", "camera": "north", "points": [[0.1, 0.5], [0.9, 0.5]],
                   "directions": ["northbound", "southbound"]},
                  {"id": "door", "camera": "hall", "points": [[0.2, 0.9], [0.8, 0.9]]}],
        "zones": [{"id": "queue", "camera": "north", "polygon": [[0.1, 0.3], [0.9, 0.3], [0.9, 0.7]],
                   "capacity": 12},
                  {"id": "lobby", "camera": "hall", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
        "retention": {"detections_days": 7, "partner_days": 365},
        "partners": [
            {"id": "city", "name": "City traffic planning", "k_anonymity": 5,
             "tables": ["traffic_volume", "occupancy"], "token_env": token_env("city", site_id)},
            {"id": "retailer", "name": "Corner shop", "k_anonymity": 10, "tables": ["dwell", "attributes"],
             "token_env": token_env("retailer", site_id)},
            {"id": "press", "name": "Local paper", "k_anonymity": 20, "tables": ["occupancy"]},
        ],
    }
    data.update(over)
    return data


def traffic(site_id: str, w: int, line: str, direction: str, cls: str, count: int | None,
            speed: float | None = None) -> dict[str, Any]:
    return {"site_id": site_id, "line_id": line, "direction": direction, "class_name": cls,
            "window_start": T0 + w * WINDOW_MS, "window_end": T0 + (w + 1) * WINDOW_MS,
            "count": count, "suppressed": count is None, "mean_speed_kmh": speed,
            "p85_speed_kmh": None if speed is None else speed + 5, "window_length_s": WINDOW_MS // 1000}


def partner_key(table: str, record: dict[str, Any], dims: tuple[str, ...]) -> str:
    """The key streams/partners.py writes: `table|site|dims|window_start|window_length_s`."""
    length_s = (record["window_end"] - record["window_start"]) // 1000
    return f"{table}|{record['site_id']}|{'|'.join(dims)}|{record['window_start']}|{length_s}"


@pytest.fixture(scope="session")
def kit() -> SimpleNamespace:
    """The helpers above, for test modules (conftest modules are not importable by name here)."""
    return SimpleNamespace(wait_for=wait_for, site_dict=site_dict, traffic=traffic, key=partner_key,
                           token_env=token_env, T0=T0, WINDOW_MS=WINDOW_MS)


@pytest.fixture(scope="session")
def produce_partner(stack) -> Callable[[list[tuple[str, str, dict[str, Any] | None]]], None]:
    """produce([(table, key, record-or-None-for-a-tombstone), ...]) into the real partner topics (or those
    `topic_of(table)` names, e.g. the operator topics)."""
    from confluent_kafka import Producer

    from privaflow.schemas.codec import SchemaRegistry, serde_for_topic
    from privaflow.schemas.topics import ensure_topics, partner_topic_name

    ensure_topics(stack.bootstrap)
    reg = SchemaRegistry(stack.registry_url)
    producer = Producer({"bootstrap.servers": stack.bootstrap, "enable.idempotence": True})

    def produce(items: list[tuple[str, str, dict[str, Any] | None]],
                topic_of: Callable[[str], str] = partner_topic_name) -> None:
        for table, key, record in items:
            topic = topic_of(table)
            value = None if record is None else serde_for_topic(reg, topic).encode(record)
            producer.produce(topic, key=key.encode(), value=value)
        assert producer.flush(30) == 0, "partner records were not all delivered"

    yield produce
    producer.flush(10)
    reg.close()
