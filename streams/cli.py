"""`privaflow streams ...`: run the stream workers (also `python -m streams.cli worker`)."""

from __future__ import annotations

from pathlib import Path

import click

from privaflow.schemas.site import ConfigError, load_site_config


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def streams() -> None:
    """Stream workers: Kafka detections -> tracks -> windowed tables -> partner topics.

    Start as many workers as you like with the same site config: they share the detections
    partitions through one consumer group (Faust app id `privaflow-streams`); each camera is
    handled by exactly one of them at a time. Kafka and the registry are taken from
    PRIVAFLOW_BOOTSTRAP / PRIVAFLOW_REGISTRY_URL (default: the local stack).
    """


@streams.command("worker")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Site YAML file (cameras, lines, zones, windows, partners).")
@click.option("--web-port", type=int, default=None,
              help="Port of /healthz, /readyz, /metrics and /tables/{table}.  [default: 6066, or PRIVAFLOW_WEB_PORT]")
@click.option("--web-host", default=None, metavar="ADDRESS",
              help="Address of that port. /tables shows unsuppressed aggregates of open windows, so only this "
                   "machine may ask unless you open it (e.g. 0.0.0.0 behind a firewall or a network policy).  "
                   "[default: 127.0.0.1, or PRIVAFLOW_WEB_HOST]")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where table state lives on disk.  [default: .privaflow/streams, or PRIVAFLOW_STATE_DIR]")
@click.option("--store", type=click.Choice(["memory", "rocksdb"]), default=None,
              help="Table store. memory rebuilds state from the changelog topic at every start; rocksdb keeps "
                   "it on disk (needs the `rocksdb` extra) and only catches up.  [default: memory, or "
                   "PRIVAFLOW_STREAMS_STORE]")
@click.option("--idle-timeout", type=float, default=None, metavar="SECONDS",
              help="A camera silent this long (wall clock) has its watermark advanced by the silent time, so "
                   "the last windows of a stopped camera or a finished video still close.  [default: 60]")
@click.option("--batch-max", type=int, default=None, help="Records per batch at most.  [default: 2000]")
@click.option("--batch-within", type=float, default=None, metavar="SECONDS",
              help="Longest wait to fill a batch; bounds the latency batching adds.  [default: 0.2]")
@click.option("-l", "--loglevel", type=click.Choice(["debug", "info", "warn", "error"]), default="info",
              show_default=True)
def worker(config_path: Path, web_port: int | None, web_host: str | None, data_dir: Path | None, store: str | None,
           idle_timeout: float | None, batch_max: int | None, batch_within: float | None, loglevel: str) -> None:
    """Run one stream worker until stopped (Ctrl-C / SIGTERM).

    \b
    At start it refuses partner schemas that could carry identifying data, creates missing
    topics with the site's retentions, registers the schemas and restores camera state from the
    changelog; /readyz answers 200 once that is done. Records it cannot use go to
    privaflow.detections.dlq.v2 with the reason in the `error` header.

    \b
    Example:
      privaflow streams worker --config examples/site.yaml --web-port 6066
      curl 'localhost:6066/tables/traffic_volume?line=street-crosswalk&state=closed'
    """
    from privaflow.streams.settings import from_environment
    from privaflow.streams.worker import WorkerError, run

    try:
        site = load_site_config(config_path)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    try:
        settings = from_environment(site, web_port=web_port, web_host=web_host, data_dir=data_dir, store=store,
                                    idle_timeout_s=idle_timeout, batch_max=batch_max, batch_within_s=batch_within)
        run(settings, loglevel=loglevel)
    except (WorkerError, ValueError) as e:
        raise click.ClickException(str(e)) from None


@streams.command("road")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Site YAML file with at least one camera of kind mobile.")
@click.option("--settle", type=float, default=30.0, show_default=True, metavar="SECONDS",
              help="How long past a window's end (plus grace) a partition read to its end must stay quiet "
                   "before the window closes.")
@click.option("-l", "--loglevel", type=click.Choice(["debug", "info", "warn", "error"]), default="info",
              show_default=True)
def road(config_path: Path, settle: float, loglevel: str) -> None:
    """Run the road_conditions table over every mobile camera of the site (one process per site).

    \b
    Reads the mobile cameras' detection records from every partition, adds up per H3 cell, heading
    and window the distinct trips that passed, probe speed, vehicles ahead, people and road
    furniture, and publishes each closed window's cells that at least k distinct trips passed (k:
    the strictest of the partners receiving road_conditions) to privaflow.partner.road-conditions.v1.
    A restart re-publishes identical rows.

    \b
    Example:
      privaflow streams road --config examples/site.yaml
    """
    import logging
    import signal

    from privaflow.streams.road_worker import RoadWorker

    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        site = load_site_config(config_path)
        worker = RoadWorker(site, settle_s=settle)
    except (ConfigError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    signal.signal(signal.SIGINT, lambda *_: worker.stop())
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    try:
        worker.run()
    except RuntimeError as e:
        raise click.ClickException(str(e)) from None


if __name__ == "__main__":
    streams()
