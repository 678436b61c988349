"""10,000 generated site configs (issue 13): each either loads into a config that an edge agent and a
stream worker accept, or is refused with a message naming the field; never another exception.

A seeded generator (not hypothesis: 10,000 cases must stay within seconds in CI) builds configs from
scratch, valid field by field, and swaps a few fields for nasty values (NaN, infinities, huge or
negative numbers, wrong types, ids with `|` or line breaks, degenerate geometry, duplicates, dangling
references). A refused config must name one of the fields that was made nasty; a config with no nasty
field must load. An accepted config goes through what the edge and the worker build from it: the
edge's detector spec, privacy filter and ground motion, the worker's camera state (tracks, lines,
zones, windows) fed with frames that cross every line, windows closed, partner records built and
Avro-encoded, state written and read back as JSON, and topics configured from its retentions.
"""

from __future__ import annotations

import io
import json
import math
import random
import re
from typing import Any

import fastavro
import numpy as np

from privaflow.edge.privacy import PrivacyFilter
from privaflow.edge.records import class_ids
from privaflow.edge.tracking import GroundMotion
from privaflow.schemas.codec import parsed_schema
from privaflow.schemas.site import COCO_CLASSES, ConfigError, SiteConfig, parse_site_config
from privaflow.schemas.topics import PARTNER_TABLES, topic, topics_for_site
from privaflow.streams.consume import CameraState
from privaflow.streams.disclosure import records_for_partners

CASES = 10_000
T0 = 1_767_225_600_000
INF, NAN = float("inf"), float("nan")
TABLES = list(PARTNER_TABLES)


