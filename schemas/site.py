"""The site configuration: one YAML file describing cameras, lines, zones, windows and partners.

Both the edge agent and the stream workers read it, so it lives with the other contracts.
Coordinates are normalised to 0..1 of the frame so a config survives a resolution change.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from privaflow.schemas.mobile import MobileSettings
from privaflow.schemas.topics import PARTNER_TABLES
from privaflow.schemas.vocabulary import OBJECT_CLASSES as COCO_CLASSES  # the class names a record may carry
from privaflow.schemas.vocabulary import VEHICLE_CLASSES

Point = tuple[Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]]
TableName = Literal["traffic_volume", "occupancy", "flow_lines", "dwell", "attributes", "road_conditions",
                    "congestion", "intersection_volume", "turning_movements", "vehicle_colours"]
Compass = Literal["N", "NE", "E", "SE", "S", "SW", "W", "NW"]


MAX_ID_LENGTH = 64
MIN_LINE_LENGTH = 0.01  # normalised; a shorter line is a slip of the mouse, and thinner than the hysteresis band
MIN_AREA = 1e-4  # normalised area (0.01 % of the frame); below it a polygon is a line or a point
MAX_WINDOW_S = 7 * 86_400  # a week: windows and their ends must stay far inside what a timestamp can hold
MIN_RETENTION_DAYS, MAX_RETENTION_DAYS = 1 / 24, 36_500.0  # an hour .. a century
_TOKEN_ENV = re.compile(r"^PRIVAFLOW_TOKEN_[A-Z0-9_]+$")
# ids end up in Kafka keys (`table|site|dims|window`), CSV cells and dashboard keys
_ID = re.compile(r"^[\w.-]+$")
_SUBFIELD = re.compile(r"^([a-z_][a-z0-9_.]*): (.+)$")  # "field: problem", as a model validator writes it


# tables whose cells add up to (at most) another table's cell: (parts, total), see streams/disclosure.py OVERLAPS
NESTED_TABLES = (("attributes", "traffic_volume"), ("vehicle_colours", "traffic_volume"),
                 ("turning_movements", "intersection_volume"))

class ConfigError(ValueError):
    """A site config that cannot be used; the message names the file, the field and what was expected."""


def _id(value: str) -> str:
    if not _ID.match(value) or len(value) > MAX_ID_LENGTH:
        raise ValueError(f"expected 1 to {MAX_ID_LENGTH} letters, digits, '_', '.' or '-' (no spaces, '|', ',' "
                         f"or line breaks: ids go into record keys and CSV cells), got {value!r}")
    return value


Id = Annotated[str, AfterValidator(_id)]


def polygon_problem(points: Sequence[Sequence[float]]) -> str | None:
    """Why `points` is not a simple polygon with an area (self-intersecting, collinear, too small), or
    None. Shapely's validity rules (OGC simple features), not our own."""
    from shapely import Polygon
    from shapely.validation import explain_validity

    poly = Polygon(points)
    if poly.convex_hull.area < MIN_AREA:
        return (f"has no area (are its points collinear or repeated?): expected at least 3 points enclosing "
                f"at least {MIN_AREA:g} of the frame")
    if not poly.is_valid:
        return f"is not a simple polygon ({explain_validity(poly)}): its edges may not cross each other"
    if poly.area < MIN_AREA:
        return f"encloses {poly.area:.2g} of the frame: expected at least {MIN_AREA:g}"
    return None


class _Model(BaseModel):
    # NaN and infinity are never a sensible setting, and they pass every `ge`/`le` check by accident
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DetectorSpec(_Model):
    """Which model the edge runs. `nanodet` is bundled; `yolo` is a user's own ONNX export."""

    kind: Literal["nanodet", "yolo"] = "nanodet"
    path: str | None = None
    flavour: Literal["v5", "v8", "yolox"] = "v8"
    input_size: tuple[Annotated[int, Field(ge=32, le=4096)], Annotated[int, Field(ge=32, le=4096)]] | None = Field(
        None, description="(height, width) of the model's input; only for a model whose input size is not fixed")
    class_map: dict[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0, lt=len(COCO_CLASSES))]] | None = None
    conf: float = Field(0.35, ge=0.0, le=1.0)
    iou: float = Field(0.5, ge=0.0, le=1.0)
    decoded: bool = Field(False, description="yolox only: the export decodes boxes itself")

    @model_validator(mode="after")
    def _path(self) -> DetectorSpec:
        if self.kind == "yolo" and not self.path:
            raise ValueError("path: expected the path of your ONNX export (required for kind 'yolo')")
        return self


