"""The local stack: a real Apache Kafka broker (KRaft, single node) and a real Apicurio Registry,
resolved from Maven Central and run as background processes under `.privaflow/`.

`up` is idempotent, `down` stops exactly the processes `up` started (tracked by pid files whose
command line is checked before any signal is sent).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from privaflow.schemas.site import SiteConfig
from privaflow_stack.security import Acl

STACK_SRC = Path(__file__).resolve().parent
REPO = STACK_SRC.parent
REGISTRY_MIN_JAVA = 21  # Apicurio Registry 3.3 is built for Java 21


class StackError(RuntimeError):
    """The local stack cannot be set up or started; the message says what to do."""


LOG_ROTATE_BYTES = 100 * 1024 * 1024  # a broker log at INFO grew to 2 GB over a few weeks of test runs


def home() -> Path:
    return Path(os.environ.get("PRIVAFLOW_HOME", REPO / ".privaflow")).resolve()


@dataclass(frozen=True)
class Ports:
    kafka: int = 9092
    controller: int = 9093
    registry: int = 8081
    registry_mgmt: int = 9081

    @classmethod
    def from_env(cls) -> Ports:
        def env(name: str, default: int) -> int:
            return int(os.environ.get(name, default))

        return cls(env("PRIVAFLOW_KAFKA_PORT", 9092), env("PRIVAFLOW_CONTROLLER_PORT", 9093),
                   env("PRIVAFLOW_REGISTRY_PORT", 8081), env("PRIVAFLOW_REGISTRY_MGMT_PORT", 9081))


HOST = "127.0.0.1"


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- prerequisites and fetching

def _java_version(java: str) -> int | None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 and m.group(2) else major


def find_java(min_version: int) -> str:
    """A java binary of at least min_version: $PRIVAFLOW_JAVA, $JAVA_HOME, PATH, then /usr/lib/jvm."""
    candidates: list[str] = []
    for env in ("PRIVAFLOW_JAVA",):
        if os.environ.get(env):
            candidates.append(os.environ[env])
    if os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    if shutil.which("java"):
        candidates.append(shutil.which("java") or "java")
    jvm = Path("/usr/lib/jvm")
    if jvm.is_dir():
        candidates += [str(p / "bin" / "java") for p in sorted(jvm.iterdir(), reverse=True)]
    seen: list[str] = []
    for c in candidates:
        if c in seen or not Path(c).exists():
            continue
        seen.append(c)
        v = _java_version(c)
        if v is not None and v >= min_version:
            return c
    if not seen:
        raise StackError("Java not found: install a JDK (17+ for Kafka, 21+ for the registry), "
                         "e.g. `apt-get install openjdk-17-jre-headless`, or set PRIVAFLOW_JAVA")
    raise StackError(f"no Java {min_version}+ found (looked at {', '.join(seen)}); the schema registry "
                     f"(Apicurio 3.x) needs Java {min_version}+: install one or set PRIVAFLOW_JAVA")


def stack_dir() -> Path:
    return home() / "stack"


def fetched() -> bool:
    d = stack_dir()
    return (d / "kafka" / "libs").is_dir() and (d / "registry" / "quarkus-run.jar").exists()


def fetch(progress: Callable[[str], None] = _say) -> None:
    """Resolve Kafka's jars and the Apicurio Registry app from Maven Central (cached in ~/.m2)."""
    if fetched():
        return
    mvn = shutil.which("mvn")
    if not mvn:
        raise StackError("Maven (mvn) not found: install it (`apt-get install maven`); it fetches Kafka "
                         "and the schema registry from Maven Central")
    find_java(17)
    progress("fetching Apache Kafka and Apicurio Registry from Maven Central (first time: ~250 MB)...")
    d = stack_dir()
    d.mkdir(parents=True, exist_ok=True)
    cmd = [mvn, "-B", "-q", "-f", str(STACK_SRC / "pom.xml"), "generate-resources", f"-Dstack.dir={d}"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise StackError(f"Maven could not resolve the stack ({' '.join(cmd)}):\n{r.stdout[-3000:]}"
                         f"{r.stderr[-2000:]}")
    if not fetched():
        raise StackError(f"Maven finished but {d} lacks kafka/libs or registry/quarkus-run.jar")
    progress(f"stack components in {d}")


# ---------------------------------------------------------------- processes

@dataclass
class Component:
    name: str
    port: int
    marker: str  # a string that must appear in the process's command line

    @property
    def pidfile(self) -> Path:
        return home() / "run" / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return home() / "logs" / f"{self.name}.log"

    @property
    def gc_log_option(self) -> str:
        """JVM flag writing the collector's pauses beside the log (<name>-gc.log), so a stall can be
        told from a GC pause."""
        return f"-Xlog:gc:file={self.logfile.with_name(f'{self.name}-gc.log')}:time,uptime:filecount=2,filesize=5m"

    def pid(self) -> int | None:
        """The pid `up` recorded, if that process is still ours and alive."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return None
        return pid if self.marker in cmdline else None


def _port_open(port: int, host: str = HOST) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _port_owner(port: int) -> str:
    try:
        out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True,
                             timeout=5).stdout
        m = re.search(r'users:\(\("([^"]+)",pid=(\d+)', out)
        if m:
            return f" by {m.group(1)} (pid {m.group(2)})"
    except (OSError, subprocess.TimeoutExpired):
        pass
    return ""


def _tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(lines[-n:])


class LocalStack:
    """Start, stop and inspect the local Kafka broker and schema registry."""

    def __init__(self, ports: Ports | None = None, progress: Callable[[str], None] = _say,
                 secure: bool | None = None) -> None:
        self.ports = ports or Ports.from_env()
        self.progress = progress
        # secure mode (SASL/SCRAM + ACLs) is remembered in the data dir, so status/down need no flag
        self.secure = secure if secure is not None else (home() / "data" / "SECURE").exists()
        self.kafka = Component("kafka", self.ports.kafka, "kafka.Kafka")
        self.registry = Component("registry", self.ports.registry, "quarkus-run.jar")

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.ports.kafka}"

    @property
    def registry_url(self) -> str:
        return f"http://{HOST}:{self.ports.registry}/apis/ccompat/v7"

    # -- security
    @property
    def credentials_file(self) -> Path:
        return home() / "data" / "credentials.json"

    def credentials(self) -> dict[str, str]:
        """user -> password for secure mode (generated on first `up --secure`)."""
        from privaflow_stack.security import load_or_create_credentials

        return load_or_create_credentials(self.credentials_file, list(self._roles()))

    def _roles(self) -> dict[str, list[Acl]]:
        from privaflow_stack.security import role_acls

        site = _example_site()
        return role_acls({p.id: list(p.tables) for p in site.partners}, {p.id for p in site.partners if p.dp})

    def client_config(self, user: str = "admin") -> dict[str, str]:
        """librdkafka settings for a user (empty in plain mode)."""
        if not self.secure:
            return {}
        from privaflow_stack.security import client_config

        return client_config(user, self.credentials()[user])

    # -- kafka
    def _kafka_config(self) -> Path:
        data = home() / "data" / "kafka"
        tmpl = "server-secure.properties.tmpl" if self.secure else "server.properties.tmpl"
        admin_password = self.credentials()["admin"] if self.secure else ""
        text = (STACK_SRC / "conf" / tmpl).read_text().format(
            host=HOST, port=self.ports.kafka, controller_port=self.ports.controller, data_dir=data,
            admin_password=admin_password)
        cfg = home() / "conf" / "server.properties"
        write_private(cfg, text)  # in secure mode it holds the admin password
        return cfg

    def _kafka_cmd(self, java: str, main: str, *args: str, gc_log: bool = False) -> list[str]:
        libs = stack_dir() / "kafka" / "libs"
        # 1 GiB, as Kafka's own start script: at 512 MiB the old generation sat at 80 % mid-suite
        gc = [self.kafka.gc_log_option] if gc_log else []
        return [java, "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", *gc, "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={STACK_SRC / 'conf' / 'log4j2.properties'}",
                "-Dkafka.logs.dir=" + str(home() / "logs"), "-cp", f"{libs}/*", main, *args]

    def _format_kafka(self, java: str, cfg: Path) -> None:
        data = home() / "data" / "kafka"
        if (data / "meta.properties").exists():
            return
        data.mkdir(parents=True, exist_ok=True)
        cluster_id = uuid.uuid4().hex[:22]
        args = ["format", "--standalone", "-t", cluster_id, "-c", str(cfg)]
        for user, password in self.credentials().items() if self.secure else ():
            args += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]"]  # KRaft takes them now
        # the tool has no option to read SCRAM users from a file, so its arguments go in a 0600 java
        # @argfile: on the command line, any local user could read every password in /proc/<pid>/cmdline
        argfile = home() / "conf" / "storage-format.args"
        write_private(argfile, "\n".join(_argfile_quote(a) for a in ["kafka.tools.StorageTool", *args]) + "\n")
        try:
            r = subprocess.run(self._kafka_cmd(java, f"@{argfile}"), capture_output=True, text=True)
        finally:
            argfile.unlink(missing_ok=True)
        if r.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")

    def start_kafka(self, timeout: float = 90) -> None:
        if self.kafka.pid():  # already ours: just make sure it answers
            return self._wait(self.kafka, None, timeout, self._kafka_ready)
        java = find_java(17)
        for port, what in ((self.ports.kafka, "Kafka"), (self.ports.controller, "the Kafka controller")):
            if _port_open(port):
                raise StackError(f"port {port} (for {what}) is already taken{_port_owner(port)}; stop that "
                                 f"or set PRIVAFLOW_KAFKA_PORT / PRIVAFLOW_CONTROLLER_PORT")
        cfg = self._kafka_config()
        self._format_kafka(java, cfg)
        proc = self._spawn(self.kafka, self._kafka_cmd(java, "kafka.Kafka", str(cfg), gc_log=True))
        self._wait(self.kafka, proc, timeout, self._kafka_ready)

    def _kafka_ready(self) -> bool:
        if not _port_open(self.ports.kafka):
            return False
        from confluent_kafka.admin import AdminClient

        try:
            md = AdminClient({"bootstrap.servers": self.bootstrap, **self.client_config()}).list_topics(timeout=3)
            return bool(md.brokers)
        except Exception:
            return False

    def stop_kafka(self, kill: bool = False) -> None:
        self._stop(self.kafka, kill)

    # -- registry
    def start_registry(self, timeout: float = 180) -> None:
        if self.registry.pid():
            return self._wait(self.registry, None, timeout, self._registry_ready)
        java = find_java(REGISTRY_MIN_JAVA)
        for port in (self.ports.registry, self.ports.registry_mgmt):
            if _port_open(port):
                raise StackError(f"port {port} (for the schema registry) is already taken{_port_owner(port)}; "
                                 "stop that or set PRIVAFLOW_REGISTRY_PORT / PRIVAFLOW_REGISTRY_MGMT_PORT")
        app = stack_dir() / "registry"
        cmd = [java, "-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", self.registry.gc_log_option,
               f"-Dquarkus.http.host={HOST}", f"-Dquarkus.http.port={self.ports.registry}",
               f"-Dquarkus.management.host={HOST}", f"-Dquarkus.management.port={self.ports.registry_mgmt}",
               # schemas live in a Kafka topic, so they survive a registry restart
               "-Dapicurio.storage.kind=kafkasql", f"-Dapicurio.kafkasql.bootstrap.servers={self.bootstrap}",
               "-Dquarkus.log.console.json=false", *self._registry_auth_config(), "-jar", str(app / "quarkus-run.jar")]
        proc = self._spawn(self.registry, cmd, cwd=app)
        self._wait(self.registry, proc, timeout, self._registry_ready)
        if self.secure and self._registry_answers_anonymous():
            self._stop(self.registry, kill=True)
            raise StackError(f"the registry started without authentication although the stack is secure; see "
                             f"{self.registry.logfile} and {self.registry_auth_file}")

    @property
    def registry_auth_file(self) -> Path:
        return home() / "data" / "registry-auth.properties"

    def registry_auth(self, user: str) -> tuple[str, str] | None:
        """(user, password) for the registry's HTTP API; None in plain mode, where it asks for none."""
        return (user, self.credentials()[user]) if self.secure else None

    def _registry_auth_config(self) -> list[str]:
        """In secure mode the registry talks to Kafka as the `registry` user (its kafkasql topics only) and
        wants HTTP Basic auth from the same users as Kafka. Both go in a 0600 file, not on the command
        line, where any local user could read them in /proc."""
        if not self.secure:
            return []
        from privaflow_stack.security import registry_auth_properties

        creds = self.credentials()
        jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="registry" '
                f'password="{creds["registry"]}";')
        kafka = [f"apicurio.kafkasql.{client}.{k}={v}" for client in ("producer", "consumer", "admin")
                 for k, v in (("security.protocol", "SASL_PLAINTEXT"), ("sasl.mechanism", "SCRAM-SHA-512"),
                              ("sasl.jaas.config", jaas))]
        f = self.registry_auth_file
        write_private(f, registry_auth_properties(creds, list(self._roles())) + "\n".join(kafka) + "\n")
        return [f"-Dquarkus.config.locations={f}"]

    def _registry_ready(self) -> bool:
        # the management port's health check needs no credentials in either mode, and it is UP only
        # once the kafkasql storage has caught up
        try:
            health = f"http://{HOST}:{self.ports.registry_mgmt}/health/ready"
            return httpx.get(health, timeout=2).status_code == 200 and _port_open(self.ports.registry)
        except httpx.HTTPError:
            return False

    def _registry_answers_anonymous(self) -> bool:
        try:
            return httpx.get(self.registry_url + "/subjects", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def stop_registry(self, kill: bool = False) -> None:
        self._stop(self.registry, kill)

    # -- shared
    def _spawn(self, comp: Component, cmd: list[str], cwd: Path | None = None) -> subprocess.Popen[bytes]:
        comp.logfile.parent.mkdir(parents=True, exist_ok=True)
        comp.pidfile.parent.mkdir(parents=True, exist_ok=True)
        if comp.logfile.exists() and comp.logfile.stat().st_size > LOG_ROTATE_BYTES:  # one old log is kept
            comp.logfile.replace(comp.logfile.with_name(comp.logfile.name + ".1"))
        with comp.logfile.open("ab") as log:
            p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 cwd=cwd, start_new_session=True)
        comp.pidfile.write_text(str(p.pid))
        self.progress(f"starting {comp.name} (pid {p.pid}, log {comp.logfile})")
        return p

    def _wait(self, comp: Component, proc: subprocess.Popen[bytes] | None, timeout: float,
              ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            gone = proc.poll() is not None if proc is not None else comp.pid() is None
            if gone:
                comp.pidfile.unlink(missing_ok=True)
                raise StackError(f"{comp.name} exited during start; see {comp.logfile}:\n{_tail(comp.logfile)}")
            if ready():
                return
            time.sleep(0.5)
        self._stop(comp, kill=True)
        raise StackError(f"{comp.name} did not answer on port {comp.port} within {timeout:.0f}s; see "
                         f"{comp.logfile}:\n{_tail(comp.logfile)}")

    def _stop(self, comp: Component, kill: bool = False, timeout: float = 30) -> None:
        pid = comp.pid()
        if pid is None:
            comp.pidfile.unlink(missing_ok=True)
            return
        sig = signal.SIGKILL if kill else signal.SIGTERM
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while comp.pid() is not None and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.2)
        if comp.pid() is not None:
            os.killpg(pid, signal.SIGKILL)
            while comp.pid() is not None:
                _reap(pid)
                time.sleep(0.1)
        comp.pidfile.unlink(missing_ok=True)
        self.progress(f"stopped {comp.name} (pid {pid})")

    # -- public
    def up(self, registry: bool = True) -> None:
        fetch(self.progress)
        marker = home() / "data" / "SECURE"
        if (home() / "data" / "kafka" / "meta.properties").exists() and marker.exists() != self.secure:
            raise StackError(f"the stack in {home()} was created {'with' if marker.exists() else 'without'} "
                             "--secure; `privaflow stack reset` first to switch")
        if self.secure:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        self.start_kafka()
        if self.secure:
            from privaflow_stack.security import apply_acls

            n = apply_acls(self.bootstrap, self.credentials()["admin"], self._roles())
            self.progress(f"secure mode: SCRAM users {', '.join(sorted(self._roles()))}; {n} ACLs; "
                          f"passwords in {self.credentials_file}")
        if registry:
            self.start_registry()
        from privaflow.schemas.topics import ensure_topics

        created = ensure_topics(self.bootstrap, extra=self.client_config())
        if created:
            self.progress(f"created topics: {', '.join(created)}")

    def down(self) -> None:
        self.stop_registry()
        self.stop_kafka()

    def status(self) -> dict[str, dict[str, object]]:
        return {
            "kafka": {"pid": self.kafka.pid(), "listening": self.bootstrap, "log": str(self.kafka.logfile),
                      "ready": self.kafka.pid() is not None and self._kafka_ready()},
            "registry": {"pid": self.registry.pid(), "listening": self.registry_url,
                         "log": str(self.registry.logfile),
                         "ready": self.registry.pid() is not None and self._registry_ready()},
        }

    def reset(self) -> None:
        """Stop everything and delete the broker's data (schemas too: they live in Kafka)."""
        self.down()
        shutil.rmtree(home() / "data", ignore_errors=True)


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (0600), also when it existed before with looser rights; it
    never exists with other rights, not even for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _argfile_quote(arg: str) -> str:
    """One argument of a java @argfile, quoted (the launcher reads \\ and \\" escapes inside quotes)."""
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _example_site() -> SiteConfig:
    """The site whose partners get users on the local stack: the example site config."""
    from privaflow.schemas.site import load_site_config

    return load_site_config(REPO / "examples" / "site.yaml")


def _reap(pid: int) -> None:
    # our own children become zombies until waited for; a zombie still has a /proc entry
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