class Gen:
    """One generated config: `data` plus the dotted paths of the fields given nasty values."""

    def __init__(self, rng: random.Random, p_bad: float) -> None:
        self.rng, self.p_bad, self.nasty = rng, p_bad, set()  # type: ignore[var-annotated]

    def pick(self, path: str, good: Any, bad: list[Any]) -> Any:
        if self.rng.random() < self.p_bad:
            self.nasty.add(path)
            return self.rng.choice(bad)
        return good

    # ------------------------------------------------------------ values

    def ident(self, path: str, base: str) -> Any:
        return self.pick(path, base, ["", "a|b", "west,side", "line\nbreak", "with space", "x" * 65, 5, None, []])

    def point(self, path: str, x: float, y: float) -> Any:
        return self.pick(path, [round(x, 4), round(y, 4)],
                         [[0.5], [2, 0.5], [-0.1, 0.5], [NAN, 0.5], [0.5, INF], "a", None, [0.5, 0.5, 0.5]])

    def polygon(self, path: str) -> Any:
        r = self.rng
        cx, cy, rad, n = r.uniform(0.2, 0.8), r.uniform(0.2, 0.8), r.uniform(0.05, 0.2), r.randint(3, 8)
        angles = sorted(r.uniform(0, 2 * math.pi) for _ in range(n))
        while max(b - a for a, b in zip(angles, [*angles[1:], angles[0] + 2 * math.pi], strict=True)) > 0.9 * math.pi:
            angles = sorted(r.uniform(0, 2 * math.pi) for _ in range(n))  # points around the whole circle
        good = [[round(cx + rad * math.cos(a), 4), round(cy + rad * math.sin(a), 4)] for a in angles]
        return self.pick(path, good, [
            [[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]],  # bow tie
            [[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]],  # collinear
            [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]],
            [[0.5, 0.5], [0.5001, 0.5], [0.5, 0.5001]],  # tiny
            [[0.1, 0.1], [0.2, 0.2]], [], [[0.1, 0.1], [1.5, 0.1], [0.1, 0.9]], [[NAN, 0.1], [0.3, 0.1], [0.2, 0.5]],
        ])

    def number(self, path: str, good: Any, bad: list[Any] | None = None) -> Any:
        return self.pick(path, good, bad or [0, -1, -1e9, 1e17, 10**20, 2.5, INF, -INF, NAN, 1e-12, "five", None,
                                             [], True])

    # ------------------------------------------------------------ the config

    def site(self) -> dict[str, Any]:
        r = self.rng
        cameras, lines, zones = [], [], []
        for i in range(r.randint(1, 3)):
            p = f"cameras.{i}"
            cam: dict[str, Any] = {"id": self.ident(f"{p}.id", f"cam{i}"),
                                   "source": self.pick(f"{p}.source", r.choice([i, f"rtsp://cam{i}/s", f"/v/{i}.mp4"]),
                                                       ["", -1, None, [], {}]),
                                   "classes": self.pick(f"{p}.classes", r.sample(COCO_CLASSES[:8], r.randint(1, 4)),
                                                        [[], ["pedestrian"], ["person", "person"], "person", [None]])}
            if r.random() < 0.5:
                cam["max_width"] = self.number(f"{p}.max_width", r.randint(64, 1920))
                cam["fps"] = self.number(f"{p}.fps", r.choice([1, 5, 10, 12.5, 30]))
                cam["detect_every"] = self.number(f"{p}.detect_every", r.randint(1, 5))
            if r.random() < 0.4:
                cam["privacy_masks"] = [self.polygon(f"{p}.privacy_masks") for _ in range(r.randint(1, 2))]
            if r.random() < 0.3:
                cam["homography"] = self.pick(f"{p}.homography", [[r.uniform(1, 30), r.uniform(-1, 1), 0],
                                                                   [r.uniform(-1, 1), r.uniform(1, 30), 0], [0, 0, 1]],
                                              [[[1, 0, 0], [2, 0, 0], [0, 0, 1]], [[1, 0], [0, 1]],
                                               [[NAN, 0, 0], [0, 1, 0], [0, 0, 1]], [[0] * 3] * 3, "identity"])
            if r.random() < 0.2:
                cam["detector"] = self.pick(f"{p}.detector", {"kind": "nanodet", "conf": r.uniform(0.1, 0.9)},
                                            [{"kind": "yolo"}, {"kind": "tflite"}, {"conf": 2}, {"input_size": [0, 0]},
                                             {"input_size": [640]}, {"class_map": {"a": 1}},
                                             {"class_map": {0: 99}}, {"treshold": 0.3}])
            if r.random() < 0.2:
                cam["attributes"] = r.random() < 0.5
            cameras.append(cam)
            for j in range(r.randint(0, 2)):
                n = len(lines)
                a = (r.uniform(0, 1), r.uniform(0, 1))
                ang, length = r.uniform(0, 2 * math.pi), r.uniform(0.05, 0.6)
                b = (min(1, max(0, a[0] + length * math.cos(ang))), min(1, max(0, a[1] + length * math.sin(ang))))
                if math.dist(a, b) < 0.02:
                    b = (1 - a[0], 1 - a[1]) if math.dist(a, (1 - a[0], 1 - a[1])) >= 0.02 else (0.0, 0.0)
                points = [self.point(f"lines.{n}.points", *a), self.point(f"lines.{n}.points", *b)]
                line: dict[str, Any] = {"id": self.ident(f"lines.{n}.id", f"line{i}-{j}"), "camera": f"cam{i}",
                                        "points": points}
                if r.random() < 0.5:
                    line["directions"] = self.pick(f"lines.{n}.directions", ["in", "out"],
                                                   [["in", "in"], ["a|b", "c"], ["x"], "in,out", [1, 2]])
                lines.append(line)
            for j in range(r.randint(0, 2)):
                n = len(zones)
                zone: dict[str, Any] = {"id": self.ident(f"zones.{n}.id", f"zone{i}-{j}"), "camera": f"cam{i}",
                                        "polygon": self.polygon(f"zones.{n}.polygon")}
                if r.random() < 0.5:
                    zone["capacity"] = self.number(f"zones.{n}.capacity", r.randint(1, 200))
                zones.append(zone)
        expiry = r.uniform(0.5, 30)
        data: dict[str, Any] = {"site_id": self.ident("site_id", "site"), "cameras": cameras, "lines": lines,
                                "zones": zones}
        if r.random() < 0.7:
            data["windows"] = {t: self.number(f"windows.{t}", r.choice([1, 5, 10, 60, 300, 3600, 86400]))
                               for t in r.sample(TABLES, r.randint(1, 5))}
            data["windows"]["grace_s"] = self.number("windows.grace_s", math.ceil(expiry + 1) + r.randint(0, 60),
                                                     [0, -1, 1e17, 2.5, NAN, "x"])
            if r.random() < 0.3:
                data["windows"]["max_clock_skew_s"] = self.number("windows.max_clock_skew_s", r.randint(0, 3600))
        else:
            expiry = r.uniform(0.5, 20)  # default grace 30 s
        bins = sorted(r.sample(range(1, 600), r.randint(1, 8)))
        data["counting"] = {
            "track_expiry_s": self.number("counting.track_expiry_s", round(expiry, 2), [0, -5, INF, NAN, 1e9]),
            "min_track_frames": self.number("counting.min_track_frames", r.randint(1, 8)),
            "hysteresis": self.number("counting.hysteresis", r.uniform(0, 0.1), [-0.1, 0.9, NAN]),
            "dwell_bins_s": self.pick("counting.dwell_bins_s", bins,
                                      [[], [30, -5, NAN, 30], [5, 5], [INF], [0], list(range(1, 60)), "5,15"])}
        if r.random() < 0.5:
            data["retention"] = {k: self.number(f"retention.{k}", r.choice([0.5, 1, 7, 30, 365]),
                                                [INF, 1e-9, 0, -1, NAN, 1e6])
                                 for k in ("detections_days", "partner_days")}
        partners = []
        for i in range(r.randint(0, 3)):
            k = r.choice([2, 2, 2, 3, 5, 20])
            partner: dict[str, Any] = {"id": self.pick(f"partners.{i}.id", f"p{i}", ["", "a|b", "p p", 3]),
                                       "k_anonymity": self.number(f"partners.{i}.k_anonymity", k),
                                       "tables": self.pick(f"partners.{i}.tables", r.sample(TABLES, r.randint(1, 5)),
                                                           [[], ["faces"], ["occupancy", "occupancy"], "occupancy"])}
            if r.random() < 0.6:
                partner["token_env"] = self.pick(f"partners.{i}.token_env", f"PRIVAFLOW_TOKEN_P{i}",
                                                 ["HOME", "PATH", "privaflow_token_x", "", "PRIVAFLOW_TOKEN_", 7])
            partners.append(partner)
        data["partners"] = partners
        self._structure(data)
        return data

    def _structure(self, d: dict[str, Any]) -> None:
        """Mistakes across fields: duplicates, dangling references, a line and a zone sharing an id."""
        r = self.rng
        for kind in ("cameras", "lines", "zones", "partners"):
            if len(d[kind]) >= 2 and r.random() < self.p_bad:
                d[kind][1]["id"] = d[kind][0]["id"]
                self.nasty.add(f"{kind}.1.id")
        if d["lines"] and r.random() < self.p_bad:
            d["lines"][0]["camera"] = "ghost"
            self.nasty.add("lines.0.camera")
        if d["lines"] and d["zones"] and r.random() < self.p_bad:
            d["zones"][0]["id"] = d["lines"][0]["id"]
            self.nasty |= {"zones.0.id", "lines.0.id"}
        if r.random() < self.p_bad / 2:
            d[r.choice(["extra", "typo"])] = 1
            self.nasty.add(next(k for k in ("extra", "typo") if k in d))