class Camera(_Model):
    """One camera: where its video comes from and what privacy rules apply before detection. `kind`
    `fixed` (the default) watches lines and zones; `mobile` rides on a vehicle and surveys the road
    (G4): it has `mobile` settings (position source, cell resolution, privacy zones) instead."""

    id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=r"^[A-Za-z0-9_.-]+$")
    source: Annotated[str, Field(min_length=1)] | Annotated[int, Field(ge=0)] = Field(
        description="file path, rtsp:// or http:// URL, device index, or image folder")
    max_width: int = Field(640, ge=64, le=4096)
    fps: float = Field(10.0, gt=0, le=120, description="analysis rate; faster sources are subsampled")
    detect_every: int = Field(1, ge=1, le=30)
    privacy_masks: list[list[Point]] = Field(default_factory=list)
    homography: list[list[float]] | None = Field(
        None, description="3x3 matrix mapping normalised image points to ground metres")
    attributes: bool = Field(False, description="estimate age bracket and gender (entrance cameras)")
    vehicles_only: bool = Field(False, description="count motor vehicles only (T2: car, motorcycle, bus, truck; "
                                "no people, no bicycles); its classes default to those and may hold nothing else")
    classes: list[str] = Field(default_factory=lambda: ["person", "bicycle", "car", "motorcycle", "bus", "truck"])
    detector: DetectorSpec = Field(default_factory=DetectorSpec)
    kind: Literal["fixed", "mobile"] = "fixed"
    mobile: MobileSettings | None = None

    @model_validator(mode="after")
    def _kind(self) -> Camera:
        if self.kind == "fixed":
            if self.mobile is not None:
                raise ValueError("mobile: only a camera of kind 'mobile' has mobile settings (add kind: mobile, "
                                 "or remove the mobile section)")
            return self
        problems = []
        if self.mobile is None:
            problems.append("mobile: a camera of kind 'mobile' needs mobile settings with at least a position "
                            "source, e.g. mobile: {position: {kind: gpx, path: drive.gpx}}")
        if self.homography is not None:
            problems.append("homography: a mobile camera's ground plane moves with the vehicle; expected none "
                            "(distances to vehicles ahead come from their box widths)")
        if self.attributes:
            problems.append("attributes: a vehicle-mounted camera shows people only as a count (G4); expected "
                            "false")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @model_validator(mode="before")
    @classmethod
    def _vehicle_classes(cls, data: object) -> object:
        # a vehicles-only camera without its own class list counts exactly the vehicles
        if isinstance(data, dict) and data.get("vehicles_only") is True and "classes" not in data:
            return {**data, "classes": list(VEHICLE_CLASSES)}
        return data

    @model_validator(mode="after")
    def _vehicles_only(self) -> Camera:
        others = [c for c in self.classes if c not in VEHICLE_CLASSES]
        if self.vehicles_only and others:
            raise ValueError(f"classes: camera {self.id!r} counts vehicles only (vehicles_only: true), so its classes "
                             f"may only be {', '.join(VEHICLE_CLASSES)}; got {', '.join(others)} as well (or leave "
                             "classes out)")
        return self

    @field_validator("privacy_masks")
    @classmethod
    def _polygons(cls, masks: list[list[Point]]) -> list[list[Point]]:
        for i, m in enumerate(masks):
            if len(m) < 3:
                raise ValueError(f"mask {i}: a privacy mask polygon needs at least 3 points")
            # a mask without area hides nothing: the operator would believe a place is masked when it is not
            problem = polygon_problem(m)
            if problem:
                raise ValueError(f"mask {i} {problem}")
        return masks

    @field_validator("homography")
    @classmethod
    def _h(cls, h: list[list[float]] | None) -> list[list[float]] | None:
        if h is None:
            return h
        if len(h) != 3 or any(len(r) != 3 for r in h):
            raise ValueError("homography must be a 3x3 matrix")
        (a, b, c), (d, e, f), (g, i, j) = h
        det = a * (e * j - f * i) - b * (d * j - f * g) + c * (d * i - e * g)
        if not math.isfinite(det) or abs(det) < 1e-12:
            raise ValueError("homography is singular (determinant 0): it maps the picture onto a line, not the "
                             "ground plane; expected an invertible 3x3 matrix")
        return h

    @field_validator("classes")
    @classmethod
    def _classes(cls, classes: list[str]) -> list[str]:
        unknown = [c for c in classes if c not in COCO_CLASSES]
        if unknown:
            raise ValueError(f"unknown class name(s) {unknown}; expected COCO names: {', '.join(COCO_CLASSES)}")
        if not classes:
            raise ValueError("expected at least one class to count (e.g. [person])")
        if len(set(classes)) != len(classes):
            raise ValueError(f"class names repeat: {_repeats(classes)}")
        return classes


