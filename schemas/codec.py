"""Avro schemas, the schema registry and the Confluent wire format.

The only code edge/ and streams/ share. Records are framed as Confluent does it (magic byte 0,
4-byte big-endian schema id, schemaless Avro body) so any Confluent client can read them;
fastavro does the Avro, httpx talks to any Confluent-compatible registry (Apicurio's ccompat API).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import struct
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
import httpx

log = logging.getLogger(__name__)

SCHEMA_DIR = Path(__file__).parent / "avro"
DEFAULT_REGISTRY_URL = "http://127.0.0.1:8081/apis/ccompat/v7"
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
MAGIC = 0
CONFLICT_RETRIES = 5  # a 409 from a concurrent creation settles after one retry; a few more for bad luck
_HEADER = struct.Struct(">BI")


def registry_url() -> str:
    """PRIVAFLOW_REGISTRY_URL, else the local stack's registry on PRIVAFLOW_REGISTRY_PORT (default 8081)."""
    if os.environ.get("PRIVAFLOW_REGISTRY_URL"):
        return os.environ["PRIVAFLOW_REGISTRY_URL"]
    port = os.environ.get("PRIVAFLOW_REGISTRY_PORT")
    return f"http://127.0.0.1:{port}/apis/ccompat/v7" if port else DEFAULT_REGISTRY_URL


def bootstrap_servers() -> str:
    """PRIVAFLOW_BOOTSTRAP, else the local stack's broker on PRIVAFLOW_KAFKA_PORT (default 9092)."""
    if os.environ.get("PRIVAFLOW_BOOTSTRAP"):
        return os.environ["PRIVAFLOW_BOOTSTRAP"]
    port = os.environ.get("PRIVAFLOW_KAFKA_PORT")
    return f"127.0.0.1:{port}" if port else DEFAULT_BOOTSTRAP


KAFKA_ENV = {"PRIVAFLOW_KAFKA_SECURITY_PROTOCOL": "security.protocol",
             "PRIVAFLOW_KAFKA_SASL_MECHANISM": "sasl.mechanism",
             "PRIVAFLOW_KAFKA_SASL_USERNAME": "sasl.username",
             "PRIVAFLOW_KAFKA_SASL_PASSWORD": "sasl.password",
             "PRIVAFLOW_KAFKA_SSL_CAFILE": "ssl.ca.location"}


def kafka_client_config(environ: dict[str, str] | None = None) -> dict[str, str]:
    """librdkafka security settings from PRIVAFLOW_KAFKA_* (set by the Kubernetes manifests; for the
    secure local stack, `LocalStack.client_config(user)` gives the same settings); empty for a plain
    local stack."""
    env = os.environ if environ is None else environ
    return {key: env[var] for var, key in KAFKA_ENV.items() if env.get(var)}


def registry_auth(environ: dict[str, str] | None = None) -> tuple[str, str] | None:
    """HTTP Basic credentials for the schema registry from PRIVAFLOW_REGISTRY_USERNAME and
    PRIVAFLOW_REGISTRY_PASSWORD (the secure local stack's users are the Kafka ones); None when unset."""
    env = os.environ if environ is None else environ
    user = env.get("PRIVAFLOW_REGISTRY_USERNAME")
    return (user, env.get("PRIVAFLOW_REGISTRY_PASSWORD", "")) if user else None


class RegistryError(RuntimeError):
    """The registry could not be reached or answered with an error."""


class RegistryAuthError(RegistryError):
    """The registry refused the caller: unknown user, wrong password, or a role that does not allow the call."""


class IncompatibleSchemaError(RegistryError):
    """The registry refused a schema because it breaks the subject's compatibility rule."""


class RegistryConflictError(RegistryError):
    """A 409 that is not about compatibility: another client created the same thing at the same moment
    (Apicurio answers "A rule named 'COMPATIBILITY' already exists" to the second of two processes
    setting a new subject's rule at once)."""


class DecodeError(ValueError):
    """A Kafka record that is not a valid privaflow Avro record; says where it came from."""

    def __init__(self, reason: str, topic: str | None = None, partition: int | None = None,
                 offset: int | None = None) -> None:
        self.reason, self.topic, self.partition, self.offset = reason, topic, partition, offset
        where = f"topic {topic} partition {partition} offset {offset}" if topic is not None else "record"
        super().__init__(f"cannot decode {where}: {reason}")


# ---------------------------------------------------------------- schema files

def schema_names() -> list[str]:
    """Stems of every .avsc file, e.g. `detection_batch`, `partner_occupancy`."""
    return sorted(p.stem for p in SCHEMA_DIR.glob("*.avsc"))


@cache
def load_schema_json(name: str) -> str:
    """The schema file's text, as registered (custom attributes such as `privacy` kept)."""
    path = SCHEMA_DIR / f"{name}.avsc"
    if not path.exists():
        raise KeyError(f"no schema {name!r} in {SCHEMA_DIR}")
    return path.read_text(encoding="utf-8")


