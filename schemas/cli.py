"""`privaflow schemas ...`: the Avro contract against a schema registry."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click


@click.group()
def schemas() -> None:
    """The Avro contract and the schema registry."""


@schemas.command("check")
def schemas_check() -> None:
    """Tell whether the local schemas are compatible with what the registry holds (exit 1 if not)."""
    from privaflow.schemas.codec import SchemaRegistry, check_all, registry_url
    from privaflow.schemas.privacy import assert_partner_schemas_clean

    assert_partner_schemas_clean()
    reg = SchemaRegistry(retries=1)
    bad = 0
    click.echo(f"registry {registry_url()}")
    for subject, ok in check_all(reg).items():
        word = {None: "not registered yet", True: "compatible", False: "INCOMPATIBLE"}[ok]
        bad += ok is False
        click.echo(f"  {subject:50} {word}")
    sys.exit(1 if bad else 0)


@schemas.command("register")
def schemas_register() -> None:
    """Register every topic's schema (BACKWARD compatibility) and print the ids."""
    from privaflow.schemas.codec import SchemaRegistry, register_all

    register_all(SchemaRegistry(), progress=click.echo)


LINT_HELP = """Check Avro schema files against the rules every partner schema follows.

\b
With FILE.avsc arguments, checks each file and prints every violation as
  FILE: <record>.<field>: <rule broken>
With none, checks privaflow's own partner schemas and prints one OK line per schema.
Exit 0: all clean; 1: a schema breaks a rule; 2: a file cannot be read or is not JSON.

\b
A partner schema is one record whose fields are only (each may also be a union with null,
except window bounds, suppressed and bin lists):
  window_start, window_end      long with logicalType timestamp-millis
  window_length_s               int or long
  {dims}
                                string (ids whose values come from the site config)
  {enums}
                                the closed-vocabulary Avro enum of that name
  count                         int or long
  suppressed                    boolean
  {stats}
                                int, long, float or double (named statistics)
  bin_upper_s, bin_counts       array of float / array of [null, long]
Nothing else: no other field names, nested records, maps, bytes, fixed, other arrays or
unions, named-type references, other logical types, or attributes such as "privacy".
"""


def _wrap(names: tuple[str, ...] | list[str]) -> str:
    import textwrap

    return "\n  ".join(textwrap.wrap(", ".join(names), 88))


def _lint_help() -> str:
    from privaflow.schemas.privacy import CONFIG_DIMENSIONS, STATISTICS
    from privaflow.schemas.vocabulary import VOCABULARIES

    return LINT_HELP.format(dims=_wrap(CONFIG_DIMENSIONS), enums=_wrap(list(VOCABULARIES)), stats=_wrap(STATISTICS))


class _LintCommand(click.Command):
    # the allowlist is printed from the module that enforces it, so --help cannot drift from it
    def get_help(self, ctx: click.Context) -> str:
        self.help = _lint_help()
        return super().get_help(ctx)


@schemas.command("lint", cls=_LintCommand)
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
def schemas_lint(files: tuple[Path, ...]) -> None:
    from privaflow.schemas.privacy import partner_schema_violations

    bad = unreadable = 0
    targets: list[tuple[str, Any]] = []
    if files:
        for path in files:
            try:
                targets.append((str(path), json.loads(path.read_text(encoding="utf-8"))))
            except OSError as e:
                click.echo(f"error: cannot read {path}: {e.strerror or e}", err=True)
                unreadable += 1
            except UnicodeDecodeError as e:
                click.echo(f"error: {path} is not UTF-8 text ({e.reason} at byte {e.start})", err=True)
                unreadable += 1
            except json.JSONDecodeError as e:
                click.echo(f"error: {path} is not JSON: {e.msg} at line {e.lineno} column {e.colno}", err=True)
                unreadable += 1
            except RecursionError:
                click.echo(f"error: {path} is not JSON this tool can read: nested too deeply", err=True)
                unreadable += 1
    else:
        from privaflow.schemas.codec import SCHEMA_DIR, load_schema
        from privaflow.schemas.topics import PARTNER_TABLES

        targets = [(str(SCHEMA_DIR / f"{name}.avsc"), load_schema(name)) for name in PARTNER_TABLES.values()]
    for where, schema in targets:
        problems = partner_schema_violations(schema)
        bad += bool(problems)
        for p in problems:
            click.echo(f"{where}: {p}")
        if not problems:
            name = schema.get("namespace", "") + "." + schema["name"] if schema.get("namespace") else schema["name"]
            click.echo(f"{where}: OK ({name})")
    if bad:
        click.echo(f"{bad} of {len(targets)} schema(s) break the partner rules "
                   "(`privaflow schemas lint --help` lists what is allowed)", err=True)
    sys.exit(2 if unreadable else 1 if bad else 0)
