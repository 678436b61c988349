"""The simulator's intersection scene (stack/simulate_intersection.py): its truth is what it says, and
the worker's intersection tables stay within the errors stated for it (issue 17's acceptance figure;
bench/bench_intersection.py prints it for 20 simulated minutes). Covers T1, T2, T5."""

from __future__ import annotations

from collections import Counter

import pytest
from fastavro.validation import validate

from privaflow.schemas.codec import parsed_schema
from privaflow.schemas.detections import batch_records
from privaflow.schemas.vocabulary import VEHICLE_CLASSES
from privaflow_stack.simulate import NO_NOISE, REALISTIC
from privaflow_stack.simulate_intersection import (
    JAM_SPACING_M,
    STOP_SHORT_M,
    Signal,
    evaluate,
    outside_bounds,
    simulate_intersection,
)


def test_the_scene_is_deterministic_and_its_frames_are_detection_records() -> None:
    a = simulate_intersection(60.0, seed=3)
    b = simulate_intersection(60.0, seed=3)
    assert a.frames == b.frames and a.truth == b.truth
    schema = parsed_schema("detection_batch")
    for record in batch_records(a.frames[::25], 5):
        validate(record, schema, raise_errors=True)
    classes = {d["class_name"] for f in a.frames for d in f["detections"]}
    assert classes <= set(VEHICLE_CLASSES) and "car" in classes  # T2: vehicles only
    assert any(d["colour"] for f in a.frames for d in f["detections"])


def test_queues_form_at_red_and_clear_at_green() -> None:
    """The truth's queues: standing vehicles one jam spacing apart from the stop line during the red
    phase of their approach, gone when it has been green long enough."""
    signal = Signal()
    sim = simulate_intersection(240.0, signal=signal, seed=1)
    t0 = sim.truth.ts_ms[0]
    for approach, queue in sim.truth.queue_m.items():
        leg = approach.upper()
        assert max(queue) >= JAM_SPACING_M  # every approach queues at some red
        for q in queue:
            if q:
                assert (q - STOP_SHORT_M) / JAM_SPACING_M == pytest.approx(round((q - STOP_SHORT_M) / JAM_SPACING_M))
        # the last frames of a green phase hold no queue
        ends = [i for i, ts in enumerate(sim.truth.ts_ms) if signal.green(leg, (ts - t0) / 1000)
                and not signal.green(leg, (ts - t0) / 1000 + 0.1)]
        assert ends and all(queue[i] == 0.0 for i in ends)


def test_every_vehicle_that_leaves_entered_and_turned() -> None:
    sim = simulate_intersection(300.0, seed=2)
    entering = Counter(a for _ts, a, flow, _c, _col in sim.truth.crossings if flow == "entering")
    turns_from = Counter(entry for _ts, entry, _exit, _c in sim.truth.turns)
    leaving = Counter(a for _ts, a, flow, _c, _col in sim.truth.crossings if flow == "leaving")
    turns_to = Counter(exit_ for _ts, _entry, exit_, _c in sim.truth.turns)
    assert turns_to == leaving and all(turns_from[a] <= n for a, n in entering.items())
    assert {(e, x) for _ts, e, x, _c in sim.truth.turns if e == x} == set()  # no U-turns in this scene


@pytest.mark.parametrize("name,noise", [("none", NO_NOISE), ("realistic", REALISTIC)])
def test_the_tables_stay_within_the_stated_errors_of_the_truth(name: str, noise: object) -> None:
    """Congestion (present, speed, delay, queue, level), volumes, turning movements and colours of ten
    simulated minutes, per window, against the truth: within the bounds stated for the noise level."""
    r = evaluate(noise, 600.0, seed=11)  # type: ignore[arg-type]
    assert r["windows"] >= 36 and r["true_volume"] > 400 and r["true_turns"] > 200
    assert outside_bounds(name, r) == [], r
