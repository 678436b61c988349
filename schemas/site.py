"""The site configuration: one YAML file describing cameras, lines, zones, windows and partners.

Both the edge agent and the stream workers read it, so it lives with the other contracts.
Coordinates are normalised to 0..1 of the frame so a config survives a resolution change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from privaflow.schemas.topics import PARTNER_TABLES

Point = tuple[Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]]
TableName = Literal["traffic_volume", "occupancy", "flow_lines", "dwell", "attributes"]


class ConfigError(ValueError):
    """A site config that cannot be used; the message names the file, the field and what was expected."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DetectorSpec(_Model):
    """Which model the edge runs. `nanodet` is bundled; `yolo` is a user's own ONNX export."""

    kind: Literal["nanodet", "yolo"] = "nanodet"
    path: str | None = None
    flavour: Literal["v5", "v8", "yolox"] = "v8"
    input_size: tuple[int, int] = (640, 640)
    class_map: dict[int, int] | None = None
    conf: float = Field(0.35, ge=0.0, le=1.0)
    iou: float = Field(0.5, ge=0.0, le=1.0)


class Camera(_Model):
    """One camera: where its video comes from and what privacy rules apply before detection."""

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    source: str | int = Field(description="file path, rtsp:// or http:// URL, device index, or image folder")
    max_width: int = Field(640, ge=64, le=4096)
    fps: float = Field(10.0, gt=0, le=120, description="analysis rate; faster sources are subsampled")
    detect_every: int = Field(1, ge=1, le=30)
    privacy_masks: list[list[Point]] = Field(default_factory=list)
    homography: list[list[float]] | None = Field(
        None, description="3x3 matrix mapping normalised image points to ground metres")
    attributes: bool = Field(False, description="estimate age bracket and gender (entrance cameras)")
    classes: list[str] = Field(default_factory=lambda: ["person", "bicycle", "car", "motorcycle", "bus", "truck"])
    detector: DetectorSpec = Field(default_factory=DetectorSpec)

    @field_validator("privacy_masks")
    @classmethod
    def _polygons(cls, masks: list[list[Point]]) -> list[list[Point]]:
        for m in masks:
            if len(m) < 3:
                raise ValueError("a privacy mask polygon needs at least 3 points")
        return masks

    @field_validator("homography")
    @classmethod
    def _h(cls, h: list[list[float]] | None) -> list[list[float]] | None:
        if h is not None and (len(h) != 3 or any(len(r) != 3 for r in h)):
            raise ValueError("homography must be a 3x3 matrix")
        return h


class Line(_Model):
    """A counting line. Crossing from its left side to its right side (looking from a to b) is
    `directions[0]`, the other way `directions[1]`."""

    id: str = Field(min_length=1)
    camera: str
    points: tuple[Point, Point]
    directions: tuple[str, str] = ("in", "out")


class Zone(_Model):
    """A polygon whose occupancy, dwell times and transitions are measured."""

    id: str = Field(min_length=1)
    camera: str
    polygon: list[Point] = Field(min_length=3)
    capacity: int | None = Field(None, gt=0)


class Windows(_Model):
    """Tumbling window length per table in seconds, and how late a record may arrive."""

    traffic_volume: int = Field(60, gt=0)
    occupancy: int = Field(60, gt=0)
    flow_lines: int = Field(300, gt=0)
    dwell: int = Field(300, gt=0)
    attributes: int = Field(900, gt=0)
    grace_s: int = Field(30, ge=0)


class Counting(_Model):
    """Rules that stop flickering boxes from double counting."""

    # 5 frames at 10 fps: short-lived false positives (3-4 frames) no longer count as visits
    min_track_frames: int = Field(5, ge=1)
    hysteresis: float = Field(0.02, ge=0.0, le=0.5, description="normalised distance the foot point must "
                              "travel on each side of a line")
    track_expiry_s: float = Field(10.0, gt=0)
    dwell_bins_s: list[float] = Field(default_factory=lambda: [5.0, 15.0, 30.0, 60.0, 120.0, 300.0])


class Retention(_Model):
    """How long each kind of data is kept on the broker."""

    detections_days: float = Field(7, gt=0)
    partner_days: float = Field(365, gt=0)


class Partner(_Model):
    """Someone who receives aggregates: which tables, and the k-anonymity threshold applied for them."""

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    name: str | None = None
    k_anonymity: int = Field(5, ge=1)
    tables: list[TableName]
    token_env: str | None = Field(None, description="environment variable holding the HTTP API bearer token")


class Operator(_Model):
    """Who runs the cameras; required on public notices."""

    name: str
    contact: str
    purpose: str


class SiteConfig(_Model):
    """A whole site. Cross-references (lines/zones naming cameras) are checked on load."""

    site_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    operator: Operator | None = None
    cameras: list[Camera] = Field(min_length=1)
    lines: list[Line] = Field(default_factory=list)
    zones: list[Zone] = Field(default_factory=list)
    windows: Windows = Field(default_factory=Windows)
    counting: Counting = Field(default_factory=Counting)
    retention: Retention = Field(default_factory=Retention)
    partners: list[Partner] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> SiteConfig:
        cams = {c.id for c in self.cameras}
        if len(cams) != len(self.cameras):
            raise ValueError("camera ids must be unique")
        for kind, items in (("lines", self.lines), ("zones", self.zones)):
            ids = [i.id for i in items]
            if len(set(ids)) != len(ids):
                raise ValueError(f"{kind} ids must be unique")
            for i in items:
                if i.camera not in cams:
                    raise ValueError(f"{kind} {i.id!r} names camera {i.camera!r}, which is not in cameras")
        if self.windows.grace_s < self.counting.track_expiry_s + 1:
            # an expiring track's exit is stamped at its last sighting, up to track_expiry_s late
            raise ValueError(f"windows.grace_s ({self.windows.grace_s}) must be at least counting.track_expiry_s "
                             f"+ 1 ({self.counting.track_expiry_s + 1:g}), or exits of lost tracks arrive too late")
        for p in self.partners:
            unknown = set(p.tables) - set(PARTNER_TABLES)
            if unknown:
                raise ValueError(f"partner {p.id!r} asks for unknown tables {sorted(unknown)}")
        return self

    def camera(self, camera_id: str) -> Camera:
        for c in self.cameras:
            if c.id == camera_id:
                return c
        raise ConfigError(f"camera {camera_id!r} is not in the site config (have: "
                          f"{', '.join(c.id for c in self.cameras)})")

    def lines_for(self, camera_id: str) -> list[Line]:
        return [line for line in self.lines if line.camera == camera_id]

    def zones_for(self, camera_id: str) -> list[Zone]:
        return [z for z in self.zones if z.camera == camera_id]


def _describe(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid site config"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        got = e.get("input")
        got_s = "" if isinstance(got, dict | list) else f" (got {got!r})"
        lines.append(f"  {loc}: {e['msg']}{got_s}")
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
