"""Shared fixtures. The real local stack (Kafka + Apicurio Registry) starts once per session.

Set PRIVAFLOW_BOOTSTRAP and PRIVAFLOW_REGISTRY_URL to run the integration tests against another
cluster instead; then the stack is neither started nor stopped here (and the broker-restart tests skip).
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXTERNAL = bool(os.environ.get("PRIVAFLOW_BOOTSTRAP"))


class StackHandle:
    """What tests get: where the stack listens, and control over the broker for fault tests."""

    def __init__(self, local: object | None, bootstrap: str, registry_url: str) -> None:
        self._local = local
        self.bootstrap = bootstrap
        self.registry_url = registry_url

    def _need_local(self) -> object:
        if self._local is None:
            pytest.skip("needs the project's own local stack (PRIVAFLOW_BOOTSTRAP points elsewhere)")
        return self._local

    def stop_kafka(self, kill: bool = False) -> None:
        self._need_local().stop_kafka(kill=kill)  # type: ignore[attr-defined]

    def start_kafka(self) -> None:
        self._need_local().start_kafka()  # type: ignore[attr-defined]

    def stop_registry(self) -> None:
        self._need_local().stop_registry()  # type: ignore[attr-defined]

    def start_registry(self) -> None:
        self._need_local().start_registry()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def stack() -> Iterator[StackHandle]:
    """The running stack; started (and afterwards stopped) by the suite unless it was already up."""
    if EXTERNAL:
        from privaflow.schemas.codec import registry_url

        yield StackHandle(None, os.environ["PRIVAFLOW_BOOTSTRAP"], registry_url())
        return
    from privaflow_stack.local import LocalStack

    local = LocalStack()
    was_up = local.kafka.pid() is not None and local.registry.pid() is not None
    local.up()
    os.environ["PRIVAFLOW_BOOTSTRAP"] = local.bootstrap
    os.environ["PRIVAFLOW_REGISTRY_URL"] = local.registry_url
    try:
        yield StackHandle(local, local.bootstrap, local.registry_url)
    finally:
        # a stack someone started by hand stays up; the one the suite started goes away
        if not was_up and not os.environ.get("PRIVAFLOW_KEEP_STACK"):
            local.down()


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic names, subjects and consumer groups of one test."""
    return uuid.uuid4().hex[:8]


