"""The `mobile` camera kind's settings: a camera on a vehicle (the guidebook's case 4, G4).

A mobile camera has no fixed lines or zones. It has a position source (an NMEA 0183 log or serial
device, or a GPX file), the H3 resolution its position is snapped to before anything leaves the edge,
and privacy zones: nothing is recorded within `radius_m` of a configured place (the depot, drivers'
homes), nor within `trip_end_radius_m` of where a trip starts or ends. edge/position.py reads the
source, edge/trips.py applies the zones, docs/privacy-model.md explains why.

    mobile:
      position: {kind: gpx, path: tracks/drive.gpx}
      h3_resolution: 9
      privacy_zones:
        - {id: depot, lat: 35.6581, lon: 139.7017, radius_m: 300}
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from privaflow.schemas.cells import DEFAULT_RESOLUTION, MAX_RESOLUTION, MIN_RESOLUTION

MAX_RADIUS_M = 5_000.0
DEFAULT_TRIP_END_RADIUS_M = 300.0  # "a few hundred metres": longer than a block, shorter than a district


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _path(value: str) -> str:
    if not value.strip():
        raise ValueError("expected the path of a file or a serial device")
    return value


class PositionSource(_Model):
    """Where a mobile camera's positions come from.

    `kind`: `gpx` (a GPX file, gpxpy), `nmea` (an NMEA 0183 log file, pynmea2) or `nmea_serial` (a GPS
    receiver on a serial device such as /dev/ttyUSB0, read live). `align`: `media` lines the track's
    first fix up with the first frame of a recorded video (plus `offset_s`); `utc` matches frames and
    fixes by their clock times (a live camera, or a log recorded alongside). A serial device is always
    `utc`. Frames more than `max_gap_s` from the nearest fixes on both sides carry no position."""

    kind: Literal["gpx", "nmea", "nmea_serial"]
    path: Annotated[str, AfterValidator(_path)]
    align: Literal["media", "utc"] = "media"
    offset_s: float = Field(0.0, ge=-86_400, le=86_400, description="track time at the first frame minus the "
                            "track's first fix, seconds (align: media)")
    baud: int = Field(4800, ge=300, le=921_600, description="nmea_serial only")
    max_gap_s: float = Field(5.0, gt=0, le=600, description="fixes further apart than this are a gap: the frames "
                             "in it carry no position")

    @model_validator(mode="after")
    def _serial_is_live(self) -> PositionSource:
        if self.kind == "nmea_serial" and self.align != "utc":
            raise ValueError("align: a serial GPS receiver delivers fixes as they happen: expected 'utc' "
                             "(the default 'media' is for recorded tracks)")
        return self


class PrivacyZone(_Model):
    """A place near which nothing is recorded (a depot, a driver's home): no frame whose H3 cell comes
    within `radius_m` of it leaves the edge."""

    id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[\w.-]+$")]
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    radius_m: float = Field(300.0, gt=0, le=MAX_RADIUS_M)


class MobileSettings(_Model):
    """A vehicle-mounted camera's position source and privacy rules (see the module docstring)."""

    position: PositionSource
    h3_resolution: int = Field(DEFAULT_RESOLUTION, ge=MIN_RESOLUTION, le=MAX_RESOLUTION,
                               description="cell size positions are snapped to: 9 is about 200 m a side, "
                               "8 about 530 m, 10 about 76 m (finer would pinpoint a house front)")
    privacy_zones: list[PrivacyZone] = Field(default_factory=list, max_length=1000)
    trip_end_radius_m: float = Field(DEFAULT_TRIP_END_RADIUS_M, ge=0, le=MAX_RADIUS_M,
                                     description="nothing is recorded this close to where a trip starts or "
                                     "ends; 0 turns it off")
    trip_break_s: float = Field(300.0, ge=30, le=86_400, description="a stop (moving less than 50 m) or a "
                                "loss of fixes this long ends a trip; the next movement starts a new one")
    max_hold_s: float = Field(900.0, ge=10, le=3_600, description="a record still too close to the vehicle "
                              "(it might be near the trip's end) this long after capture is dropped, never "
                              "published late")
    camera_hfov_deg: float = Field(100.0, ge=20, le=180, description="horizontal field of view of the "
                                   "camera, for distances to vehicles ahead from their box widths")

    @model_validator(mode="after")
    def _unique_zone_ids(self) -> MobileSettings:
        seen: set[str] = set()
        for i, z in enumerate(self.privacy_zones):
            if z.id in seen:
                raise ValueError(f"privacy_zones.{i}.id: {z.id!r} is used twice; expected unique ids")
            seen.add(z.id)
        return self
