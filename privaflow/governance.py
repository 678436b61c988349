"""What the operator must be able to say about each camera, generated from the site config:
the public notice at the place of capture (`privaflow notice`; G0, T3) and the privacy report
(`privaflow privacy report`; G0, T9, T10).

Both read the same facts (`camera_facts`): what a camera captures and at which resolution, which
areas are masked, what is processed and dropped at once, what is kept and for how long, and who
receives which table with which k-anonymity threshold. Nothing is typed in twice, so a notice
cannot promise something the config does not do.
"""

from __future__ import annotations

import html
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from privaflow.notice_texts import LANGS, TEXTS
from schemas.site import ConfigError, Partner, SiteConfig, load_site_config

MOTOR_VEHICLES = frozenset({"car", "motorcycle", "bus", "truck"})
COLOURED = MOTOR_VEHICLES | {"bicycle"}  # edge/attributes.py names the colour of these (COCO vehicles)
# tables whose small counts are withheld (streams/partners.py); occupancy is a head count, never split
K_TABLES = ("traffic_volume", "flow_lines", "attributes", "dwell")


# ---------------------------------------------------------------- facts

@dataclass(frozen=True)
class CameraFacts:
    """Everything a notice or report says about one camera, derived from the site config."""

    camera_id: str
    traffic: bool  # only motor vehicles are counted (the intersection standard's T2 camera)
    classes: tuple[str, ...]
    max_width: int
    mask_count: int
    mask_fraction: float
    speed: bool
    colour: bool
    attributes: bool
    tables: tuple[str, ...]  # partner tables this camera feeds
    shared: tuple[tuple[Partner, tuple[str, ...]], ...]  # partners receiving any of them


def mask_area_fraction(masks: list[list[tuple[float, float]]], resolution: int = 1000) -> float:
    """Share of the frame covered by the union of the mask polygons, rasterised."""
    if not masks:
        return 0.0
    import cv2
    import numpy as np

    canvas = np.zeros((resolution, resolution), np.uint8)
    for m in masks:  # one call per polygon: a single fillPoly call leaves overlaps unfilled (even-odd)
        cv2.fillPoly(canvas, [np.round(np.asarray(m, np.float64) * (resolution - 1)).astype(np.int32)], 1)
    return round(float(canvas.mean()), 4)


def camera_tables(site: SiteConfig, camera_id: str) -> tuple[str, ...]:
    """Partner tables fed by a camera: lines give traffic volumes, zones occupancy, dwell and flow
    lines, and an attributes camera with a line or zone gives attribute counts."""
    cam = site.camera(camera_id)
    lines, zones = site.lines_for(camera_id), site.zones_for(camera_id)
    out = []
    if lines:
        out.append("traffic_volume")
    if zones:
        out += ["occupancy", "flow_lines", "dwell"]
    if cam.attributes and (lines or zones):
        out.append("attributes")
    return tuple(out)


def camera_facts(site: SiteConfig, camera_id: str) -> CameraFacts:
    cam = site.camera(camera_id)
    tables = camera_tables(site, camera_id)
    shared = tuple((p, tuple(t for t in p.tables if t in tables)) for p in site.partners
                   if any(t in tables for t in p.tables))
    return CameraFacts(
        camera_id=cam.id, traffic=bool(cam.classes) and set(cam.classes) <= MOTOR_VEHICLES,
        classes=tuple(cam.classes), max_width=cam.max_width, mask_count=len(cam.privacy_masks),
        mask_fraction=mask_area_fraction([list(m) for m in cam.privacy_masks]), speed=cam.homography is not None,
        colour=bool(COLOURED & set(cam.classes)), attributes=cam.attributes and "person" in cam.classes,
        tables=tables, shared=shared)


def missing_notice_items(site: SiteConfig) -> list[str]:
    """Config items a public notice cannot do without (T3: operator and contact; G0: purpose)."""
    if site.operator is None:
        return ["operator.name", "operator.contact", "operator.purpose"]
    return [f"operator.{f}" for f in ("name", "contact", "purpose") if not getattr(site.operator, f).strip()]


def effective_k(site: SiteConfig) -> dict[str, int]:
    """The k each published table is suppressed with: the strictest of the partners receiving it
    (one topic per table is shared by all of them; streams/partners.py)."""
    out: dict[str, int] = {}
    for p in site.partners:
        for t in p.tables:
            out[t] = max(out.get(t, 0), p.k_anonymity)
    return out


# ---------------------------------------------------------------- notice

def _period(days: float, t: dict[str, Any]) -> str:
    if days >= 1 and float(days).is_integer():
        n = int(days)
        return str(t["day" if n == 1 else "days"]).format(n=n)
    hours = round(days * 24, 2)
    return str(t["hour" if hours == 1 else "hours"]).format(n=f"{hours:g}")


def percent(fraction: float) -> str:
    """`3.0%`, `25%`."""
    pct = fraction * 100
    return f"{pct:.1f}%" if pct < 10 else f"{pct:.0f}%"


