"""`privaflow`: the command line. Each subcommand group lives with the code it drives."""

from __future__ import annotations

import json
import logging
import sys

import click

from schemas.site import ConfigError


class _Group(click.Group):
    """Turns our own errors into one clear line and exit code 2 instead of a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        from schemas.codec import RegistryError
        from stack.local import StackError

        try:
            return super().invoke(ctx)
        except (ConfigError, StackError, RegistryError) as e:
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


# ---------------------------------------------------------------- stack

@main.group()
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
    from stack.local import LocalStack

    s = LocalStack(secure=secure or None)
    s.up(registry=not no_registry)
    proto = "SASL_PLAINTEXT/SCRAM-SHA-512" if s.secure else "PLAINTEXT"
    click.echo(f"kafka     {s.bootstrap} ({proto})")
    if not no_registry:
        click.echo(f"registry  {s.registry_url}")


@stack.command("down")
def stack_down() -> None:
    """Stop exactly the processes `stack up` started."""
    from stack.local import LocalStack

    LocalStack().down()


@stack.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def stack_status(as_json: bool) -> None:
    """Show whether each component runs, where it listens and where it logs. Exit 1 if not ready."""
    from stack.local import LocalStack

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
    from stack.local import fetch

    fetch()


@stack.command("reset")
@click.confirmation_option(prompt="Delete all local Kafka data (detections, tables, schemas)?")
def stack_reset() -> None:
    """Stop the stack and delete its data."""
    from stack.local import LocalStack

    LocalStack().reset()


# ---------------------------------------------------------------- schemas

@main.group()
def schemas() -> None:
    """The Avro contract and the schema registry."""


@schemas.command("check")
def schemas_check() -> None:
    """Tell whether the local schemas are compatible with what the registry holds (exit 1 if not)."""
    from schemas.codec import SchemaRegistry, check_all, registry_url
    from schemas.privacy import assert_partner_schemas_clean

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
    from schemas.codec import SchemaRegistry, register_all

    register_all(SchemaRegistry(), progress=click.echo)


# ---------------------------------------------------------------- config

@main.group()
def config() -> None:
    """The site configuration file."""


@config.command("check")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="Site YAML file.")
@click.option("--models/--no-models", default=True, show_default=True,
              help="Load each camera's detector model, as the edge agent will.")
def config_check(config_path: str, models: bool) -> None:
    """Validate a site file the way the edge agents and stream workers will use it.

    Loads the file, builds each camera's privacy filter, detector and counting geometry and the
    worker's per-camera state from it, and prints a one-screen summary plus warnings about settings
    that load but cannot work as meant. Exits 2 with the file, the field and what was expected when
    the config cannot be used.

    \b
    Example:
      privaflow config check --config examples/site.yaml
    """
    from schemas.site import load_site_config
    from schemas.site_check import site_warnings, summary

    site = load_site_config(config_path)
    accepted = _camera_objects(site, config_path, models)
    for line in summary(site, config_path):
        click.echo(line)
    warnings = site_warnings(site)
    for w in warnings:
        click.echo(f"  warning: {w}")
    click.echo(f"ok: {accepted}" + (f"; {len(warnings)} warning(s)" if warnings else ""))


def _camera_objects(site: object, config_path: str, models: bool) -> str:
    """Build what an edge agent and a stream worker build per camera; ConfigError naming the camera and
    the field if one refuses. Returns what was checked, for the last line of `config check`."""
    import numpy as np

    from schemas.site import SiteConfig

    assert isinstance(site, SiteConfig)
    checked = []
    try:
        from edge.agent import build_detector, detector_spec
        from edge.detect import DetectorError
        from edge.privacy import PrivacyFilter
        from edge.tracking import GroundMotion
    except ImportError:
        pass
    else:
        for i, cam in enumerate(site.cameras):
            where = f"{config_path}: cameras.{i}.detector ({cam.id})"
            try:
                detector_spec(cam)
                if models:
                    build_detector(cam)
            except DetectorError as e:
                raise ConfigError(f"{where}: {e}") from None
            except (ValueError, FileNotFoundError) as e:
                raise ConfigError(f"{where}: {e}") from None
            PrivacyFilter(cam.max_width, cam.privacy_masks).apply(np.zeros((48, 64, 3), np.uint8))
            if cam.homography is not None:
                GroundMotion(cam.homography).update([1], [[0.5, 0.5]], 0)
        checked.append("the edge agent accepts every camera" + (" and its detector model" if models else ""))
    try:
        from streams.consume import CameraState
    except ImportError:
        pass
    else:
        for cam in site.cameras:
            CameraState.new(site, cam.id).to_state()
        checked.append("the stream worker accepts every camera's lines and zones")
    return "; ".join(checked) or "loaded (edge and streams are not installed here)"


# ---------------------------------------------------------------- topics / retention

@main.group()
def retention() -> None:
    """Topic retention, from the site config."""


@retention.command("apply")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="Site YAML file.")
def retention_apply(config_path: str) -> None:
    """Create missing topics and set every topic's retention and cleanup policy on a running cluster."""
    from schemas.codec import bootstrap_servers
    from schemas.site import load_site_config
    from stack.topics import apply_retention, ensure_topics, topics_for_site

    topics = topics_for_site(load_site_config(config_path))
    ensure_topics(bootstrap_servers(), topics)
    for name, ms in apply_retention(bootstrap_servers(), topics).items():
        click.echo(f"{name:45} retention {int(ms) / 86_400_000:g} days")


def _add_optional(group_path: str, attr: str) -> None:
    """Attach a subcommand group that lives with its code, if that code is installed."""
    import importlib

    try:
        mod = importlib.import_module(group_path)
    except ImportError as e:
        if e.name and e.name.startswith(group_path.split(".")[0]):
            return
        raise
    main.add_command(getattr(mod, attr))


for _path, _attr in (("edge.cli", "edge"), ("streams.cli", "streams"), ("privaflow.demo", "demo"),
                     ("privaflow.api", "api"),
                     ("privaflow.governance", "notice"), ("privaflow.governance", "privacy")):
    _add_optional(_path, _attr)
