"""What `privaflow config check` says about a site config that loads: a one-screen summary, and
warnings about settings that are valid but cannot work as meant (a line under a privacy mask never
counts anyone). Plain geometry on the config; building the edge's and the worker's objects from it
is the command's part (privaflow/cli.py), since schemas/ imports neither.

    >>> from schemas.site import parse_site_config
    >>> site = parse_site_config({"site_id": "s", "cameras": [{"id": "c", "source": 0,
    ...     "privacy_masks": [[[0, 0], [1, 0], [1, 0.5], [0, 0.5]]]}],
    ...     "lines": [{"id": "l", "camera": "c", "points": [[0.1, 0.2], [0.9, 0.2]]}]})
    >>> site_warnings(site)
    ["lines.0: line 'l' lies entirely under camera 'c''s privacy masks: nothing is detected there, so it never counts"]
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from privaflow.schemas.site import SiteConfig

_NOT_FILES = ("rtsp://", "rtsps://", "http://", "https://", "udp://", "tcp://", "rtmp://")


def _masks(site: SiteConfig, camera_id: str) -> Any:
    from shapely import Polygon, unary_union

    masks = site.camera(camera_id).privacy_masks
    return unary_union([Polygon(m) for m in masks]) if masks else None


def site_warnings(site: SiteConfig, base_dir: Path | None = None) -> list[str]:
    """Valid settings that will not do what they seem to: each names its field."""
    from shapely import LineString, Polygon

    out = []
    for i, line in enumerate(site.lines):
        covered = _masks(site, line.camera)
        if covered is not None and covered.covers(LineString(line.points)):
            out.append(f"lines.{i}: line {line.id!r} lies entirely under camera {line.camera!r}'s privacy masks: "
                       "nothing is detected there, so it never counts")
    for i, zone in enumerate(site.zones):
        covered = _masks(site, zone.camera)
        poly = Polygon(zone.polygon)
        if covered is not None and covered.intersection(poly).area >= 0.99 * poly.area:
            out.append(f"zones.{i}: zone {zone.id!r} lies under camera {zone.camera!r}'s privacy masks: it will "
                       "always read empty")
    for i, cam in enumerate(site.cameras):
        src = cam.source
        if isinstance(src, str) and not src.isdigit() and not src.lower().startswith(_NOT_FILES):
            path = Path(src) if base_dir is None or Path(src).is_absolute() else base_dir / src
            if not path.exists():
                out.append(f"cameras.{i}.source: {src!r} does not exist here (fine if this config is for "
                           "another machine)")
    for i, p in enumerate(site.partners):
        if p.dp and p.privacy.epsilon_per_window is not None:
            windows = sum(86_400 // int(getattr(site.windows, t)) for t in p.tables)
            affordable = int((p.privacy.epsilon_per_day or 0) / p.privacy.epsilon_per_window + 1e-9)
            if affordable < windows:
                hours = 24 * affordable / windows
                out.append(f"partners.{i}.privacy: {p.id!r} spends {p.privacy.epsilon_per_window:g} per window on "
                           f"{windows} windows a day, but its budget of {p.privacy.epsilon_per_day:g} covers "
                           f"{affordable}: after about {hours:.1f} h of each UTC day nothing is published to it")
    out += _intersection_warnings(site)
    if not site.mobile_cameras():
        for i, p in enumerate(site.partners):
            if "road_conditions" in p.tables:
                out.append(f"partners.{i}.tables: {p.id!r} receives road_conditions, but no camera is of kind "
                           "mobile, so that table stays empty")
    if not any(c.attributes for c in site.cameras):
        for i, p in enumerate(site.partners):
            if "attributes" in p.tables:
                out.append(f"partners.{i}.tables: {p.id!r} receives attributes, but no camera has attributes: "
                           "true, so that table stays empty")
    return out


_INTERSECTION_TABLES = ("congestion", "intersection_volume", "turning_movements")


def _intersection_warnings(site: SiteConfig) -> list[str]:
    out = []
    for i, cam in enumerate(site.cameras):
        if cam.vehicles_only and cam.attributes:
            out.append(f"cameras.{i}.attributes: camera {cam.id!r} counts vehicles only, so it never estimates "
                       "anyone's age or gender: attributes: true does nothing there")
        if cam.vehicles_only and not cam.privacy_masks:
            out.append(f"cameras.{i}.privacy_masks: camera {cam.id!r} counts vehicles only but masks nothing: the "
                       "intersection standard (T4) asks that sidewalks be masked so pedestrians never appear")
    for xi, x in enumerate(site.intersections):
        for ai, a in enumerate(x.approaches):
            cam = site.camera(a.camera)
            if not cam.vehicles_only:
                others = [c for c in cam.classes if c not in ("car", "motorcycle", "bus", "truck")]
                if others:
                    out.append(f"intersections.{xi}.approaches.{ai}.camera: camera {cam.id!r} also counts "
                               f"{', '.join(others)}; the intersection standard counts vehicles only (T2): set "
                               "vehicles_only: true on it")
    watched: dict[tuple[str, str], int] = {}
    for x in site.intersections:
        for a in x.approaches:
            watched[(x.id, a.camera)] = watched.get((x.id, a.camera), 0) + 1
    for i, p in enumerate(site.partners):
        for table in _INTERSECTION_TABLES:
            if table in p.tables and not site.intersections:
                out.append(f"partners.{i}.tables: {p.id!r} receives {table}, but the site has no intersections: "
                           "that table stays empty")
        if "turning_movements" in p.tables and site.intersections and max(watched.values()) < 2:
            out.append(f"partners.{i}.tables: {p.id!r} receives turning_movements, but no camera sees two "
                       "approaches of one intersection (vehicles are never matched across cameras), so that "
                       "table stays empty")
    return out


def summary(site: SiteConfig, source: str, approach_note: Callable[[str, str], str | None] | None = None
            ) -> list[str]:
    """The site on one screen: what is watched, what is counted, what is kept and who receives what.
    `approach_note(intersection id, approach id)` may add a line under an approach (the command adds
    its lanes' lengths on the ground)."""
    lines = [f"{source}: valid site config for site {site.site_id!r}"]
    for c in site.cameras:
        masks = len(c.privacy_masks)
        detector = c.detector.kind if c.detector.path is None else f"{c.detector.kind} {c.detector.path}"
        counts = f"vehicles only ({', '.join(c.classes)})" if c.vehicles_only else ", ".join(c.classes)
        lines.append(f"  camera {c.id}: {c.source}, {c.max_width} px wide, {c.fps:g} fps, detect every "
                     f"{c.detect_every}, {masks} privacy mask{'s' * (masks != 1)}, {detector}; counts "
                     f"{counts}{'; estimates age and gender' if c.attributes else ''}"
                     f"{'; ground homography' if c.homography else ''}")
        if c.mobile is not None:
            m, src = c.mobile, c.mobile.position
            lines.append(f"    mobile: positions from {src.kind} {src.path} (align {src.align}), H3 resolution "
                         f"{m.h3_resolution}, {len(m.privacy_zones)} privacy zone{'s' * (len(m.privacy_zones) != 1)}, "
                         f"nothing within {m.trip_end_radius_m:g} m of a trip's start or end")
        for ln in site.lines_for(c.id):
            lines.append(f"    line {ln.id}: {ln.directions[0]} / {ln.directions[1]}")
        for z in site.zones_for(c.id):
            cap = f", capacity {z.capacity}" if z.capacity else ""
            lines.append(f"    zone {z.id}: {len(z.polygon)} points{cap}")
    for x in site.intersections:
        cams = sorted({a.camera for a in x.approaches})
        lines.append(f"  intersection {x.id}{f' ({x.name})' if x.name else ''}: {len(x.approaches)} approach"
                     f"{'es' * (len(x.approaches) != 1)} on camera{'s' * (len(cams) != 1)} {', '.join(cams)}")
        for a in x.approaches:
            out = (f", leaves crossing {a.outbound.line} {a.outbound.direction}" if a.outbound
                   else ", no outbound line")
            lines.append(f"    approach {a.id}: {a.road} from {a.compass}, camera {a.camera}; enters crossing "
                         f"{a.inbound.line} {a.inbound.direction}{out}; lanes {', '.join(a.lanes)}; queue from "
                         f"{a.stop_line or a.inbound.line}; free flow {a.free_flow_kmh:g} km/h")
            note = approach_note(x.id, a.id) if approach_note else None
            if note:
                lines.append(f"      {note}")
    w = site.windows
    road = f", road_conditions {w.road_conditions} s" if site.mobile_cameras() else ""
    road += (f", congestion {w.congestion} s, intersection_volume {w.intersection_volume} s, turning_movements "
             f"{w.turning_movements} s" if site.intersections else "")
    lines.append(f"  windows: traffic_volume {w.traffic_volume} s, occupancy {w.occupancy} s, flow_lines "
                 f"{w.flow_lines} s, dwell {w.dwell} s, attributes {w.attributes} s{road}, vehicle_colours "
                 f"{w.vehicle_colours} s; late records up to {w.grace_s} s, edge clocks up to {w.max_clock_skew_s} s "
                 "ahead")
    op = site.operator.token_env if site.operator else None
    lines.append(f"  retention: detections and events {site.retention.detections_days:g} days, partner tables "
                 f"{site.retention.partner_days:g} days; "
                 + (f"operator view: token in ${op}" if op else "operator view: off (no operator.token_env)"))
    for p in site.partners:
        http = f"HTTP token in ${p.token_env}" if p.token_env else "no HTTP access"
        if p.dp:
            eps = p.epsilon_per_window(site.windows)
            how = (f"differential privacy (laplace), epsilon {p.privacy.epsilon_per_day:g} per camera and day, "
                   f"{eps:.3g} per window, {p.privacy.contributions_per_window} contribution(s) per track and window, "
                   f"own topics")
        else:
            how = f"k={p.k_anonymity}"
        lines.append(f"  partner {p.id}: {how}, {', '.join(p.tables)}; {http}")
    if not site.partners:
        lines.append("  no partners: nothing is published")
    return lines