def free_ports(n: int) -> list[int]:
    """n distinct ports nobody listens on now, for a private stack beside the session's (whose ports
    come from PRIVAFLOW_*_PORT and differ between people sharing a machine)."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def media_path(name: str) -> Path:
    """A sample video fetched by `make media`; missing media fails under CI and skips elsewhere."""
    p = REPO / ".privaflow" / "media" / name
    if not p.exists():
        msg = f"{p} missing: run `make media`"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return p


def _sample_record(n: int = 2, seq: int = 5, camera: str = "c", frames: int = 1) -> dict:
    """A valid DetectionBatch record: `frames` frames (from frame `seq` on, 100 ms apart, now) of
    `n` detections each."""
    import time

    from privaflow.schemas.detections import batch_records

    det = {"track_id": 1, "class_name": "person", "confidence": 0.9, "x1": 0.1, "y1": 0.2, "x2": 0.3,
           "y2": 0.6, "foot_x": 0.2, "foot_y": 0.6, "world_x_m": None, "world_y_m": None, "speed_kmh": None,
           "heading_deg": None, "colour": None, "age_bracket": None, "gender": None}
    now = int(time.time() * 1000)
    return batch_records([{"site_id": "s", "camera_id": camera, "ts": now + 100 * k, "frame_seq": seq + k,
                           "frame_width": 640, "frame_height": 480, "detected": True,
                           "detections": [dict(det, track_id=i) for i in range(n)]} for k in range(frames)], frames)[0]


@pytest.fixture
def sample_record():
    """A factory for valid DetectionBatch dicts: `sample_record(n, seq=, camera=, frames=)`."""
    return _sample_record


# CI keeps the start and the end of the suite's output. So that the end says why a test failed, the
# newest log a failed test wrote under its tmp_path (a stream worker's), or else the end of its error,
# and the stack's longest collector pauses and last warnings are printed after everything else.
_FAILED = pytest.StashKey[list[tuple[str, str, list[str]]]]()


def _log_lines(path: Path, n: int) -> list[str]:
    if not path.exists():
        return []
    with path.open("rb") as f:  # the end only: a stack's log can be large
        f.seek(max(0, f.seek(0, os.SEEK_END) - 256 * 1024))
        lines = f.read().decode(errors="replace").splitlines()
    return [line[:220] for line in lines if line.strip() and not line.startswith(("|", "+"))][-n:]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    if not rep.failed:
        return
    tmp = getattr(item, "funcargs", {}).get("tmp_path")
    logs = sorted(tmp.glob("**/*.log"), key=lambda p: p.stat().st_mtime) if isinstance(tmp, Path) else []
    if logs:
        where, lines = logs[-1].name, _log_lines(logs[-1], 15)
    else:
        crash = getattr(rep.longrepr, "reprcrash", None)
        where, lines = "its error ends", str(getattr(crash, "message", rep.longrepr)).splitlines()[-12:]
    if "stack" in getattr(item, "funcargs", {}) and len(item.config.stash.get(_FAILED, [])) < 3:
        try:
            lines += _registry_state_now()
        except Exception as e:  # a diagnostic must never hide the failure it describes
            lines.append(f"registry state not read: {e!r}")
    item.config.stash.setdefault(_FAILED, []).append((item.nodeid, where, lines))


def _registry_state_now() -> list[str]:
    """While a failed test's connections are still open: the registry's TCP queues (a request it never
    read shows as Recv-Q on its side), its last requests, and what its request threads are doing (a
    thread dump from SIGQUIT, which the JVM writes into its log)."""
    import signal
    import time

    from privaflow_stack.local import LocalStack

    reg = LocalStack().registry
    pid = reg.pid()
    if pid is None:
        return ["registry: not running"]
    states = {"01": "ESTAB", "08": "CLOSE-WAIT", "0A": "LISTEN"}  # /proc/net/tcp needs no iproute2
    open_ = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            col = row.split()
            local, peer, st, (tx, rx) = int(col[1][-4:], 16), int(col[2][-4:], 16), col[3], col[4].split(":")
            if reg.port in (local, peer) and st != "06":  # not TIME-WAIT
                open_.append(f"{states.get(st, st)} :{local}->:{peer} send-q {int(tx, 16)} recv-q {int(rx, 16)}")
    out = [f"registry sockets: {' | '.join(open_[:8])}"]
    out += [line for line in _log_lines(reg.logfile, 200) if "registry.access" in line][-3:]
    start = reg.logfile.stat().st_size
    os.kill(pid, signal.SIGQUIT)
    time.sleep(2)
    with reg.logfile.open("rb") as f:
        f.seek(start)
        dump = f.read(4 * 1024 * 1024).decode(errors="replace")
    for block in dump.split("\n\n"):
        head = block.strip().splitlines()
        if not head or not re.match(r'"(executor-thread|vert\.x-eventloop|vert\.x-worker|KSQL)', head[0]):
            continue
        frames = [f.strip() for f in head[1:] if f.strip().startswith("at ")]
        idle = not frames or any(k in frames[0] for k in ("Unsafe.park", "epollWait", "EPoll.wait"))
        if not idle or any("apicurio" in f for f in frames[:12]):
            out.append(f"{head[0].split(' #')[0]} {head[1].strip() if len(head) > 1 else ''}")
            out += [f"    {f}" for f in frames[:4]]
    return out[:40]


def _longest_gc_pauses(path: Path, n: int = 3) -> list[str]:
    pauses = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        m = re.search(r"Pause.* ([0-9.]+)ms$", line)
        if m:
            pauses.append((float(m.group(1)), line))
    return [line for _, line in sorted(pauses, reverse=True)[:n]]


class _TimedOutRegistryRequests(logging.Handler):
    """Our registry client retries a request that got no answer in time (ReadTimeout), and the test
    then passes; CI once saw Confluent's client, which had no timeout, wait 600 s for such an answer.
    Counted here and in the workers' logs, and printed at the end of every run, pass or fail."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        msg, stack_url = record.getMessage(), os.environ.get("PRIVAFLOW_REGISTRY_URL")
        self.count += bool(stack_url) and f"{stack_url} " in msg and "ReadTimeout" in msg  # not the unit tests' fakes


_TIMED_OUT = _TimedOutRegistryRequests()
logging.getLogger("privaflow.schemas.codec").addHandler(_TIMED_OUT)
_BASETEMP = pytest.StashKey[Path]()


@pytest.fixture(scope="session", autouse=True)
def _remember_basetemp(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> None:
    request.config.stash[_BASETEMP] = tmp_path_factory.getbasetemp()


def _timed_out_in_worker_logs(base: Path | None) -> int:
    n = 0
    for log in base.glob("**/*.log") if base else ():
        with log.open(errors="replace") as f:
            n += sum(1 for line in f if "schema registry" in line and "ReadTimeout" in line)
    return n


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    tr = terminalreporter
    workers = _timed_out_in_worker_logs(config.stash.get(_BASETEMP, None))
    tr.write_line(f"registry requests that got no answer in time and were retried: {_TIMED_OUT.count} by the "
                  f"tests, {workers} in workers' logs")
    failed = config.stash.get(_FAILED, [])
    if not failed:
        return
    tr.section("what the failed tests and the stack logged last")
    for nodeid, where, lines in failed:
        tr.write_line(f"{nodeid} ({where}):")
        for line in lines:
            tr.write_line(f"  {line}")
    from privaflow_stack.local import home

    logs = home() / "logs"
    for name in ("kafka", "registry"):
        tr.write_line(f"{name}: longest GC pauses {_longest_gc_pauses(logs / f'{name}-gc.log') or 'none logged'}")
        warnings = [line for line in _log_lines(logs / f"{name}.log", 400) if re.search(r"\b(WARN|ERROR)\b", line)]
        for line in warnings[-4:]:
            tr.write_line(f"  {line}")
