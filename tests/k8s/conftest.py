"""Fixtures for the manifest tests: the overlays rendered once per session, the CRDs, the site.

Nothing here needs a cluster. A missing renderer or CRD folder skips on a developer's machine
and fails under CI (CI=true), naming what to install.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from privaflow.schemas.site import SiteConfig, load_site_config  # noqa: E402
from privaflow.schemas.topics import DAY_MS, Topic, all_topics  # noqa: E402

# the helpers beside this file, importable from the test modules under --import-mode=importlib
from tests.k8s.kube_render import INSTALL_SCRIPT, K8S, OVERLAYS, Resource, kustomize_command, render  # noqa: E402
from tests.k8s.kube_schemas import CRD_DIR  # noqa: E402


def _missing(msg: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def kustomize() -> list[str]:
    cmd = kustomize_command()
    if cmd is None:
        _missing(f"neither kustomize nor kubectl found: run `bash {INSTALL_SCRIPT}` "
                 "(installs kustomize into .privaflow/bin/)")
    assert cmd is not None
    return cmd


@pytest.fixture(scope="session")
def rendered(kustomize: list[str]) -> dict[str, list[Resource]]:
    """Every overlay's resources, rendered once."""
    return {name: render(path, kustomize) for name, path in OVERLAYS.items()}


@pytest.fixture(params=sorted(OVERLAYS))
def overlay(request: pytest.FixtureRequest, rendered: dict[str, list[Resource]]) -> tuple[str, list[Resource]]:
    """(name, resources) for each overlay in turn."""
    return request.param, rendered[request.param]


@pytest.fixture(scope="session")
def crd_dir() -> Path:
    if not CRD_DIR.is_dir():
        _missing(f"CRDs not found at {CRD_DIR} (the shared/ folder beside the repository)")
    return CRD_DIR


@pytest.fixture(scope="session")
def site() -> SiteConfig:
    """The site config the manifests ship (k8s/base/site.yaml, a copy of examples/site.yaml)."""
    return load_site_config(K8S / "base" / "site.yaml")


@pytest.fixture(scope="session")
def topics(site: SiteConfig) -> list[Topic]:
    """The code's topics with the site's retentions, computed here rather than by the generator."""
    return all_topics(detections_retention_ms=round(site.retention.detections_days * DAY_MS),
                      partner_retention_ms=round(site.retention.partner_days * DAY_MS),
                      dp_partners={p.id: list(p.tables) for p in site.partners if p.dp})
