"""Rules the rendered manifests must keep, each a function returning its violations.

An empty list means the rule holds; every message names the resource and what is wrong, so a
test can assert `== []` and show the reasons when it fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from privaflow.schemas.access import partner_topics
from privaflow.schemas.site import SiteConfig
from privaflow.schemas.topics import DETECTIONS, OPERATOR_PREFIX, Topic
from tests.k8s.kube_render import Resource, key

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"}
SPOOL = "/var/spool/privaflow"
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# topic families a partner must never be able to read (T6, T7)
PARTNER_FORBIDDEN = ("privaflow.detections.", "privaflow.events.", OPERATOR_PREFIX)
PARTNER_OPERATIONS = {"Read", "Describe"}


def pod_spec(resource: Resource) -> dict[str, Any] | None:
    """The pod spec inside a workload, or None for other kinds."""
    if resource.get("kind") not in WORKLOAD_KINDS:
        return None
    spec = resource["spec"]
    if resource["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]  # type: ignore[no-any-return]


def workloads(resources: list[Resource]) -> Iterator[tuple[Resource, dict[str, Any]]]:
    for r in resources:
        spec = pod_spec(r)
        if spec is not None:
            yield r, spec


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def _resources_violations(where: str, resources: dict[str, Any] | None) -> list[str]:
    out = []
    for part in ("requests", "limits"):
        for res in ("cpu", "memory"):
            if not (resources or {}).get(part, {}).get(res):
                out.append(f"{where}: no {part}.{res}")
    return out


# ---------------------------------------------------------------- containers

def container_violations(resources: list[Resource]) -> list[str]:
    """Every container: non-root, no privilege escalation, all capabilities dropped, requests and
    limits for cpu and memory. Strimzi-managed containers: requests and limits, and the same
    security context where privaflow sets it (node pools, entity operator)."""
    out: list[str] = []
    for r, spec in workloads(resources):
        pod_sc = spec.get("securityContext", {})
        for c in containers(spec):
            where = f"{key(r)} container {c.get('name')}"
            sc = c.get("securityContext", {})
            out += _security_context_violations(where, sc, pod_sc)
            out += _resources_violations(where, c.get("resources"))
    for r in resources:
        if r.get("kind") == "KafkaNodePool":
            out += _resources_violations(key(r), r["spec"].get("resources"))
            sc = r["spec"].get("template", {}).get("kafkaContainer", {}).get("securityContext", {})
            out += _security_context_violations(f"{key(r)} kafka container", sc, {})
        if r.get("kind") == "Kafka":
            eo = r["spec"].get("entityOperator", {})
            for op in ("topicOperator", "userOperator"):
                if op in eo:
                    where = f"{key(r)} {op}"
                    out += _resources_violations(where, eo[op].get("resources"))
                    sc = eo.get("template", {}).get(f"{op}Container", {}).get("securityContext", {})
                    out += _security_context_violations(where, sc, {})
    return out


def _security_context_violations(where: str, sc: dict[str, Any], pod_sc: dict[str, Any]) -> list[str]:
    out = []
    run_as_non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
    run_as_user = sc.get("runAsUser", pod_sc.get("runAsUser"))
    if run_as_non_root is not True:
        out.append(f"{where}: runAsNonRoot is not true")
    if run_as_user == 0:
        out.append(f"{where}: runs as uid 0")
    if sc.get("allowPrivilegeEscalation") is not False:
        out.append(f"{where}: allowPrivilegeEscalation is not false")
    if "ALL" not in sc.get("capabilities", {}).get("drop", []):
        out.append(f"{where}: capabilities do not drop ALL")
    if sc.get("capabilities", {}).get("add"):
        out.append(f"{where}: adds capabilities {sc['capabilities']['add']}")
    if sc.get("privileged"):
        out.append(f"{where}: privileged")
    return out


# ---------------------------------------------------------------- edge

def edge_workloads(resources: list[Resource]) -> list[tuple[Resource, dict[str, Any]]]:
    return [(r, spec) for r, spec in workloads(resources)
            if r["spec"]["template"]["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "edge"]


def edge_violations(resources: list[Resource]) -> list[str]:
    """Edge pods write nowhere but the spool: read-only root filesystem, every other mount
    read-only from a config/secret volume, the spool an emptyDir or a claim; no host paths, no
    Service in front of them."""
    out: list[str] = []
    edges = edge_workloads(resources)
    if not edges:
        return ["no edge workload (label app.kubernetes.io/component=edge) rendered"]
    for r, spec in edges:
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for v in volumes.values():
            if "hostPath" in v:
                out.append(f"{key(r)}: hostPath volume {v['name']}")
        for c in containers(spec):
            where = f"{key(r)} container {c['name']}"
            if c.get("securityContext", {}).get("readOnlyRootFilesystem") is not True:
                out.append(f"{where}: root filesystem is writable")
            for m in c.get("volumeMounts", []):
                vol = volumes.get(m["name"], {})
                if m["mountPath"] == SPOOL:
                    if not ({"emptyDir", "persistentVolumeClaim"} & vol.keys()):
                        out.append(f"{where}: spool {m['name']} is neither an emptyDir nor a claim")
                    continue
                if not m.get("readOnly"):
                    out.append(f"{where}: {m['mountPath']} ({m['name']}) is writable; only {SPOOL} may be")
                if not ({"configMap", "secret", "projected"} & vol.keys()):
                    out.append(f"{where}: {m['mountPath']} mounts a {sorted(vol)} volume")
        labels = r["spec"]["template"]["metadata"].get("labels", {})
        for svc in (s for s in resources if s.get("kind") == "Service"):
            selector = svc["spec"].get("selector") or {}
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                out.append(f"{key(svc)} exposes edge pods of {key(r)}")
    return out


# ---------------------------------------------------------------- ACLs

def topic_acls(user: Resource) -> list[dict[str, Any]]:
    return [a for a in user["spec"].get("authorization", {}).get("acls", [])
            if a["resource"]["type"] == "topic" and a.get("type", "allow") == "allow"]


def _covers(acl_resource: dict[str, Any], topic_prefix: str) -> bool:
    """Can this ACL resource match some topic whose name starts with topic_prefix?"""
    name = acl_resource.get("name", "")
    if name == "*":  # Kafka's wildcard resource name
        return True
    if acl_resource.get("patternType", "literal") == "prefix":
        return name.startswith(topic_prefix) or topic_prefix.startswith(name)
    return name.startswith(topic_prefix)


def partner_users(resources: list[Resource]) -> dict[str, Resource]:
    return {r["metadata"]["labels"]["privaflow.io/partner"]: r for r in resources
            if r.get("kind") == "KafkaUser" and r["metadata"].get("labels", {}).get("privaflow.io/role") == "partner"}


def partner_acl_violations(resources: list[Resource], site: SiteConfig) -> list[str]:
    """Each site partner has a user that may Read/Describe exactly its own table topics and
    nothing under privaflow.detections.* or privaflow.events.*."""
    out: list[str] = []
    users = partner_users(resources)
    for partner in site.partners:
        if partner.id not in users:
            out.append(f"partner {partner.id!r} of the site config has no KafkaUser")
    for pid, user in users.items():
        allowed = {name for p in site.partners if p.id == pid for name in partner_topics(p.id, p.tables, p.dp)}
        if not allowed:
            out.append(f"{key(user)}: partner {pid!r} is not in the site config")
        granted: set[str] = set()
        for acl in topic_acls(user):
            res = acl["resource"]
            for forbidden in PARTNER_FORBIDDEN:
                if _covers(res, forbidden):
                    out.append(f"{key(user)}: ACL on topic {res.get('name')!r} "
                               f"({res.get('patternType', 'literal')}) reaches {forbidden}*")
            if res.get("patternType", "literal") != "literal" or res.get("name") not in allowed:
                out.append(f"{key(user)}: ACL on topic {res.get('name')!r} is not one of its tables' topics")
            if extra := set(acl["operations"]) - PARTNER_OPERATIONS:
                out.append(f"{key(user)}: operations {sorted(extra)} on {res.get('name')!r}")
            granted.add(res.get("name", ""))
        if missing := allowed - granted:
            out.append(f"{key(user)}: cannot read {sorted(missing)}")
        groups = [a["resource"] for a in user["spec"]["authorization"]["acls"] if a["resource"]["type"] == "group"]
        if any(not (g.get("patternType") == "prefix" and g["name"] == f"partner-{pid}-") for g in groups):
            out.append(f"{key(user)}: group ACLs other than prefix partner-{pid}-: {groups}")
        if any(a["resource"]["type"] in {"cluster", "transactionalId"}
               for a in user["spec"]["authorization"]["acls"]):
            out.append(f"{key(user)}: has cluster or transactionalId ACLs")
    return out


# ---------------------------------------------------------------- topics

def topic_violations(resources: list[Resource], topics: list[Topic]) -> list[str]:
    """A KafkaTopic per code topic with the same partitions, retention and cleanup policy, a
    DNS-safe metadata.name, and no privaflow topic the code does not know."""
    out: list[str] = []
    kafka_topics = [r for r in resources if r.get("kind") == "KafkaTopic"]
    by_name = {r["spec"].get("topicName", r["metadata"]["name"]): r for r in kafka_topics}
    for r in kafka_topics:
        name = r["metadata"]["name"]
        if len(name) > 253 or not DNS_SUBDOMAIN.match(name):
            out.append(f"{key(r)}: metadata.name is not a DNS subdomain")
    for t in topics:
        found = by_name.get(t.name)
        if found is None:
            out.append(f"no KafkaTopic for {t.name}")
            continue
        r, spec = found, found["spec"]
        if spec.get("topicName") != t.name:
            out.append(f"{key(r)}: spec.topicName is {spec.get('topicName')!r}, not {t.name!r}")
        if spec.get("partitions") != t.partitions:
            out.append(f"{key(r)}: {spec.get('partitions')} partitions, the code says {t.partitions}")
        config = {k: str(v) for k, v in (spec.get("config") or {}).items()}
        for k, v in t.config().items():
            if config.get(k) != v:
                out.append(f"{key(r)}: {k}={config.get(k)!r}, the code says {v!r}")
    known = {t.name for t in topics}
    for name, r in by_name.items():
        if name.startswith("privaflow") and name not in known:
            out.append(f"{key(r)}: topic {name} is not in schemas/topics.py")
    return out


# ---------------------------------------------------------------- autoscaling

def keda_violations(resources: list[Resource], topics: list[Topic]) -> list[str]:
    """The streams ScaledObject scales the StatefulSet on the detections lag of its group, up to
    the detections topic's partitions, authenticated by an existing TriggerAuthentication."""
    out: list[str] = []
    partitions = next(t.partitions for t in topics if t.name == DETECTIONS)
    scaled = [r for r in resources if r.get("kind") == "ScaledObject"
              and r["spec"]["scaleTargetRef"]["name"] == "privaflow-streams"]
    if len(scaled) != 1:
        return [f"expected one ScaledObject for privaflow-streams, found {len(scaled)}"]
    so = scaled[0]
    target = so["spec"]["scaleTargetRef"]
    if target.get("kind") != "StatefulSet" or not [r for r in resources if r.get("kind") == "StatefulSet"
                                                    and r["metadata"]["name"] == target["name"]]:
        out.append(f"{key(so)}: scales {target.get('kind')}/{target['name']}, not the streams StatefulSet")
    if so["spec"].get("maxReplicaCount") != partitions:
        out.append(f"{key(so)}: maxReplicaCount {so['spec'].get('maxReplicaCount')} != "
                   f"{partitions} partitions of {DETECTIONS}")
    kafka = [t for t in so["spec"]["triggers"] if t["type"] == "kafka"]
    if not kafka:
        out.append(f"{key(so)}: no kafka trigger")
    auths = {r["metadata"]["name"] for r in resources if r.get("kind") == "TriggerAuthentication"}
    for t in kafka:
        md = t["metadata"]
        if md.get("consumerGroup") != "privaflow-streams" or md.get("topic") != DETECTIONS:
            out.append(f"{key(so)}: trigger watches {md.get('consumerGroup')}/{md.get('topic')}")
        if md.get("sasl") != "scram_sha512" or md.get("tls") != "enable":
            out.append(f"{key(so)}: trigger is not SCRAM-SHA-512 over TLS")
        if t.get("authenticationRef", {}).get("name") not in auths:
            out.append(f"{key(so)}: authenticationRef names no TriggerAuthentication")
    return out


