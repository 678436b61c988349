"""The disk spool (order, bound, full disk, crash recovery) and the Kafka sink's use of it while the
broker or the schema registry is away — against a stand-in producer, so no broker is needed here;
tests/edge/test_edge_integration.py does the same against the real one."""

from __future__ import annotations

import errno
import io
import json
import struct
import time
from collections import deque
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import KafkaError
from hypothesis import given, settings
from hypothesis import strategies as st

from privaflow.edge.publish import UNKNOWN_ID, KafkaSink
from privaflow.edge.spool import DiskSpool
from privaflow.schemas.codec import (
    IncompatibleSchemaError,
    RegistryAuthError,
    RegistryError,
    SchemaRegistry,
    parsed_schema,
    unframe,
)
from privaflow.schemas.detections import SCHEMA_NAME


def rec(i: int, size: int = 100) -> bytes:
    return i.to_bytes(4, "big") + bytes(size - 4)


def num(payload: bytes) -> int:
    return int.from_bytes(payload[:4], "big")


def test_fifo_across_segments_and_commits(tmp_path: Path) -> None:
    s = DiskSpool(tmp_path, max_bytes=1 << 20, segment_bytes=1000)
    for i in range(50):
        s.append(rec(i))
    assert len(list(tmp_path.glob("*.seg"))) > 3
    got = [num(p) for p in s.read(20)] + [num(p) for p in s.read(100)]
    assert got == list(range(50)) and len(s) == 50
    s.commit(30)
    assert len(s) == 20 and s.read(5) == []
    s.commit(20)
    assert len(s) == 0 and not list(tmp_path.glob("*.seg")), "empty segments are deleted"


def test_survives_a_crash_and_resumes_after_the_committed_position(tmp_path: Path) -> None:
    s = DiskSpool(tmp_path, segment_bytes=1000)
    for i in range(25):
        s.append(rec(i))
    s.read(12)
    s.commit(7)
    del s  # no close(): every append and commit is already on disk
    again = DiskSpool(tmp_path, segment_bytes=1000)
    assert len(again) == 18
    assert [num(p) for p in again.read(100)] == list(range(7, 25)), "handed out but unconfirmed: sent again"


def test_a_torn_last_record_is_cut_on_recovery(tmp_path: Path) -> None:
    s = DiskSpool(tmp_path)
    for i in range(3):
        s.append(rec(i))
    s.close()
    seg = sorted(tmp_path.glob("*.seg"))[-1]
    with open(seg, "ab") as f:
        f.write(struct.pack("<I", 100) + b"half a rec")
    again = DiskSpool(tmp_path)
    assert [num(p) for p in again.read(10)] == [0, 1, 2]
    again.append(rec(3))
    again.close()
    assert [num(p) for p in DiskSpool(tmp_path).read(10)] == [0, 1, 2, 3]


def test_over_the_bound_the_oldest_go_first_and_are_counted(tmp_path: Path) -> None:
    s = DiskSpool(tmp_path, max_bytes=10_000, segment_bytes=2_000)
    for i in range(300):
        s.append(rec(i))
    assert s.nbytes <= 10_000 and s.dropped > 0
    kept = [num(p) for p in s.read(1000)]
    assert kept == list(range(300 - len(kept), 300)), "what is left is the newest, in order"
    assert s.dropped + len(kept) == 300, "every record is either kept or counted as dropped"


def test_push_front_puts_records_before_everything(tmp_path: Path) -> None:
    s = DiskSpool(tmp_path, segment_bytes=1000)
    for i in range(10, 20):
        s.append(rec(i))
    s.read(3)
    s.commit(3)
    s.push_front([rec(i) for i in range(5)])
    s.append(rec(20))
    assert [num(p) for p in s.read(100)] == [*range(5), *range(13, 21)]
    s.close()
    assert [num(p) for p in DiskSpool(tmp_path).read(100)] == [*range(5), *range(13, 21)]


class QuotaFile:
    """A segment file on a disk that holds only `quota` bytes in the spool folder; a write that does
    not fit is half written, then fails with ENOSPC, as a real full disk does."""

    def __init__(self, f: Any, folder: Path, quota: int) -> None:
        self.f, self.folder, self.quota = f, folder, quota

    def write(self, data: bytes) -> int:
        self.f.flush()
        used = sum(p.stat().st_size for p in self.folder.glob("*.seg"))
        if used + len(data) > self.quota:
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            raise OSError(errno.ENOSPC, "No space left on device")
        return int(self.f.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)