class Line(_Model):
    """A counting line. Crossing from its left side to its right side (looking from a to b) is
    `directions[0]`, the other way `directions[1]`."""

    id: Id
    camera: str
    points: tuple[Point, Point]
    directions: tuple[Id, Id] = ("in", "out")

    @field_validator("points")
    @classmethod
    def _length(cls, points: tuple[Point, Point]) -> tuple[Point, Point]:
        (ax, ay), (bx, by) = points
        length = math.hypot(bx - ax, by - ay)
        if length < MIN_LINE_LENGTH:
            raise ValueError(f"the two points are {length:.3g} apart: expected two distinct points at least "
                             f"{MIN_LINE_LENGTH:g} of the frame apart")
        return points

    @field_validator("directions")
    @classmethod
    def _directions(cls, directions: tuple[str, str]) -> tuple[str, str]:
        if directions[0] == directions[1]:
            raise ValueError(f"both directions are named {directions[0]!r}: expected two different names "
                             "(left-to-right of a->b first, then the other way)")
        return directions


class Zone(_Model):
    """A polygon whose occupancy, dwell times and transitions are measured."""

    id: Id
    camera: str
    polygon: list[Point] = Field(min_length=3)
    capacity: int | None = Field(None, gt=0, le=1_000_000)

    @field_validator("polygon")
    @classmethod
    def _simple(cls, polygon: list[Point]) -> list[Point]:
        problem = polygon_problem(polygon)
        if problem:
            raise ValueError(f"the zone {problem}")
        return polygon


class ApproachLine(_Model):
    """A counting line of the approach's camera and the one of its two directions that is meant."""

    line: Id
    direction: Id


class Approach(_Model):
    """One road joining an intersection, as one camera sees it: vehicles crossing `inbound` in its
    direction enter the intersection, crossing `outbound` in its direction leave it; `lanes` are zones
    over the inbound lanes just before the stop line (one zone per lane), where vehicles present,
    their speed and the queue are measured. The queue is measured in metres from `stop_line` (default:
    the inbound line) along the ground, through the camera's homography, which an approach needs."""

    id: Id
    camera: str
    road: str = Field(min_length=1, max_length=100, description="road name, shown on the map")
    compass: Compass = Field(description="the side of the intersection the road joins from: N is the northern "
                             "leg, whose inbound traffic heads south")
    inbound: ApproachLine
    outbound: ApproachLine | None = Field(None, description="none: a one-way road into the intersection, or its "
                                          "outbound lanes are not in view")
    lanes: list[Id] = Field(min_length=1, max_length=12)
    stop_line: Id | None = Field(None, description="line the queue is measured from (default: the inbound line)")
    free_flow_kmh: float = Field(50.0, ge=5.0, le=130.0, description="speed of an unhindered vehicle on this road "
                                 "(its speed limit, or the speed measured at night); the level of service compares "
                                 "the measured speed with it")


