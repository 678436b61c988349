"""`privaflow stack up --secure`: real clients with real credentials against SCRAM + ACLs
(the same roles as the Kubernetes KafkaUsers), and the registry behind the same rule for writes.
Runs a private broker and registry on their own ports."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient

from privaflow.schemas.codec import AvroSerde, RegistryAuthError, SchemaRegistry, load_schema_json, registry_auth
from privaflow.schemas.topics import (
    DETECTIONS,
    DP_RELEASES,
    dp_topic_name,
    ensure_topics,
    operator_topic_name,
    partner_topic_name,
)
from privaflow.schemas.topics import (
    topic as topic_of,
)
from privaflow_stack.local import LocalStack, Ports
from privaflow_stack.local import home as default_home
from privaflow_stack.security import registry_auth_properties
from tests.conftest import free_ports

pytestmark = pytest.mark.integration


class _Started:
    """Every process the stack starts, with its command line as /proc showed it just after the start
    (the argv it was given, if it had already exited)."""

    command_lines: list[str] = []

    @classmethod
    def popen(cls) -> type[subprocess.Popen]:  # type: ignore[type-arg]
        record = cls.command_lines

        class Recording(subprocess.Popen):  # type: ignore[type-arg]
            def __init__(self, args: Any, *a: Any, **kw: Any) -> None:
                super().__init__(args, *a, **kw)
                # empty while the java launcher re-executes itself (and for a zombie): read until it is not
                deadline = time.monotonic() + 2
                seen = b""
                while not seen and time.monotonic() < deadline:
                    try:
                        seen = Path(f"/proc/{self.pid}/cmdline").read_bytes()
                    except OSError:
                        break
                    if not seen:
                        time.sleep(0.01)
                record.append(seen.replace(b"\0", b" ").decode() if seen else " ".join(map(str, args)))

        return Recording


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory, stack) -> Iterator[LocalStack]:
    h = tmp_path_factory.mktemp("secure-home")
    (h / "stack").symlink_to(default_home() / "stack")
    old = os.environ.get("PRIVAFLOW_HOME")
    os.environ["PRIVAFLOW_HOME"] = str(h)
    s = LocalStack(Ports(*free_ports(4)), secure=True)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(subprocess, "Popen", _Started.popen())
            s.up()
        yield s
    finally:
        s.down()
        if old is None:
            os.environ.pop("PRIVAFLOW_HOME", None)
        else:
            os.environ["PRIVAFLOW_HOME"] = old


def _produce(s: LocalStack, user: str, topic: str, password: str | None = None) -> KafkaError | None:
    cfg = {"bootstrap.servers": s.bootstrap, **s.client_config(user), "message.timeout.ms": 10000}
    if password is not None:
        cfg["sasl.password"] = password
    errors: list[KafkaError] = []
    p = Producer(cfg)
    p.produce(topic, key=b"k", value=b"v", on_delivery=lambda err, _msg: errors.append(err))
    p.flush(20)
    return errors[0] if errors else KafkaError(KafkaError._TIMED_OUT)


def _read_error(s: LocalStack, user: str, topic: str, group: str) -> KafkaError | None:
    """None if the user could consume (or saw no error within the deadline), else the error."""
    c = Consumer({"bootstrap.servers": s.bootstrap, **s.client_config(user), "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error():
                return m.error()
            return None
        return None
    finally:
        c.close()


def test_edge_may_write_detections_but_not_read_them(secure: LocalStack) -> None:
    assert _produce(secure, "edge", DETECTIONS) is None
    err = _read_error(secure, "edge", DETECTIONS, f"edge-{uuid.uuid4().hex[:6]}")
    denied = (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED)
    assert err is not None and err.code() in denied


def test_partner_cannot_read_detections_nor_write_anything(secure: LocalStack) -> None:
    """covers T6, T8: a partner's credentials reach only its own aggregates."""
    err = _read_error(secure, "partner-city", DETECTIONS, "partner-city-x")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    for topic in (DETECTIONS, partner_topic_name("traffic_volume")):
        perr = _produce(secure, "partner-city", topic)
        assert perr is not None and perr.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (topic, perr)


