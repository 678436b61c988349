"""`python -m privaflow_stack.typecheck`: mypy over the installed layout (`make lint` runs it).

privaflow's folders are mapped onto one import namespace by setuptools (`privaflow.edge` is edge/,
...), which mypy cannot follow. So this builds that layout once more as a tree of symbolic links under
.privaflow/typecheck/ (from pyproject.toml's package-dir, nothing typed twice) and runs mypy on it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def link_tree(dest: Path) -> Path:
    """The installed layout of privaflow and privaflow_stack as symlinks under `dest`."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for project in (REPO / "pyproject.toml", REPO / "stack" / "pyproject.toml"):
        mapping = tomllib.loads(project.read_text())["tool"]["setuptools"]["package-dir"]
        for package, folder in sorted(mapping.items()):  # parents before children
            target = dest.joinpath(*package.split("."))
            target.mkdir(parents=True, exist_ok=True)
            for src in (project.parent / folder).glob("*.py"):
                os.symlink(src, target / src.name)
    return dest


def main() -> int:
    tree = link_tree(Path(os.environ.get("PRIVAFLOW_HOME", REPO / ".privaflow")) / "typecheck")
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"), "-p", "privaflow",
           "-p", "privaflow_stack"]
    return subprocess.run(cmd, cwd=tree).returncode


if __name__ == "__main__":
    sys.exit(main())
