"""The Kubernetes manifests (k8s/), rendered per overlay and checked without a cluster.

Schemas: built-in kinds by kubernetes-validate (strict), Strimzi and KEDA resources by their CRDs
(strict). Policies: non-root containers with limits, an edge that writes only its spool, partner
ACLs that never reach detections or events (T6, T7, T8), topics and autoscaling that follow
schemas/topics.py. The last tests break the manifests on purpose to show each check can fail.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from privaflow.schemas.site import SiteConfig
from privaflow.schemas.topics import DETECTIONS, DETECTIONS_DLQ, DP_RELEASES, Topic, dp_topic_name, partner_topic_name
from tests.k8s.kube_policy import (
    container_violations,
    edge_violations,
    edge_workloads,
    keda_violations,
    partner_acl_violations,
    partner_users,
    pod_spec,
    registry_auth_config,
    registry_auth_violations,
    topic_acls,
    topic_violations,
    workloads,
)
from tests.k8s.kube_render import INSTALL_SCRIPT, K8S, REPO, Resource, find, one
from tests.k8s.kube_schemas import KUBERNETES_VERSION, custom_groups, validate, validate_builtin, validate_custom

IMAGE = "ghcr.io/privaflow/privaflow:0.1.0"
REGISTRY_IMAGE = "quay.io/apicurio/apicurio-registry:3.3.3"
Overlay = tuple[str, list[Resource]]


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("generate_topics", K8S / "generate_topics.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _container(resource: Resource, name: str) -> dict[str, Any]:
    spec = pod_spec(resource)
    assert spec is not None
    return next(c for c in spec["containers"] if c["name"] == name)


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# ================================================================ files that need no renderer

def test_generated_files_are_current() -> None:
    """k8s/base/topics.yaml and partner-users.yaml are what generate_topics.py writes now."""
    stale = _generator().stale()
    assert stale == [], f"stale: {[str(p.relative_to(REPO)) for p in stale]}; run python k8s/generate_topics.py"


def test_kubernetes_names_of_topics_are_dns_safe() -> None:
    gen = _generator()
    assert gen.resource_name("privaflow.partner.traffic-volume.v1") == "privaflow.partner.traffic-volume.v1"
    assert gen.resource_name("Some_Topic.v1") == "some-topic.v1"
    with pytest.raises(ValueError):
        gen.resource_name("___")


def test_site_config_copy_matches_the_example() -> None:
    """kustomize loads no file outside k8s/base, so the ConfigMap is built from a copy."""
    copy_text = (K8S / "base" / "site.yaml").read_text(encoding="utf-8")
    assert copy_text == (REPO / "examples" / "site.yaml").read_text(encoding="utf-8"), \
        "k8s/base/site.yaml differs from examples/site.yaml: cp examples/site.yaml k8s/base/site.yaml"


def test_dockerfile_is_multi_stage_and_non_root() -> None:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    froms = [i for i, ln in enumerate(lines) if ln.upper().startswith("FROM ")]
    assert len(froms) >= 2, "the Dockerfile must be multi-stage"
    final = lines[froms[-1]:]
    assert final[0].split()[1] == "python:3.11-slim"
    assert any(ln.startswith("COPY --from=") and "/opt/venv" in ln for ln in final), "final stage copies the venv"
    users = [ln.split()[1] for ln in final if ln.upper().startswith("USER ")]
    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"final USER {users[-1]} must be a numeric non-root uid"
    final_text = "\n".join(final)
    for compiler in ("gcc", "g++", "build-essential", "clang", "make "):
        assert compiler not in final_text, f"the final stage installs {compiler.strip()}"
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    for entry in (".git", ".venv", ".privaflow"):
        assert entry in ignored, f".dockerignore should exclude {entry}"


def test_install_script_is_valid_bash() -> None:
    script = REPO / INSTALL_SCRIPT
    assert os.access(script, os.X_OK), f"{INSTALL_SCRIPT} is not executable"
    subprocess.run(["bash", "-n", str(script)], check=True)


# ================================================================ schemas

def test_builtin_kinds_are_valid(overlay: Overlay, crd_dir: Path) -> None:
    name, resources = overlay
    builtin = [r for r in resources if r["apiVersion"].rpartition("/")[0] not in custom_groups(crd_dir)]
    assert len(builtin) > 10
    errors = {f"{r['kind']}/{r['metadata']['name']}": e for r in builtin if (e := validate_builtin(r))}
    assert errors == {}, f"{name}: invalid for Kubernetes {KUBERNETES_VERSION}"


def test_custom_resources_match_their_crds(overlay: Overlay, crd_dir: Path) -> None:
    name, resources = overlay
    custom = [r for r in resources if r["apiVersion"].rpartition("/")[0] in custom_groups(crd_dir)]
    assert {r["kind"] for r in custom} >= {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser",
                                           "ScaledObject", "TriggerAuthentication"}
    errors = {f"{r['kind']}/{r['metadata']['name']}": e for r in custom if (e := validate_custom(r, crd_dir))}
    assert errors == {}, f"{name}: custom resources do not match their CRDs"


def test_no_resource_of_an_unknown_api(overlay: Overlay, crd_dir: Path) -> None:
    """Anything that is neither built in nor served by a CRD we validate against is an error."""
    _, resources = overlay
    errors = {f"{r['kind']}/{r['metadata']['name']}": e for r in resources if (e := validate(r, crd_dir))}
    assert errors == {}


# ================================================================ policies

def test_every_container_is_non_root_with_limits(overlay: Overlay) -> None:
    name, resources = overlay
    assert container_violations(resources) == [], name


def test_edge_writes_only_its_spool(overlay: Overlay) -> None:
    name, resources = overlay
    assert edge_violations(resources) == [], name


def test_partner_users_read_only_their_own_tables(overlay: Overlay, site: SiteConfig) -> None:
    name, resources = overlay
    assert partner_acl_violations(resources, site) == [], name
    assert set(partner_users(resources)) == {p.id for p in site.partners} == {"city", "retailer", "lab"}


def test_topics_match_the_code(overlay: Overlay, topics: list[Topic]) -> None:
    name, resources = overlay
    assert topic_violations(resources, topics) == [], name


def test_keda_scales_streams_up_to_the_detections_partitions(overlay: Overlay, topics: list[Topic]) -> None:
    name, resources = overlay
    assert keda_violations(resources, topics) == [], name


# ================================================================ Kafka

@pytest.mark.parametrize(("overlay_name", "nodes", "replicas"), [("dev", 1, 1), ("prod", 3, 3)])
def test_cluster_size_per_overlay(rendered: dict[str, list[Resource]], overlay_name: str,
                                  nodes: int, replicas: int) -> None:
    resources = rendered[overlay_name]
    pools = find(resources, "KafkaNodePool")
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    controllers = sum(p["spec"]["replicas"] for p in pools if "controller" in p["spec"]["roles"])
    assert brokers == nodes and controllers >= 1, "KRaft: brokers and controllers from node pools"
    config = one(resources, "Kafka", "privaflow")["spec"]["kafka"]["config"]
    for k in ("default.replication.factor", "offsets.topic.replication.factor",
              "transaction.state.log.replication.factor"):
        assert int(config[k]) == replicas, k
    assert int(config["min.insync.replicas"]) == max(1, replicas - 1)
    for t in find(resources, "KafkaTopic"):
        assert t["spec"].get("replicas") == replicas, f"KafkaTopic/{t['metadata']['name']}"
    streams = one(resources, "StatefulSet", "privaflow-streams")
    assert _env(_container(streams, "streams"))["PRIVAFLOW_TOPIC_REPLICATION_FACTOR"] == str(replicas)


def test_prod_volumes_are_bigger_than_dev(rendered: dict[str, list[Resource]]) -> None:
    def sizes(resources: list[Resource]) -> tuple[int, int]:
        pool = find(resources, "KafkaNodePool")[0]["spec"]["storage"]["volumes"][0]["size"]
        state = one(resources, "StatefulSet", "privaflow-streams")["spec"]["volumeClaimTemplates"][0]
        return _gi(pool), _gi(state["spec"]["resources"]["requests"]["storage"])

    dev, prod = sizes(rendered["dev"]), sizes(rendered["prod"])
    assert prod[0] > dev[0] and prod[1] > dev[1]


def _gi(quantity: str) -> int:
    m = re.fullmatch(r"(\d+)(Mi|Gi|Ti)", quantity)
    assert m, quantity
    return int(m[1]) * {"Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}[m[2]] // 1024


def test_kafka_listeners_are_tls_and_scram(overlay: Overlay) -> None:
    _, resources = overlay
    kafka = one(resources, "Kafka", "privaflow")
    assert kafka["apiVersion"] == "kafka.strimzi.io/v1"
    listeners = kafka["spec"]["kafka"]["listeners"]
    assert {(ln["name"], ln["port"]) for ln in listeners} == {("tls", 9093), ("partners", 9094)}
    for ln in listeners:
        assert ln["tls"] is True and ln["authentication"]["type"] == "scram-sha-512", ln["name"]
        assert ln.get("networkPolicyPeers"), f"listener {ln['name']} is open to every pod"
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    assert "zookeeper" not in kafka["spec"]
    for user in find(resources, "KafkaUser"):
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        assert user["spec"]["authorization"]["type"] == "simple"


def _acls(user: Resource) -> set[tuple[str, str, str, frozenset[str]]]:
    return {(a["resource"]["type"], a["resource"].get("name", ""), a["resource"].get("patternType", "literal"),
             frozenset(a["operations"])) for a in user["spec"]["authorization"]["acls"]}


def test_edge_user_only_writes_detections(overlay: Overlay) -> None:
    _, resources = overlay
    assert _acls(one(resources, "KafkaUser", "privaflow-edge")) == {
        ("topic", DETECTIONS, "literal", frozenset({"Write", "Describe"})),
        ("cluster", "", "literal", frozenset({"IdempotentWrite"})),
    }


def test_streams_user(overlay: Overlay) -> None:
    _, resources = overlay
    acls = _acls(one(resources, "KafkaUser", "privaflow-streams"))
    assert ("topic", DETECTIONS, "literal", frozenset({"Read", "Describe"})) in acls
    for kind in ("topic", "group"):
        assert (kind, "privaflow-streams", "prefix", frozenset({"All"})) in acls
    for prefix in ("privaflow.partner.", "privaflow.events.", "privaflow.operator."):
        assert ("topic", prefix, "prefix", frozenset({"Write", "Describe"})) in acls
    assert ("topic", DETECTIONS_DLQ, "literal", frozenset({"Write", "Describe"})) in acls
    assert ("topic", DP_RELEASES, "literal", frozenset({"Read", "Write", "Describe"})) in acls
    written = {a[1] for a in acls if a[0] == "topic" and {"Write", "All"} & a[3]}
    assert DETECTIONS not in written, "streams must not write detections"


def test_only_the_api_reads_the_operators_unsuppressed_tables(overlay: Overlay) -> None:
    """Issue 12: the operator topics carry every window without suppression; the API (operator view,
    behind the operator token) reads them, no partner and no other role does."""
    _, resources = overlay
    readers = {u["metadata"]["name"] for u in find(resources, "KafkaUser") for a in topic_acls(u)
               if a["resource"]["name"].startswith("privaflow.operator") or a["resource"]["name"] in ("*", "privaflow.")
               if {"Read", "All"} & set(a["operations"])}
    assert readers == {"privaflow-api"}


def test_only_the_streams_workers_read_the_dp_release_book(overlay: Overlay) -> None:
    """Issue 12: the book of DP releases (streams/releases.py) is the workers' own: no partner, not the
    API, reads it (by name, by a prefix of it or by a wildcard)."""
    _, resources = overlay
    readers = {u["metadata"]["name"] for u in find(resources, "KafkaUser") for a in topic_acls(u)
               if (a["resource"]["name"] == DP_RELEASES or a["resource"]["name"] == "*"
                   or a["resource"].get("patternType") == "prefix" and DP_RELEASES.startswith(a["resource"]["name"]))
               if {"Read", "All"} & set(a["operations"])}
    assert readers == {"privaflow-streams"}
    topics = {t["spec"]["topicName"]: t for t in find(resources, "KafkaTopic")}
    assert topics[DP_RELEASES]["spec"]["config"]["cleanup.policy"] == "compact,delete"


def test_a_dp_partner_reads_its_own_topics_only(overlay: Overlay, site: SiteConfig) -> None:
    """Issue 12: a differential-privacy partner has topics of its own (no averaging of noise across
    partners), and never reads the shared k-anonymous ones."""
    _, resources = overlay
    dp = [p for p in site.partners if p.dp]
    assert dp, "the example site has a differential-privacy partner"
    users = {u["metadata"]["labels"].get("privaflow.io/partner"): u for u in find(resources, "KafkaUser")}
    for p in dp:
        names = {a["resource"]["name"] for a in topic_acls(users[p.id])}
        assert names == {dp_topic_name(p.id, t) for t in p.tables}
    topic_names = {t["spec"]["topicName"] for t in find(resources, "KafkaTopic")}
    assert {dp_topic_name(p.id, t) for p in dp for t in p.tables} <= topic_names


def test_only_the_edge_writes_detections(overlay: Overlay) -> None:
    _, resources = overlay
    writers = {u["metadata"]["name"] for u in find(resources, "KafkaUser") for a in topic_acls(u)
               if a["resource"]["name"] == DETECTIONS and {"Write", "All"} & set(a["operations"])}
    assert writers == {"privaflow-edge"}


# ================================================================ workloads

def test_privaflow_containers_use_the_release_image(overlay: Overlay) -> None:
    _, resources = overlay
    images = {c["image"] for _, spec in workloads(resources) for c in spec["containers"]}
    assert images == {IMAGE, REGISTRY_IMAGE}


def test_streams_statefulset(overlay: Overlay) -> None:
    _, resources = overlay
    sts = one(resources, "StatefulSet", "privaflow-streams")
    c = _container(sts, "streams")
    assert c["command"] == ["privaflow", "streams", "worker", "--config", "/etc/privaflow/site.yaml"]
    assert "replicas" not in sts["spec"], "KEDA owns the replica count"
    assert _env(c)["PRIVAFLOW_GROUP_INSTANCE_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    claims = {t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert "state" in claims and mounts["state"] == "/var/lib/privaflow"
    assert _env(c)["PRIVAFLOW_STATE_DIR"].startswith(mounts["state"])
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # the worker binds its web port to 127.0.0.1 unless told: the kubelet's probes need it opened
    assert _env(c)["PRIVAFLOW_WEB_HOST"] == "0.0.0.0"
    # DP noise is OpenDP's, kept in the release book's topic: no noise secret to hand the worker
    assert not any("SECRET" in name for name in _env(c)), _env(c)
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 6066}
    headless = one(resources, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"


def test_road_worker_deployment(overlay: Overlay) -> None:
    """Issue 16: the road worker runs as one process per site (never two: both would publish every
    window), as the streams user, inside the streams network policy."""
    _, resources = overlay
    road = one(resources, "Deployment", "privaflow-road")
    c = _container(road, "road")
    assert c["command"] == ["privaflow", "streams", "road", "--config", "/etc/privaflow/site.yaml"]
    assert road["spec"]["replicas"] in (0, 1) and road["spec"]["strategy"]["type"] == "Recreate"
    assert _env(c)["PRIVAFLOW_KAFKA_SASL_USERNAME"] == "privaflow-streams"
    labels = road["spec"]["template"]["metadata"]["labels"]
    policy = one(resources, "NetworkPolicy", "streams")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["spec"]["ingress"] == []
    sts = one(resources, "StatefulSet", "privaflow-streams")
    assert sts["spec"]["selector"]["matchLabels"].items() > labels.items() or \
        not sts["spec"]["selector"]["matchLabels"].items() <= labels.items(), "the StatefulSet would select it"


def test_edge_deployment(overlay: Overlay, site: SiteConfig) -> None:
    _, resources = overlay
    [(dep, spec)] = edge_workloads(resources)
    assert spec["nodeSelector"] == {"privaflow.io/edge": "true"}
    assert any(t["key"] == "privaflow.io/edge" for t in spec["tolerations"])
    c = spec["containers"][0]
    assert c["command"][:7] == ["privaflow", "edge", "run", "--config", "/etc/privaflow/site.yaml",
                                "--camera", "$(CAMERA_ID)"]
    flags = dict(zip(c["command"][7::2], c["command"][8::2], strict=True))
    assert flags["--spool-dir"].startswith("/var/spool/privaflow/")
    assert _env(c)["CAMERA_ID"] in {cam.id for cam in site.cameras}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert {p["containerPort"] for p in c["ports"]} == {int(flags["--metrics-port"])}
    assert flags["--metrics-host"] == "0.0.0.0"  # 127.0.0.1 by default: the kubelet's probe needs it opened


def test_api_and_ingresses(overlay: Overlay) -> None:
    _, resources = overlay
    api = one(resources, "Deployment", "privaflow-api")
    c = _container(api, "api")
    assert c["command"] == ["privaflow", "api", "serve", "--config", "/etc/privaflow/site.yaml"]
    assert _env(c)["PRIVAFLOW_API_HOST"] == "0.0.0.0" and _env(c)["PRIVAFLOW_API_PORT"] == "8000"
    assert {p["containerPort"] for p in c["ports"]} == {8000}
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert one(resources, "Service", "privaflow-api")["spec"]["ports"][0]["port"] == 8000

    def routes(ingress: Resource) -> set[tuple[str, str, str]]:
        return {(p["path"], p["pathType"], p["backend"]["service"]["name"])
                for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}

    partners = one(resources, "Ingress", "privaflow-partners")
    # no operator route (/api/v1/operator/*, /dashboard/: the operator's view) and no read-write registry
    assert routes(partners) == {("/api/v1/tables", "Prefix", "privaflow-api"),
                                ("/api/v1/openapi.json", "Exact", "privaflow-api"),
                                ("/healthz", "Exact", "privaflow-api"),
                                ("/apis/ccompat/v7/schemas", "Prefix", "privaflow-registry-public"),
                                ("/apis/ccompat/v7/subjects", "Prefix", "privaflow-registry-public")}
    operator = one(resources, "Ingress", "privaflow-operator")
    # the API itself wants the operator's token there (issue 12): no basic auth taking its Authorization header
    assert not any("auth" in a for a in operator["metadata"].get("annotations", {}))
    hosts = {r["host"] for r in partners["spec"]["rules"]} | {r["host"] for r in operator["spec"]["rules"]}
    assert len(hosts) == 2, "operator routes need a host of their own"
    for ingress in (partners, operator):
        assert ingress["spec"]["tls"], f"{ingress['metadata']['name']}: TLS only (T8)"


def test_registry(overlay: Overlay) -> None:
    _, resources = overlay
    for name in ("privaflow-registry", "privaflow-registry-public"):
        env = _env(_container(one(resources, "Deployment", name), "registry"))
        assert env["APICURIO_STORAGE_KIND"] == "kafkasql"
        assert env["APICURIO_KAFKASQL_BOOTSTRAP_SERVERS"] == "privaflow-kafka-bootstrap:9093"
        assert env["APICURIO_KAFKA_COMMON_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["APICURIO_KAFKA_COMMON_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert env["APICURIO_KAFKA_COMMON_SASL_JAAS_CONFIG"] == {
            "secretKeyRef": {"name": "privaflow-registry", "key": "sasl.jaas.config"}}
        # OAuth-only in Apicurio 3: setting it would replace the SCRAM login with OAUTHBEARER
        assert "APICURIO_KAFKASQL_SECURITY_SASL_ENABLED" not in env
    public = _env(_container(one(resources, "Deployment", "privaflow-registry-public"), "registry"))
    assert public["APICURIO_STORAGE_READ_ONLY_ENABLED"] == "true"
    assert public["APICURIO_CONFIG_DYNAMIC_ALLOW_ALL"] == "false"
    internal = _env(_container(one(resources, "Deployment", "privaflow-registry"), "registry"))
    assert "APICURIO_STORAGE_READ_ONLY_ENABLED" not in internal
    topics = {t["spec"]["topicName"] for t in find(resources, "KafkaTopic")}
    assert {"kafkasql-journal", "kafkasql-snapshots", "registry-events"} <= topics


def test_registries_want_the_users_and_roles_of_the_local_secure_stack(overlay: Overlay, site: SiteConfig) -> None:
    """Issue 13 finding 10: the read-write registry took unauthenticated writes. Now, as in `privaflow
    stack up --secure`: edge and streams may register, the API and partners only read, anonymous
    callers nothing; every password is the user's KafkaUser password."""
    name, resources = overlay
    assert registry_auth_violations(resources, site) == [], name
    internal = registry_auth_config(resources, "privaflow-registry")
    public = registry_auth_config(resources, "privaflow-registry-public")
    assert internal is not None and public is not None

    def roles(props: dict[str, str]) -> dict[str, str]:
        return {k.rsplit(".", 1)[1]: v for k, v in props.items() if ".embedded.roles." in k}
    assert roles(internal[0]) == {"privaflow-edge": "sr-developer", "privaflow-streams": "sr-admin",
                                  "privaflow-api": "sr-readonly"}
    assert roles(public[0]) == {"partner-city": "sr-readonly", "partner-retailer": "sr-readonly",
                              "partner-lab": "sr-readonly"}
    from privaflow.schemas.access import registry_role
    assert [registry_role(u) for u in ("edge", "streams", "partner-city")] == ["sr-developer", "sr-admin",
                                                                              "sr-readonly"], "the local stack's"


