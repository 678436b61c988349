"""A scene simulator with known truth, and a detector-like degradation of what it sees.

People and vehicles walk or drive through a camera's configured lines and zones on straight or
gently curved paths at varied speeds (some people pause), entering and leaving the frame; each
frame becomes a dict with per-object `detections` (all fields set), which
`privaflow.schemas.detections.batch_records` packs into DetectionBatch records as the edge does.
The truth is computed from the noise-free paths: per line/direction/class the number of objects
that crossed (an object counts once per direction, as the product counts objects, not wiggles), per
zone the entries and origin->destination transitions, and the dwell times.

Paths are drawn so that their truth is unambiguous: a path whose events change when the line and
zone edges are blurred by 1.5x the configured hysteresis, or segment ends by 2x the tracker's margin,
or both, is redrawn. The error measured against the truth is then the detector noise's and the tracker's, not
an argument about whether a path grazing a corner "entered". Everything is deterministic given the
seed.

`many_cameras` builds a synthetic site of N cameras with a given number of objects in view for the
load benchmark.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from privaflow.schemas.site import Camera, SiteConfig, parse_site_config
from privaflow.streams.geometry import PolygonSet, along, apply_homography, side
from privaflow.streams.tracks import SEGMENT_MARGIN

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: a round, realistic epoch for simulated frames
AGE_BRACKETS = ("10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")
# class -> (relative frequency, speed range in frame widths per second, box height at the bottom)
_CLASSES: dict[str, tuple[float, tuple[float, float], float]] = {
    "person": (4.0, (0.04, 0.10), 0.30),
    "bicycle": (1.0, (0.10, 0.20), 0.25),
    "car": (3.0, (0.15, 0.35), 0.25),
    "motorcycle": (0.7, (0.15, 0.35), 0.20),
    "bus": (0.4, (0.10, 0.25), 0.45),
    "truck": (0.8, (0.10, 0.30), 0.40),
}
_OTHER = (1.0, (0.05, 0.2), 0.25)


@dataclass(frozen=True)
class Noise:
    """How a real detector and tracker degrade the scene."""

    miss: float = 0.0  # probability that a detection is dropped from a frame
    false_positive: float = 0.0  # false boxes, as a fraction of the true detections
    jitter: float = 0.0  # gaussian sigma of the foot point, normalised units
    id_switch: float = 0.0  # probability per track that its id changes once mid-path


NO_NOISE = Noise()
REALISTIC = Noise(miss=0.05, false_positive=0.01, jitter=0.005, id_switch=0.01)
HEAVY = Noise(miss=0.20, false_positive=0.05, jitter=0.012, id_switch=0.10)


@dataclass
class Truth:
    """What really happened in a simulated scene."""

    objects: int = 0
    redrawn: int = 0  # paths drawn and thrown away as ambiguous (see the module docstring)
    crossings: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (line, direction, class)
    entries: Counter[str] = field(default_factory=Counter)  # zone
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (origin, destination)
    dwell_s: dict[str, list[float]] = field(default_factory=dict)  # zone -> dwell of every visit


def count_error(got: Counter[Any], truth: Counter[Any]) -> float:
    """Counting error as a fraction of the true total: the sum over cells of |got - truth| divided
    by the sum of truth (a miss in one cell and a spurious count in another add up, not cancel)."""
    total = sum(truth.values())
    cells = set(got) | set(truth)
    wrong = sum(abs(got.get(c, 0) - truth.get(c, 0)) for c in cells)
    return wrong / total if total else float(wrong > 0)


@dataclass
class Simulation:
    frames: list[dict[str, Any]]
    truth: Truth


@dataclass
class _Path:
    cls: str
    k: np.ndarray  # frame indices
    x: np.ndarray
    y: np.ndarray
    speed_kmh: np.ndarray | None
    age: str | None
    gender: str | None
    colour: str | None = None


class _Scene:
    """One camera's geometry plus the reference (slow, obviously correct) event extraction."""

    def __init__(self, site: SiteConfig, camera: Camera, fps: float) -> None:
        self.camera, self.fps = camera, fps
        self.lines = site.lines_for(camera.id)
        self.zones = site.zones_for(camera.id)
        self.polys = PolygonSet([z.polygon for z in self.zones]) if self.zones else None
        self.h = site.counting.hysteresis
        classes = [c for c in camera.classes] or ["person"]
        w = np.array([_CLASSES.get(c, _OTHER)[0] for c in classes])
        self.classes, self.class_p = classes, w / w.sum()
        self.homography = np.asarray(camera.homography) if camera.homography else None

    def events(self, x: np.ndarray, y: np.ndarray, h: float, margin: float
               ) -> tuple[set[tuple[str, int]], list[tuple[str, str | None]], list[tuple[str, float]]]:
        """Crossings {(line, direction index)}, entries [(zone, origin)] and dwells [(zone, s)] of
        one sampled path, with hysteresis h and segment margin `margin` (normalised units)."""
        pts = np.stack([x, y], axis=1)
        crossings: set[tuple[str, int]] = set()
        for ln in self.lines:
            a, b = ln.points
            s, t = side(pts, a, b), along(pts, a, b)
            conf = np.abs(s) >= max(h, 1e-12)
            cs, ct = s[conf], t[conf]
            m_t = margin / float(np.hypot(b[0] - a[0], b[1] - a[1]))
            for f in np.nonzero(np.sign(cs[1:]) != np.sign(cs[:-1]))[0]:
                tc = ct[f] + (ct[f + 1] - ct[f]) * cs[f] / (cs[f] - cs[f + 1])
                if -m_t <= tc <= 1 + m_t:
                    crossings.add((ln.id, 0 if cs[f] > 0 else 1))
        entries: list[tuple[str, str | None]] = []
        dwells: list[tuple[str, float]] = []
        if self.polys is None:
            return crossings, entries, dwells
        inside, d2 = self.polys.classify(x, y)
        changes: list[tuple[int, int, int]] = []  # (sample, 0 exit / 1 entry, zone)
        for z in range(len(self.zones)):
            conf = d2[:, z] >= h * h
            val = np.where(inside[:, z], 1, -1)
            idx = np.where(conf, np.arange(len(x)), -1)
            last = np.maximum.accumulate(idx)
            state = np.where(last >= 0, val[np.maximum(last, 0)], 0)
            prev = np.concatenate([[0], state[:-1]])
            changes.extend((int(i), 1, z) for i in np.nonzero((state == 1) & (prev != 1))[0])
            changes.extend((int(i), 0, z) for i in np.nonzero((state == -1) & (prev == 1))[0])
        changes.sort()
        origin: str | None = None
        entered: dict[int, int] = {}
        for at, kind, zi in changes:
            zid = self.zones[zi].id
            if kind == 1:
                entries.append((zid, origin))
                entered[zi] = at
            else:
                dwells.append((zid, (at - entered.pop(zi)) / self.fps))
                origin = zid
        for zi, at in entered.items():  # still inside when last seen: leaves then
            dwells.append((self.zones[zi].id, (len(x) - 1 - at) / self.fps))
        return crossings, entries, dwells

    def unambiguous(self, x: np.ndarray, y: np.ndarray, pause_xy: tuple[float, float] | None) -> bool:
        exact = self.events(x, y, 0.0, 0.0)
        for h, margin in ((0.0, 2 * SEGMENT_MARGIN), (1.5 * self.h, 0.0), (1.5 * self.h, 2 * SEGMENT_MARGIN)):
            blurred = self.events(x, y, h, margin)
            if exact[0] != blurred[0] or sorted(exact[1], key=str) != sorted(blurred[1], key=str):
                return False
        if pause_xy is not None:  # a pause on an edge would let jitter decide the count
            p = np.array([pause_xy])
            if any(abs(side(p, *ln.points)[0]) < 3 * self.h for ln in self.lines):
                return False
            if self.polys is not None:
                _, d2 = self.polys.classify(p[:, 0], p[:, 1])
                if np.any(d2 < (3 * self.h) ** 2):
                    return False
        return True


