"""How far differentially private counts land from the true counts, at typical window sizes.

    .venv/bin/python bench/bench_dp.py             # 20,000 draws per cell (a few seconds)
    .venv/bin/python bench/bench_dp.py --quick     # 2,000 draws per cell

For true counts of 5, 20 and 100 crossings in a window, it draws OpenDP's discrete Laplace release
(streams/noise.py: noise calibrated to a contribution bound of one crossing per track and window,
then clamped to 0) many times and prints the median and the 90th percentile of
|noisy - true| / true, side by side for several per-window epsilons in one run.

Epsilon per window and the daily budget. Each window released to a DP partner spends its epsilon,
and within a UTC day the releases compose sequentially: nothing links one person's appearances in
different windows, so in the worst case a person is in every window, and the day's privacy loss is
the sum of the epsilons of all windows published that day, over every table the partner receives.
The budget is kept per camera (streams/budget.py lives in the worker's per-camera state), so a
person seen by several cameras loses up to the daily budget per camera. A partner with
`epsilon_per_day` E receiving T tables with W windows a day can therefore be given at most
E / (T * W) per window; once the day's budget is spent, further windows publish nothing. The second
half of the table shows what that means for a daily budget of 1.0 (the example of issue 12) at
window lengths of 1 min, 15 min and 1 h.

The stream worker releases exactly these OpenDP draws; a window it publishes again after a crash
carries the same values because it keeps each release (streams/releases.py), not because of a seed.
"""

from __future__ import annotations

import argparse

import numpy as np

from privaflow.streams.noise import laplace_scale, noisy_counts

SIZES = (5, 20, 100)
DAY_S = 86_400


def relative_errors(true: int, epsilon: float, draws: int, sensitivity: int = 1) -> tuple[float, float]:
    """(median, 90th percentile) of |noisy - true| / true over `draws` releases."""
    released = noisy_counts([true] * draws, sensitivity, epsilon)
    noisy = np.array(released, dtype=np.float64)
    rel = np.abs(noisy - true) / true
    return float(np.median(rel)), float(np.percentile(rel, 90))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="2,000 draws per cell instead of 20,000")
    ap.add_argument("--epsilon", type=float, nargs="+", default=[0.1, 0.5, 1.0], help="per-window epsilons")
    ap.add_argument("--sensitivity", type=int, default=1, help="contribution bound per track and window")
    args = ap.parse_args()
    draws = 2_000 if args.quick else 20_000

    rows: list[tuple[str, float]] = [(f"{e:g} per window", e) for e in args.epsilon]
    budget_rows = [(f"1.0/day, {label} windows", 1.0 / (DAY_S / w)) for label, w in
                   (("1-min", 60), ("15-min", 900), ("1-h", 3600))]
    print(f"DP counts: OpenDP discrete Laplace, contribution bound {args.sensitivity}, clamped to 0; "
          f"{draws:,} draws per cell")
    print("relative error |noisy - true| / true: median / 90th percentile, per true count in the window\n")
    header = f"{'epsilon':28s} {'scale':>9s}" + "".join(f"{f'{n} crossings':>20s}" for n in SIZES)
    print(header)
    print("-" * len(header))
    results: dict[str, list[tuple[float, float]]] = {}
    for i, (label, eps) in enumerate(rows + budget_rows):
        if i == len(rows):
            print("  one table, daily budget spread over every window of the day (sequential composition):")
        errs = [relative_errors(n, eps, draws, args.sensitivity) for n in SIZES]
        results[label] = errs
        cells = "".join(f"{f'{m:7.1%} / {p:7.1%}':>20s}" for m, p in errs)
        print(f"{label:28s} {laplace_scale(args.sensitivity, eps):9.2f}{cells}   (eps {eps:.4g})")
    best = rows[-1][0]
    summary = ", ".join(f"{n}: {m:.0%}" for n, (m, _) in zip(SIZES, results[best], strict=True))
    hourly = ", ".join(f"{n}: {m:.0%}" for n, (m, _) in zip(SIZES, results[budget_rows[-1][0]], strict=True))
    print(f"\nRESULT median relative error at eps {best} -> {summary}; "
          f"at 1.0/day over 1-h windows -> {hourly}")


if __name__ == "__main__":
    main()