def test_site_config_map_is_mounted_everywhere(overlay: Overlay) -> None:
    _, resources = overlay
    [cm] = [r for r in find(resources, "ConfigMap") if r["metadata"]["name"].startswith("privaflow-site")]
    assert cm["data"]["site.yaml"] == (K8S / "base" / "site.yaml").read_text(encoding="utf-8")
    for r, spec in workloads(resources):
        if any(c["image"] == IMAGE for c in spec["containers"]):
            names = {v["configMap"]["name"] for v in spec["volumes"] if "configMap" in v}
            assert cm["metadata"]["name"] in names, f"{r['kind']}/{r['metadata']['name']}"


# ================================================================ network policies

def _policies(resources: list[Resource]) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p["spec"] for p in find(resources, "NetworkPolicy")}


def test_default_deny(overlay: Overlay) -> None:
    _, resources = overlay
    deny = _policies(resources)["default-deny-all"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert not deny.get("ingress") and not deny.get("egress")


def test_edge_egress_is_kafka_registry_and_dns_only(overlay: Overlay) -> None:
    _, resources = overlay
    edge_pod = {"app.kubernetes.io/name": "privaflow-edge"}
    allowed: set[tuple[str, int]] = set()
    for spec in _policies(resources).values():
        selector = spec["podSelector"].get("matchLabels", {})
        if not all(edge_pod.get(k) == v for k, v in selector.items()) or "Egress" not in spec["policyTypes"]:
            continue
        for rule in spec.get("egress", []):
            for peer in rule.get("to", [{}]):
                labels = {**peer.get("podSelector", {}).get("matchLabels", {}),
                          **peer.get("namespaceSelector", {}).get("matchLabels", {})}
                target = ("kafka" if labels.get("strimzi.io/broker-role") == "true"
                          else "dns" if labels.get("k8s-app") == "kube-dns"
                          else labels.get("app.kubernetes.io/name", "ANYWHERE"))
                for port in rule.get("ports", [{"port": "ANY"}]):
                    allowed.add((target, port["port"]))
    assert allowed == {("kafka", 9093), ("privaflow-registry", 8080), ("dns", 53)}


def test_only_the_ingress_controller_reaches_the_public_services(overlay: Overlay) -> None:
    _, resources = overlay
    policies = _policies(resources)
    for name in ("api", "registry-public"):
        [rule] = policies[name]["ingress"]
        assert rule["from"] == [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "ingress-nginx"}}}]
    registry_sources = [p["podSelector"]["matchLabels"] for p in policies["registry"]["ingress"][0]["from"]]
    assert sorted(registry_sources, key=str) == [{"app.kubernetes.io/component": "streams"},
                                                 {"app.kubernetes.io/name": "privaflow-api"},
                                                 {"app.kubernetes.io/name": "privaflow-edge"}]


