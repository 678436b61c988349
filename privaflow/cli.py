"""`privaflow`: the command line. Each subcommand group lives with the code it drives:

    edge       edge/cli.py        one camera -> anonymised detection records
    schemas    schemas/cli.py     the Avro contract against a registry
    streams    streams/cli.py     detections -> tables -> partner topics
    api        partner/api.py     the partner HTTP API and the operator dashboard
    notice, privacy, retention    governance/cli.py
    stack, demo                   stack/ (the local dev stack; only in a source checkout)
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys

import click

from privaflow.schemas.codec import RegistryError
from privaflow.schemas.site import ConfigError

# errors that are the user's to fix: one line on stderr and exit code 2, never a traceback; command
# groups that are loaded below add their own (`USER_ERRORS` in their module)
_user_errors: list[type[Exception]] = [ConfigError, RegistryError]


class _Group(click.Group):
    """Loads each subcommand only when it is used (click's lazy-group pattern), so that `privaflow notice`
    never imports the edge, the workers or the dev stack, and turns our own errors into one clear line
    and exit code 2 instead of a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *COMMANDS])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return super().get_command(ctx, name)
        module, attr = COMMANDS[name]
        if module.startswith("privaflow_stack") and importlib.util.find_spec("privaflow_stack") is None:
            return _NotInstalled(name, DEV_STACK)
        mod = importlib.import_module(module)
        _user_errors.extend(e for e in getattr(mod, "USER_ERRORS", ()) if e not in _user_errors)
        cmd: click.Command = getattr(mod, attr)
        return cmd

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except tuple(_user_errors) as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """privaflow — privacy-preserving camera analytics on Kafka.

    Cameras become anonymised detection records at the edge (never frames); stream workers turn
    them into k-anonymous occupancy, flow-line and traffic-volume tables for partners.

    \b
    Start here:
      privaflow stack up                        start a local Kafka + schema registry
      privaflow demo                            run the whole pipeline on sample footage
      privaflow edge run --config site.yaml --camera CAM
      privaflow streams worker --config site.yaml
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _NotInstalled(click.Command):
    """Stands in for a command whose code is not installed, and says where it comes from."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(name, help=f"(not installed) {why}", callback=self._refuse,
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
        self.why = why

    def _refuse(self) -> None:
        click.echo(f"error: {self.why}", err=True)
        sys.exit(2)


DEV_STACK = ("the local dev stack comes with a source checkout of privaflow: run `make setup` there "
             "(it installs stack/ as privaflow-stack)")

# command -> (module, attribute); `stack` and `demo` are the dev stack's and may be absent
COMMANDS: dict[str, tuple[str, str]] = {
    "edge": ("privaflow.edge.cli", "edge"),
    "schemas": ("privaflow.schemas.cli", "schemas"),
    "streams": ("privaflow.streams.cli", "streams"),
    "api": ("privaflow.partner.api", "api"),
    "notice": ("privaflow.governance.cli", "notice"),
    "privacy": ("privaflow.governance.cli", "privacy"),
    "retention": ("privaflow.governance.cli", "retention"),
    "config": ("privaflow.config", "config"),
    "stack": ("privaflow_stack.cli", "stack"),
    "demo": ("privaflow_stack.demo", "demo"),
}