def test_disk_full_drops_the_oldest_and_carries_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    def quota_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = builtins.open(path, mode, *args, **kwargs)  # noqa: SIM115 - handed to the spool, which closes it
        return QuotaFile(f, tmp_path, 6_000) if "a" in mode else f

    monkeypatch.setattr("privaflow.edge.spool.open", quota_open, raising=False)
    s = DiskSpool(tmp_path, max_bytes=1 << 20, segment_bytes=2_000)
    for i in range(200):
        s.append(rec(i))  # never raises
    assert s.dropped > 0
    kept = [num(p) for p in s.read(1000)]
    assert kept == list(range(kept[0], 200)), "no torn or missing record among those kept"
    assert s.dropped + len(kept) == 200
    monkeypatch.undo()
    s.close()
    assert [num(p) for p in DiskSpool(tmp_path).read(1000)] == kept


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.just("append"), st.integers(5, 300)),
                          st.tuples(st.just("read"), st.integers(0, 20)),
                          st.tuples(st.just("commit"), st.integers(0, 20)),
                          st.tuples(st.just("reopen"), st.just(0))), max_size=80))
def test_spool_behaves_like_a_queue(tmp_path_factory: pytest.TempPathFactory, ops: list) -> None:
    folder = tmp_path_factory.mktemp("spool")
    s = DiskSpool(folder, max_bytes=1 << 22, segment_bytes=500)
    model: deque[bytes] = deque()
    out, n = 0, 0
    for op, arg in ops:
        if op == "append":
            payload = n.to_bytes(4, "big") + bytes(arg)
            n += 1
            s.append(payload)
            model.append(payload)
        elif op == "read":
            assert s.read(arg) == list(model)[out: out + arg]
            out = min(len(model), out + arg)
        elif op == "commit":
            k = min(arg, out)
            s.commit(arg)
            for _ in range(k):
                model.popleft()
            out -= k
        else:
            s.close()
            s, out = DiskSpool(folder, max_bytes=1 << 22, segment_bytes=500), 0
        assert len(s) == len(model)


# ---------------------------------------------------------------- the Kafka sink, broker stand-in

class FakeProducer:
    """Holds produced records while `up` is False; delivers them, in order, on poll when True."""

    def __init__(self) -> None:
        self.up, self.queue, self.broker = True, [], []

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Any) -> None:
        self.queue.append((value, on_delivery))

    def poll(self, timeout: float = 0) -> int:
        if not self.up:
            return 0
        done, self.queue = self.queue, []
        for value, cb in done:
            self.broker.append(value)
            cb(None, None)
        return len(done)

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return len(self.queue)

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None:
        held, self.queue = self.queue, []
        for _, cb in held:
            cb(KafkaError(KafkaError._PURGE_QUEUE), None)


class StubRegistry(SchemaRegistry):
    def __init__(self, schema_id: int | None, url: str = "http://registry.test/apis/ccompat/v7") -> None:
        super().__init__(url=url, retries=0)
        self.schema_id = schema_id

    def register(self, subject: str, schema_json: str, compatibility: str = "BACKWARD") -> int:
        if self.schema_id is None:
            raise RegistryError("schema registry at test unreachable")
        return self.schema_id


def make_sink(spool: Path, registry: StubRegistry, **kw: Any) -> tuple[KafkaSink, FakeProducer]:
    sink = KafkaSink(spool, key="cam", bootstrap="127.0.0.1:1", registry=registry, **kw)
    fake = FakeProducer()
    sink._producer = fake  # type: ignore[assignment]
    return sink, fake


def frame_seqs(payloads: list[bytes]) -> list[int]:
    return [s for p in payloads
            for s in fastavro.schemaless_reader(io.BytesIO(unframe(p)[1]), parsed_schema(SCHEMA_NAME))["frame_seq"]]


def records(sample_record: Any, n: int, start: int = 0) -> list[dict]:
    return [sample_record(2, seq=i) for i in range(start, start + n)]


def test_broker_away_records_spool_then_drain_in_order(tmp_path: Path, sample_record: Any) -> None:
    sink, broker = make_sink(tmp_path, StubRegistry(7), max_in_flight=50)
    broker.up = False
    for r in records(sample_record, 1000):
        sink.publish(r)
    assert len(broker.queue) == 50 and sink.depth == 950, "only max_in_flight records wait in memory"
    broker.up = True
    for _ in range(100):
        sink.poll()
    assert frame_seqs(broker.broker) == list(range(1000))
    assert sink.depth == 0 and sink.stats.delivered == 1000 and sink.stats.dropped == 0
    assert {unframe(p)[0] for p in broker.broker} == {7}