# ================================================================ the checks can fail

def _first(resources: list[Resource], kind: str, name: str | None = None) -> Resource:
    return find(resources, kind, name)[0]


def _misspell_listeners(rs: list[Resource]) -> None:
    kafka = _first(rs, "Kafka")["spec"]["kafka"]
    kafka["listenerz"] = kafka.pop("listeners")


def _old_api_version(rs: list[Resource]) -> None:
    _first(rs, "Kafka")["apiVersion"] = "kafka.strimzi.io/v1beta2"


def _misspell_keda(rs: list[Resource]) -> None:
    _first(rs, "ScaledObject")["spec"]["maxReplicas"] = 6


def _misspell_acl_operations(rs: list[Resource]) -> None:
    acl = _first(rs, "KafkaUser", "privaflow-edge")["spec"]["authorization"]["acls"][0]
    acl["operation"] = acl.pop("operations")


def _misspell_deployment(rs: list[Resource]) -> None:
    _container(_first(rs, "Deployment", "privaflow-api"), "api")["resource"] = {}


def _schema_errors(rs: list[Resource], crd_dir: Path) -> list[str]:
    return [e for r in rs for e in validate(r, crd_dir)]


def _drop_detections_topic(rs: list[Resource]) -> None:
    rs.remove(next(r for r in find(rs, "KafkaTopic") if r["spec"]["topicName"] == DETECTIONS))


