"""Schema validation of rendered manifests, offline.

- Built-in kinds: kubernetes-validate, strict (unknown fields are errors), against the pinned
  Kubernetes version below, one of the versions the package bundles.
- Custom resources (Strimzi, KEDA): the `openAPIV3Schema` of their CRDs in shared/k8s-crds,
  made strict: CRD schemas never say `additionalProperties: false`, so a misspelt field would
  pass; here every object schema that lists `properties` (and does not preserve unknown fields)
  rejects anything else, as the API server's pruning + `kubectl --validate=strict` would.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.33.0"
CRD_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "k8s-crds"

Schema = dict[str, Any]


def strict(schema: Schema) -> Schema:
    """A copy of an OpenAPI v3 schema in which listed properties are the only ones allowed."""
    out = copy.deepcopy(schema)
    _tighten(out)
    return out


def _tighten(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _tighten(item)
        return
    if not isinstance(node, dict):
        return
    if ("properties" in node and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        node["additionalProperties"] = False
    for k in ("properties", "patternProperties", "definitions"):
        for sub in node.get(k, {}).values():
            _tighten(sub)
    for k in ("items", "additionalProperties", "not"):
        if isinstance(node.get(k), dict | list):
            _tighten(node[k])
    for k in ("allOf", "anyOf", "oneOf"):
        _tighten(node.get(k, []))


@cache
def crd_schemas(crd_dir: Path = CRD_DIR) -> dict[tuple[str, str], Schema]:
    """(apiVersion, kind) -> strict schema, for every served version of every CRD in crd_dir."""
    schemas: dict[tuple[str, str], Schema] = {}
    for path in sorted(crd_dir.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if version.get("served"):
                    api_version = f"{spec['group']}/{version['name']}"
                    schemas[(api_version, spec["names"]["kind"])] = strict(
                        version["schema"]["openAPIV3Schema"])
    return schemas


def custom_groups(crd_dir: Path = CRD_DIR) -> set[str]:
    return {api.split("/")[0] for api, _ in crd_schemas(crd_dir)}


def _where(err: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in err.absolute_path) or "(top level)"


def validate_custom(resource: dict[str, Any], crd_dir: Path = CRD_DIR) -> list[str]:
    """Errors of a custom resource against its CRD; a kind or version no CRD serves is an error."""
    api_version, kind = resource.get("apiVersion", ""), resource.get("kind", "")
    schema = crd_schemas(crd_dir).get((api_version, kind))
    if schema is None:
        served = sorted(a for a, k in crd_schemas(crd_dir) if k == kind)
        return [f"no CRD serves {kind} in {api_version} (served: {served or 'none'})"]
    validator = jsonschema.Draft7Validator(schema)
    return [f"{_where(e)}: {e.message}" for e in sorted(validator.iter_errors(resource), key=str)]


def validate_builtin(resource: dict[str, Any], version: str = KUBERNETES_VERSION) -> list[str]:
    """Errors of a built-in kind, by kubernetes-validate in strict mode."""
    try:
        kubernetes_validate.validate(resource, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{_where(e)}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [e.message]
    return []


def validate(resource: dict[str, Any], crd_dir: Path = CRD_DIR) -> list[str]:
    """Schema errors of any rendered resource, routed by its API group."""
    group = resource.get("apiVersion", "").rpartition("/")[0]
    if group in custom_groups(crd_dir):
        return validate_custom(resource, crd_dir)
    return validate_builtin(resource)
