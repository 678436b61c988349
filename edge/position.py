"""A mobile camera's own position: fixes read from a GPS log or receiver, aligned to frames.

Sources, each read with a well-kept parser rather than by hand:

- an NMEA 0183 log (`pynmea2`): RMC sentences give time, date, position; GGA sentences give time and
  position (their date is taken from the last RMC). Lines that fail the checksum or do not parse are
  skipped and counted; RMC with status V and GGA with fix quality 0 are "no fix" and skipped too.
- a GPS receiver on a serial device (`pyserial` + `pynmea2`), read live in a thread.
- a GPX file (`gpxpy`): every track point with a time. A file cut off mid-write (a recorder that lost
  power) is read up to its last complete point, and the cut is reported.

A frame's position is interpolated linearly between the two fixes around its time; fixes further
apart than `max_gap_s` are a gap, and a frame in a gap (or before the first fix, or after the last)
has no position. Heading is the bearing between those two fixes, carried on while the vehicle stands
still; speed is their distance over their time apart.

    >>> track = read_track(PositionSource(kind="gpx", path="drive.gpx"))   # doctest: +SKIP
    >>> track.report.summary()                                             # doctest: +SKIP
    'drive.gpx: 612 fixes over 611 s, 0 gaps, 0 bad lines'
    >>> track.at(track.start + 12.5)                                       # doctest: +SKIP
    Position(lat=..., lon=..., heading_deg=..., speed_kmh=...)
"""

from __future__ import annotations

import bisect
import datetime as dt
import logging
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privaflow.schemas.cells import bearing_deg, distance_m
from privaflow.schemas.mobile import PositionSource

log = logging.getLogger(__name__)

MOVING_M = 1.0  # two fixes closer than this: the vehicle stands; keep the heading it had


class PositionError(ValueError):
    """A position source that yields no usable fix (missing, unreadable, nothing but damaged lines)."""


@dataclass(frozen=True, slots=True)
class Fix:
    """One GPS fix: UTC epoch seconds and WGS84 degrees."""

    t: float
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Position:
    """Where the vehicle was at a frame's time (never leaves the edge: records carry only its cell)."""

    lat: float
    lon: float
    heading_deg: float | None  # None until the vehicle has moved
    speed_kmh: float


@dataclass
class ReadReport:
    """What reading a source found: counts a user can act on."""

    source: str
    fixes: int = 0
    bad_lines: int = 0  # failed the checksum or did not parse
    no_fix: int = 0  # well-formed, but the receiver had no fix (RMC status V, GGA quality 0)
    other: int = 0  # well-formed sentences that carry no position (GSV, GSA, VTG, ...)
    undated: int = 0  # GGA before any RMC gave the date (align: utc needs dates)
    truncated: bool = False  # a GPX file cut off mid-write, read up to its last complete point
    gaps: list[tuple[float, float]] = field(default_factory=list)  # (from, to) UTC seconds

    def summary(self) -> str:
        longest = max((b - a for a, b in self.gaps), default=0.0)
        gaps = f"{len(self.gaps)} gap{'s' * (len(self.gaps) != 1)}" + (f" (longest {longest:.0f} s)" if self.gaps
                                                                       else "")
        parts = [f"{self.fixes} fixes", gaps, f"{self.bad_lines} bad line{'s' * (self.bad_lines != 1)} skipped"]
        if self.no_fix:
            parts.append(f"{self.no_fix} sentences without a fix")
        if self.truncated:
            parts.append("file cut off after its last complete point")
        return f"{self.source}: " + ", ".join(parts)


# ---------------------------------------------------------------- parsing

class _NmeaParser:
    """Feed NMEA lines one at a time; keeps the date from RMC sentences for the GGA ones after them."""

    def __init__(self, report: ReadReport) -> None:
        self.report = report
        self.date: dt.date | None = None

    def line(self, text: str) -> Fix | None:
        import pynmea2

        text = text.strip()
        if not text:
            return None
        try:
            msg = pynmea2.parse(text, check=True)
        except (pynmea2.ParseError, ValueError, TypeError, AttributeError, IndexError):
            self.report.bad_lines += 1
            return None
        kind = type(msg).__name__
        try:
            if kind == "RMC":
                if getattr(msg, "status", None) != "A":
                    self.report.no_fix += 1
                    return None
                when = msg.datetime
                self.date = when.date()
            elif kind == "GGA":
                if not msg.gps_qual:
                    self.report.no_fix += 1
                    return None
                if self.date is None:
                    self.report.undated += 1
                    return None
                when = dt.datetime.combine(self.date, msg.timestamp)
            else:
                self.report.other += 1
                return None
            lat, lon = float(msg.latitude), float(msg.longitude)
        except (ValueError, TypeError, AttributeError):  # a sentence with a checksum but empty or odd fields
            self.report.bad_lines += 1
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        if not (-90 <= lat <= 90 and -180 <= lon <= 180) or (lat == 0.0 and lon == 0.0):
            self.report.bad_lines += 1
            return None
        return Fix(when.timestamp(), lat, lon)


