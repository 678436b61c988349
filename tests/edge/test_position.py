"""A mobile camera's position source (edge/position.py): NMEA logs and GPX files with damaged lines,
interpolation between fixes, and gaps. Covers G4 (a vehicle-mounted camera knows where it is)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import gpxpy.gpx
import pynmea2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privaflow.edge.position import PositionError, Track, parse_gpx, parse_nmea, read_track
from privaflow.schemas.cells import distance_m
from privaflow.schemas.mobile import PositionSource

T0 = dt.datetime(2024, 5, 14, 1, 30, 0, tzinfo=dt.UTC)


def _deg_min(value: float, pos: str, neg: str, width: int) -> tuple[str, str]:
    d = abs(value)
    deg = int(d)
    return f"{deg:0{width}d}{(d - deg) * 60:07.4f}", pos if value >= 0 else neg


def rmc(t: dt.datetime, lat: float, lon: float, status: str = "A") -> str:
    la, ns = _deg_min(lat, "N", "S", 2)
    lo, ew = _deg_min(lon, "E", "W", 3)
    return str(pynmea2.RMC("GP", "RMC", (t.strftime("%H%M%S.00"), status, la, ns, lo, ew, "54.0", "320.0",
                                          t.strftime("%d%m%y"), "", "", "A")))


def gga(t: dt.datetime, lat: float, lon: float, quality: str = "1") -> str:
    la, ns = _deg_min(lat, "N", "S", 2)
    lo, ew = _deg_min(lon, "E", "W", 3)
    return str(pynmea2.GGA("GP", "GGA", (t.strftime("%H%M%S.00"), la, ns, lo, ew, quality, "08", "0.9", "10.0",
                                          "M", "0.0", "M", "", "")))


def drive(n: int, step_s: float = 1.0) -> list[tuple[dt.datetime, float, float]]:
    """n fixes heading north at 0.0002 degrees (about 22 m) per step."""
    return [(T0 + dt.timedelta(seconds=i * step_s), 35.68 + 0.0002 * i, 139.76) for i in range(n)]


def test_nmea_log_with_damaged_lines_keeps_the_good_ones_and_counts_the_rest() -> None:
    good = [rmc(t, la, lo) if i % 2 == 0 else gga(t, la, lo) for i, (t, la, lo) in enumerate(drive(10))]
    lines = list(good)
    lines.insert(3, good[3][:-1] + ("0" if good[3][-1] != "0" else "1"))  # checksum broken in transit
    lines.insert(5, "$GPRMC,1235")  # cut off
    lines.insert(7, "\x00\x00garbage from a serial line")
    lines.insert(8, "$GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00*74")  # no position
    lines.insert(9, rmc(T0, 35.0, 139.0, status="V"))  # receiver without a fix
    fixes, report = parse_nmea(lines, "drive.nmea")
    assert len(fixes) == 10
    assert report.bad_lines == 3 and report.no_fix == 1 and report.other == 1
    assert fixes[1].t == pytest.approx((T0 + dt.timedelta(seconds=1)).timestamp())  # a GGA dated by the RMC before
    assert fixes[9].lat == pytest.approx(35.68 + 0.0018, abs=1e-6)
    assert "3 bad lines skipped" in report.summary()


def test_nmea_log_with_nothing_usable_is_a_clear_error(tmp_path: Path) -> None:
    log = tmp_path / "broken.nmea"
    log.write_text("\n".join(["$GPRMC,garbage*00", "not nmea at all", rmc(T0, 35.0, 139.0, status="V")]))
    with pytest.raises(PositionError, match=r"broken.nmea: 0 fixes.*2 bad lines skipped.*nothing usable left"):
        read_track(PositionSource(kind="nmea", path=str(log)))
    with pytest.raises(PositionError, match="not found"):
        read_track(PositionSource(kind="nmea", path=str(tmp_path / "missing.nmea")))


def _gpx(points: list[tuple[dt.datetime | None, float, float]]) -> str:
    doc = gpxpy.gpx.GPX()
    trk = gpxpy.gpx.GPXTrack()
    seg = gpxpy.gpx.GPXTrackSegment()
    doc.tracks.append(trk)
    trk.segments.append(seg)
    for t, la, lo in points:
        seg.points.append(gpxpy.gpx.GPXTrackPoint(la, lo, time=t))
    return doc.to_xml()


def test_gpx_points_without_time_are_skipped_and_counted() -> None:
    pts: list[tuple[dt.datetime | None, float, float]] = list(drive(6))
    pts.insert(2, (None, 35.0, 139.0))
    fixes, report = parse_gpx(_gpx(pts), "d.gpx")
    assert len(fixes) == 6 and report.bad_lines == 1


def test_gpx_cut_off_mid_write_is_read_up_to_its_last_complete_point(tmp_path: Path) -> None:
    text = _gpx(list(drive(8)))
    cut = text[:text.index("</trkpt>", text.index("</trkpt>") * 1 + 300)] + '</trkpt>\n<trkpt lat="35.6'
    f = tmp_path / "cut.gpx"
    f.write_text(cut)
    track = read_track(PositionSource(kind="gpx", path=str(f)))
    assert track.report.truncated and 2 <= len(track) < 8
    assert "cut off" in track.report.summary()
    f.write_text("<gpx><not closed")
    with pytest.raises(PositionError, match="cut.gpx: not a readable GPX file"):
        read_track(PositionSource(kind="gpx", path=str(f)))


def test_positions_are_interpolated_between_fixes_with_heading_and_speed() -> None:
    fixes, report = parse_nmea([rmc(t, la, lo) for t, la, lo in drive(5)])
    track = Track(fixes, report, max_gap_s=5)
    mid = track.at(fixes[1].t + 0.25)
    assert mid is not None
    assert mid.lat == pytest.approx(fixes[1].lat + 0.25 * (fixes[2].lat - fixes[1].lat))
    assert mid.heading_deg == pytest.approx(0.0, abs=0.01)  # due north
    metres = distance_m(fixes[1].lat, fixes[1].lon, fixes[2].lat, fixes[2].lon)
    assert mid.speed_kmh == pytest.approx(metres * 3.6, rel=1e-6)
    assert track.at(fixes[0].t - 0.1) is None and track.at(fixes[-1].t + 0.1) is None


def test_a_gap_in_fixes_is_reported_and_its_frames_have_no_position() -> None:
    pts = drive(4) + [(t + dt.timedelta(seconds=30), la, lo) for t, la, lo in drive(8)[4:]]
    fixes, report = parse_nmea([rmc(t, la, lo) for t, la, lo in pts])
    track = Track(fixes, report, max_gap_s=5)
    assert len(report.gaps) == 1 and report.gaps[0][1] - report.gaps[0][0] == pytest.approx(31)
    assert "1 gap (longest 31 s)" in report.summary()
    assert track.at(fixes[3].t + 10) is None  # inside the gap
    assert track.at(fixes[2].t + 0.5) is not None and track.at(fixes[4].t + 0.5) is not None


def test_a_standing_vehicle_keeps_its_heading() -> None:
    pts = drive(3) + [(T0 + dt.timedelta(seconds=3 + i), 35.68 + 0.0004, 139.76) for i in range(3)]
    fixes, report = parse_nmea([rmc(t, la, lo) for t, la, lo in pts])
    track = Track(fixes, report, max_gap_s=5)
    still = track.at(fixes[4].t + 0.5)
    assert still is not None and still.speed_kmh == 0 and still.heading_deg == pytest.approx(0.0, abs=0.01)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.1, 4.0), min_size=2, max_size=30), st.floats(0, 1))
def test_interpolated_positions_lie_between_their_fixes(steps: list[float], w: float) -> None:
    t, pts = 0.0, []
    for i, s in enumerate(steps):
        t += s
        pts.append((T0 + dt.timedelta(seconds=t), 35.0 + 0.001 * i, 139.0 - 0.0005 * i))
    fixes, report = parse_gpx(_gpx(pts))
    track = Track(fixes, report, max_gap_s=5)
    for a, b in zip(fixes, fixes[1:], strict=False):
        p = track.at(a.t + w * (b.t - a.t))
        assert p is not None
        assert min(a.lat, b.lat) - 1e-9 <= p.lat <= max(a.lat, b.lat) + 1e-9


def test_a_gps_receiver_on_a_serial_device_is_read_live_with_damaged_lines_skipped() -> None:
    import os
    import time

    from privaflow.edge.position import SerialTrack

    master, slave = os.openpty()  # a pseudo-terminal stands in for /dev/ttyUSB0
    track = SerialTrack(PositionSource(kind="nmea_serial", path=os.ttyname(slave), align="utc")).open()
    try:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        lines = [rmc(now + dt.timedelta(seconds=i), 35.68 + 0.0002 * i, 139.76) for i in range(4)]
        lines.insert(2, "$GPRMC,garbled*00")
        os.write(master, ("\r\n".join(lines) + "\r\n").encode())
        deadline = time.monotonic() + 10
        while len(track) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(track) == 4 and track.report.bad_lines == 1
        p = track.at(now.timestamp() + 1.5)
        assert p is not None and p.lat == pytest.approx(35.68 + 0.0003, abs=1e-6)
        # a frame just after the last fix keeps it for up to max_gap_s, then has no position
        assert track.at(now.timestamp() + 3 + 2) is not None and track.at(now.timestamp() + 3 + 6) is None
    finally:
        track.stop()
        os.close(master)
        os.close(slave)


def test_a_missing_serial_device_is_a_clear_error() -> None:
    from privaflow.edge.position import SerialTrack

    with pytest.raises(PositionError, match="/dev/ttyNOPE0: cannot open the GPS receiver"):
        SerialTrack(PositionSource(kind="nmea_serial", path="/dev/ttyNOPE0", align="utc")).open()