# ---------------------------------------------------------------- schema registry access

def registry_auth_config(resources: list[Resource], deployment: str) -> tuple[dict[str, str], dict[str, Any]] | None:
    """(Quarkus properties the registry Deployment loads via QUARKUS_CONFIG_LOCATIONS, its container's env
    by name), or None when it loads none from a ConfigMap."""
    found = [r for r in resources if r.get("kind") == "Deployment" and r["metadata"]["name"] == deployment]
    if len(found) != 1:
        return None
    spec = pod_spec(found[0]) or {}
    c = next((c for c in spec.get("containers", []) if c["name"] == "registry"), {})
    env = {e["name"]: e for e in c.get("env", [])}
    location = env.get("QUARKUS_CONFIG_LOCATIONS", {}).get("value", "")
    mount = next((m for m in c.get("volumeMounts", []) if location.startswith(m["mountPath"].rstrip("/") + "/")), None)
    volume = next((v for v in spec.get("volumes", []) if mount and v["name"] == mount["name"]), {})
    cm_name = volume.get("configMap", {}).get("name")
    cm = next((r for r in resources if r.get("kind") == "ConfigMap" and r["metadata"]["name"] == cm_name), None)
    if not location or mount is None or cm is None:
        return None
    text = cm.get("data", {}).get(location[len(mount["mountPath"].rstrip("/")) + 1:], "")
    props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    return props, env