def parse_nmea(lines: Iterable[str], source: str = "<nmea>") -> tuple[list[Fix], ReadReport]:
    """Fixes from NMEA 0183 lines, and what was skipped."""
    report = ReadReport(source)
    parser = _NmeaParser(report)
    fixes = [f for f in map(parser.line, lines) if f is not None]
    return fixes, report


def parse_gpx(text: str, source: str = "<gpx>") -> tuple[list[Fix], ReadReport]:
    """Fixes from the track points of a GPX document (route and waypoint elements carry no track)."""
    import gpxpy
    import gpxpy.gpx

    report = ReadReport(source)
    try:
        doc = gpxpy.parse(text)
    except gpxpy.gpx.GPXException as e:
        # a recorder that lost power leaves a file cut off mid-point: keep what was complete
        end = text.rfind("</trkpt>")
        if end < 0:
            raise PositionError(f"{source}: not a readable GPX file ({e})") from None
        try:
            doc = gpxpy.parse(text[:end + len("</trkpt>")] + "</trkseg></trk></gpx>")
        except gpxpy.gpx.GPXException:
            raise PositionError(f"{source}: not a readable GPX file ({e})") from None
        report.truncated = True
    fixes = []
    for track in doc.tracks:
        for segment in track.segments:
            for p in segment.points:
                if p.time is None or p.latitude is None or p.longitude is None or not (
                        -90 <= p.latitude <= 90 and -180 <= p.longitude <= 180):
                    report.bad_lines += 1
                    continue
                when = p.time if p.time.tzinfo else p.time.replace(tzinfo=dt.UTC)
                fixes.append(Fix(when.timestamp(), float(p.latitude), float(p.longitude)))
    return fixes, report


# ---------------------------------------------------------------- the track

class Track:
    """Fixes in time order, with interpolation. `at(t)` is the position at UTC seconds `t`, or None in
    a gap. Thread-safe for one writer (`extend`, the serial reader) and one reader (the agent)."""

    def __init__(self, fixes: Iterable[Fix], report: ReadReport, max_gap_s: float, hold_s: float = 0.0,
                 keep: int | None = None) -> None:
        self.report, self.max_gap_s, self.hold_s, self.keep = report, max_gap_s, hold_s, keep
        self._lock = threading.Lock()
        self._t: list[float] = []
        self._fixes: list[Fix] = []
        self._heading: list[float | None] = []  # per segment i -> i+1, carried over stops
        self.extend(fixes)

    def __len__(self) -> int:
        return len(self._fixes)

    @property
    def start(self) -> float:
        return self._t[0]

    @property
    def end(self) -> float:
        return self._t[-1]

    def extend(self, fixes: Iterable[Fix]) -> None:
        """Add fixes (any order; a time already present keeps its first fix). Fixes after the last
        one (a live receiver) are appended without recomputing the rest."""
        new = sorted((f for f in fixes if math.isfinite(f.t)), key=lambda f: f.t)
        with self._lock:
            if self._fixes and new and new[0].t <= self._t[-1]:
                merged = {f.t: f for f in reversed(self._fixes)}
                for f in new:
                    merged.setdefault(f.t, f)
                new = sorted(merged.values(), key=lambda f: f.t)
                self._fixes, self._t, self._heading = [], [], []
                self.report.gaps = []
            for f in new:
                if self._t and f.t == self._t[-1]:
                    continue
                if self._fixes:
                    a = self._fixes[-1]
                    if f.t - a.t > self.max_gap_s:
                        self.report.gaps.append((a.t, f.t))
                    last = self._heading[-1] if self._heading else None
                    if distance_m(a.lat, a.lon, f.lat, f.lon) >= MOVING_M:
                        last = bearing_deg(a.lat, a.lon, f.lat, f.lon)
                    self._heading.append(last)
                self._fixes.append(f)
                self._t.append(f.t)
            if self.keep and len(self._fixes) > self.keep:  # a live receiver: old fixes are never asked for
                cut = len(self._fixes) - self.keep
                del self._fixes[:cut], self._t[:cut], self._heading[:cut]
            self.report.fixes = len(self._fixes)

    def at(self, t: float) -> Position | None:
        """The interpolated position at `t`, or None before the first fix, after the last (beyond
        `hold_s`, a live receiver's next fix not being in yet) or between fixes more than `max_gap_s`
        apart."""
        with self._lock:
            fixes, times = self._fixes, self._t
            if not fixes:
                return None
            i = bisect.bisect_right(times, t) - 1
            if i < 0:
                return None
            if i >= len(fixes) - 1:
                last = fixes[-1]
                if t - last.t > self.hold_s and t != last.t:
                    return None
                heading = self._heading[-1] if self._heading else None
                return Position(last.lat, last.lon, heading, 0.0 if len(fixes) < 2 else self._speed(len(fixes) - 2))
            a, b = fixes[i], fixes[i + 1]
            if b.t - a.t > self.max_gap_s:
                return None
            w = (t - a.t) / (b.t - a.t)
            return Position(a.lat + (b.lat - a.lat) * w, a.lon + (b.lon - a.lon) * w, self._heading[i], self._speed(i))

    def _speed(self, i: int) -> float:
        a, b = self._fixes[i], self._fixes[i + 1]
        return distance_m(a.lat, a.lon, b.lat, b.lon) / (b.t - a.t) * 3.6