class Intersection(_Model):
    """One intersection as one place: the approaches of the cameras that watch it (T1, T2)."""

    id: Id
    name: str | None = Field(None, max_length=100)
    approaches: list[Approach] = Field(min_length=1, max_length=16)


class Windows(_Model):
    """Tumbling window length per table in seconds (1 s to a week), how late a record may arrive, and how
    far ahead of the stream worker's clock a frame's time may be (edge clocks drift; a frame further
    ahead is a dead letter, so one bad timestamp costs one record, not the camera's next minutes)."""

    traffic_volume: int = Field(60, gt=0, le=MAX_WINDOW_S)
    occupancy: int = Field(60, gt=0, le=MAX_WINDOW_S)
    flow_lines: int = Field(300, gt=0, le=MAX_WINDOW_S)
    dwell: int = Field(300, gt=0, le=MAX_WINDOW_S)
    attributes: int = Field(900, gt=0, le=MAX_WINDOW_S)
    road_conditions: int = Field(900, gt=0, le=MAX_WINDOW_S)
    congestion: int = Field(60, gt=0, le=MAX_WINDOW_S)
    intersection_volume: int = Field(300, gt=0, le=MAX_WINDOW_S)
    turning_movements: int = Field(900, gt=0, le=MAX_WINDOW_S)
    vehicle_colours: int = Field(900, gt=0, le=MAX_WINDOW_S)
    grace_s: int = Field(30, ge=0, le=86_400)
    max_clock_skew_s: int = Field(300, ge=0, le=3_600)


class Counting(_Model):
    """Rules that stop flickering boxes from double counting."""

    # 5 frames at 10 fps: short-lived false positives (3-4 frames) no longer count as visits
    min_track_frames: int = Field(5, ge=1, le=10_000)
    hysteresis: float = Field(0.02, ge=0.0, le=0.5, description="normalised distance the foot point must "
                              "travel on each side of a line")
    track_expiry_s: float = Field(10.0, gt=0, le=3_600)
    dwell_bins_s: list[float] = Field(default_factory=lambda: [5.0, 15.0, 30.0, 60.0, 120.0, 300.0],
                                      min_length=1, max_length=50)

    @field_validator("dwell_bins_s")
    @classmethod
    def _bins(cls, bins: list[float]) -> list[float]:
        if any(b <= 0 for b in bins) or any(b2 <= b1 for b1, b2 in zip(bins, bins[1:], strict=False)):
            raise ValueError(f"expected upper bin edges in seconds, positive and strictly increasing "
                             f"(e.g. [5, 15, 30, 60]), got {bins}")
        return bins


class Retention(_Model):
    """How long each kind of data is kept on the broker."""

    detections_days: float = 7
    partner_days: float = 365

    @field_validator("detections_days", "partner_days")
    @classmethod
    def _days(cls, days: float) -> float:
        if not MIN_RETENTION_DAYS <= days <= MAX_RETENTION_DAYS:
            raise ValueError(f"expected a number of days from {MIN_RETENTION_DAYS:.4f} (one hour) to "
                             f"{MAX_RETENTION_DAYS:g}, got {days!r}")
        return days


DAY_S = 86_400
MAX_EPSILON = 100.0  # beyond this, noise is negligible and the "protection" only a word


class Privacy(_Model):
    """How a partner's tables are protected (docs/privacy-model.md). `k_anonymity` (the default):
    cells below the partner's `k_anonymity` are withheld. `laplace`: differential privacy; every cell
    of the window's grid is published with discrete Laplace noise (OpenDP), each table window spends
    `epsilon_per_window` of the partner's `epsilon_per_day`, per camera and UTC day, and a window that
    would overspend is not published. Without `epsilon_per_window` the daily budget is split evenly
    over every window of every table the partner receives. `contributions_per_window` bounds what one
    track adds to one table's grid in one window (more is dropped); the noise is calibrated to it."""

    mechanism: Literal["k_anonymity", "laplace"] = "k_anonymity"
    epsilon_per_day: float | None = Field(None, gt=0, le=MAX_EPSILON)
    epsilon_per_window: float | None = Field(None, gt=0, le=MAX_EPSILON)
    contributions_per_window: int = Field(1, ge=1, le=100)

    @model_validator(mode="after")
    def _complete(self) -> Privacy:
        if self.mechanism == "laplace":
            if self.epsilon_per_day is None:
                raise ValueError("epsilon_per_day: required with mechanism laplace: expected the daily privacy "
                                 "budget per camera, a number > 0 (e.g. 1.0)")
            if self.epsilon_per_window is not None and self.epsilon_per_window > self.epsilon_per_day:
                raise ValueError(f"epsilon_per_window: {self.epsilon_per_window:g} is more than epsilon_per_day "
                                 f"{self.epsilon_per_day:g}: not even one window could be published")
        elif self.epsilon_per_day is not None or self.epsilon_per_window is not None:
            raise ValueError("epsilon_per_day/epsilon_per_window: only with mechanism laplace (k_anonymity "
                             "uses the partner's k_anonymity)")
        return self

    @property
    def dp(self) -> bool:
        return self.mechanism == "laplace"


