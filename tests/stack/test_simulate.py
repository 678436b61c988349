"""The scene simulator: determinism, records valid as the edge would send them, a truth that is right,
and a degradation model that does what its parameters say.

Requirement ids: G2, G3, T5 (the truth the counting tests measure against).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from fastavro.validation import validate

from privaflow.schemas.codec import parsed_schema
from privaflow.schemas.detections import SCHEMA_NAME, batch_records, layout_problem, record_frames
from privaflow.schemas.site import load_site_config, parse_site_config
from privaflow.streams.events import Crossing, ZoneVisit
from privaflow.streams.tracks import TrackBook
from privaflow_stack.simulate import (
    HEAVY,
    NO_NOISE,
    REALISTIC,
    Noise,
    count_error,
    many_cameras,
    simulate,
    synthetic_site,
)

ROOT = Path(__file__).resolve().parents[2]
SITE = load_site_config(ROOT / "examples" / "site.yaml")


def test_same_seed_same_scene_other_seed_other_scene() -> None:
    a = simulate(SITE, "campus", 60, 10, 20, REALISTIC, seed=1)
    b = simulate(SITE, "campus", 60, 10, 20, REALISTIC, seed=1)
    c = simulate(SITE, "campus", 60, 10, 20, REALISTIC, seed=2)
    assert a.frames == b.frames and a.truth == b.truth
    assert a.frames != c.frames


def test_frames_pack_into_valid_detection_batch_records() -> None:
    """What the simulator emits, packed as the edge packs frames, is what the edge agent publishes
    (detection_batch.avsc), and unpacks to the same frames."""
    site = parse_site_config({**SITE.model_dump(), "cameras": [
        {**c.model_dump(), "attributes": True, "homography": [[30, 0, 0], [0, 20, 0], [0, 0, 1]]}
        for c in SITE.cameras]}, "<test>")
    sim = simulate(site, "campus", 30, 10, 10, HEAVY, seed=4)
    schema = parsed_schema(SCHEMA_NAME)
    assert len(sim.frames) == 300
    assert [f["ts"] for f in sim.frames] == sorted(f["ts"] for f in sim.frames)
    records = batch_records(sim.frames, 5)
    assert len(records) == 60
    for r in records:
        validate(r, schema, raise_errors=True)
        assert layout_problem(r) is None
    assert [f for r in records for f in record_frames(r)] == sim.frames
    for f in sim.frames:
        for d in f["detections"]:
            assert 0 <= d["foot_x"] <= 1 and 0 <= d["foot_y"] <= 1
            assert d["x1"] <= d["foot_x"] <= d["x2"] and d["y1"] <= d["foot_y"] == d["y2"]
    with_speed = [d for f in sim.frames for d in f["detections"] if d["speed_kmh"] is not None]
    assert with_speed and all(d["world_x_m"] is not None for d in with_speed)
    people = [d for f in sim.frames for d in f["detections"] if d["class_name"] == "person"]
    assert any(d["age_bracket"] for d in people)


def test_noise_free_truth_is_what_an_exact_tracker_counts() -> None:
    """Without noise, hysteresis or flicker filtering, the tracker and the truth are two independent
    implementations of the same definitions: they must agree exactly."""
    site = parse_site_config({**SITE.model_dump(), "counting": {"hysteresis": 0.0, "min_track_frames": 1}},
                             "<test>")
    sim = simulate(site, "campus", 300, 10, 120, NO_NOISE, seed=9)
    book = TrackBook(site, "campus")
    lines: Counter[tuple[str, str, str]] = Counter()
    entries: Counter[str] = Counter()
    transitions: Counter[tuple[str, str]] = Counter()
    events = [e for f in sim.frames for e in book.observe(f)] + book.expire_all()
    for e in events:
        if isinstance(e, Crossing):
            lines[(e.line_id, e.direction, e.class_name)] += 1
        elif isinstance(e, ZoneVisit) and e.kind == "ENTRY":
            entries[e.zone_id] += 1
            if e.from_zone_id:
                transitions[(e.from_zone_id, e.zone_id)] += 1
    assert sim.truth.objects == 120
    assert lines == sim.truth.crossings and entries == sim.truth.entries
    assert transitions == sim.truth.transitions
    dwell = sorted(e.dwell_s or 0.0 for e in events if isinstance(e, ZoneVisit) and e.kind == "EXIT")
    assert dwell == pytest.approx(sorted(d for ds in sim.truth.dwell_s.values() for d in ds), abs=0.11)


def test_every_object_enters_and_leaves_the_frame() -> None:
    sim = simulate(SITE, "campus", 300, 10, 60, NO_NOISE, seed=2)
    tracks: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for f in sim.frames:
        for d in f["detections"]:
            tracks[d["track_id"]].append((d["foot_x"], d["foot_y"]))
    assert len(tracks) == 60
    for path in tracks.values():
        for end in (path[0], path[-1]):
            assert min(end[0], end[1], 1 - end[0], 1 - end[1]) < 0.05  # near an edge of the frame
    assert sum(sim.truth.crossings.values()) == 60  # each aims at the camera's one line
    assert sim.truth.dwell_s and all(d >= 0 for ds in sim.truth.dwell_s.values() for d in ds)


def test_the_degradation_model_does_what_its_parameters_say() -> None:
    clean = simulate(SITE, "campus", 600, 10, 200, NO_NOISE, seed=3)
    noise = Noise(miss=0.1, false_positive=0.05, jitter=0.01, id_switch=0.5)
    noisy = simulate(SITE, "campus", 600, 10, 200, noise, seed=3)
    assert noisy.truth == clean.truth  # degradation changes what is seen, not what happened
    n_clean = sum(len(f["detections"]) for f in clean.frames)
    ids_clean = {d["track_id"] for f in clean.frames for d in f["detections"]}
    noisy_ids = {d["track_id"] for f in noisy.frames for d in f["detections"]}
    n_noisy = sum(len(f["detections"]) for f in noisy.frames)
    assert len(ids_clean) == 200
    # misses take ~10% away, false positives add ~5% of what remains
    assert n_noisy == pytest.approx(n_clean * 0.9 * 1.05, rel=0.03)
    # id switches: about half the objects get a second id; false-positive tracks add more
    assert len(noisy_ids) > 200 + 80
    # jitter: foot points of matching (frame, object) pairs differ by about sigma
    clean_pos = {(f["ts"], d["track_id"]): (d["foot_x"], d["foot_y"]) for f in clean.frames for d in f["detections"]}
    jitter: list[float] = []
    jittered = simulate(SITE, "campus", 600, 10, 200, Noise(jitter=0.01), seed=3)  # same ids, same paths
    for f in jittered.frames:
        for d in f["detections"]:
            cx, cy = clean_pos[(f["ts"], d["track_id"])]
            if 0.05 < cx < 0.95 and 0.05 < cy < 0.95:  # away from the clipping at the frame's edges
                jitter.append(d["foot_x"] - cx)
    assert np.std(jitter) == pytest.approx(0.01, rel=0.05)


def test_count_error_adds_misses_and_extras() -> None:
    truth = Counter({"a": 10, "b": 10})
    assert count_error(Counter({"a": 10, "b": 10}), truth) == 0.0
    assert count_error(Counter({"a": 11, "b": 9}), truth) == pytest.approx(0.1)
    assert count_error(Counter({"a": 10, "b": 10, "c": 2}), truth) == pytest.approx(0.1)
    assert count_error(Counter(), Counter()) == 0.0


def test_many_cameras_is_a_merged_stream_at_the_requested_load() -> None:
    site, frames = many_cameras(n_cameras=20, fps=10, objects_in_view=10, duration_s=20, noise=NO_NOISE, seed=1)
    assert site == synthetic_site(20)
    assert len(frames) == 20 * 200
    assert [f["ts"] for f in frames] == sorted(f["ts"] for f in frames)
    per_frame = np.mean([len(f["detections"]) for f in frames])
    assert per_frame == pytest.approx(10, rel=0.25)
    assert {f["camera_id"] for f in frames} == {c.id for c in site.cameras}
