"""The intersection tables against the simulator's truth: congestion, queues, volumes, turning
movements and colours of a signalised four-leg intersection (stack/simulate_intersection.py).

    .venv/bin/python bench/bench_intersection.py            # 20 simulated minutes per noise level
    .venv/bin/python bench/bench_intersection.py --quick    # 5 minutes

Each scene runs through what a stream worker runs per camera (TrackBook, ApproachBook, WindowStore,
via streams.consume.CameraState) and its closed windows are compared cell by cell with the truth
aggregated to the same windows (60-s congestion, 300-s volumes, 900-s turns and colours). Speeds are
measured by the worker from the (noisy) positions; the records carry none. Errors:

- present, speed, delay, queue, mean queue: mean absolute error over approach-windows (and, for
  present, relative to the true mean); level of service: share of approach-windows on the true
  level, and within one level;
- volumes, turning movements, colours: sum over cells of |counted - true| / true total.

The last column says whether the error is within the bound this bench states for the noise level
(BOUNDS), the figure the acceptance of issue 17 asks for. No timing: accuracy only.
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

import numpy as np

from privaflow.schemas.vocabulary import LEVELS_OF_SERVICE
from privaflow.streams.consume import CameraState
from privaflow_stack.simulate import HEAVY, NO_NOISE, REALISTIC, Noise, count_error
from privaflow_stack.simulate_intersection import IntersectionSimulation, simulate_intersection, truth_windows

TABLES = ("congestion", "intersection_volume", "turning_movements", "vehicle_colours")
# the errors this bench promises per noise level (the test in tests/stack holds the noise-free and
# realistic ones on a shorter scene)
BOUNDS: dict[str, dict[str, float]] = {
    "none": {"present_rel": 0.05, "speed_kmh": 3.0, "delay_s": 6.0, "queue_m": 3.0, "mean_queue_m": 1.5,
             "los_within_one": 0.95, "volume": 0.01, "turns": 0.01, "colours": 0.01},
    "realistic": {"present_rel": 0.20, "speed_kmh": 6.0, "delay_s": 8.0, "queue_m": 8.0, "mean_queue_m": 3.0,
                  "los_within_one": 0.85, "volume": 0.05, "turns": 0.10, "colours": 0.05},
    "heavy": {"present_rel": 0.60, "speed_kmh": 12.0, "delay_s": 20.0, "queue_m": 20.0, "mean_queue_m": 8.0,
              "los_within_one": 0.6, "volume": 0.25, "turns": 0.50, "colours": 0.25},
}


def run(sim: IntersectionSimulation) -> dict[str, Any]:
    """The closed windows of the scene, as the worker computes them, keyed as `truth_windows` keys them."""
    st = CameraState.new(sim.site, "overhead")
    for i in range(0, len(sim.frames), 10):  # ten frames per call, as a worker's batches hand them on
        st.windows.add(st.observe(sim.frames[i:i + 10]))
    st.windows.add(st.book.expire_all())
    got: dict[str, dict[tuple[Any, ...], Any]] = {t: {} for t in TABLES}
    for c in st.windows.close(2**62):
        if c.table == "congestion":
            got["congestion"][(c.window_start_ms, c.dims[1])] = c.agg
        elif c.table == "vehicle_colours":  # by line and direction: the scene's line ids name their approach
            line = c.dims[0].split("-")[0]
            flow = "entering" if c.dims[1] == _inbound(sim, c.dims[0]) else "leaving"
            key = (c.window_start_ms, line, flow, c.dims[2], c.dims[3])
            got["vehicle_colours"][key] = got["vehicle_colours"].get(key, 0) + c.agg["count"]
        elif c.table in TABLES:
            got[c.table][(c.window_start_ms, *c.dims[1:])] = c.agg["count"]
    return got


def _inbound(sim: IntersectionSimulation, line_id: str) -> str:
    for x in sim.site.intersections:
        for a in x.approaches:
            if a.inbound.line == line_id:
                return a.inbound.direction
    raise KeyError(line_id)


def compare(got: dict[str, dict[tuple[Any, ...], Any]], truth: dict[str, dict[tuple[Any, ...], Any]]
            ) -> dict[str, float]:
    cells = sorted(set(truth["congestion"]) & set(got["congestion"]))
    t = [truth["congestion"][c] for c in cells]
    g = [got["congestion"][c] for c in cells]

    def mae(field: str) -> float:
        pairs = [(a[field], b[field]) for a, b in zip(g, t, strict=True)
                 if a[field] is not None and b[field] is not None]
        return float(np.mean([abs(a - b) for a, b in pairs])) if pairs else float("nan")

    rank = {level: i for i, level in enumerate(LEVELS_OF_SERVICE)}
    steps = [abs(rank[a["level_of_service"]] - rank[b["level_of_service"]]) for a, b in zip(g, t, strict=True)]
    true_present = float(np.mean([b["mean_present"] for b in t]))
    return {
        "windows": len(cells),
        "true_present": true_present,
        "present_rel": mae("mean_present") / true_present,
        "max_present": mae("max_present"),
        "speed_kmh": mae("mean_speed_kmh"),
        "delay_s": mae("mean_delay_s"),
        "queue_m": mae("queue_length_m"),
        "true_queue_m": float(np.mean([b["queue_length_m"] for b in t])),
        "mean_queue_m": mae("mean_queue_length_m"),
        "los_exact": float(np.mean([s == 0 for s in steps])),
        "los_within_one": float(np.mean([s <= 1 for s in steps])),
        "volume": count_error(Counter(got["intersection_volume"]), Counter(truth["intersection_volume"])),
        "true_volume": sum(truth["intersection_volume"].values()),
        "turns": count_error(Counter(got["turning_movements"]), Counter(truth["turning_movements"])),
        "true_turns": sum(truth["turning_movements"].values()),
        "colours": count_error(Counter(got["vehicle_colours"]), Counter(truth["vehicle_colours"])),
    }


def within(name: str, r: dict[str, float]) -> list[str]:
    """The measures outside this bench's stated bound for the noise level."""
    out = []
    for key, bound in BOUNDS[name].items():
        value = r[key]
        ok = value >= bound if key == "los_within_one" else value <= bound
        if not ok:
            out.append(f"{key} {value:.3g} (bound {bound:g})")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="5 simulated minutes instead of 20")
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    duration = 300.0 if args.quick else 1200.0
    print(f"intersection scene: 4 legs, fixed-time signal (60-s cycle), demand N 500 / S 450 / E 300 / W 250 veh/h, "
          f"{duration / 60:.0f} simulated minutes at 10 fps per noise level; worker-measured speeds")
    print("congestion: mean absolute error per approach and 60-s window (present also relative to the true mean);"
          " LOS: share on the true level / within one level")
    print("volumes, turns, colours: sum |counted - true| / true total over (window, approach or line, direction, "
          "class[, colour]) cells")
    head = (f"{'noise':10s} {'windows':>7s} {'present':>12s} {'max pres':>8s} {'speed km/h':>10s} {'delay s':>8s} "
            f"{'queue m':>12s} {'mean q m':>8s} {'LOS exact/±1':>13s} {'volumes':>12s} {'turns':>12s} "
            f"{'colours':>8s}  within bounds")
    print(head)
    for name, noise in (("none", NO_NOISE), ("realistic", REALISTIC), ("heavy", HEAVY)):
        r = evaluate(noise, duration, args.seed)
        outside = within(name, r)
        print(f"{name:10s} {r['windows']:7.0f} {r['present_rel']:6.1%} of {r['true_present']:3.1f} "
              f"{r['max_present']:8.2f} {r['speed_kmh']:10.2f} {r['delay_s']:8.2f} "
              f"{r['queue_m']:5.2f} of {r['true_queue_m']:3.0f} {r['mean_queue_m']:8.2f} "
              f"{r['los_exact']:6.0%}/{r['los_within_one']:<6.0%} "
              f"{r['volume']:5.1%} of {r['true_volume']:<4.0f} {r['turns']:5.1%} of {r['true_turns']:<4.0f} "
              f"{r['colours']:8.1%}  {'yes' if not outside else 'NO: ' + '; '.join(outside)}")
    print(f"  realistic = {REALISTIC}\n  heavy     = {HEAVY}")
    print("  bounds: " + "; ".join(f"{n}: " + ", ".join(f"{k} {v:g}" for k, v in b.items()) for n, b in BOUNDS.items()))


def evaluate(noise: Noise, duration_s: float, seed: int) -> dict[str, float]:
    sim = simulate_intersection(duration_s, noise=noise, seed=seed)
    windows = {t: int(getattr(sim.site.windows, t)) for t in TABLES}
    return compare(run(sim), truth_windows(sim.truth, windows))


if __name__ == "__main__":
    main()