def test_partner_reads_only_its_own_tables(secure: LocalStack) -> None:
    assert _produce(secure, "streams", partner_topic_name("traffic_volume")) is None
    assert _produce(secure, "streams", partner_topic_name("attributes")) is None
    assert _read_error(secure, "partner-city", partner_topic_name("traffic_volume"), "partner-city-a") is None
    # the city partner was not granted the store-entrance attributes table
    err = _read_error(secure, "partner-city", partner_topic_name("attributes"), "partner-city-b")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_operator_tables_reach_the_api_only_and_a_dp_partner_only_its_own(secure: LocalStack) -> None:
    """Issue 12: the unsuppressed operator tables are read by the api role and no partner; a
    differential-privacy partner (lab in examples/site.yaml) reads its own topics, not the shared ones,
    and no other partner reads them."""
    lab_topic = dp_topic_name("lab", "flow_lines")
    ensure_topics(secure.bootstrap, [topic_of(lab_topic)], extra=secure.client_config())
    op = operator_topic_name("traffic_volume")
    for t in (op, lab_topic, partner_topic_name("flow_lines")):
        assert _produce(secure, "streams", t) is None, t
    assert _read_error(secure, "api", op, "privaflow-api-test") is None
    for user, group in (("partner-city", "partner-city-op"), ("partner-lab", "partner-lab-op")):
        err = _read_error(secure, user, op, group)
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, user
    assert _read_error(secure, "partner-lab", lab_topic, "partner-lab-a") is None
    for user, t in (("partner-lab", partner_topic_name("flow_lines")), ("partner-city", lab_topic)):
        err = _read_error(secure, user, t, f"{user}-b")
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (user, t)


def test_the_dp_release_book_is_read_and_written_by_the_stream_workers_only(secure: LocalStack) -> None:
    """Issue 12: the book of DP releases (streams/releases.py) holds every noisy window released; the
    streams role writes and reads it, the API and partners can do neither."""
    ensure_topics(secure.bootstrap, [topic_of(DP_RELEASES)], extra=secure.client_config())
    assert _produce(secure, "streams", DP_RELEASES) is None
    c = Consumer({"bootstrap.servers": secure.bootstrap, **secure.client_config("streams"),
                  "group.id": "privaflow-streams-book", "enable.auto.commit": False})
    try:  # as the worker reads it: assigned, no group; the end offset is what it reads up to
        assert c.get_watermark_offsets(TopicPartition(DP_RELEASES, 0), timeout=15)[1] >= 1
    finally:
        c.close()
    for user, group in (("api", "privaflow-api-book"), ("partner-lab", "partner-lab-book"),
                        ("partner-city", "partner-city-book")):  # groups they may use: the topic is what is refused
        err = _read_error(secure, user, DP_RELEASES, group)
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (user, err)
        perr = _produce(secure, user, DP_RELEASES)
        assert perr is not None and perr.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (user, perr)


def test_streams_reads_detections(secure: LocalStack) -> None:
    assert _produce(secure, "edge", DETECTIONS) is None
    c = Consumer({"bootstrap.servers": secure.bootstrap, **secure.client_config("streams"),
                  "group.id": "privaflow-streams-test", "enable.auto.commit": False})
    try:
        total = sum(c.get_watermark_offsets(TopicPartition(DETECTIONS, p), timeout=15)[1] for p in range(6))
        assert total >= 1
    finally:
        c.close()


def test_wrong_password_is_refused(secure: LocalStack) -> None:
    err = _produce(secure, "edge", DETECTIONS, password="not-the-password")
    assert err is not None
    assert err.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._TIMED_OUT,
                          KafkaError._MSG_TIMED_OUT), err


