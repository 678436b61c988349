"""`privaflow config check`: a site file validated the way the edge agents and the stream workers
will use it. It lives beside the command line because it builds both sides' objects."""

from __future__ import annotations

from pathlib import Path

import click

from privaflow.schemas.site import ConfigError, SiteConfig


@click.group()
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
    from privaflow.schemas.site import load_site_config
    from privaflow.schemas.site_check import site_warnings, summary

    site = load_site_config(config_path)
    accepted = _camera_objects(site, config_path, models)
    ground, ground_warnings = _approaches_on_the_ground(site)
    for line in summary(site, config_path, lambda x, a: ground.get((x, a))):
        click.echo(line)
    warnings = site_warnings(site) + ground_warnings
    for w in warnings:
        click.echo(f"  warning: {w}")
    click.echo(f"ok: {accepted}" + (f"; {len(warnings)} warning(s)" if warnings else ""))


MIN_LANE_M, MAX_LANE_M = 5.0, 1000.0  # outside this a lane zone or its camera's homography is drawn wrong


def _approaches_on_the_ground(site: SiteConfig) -> tuple[dict[tuple[str, str], str], list[str]]:
    """Per approach, its lane zones measured on the ground (through the homography, as the worker
    measures queues), and warnings for lengths that cannot be a lane near a stop line."""
    from privaflow.streams.approaches import approach_geometry

    notes: dict[tuple[str, str], str] = {}
    warnings: list[str] = []
    for xi, x in enumerate(site.intersections):
        for ai, a in enumerate(x.approaches):
            g = approach_geometry(site, x, a)
            lengths = ", ".join(f"{m:.0f} m" for m in g.lane_lengths_m)
            notes[(x.id, a.id)] = (f"on the ground: lane zone{'s' * (len(a.lanes) != 1)} {lengths} upstream of "
                                   "the stop line")
            for li, m in enumerate(g.lane_lengths_m):
                if not MIN_LANE_M <= m <= MAX_LANE_M:
                    warnings.append(f"intersections.{xi}.approaches.{ai}.lanes.{li}: lane zone {a.lanes[li]!r} "
                                    f"measures {m:.1f} m upstream of the stop line on the ground; expected "
                                    f"{MIN_LANE_M:g} to {MAX_LANE_M:g} m (is it on the inbound side of the stop "
                                    "line, and the homography in metres?)")
    return notes, warnings


def _camera_objects(site: SiteConfig, config_path: str, models: bool) -> str:
    """Build what an edge agent and a stream worker build per camera; ConfigError naming the camera and
    the field if one refuses. Returns what was checked, for the last line of `config check`."""
    import numpy as np

    from privaflow.edge.agent import build_detector
    from privaflow.edge.detect import DetectorError
    from privaflow.edge.privacy import PrivacyFilter
    from privaflow.edge.tracking import GroundMotion
    from privaflow.streams.consume import CameraState

    for i, cam in enumerate(site.cameras):
        where = f"{config_path}: cameras.{i}.detector ({cam.id})"
        try:
            if models:
                build_detector(cam)
            elif cam.detector.path is not None and not Path(cam.detector.path).is_file():
                raise FileNotFoundError(f"detector.path: model file not found: {cam.detector.path}")
        except (DetectorError, ValueError, FileNotFoundError) as e:
            raise ConfigError(f"{where}: {e}") from None
        PrivacyFilter(cam.max_width, cam.privacy_masks).apply(np.zeros((48, 64, 3), np.uint8))
        if cam.mobile is not None and cam.mobile.position.kind != "nmea_serial":
            from privaflow.edge.position import PositionError, read_track

            try:  # a recorded track is read as the edge will; a serial receiver only when it runs
                read_track(cam.mobile.position)
            except PositionError as e:
                raise ConfigError(f"{config_path}: cameras.{i}.mobile.position ({cam.id}): {e}") from None
        if cam.homography is not None:
            GroundMotion(cam.homography).update([1], [[0.5, 0.5]], 0)
    for cam in site.cameras:
        CameraState.new(site, cam.id).to_state()
    return ("the edge agent accepts every camera" + (" and its detector model" if models else "")
            + "; the stream worker accepts every camera's lines and zones")
