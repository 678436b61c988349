"""The house rules (docs/architecture.md), checked on the code rather than trusted to reviewers:
who may import whom, what the wheel installs, and what runs without the dev stack."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from privaflow_stack.typecheck import link_tree

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    # the folders laid out as installed (privaflow.edge = edge/, ...), which is what import-linter reads
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(REPO / "pyproject.toml"), "--no-cache"], cwd=tree,
                          env=env, capture_output=True, text=True, timeout=300)


def test_the_import_rules_hold() -> None:
    out = _lint_imports(link_tree(REPO / ".privaflow" / "importcheck"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 kept, 0 broken" in out.stdout


@pytest.mark.parametrize(("room", "wrong_import", "contract"), [
    ("edge", "from privaflow.streams import tables", "edge and streams share only the contract"),
    ("schemas", "from privaflow.edge import records", "Each room imports only the rooms below it"),
    ("streams", "import privaflow_stack.local", "Nothing of privaflow imports the dev stack"),
])
def test_a_wrong_import_breaks_a_rule(tmp_path: Path, room: str, wrong_import: str, contract: str) -> None:
    tree = link_tree(tmp_path / "tree")
    (tree / "privaflow" / room / "wrong.py").write_text(f"{wrong_import}\n")
    out = _lint_imports(tree)
    assert out.returncode != 0
    broken = out.stdout.split("Broken contracts", 1)[-1]
    assert contract.split(";")[0][:40] in " ".join(broken.split()), out.stdout
    assert f"privaflow.{room}.wrong" in out.stdout


OLD_NAMES = re.compile(r"^\s*(?:from|import)\s+(edge|schemas|streams|stack|partner|governance)(?:\.|\s|$)", re.M)


def test_tests_and_benchmarks_import_through_the_namespace() -> None:
    """`pythonpath = ["."]` makes the repository root importable for `tests.*`; it must not become a
    second way to import the product (`import schemas` would load a second copy of every module)."""
    offenders = [f"{p.relative_to(REPO)}: {m.group(0).strip()}" for folder in ("tests", "bench")
                 for p in (REPO / folder).rglob("*.py") for m in OLD_NAMES.finditer(p.read_text())]
    assert not offenders


def _source_copy(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (REPO / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dest / f)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = _source_copy(tmp_path_factory.mktemp("src"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(src)],
                   check=True, capture_output=True, timeout=600)
    return next(out.glob("privaflow-*.whl"))


def test_the_wheel_holds_one_package_and_no_dev_stack(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"privaflow", "privaflow-0.1.0.dist-info"}
    for room in ("edge", "schemas", "streams", "partner", "governance"):
        assert f"privaflow/{room}/__init__.py" in names
    assert "privaflow/schemas/avro/partner_traffic_volume.avsc" in names
    assert "privaflow/edge/models/nanodet-g-416.onnx" in names
    assert "privaflow/partner/dashboard/index.html" in names
    assert not [n for n in names if re.search(r"simulate|pom\.xml|rtsp|stack|demo", n)]


def test_the_installed_wheel_runs_without_java_or_the_dev_stack(wheel: Path, tmp_path: Path) -> None:
    """A clean venv with only the wheel installed (its dependencies are borrowed from the test's own
    environment by path, so no network is needed; the editable install there is not activated)."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   timeout=300)
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    ours = next(p for p in map(Path, sys.path) if p.name == "site-packages" and (p / "numpy").exists())
    (site / "borrowed-deps.pth").write_text(f"{ours}\n")
    env = {"PATH": str(env_dir / "bin"), "HOME": str(tmp_path), "LANG": "C.UTF-8"}  # no java on PATH

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    imported = run(str(py), "-c", "import privaflow.edge, privaflow.streams, privaflow.schemas, privaflow.partner, "
                   "privaflow.governance, sys; print(privaflow.edge.__file__); "
                   "import importlib.util as u; print(u.find_spec('privaflow_stack'), u.find_spec('edge'))")
    assert imported.returncode == 0, imported.stderr
    assert str(site) in imported.stdout and "None None" in imported.stdout
    cli = str(env_dir / "bin" / "privaflow")
    helped = run(cli, "--help")
    assert helped.returncode == 0 and "notice" in helped.stdout, helped.stderr
    config = str(REPO / "examples" / "site.yaml")
    notice = run(cli, "notice", "--config", config, "--camera", "street", "--lang", "en")
    assert notice.returncode == 0 and "Demo Town Traffic Office" in notice.stdout, notice.stderr
    report = run(cli, "privacy", "report", "--config", config)
    assert report.returncode == 0 and "street" in report.stdout, report.stderr
    stack = run(cli, "stack", "up")
    assert stack.returncode == 2 and "source checkout" in stack.stderr and "Traceback" not in stack.stderr
