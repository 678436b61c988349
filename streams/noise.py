"""Differentially private counts, drawn by OpenDP (never by a sampler of our own).

A partner in DP mode gets each count of a window with noise instead of a k-threshold
(docs/privacy-model.md, rule d). The noise is OpenDP's Laplace measurement over integers, which
samples the *discrete* Laplace distribution exactly (Canonne, Kamath and Steinke 2020; OpenDP's
documentation: "internally, all sampling is done using the discrete Laplace distribution"): no
floating-point artefact separates neighbouring inputs, and the release is pure epsilon-DP. The
scale is calibrated by OpenDP itself (`binary_search_param` over the measurement's privacy map), so
the guarantee is the one OpenDP proves, not a formula copied here.

`sensitivity` is the most one object can change what is released: the caller bounds each track's
contribution per window (e.g. at most one crossing of a line per track and window) and passes that
bound. For a whole grid of cells released together (`noisy_counts`) it is the L1 bound: the most
one track can add across all cells of the window.

Post-processing costs no privacy: the noisy value is clamped to 0, because a partner table holds
counts. The clamp biases small cells upwards (a true 0 reads 0 or more); a partner summing many
cells should know it (the bench, bench/bench_dp.py, shows the error per window size).

OpenDP draws from the operating system's CSPRNG and takes no seed, so tests of this module are
statistical (tests/streams/test_noise.py). Two calls draw independently: the stream worker keeps what
it released of each window in its release book (streams/releases.py) and republishes that after a
crash, never a second draw (docs/privacy-model.md, rule c).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from typing import Any

import opendp.prelude as dp

# make_laplace sits in OpenDP's "contrib" tier: vetted proofs, not yet the core tier
dp.enable_features("contrib")

_SCALAR = (dp.atom_domain(T="i64"), dp.absolute_distance(T="i64"))
_VECTOR = (dp.vector_domain(dp.atom_domain(T="i64")), dp.l1_distance(T="i64"))


def _check(sensitivity: int, epsilon: float) -> None:
    if isinstance(sensitivity, bool) or not isinstance(sensitivity, int) or sensitivity < 1:
        raise ValueError(f"sensitivity (each object's contribution bound) must be an integer >= 1, got {sensitivity!r}")
    if not (isinstance(epsilon, int | float) and math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be a finite number > 0, got {epsilon!r}")


@cache
def _calibrated(vector: bool, sensitivity: int, epsilon: float) -> tuple[float, Any]:
    space = _VECTOR if vector else _SCALAR

    def make(scale: float) -> Any:
        return dp.m.make_laplace(space[0], space[1], scale=scale)

    scale = dp.binary_search_param(make, d_in=sensitivity, d_out=epsilon)
    meas = make(scale)
    if not meas.check(sensitivity, epsilon):  # OpenDP's own privacy map says the calibration holds
        raise AssertionError(f"OpenDP calibrated scale {scale} that is not ({sensitivity}, {epsilon})-DP")
    return float(scale), meas


def laplace_scale(sensitivity: int, epsilon: float) -> float:
    """The discrete Laplace scale OpenDP calibrates for this bound and epsilon (sensitivity / epsilon):
    the noise's standard deviation is about scale * sqrt(2)."""
    _check(sensitivity, epsilon)
    return _calibrated(False, sensitivity, float(epsilon))[0]


def noisy_count(true_count: int, sensitivity: int, epsilon: float) -> int:
    """An epsilon-DP release of one non-negative count whose every object contributes at most
    `sensitivity`: the count plus discrete Laplace noise from OpenDP, clamped to 0."""
    _check(sensitivity, epsilon)
    if isinstance(true_count, bool) or not isinstance(true_count, int) or true_count < 0:
        raise ValueError(f"a count must be a non-negative integer, got {true_count!r}")
    return max(0, int(_calibrated(False, sensitivity, float(epsilon))[1](true_count)))


def noisy_counts(true_counts: Sequence[int], sensitivity: int, epsilon: float) -> list[int]:
    """An epsilon-DP release of a window's whole grid of counts, where one object changes the
    vector by at most `sensitivity` in L1 (summed over all cells): each cell gets independent
    discrete Laplace noise at that scale, then is clamped to 0."""
    _check(sensitivity, epsilon)
    counts = list(true_counts)
    bad = [c for c in counts if isinstance(c, bool) or not isinstance(c, int) or c < 0]
    if bad:
        raise ValueError(f"counts must be non-negative integers, got {bad[:3]!r}")
    if not counts:
        return []
    return [max(0, int(v)) for v in _calibrated(True, sensitivity, float(epsilon))[1](counts)]
