"""Site config: the example loads; errors name the file, the field and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from privaflow.schemas.site import ConfigError, load_site_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "site.yaml"


def test_example_config_loads() -> None:
    cfg = load_site_config(EXAMPLE)
    assert cfg.camera("campus").max_width == 640
    assert {line.id for line in cfg.lines_for("campus")} == {"campus-midline"}
    assert all(p.k_anonymity >= 5 for p in cfg.partners)


def _write(tmp_path: Path, data: object) -> Path:
    p = tmp_path / "site.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize("mutate,field,expected", [
    (lambda d: d["cameras"][0].update(max_width="wide"), "cameras.0.max_width", "integer"),
    (lambda d: d["lines"][0].update(points=[[0.1, 0.2], [1.5, 0.2]]), "lines.0.points.1.0", "less than or equal to 1"),
    (lambda d: d["zones"][0].update(camera="nope"), "", "names camera 'nope'"),
    (lambda d: d["partners"][0].update(tables=["faces"]), "partners.0.tables.0", "traffic_volume"),
    (lambda d: d["cameras"][0].update(mask=[]), "cameras.0.mask", "Extra inputs are not permitted"),
    (lambda d: d.pop("cameras"), "cameras", "Field required"),
])
def test_bad_config_names_file_field_and_expectation(tmp_path: Path, mutate, field: str, expected: str) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as e:
        load_site_config(path)
    msg = str(e.value)
    assert str(path) in msg and field in msg and expected in msg


def test_missing_and_non_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_site_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_site_config(bad)
    bad.write_text("- a list")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_site_config(bad)