class Partner(_Model):
    """Someone who receives aggregates: which tables, and how they are protected: the k-anonymity
    threshold, or differential privacy (`privacy`)."""

    id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=r"^[A-Za-z0-9_-]+$")
    name: str | None = None
    k_anonymity: int = Field(5, ge=1, le=1_000_000)
    tables: list[TableName] = Field(min_length=1)
    token_env: str | None = Field(None, description="environment variable holding the HTTP API bearer token "
                                  "(PRIVAFLOW_TOKEN_...)")
    privacy: Privacy = Field(default_factory=Privacy)

    @field_validator("tables")
    @classmethod
    def _tables(cls, tables: list[str]) -> list[str]:
        if len(set(tables)) != len(tables):
            raise ValueError(f"tables repeat: {_repeats(tables)}")
        return tables

    @field_validator("token_env")
    @classmethod
    def _token_env(cls, name: str | None) -> str | None:
        return _token_variable(name)

    @property
    def dp(self) -> bool:
        """True when this partner gets differentially private tables (its own topics)."""
        return self.privacy.dp

    def epsilon_per_window(self, windows: Windows) -> float:
        """The epsilon one window of one table spends (DP partners only): as configured, or the daily
        budget split evenly over every window of every table this partner receives."""
        if not self.dp or self.privacy.epsilon_per_day is None:
            raise ValueError(f"partner {self.id!r} is not a differential-privacy partner")
        if self.privacy.epsilon_per_window is not None:
            return self.privacy.epsilon_per_window
        per_day = sum(DAY_S / int(getattr(windows, t)) for t in self.tables)
        return self.privacy.epsilon_per_day / per_day


def _token_variable(name: str | None) -> str | None:
    # a variable such as HOME or USER holds something many people know, not a secret
    if name is not None and not _TOKEN_ENV.match(name):
        raise ValueError(f"expected the name of a variable that holds only this token: "
                         f"PRIVAFLOW_TOKEN_ then upper-case letters, digits or '_' (e.g. "
                         f"PRIVAFLOW_TOKEN_CITY), got {name!r}")
    return name


class Operator(_Model):
    """Who runs the cameras; required on public notices. `token_env` names the variable holding the
    operator's bearer token for the dashboard's operator view (unsuppressed aggregates); without it
    the operator view answers nobody."""

    name: str
    contact: str
    purpose: str
    token_env: str | None = Field(None, description="environment variable holding the operator's dashboard "
                                  "token (PRIVAFLOW_TOKEN_...)")

    @field_validator("token_env")
    @classmethod
    def _token_env(cls, name: str | None) -> str | None:
        return _token_variable(name)


