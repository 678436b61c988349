"""`privaflow edge`: run the edge agent for one camera (also `python -m privaflow.edge.cli`)."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from types import FrameType

import click

from privaflow.edge.capture import CaptureError, source_kind
from privaflow.edge.records import DEFAULT_BATCH_FRAMES, DEFAULT_BATCH_MS
from privaflow.schemas.codec import IncompatibleSchemaError, RegistryAuthError
from privaflow.schemas.site import ConfigError, load_site_config


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def edge() -> None:
    """The edge agent: video in, anonymised detection records out — never a frame.

    Each frame is downscaled and privacy-masked, objects are detected and tracked, and what was
    seen (class, box, pseudonymous track id, speed, colour...) goes to Kafka, several frames per
    record.
    """


@edge.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Site YAML (see examples/site.yaml).")
@click.option("--camera", "camera_id", required=True, help="Camera id from the site config.")
@click.option("--source", help="Override the camera's source: a video file, rtsp:// or http:// URL, a "
              "device number such as 0, or a folder of images.")
@click.option("--sink", default="kafka", show_default=True, metavar="kafka|file:PATH",
              help="Where records go: the Kafka topic privaflow.detections.v2, or an Avro file.")
@click.option("--batch-frames", default=DEFAULT_BATCH_FRAMES, show_default=True, type=click.IntRange(1, 1000),
              help="Frames per record at most: one Kafka message carries this many frames.")
@click.option("--batch-ms", default=DEFAULT_BATCH_MS, show_default=True, type=click.IntRange(0, 60_000),
              help="A record leaves at the latest this long after its first frame (bounds the latency "
                   "batching adds; 0: every frame alone).")
@click.option("--max-frames", type=click.IntRange(min=1), help="Stop after this many frames. Files are then "
              "read as fast as possible (no pacing, no drops).")
@click.option("--spool-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where records wait while the broker is unreachable  [default: .privaflow/spool/CAMERA]")
@click.option("--spool-max-mb", default=256, show_default=True, type=click.IntRange(min=1),
              help="Spool bound; above it the oldest records are dropped (and counted).")
@click.option("--metrics-port", type=click.IntRange(0, 65535),
              help="Serve /healthz and Prometheus /metrics on this port.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="Address for --metrics-port: this machine only unless you open it (e.g. 0.0.0.0 for a "
                   "kubelet probe or a Prometheus elsewhere).")
@click.option("--realtime/--no-realtime", default=None,
              help="Drop frames when analysis falls behind  [default: on for streams and devices, off for files]")
@click.option("--pace/--no-pace", default=None,
              help="Replay files at their own speed  [default: on, off with --max-frames]")
@click.option("-q", "--quiet", is_flag=True, help="No status line (it goes to stderr every 2 s).")
def run(config_path: Path, camera_id: str, source: str | None, sink: str, batch_frames: int, batch_ms: int,
        max_frames: int | None, spool_dir: Path | None, spool_max_mb: int, metrics_port: int | None,
        metrics_host: str, realtime: bool | None, pace: bool | None, quiet: bool) -> None:
    """Run the agent for one camera until its source ends (or Ctrl-C).

    \b
    Examples:
      privaflow edge run --config examples/site.yaml --camera campus
      privaflow edge run --config examples/site.yaml --camera campus --sink file:/tmp/campus.avro --max-frames 100
      privaflow edge run --config site.yaml --camera gate --source rtsp://10.0.0.7/stream1 --metrics-port 9108

    Status (frames, fps, objects, dropped frames, spool depth) is printed to stderr every 2 s.
    A record carries up to --batch-frames frames and leaves at most --batch-ms after its first.
    Broker and registry addresses come from PRIVAFLOW_BOOTSTRAP and PRIVAFLOW_REGISTRY_URL.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        site = load_site_config(config_path)
        camera = site.camera(camera_id)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    src: str | int = camera.source if source is None else (int(source) if source.isdigit() else source)
    if pace is None:
        pace = max_frames is None and source_kind(src) in ("file", "images")

    from privaflow.edge.agent import Agent, build_detector
    from privaflow.edge.detect import DetectorError
    from privaflow.edge.publish import AvroFileSink, KafkaSink, Sink

    try:
        detector = build_detector(camera)
    except DetectorError as e:  # names the model file and what was expected
        raise click.ClickException(f"{config_path}: camera {camera.id}: detector: {e}") from None
    except (ValueError, FileNotFoundError) as e:  # names the `detector.` field
        raise click.ClickException(f"{config_path}: cameras[{camera.id}].{e}") from None
    out: Sink
    if sink == "kafka":
        try:
            out = KafkaSink(spool_dir or Path(".privaflow") / "spool" / camera.id, key=camera.id,
                            spool_max_bytes=spool_max_mb << 20)
        except (IncompatibleSchemaError, RegistryAuthError) as e:
            raise click.ClickException(str(e)) from None
    elif sink.startswith("file:") and len(sink) > 5:
        out = AvroFileSink(sink[5:])
    else:
        raise click.BadParameter("expected 'kafka' or 'file:PATH'", param_hint="--sink")
    from privaflow.edge.position import PositionError

    try:
        agent = Agent(site.site_id, camera, detector, out, source=src, realtime=realtime, pace=pace,
                      max_frames=max_frames, batch_frames=batch_frames, batch_ms=batch_ms,
                      metrics_port=metrics_port, metrics_host=metrics_host,
                      status_every_s=0 if quiet else 2.0)
    except PositionError as e:  # a mobile camera's position source: names the file and what was wrong
        out.close()
        raise click.ClickException(f"{config_path}: camera {camera.id}: mobile.position: {e}") from None
    if agent.mobile is not None and not quiet:
        click.echo(f"edge {camera.id}: position track {agent.mobile.track.report.summary()}", err=True)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        click.echo(f"edge {camera.id}: {signal.Signals(signum).name}, finishing the current frame", err=True)
        agent.stop()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        agent.run()
    except CaptureError as e:
        raise click.ClickException(f"camera {camera.id}: {e}") from None
    except (IncompatibleSchemaError, RegistryAuthError) as e:
        raise click.ClickException(str(e)) from None


if __name__ == "__main__":
    sys.exit(edge())
