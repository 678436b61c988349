"""Render the Kustomize overlays in k8s/ without a cluster.

The renderer is, in order of preference: the pinned kustomize that k8s/install-tools.sh puts in
.privaflow/bin/, a `kustomize` on PATH, or `kubectl kustomize`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
OVERLAYS = {"dev": K8S / "overlays" / "dev", "prod": K8S / "overlays" / "prod"}
INSTALL_SCRIPT = "k8s/install-tools.sh"

Resource = dict[str, Any]


def kustomize_command() -> list[str] | None:
    """The command that renders a kustomization directory given as its last argument."""
    pinned = REPO / ".privaflow" / "bin" / "kustomize"
    if pinned.is_file() and os.access(pinned, os.X_OK):
        return [str(pinned), "build"]
    if found := shutil.which("kustomize"):
        return [found, "build"]
    if found := shutil.which("kubectl"):
        return [found, "kustomize"]
    return None


class RenderError(RuntimeError):
    """kustomize refused a kustomization; the message carries its error output."""


def render(path: Path, command: list[str]) -> list[Resource]:
    """Every resource the kustomization at `path` produces, as parsed YAML."""
    proc = subprocess.run([*command, str(path)], capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise RenderError(f"{' '.join(command)} {path} failed:\n{proc.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def key(resource: Resource) -> str:
    """`Kind/name`, for messages."""
    return f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"


def find(resources: list[Resource], kind: str, name: str | None = None) -> list[Resource]:
    return [r for r in resources
            if r.get("kind") == kind and (name is None or r["metadata"]["name"] == name)]


def one(resources: list[Resource], kind: str, name: str) -> Resource:
    found = find(resources, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]