class SiteConfig(_Model):
    """A whole site. Cross-references (lines/zones naming cameras) are checked on load."""

    site_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=r"^[A-Za-z0-9_.-]+$")
    operator: Operator | None = None
    cameras: list[Camera] = Field(min_length=1)
    lines: list[Line] = Field(default_factory=list)
    zones: list[Zone] = Field(default_factory=list)
    intersections: list[Intersection] = Field(default_factory=list)
    windows: Windows = Field(default_factory=Windows)
    counting: Counting = Field(default_factory=Counting)
    retention: Retention = Field(default_factory=Retention)
    partners: list[Partner] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> SiteConfig:
        # every problem at once, each naming its field, so a user fixes the file in one pass
        problems: list[str] = []
        problems += _duplicates("cameras", [c.id for c in self.cameras], "id")
        problems += _duplicates("lines", [i.id for i in self.lines], "id")
        problems += _duplicates("zones", [i.id for i in self.zones], "id")
        problems += _duplicates("partners", [p.id for p in self.partners], "id")
        problems += _duplicates("partners", [p.token_env for p in self.partners if p.token_env], "token_env",
                                [i for i, p in enumerate(self.partners) if p.token_env])
        op_env = self.operator.token_env if self.operator else None
        for i, p in enumerate(self.partners):
            if op_env is not None and p.token_env == op_env:
                problems.append(f"partners.{i}.token_env: {op_env!r} is the operator's token variable; a "
                                "partner's token must never open the operator view")
        zone_ids = {z.id for z in self.zones}
        for i, line in enumerate(self.lines):
            if line.id in zone_ids:
                # the attributes table keys lines and zones alike by their id (place_id)
                problems.append(f"lines.{i}.id: {line.id!r} is also a zone id; expected lines and zones to "
                                "have different ids")
        cams = {c.id for c in self.cameras}
        mobile = {c.id for c in self.cameras if c.kind == "mobile"}
        placed: list[tuple[str, Sequence[Line | Zone]]] = [("lines", self.lines), ("zones", self.zones)]
        for kind, items in placed:
            for i, item in enumerate(items):
                if item.camera not in cams:
                    problems.append(f"{kind}.{i}.camera: {kind} {item.id!r} names camera {item.camera!r}, which "
                                    f"is not in cameras (have: {', '.join(sorted(cams))})")
                elif item.camera in mobile:
                    problems.append(f"{kind}.{i}.camera: {kind} {item.id!r} names camera {item.camera!r}, which is "
                                    f"mobile: a moving picture has no fixed {kind}; expected a fixed camera")
        if self.windows.grace_s < self.counting.track_expiry_s + 1:
            # an expiring track's exit is stamped at its last sighting, up to track_expiry_s late
            problems.append(f"windows.grace_s: {self.windows.grace_s} must be at least counting.track_expiry_s "
                            f"+ 1 ({self.counting.track_expiry_s + 1:g}), or exits of lost tracks arrive too late")
        problems += _intersection_problems(self)
        resolutions = {c.mobile.h3_resolution for c in self.cameras if c.mobile is not None}
        if len(resolutions) > 1:
            first = next(c for c in self.cameras if c.mobile is not None)
            for i, c in enumerate(self.cameras):
                if c.mobile is not None and c.mobile.h3_resolution != first.mobile.h3_resolution:  # type: ignore[union-attr]
                    problems.append(f"cameras.{i}.mobile.h3_resolution: {c.mobile.h3_resolution} differs from "
                                    f"camera {first.id!r}'s {first.mobile.h3_resolution}: the road_conditions "  # type: ignore[union-attr]
                                    "table adds every mobile camera's trips per cell, so they must share one")
        for i, p in enumerate(self.partners):
            unknown = set(p.tables) - set(PARTNER_TABLES)
            if unknown:
                problems.append(f"partners.{i}.tables: partner {p.id!r} asks for unknown tables {sorted(unknown)}")
        for i, p in enumerate(self.partners):
            if "road_conditions" in p.tables and p.dp:
                # one trip feeds several cells of a window (a cell per heading it passes): no contribution
                # bound per trip is defined for it yet, so no noise could be calibrated honestly
                problems.append(f"partners.{i}.privacy: road_conditions cannot go to a differential-privacy "
                                "partner yet (no contribution bound per trip); give it k-anonymity")
            elif "road_conditions" in p.tables and p.k_anonymity < 2:
                problems.append(f"partners.{i}.k_anonymity: {p.k_anonymity} would publish the cells a single "
                                "trip passed (a vehicle's path); expected at least 2 for road_conditions")
        published = {t for p in self.partners for t in p.tables}
        for parts, total in NESTED_TABLES:
            if {parts, total} <= published:
                a, b = getattr(self.windows, parts), getattr(self.windows, total)
                if a % b and b % a:
                    # streams/disclosure.py (OVERLAPS) keeps withheld parts from being recomputed as the total
                    # minus the published parts, over windows that tile each other
                    problems.append(f"windows.{parts}: {a} s and windows.{total} {b} s must be multiples of "
                                    "one another when both tables are published (e.g. 900 and 60): a partner could "
                                    "add up windows of one to cover windows of the other")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def camera(self, camera_id: str) -> Camera:
        for c in self.cameras:
            if c.id == camera_id:
                return c
        raise ConfigError(f"camera {camera_id!r} is not in the site config (have: "
                          f"{', '.join(c.id for c in self.cameras)})")

    def mobile_cameras(self) -> list[Camera]:
        """The vehicle-mounted cameras (kind `mobile`), in config order."""
        return [c for c in self.cameras if c.kind == "mobile"]

    def h3_resolution(self) -> int | None:
        """The one H3 resolution of the site's mobile cameras (None without any): their cells are
        aggregated together, so they must share it (checked on load)."""
        res = {c.mobile.h3_resolution for c in self.cameras if c.mobile is not None}
        return res.pop() if res else None

    def lines_for(self, camera_id: str) -> list[Line]:
        return [line for line in self.lines if line.camera == camera_id]

    def zones_for(self, camera_id: str) -> list[Zone]:
        return [z for z in self.zones if z.camera == camera_id]

    def approaches_for(self, camera_id: str) -> list[tuple[Intersection, Approach]]:
        """The approaches a camera watches, with their intersection, in config order."""
        return [(x, a) for x in self.intersections for a in x.approaches if a.camera == camera_id]