def _join(words: list[str], t: dict[str, Any]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return str(t["list_sep"]).join(words[:-1]) + str(t["and"]) + words[-1]


@dataclass
class _Section:
    heading: str
    paragraphs: list[str]
    items: list[str]


def _notice_parts(site: SiteConfig, camera_id: str, lang: str,
                  esc: Callable[[str], str]) -> tuple[str, str, list[_Section], str]:
    """(title, lead, sections, camera line), every config value passed through `esc`."""
    missing = missing_notice_items(site)
    if missing:
        raise ConfigError(f"the notice needs {', '.join(missing)} in the site config (empty or missing)")
    assert site.operator is not None
    t = TEXTS[lang]
    f = camera_facts(site, camera_id)
    op = site.operator
    objects = _join([esc(t["classes"].get(c, c)) for c in f.classes], t)
    what = str(t["objects"]).format(objects=objects)
    what += (t["speed"] if f.speed else "") + (t["colour"] if f.colour else "") + \
        (t["attributes"] if f.attributes else "")
    captured = [str(t["video"]).format(width=f.max_width),
                str(t["masks"]).format(count=f.mask_count, percent=percent(f.mask_fraction))
                if f.mask_count else str(t["no_masks"]), what]
    discarded = [str(t["frames"])] + ([str(t["colour_crops"])] if f.colour else []) + \
        ([str(t["attribute_crops"])] if f.attributes else [])
    kept = [str(t["detections"]).format(period=_period(site.retention.detections_days, t)),
            str(t["aggregates"]).format(period=_period(site.retention.partner_days, t))]
    shared = []
    for p, tables in f.shared:
        line = str(t["partner"]).format(name=esc(p.name or p.id),
                                        tables=str(t["table_sep"]).join(t["tables"][x] for x in tables))
        if any(x in K_TABLES for x in tables):
            line += str(t["partner_k"]).format(k=p.k_anonymity)
        shared.append(line)
    sections = [
        _Section(t["purpose"], [esc(op.purpose)], []),
        _Section(t["captured"], [], captured),
        _Section(t["discarded"], [], discarded),
        _Section(t["kept"], [t["expiry"]], kept),
        _Section(t["shared"], [t["shared_note"]] if shared else [t["no_partners"]], shared),
        _Section(t["contact"], [str(t["contact_line"]).format(operator=esc(op.name), contact=esc(op.contact)),
                                t["requests"]], []),
    ]
    title = t["title_traffic"] if f.traffic else t["title"]
    lead = str(t["lead"]).format(operator=esc(op.name), objects=objects)
    return title, lead, sections, str(t["camera_id"]).format(camera=esc(f.camera_id))


def md_escape(text: str) -> str:
    # config text must not turn into markup or HTML where the Markdown is rendered
    return html.escape(text, quote=False).replace("\n", " ")


def notice_markdown(site: SiteConfig, camera_id: str, lang: str) -> str:
    title, lead, sections, camera = _notice_parts(site, camera_id, lang, md_escape)
    out = [f"# {title}", "", lead, ""]
    for s in sections:
        out += [f"## {s.heading}", ""]
        if s.items:
            out += [f"- {i}" for i in s.items] + [""]
        for p in s.paragraphs:
            out += [p, ""]
    out += [f"_{camera}_", ""]
    return "\n".join(out)


_CAMERA_SVG = ('<svg class="icon" viewBox="0 0 64 40" aria-hidden="true"><rect x="2" y="8" width="42" height="26" '
               'rx="4"/><polygon points="46,14 62,6 62,36 46,28"/><circle cx="16" cy="21" r="6" fill="#ffd400"/>'
               '</svg>')
_STYLE = """@page { size: A4; margin: 15mm; }
body { font-family: "Noto Sans JP", "Hiragino Sans", "Yu Gothic", Meiryo, system-ui, sans-serif; color: #111;
       max-width: 180mm; margin: 0 auto; line-height: 1.5; }
header { background: #ffd400; border: 4px solid #111; border-radius: 6px; padding: 6mm; text-align: center;
         -webkit-print-color-adjust: exact; print-color-adjust: exact; }
header h1 { font-size: 26pt; margin: 2mm 0 0; }
.icon { width: 22mm; fill: #111; }
.lead { font-size: 13pt; font-weight: bold; }
h2 { font-size: 14pt; border-bottom: 2px solid #111; margin: 6mm 0 2mm; }
ul { margin: 0; padding-left: 6mm; }
footer { margin-top: 8mm; font-size: 10pt; color: #444; }"""


def notice_html(site: SiteConfig, camera_id: str, lang: str) -> str:
    """A self-contained printable page (no external resources); all config text is escaped."""
    def esc(text: str) -> str:
        return html.escape(text, quote=True)

    title, lead, sections, camera = _notice_parts(site, camera_id, lang, esc)
    body = [f"<header>{_CAMERA_SVG}<h1>{title}</h1></header>", f'<p class="lead">{lead}</p>']
    for s in sections:
        body.append(f"<section><h2>{s.heading}</h2>")
        if s.items:
            body.append("<ul>" + "".join(f"<li>{i}</li>" for i in s.items) + "</ul>")
        body += [f"<p>{p}</p>" for p in s.paragraphs]
        body.append("</section>")
    body.append(f"<footer>{camera}</footer>")
    return (f'<!doctype html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{title} — {esc(camera_id)}</title>\n<style>\n{_STYLE}\n</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


# ---------------------------------------------------------------- command line

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
    privaflow.privacy_report.REPORT_SCHEMA."""
    from privaflow.privacy_report import privacy_report, report_markdown

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
