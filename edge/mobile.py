"""A mobile camera's survey at the edge: frame time -> position -> road observations -> the trip gate.

The agent hands each frame's record here instead of to its sink; what comes back is what may leave
(edge/trips.py decides), each record carrying the vehicle's cell, heading sector, speed and trip id
and what the frame saw of the road (edge/probe.py). Positions come from the camera's position source
(edge/position.py), aligned to frames:

- `align: media` (a recorded drive): the track's first fix plus `offset_s` is the first frame; later
  frames are as far along the track as they are into the video.
- `align: utc`: a frame's capture time is looked up in the track as it is (a live camera with a GPS
  receiver, or a log recorded alongside).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from privaflow.edge.detections import Detections
from privaflow.edge.position import Position, SerialTrack, Track, read_track
from privaflow.edge.probe import RoadView
from privaflow.edge.trips import ProbeFields, TripGate
from privaflow.schemas.site import Camera

log = logging.getLogger(__name__)


@dataclass
class SurveyStats:
    frames: int = 0
    without_position: int = 0


class MobileSurvey:
    """Everything a mobile camera adds to the agent. Opens its position source at once, so a missing or
    unusable track is a `PositionError` before the first frame."""

    def __init__(self, camera: Camera, track: Track | None = None) -> None:
        assert camera.mobile is not None, "a mobile camera has mobile settings (checked on load)"
        self.settings = camera.mobile
        src = self.settings.position
        if track is not None:
            self.track = track
        elif src.kind == "nmea_serial":
            self.track = SerialTrack(src).open()
        else:
            self.track = read_track(src)
        self.view = RoadView(self.settings.camera_hfov_deg)
        self.gate: TripGate[dict[str, Any]] = TripGate(self.settings)
        self.stats = SurveyStats()
        self._first_ts_ms: int | None = None
        if len(self.track):
            log.info("position track %s", self.track.report.summary())

    def position(self, ts_ms: int) -> Position | None:
        src = self.settings.position
        if src.align == "utc":
            return self.track.at(ts_ms / 1000.0)
        if self._first_ts_ms is None:
            self._first_ts_ms = ts_ms
        return self.track.at(self.track.start + src.offset_s + (ts_ms - self._first_ts_ms) / 1000.0)

    def offer(self, record: dict[str, Any], tracks: Detections, track_ids: Any) -> list[dict[str, Any]]:
        """One frame's record (its people already untracked) -> the records that may leave now."""
        ts_ms = int(record["ts"])
        road = self.view.observe(tracks, track_ids, (int(record["frame_width"]), int(record["frame_height"])))
        record.update(vehicles_ahead=road.vehicles_ahead, ahead_band=road.ahead_band, people=road.people,
                      furniture=list(road.furniture))
        pos = self.position(ts_ms)
        self.stats.frames += 1
        if pos is None:
            self.stats.without_position += 1
        return [apply_fields(r, f) for r, f in self.gate.offer(ts_ms, pos, record)]

    def end(self) -> int:
        """The trip ends (the source ended, the agent stops): held records are dropped."""
        dropped = self.gate.end()
        if isinstance(self.track, SerialTrack):
            self.track.stop()
        return dropped

    def status(self) -> dict[str, Any]:
        g = self.gate.stats
        return {"trips": g.trips, "held": g.held, "released": g.released,
                "without_position": self.stats.without_position,
                "dropped_privacy_zone": g.dropped_zone, "dropped_trip_end": g.dropped_trip_end,
                "dropped_no_trip": g.dropped_no_trip, "dropped_stale": g.dropped_stale,
                "fix_gaps": len(self.track.report.gaps), "bad_position_lines": self.track.report.bad_lines}


def apply_fields(record: dict[str, Any], f: ProbeFields) -> dict[str, Any]:
    record.update(trip_id=f.trip_id, h3_cell=f.cell, probe_heading=f.heading, probe_speed_kmh=f.speed_kmh)
    return record