def _in_frame_range(px: np.ndarray, py: np.ndarray, mid: int) -> tuple[int, int]:
    ok = (px >= 0) & (px <= 1) & (py >= 0) & (py <= 1)
    lo = mid
    while lo > 0 and ok[lo - 1]:
        lo -= 1
    hi = mid
    while hi < len(ok) - 1 and ok[hi + 1]:
        hi += 1
    return lo, hi


def _draw_path(scene: _Scene, rng: np.random.Generator, duration_s: float, complete: bool
               ) -> tuple[_Path, tuple[float, float] | None]:
    cls = str(rng.choice(scene.classes, p=scene.class_p))
    _, (vlo, vhi), _ = _CLASSES.get(cls, _OTHER)
    v = rng.uniform(vlo, vhi)
    if scene.lines:  # aim at a counting line, at an angle of at most 50 degrees from its normal
        ln = scene.lines[rng.integers(len(scene.lines))]
        (ax, ay), (bx, by) = ln.points
        t = rng.uniform(0.15, 0.85)
        target = np.array([ax + t * (bx - ax), ay + t * (by - ay)])
        base = np.arctan2(ax - bx, by - ay)  # direction of the line's normal
        angle = base + rng.uniform(-0.87, 0.87) + (np.pi if rng.random() < 0.5 else 0.0)
    else:
        if scene.zones:
            zone = scene.zones[rng.integers(len(scene.zones))]
            poly = np.asarray(zone.polygon)
            lo, hi = poly.min(axis=0), poly.max(axis=0)
            target = rng.uniform(lo, hi)
        else:
            target = rng.uniform(0.2, 0.8, size=2)
        angle = rng.uniform(0, 2 * np.pi)
    u = np.array([np.cos(angle), np.sin(angle)])
    normal = np.array([-u[1], u[0]])
    bend = rng.uniform(-0.2, 0.2)  # gentle: at most ~0.05 of the frame off straight over half a width
    grid = np.linspace(-2.0, 2.0, 801)
    gx = target[0] + grid * u[0] + bend * grid**2 * normal[0]
    gy = target[1] + grid * u[1] + bend * grid**2 * normal[1]
    lo, hi = _in_frame_range(gx, gy, 400)
    s_in, s_out = grid[lo] - 0.03, grid[hi] + 0.03  # start and end just outside the frame
    pause = 0.0
    s_pause = s_in
    if cls == "person" and rng.random() < 0.3:  # some people stop: dwell times with a long tail
        pause = float(rng.uniform(2.0, 60.0))
        s_pause = rng.uniform(s_in + 0.1 * (s_out - s_in), s_out - 0.1 * (s_out - s_in))
    travel = (s_out - s_in) / v + pause
    if complete and travel < duration_s:
        start = rng.uniform(0.0, duration_s - travel)
    else:  # stationary stream: objects already in view at the start, some still in view at the end
        start = rng.uniform(-travel, duration_s)
    fps = scene.fps
    k = np.arange(max(0, int(np.ceil(start * fps))), int(np.floor(min(start + travel, duration_s) * fps)) + 1)
    k = k[k / fps < duration_s]
    tt = k / fps - start
    tp = (s_pause - s_in) / v
    s = s_in + v * (tt - np.clip(tt - tp, 0.0, pause))
    x = target[0] + s * u[0] + bend * s**2 * normal[0]
    y = target[1] + s * u[1] + bend * s**2 * normal[1]
    keep = (x >= 0) & (x <= 1) & (y >= 0) & (y <= 1)
    k, x, y = k[keep], x[keep], y[keep]
    speed = None
    if scene.homography is not None and len(k):
        w = apply_homography(scene.homography, np.stack([x, y], axis=1))
        step = np.hypot(np.diff(w[:, 0]), np.diff(w[:, 1])) * fps * 3.6
        speed = np.concatenate([step[:1], step]) if len(step) else np.zeros(1)
    age = gender = None
    if scene.camera.attributes and cls == "person":
        age = str(rng.choice(AGE_BRACKETS))
        gender = "female" if rng.random() < 0.5 else "male"
    pause_xy = None
    if pause:
        pause_xy = (float(target[0] + s_pause * u[0] + bend * s_pause**2 * normal[0]),
                    float(target[1] + s_pause * u[1] + bend * s_pause**2 * normal[1]))
    return _Path(cls, k, x, y, speed, age, gender), pause_xy


