"""Writes examples/tracks/drive.gpx: the GPS track shipped with the demo's dashcam clip.

The clip (`.privaflow/media/drive.mp4`, see stack/fetch_media.sh) is 50.4 s of a car on a US
highway. No GPS track was recorded with it, so this script generates a plausible one: fixes once a
second for 52 s at about 100 km/h, heading north-west along a gentle left then right bend like the
clip's, starting on the I-280 corridor in San Mateo County, California. It is synthetic: the
coordinates follow a smooth curve, not a surveyed road, and are not where the clip was recorded.
The output is dedicated to the public domain (CC0 1.0), as this script is part of privaflow.

    python stack/make_drive_track.py            # rewrites examples/tracks/drive.gpx
"""

from __future__ import annotations

import datetime as dt
import math
import sys
from pathlib import Path

import gpxpy
import gpxpy.gpx

OUT = Path(__file__).resolve().parents[1] / "examples" / "tracks" / "drive.gpx"
START = (37.5105, -122.3305)  # near I-280 and CA-92, San Mateo County
START_TIME = dt.datetime(2024, 5, 14, 1, 30, 0, tzinfo=dt.UTC)  # a weekday, 18:30 local time
SECONDS = 52
EARTH_M = 6_371_008.8


def heading_at(t: float) -> float:
    """Degrees from north: 325 at first, a left bend to 300 around 20 s, a right bend back to 330."""
    return 325 - 25 * math.exp(-(((t - 20) / 7) ** 2)) + 5 * (1 + math.tanh((t - 38) / 5)) / 2


def speed_kmh(t: float) -> float:
    return 100 + 4 * math.sin(t / 9)


def track() -> gpxpy.gpx.GPX:
    gpx = gpxpy.gpx.GPX()
    gpx.creator = "privaflow stack/make_drive_track.py (synthetic, CC0 1.0)"
    gpx.description = ("Synthetic GPS track for the demo dashcam clip: generated, not recorded; a plausible "
                       "highway drive, not where the clip was filmed. CC0 1.0.")
    trk = gpxpy.gpx.GPXTrack(name="demo drive (synthetic)")
    seg = gpxpy.gpx.GPXTrackSegment()
    trk.segments.append(seg)
    gpx.tracks.append(trk)
    lat, lon = START
    for s in range(SECONDS + 1):
        seg.points.append(gpxpy.gpx.GPXTrackPoint(round(lat, 7), round(lon, 7),
                                                  time=START_TIME + dt.timedelta(seconds=s)))
        # one second along the current heading (flat-earth step: metres over a second)
        step = speed_kmh(s) / 3.6
        h = math.radians(heading_at(s + 0.5))
        lat += math.degrees(step * math.cos(h) / EARTH_M)
        lon += math.degrees(step * math.sin(h) / (EARTH_M * math.cos(math.radians(lat))))
    return gpx


def main() -> int:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(track().to_xml(), encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
