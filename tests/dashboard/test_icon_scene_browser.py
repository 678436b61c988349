"""Icon scenes and the road-condition map in a real browser (Debian's chromium): detection records from
the edge agent on real footage (the dashcam clip on a mobile camera, the street clip on a fixed one) and
road-conditions partner rows on the real broker, `privaflow api serve`'s app reading them, the page
drawing every camera's latest frame as icons and the road cells as coloured hexagons. Covers G4 and G5
(people as icons, no pixel of a camera on the page) and T5 (congestion shown graphically).
Leaves screenshots in .privaflow/screenshots/icon-scene.png and road-map.png."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import fastavro
import httpx
import pytest
from confluent_kafka import Producer

from privaflow.edge.agent import Agent, build_detector
from privaflow.edge.position import read_track
from privaflow.edge.publish import AvroFileSink
from privaflow.partner.api import make_app
from privaflow.partner.scenes import LatestFrames
from privaflow.partner.store import PartnerStore
from privaflow.schemas.cells import snap
from privaflow.schemas.codec import SchemaRegistry, serde_for_topic
from privaflow.schemas.detections import batch_records, record_frames
from privaflow.schemas.site import parse_site_config
from privaflow.schemas.topics import DETECTIONS, operator_topic_name
from privaflow.streams.disclosure import k_anonymous_record, operator_value
from privaflow.streams.partners import partner_key
from privaflow.streams.road_conditions import ProbeFrame, RoadWindows
from privaflow.streams.tables import ClosedWindow
from tests.api.background import BackgroundServer
from tests.conftest import media_path
from tests.dashboard.reading import REPO, SCREENSHOTS

pytestmark = pytest.mark.integration

TRACK = REPO / "examples" / "tracks" / "drive.gpx"


def _site(site_id: str) -> Any:
    return parse_site_config({
        "site_id": site_id,
        "cameras": [
            {"id": "taxi", "kind": "mobile", "source": str(media_path("drive.mp4")), "fps": 5, "detect_every": 1,
             "classes": ["person", "bicycle", "car", "motorcycle", "bus", "truck", "traffic light", "stop sign"],
             "mobile": {"position": {"kind": "gpx", "path": str(TRACK)}, "trip_end_radius_m": 0,
                        "camera_hfov_deg": 60}},
            {"id": "street", "source": str(media_path("sample.mp4")), "fps": 5, "detect_every": 1,
             "classes": ["person", "bicycle", "car", "motorcycle", "bus", "truck"]}],
        "partners": [{"id": "maps", "k_anonymity": 2, "tables": ["road_conditions"]}]})


def _edge_records(site: Any, camera: str, frames: int, tmp: Path) -> list[dict[str, Any]]:
    out = tmp / f"{camera}.avro"
    cam = site.camera(camera)
    Agent(site.site_id, cam, build_detector(cam), AvroFileSink(str(out)), max_frames=frames, status_every_s=0).run()
    with out.open("rb") as f:
        return list(fastavro.reader(f))


def _ending_on(records: list[dict[str, Any]], objects: int) -> list[dict[str, Any]]:
    """The same frames in records of 5, up to the last frame with at least `objects` objects."""
    frames = [f for r in records for f in record_frames(r)]
    last = max(i for i, f in enumerate(frames) if len(f["detections"]) >= objects)
    return batch_records(frames[:last + 1], 5)


def _road_rows(site: Any) -> list[tuple[str, dict[str, Any]]]:
    """Cells along the shipped track, three trips each, one cell per congestion level and the rest free."""
    track = read_track(site.camera("taxi").mobile.position)
    cells = list(dict.fromkeys(snap(f.lat, f.lon, 9) for f in track._fixes))
    w = RoadWindows(60_000, 1_000)
    t0 = (int(time.time()) // 60 - 3) * 60_000  # a window that closed a few minutes ago: inside the page's period
    speeds = {0: (95.0, 0), 1: (15.0, 1), 2: (7.0, 2), 3: (2.0, 3)}
    for i, cell in enumerate(cells):
        speed, ahead = speeds.get(i, (90.0, 0))
        for trip in (1, 2, 3):
            w.add([ProbeFrame("taxi", t0 + j, trip, cell, "NW", speed, ahead, j % 2) for j in range(5)], t0 + 1_000)
    # the operator's records of the cells (the dashboard's road map is the operator's view); every cell
    # here is one the partners get too (three trips, k = 2)
    out = []
    for s, e, dims, agg in w.close(10**13):
        c = ClosedWindow("road_conditions", site.site_id, dims, s, e, agg)
        assert k_anonymous_record(c, 2) is not None
        out.append((partner_key(c), operator_value(c)))
    return out


def test_icon_scenes_and_road_map(stack: Any, unique: str, tmp_path: Path, page: Any) -> None:
    site = _site(f"scene-{unique}")
    taxi = _edge_records(site, "taxi", 120, tmp_path)
    street = _edge_records(site, "street", 40, tmp_path)
    # end each camera on a frame with several objects, so the scene has something to draw: the
    # records are packed again up to that frame (where the agent cut them depends on its pace)
    taxi, street = _ending_on(taxi, 2), _ending_on(street, 3)
    registry = SchemaRegistry(stack.registry_url)
    producer = Producer({"bootstrap.servers": stack.bootstrap})
    det = serde_for_topic(registry, DETECTIONS)
    for r in taxi[-20:] + street[-20:]:
        producer.produce(DETECTIONS, key=r["camera_id"].encode(), value=det.encode(r))
    road = serde_for_topic(registry, operator_topic_name("road_conditions"))
    rows = _road_rows(site)
    for key, value in rows:
        producer.produce(operator_topic_name("road_conditions"), key=key.encode(), value=road.encode(value))
    assert producer.flush(30) == 0

    store = PartnerStore(site.site_id, bootstrap=stack.bootstrap, registry=registry, kafka_config={})
    frames = LatestFrames(site, bootstrap=stack.bootstrap, registry=registry, kafka_config={}, min_interval_s=0)
    token = "icon-scene-operator-token-0123"
    with BackgroundServer(make_app(site, store, {}, frames=frames, operator=token)) as server, \
            httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as c:
        def served() -> bool:
            scenes = [c.get(f"/api/v1/operator/scene/{cam}").json() for cam in ("taxi", "street")]
            return (all(s["ts"] == last["ts"][-1] for s, last in zip(scenes, (taxi[-1], street[-1]), strict=True))
                    and len(c.get("/api/v1/operator/road-map").json()["cells"]) == len({v["h3_cell"] for _, v in rows}))
        _wait(served, 60)
        api_scenes = {cam: c.get(f"/api/v1/operator/scene/{cam}").json() for cam in ("taxi", "street")}
        api_map = c.get("/api/v1/operator/road-map").json()

        assert httpx.get(f"{server.url}/api/v1/operator/scene/taxi").status_code == 401  # operator data
        page.goto(f"{server.url}/dashboard/?refresh=1#token={token}")
        page.wait_for_selector('[data-testid="scene-taxi"]', timeout=20_000)
        page.wait_for_selector('[data-testid="road-map"] polygon', timeout=20_000)
        for cam, scene in api_scenes.items():
            svg = page.locator(f'[data-testid="scene-{cam}"]')
            assert svg.get_attribute("data-objects") == str(len(scene["objects"]))
            drawn = svg.locator("g.scene-icon").evaluate_all("gs => gs.map(g => g.dataset.class).sort()")
            assert drawn == sorted(o["class_name"] for o in scene["objects"])
            people = svg.locator('g.scene-icon.person use[href="#person"]').count()
            assert people == sum(o["class_name"] == "person" for o in scene["objects"])
        assert api_scenes["taxi"]["probe"]["h3_cell"] and "track_id" not in str(api_scenes)
        # not one pixel of a camera: no raster image anywhere in the page's scenes or map
        assert page.locator("#sec-scenes img, #sec-scenes image, #sec-scenes canvas, #sec-road img, "
                            "#sec-road image, #sec-road canvas").count() == 0
        levels = page.locator('[data-testid="road-map"] polygon.road-cell').evaluate_all(
            "ps => ps.map(p => [p.dataset.testid.slice(10), p.dataset.level])")
        assert sorted(levels) == sorted([c_["h3_cell"], c_["congestion_level"]] for c_ in api_map["cells"])
        assert {lvl for _, lvl in levels} == {"FREE", "SLOW", "CONGESTED", "JAMMED"}
        assert not page.errors and not page.outside_requests  # type: ignore[attr-defined]
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.locator("#sec-scenes").screenshot(path=str(SCREENSHOTS / "icon-scene.png"))
        page.locator("#sec-road").screenshot(path=str(SCREENSHOTS / "road-map.png"))
    registry.close()


def _wait(probe: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if probe():
                return
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.3)
    raise AssertionError("the API did not serve the produced records in time")