def test_files_holding_secrets_are_private(secure: LocalStack) -> None:
    """Issue 13 finding 9: conf/server.properties, which holds the admin password, was written 0644."""
    server_properties = default_home() / "conf" / "server.properties"
    assert secure.credentials()["admin"] in server_properties.read_text()
    for f in (secure.credentials_file, secure.registry_auth_file, server_properties):
        assert Path(f).stat().st_mode & 0o777 == 0o600, f
    passwords = set(secure.credentials().values())
    small_files = [f for f in default_home().rglob("*") if f.is_file() and not f.is_symlink()
                   and f.stat().st_size < 1 << 20 and "kafka" not in f.parts[-3:-1]]
    for f in small_files:
        if any(pw in f.read_text(errors="replace") for pw in passwords):
            assert f.stat().st_mode & 0o077 == 0, f"{f} holds a password and others may read it"
    # the registry's file holds only digests of the HTTP users' passwords (and its own Kafka password);
    # its command line, which any local user can read, holds no secret at all
    http_users = {u: pw for u, pw in secure.credentials().items() if u not in ("admin", "registry")}
    assert not any(pw in secure.registry_auth_file.read_text() for pw in http_users.values())
    pid = secure.registry.pid()
    assert pid is not None
    cmdline = Path(f"/proc/{pid}/cmdline").read_text()
    assert not any(pw in cmdline for pw in secure.credentials().values())
    with pytest.raises(KafkaException):
        Consumer({"bootstrap.servers": secure.bootstrap, "group.id": "x", "security.protocol": "SASL_PLAINTEXT",
                  "sasl.mechanism": "PLAIN"}).list_topics(timeout=5)


# ---------------------------------------------------------------- the registry


def _registry(s: LocalStack, user: str | None, password: str | None = None) -> SchemaRegistry:
    auth = s.registry_auth(user) if user else None
    if auth and password is not None:
        auth = (user, password)
    return SchemaRegistry(s.registry_url, retries=0, auth=auth)


@pytest.fixture
def no_registry_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PRIVAFLOW_REGISTRY_USERNAME", "PRIVAFLOW_REGISTRY_PASSWORD"):
        monkeypatch.delenv(var, raising=False)


def test_registry_refuses_anonymous_callers(secure: LocalStack, unique: str, no_registry_env: None) -> None:
    with pytest.raises(RegistryAuthError, match="needs credentials"):
        _registry(secure, None).register(f"test.secure.{unique}-value", load_schema_json("detection_batch"))
    # reading is refused too, on the plain HTTP API
    assert httpx.get(secure.registry_url + "/subjects", timeout=10).status_code == 401


def test_registry_refuses_a_wrong_password(secure: LocalStack, unique: str) -> None:
    with pytest.raises(RegistryAuthError, match="wrong credentials for user 'edge'"):
        _registry(secure, "edge", password="not-the-password").register(
            f"test.secure.{unique}-value", load_schema_json("detection_batch"))


