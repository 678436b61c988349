"""The dashboard's static files: vendored code is exactly what README.md says it is, and nothing
is loaded from elsewhere (no CDN, no run-time download)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[2] / "partner" / "dashboard"


def test_vendored_files_match_the_hashes_in_the_readme() -> None:
    readme = (DASHBOARD / "README.md").read_text(encoding="utf-8")
    listed = dict((path, digest) for digest, path in re.findall(r"^\s+([0-9a-f]{64})\s+(vendor/\S+)$", readme, re.M))
    on_disk = {p.relative_to(DASHBOARD).as_posix() for p in (DASHBOARD / "vendor").iterdir()}
    assert set(listed) == on_disk, "every vendored file, and only those, is listed with its hash"
    for path, digest in listed.items():
        assert hashlib.sha256((DASHBOARD / path).read_bytes()).hexdigest() == digest, f"{path} changed"
    assert "Released under the MIT License" in (DASHBOARD / "vendor" / "chart.umd.min.js").read_text()[:400]


def test_the_page_loads_nothing_from_other_hosts() -> None:
    html = (DASHBOARD / "index.html").read_text(encoding="utf-8")
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs, "index.html references its scripts and stylesheet"
    assert all(not re.match(r"^(https?:)?//", r) for r in refs), refs
    for name in ("app.js", "crowding.js", "style.css"):
        text = (DASHBOARD / name).read_text(encoding="utf-8")
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), f"{name} names an outside URL"
        assert "innerHTML" not in text, f"{name}: build the DOM from text nodes, never from API strings as HTML"