# ---------------------------------------------------------------- what an edge agent and a worker do with it


def _frames(camera_id: str, site_id: str) -> list[dict[str, Any]]:
    """Two people walking across the whole picture (one across, one down) and a car standing still:
    whatever the lines, zones and masks, every line is crossed and every zone visited."""
    out = []
    for k in range(24):
        t = k / 23
        dets = [_det(1, "person", 0.02 + 0.96 * t, 0.5), _det(2, "person", 0.5, 0.02 + 0.96 * t),
                _det(3, "car", 0.3, 0.7)]
        out.append({"site_id": site_id, "camera_id": camera_id, "ts": T0 + 500 * k, "frame_seq": k,
                    "frame_width": 640, "frame_height": 480, "detected": True, "detections": dets})
    return out


def _det(tid: int, cls: str, x: float, y: float) -> dict[str, Any]:
    return {"track_id": tid, "class_name": cls, "confidence": 0.9, "x1": max(0, x - 0.02), "y1": max(0, y - 0.1),
            "x2": min(1, x + 0.02), "y2": y, "foot_x": x, "foot_y": y, "world_x_m": None, "world_y_m": None,
            "speed_kmh": None, "heading_deg": None, "colour": None, "age_bracket": "20-29", "gender": "female"}


def accept(site: SiteConfig) -> int:
    """Build and run what the edge agent and the stream worker build from the config; returns how many
    partner records came out. Any exception here is a config the loader should have refused."""
    published = 0
    for cam in site.cameras:
        class_ids(cam.classes)  # the edge maps the class names to its detector's ids
        PrivacyFilter(cam.max_width, cam.privacy_masks).apply(np.full((48, 64, 3), 255, np.uint8))
        if cam.homography is not None:
            motion = GroundMotion(cam.homography)
            for k in range(3):
                motion.update([1], [[0.2 + 0.1 * k, 0.8]], T0 + 500 * k)
        state = CameraState.new(site, cam.id)
        events = state.book.observe_many(_frames(cam.id, site.site_id)) + state.book.expire_all()
        state.windows.add(events)
        last = T0 + 24 * 500
        closed = state.windows.close(last + 8 * 86_400_000)
        for topic_name, records in records_for_partners(closed, site).items():
            schema = parsed_schema(topic(topic_name).value_schema or "")
            for key, value in records:
                assert "\n" not in key and key.count("|") >= 3, key
                fastavro.schemaless_writer(io.BytesIO(), schema, value)
                published += 1
        snapshot = json.loads(json.dumps(state.to_state(), allow_nan=False))
        CameraState.from_state(site, cam.id, snapshot)
    for t in topics_for_site(site):
        assert int(t.config()["retention.ms"]) >= 3_600_000, t
    return published


