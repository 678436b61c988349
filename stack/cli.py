"""`privaflow stack ...`: the local stack's commands. Only this command (and `privaflow demo`) loads the
dev stack, and only where it is installed (a source checkout after `make setup`)."""

from __future__ import annotations

import json
import sys

import click

from privaflow_stack.local import LocalStack, StackError, fetch

USER_ERRORS = (StackError,)  # the CLI prints these as one line, without a traceback


@click.group()
def stack() -> None:
    """The local stack: a real Apache Kafka broker (KRaft) and Apicurio schema registry.

    Components come from Maven Central (needs Java 17+ and 21+ for the registry, and Maven);
    data and logs live in .privaflow/ (override with PRIVAFLOW_HOME).
    """


@stack.command("up")
@click.option("--secure", is_flag=True, help="SASL/SCRAM users (edge, streams, registry, one per partner) and "
              "ACLs as in Kubernetes; passwords go to .privaflow/data/credentials.json.")
@click.option("--no-registry", is_flag=True, help="Start only the broker.")
def stack_up(secure: bool, no_registry: bool) -> None:
    """Fetch (first time), start both components and create the topics. Safe to repeat."""
    s = LocalStack(secure=secure or None)
    s.up(registry=not no_registry)
    proto = "SASL_PLAINTEXT/SCRAM-SHA-512" if s.secure else "PLAINTEXT"
    click.echo(f"kafka     {s.bootstrap} ({proto})")
    if not no_registry:
        click.echo(f"registry  {s.registry_url}")


@stack.command("down")
def stack_down() -> None:
    """Stop exactly the processes `stack up` started."""
    LocalStack().down()


@stack.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def stack_status(as_json: bool) -> None:
    """Show whether each component runs, where it listens and where it logs. Exit 1 if not ready."""
    st = LocalStack().status()
    if as_json:
        click.echo(json.dumps(st, indent=2))
    else:
        for name, s in st.items():
            state = "ready" if s["ready"] else ("starting/unhealthy" if s["pid"] else "stopped")
            click.echo(f"{name:9} {state:18} {s['listening']}  pid={s['pid']}  log={s['log']}")
    sys.exit(0 if all(s["ready"] for s in st.values()) else 1)


@stack.command("fetch")
def stack_fetch() -> None:
    """Only resolve the components from Maven Central (make setup runs this)."""
    fetch()


@stack.command("reset")
@click.confirmation_option(prompt="Delete all local Kafka data (detections, tables, schemas)?")
def stack_reset() -> None:
    """Stop the stack and delete its data."""
    LocalStack().reset()