def load_schema(name: str) -> dict[str, Any]:
    """The schema file as a JSON object."""
    data: dict[str, Any] = json.loads(load_schema_json(name))
    return data


@cache
def parsed_schema(name: str) -> Any:
    return fastavro.parse_schema(load_schema(name))


# ---------------------------------------------------------------- registry

class SchemaRegistry:
    """A thin client for the Confluent schema-registry REST API, with a retry for a registry that is
    briefly down and a cache of schemas by id (ids never change meaning). Sends HTTP Basic auth as
    `auth` (user, password), or else as PRIVAFLOW_REGISTRY_USERNAME/PASSWORD when those are set."""

    def __init__(self, url: str | None = None, timeout: float = 10.0, retries: int = 5,
                 backoff_s: float = 1.0, auth: tuple[str, str] | None = None) -> None:
        self.url = (url or registry_url()).rstrip("/")
        auth = auth if auth is not None else registry_auth()
        self.user = auth[0] if auth else None
        self._http = httpx.Client(timeout=timeout, auth=auth)
        self.retries, self.backoff_s = retries, backoff_s
        self._by_id: dict[int, Any] = {}

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                r = self._http.request(method, self.url + path, json=body,
                                       headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
            except httpx.TransportError as e:
                # a registry that took the request and never answered is not the same as one that is down
                what = "did not answer in time" if isinstance(e, httpx.ReadTimeout) else "unreachable"
                if attempt == self.retries:
                    raise RegistryError(f"schema registry at {self.url} {what} ({type(e).__name__}: {e}) "
                                        f"after {attempt + 1} attempt(s)") from None
                log.warning("schema registry %s %s (%s); retry %d/%d in %.1fs",
                            self.url, what, type(e).__name__, attempt + 1, self.retries, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30)
                continue
            if r.status_code == 409 or (r.status_code == 422 and "ncompatib" in r.text):
                message = _message(r)
                if "ncompatib" not in message:
                    raise RegistryConflictError(message)
                raise IncompatibleSchemaError(message)
            if r.status_code >= 500 and attempt < self.retries:
                log.warning("schema registry %s answered %d; retry in %.1fs", self.url, r.status_code, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30)
                continue
            if r.status_code in (401, 403):
                raise RegistryAuthError(self._refusal(r.status_code, method, path))
            if r.status_code == 404:
                return None
            if r.status_code >= 400:
                raise RegistryError(f"schema registry {method} {path}: HTTP {r.status_code}: {_message(r)}")
            return r.json()
        raise AssertionError("unreachable")

    def _refusal(self, status: int, method: str, path: str) -> str:
        if status == 401 and self.user is None:
            return (f"registry refused: {self.url} needs credentials (set PRIVAFLOW_REGISTRY_USERNAME and "
                    "PRIVAFLOW_REGISTRY_PASSWORD)")
        if status == 401:
            return f"registry refused: wrong credentials for user {self.user!r} at {self.url}"
        who = f"user {self.user!r}" if self.user else "an anonymous caller"
        if method == "POST" and path.startswith("/subjects/") and path.endswith("/versions"):
            return f"registry refused: {who} may not register schemas"
        if method == "PUT" and path.startswith("/config"):
            return f"registry refused: {who} may not change compatibility rules"
        return f"registry refused: {who} may not {method} {path}"

    def register(self, subject: str, schema_json: str, compatibility: str = "BACKWARD") -> int:
        """Register (or find) a schema under a subject with the given compatibility; returns its id.
        Raises IncompatibleSchemaError, naming the subject and the registry's reason, if refused.
        Safe when any number of processes register the same subjects at once on an empty registry."""
        exists = self._call("GET", f"/subjects/{subject}/versions") is not None
        if exists:
            self.set_compatibility(subject, compatibility)
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                out = self._call("POST", f"/subjects/{subject}/versions", {"schema": schema_json})
                break
            except IncompatibleSchemaError as e:
                raise IncompatibleSchemaError(
                    f"schema for subject {subject!r} is not {compatibility}-compatible with the registered "
                    f"version: {e}") from None
            except RegistryConflictError:
                # another client created the subject in the same moment: the next try finds it
                if attempt == CONFLICT_RETRIES:
                    raise
                time.sleep(0.05 * (attempt + 1))
        if not exists:
            self.set_compatibility(subject, compatibility)
        return int(out["id"])

    def set_compatibility(self, subject: str, compatibility: str) -> None:
        """Set a subject's compatibility rule. A 409 because another client created the rule at the
        same moment is success when the rule now says `compatibility`; otherwise the rule exists by
        now and the next PUT updates it."""
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                self._call("PUT", f"/config/{subject}", {"compatibility": compatibility})
                return
            except RegistryConflictError:
                current = self._call("GET", f"/config/{subject}") or {}
                if current.get("compatibilityLevel", current.get("compatibility")) == compatibility:
                    return
                if attempt == CONFLICT_RETRIES:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def is_compatible(self, subject: str, schema_json: str) -> bool | None:
        """True/False against the latest registered version; None when the subject does not exist yet."""
        if self._call("GET", f"/subjects/{subject}/versions") is None:
            return None
        out = self._call("POST", f"/compatibility/subjects/{subject}/versions/latest", {"schema": schema_json})
        return bool(out and out.get("is_compatible"))

    def schema_by_id(self, schema_id: int) -> Any:
        """The parsed writer schema for an id (cached forever: ids are immutable)."""
        if schema_id not in self._by_id:
            out = self._call("GET", f"/schemas/ids/{schema_id}")
            if out is None:
                raise RegistryError(f"schema id {schema_id} not found in {self.url}")
            self._by_id[schema_id] = fastavro.parse_schema(json.loads(out["schema"]))
        return self._by_id[schema_id]

    def subjects(self) -> list[str]:
        return list(self._call("GET", "/subjects") or [])


def _message(r: httpx.Response) -> str:
    try:
        return str(r.json().get("message", r.text))
    except ValueError:
        return r.text


# ---------------------------------------------------------------- wire format

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)