def _read_text(path: str, what: str) -> str:
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise PositionError(f"{path}: {what} not found") from None
    except OSError as e:
        raise PositionError(f"{path}: cannot read {what}: {e.strerror or e}") from None
    return data.decode("utf-8", errors="replace")  # a damaged byte spoils one line, not the file


def read_track(src: PositionSource) -> Track:
    """The whole track of a recorded source (`gpx`, `nmea`). PositionError, naming the file and what
    was wrong, when nothing usable is in it."""
    if src.kind == "gpx":
        fixes, report = parse_gpx(_read_text(src.path, "GPX file"), src.path)
    elif src.kind == "nmea":
        fixes, report = parse_nmea(_read_text(src.path, "NMEA log").splitlines(), src.path)
        if src.align == "utc" and report.undated and not fixes:
            raise PositionError(f"{src.path}: {report.undated} GGA fixes but no RMC sentence gives their date; "
                                "align: utc needs dated fixes")
    else:
        raise ValueError(f"read_track reads recorded sources; {src.kind} is live (use SerialTrack)")
    usable = len({f.t for f in fixes})
    if usable < 2:
        raise PositionError(f"{report.summary()}: nothing usable left (need at least 2 fixes with a time; "
                            f"found {usable})")
    return Track(fixes, report, src.max_gap_s)


class SerialTrack(Track):
    """A GPS receiver on a serial device, read live by a daemon thread (`pyserial`). Fixes come as
    they happen; a frame newer than the last fix keeps that fix's position for up to `max_gap_s`."""

    def __init__(self, src: PositionSource) -> None:
        super().__init__((), ReadReport(src.path), src.max_gap_s, hold_s=src.max_gap_s, keep=3600)
        self.src = src
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._serial: Any = None

    def open(self) -> SerialTrack:
        import serial

        try:
            self._serial = serial.Serial(self.src.path, self.src.baud, timeout=1.0)
        except (serial.SerialException, OSError, ValueError) as e:
            raise PositionError(f"{self.src.path}: cannot open the GPS receiver: {e}") from None
        self._thread = threading.Thread(target=self._run, name="gps", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        parser = _NmeaParser(self.report)
        while not self._stop.is_set():
            try:
                raw = self._serial.readline()
            except Exception as e:  # a receiver unplugged: positions stop, frames go on without
                log.warning("GPS receiver %s: %s; no more positions", self.src.path, e)
                return
            if raw:
                fix = parser.line(raw.decode("ascii", errors="replace"))
                if fix is not None:
                    self.extend((fix,))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)
        if self._serial is not None:
            self._serial.close()