def test_partner_may_not_register_schemas(secure: LocalStack, unique: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The partner's credentials come from the environment, as a deployed client's would."""
    user, password = secure.registry_auth("partner-city") or ("", "")
    monkeypatch.setenv("PRIVAFLOW_REGISTRY_USERNAME", user)
    monkeypatch.setenv("PRIVAFLOW_REGISTRY_PASSWORD", password)
    reg = SchemaRegistry(secure.registry_url, retries=0)
    with pytest.raises(RegistryAuthError, match="user 'partner-city' may not register schemas"):
        reg.register(f"test.secure.{unique}-value", load_schema_json("detection_batch"))
    assert f"test.secure.{unique}-value" not in reg.subjects()


def test_edge_registers_and_partner_reads_back(secure: LocalStack, unique: str, sample_record) -> None:
    subject = f"test.secure.{unique}-value"
    edge = AvroSerde(_registry(secure, "edge"), "detection_batch", subject)
    payload = edge.encode(sample_record(2))
    assert _registry(secure, "edge").register(subject, load_schema_json("detection_batch")) == edge.schema_id

    # a partner reads the schema by id: with our codec, and with confluent-kafka's own client
    partner = AvroSerde(_registry(secure, "partner-city"), "detection_batch", subject)
    assert partner.decode(payload)["track_id"] == [0, 1]
    user, password = secure.registry_auth("partner-city") or ("", "")
    confluent = SchemaRegistryClient({"url": secure.registry_url, "basic.auth.user.info": f"{user}:{password}",
                                      "timeout": 10})
    assert "DetectionBatch" in confluent.get_schema(edge.schema_id).schema_str


def test_streams_registers_schemas(secure: LocalStack, unique: str) -> None:
    reg = _registry(secure, "streams")
    subject = f"test.secure.streams.{unique}-value"
    schema_id = reg.register(subject, load_schema_json("partner_traffic_volume"))
    assert reg.register(subject, load_schema_json("partner_traffic_volume")) == schema_id


def test_registry_roles_follow_the_kafka_rule_for_writes() -> None:
    creds = {"admin": "a", "registry": "r", "edge": "e", "streams": "s", "partner-city": "p"}
    props = dict(line.split("=", 1) for line in registry_auth_properties(creds, list(creds)).splitlines()
                 if not line.startswith("#"))
    roles = {k.rsplit(".", 1)[1]: v for k, v in props.items() if ".roles." in k}
    assert roles == {"edge": "sr-developer", "streams": "sr-admin", "partner-city": "sr-readonly"}
    assert props["quarkus.security.users.embedded.users.edge"] == hashlib.sha512(b"edge:Quarkus:e").hexdigest()
    assert registry_auth({}) is None
    assert registry_auth({"PRIVAFLOW_REGISTRY_USERNAME": "edge", "PRIVAFLOW_REGISTRY_PASSWORD": "e"}) == ("edge", "e")


# ---------------------------------------------------------------- issue 13 finding 9: no secret in sight


def test_no_password_is_on_the_command_line_of_any_process_the_stack_started(secure: LocalStack) -> None:
    """Every SCRAM password used to be on the storage-format command line, which any local user can read
    in /proc/<pid>/cmdline. Every process `up` started is checked: the storage tool, the broker, the
    registry, and the java version probes."""
    started = list(_Started.command_lines)
    running = [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
               for pid in (secure.kafka.pid(), secure.registry.pid()) if pid is not None]
    assert len(running) == 2
    for password in secure.credentials().values():
        for command_line in started + running:
            assert password not in command_line, command_line[:300]
    assert any("storage-format.args" in c for c in started), started  # the storage tool ran, and was seen
    assert any("kafka.Kafka" in c for c in started) and any("quarkus-run.jar" in c for c in started)
    assert not (default_home() / "conf" / "storage-format.args").exists(), "the argument file is removed after use"


def _acl_command(secure: LocalStack, tmp_path: Path, client: dict[str, str], *args: str
                 ) -> subprocess.CompletedProcess[str]:
    """Kafka's own kafka-acls tool, talking to the controller listener directly."""
    from privaflow_stack.local import find_java, stack_dir

    props = tmp_path / "client.properties"
    props.write_text("".join(f"{k}={v}\n" for k, v in {"request.timeout.ms": "5000",
                                                        "default.api.timeout.ms": "10000", **client}.items()))
    props.chmod(0o600)
    cmd = [find_java(17), "-cp", f"{stack_dir() / 'kafka' / 'libs'}/*",
           "-Dlog4j2.configurationFile=" + str(Path(__file__).resolve().parents[2] / "stack/conf/log4j2.properties"),
           "org.apache.kafka.tools.AclCommand", "--bootstrap-controller", f"127.0.0.1:{secure.ports.controller}",
           "--command-config", str(props), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_an_anonymous_client_cannot_act_as_a_super_user(secure: LocalStack, tmp_path: Path) -> None:
    """`super.users` held User:ANONYMOUS beside a plaintext controller listener: any local process could
    connect there and grant itself everything. Kafka's own ACL tool tries exactly that, anonymously,
    then as admin (who may) to show the listener works and that nothing was granted."""
    grab = ("--add", "--allow-principal", "User:mallory", "--operation", "All", "--topic", "*")
    anonymous = _acl_command(secure, tmp_path, {}, *grab)
    assert "Error while executing ACL command" in anonymous.stdout + anonymous.stderr, anonymous.stdout[-2000:]

    admin_password = secure.credentials()["admin"]
    jaas = ('org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" '
            f'password="{admin_password}";')
    admin = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN", "sasl.jaas.config": jaas,
             "default.api.timeout.ms": "30000"}
    every = _acl_command(secure, tmp_path, admin, "--list")
    assert every.returncode == 0 and "User:edge" in every.stdout, every.stderr[-2000:]
    assert "mallory" not in every.stdout

    wrong = dict(admin, **{"sasl.jaas.config": jaas.replace(admin_password, "guessed-password")})
    guessed = _acl_command(secure, tmp_path, wrong, *grab)
    assert "Error while executing ACL command" in guessed.stdout + guessed.stderr
    assert "mallory" not in _acl_command(secure, tmp_path, admin, "--list").stdout
