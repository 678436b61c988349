"""A real RTSP camera for tests: mediamtx (an RTSP server, built once from its Go module at a pinned
version into .privaflow/bin/) serving a video that ffmpeg publishes in a loop.

    >>> with RtspCamera(Path(".privaflow/media/vtest.avi")) as camera:   # doctest: +SKIP
    ...     ok, image = cv2.VideoCapture(camera.url, cv2.CAP_FFMPEG).read()

`python -m privaflow_stack.rtsp` (`make rtsp-server`) builds the server ahead of time. Go and ffmpeg are needed
for this only; nothing else in privaflow uses them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from privaflow_stack.local import HOST, StackError, home

MEDIAMTX_MODULE = "github.com/bluenviron/mediamtx"
MEDIAMTX_VERSION = "v1.15.3"
GO_FALLBACK = Path("/usr/local/go/bin/go")  # where Go's own tarball installs; often not on PATH

# RTSP over TCP only, on loopback; every other protocol and server off
CONFIG = """\
logLevel: info
rtspAddress: {host}:{port}
rtspTransports: [tcp]
rtmp: no
hls: no
webrtc: no
srt: no
api: no
metrics: no
pprof: no
playback: no
paths:
  all_others:
"""


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def find_go() -> str | None:
    return shutil.which("go") or (str(GO_FALLBACK) if GO_FALLBACK.exists() else None)


def mediamtx_path() -> Path:
    return home() / "bin" / "mediamtx"


def mediamtx_built() -> bool:
    binary = mediamtx_path()
    if not binary.exists():
        return False
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.strip() == MEDIAMTX_VERSION


def build_mediamtx(progress: Callable[[str], None] = _say) -> Path:
    """The mediamtx binary at MEDIAMTX_VERSION, built from source the first time (about 2 minutes)."""
    binary = mediamtx_path()
    if mediamtx_built():
        return binary
    go = find_go()
    if go is None:
        raise StackError(f"Go not found (on PATH or at {GO_FALLBACK}): install Go 1.25+ (https://go.dev/dl/); "
                         "it builds the RTSP server that only the RTSP capture test uses")
    env = {**os.environ, "GOTOOLCHAIN": "local"}  # build with the installed Go, fetch no other

    def go_run(*args: str, cwd: Path) -> str:
        r = subprocess.run([go, *args], cwd=cwd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise StackError(f"building mediamtx: `go {' '.join(args)}` failed:\n{r.stderr[-3000:]}")
        return r.stdout

    progress(f"building mediamtx {MEDIAMTX_VERSION} into {binary} (first time only, about 2 minutes)...")
    with tempfile.TemporaryDirectory(prefix="privaflow-mediamtx-") as tmp:
        # `go install` cannot build it: two go:embed files come from go:generate steps that download
        # things. So: the module's source into a writable copy, the two files stubbed, then build.
        got = go_run("mod", "download", "-json", f"{MEDIAMTX_MODULE}@{MEDIAMTX_VERSION}", cwd=Path(tmp))
        src = Path(tmp) / "src"
        shutil.copytree(json.loads(got)["Dir"], src)
        for d, _, files in os.walk(src):  # the module cache is read-only
            os.chmod(d, 0o755)
            for f in files:
                os.chmod(os.path.join(d, f), 0o644)
        (src / "internal" / "core" / "VERSION").write_text(MEDIAMTX_VERSION)
        (src / "internal" / "servers" / "hls" / "hls.min.js").write_text("// HLS player not bundled: HLS is off\n")
        binary.parent.mkdir(parents=True, exist_ok=True)
        part = binary.with_name(binary.name + ".part")
        go_run("build", "-o", str(part), ".", cwd=src)
        part.replace(binary)
    if not mediamtx_built():
        raise StackError(f"built {binary}, but it does not report {MEDIAMTX_VERSION}")
    progress(f"mediamtx {MEDIAMTX_VERSION} in {binary}")
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _end(proc: subprocess.Popen[bytes] | None, kill: bool = False) -> None:
    if proc is None or proc.poll() is not None:
        return
    if kill:
        proc.kill()
    else:
        proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class RtspCamera:
    """A live RTSP stream of `video` (looped, H.264, a keyframe every 10 frames) at `url` on loopback.

    Entering starts mediamtx on a free port and ffmpeg publishing to it, and returns once the
    server has the stream; leaving stops both. `stop_publishing()` takes the camera off the air as
    a crash would (the server drops its readers); `publish()` brings it back.
    """

    def __init__(self, video: Path, path: str = "cam1", timeout_s: float = 30.0) -> None:
        self.video, self.path, self.timeout_s = video, path, timeout_s
        self.port = _free_port()
        self.url = f"rtsp://{HOST}:{self.port}/{path}"
        self._dir: Path | None = None
        self._server: subprocess.Popen[bytes] | None = None
        self._publisher: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RtspCamera:
        if shutil.which("ffmpeg") is None:
            raise StackError("ffmpeg not found: install it (`apt-get install ffmpeg`); it publishes the test "
                             "video to the RTSP server")
        binary = build_mediamtx()
        self._dir = Path(tempfile.mkdtemp(prefix="privaflow-rtsp-"))
        config = self._dir / "mediamtx.yml"
        config.write_text(CONFIG.format(host=HOST, port=self.port))
        try:
            self._server = self._spawn([str(binary), str(config)], "mediamtx.log")
            self._await("listener opened", self._server, 0)
            self.publish()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop_publishing()
        _end(self._server)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def publish(self) -> None:
        """Start publishing and wait until the server has the stream (readers can then open `url`)."""
        assert self._dir is not None, "use RtspCamera as a context manager"
        seen = (self._dir / "mediamtx.log").stat().st_size
        self._publisher = self._spawn(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(self.video),
             "-an", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "10",
             "-f", "rtsp", "-rtsp_transport", "tcp", self.url], "ffmpeg.log")
        self._await(f"is publishing to path '{self.path}'", self._publisher, seen)

    def stop_publishing(self) -> None:
        """Kill the publisher (SIGKILL, as a camera losing power)."""
        _end(self._publisher, kill=True)
        self._publisher = None

    def _spawn(self, cmd: list[str], log: str) -> subprocess.Popen[bytes]:
        assert self._dir is not None
        with (self._dir / log).open("ab") as out:
            return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def _await(self, line: str, proc: subprocess.Popen[bytes], offset: int) -> None:
        """Wait for `line` in the server's log after byte `offset`, failing if `proc` exits first."""
        assert self._dir is not None
        log = self._dir / "mediamtx.log"
        deadline = time.monotonic() + self.timeout_s
        while line not in log.read_bytes()[offset:].decode(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                logs = "\n".join(f"{p.name}:\n{p.read_text(errors='replace')[-2000:]}"
                                 for p in sorted(self._dir.glob("*.log")))
                name = "ffmpeg" if proc is self._publisher else "mediamtx"
                why = f"exited ({proc.returncode})" if proc.poll() is not None else f"not within {self.timeout_s:.0f} s"
                raise StackError(f"RTSP camera: waiting for {line!r}, {name} {why}\n{logs}")
            time.sleep(0.05)


if __name__ == "__main__":
    try:
        print(build_mediamtx())
    except StackError as e:
        sys.exit(f"error: {e}")
