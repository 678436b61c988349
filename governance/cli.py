"""`privaflow notice`, `privaflow privacy report` and `privaflow retention apply`: what the operator
must be able to show and do about the data a site keeps."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from privaflow.governance.notice_texts import LANGS
from privaflow.schemas.site import ConfigError, SiteConfig, load_site_config


def _load(config_path: str) -> SiteConfig:
    try:
        return load_site_config(config_path)
    except ConfigError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)


def _write(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=not text.endswith("\n"))


@click.command("notice")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="Site YAML file.")
@click.option("--camera", required=True, help="Camera id from the site config.")
@click.option("--lang", required=True, type=click.Choice(LANGS), help="Language of the notice.")
@click.option("--format", "fmt", default="md", show_default=True, type=click.Choice(["md", "html"]),
              help="Markdown, or a self-contained printable HTML page.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file instead of stdout.")
def notice(config_path: str, camera: str, lang: str, fmt: str, output: str | None) -> None:
    """The sign to put up at a camera (G0, T3): operator, purpose, what is captured, what is discarded,
    what is kept and for how long, who receives what, and whom to contact.

    Needs `operator` with name, contact and purpose in the site config (exit 2 naming what is missing).

    \b
      privaflow notice --config examples/site.yaml --camera street --lang ja --format html -o sign.html
    """
    site = _load(config_path)
    try:
        from privaflow.governance.notice import notice_html, notice_markdown

        text = (notice_html if fmt == "html" else notice_markdown)(site, camera, lang)
    except ConfigError as e:
        click.echo(f"error: {config_path}: {e}", err=True)
        sys.exit(2)
    _write(text, output)


@click.group("privacy")
def privacy() -> None:
    """What the site does with camera data, for the operator, auditors and anyone who asks."""


@privacy.command("report")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="Site YAML file.")
@click.option("--format", "fmt", default="md", show_default=True, type=click.Choice(["json", "md"]))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file instead of stdout.")
def privacy_report_cmd(config_path: str, fmt: str, output: str | None) -> None:
    """Per camera: what is captured, processed, kept and for how long, shared with whom, masks in force
    and k-anonymity thresholds, with the requirement ids each answers (G0, T3-T10). JSON follows
    privaflow.governance.report.REPORT_SCHEMA."""
    from privaflow.governance.report import privacy_report, report_markdown

    site = _load(config_path)
    try:
        report = privacy_report(site, Path(config_path).name)
    except ConfigError as e:
        click.echo(f"error: {config_path}: {e}", err=True)
        sys.exit(2)
    if report["missing"]:
        click.echo(f"warning: {config_path}: {', '.join(report['missing'])} missing; no public notice can be "
                   "printed", err=True)
    _write(json.dumps(report, indent=2, ensure_ascii=False) + "\n" if fmt == "json" else report_markdown(report),
           output)


@click.group("retention")
def retention() -> None:
    """Topic retention, from the site config."""


@retention.command("apply")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="Site YAML file.")
def retention_apply(config_path: str) -> None:
    """Create missing topics and set every topic's retention and cleanup policy on a running cluster."""
    from privaflow.schemas.codec import bootstrap_servers
    from privaflow.schemas.topics import apply_retention, ensure_topics, topics_for_site

    topics = topics_for_site(_load(config_path))
    ensure_topics(bootstrap_servers(), topics)
    for name, ms in apply_retention(bootstrap_servers(), topics).items():
        click.echo(f"{name:45} retention {int(ms) / 86_400_000:g} days")