def _wrong_partitions(rs: list[Resource]) -> None:
    next(r for r in find(rs, "KafkaTopic") if r["spec"]["topicName"] == DETECTIONS)["spec"]["partitions"] = 3


def _no_limits(rs: list[Resource]) -> None:
    del _container(_first(rs, "StatefulSet"), "streams")["resources"]["limits"]


def _root_container(rs: list[Resource]) -> None:
    dep = _first(rs, "Deployment", "privaflow-api")
    dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] = False
    _container(dep, "api")["securityContext"]["runAsNonRoot"] = False


def _partner_reads_detections(rs: list[Resource]) -> None:
    _first(rs, "KafkaUser", "partner-city")["spec"]["authorization"]["acls"].append(
        {"resource": {"type": "topic", "name": DETECTIONS, "patternType": "literal"}, "operations": ["Read"]})


def _partner_prefix_acl(rs: list[Resource]) -> None:
    _first(rs, "KafkaUser", "partner-retailer")["spec"]["authorization"]["acls"].append(
        {"resource": {"type": "topic", "name": "privaflow.", "patternType": "prefix"}, "operations": ["Read"]})


def _partner_reads_other_table(rs: list[Resource]) -> None:
    _first(rs, "KafkaUser", "partner-retailer")["spec"]["authorization"]["acls"].append(
        {"resource": {"type": "topic", "name": partner_topic_name("traffic_volume")}, "operations": ["Read"]})


