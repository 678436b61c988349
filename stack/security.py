"""The local secure stack's credentials: generated passwords, the registry's Quarkus users, ACLs applied
with Kafka's admin client. The roles themselves are the contract's (schemas/access.py). Used by
`privaflow stack up --secure`.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path

from privaflow.schemas.access import MECHANISM, REGISTRY_AUTH, Acl, registry_role, registry_user_lines, role_acls

__all__ = ["MECHANISM", "Acl", "role_acls", "registry_role", "registry_auth_properties", "load_or_create_credentials",
           "client_config", "apply_acls"]


def registry_auth_properties(credentials: dict[str, str], users: list[str]) -> str:
    """Quarkus config that puts Apicurio's HTTP API behind Basic auth with role-based authorization,
    with one embedded user per user that has a registry role. Passwords are stored as Quarkus's
    default digest, hex SHA-512 of `user:Quarkus:password`."""
    lines = ["# written by `privaflow stack up --secure`; regenerated on every start", *REGISTRY_AUTH]
    for user in users:
        if registry_role(user) is None:
            continue
        lines += registry_user_lines(user, hashlib.sha512(f"{user}:Quarkus:{credentials[user]}".encode()).hexdigest())
    return "\n".join(lines) + "\n"


def load_or_create_credentials(path: Path, users: list[str]) -> dict[str, str]:
    """user -> password, generated once and kept (mode 0600) beside the stack's data."""
    from privaflow_stack.local import write_private

    creds: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    for u in ["admin", *users]:
        if u not in creds:
            creds[u] = secrets.token_urlsafe(18)
            changed = True
    if changed or (path.exists() and path.stat().st_mode & 0o077):
        write_private(path, json.dumps(creds, indent=2))
    return creds


def client_config(user: str, password: str) -> dict[str, str]:
    """librdkafka settings to connect as a user."""
    return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": MECHANISM,
            "sasl.username": user, "sasl.password": password}


def apply_acls(bootstrap: str, admin_password: str, acls: dict[str, list[Acl]], timeout: float = 30) -> int:
    """Create every ACL binding (creating an existing one is a no-op); returns how many were sent."""
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
    )

    admin = AdminClient({"bootstrap.servers": bootstrap, **client_config("admin", admin_password)})
    bindings = [
        # librdkafka calls the cluster resource BROKER
        AclBinding(ResourceType["BROKER" if a.kind == "CLUSTER" else a.kind], a.name,
                   ResourcePatternType[a.pattern], f"User:{user}", "*",
                   AclOperation[a.operation], AclPermissionType.ALLOW)
        for user, rules in acls.items() for a in rules
    ]
    for fut in admin.create_acls(bindings, request_timeout=timeout).values():
        fut.result()
    return len(bindings)
