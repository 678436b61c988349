"""The registries' auth settings from the rendered manifests, run by the real Apicurio Registry (issue 13
finding 10): the Quarkus properties of each registry's ConfigMap and, for every REGISTRY_PASSWORD_*
variable its Deployment takes from a KafkaUser Secret, a password standing in for that Secret. The
offline tests check the manifests say the right thing; this one checks Apicurio reads it that way.
Apicurio runs with its in-memory storage here: storage is not what is tested."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from privaflow.schemas.codec import RegistryAuthError, SchemaRegistry, load_schema_json
from privaflow_stack.local import REGISTRY_MIN_JAVA, find_java, stack_dir
from tests.conftest import free_ports
from tests.k8s.kube_policy import registry_auth_config
from tests.k8s.kube_render import Resource

pytestmark = pytest.mark.integration


class LiveRegistry:
    def __init__(self, url: str, passwords: dict[str, str]) -> None:
        self.url, self.passwords = url, passwords

    def client(self, user: str | None, password: str | None = None) -> SchemaRegistry:
        auth = None if user is None else (user, password if password is not None else self.passwords[user])
        return SchemaRegistry(self.url, retries=0, auth=auth)


def _run(resources: list[Resource], deployment: str, tmp_path: Path) -> Iterator[LiveRegistry]:
    found = registry_auth_config(resources, deployment)
    assert found is not None, f"{deployment} loads no auth config"
    props, env = found
    (tmp_path / "auth.properties").write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    passwords, secrets = {}, {}
    for name, e in env.items():
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if name.startswith("REGISTRY_PASSWORD_") and ref:
            passwords[ref["name"]] = secrets[name] = f"pw-{ref['name']}-{os.urandom(6).hex()}"
    http, mgmt = free_ports(2)
    log = (tmp_path / "registry.log").open("wb")
    proc = subprocess.Popen(
        [find_java(REGISTRY_MIN_JAVA), "-Xmx384m", "-XX:+UseSerialGC", "-Dquarkus.http.host=127.0.0.1",
         f"-Dquarkus.http.port={http}", "-Dquarkus.management.host=127.0.0.1", f"-Dquarkus.management.port={mgmt}",
         "-Dquarkus.log.console.json=false", "-jar", str(stack_dir() / "registry" / "quarkus-run.jar")],
        cwd=stack_dir() / "registry", stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, **secrets, "QUARKUS_CONFIG_LOCATIONS": str(tmp_path / "auth.properties")})
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "registry.log").read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{mgmt}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the registry did not start"
            time.sleep(0.5)
        yield LiveRegistry(f"http://127.0.0.1:{http}/apis/ccompat/v7", passwords)
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


@pytest.fixture
def internal(rendered: dict[str, list[Resource]], tmp_path: Path, stack: Any) -> Iterator[LiveRegistry]:
    yield from _run(rendered["prod"], "privaflow-registry", tmp_path)


@pytest.fixture
def public(rendered: dict[str, list[Resource]], tmp_path: Path, stack: Any) -> Iterator[LiveRegistry]:
    yield from _run(rendered["prod"], "privaflow-registry-public", tmp_path)


SCHEMA = load_schema_json("partner_occupancy")


def test_read_write_registry_lets_edge_and_streams_register_and_api_only_read(internal: LiveRegistry) -> None:
    edge_id = internal.client("privaflow-edge").register("privaflow.detections.v2-value", SCHEMA)
    assert internal.client("privaflow-streams").register("privaflow.partner.occupancy.v1-value", SCHEMA) == edge_id
    api = internal.client("privaflow-api")
    assert "privaflow.partner.occupancy.v1-value" in api.subjects() and api.schema_by_id(edge_id)
    with pytest.raises(RegistryAuthError, match="user 'privaflow-api' may not register schemas"):
        api.register("x-value", SCHEMA)
    with pytest.raises(RegistryAuthError, match="needs credentials"):
        internal.client(None).register("y-value", SCHEMA)
    assert httpx.get(internal.url + "/subjects", timeout=10).status_code == 401, "anonymous reads are refused too"
    with pytest.raises(RegistryAuthError, match="wrong credentials"):
        internal.client("privaflow-edge", "guessed").subjects()
    with pytest.raises(RegistryAuthError):  # partners have no account on the read-write registry
        internal.client("partner-city", "anything").subjects()


def test_public_registry_lets_partners_read_and_nothing_else(public: LiveRegistry) -> None:
    assert set(public.passwords) == {"partner-city", "partner-retailer", "partner-lab"}
    city = public.client("partner-city")
    assert city.subjects() == []
    with pytest.raises(RegistryAuthError, match="user 'partner-city' may not register schemas"):
        city.register("x-value", SCHEMA)
    assert httpx.get(public.url + "/subjects", timeout=10).status_code == 401
    with pytest.raises(RegistryAuthError):
        public.client("privaflow-edge", "anything").subjects()
