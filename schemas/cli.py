"""`privaflow schemas ...`: the Avro contract against a schema registry."""

from __future__ import annotations

import sys

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