def registry_auth_violations(resources: list[Resource], site: SiteConfig) -> list[str]:
    """The registries follow the local secure stack's rule (schemas/access.py): on the read-write one
    privaflow-edge and privaflow-streams may register and privaflow-api may read, on the public one
    each partner may only read; Basic auth on, role-based authorization on, no anonymous reads; every
    user's password comes from its own KafkaUser's Secret; and each client of the read-write registry
    sends its own user and password."""
    from privaflow.schemas.access import REGISTRY_AUTH, registry_role

    out: list[str] = []
    kafka_users = {r["metadata"]["name"] for r in resources if r.get("kind") == "KafkaUser"}
    expected = {
        "privaflow-registry": {u: registry_role(u) for u in ("privaflow-edge", "privaflow-streams", "privaflow-api")},
        "privaflow-registry-public": {f"partner-{p.id}": registry_role(f"partner-{p.id}") for p in site.partners},
    }
    for deployment, want in expected.items():
        where = f"Deployment/{deployment}"
        found = registry_auth_config(resources, deployment)
        if found is None:
            out.append(f"{where}: loads no auth config (QUARKUS_CONFIG_LOCATIONS from a mounted ConfigMap): "
                       "anyone who reaches it may write")
            continue
        props, env = found
        for setting in REGISTRY_AUTH:
            name, value = setting.split("=", 1)
            if props.get(name) != value:
                out.append(f"{where}: {name} is {props.get(name)!r}, expected {value!r}")
        anonymous = (props.get("apicurio.auth.anonymous-read-access.enabled", "false"),
                     env.get("APICURIO_AUTH_ANONYMOUS_READ_ACCESS_ENABLED", {}).get("value", "false"))
        if "true" in (a.lower() for a in anonymous):
            out.append(f"{where}: anonymous callers may read")
        roles = {k.rsplit(".", 1)[1]: v for k, v in props.items()
                 if k.startswith("quarkus.security.users.embedded.roles.")}
        if roles != want:
            out.append(f"{where}: users and roles {roles}, expected {want}")
        for user in roles:
            password = props.get(f"quarkus.security.users.embedded.users.{user}", "")
            m = re.fullmatch(r"\$\{([A-Z0-9_]+)\}", password)
            ref = env.get(m.group(1), {}).get("valueFrom", {}).get("secretKeyRef") if m else None
            if ref != {"name": user, "key": "password"}:
                out.append(f"{where}: {user}'s password is not the `password` of Secret {user} ({password!r} -> {ref})")
            if user not in kafka_users:
                out.append(f"{where}: {user} has no KafkaUser (so no Secret with its password)")
    clients = [(r, spec, r["metadata"]["name"]) for r, spec in workloads(resources)
               if r["metadata"]["name"] in ("privaflow-streams", "privaflow-api")]
    clients += [(r, spec, "privaflow-edge") for r, spec in edge_workloads(resources)]
    for r, spec, user in clients:
        for c in spec["containers"]:
            env = {e["name"]: e for e in c.get("env", [])}
            if "privaflow-registry:" not in env.get("PRIVAFLOW_REGISTRY_URL", {}).get("value", ""):
                continue
            sent = (env.get("PRIVAFLOW_REGISTRY_USERNAME", {}).get("value"),
                    env.get("PRIVAFLOW_REGISTRY_PASSWORD", {}).get("valueFrom", {}).get("secretKeyRef"))
            if sent != (user, {"name": user, "key": "password"}):
                out.append(f"{key(r)} container {c['name']}: sends registry credentials {sent}, expected {user} "
                           f"and the password in Secret {user}")
    return out
