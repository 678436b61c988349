"""`privaflow stack up|down|status` on a second, private stack (own home and ports), so the session
stack the other tests use is never touched. Acceptance 4 of the foundation issue."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from privaflow_stack.local import home as default_home
from tests.conftest import free_ports

pytestmark = pytest.mark.integration

# free ports, not fixed ones: a fixed set collides with whoever runs the session stack on them
PORTS = dict(zip(("PRIVAFLOW_KAFKA_PORT", "PRIVAFLOW_CONTROLLER_PORT", "PRIVAFLOW_REGISTRY_PORT",
                  "PRIVAFLOW_REGISTRY_MGMT_PORT"), map(str, free_ports(4)), strict=True))


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVAFLOW_")}
    env.update(PORTS, PRIVAFLOW_HOME=str(home), **extra)
    return env


def _cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "privaflow", "stack", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if text in (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


@pytest.fixture
def private_home(tmp_path: Path, stack) -> Path:
    """A fresh home that reuses the already fetched jars (the `stack` fixture fetched them)."""
    h = tmp_path / "pf-home"
    h.mkdir()
    (h / "stack").symlink_to(default_home() / "stack")
    return h


def test_up_twice_is_harmless_and_down_leaves_no_process(private_home: Path) -> None:
    env = _env(private_home)
    try:
        first = _cli(env, "up")
        assert first.returncode == 0, first.stderr
        assert f"127.0.0.1:{PORTS['PRIVAFLOW_KAFKA_PORT']}" in first.stdout
        assert f"127.0.0.1:{PORTS['PRIVAFLOW_REGISTRY_PORT']}" in first.stdout
        pids = sorted(int((private_home / "run" / f"{c}.pid").read_text()) for c in ("kafka", "registry"))

        second = _cli(env, "up", timeout=60)
        assert second.returncode == 0, second.stderr
        assert "starting" not in second.stderr
        assert sorted(int((private_home / "run" / f"{c}.pid").read_text()) for c in ("kafka", "registry")) == pids

        status = _cli(env, "status", timeout=60)
        assert status.returncode == 0 and status.stdout.count("ready") == 2, status.stdout
    finally:
        down = _cli(env, "down", timeout=120)
    assert down.returncode == 0, down.stderr
    assert _processes_mentioning(str(private_home)) == []
    assert _cli(env, "status", timeout=60).returncode == 1


def test_a_taken_port_is_named(private_home: Path) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(PORTS["PRIVAFLOW_KAFKA_PORT"])))
        s.listen()
        r = _cli(_env(private_home), "up", timeout=120)
    assert r.returncode == 2
    assert f"port {PORTS['PRIVAFLOW_KAFKA_PORT']}" in r.stderr and "already taken" in r.stderr
    assert _processes_mentioning(str(private_home)) == []


def _dying_java(tmp_path: Path) -> Path:
    """A `java` that answers -version and formats storage, then the broker itself dies at once."""
    fake = tmp_path / "java"
    fake.write_text('#!/bin/sh\nif [ "$1" = "-version" ]; then echo \'openjdk version "25"\' >&2; exit 0; fi\n'
                    'case "$*" in *storage-format.args*) exit 0;; esac\n'
                    'echo "fake JVM refuses to run"; exit 1\n')
    fake.chmod(0o755)
    return fake


def test_a_component_that_dies_at_start_points_at_its_log(private_home: Path, tmp_path: Path) -> None:
    r = _cli(_env(private_home, PRIVAFLOW_JAVA=str(_dying_java(tmp_path))), "up", timeout=120)
    assert r.returncode == 2
    assert "exited during start" in r.stderr and str(private_home / "logs") in r.stderr


def test_a_large_log_is_set_aside_at_start_instead_of_growing_forever(private_home: Path, tmp_path: Path) -> None:
    logs = private_home / "logs"
    logs.mkdir()
    with (logs / "kafka.log").open("wb") as f:
        f.truncate(101 * 1024 * 1024)  # sparse: the size matters, not the bytes
    _cli(_env(private_home, PRIVAFLOW_JAVA=str(_dying_java(tmp_path))), "up", timeout=120)
    assert (logs / "kafka.log.1").stat().st_size == 101 * 1024 * 1024
    assert (logs / "kafka.log").read_text().strip() == "fake JVM refuses to run"


def test_missing_maven_is_a_clear_error(tmp_path: Path) -> None:
    bare = tmp_path / "bare-home"
    bare.mkdir()
    env = _env(bare, PATH=str(Path(sys.executable).parent))
    r = _cli(env, "up", timeout=60)
    assert r.returncode == 2 and "Maven (mvn) not found" in r.stderr