def _writable_edge_mount(rs: list[Resource]) -> None:
    [(_, spec)] = edge_workloads(rs)
    spec["volumes"].append({"name": "scratch", "emptyDir": {}})
    spec["containers"][0]["volumeMounts"].append({"name": "scratch", "mountPath": "/frames"})


def _edge_service(rs: list[Resource]) -> None:
    rs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "edge"},
               "spec": {"selector": {"app.kubernetes.io/name": "privaflow-edge"}, "ports": [{"port": 80}]}})


def _keda_max_too_high(rs: list[Resource]) -> None:
    _first(rs, "ScaledObject")["spec"]["maxReplicaCount"] = 12


def _registry_without_auth(rs: list[Resource]) -> None:
    c = _container(_first(rs, "Deployment", "privaflow-registry"), "registry")
    c["env"] = [e for e in c["env"] if e["name"] != "QUARKUS_CONFIG_LOCATIONS"]


def _registry_auth_props(rs: list[Resource], configmap_prefix: str) -> dict[str, Any]:
    return next(r for r in find(rs, "ConfigMap") if r["metadata"]["name"].startswith(configmap_prefix))["data"]


def _partner_may_register(rs: list[Resource]) -> None:
    data = _registry_auth_props(rs, "privaflow-registry-public-auth")
    data["auth.properties"] = data["auth.properties"].replace("roles.partner-city=sr-readonly",
                                                              "roles.partner-city=sr-developer")