_LOC = re.compile(r"^  ([^\s:]+): ")


def test_ten_thousand_generated_site_configs_load_and_run_or_are_refused_naming_the_field() -> None:
    rng = random.Random(20261202)
    accepted = refused = records = 0
    for case in range(CASES):
        gen = Gen(rng, p_bad=rng.choice([0.0, 0.01, 0.03, 0.08]))
        data = gen.site()
        try:
            site = parse_site_config(data, "fuzz.yaml")
        except ConfigError as e:
            msg = str(e)
            assert gen.nasty, f"case {case}: a config without nasty fields was refused:\n{msg}\n{data}"
            head, *problems = msg.splitlines()
            assert head == "fuzz.yaml: invalid site config" and problems, msg
            locs = [m.group(1) for m in map(_LOC.match, problems) if m]
            assert len(locs) == len(problems), f"case {case}: a line names no field:\n{msg}"
            named = any(loc.startswith(p) or p.startswith(loc) or p in msg for loc in locs for p in gen.nasty)
            assert named, f"case {case}: refused naming {locs}, but the nasty fields were {sorted(gen.nasty)}"
            refused += 1
            continue
        try:
            records += accept(site)
        except Exception as e:
            raise AssertionError(f"case {case}: loaded, then {type(e).__name__}: {e}\n{data}") from e
        accepted += 1
    assert accepted + refused == CASES
    assert accepted > CASES // 4 and refused > CASES // 4, (accepted, refused)
    # two people and a car per camera: most cells hold fewer than k distinct objects and are not published
    assert records > accepted // 4, "accepted configs published partner records"
