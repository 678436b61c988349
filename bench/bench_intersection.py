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

The last column says whether the error is within the bound stated for the noise level (BOUNDS in
stack/simulate_intersection.py, which tests/stack/test_simulate_intersection.py also holds on a
shorter scene), the figure the acceptance of issue 17 asks for. No timing: accuracy only.
"""

from __future__ import annotations

import argparse

from privaflow_stack.simulate import HEAVY, NO_NOISE, REALISTIC
from privaflow_stack.simulate_intersection import BOUNDS, evaluate, outside_bounds


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
        outside = outside_bounds(name, r)
        print(f"{name:10s} {r['windows']:7.0f} {r['present_rel']:6.1%} of {r['true_present']:3.1f} "
              f"{r['max_present']:8.2f} {r['speed_kmh']:10.2f} {r['delay_s']:8.2f} "
              f"{r['queue_m']:5.2f} of {r['true_queue_m']:3.0f} {r['mean_queue_m']:8.2f} "
              f"{r['los_exact']:6.0%}/{r['los_within_one']:<6.0%} "
              f"{r['volume']:5.1%} of {r['true_volume']:<4.0f} {r['turns']:5.1%} of {r['true_turns']:<4.0f} "
              f"{r['colours']:8.1%}  {'yes' if not outside else 'NO: ' + '; '.join(outside)}")
    print(f"  realistic = {REALISTIC}\n  heavy     = {HEAVY}")
    print("  bounds: " + "; ".join(f"{n}: " + ", ".join(f"{k} {v:g}" for k, v in b.items()) for n, b in BOUNDS.items()))


if __name__ == "__main__":
    main()