def _anonymous_reads(rs: list[Resource]) -> None:
    c = _container(_first(rs, "Deployment", "privaflow-registry-public"), "registry")
    c["env"].append({"name": "APICURIO_AUTH_ANONYMOUS_READ_ACCESS_ENABLED", "value": "true"})


def _edge_password_of_streams(rs: list[Resource]) -> None:
    [(_, spec)] = edge_workloads(rs)
    for e in spec["containers"][0]["env"]:
        if e["name"] == "PRIVAFLOW_REGISTRY_PASSWORD":
            e["valueFrom"]["secretKeyRef"]["name"] = "privaflow-streams"


def _registry_password_shared(rs: list[Resource]) -> None:
    data = _registry_auth_props(rs, "privaflow-registry-auth")
    data["auth.properties"] = data["auth.properties"].replace("${REGISTRY_PASSWORD_PRIVAFLOW_API}",
                                                              "${REGISTRY_PASSWORD_PRIVAFLOW_STREAMS}")


MISTAKES: list[tuple[str, Callable[[list[Resource]], None], str]] = [
    ("Strimzi field misspelt (spec.kafka.listenerz)", _misspell_listeners, "schema"),
    ("Strimzi API version no longer served", _old_api_version, "schema"),
    ("KEDA field misspelt", _misspell_keda, "schema"),
    ("KafkaUser ACL field misspelt", _misspell_acl_operations, "schema"),
    ("Deployment container field misspelt", _misspell_deployment, "schema"),
    ("KafkaTopic missing", _drop_detections_topic, "topics"),
    ("KafkaTopic with other partitions", _wrong_partitions, "topics"),
    ("container without limits", _no_limits, "containers"),
    ("container allowed to run as root", _root_container, "containers"),
    ("partner ACL on detections", _partner_reads_detections, "partners"),
    ("partner ACL on a prefix covering everything", _partner_prefix_acl, "partners"),
    ("partner ACL on a table it does not receive", _partner_reads_other_table, "partners"),
    ("edge with a writable volume", _writable_edge_mount, "edge"),
    ("edge behind a Service", _edge_service, "edge"),
    ("KEDA allowed beyond the partitions", _keda_max_too_high, "keda"),
    ("read-write registry without auth", _registry_without_auth, "registry"),
    ("a partner may register schemas", _partner_may_register, "registry"),
    ("anonymous reads on the public registry", _anonymous_reads, "registry"),
    ("edge sends the streams password", _edge_password_of_streams, "registry"),
    ("api's registry user has streams' password", _registry_password_shared, "registry"),
]


@pytest.mark.parametrize(("mistake", "mutate", "check"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_each_check_reports_a_deliberate_mistake(rendered: dict[str, list[Resource]], crd_dir: Path,
                                                 site: SiteConfig, topics: list[Topic], mistake: str,
                                                 mutate: Callable[[list[Resource]], None], check: str) -> None:
    checks: dict[str, Callable[[list[Resource]], list[str]]] = {
        "schema": lambda rs: _schema_errors(rs, crd_dir),
        "topics": lambda rs: topic_violations(rs, topics),
        "containers": container_violations,
        "partners": lambda rs: partner_acl_violations(rs, site),
        "edge": edge_violations,
        "keda": lambda rs: keda_violations(rs, topics),
        "registry": lambda rs: registry_auth_violations(rs, site),
    }
    resources = copy.deepcopy(rendered["prod"])
    assert checks[check](resources) == [], "the unbroken manifests must pass first"
    mutate(resources)
    assert checks[check](resources), f"{check} check missed: {mistake}"

