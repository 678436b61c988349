"""No frame leaves the edge (G1-G5, T4, T6): the agent runs on real footage while an audit hook
records every file opened for writing and every socket connection, and the file trees it could
touch are compared before and after. Only the declared sink (or spool) may be written, and what is
written decodes as DetectionBatch, a schema that has no field able to hold pixels."""

from __future__ import annotations

import io
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest
from click.testing import CliRunner

import privaflow.edge.agent  # noqa: F401 - imported before auditing: `edge run` imports these lazily
import privaflow.edge.publish  # noqa: F401
from privaflow.edge.cli import edge as edge_cli
from privaflow.edge.spool import DiskSpool
from privaflow.schemas.codec import load_schema, parsed_schema, unframe
from privaflow.schemas.detections import SCHEMA_NAME, record_frames
from privaflow.schemas.privacy import partner_schema_violations
from tests.conftest import media_path

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class Audit:
    """Collects write-opens and outbound connections while `active`."""

    def __init__(self) -> None:
        self.active = False
        self.writes: list[str] = []
        self.connects: list[str] = []

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active:
            return
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & _WRITE_FLAGS)
            if writing and not isinstance(path, int):
                self.writes.append(os.path.realpath(os.fsdecode(path)))
        elif event in ("os.rename", "os.replace", "shutil.copyfile", "shutil.move"):
            self.writes.append(os.path.realpath(os.fsdecode(args[1])))
        elif event == "socket.connect":
            self.connects.append(repr(args[1]))


_AUDIT = Audit()
sys.addaudithook(_AUDIT)  # audit hooks cannot be removed; it is inert outside `audited()`


def tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def audited(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    """Separate temp folders for the working directory, HOME, TMPDIR, the config and the output."""
    dirs = {name: tmp_path_factory.mktemp(name) for name in ("cwd", "home", "tmp", "config", "out")}
    monkeypatch.chdir(dirs["cwd"])
    monkeypatch.setenv("HOME", str(dirs["home"]))
    monkeypatch.setenv("TMPDIR", str(dirs["tmp"]))
    monkeypatch.setattr(tempfile, "tempdir", str(dirs["tmp"]))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    _AUDIT.writes.clear()
    _AUDIT.connects.clear()
    yield dirs
    _AUDIT.active = False


def run_cli(args: list[str]) -> str:
    _AUDIT.active = True
    try:
        result = CliRunner().invoke(edge_cli, args, catch_exceptions=False)
    finally:
        _AUDIT.active = False
    assert result.exit_code == 0, result.output
    return result.output


def write_site(dirs: dict[str, Path], video: Path, attributes: bool = False) -> Path:
    site = dirs["config"] / "site.yaml"
    site.write_text(f"""
site_id: audit
cameras:
  - id: campus
    source: {video}
    fps: 10
    max_width: 640
    detect_every: 2
    privacy_masks: [[[0.0, 0.0], [0.25, 0.0], [0.25, 0.12], [0.0, 0.12]]]
    classes: [person, bicycle]
    attributes: {str(attributes).lower()}
""")
    return site


def watched(dirs: dict[str, Path], video: Path) -> list[Path]:
    """Folders compared before and after (the audit hook covers Python-level writes anywhere else;
    the repository itself is not compared because colleagues edit it while tests run)."""
    return [*dirs.values(), video.parent]


@pytest.mark.parametrize("attributes", [False, True], ids=["plain", "face-attributes"])
def test_file_sink_is_the_only_thing_written(audited: dict[str, Path], attributes: bool) -> None:
    """With `attributes: true` the face models run on every person too, and add no write either."""
    video = media_path("vtest.avi")
    site = write_site(audited, video, attributes)
    sink = audited["out"] / "campus.avro"
    before = {root: tree(root) for root in watched(audited, video)}

    run_cli(["run", "--config", str(site), "--camera", "campus", "--sink", f"file:{sink}", "--max-frames", "40"])

    assert set(_AUDIT.writes) == {str(sink.resolve())}, _AUDIT.writes
    assert _AUDIT.connects == [], "a file sink talks to nobody"
    for root, snapshot in before.items():
        after = tree(root)
        expected = {str(sink)} if root == audited["out"] else set()
        assert set(after) - set(snapshot) == expected, root
        assert {p for p in snapshot if after.get(p) != snapshot[p]} == set(), f"modified under {root}"
    with open(sink, "rb") as f:
        records = list(fastavro.reader(f))
    frames = [f for r in records for f in record_frames(r)]  # type: ignore[arg-type]
    assert len(frames) == 40 and sum(len(f["detections"]) for f in frames) > 40, "people were seen"
    assert_no_pixels(records)  # type: ignore[arg-type]


def test_kafka_sink_with_broker_away_writes_records_only_to_its_spool(audited: dict[str, Path],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    video = media_path("vtest.avi")
    site = write_site(audited, video)
    spool = audited["out"] / "spool"
    monkeypatch.setenv("PRIVAFLOW_BOOTSTRAP", "127.0.0.1:1")  # nothing listens: the broker is away
    monkeypatch.setenv("PRIVAFLOW_REGISTRY_URL", "http://127.0.0.1:1/apis/ccompat/v7")
    before = {root: tree(root) for root in watched(audited, video)}

    run_cli(["run", "--config", str(site), "--camera", "campus", "--spool-dir", str(spool), "--max-frames", "20"])

    assert _AUDIT.writes and all(w.startswith(str(spool.resolve()) + os.sep) for w in _AUDIT.writes), _AUDIT.writes
    assert all("127.0.0.1" in c and "', 1)" in c for c in _AUDIT.connects), _AUDIT.connects
    for root, snapshot in before.items():
        new = set(tree(root)) - set(snapshot)
        assert all(p.startswith(str(spool)) for p in new), root
    payloads = DiskSpool(spool).read(1000)
    assert len(payloads) == 4, "20 frames, 5 per record"
    schema = parsed_schema(SCHEMA_NAME)
    records = [fastavro.schemaless_reader(io.BytesIO(unframe(p)[1]), schema) for p in payloads]
    assert [s for r in records for s in r["frame_seq"]] == list(range(20))  # type: ignore[call-overload,index]
    assert_no_pixels(records)  # type: ignore[arg-type]


def assert_no_pixels(records: list[dict[str, Any]]) -> None:
    pixel_fields = [p for p in partner_schema_violations(load_schema(SCHEMA_NAME)) if "bytes" in p
                    or "fixed" in p]
    assert pixel_fields == [], "DetectionBatch has no bytes/fixed field that could carry an image"

    def scalars(node: Any) -> Iterator[Any]:
        if isinstance(node, dict):
            for v in node.values():
                yield from scalars(v)
        elif isinstance(node, list):
            for v in node:
                yield from scalars(v)
        else:
            yield node

    values = [v for r in records for v in scalars(r)]
    assert not any(isinstance(v, bytes | bytearray) for v in values)
    assert max(len(v) for v in values if isinstance(v, str)) <= 32, "no long strings (no encoded images)"
    assert max(n for r in records for n in r["detection_counts"]) < 100