def _horizon_problem(h: list[list[float]], points: Sequence[Sequence[float]]) -> str | None:
    """Why a homography cannot map these image points to the ground (a point on or beyond its horizon,
    where the projective scale w is zero or changes sign), or None."""
    ws = [h[2][0] * x + h[2][1] * y + h[2][2] for x, y in points]
    bad = [p for p, w in zip(points, ws, strict=True) if abs(w) < 1e-9 or (w > 0) != (ws[0] > 0)]
    if bad or abs(ws[0]) < 1e-9:
        x, y = (bad or points)[0]
        return (f"point ({x:g}, {y:g}) is at or beyond the horizon of the camera's homography (it maps to no place "
                "on the ground)")
    return None


def _intersection_problems(site: SiteConfig) -> list[str]:
    """Every approach refers to lines and zones of its own camera, in a direction the line has, and its
    camera has a homography that maps them onto the ground; ids and (line, direction) pairs are unique."""
    problems: list[str] = []
    problems += _duplicates("intersections", [x.id for x in site.intersections], "id")
    cams = {c.id: c for c in site.cameras}
    lines = {ln.id: ln for ln in site.lines}
    zones = {z.id: z for z in site.zones}
    used_lines: dict[tuple[str, str], str] = {}
    used_zones: dict[str, str] = {}
    for xi, x in enumerate(site.intersections):
        problems += _duplicates(f"intersections.{xi}.approaches", [a.id for a in x.approaches], "id")
        for ai, a in enumerate(x.approaches):
            at = f"intersections.{xi}.approaches.{ai}"
            cam = cams.get(a.camera)
            if cam is None:
                problems.append(f"{at}.camera: approach {a.id!r} names camera {a.camera!r}, which is not in cameras "
                                f"(have: {', '.join(sorted(cams))})")
                continue
            if cam.kind == "mobile":
                problems.append(f"{at}.camera: approach {a.id!r} names camera {a.camera!r}, which is vehicle-mounted; "
                                "expected a fixed camera watching the approach")
                continue
            if cam.homography is None:
                problems.append(f"{at}.camera: approach {a.id!r} is watched by camera {a.camera!r}, which has no "
                                "homography; expected cameras.<i>.homography (a 3x3 matrix from normalised image "
                                "points to ground metres), since queue lengths and speeds are measured on the ground")
            refs: list[tuple[str, ApproachLine | None]] = [("inbound", a.inbound), ("outbound", a.outbound)]
            for role, ref in refs:
                if ref is None:
                    continue
                line = lines.get(ref.line)
                if line is None or line.camera != a.camera:
                    have = sorted(ln.id for ln in lines.values() if ln.camera == a.camera)
                    problems.append(f"{at}.{role}.line: {ref.line!r} is not a line of camera {a.camera!r} (have: "
                                    f"{', '.join(have) or 'none'})")
                    continue
                if ref.direction not in line.directions:
                    problems.append(f"{at}.{role}.direction: line {line.id!r} counts {line.directions[0]!r} and "
                                    f"{line.directions[1]!r}, not {ref.direction!r}")
                    continue
                owner = used_lines.setdefault((line.id, ref.direction), f"{at}.{role}")
                if owner != f"{at}.{role}":
                    problems.append(f"{at}.{role}: line {line.id!r} direction {ref.direction!r} is already {owner}; "
                                    "expected each line direction in one approach only (or it is counted twice)")
                if cam.homography is not None:
                    problem = _horizon_problem(cam.homography, line.points)
                    if problem:
                        problems.append(f"{at}.{role}.line: line {line.id!r}: {problem}")
            if a.stop_line is not None:
                line = lines.get(a.stop_line)
                if line is None or line.camera != a.camera:
                    problems.append(f"{at}.stop_line: {a.stop_line!r} is not a line of camera {a.camera!r}")
                elif cam.homography is not None and (problem := _horizon_problem(cam.homography, line.points)):
                    problems.append(f"{at}.stop_line: line {line.id!r}: {problem}")
            for li, zid in enumerate(a.lanes):
                zone = zones.get(zid)
                if zone is None or zone.camera != a.camera:
                    have = sorted(z.id for z in zones.values() if z.camera == a.camera)
                    problems.append(f"{at}.lanes.{li}: {zid!r} is not a zone of camera {a.camera!r} (have: "
                                    f"{', '.join(have) or 'none'})")
                    continue
                owner = used_zones.setdefault(zid, f"{at}.lanes.{li}")
                if owner != f"{at}.lanes.{li}":
                    problems.append(f"{at}.lanes.{li}: zone {zid!r} is already {owner}; expected each lane zone in "
                                    "one approach only")
                if cam.homography is not None:
                    problem = _horizon_problem(cam.homography, zone.polygon)
                    if problem:
                        problems.append(f"{at}.lanes.{li}: zone {zid!r}: {problem}")
    return problems


