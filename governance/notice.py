"""The public notice at the place of capture (`privaflow notice`; G0, T3), in Markdown or as a
printable HTML page, from the same facts as the privacy report (`governance.facts`)."""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from privaflow.governance.facts import (
    K_TABLES,
    CameraFacts,
    camera_facts,
    md_escape,
    missing_notice_items,
    percent,
)
from privaflow.governance.notice_texts import TEXTS
from privaflow.schemas.site import ConfigError, SiteConfig
from privaflow.schemas.vocabulary import ROAD_FURNITURE
from privaflow.streams.tables import SPECS


def _period(days: float, t: dict[str, Any]) -> str:
    if days >= 1 and float(days).is_integer():
        n = int(days)
        return str(t["day" if n == 1 else "days"]).format(n=n)
    hours = round(days * 24, 2)
    return str(t["hour" if hours == 1 else "hours"]).format(n=f"{hours:g}")




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
                                        tables=str(t["table_sep"]).join(SPECS[x].notice[lang] for x in tables))
        if p.dp:
            line += str(t["partner_dp"])
        elif any(x in K_TABLES for x in tables):
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
    if f.mobile is not None:
        title, lead, sections = _mobile(f, site, t, esc, sections)
    return title, lead, sections, str(t["camera_id"]).format(camera=esc(f.camera_id))


def _mobile(f: CameraFacts, site: SiteConfig, t: dict[str, Any], esc: Callable[[str], str],
            sections: list[_Section]) -> tuple[str, str, list[_Section]]:
    """The sticker on a vehicle (the guidebook's case 4): the same sections, what a moving camera reads
    instead of what a fixed one counts, and where nothing is recorded."""
    assert f.mobile is not None and site.operator is not None
    m = f.mobile
    furniture = [c for c in f.classes if c in ROAD_FURNITURE] or ["traffic light", "stop sign"]
    captured = [str(t["video"]).format(width=f.max_width),
                str(t["mobile_objects"]).format(furniture=_join([esc(t["classes"].get(c, c)) for c in furniture], t)),
                str(t["mobile_position"]).format(edge=m.cell_edge_m, res=m.h3_resolution)]
    by_radius: dict[float, int] = {}
    for _zone, radius in m.privacy_zones:
        by_radius[radius] = by_radius.get(radius, 0) + 1
    zones = [str(t["mobile_zone_items"]).format(radius=f"{r:g}", count=n) for r, n in sorted(by_radius.items())]
    if m.trip_end_radius_m > 0:
        zones.append(str(t["mobile_trip_ends"]).format(radius=f"{m.trip_end_radius_m:g}"))
    kept = [str(t["mobile_detections"]).format(period=_period(site.retention.detections_days, t)),
            str(t["mobile_aggregates"]).format(period=_period(site.retention.partner_days, t))]
    out = []
    for s in sections:
        if s.heading == t["captured"]:
            s = _Section(s.heading, [], captured)
        elif s.heading == t["discarded"]:
            s = _Section(s.heading, [], [str(t["frames"])])
        elif s.heading == t["kept"]:
            s = _Section(s.heading, s.paragraphs, kept)
        out.append(s)
        if s.heading == t["discarded"]:
            out.append(_Section(t["mobile_zones"], [] if zones else [t["mobile_no_zones"]], zones))
    return t["mobile_title"], str(t["mobile_lead"]).format(operator=esc(site.operator.name)), out




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
