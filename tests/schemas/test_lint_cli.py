"""`privaflow schemas lint`: any .avsc file against the partner rules, with the file, the field and
the rule named, and exit codes a script can use. Covers T6, T7 (issue 12: "a command for it")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from privaflow.cli import main
from privaflow.schemas.topics import PARTNER_TABLES
from tests.schemas.test_partner_leaks import FIELD_CASES


def _lint(*args: str):
    return CliRunner().invoke(main, ["schemas", "lint", *args])


def test_with_no_file_the_projects_own_partner_schemas_are_ok() -> None:
    r = _lint()
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert len(lines) == len(PARTNER_TABLES)
    for stem in PARTNER_TABLES.values():
        assert any(line.endswith(")") and f"{stem}.avsc: OK (privaflow.partner." in line for line in lines), stem


@pytest.mark.parametrize("case", FIELD_CASES)
def test_each_leaky_construct_in_a_file_is_named_with_file_field_and_rule(tmp_path: Path, case: str) -> None:
    schema, field_path = FIELD_CASES[case]
    f = tmp_path / "theirs.avsc"
    f.write_text(json.dumps(schema))
    r = _lint(str(f))
    assert r.exit_code == 1, r.output
    assert any(line.startswith(f"{f}: {field_path}: ") and len(line) > len(f"{f}: {field_path}: ") + 10
               for line in r.output.splitlines()), r.output
    assert "lint --help" in r.output


@pytest.mark.parametrize("content", ['"bytes"', '["null", "bytes"]', "3", "null", "[]", '{"type": "record"}'])
def test_a_json_file_that_is_no_record_is_a_violation_not_a_crash(tmp_path: Path, content: str) -> None:
    f = tmp_path / "odd.avsc"
    f.write_text(content)
    r = _lint(str(f))
    assert r.exit_code == 1, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert f"{f}: " in r.output


def test_clean_and_leaky_files_together(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.avsc", tmp_path / "bad.avsc"
    good.write_text((Path(__file__).parents[2] / "schemas/avro/partner_dwell.avsc").read_text())
    bad.write_text(json.dumps(FIELD_CASES["tid"][0]))
    r = _lint(str(good), str(bad))
    assert r.exit_code == 1
    assert f"{good}: OK (privaflow.partner.Dwell)" in r.output
    assert f"{bad}: TrafficVolume.tid: field name 'tid' is not in the partner allowlist" in r.output


def test_unreadable_and_non_json_files_are_a_clear_error_with_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.avsc"
    text = tmp_path / "notes.avsc"
    text.write_text("{ this is not json")
    binary = tmp_path / "blob.avsc"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    deep = tmp_path / "deep.avsc"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    for f, says in ((missing, "cannot read"), (text, "is not JSON: Expecting property name"),
                    (binary, "is not UTF-8"), (deep, "nested too deeply")):
        # a subprocess, so that what a user sees (stderr, exit code, no traceback) is what is checked
        r = subprocess.run([sys.executable, "-m", "privaflow", "schemas", "lint", str(f)], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 2, (f, r.stdout, r.stderr)
        assert f"error: {f}" in r.stderr or f"error: cannot read {f}" in r.stderr, r.stderr
        assert says in r.stderr and "Traceback" not in r.stderr


def test_help_lists_the_allowlist_from_the_module_that_enforces_it() -> None:
    from privaflow.schemas.privacy import CONFIG_DIMENSIONS, STATISTICS
    from privaflow.schemas.vocabulary import VOCABULARIES

    r = _lint("--help")
    assert r.exit_code == 0
    flat = " ".join(r.output.split())
    for name in (*CONFIG_DIMENSIONS, *STATISTICS, *VOCABULARIES, "window_start", "bin_counts", "suppressed"):
        assert name in flat, name
    assert "Exit 0: all clean; 1: a schema breaks a rule; 2: a file cannot be read" in flat