def _repeats(values: Iterable[str]) -> list[str]:
    return sorted(v for v, n in Counter(values).items() if n > 1)


def _duplicates(kind: str, ids: list[str], field: str, positions: list[int] | None = None) -> list[str]:
    """'kind.i.field: ...' for every entry whose value an earlier entry already has."""
    first: dict[str, int] = {}
    out = []
    for n, value in enumerate(ids):
        i = positions[n] if positions is not None else n
        if value in first:
            out.append(f"{kind}.{i}.{field}: {value!r} is already used by {kind}.{first[value]}; expected "
                       f"unique values")
        else:
            first[value] = i
    return out


def _describe(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid site config"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if not loc:  # a check across fields: each of its lines names its own field
            lines += [f"  {m}" for m in msg.splitlines()]
            continue
        got = e.get("input")
        got_s = "" if isinstance(got, dict | list | tuple) or "got " in msg else f" (got {got!r})"
        sub = [_SUBFIELD.match(m) for m in msg.splitlines()]
        if all(sub):  # a check across a model's fields: each line names its field within the model
            lines += [f"  {loc}.{m.group(1)}: {m.group(2)}" for m in sub if m]
            continue
        lines.append(f"  {loc}: {msg}{got_s}")
    return "\n".join(lines)


def parse_site_config(data: object, source: str = "<config>") -> SiteConfig:
    """Validate already-parsed YAML/JSON data; ConfigError names the source, the field and the problem."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return SiteConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err, source)) from None


def load_site_config(path: str | Path) -> SiteConfig:
    """Load and validate a site YAML file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: site config not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read site config: {e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    return parse_site_config(data, str(p))