def _paths(scene: _Scene, rng: np.random.Generator, n: int, duration_s: float, complete: bool,
           check: bool) -> tuple[list[_Path], int]:
    """n paths, and how many were redrawn as ambiguous (or too short to see)."""
    out: list[_Path] = []
    redrawn = 0
    while len(out) < n:
        for _attempt in range(50):
            path, pause_xy = _draw_path(scene, rng, duration_s, complete)
            if len(path.k) >= 2 and (not check or scene.unambiguous(path.x, path.y, pause_xy)):
                break
            redrawn += 1
        out.append(path)
    return out, redrawn


def _truth(scene: _Scene, paths: list[_Path]) -> Truth:
    truth = Truth(objects=len(paths))
    for p in paths:
        crossings, entries, dwells = scene.events(p.x, p.y, 0.0, 0.0)
        by_id = {ln.id: ln for ln in scene.lines}
        for line_id, d in crossings:
            truth.crossings[(line_id, by_id[line_id].directions[d], p.cls)] += 1
        for zone, origin in entries:
            truth.entries[zone] += 1
            if origin is not None:
                truth.transitions[(origin, zone)] += 1
        for zone, secs in dwells:
            truth.dwell_s.setdefault(zone, []).append(secs)
    return truth


def _frames(site: SiteConfig, scene: _Scene, paths: list[_Path], rng: np.random.Generator, noise: Noise,
            n_frames: int, t0_ms: int) -> list[dict[str, Any]]:
    fps = scene.fps
    ids = rng.choice(2**53, size=2 * len(paths) + 16, replace=False) + 1  # random, as the edge does
    next_id = len(paths)
    cols: dict[str, list[Any]] = {c: [] for c in ("k", "tid", "cls", "x", "y", "speed", "age", "gender", "colour")}
    for i, p in enumerate(paths):
        tid = np.full(len(p.k), ids[i], dtype=np.int64)
        if noise.id_switch and rng.random() < noise.id_switch and len(p.k) > 4:
            at = rng.integers(len(p.k) // 10 + 1, len(p.k) - len(p.k) // 10)
            tid[at:] = ids[next_id]
            next_id += 1
        keep = rng.random(len(p.k)) >= noise.miss
        n = int(keep.sum())
        cols["k"].append(p.k[keep])
        cols["tid"].append(tid[keep])
        cols["cls"].append([p.cls] * n)
        cols["x"].append(p.x[keep])
        cols["y"].append(p.y[keep])
        cols["speed"].append(p.speed_kmh[keep].tolist() if p.speed_kmh is not None else [None] * n)
        cols["age"].append([p.age] * n)
        cols["gender"].append([p.gender] * n)
        cols["colour"].append([p.colour] * n)
    n_true = sum(len(a) for a in cols["k"])
    n_fp = int(rng.poisson(noise.false_positive * n_true / 2.5)) if noise.false_positive else 0
    # false positives: short-lived boxes anywhere (1-4 frames), wandering by the jitter
    for j, n in enumerate(rng.integers(1, 5, size=n_fp).tolist()):
        k0 = rng.integers(0, max(1, n_frames - n))
        start = rng.uniform(0.02, 0.98, size=2)
        walk = start + np.cumsum(rng.normal(0, max(noise.jitter, 0.002), size=(n, 2)), axis=0)
        cols["k"].append(np.arange(k0, k0 + n))
        cols["tid"].append(np.full(n, int(rng.integers(2**53, 2**62)) + j))
        cols["cls"].append([str(rng.choice(scene.classes))] * n)
        cols["x"].append(walk[:, 0])
        cols["y"].append(walk[:, 1])
        cols["speed"].append([None] * n)
        cols["age"].append([None] * n)
        cols["gender"].append([None] * n)
        cols["colour"].append([None] * n)
    k = np.concatenate(cols["k"]) if cols["k"] else np.zeros(0, dtype=np.int64)
    x = np.concatenate(cols["x"]) if cols["x"] else np.zeros(0)
    y = np.concatenate(cols["y"]) if cols["y"] else np.zeros(0)
    if noise.jitter:
        x = x + rng.normal(0, noise.jitter, size=x.shape)
        y = y + rng.normal(0, noise.jitter, size=y.shape)
    x, y = np.clip(x, 0.0, 1.0), np.clip(y, 0.0, 1.0)  # a detector's box never leaves the frame
    cls = [c for part in cols["cls"] for c in part]
    tid = np.concatenate(cols["tid"]) if cols["tid"] else np.zeros(0, dtype=np.int64)
    speed = [s for part in cols["speed"] for s in part]
    age = [a for part in cols["age"] for a in part]
    gender = [g for part in cols["gender"] for g in part]
    colour = [c for part in cols["colour"] for c in part]
    # boxes grow towards the bottom of the frame (perspective); the foot is the bottom centre
    hbase = np.array([_CLASSES.get(c, _OTHER)[2] for c in cls]) if cls else np.zeros(0)
    bh = hbase * (0.4 + 0.6 * y)
    bw = bh * np.where(np.array([c == "person" for c in cls], dtype=bool), 0.4, 1.3) if cls else bh
    conf = rng.uniform(0.4, 0.95, size=k.shape)
    world = apply_homography(scene.homography, np.stack([x, y], axis=1)) if scene.homography is not None else None
    order = np.argsort(k, kind="stable")
    width = site.camera(scene.camera.id).max_width
    height = width * 3 // 4
    frames = [{"site_id": site.site_id, "camera_id": scene.camera.id, "ts": t0_ms + int(round(f * 1000 / fps)),
               "frame_seq": f, "frame_width": width, "frame_height": height, "detected": True,
               "detections": []} for f in range(n_frames)]
    kl, xl, yl, tl = k.tolist(), x.tolist(), y.tolist(), tid.tolist()
    x1 = np.clip(x - bw / 2, 0, 1).tolist()
    x2 = np.clip(x + bw / 2, 0, 1).tolist()
    y1 = np.clip(y - bh, 0, 1).tolist()
    cl = conf.tolist()
    wl = world.tolist() if world is not None else None
    for i in order.tolist():
        frames[kl[i]]["detections"].append({
            "track_id": tl[i], "class_name": cls[i], "confidence": cl[i],
            "x1": x1[i], "y1": y1[i], "x2": x2[i], "y2": yl[i], "foot_x": xl[i], "foot_y": yl[i],
            "world_x_m": wl[i][0] if wl else None, "world_y_m": wl[i][1] if wl else None,
            "speed_kmh": None if speed[i] is None else float(speed[i]), "heading_deg": None,
            "colour": colour[i], "age_bracket": age[i], "gender": gender[i]})
    return frames


def simulate(site: SiteConfig, camera_id: str, duration_s: float, fps: float, n_objects: int,
             noise: Noise = NO_NOISE, seed: int = 0, t0_ms: int = T0_MS) -> Simulation:
    """`n_objects` objects (in total) pass through the camera's scene within `duration_s`; returns
    the frames (one per 1/fps, empty ones included) and the truth."""
    scene = _Scene(site, site.camera(camera_id), fps)
    rng = np.random.default_rng(seed)
    paths, redrawn = _paths(scene, rng, n_objects, duration_s, complete=True, check=True)
    n_frames = int(np.ceil(duration_s * fps))
    truth = _truth(scene, paths)
    truth.redrawn = redrawn
    return Simulation(_frames(site, scene, paths, rng, noise, n_frames, t0_ms), truth)


def synthetic_site(n_cameras: int, site_id: str = "bench") -> SiteConfig:
    """A site of identical cameras, each with a vertical counting line and two zones either side."""
    cams = [{"id": f"cam-{i:03d}", "source": i, "classes": list(_CLASSES)} for i in range(n_cameras)]
    lines, zones = [], []
    for c in cams:
        lines.append({"id": f"{c['id']}-line", "camera": c["id"], "points": [[0.5, 0.1], [0.5, 0.95]]})
        zones.append({"id": f"{c['id']}-west", "camera": c["id"], "capacity": 10,
                      "polygon": [[0.05, 0.1], [0.45, 0.1], [0.45, 0.95], [0.05, 0.95]]})
        zones.append({"id": f"{c['id']}-east", "camera": c["id"], "capacity": 10,
                      "polygon": [[0.55, 0.1], [0.95, 0.1], [0.95, 0.95], [0.55, 0.95]]})
    return parse_site_config({
        "site_id": site_id, "cameras": cams, "lines": lines, "zones": zones,
        "partners": [{"id": "city", "k_anonymity": 5, "tables": ["traffic_volume", "occupancy", "flow_lines"]},
                     {"id": "shop", "k_anonymity": 10, "tables": ["occupancy", "dwell", "attributes"]}]},
        "<synthetic>")


def many_cameras(n_cameras: int = 200, fps: float = 10.0, objects_in_view: float = 10.0,
                 duration_s: float = 30.0, noise: Noise = REALISTIC, seed: int = 0,
                 t0_ms: int = T0_MS) -> tuple[SiteConfig, list[dict[str, Any]]]:
    """A load: `n_cameras` cameras of `synthetic_site`, each with about `objects_in_view` objects in
    view at any time, frames of all cameras merged in event-time order. No truth (paths are not
    checked for ambiguity, which keeps generation fast)."""
    site = synthetic_site(n_cameras)
    rng = np.random.default_rng(seed)
    n_frames = int(np.ceil(duration_s * fps))
    frames: list[dict[str, Any]] = []
    for cam in site.cameras:
        scene = _Scene(site, cam, fps)
        probe, _ = _paths(scene, rng, 32, 1e5, complete=True, check=False)  # unclipped: whole paths
        travel = np.array([(p.k[-1] - p.k[0] + 1) / fps for p in probe])
        # an object spawned uniformly in [-travel, duration] is in view for travel/(duration+travel) of it
        n = max(1, int(round(objects_in_view / float(np.mean(travel / (duration_s + travel))))))
        paths, _ = _paths(scene, rng, n, duration_s, complete=False, check=False)
        frames.extend(_frames(site, scene, paths, rng, noise, n_frames, t0_ms))
    frames.sort(key=lambda f: f["ts"])  # stable: cameras keep their order within a timestamp
    return site, frames