def test_records_held_at_shutdown_wait_in_the_spool_for_the_next_run(tmp_path: Path, sample_record: Any) -> None:
    sink, broker = make_sink(tmp_path, StubRegistry(7), max_in_flight=40)
    broker.up = False
    for r in records(sample_record, 100):
        sink.publish(r)
    sink.close(timeout_s=0)
    assert sink.depth == 100
    again, broker2 = make_sink(tmp_path, StubRegistry(7), max_in_flight=40)
    for r in records(sample_record, 5, start=100):
        again.publish(r)
    for _ in range(10):
        again.poll()
    assert frame_seqs(broker2.broker) == list(range(105))


def test_spool_bound_drops_oldest_and_counts_them(tmp_path: Path, sample_record: Any) -> None:
    sink, broker = make_sink(tmp_path, StubRegistry(7), max_in_flight=10, spool_max_bytes=20_000)
    broker.up = False
    for r in records(sample_record, 2000):
        sink.publish(r)
    broker.up = True
    for _ in range(400):
        sink.poll()
    seqs = frame_seqs(broker.broker)
    assert seqs[:10] == list(range(10)), "what was already handed to the producer is delivered"
    assert seqs == sorted(seqs) and seqs[-1] == 1999
    assert sink.stats.dropped == 2000 - len(seqs) > 0


def test_registry_away_at_start_records_wait_then_carry_the_real_id(tmp_path: Path, sample_record: Any) -> None:
    registry = StubRegistry(None)
    sink, broker = make_sink(tmp_path, registry)
    for r in records(sample_record, 20):
        sink.publish(r)
    assert broker.broker == [] and sink.depth == 20 and not sink.stats.registry_ok
    registry.schema_id = 11  # the registry answers again; the sink's background thread notices
    deadline = time.monotonic() + 30
    while sink.depth and time.monotonic() < deadline:
        sink.poll()
        time.sleep(0.05)
    assert frame_seqs(broker.broker) == list(range(20))
    assert {unframe(p)[0] for p in broker.broker} == {11}, f"placeholder {UNKNOWN_ID} replaced"
    assert json.loads((tmp_path / "schema-id.json").read_text())["id"] == 11
    sink.close(0)


def test_incompatible_schema_is_an_error_not_a_wait(tmp_path: Path) -> None:
    class Refusing(StubRegistry):
        def register(self, subject: str, schema_json: str, compatibility: str = "BACKWARD") -> int:
            raise IncompatibleSchemaError("schema for subject 'x' is not BACKWARD-compatible")

    with pytest.raises(IncompatibleSchemaError):
        make_sink(tmp_path, Refusing(None))


def test_refused_registry_credentials_are_an_error_not_a_wait(tmp_path: Path) -> None:
    """A registry that refuses the edge's credentials will not change its mind: no spooling, no cached id."""
    first, _ = make_sink(tmp_path, StubRegistry(23))
    first.close(0)

    class Refusing(StubRegistry):
        def register(self, subject: str, schema_json: str, compatibility: str = "BACKWARD") -> int:
            raise RegistryAuthError("registry refused: wrong credentials for user 'edge'")

    with pytest.raises(RegistryAuthError, match="wrong credentials"):
        make_sink(tmp_path, Refusing(None))


def test_registry_down_later_uses_the_cached_schema_id(tmp_path: Path, sample_record: Any) -> None:
    first, _ = make_sink(tmp_path, StubRegistry(23))
    first.close(0)
    sink, broker = make_sink(tmp_path, StubRegistry(None))
    for r in records(sample_record, 3):
        sink.publish(r)
    assert frame_seqs(broker.broker) == [0, 1, 2]
    assert {unframe(p)[0] for p in broker.broker} == {23}
    sink.close(0)


def test_cached_id_of_another_registry_is_not_trusted(tmp_path: Path, sample_record: Any) -> None:
    first, _ = make_sink(tmp_path, StubRegistry(23, url="http://other.test/apis/ccompat/v7"))
    first.close(0)
    sink, broker = make_sink(tmp_path, StubRegistry(None))
    sink.publish(records(sample_record, 1)[0])
    assert broker.broker == [] and sink.depth == 1
    sink.close(0)
