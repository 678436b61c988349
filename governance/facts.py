"""What a site does with camera data, per camera, derived from the site config once.

The public notice (`governance.notice`) and the privacy report (`governance.report`) both read
these facts: what a camera captures and at which resolution, which areas are masked, what it feeds,
and who receives which table under which k-anonymity threshold. Nothing is typed in twice, so a
notice cannot promise something the config does not do.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from privaflow.schemas.site import Partner, SiteConfig
from privaflow.streams.partners import strictest_k
from privaflow.streams.tables import SPECS, camera_tables

MOTOR_VEHICLES = frozenset({"car", "motorcycle", "bus", "truck"})
COLOURED = MOTOR_VEHICLES | {"bicycle"}  # edge/attributes.py names the colour of these (COCO vehicles)
# tables whose small counts are withheld: all of them, by one policy (streams/disclosure.py); their specs
# say in words what it means for each
K_TABLES = tuple(SPECS)


@dataclass(frozen=True)
class MobileFacts:
    """A vehicle-mounted camera's privacy settings, as a notice or report states them. Privacy zones by
    id and radius only: where a driver lives is exactly what they protect."""

    h3_resolution: int
    cell_edge_m: int  # average hexagon edge at that resolution
    privacy_zones: tuple[tuple[str, float], ...]  # (id, radius in metres)
    trip_end_radius_m: float
    trip_break_s: float


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
    mobile: MobileFacts | None = None  # set for a vehicle-mounted camera (G4)


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


def camera_facts(site: SiteConfig, camera_id: str) -> CameraFacts:
    cam = site.camera(camera_id)
    tables = camera_tables(site, camera_id)
    shared = tuple((p, tuple(t for t in p.tables if t in tables)) for p in site.partners
                   if any(t in tables for t in p.tables))
    mobile = None
    if cam.mobile is not None:
        import h3

        m = cam.mobile
        mobile = MobileFacts(m.h3_resolution, round(h3.average_hexagon_edge_length(m.h3_resolution, "m")),
                             tuple((z.id, z.radius_m) for z in m.privacy_zones), m.trip_end_radius_m, m.trip_break_s)
    return CameraFacts(
        mobile=mobile,
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
    """The k each shared table is suppressed with: the strictest of the k-anonymity partners receiving
    it (one topic per table is shared by all of them; differential-privacy partners have their own)."""
    return strictest_k(site)

def percent(fraction: float) -> str:
    """`3.0%`, `25%`."""
    pct = fraction * 100
    return f"{pct:.1f}%" if pct < 10 else f"{pct:.0f}%"


def md_escape(text: str) -> str:
    # config text must not turn into markup or HTML where the Markdown is rendered
    return html.escape(text, quote=False).replace("\n", " ")