def epoch_ms(value: int | float | dt.datetime) -> int:
    """Epoch milliseconds of a `timestamp-millis` value: an int as produced, or the datetime fastavro
    decodes it to (naive datetimes from fastavro are UTC)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return (value - _EPOCH) // _MS
    return int(value)



def frame(schema_id: int, body: bytes) -> bytes:
    return _HEADER.pack(MAGIC, schema_id) + body


def unframe(payload: bytes) -> tuple[int, bytes]:
    if payload is None or len(payload) < _HEADER.size:
        raise ValueError(f"payload of {0 if payload is None else len(payload)} bytes is shorter than the "
                         "5-byte Confluent header")
    magic, schema_id = _HEADER.unpack_from(payload)
    if magic != MAGIC:
        raise ValueError(f"magic byte {magic} is not 0 (not Confluent Avro framing)")
    return schema_id, payload[_HEADER.size:]


class AvroSerde:
    """Encodes records of one local schema for one subject, and decodes anything written with a
    registered schema into the local (reader) schema."""

    def __init__(self, registry: SchemaRegistry, schema_name: str, subject: str) -> None:
        self.registry, self.schema_name, self.subject = registry, schema_name, subject
        self.schema = parsed_schema(schema_name)
        self._id: int | None = None
        self._same: dict[int, bool] = {}  # writer schema id -> is it our own schema (no resolution needed)

    @property
    def schema_id(self) -> int:
        if self._id is None:
            self._id = self.registry.register(self.subject, load_schema_json(self.schema_name))
        return self._id

    def encode(self, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, self.schema, record)
        return frame(self.schema_id, buf.getvalue())

    def decode(self, payload: bytes, topic: str | None = None, partition: int | None = None,
               offset: int | None = None) -> dict[str, Any]:
        try:
            schema_id, body = unframe(payload)
            writer = self.registry.schema_by_id(schema_id)
            same = self._same.get(schema_id)
            if same is None:
                same = self._same[schema_id] = writer == self.schema
            # a record written with our own schema needs no schema resolution (~10% of the decode)
            out = fastavro.schemaless_reader(io.BytesIO(body), writer, None if same else self.schema)
            if not isinstance(out, dict):
                raise ValueError(f"decoded a {type(out).__name__}, not a record")
        except RegistryError as e:
            raise DecodeError(str(e), topic, partition, offset) from None
        except Exception as e:  # fastavro raises many types on garbage input
            raise DecodeError(f"{type(e).__name__}: {e}", topic, partition, offset) from None
        return out  # type: ignore[return-value]


def serde_for_topic(registry: SchemaRegistry, topic_name: str) -> AvroSerde:
    """The serde for a topic's value, under its TopicNameStrategy subject."""
    from privaflow.schemas.topics import topic

    t = topic(topic_name)
    if t.value_schema is None:
        raise KeyError(f"topic {topic_name} carries no Avro value")
    return AvroSerde(registry, t.value_schema, t.value_subject)


def register_all(registry: SchemaRegistry, progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Register every topic's value schema; returns subject -> id."""
    from privaflow.schemas.topics import all_topics

    ids = {}
    for t in all_topics():
        if t.value_schema:
            ids[t.value_subject] = registry.register(t.value_subject, load_schema_json(t.value_schema))
            if progress:
                progress(f"registered {t.value_subject} (id {ids[t.value_subject]})")
    return ids


def check_all(registry: SchemaRegistry) -> dict[str, bool | None]:
    """subject -> compatible? (None: not registered yet) for every topic's local schema."""
    from privaflow.schemas.topics import all_topics

    return {t.value_subject: registry.is_compatible(t.value_subject, load_schema_json(t.value_schema))
            for t in all_topics() if t.value_schema}
