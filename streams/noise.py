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
statistical (tests/streams/test_noise.py).

**Keyed noise (`keyed_noisy_counts`): what the stream worker releases.** A window published again
after a crash (the worker replays from its last checkpoint, and a compacted topic's live readers see
every version) must carry the very same noisy values, or the partner averages two independent draws
(rule c). OpenDP cannot be seeded, so the worker draws the same distribution itself, from a secret
key and the cell's name: the scale is still OpenDP's (calibrated and checked against its privacy map
above), and the sampler is Canonne, Kamath and Steinke's exact discrete Laplace sampler (2020,
Algorithm 2; integer and rational arithmetic only, so no floating-point artefact), fed by SHAKE-256
in counter mode keyed with HMAC-SHA-256(secret, cell). The key is the partner's, so two partners
never share noise, and a key a partner does not know makes the draws as unpredictable to it as fresh
ones. Written by hand because no maintained library samples the discrete Laplace from a given random
stream; tests compare it with OpenDP's own draws.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Sequence
from fractions import Fraction
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


# ---------------------------------------------------------------- keyed (reproducible) noise


class KeyedStream:
    """Uniform integers from SHAKE-256 over (key, block counter): deterministic for a key, unpredictable
    without it."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._block = 0
        self._buf = b""

    def _bytes(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._buf += hashlib.shake_256(self._key + self._block.to_bytes(8, "big")).digest(64)
            self._block += 1
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def below(self, n: int) -> int:
        """A uniform integer in [0, n), by rejection (exact)."""
        if n <= 1:
            return 0
        bits = (n - 1).bit_length()
        nbytes = (bits + 7) // 8
        while True:
            v = int.from_bytes(self._bytes(nbytes), "big") >> (8 * nbytes - bits)
            if v < n:
                return v


# Canonne, Kamath and Steinke, "The Discrete Gaussian for Differential Privacy" (2020), Algorithm 2,
# as in their reference implementation: exact, with Fractions


def _bernoulli(p: Fraction, rng: KeyedStream) -> bool:
    return rng.below(p.denominator) < p.numerator


def _bernoulli_exp1(x: Fraction, rng: KeyedStream) -> bool:
    """Bernoulli(exp(-x)) for 0 <= x <= 1."""
    k = 1
    while _bernoulli(x / k, rng):
        k += 1
    return k % 2 == 1


def _bernoulli_exp(x: Fraction, rng: KeyedStream) -> bool:
    """Bernoulli(exp(-x)) for x >= 0."""
    while x > 1:
        if not _bernoulli_exp1(Fraction(1), rng):
            return False
        x -= 1
    return _bernoulli_exp1(x, rng)


def _geometric_exp(x: Fraction, rng: KeyedStream) -> int:
    """Geometric with P(k) proportional to exp(-k x), x = s/t > 0."""
    s, t = x.numerator, x.denominator
    while True:
        u = rng.below(t)
        if _bernoulli_exp(Fraction(u, t), rng):
            break
    v = 0
    while _bernoulli_exp(Fraction(1), rng):
        v += 1
    return (v * t + u) // s


def discrete_laplace(scale: float, rng: KeyedStream) -> int:
    """One draw with P(z) proportional to exp(-|z| / scale), exactly (the scale taken as the rational
    number the float is)."""
    inv = 1 / Fraction(scale)
    while True:
        negative = _bernoulli(Fraction(1, 2), rng)
        magnitude = _geometric_exp(inv, rng)
        if negative and magnitude == 0:
            continue  # zero would otherwise be drawn twice as often
        return -magnitude if negative else magnitude


def cell_key(secret: bytes, *names: str) -> bytes:
    """The key of one cell's noise: HMAC-SHA-256 of its names ('|'-joined) under `secret`."""
    return hmac.new(secret, "|".join(names).encode(), hashlib.sha256).digest()


def keyed_noisy_counts(true_counts: Sequence[int], sensitivity: int, epsilon: float, key: bytes) -> list[int]:
    """`noisy_counts` with noise drawn from `key` (see the module docstring): the same key and counts
    always give the same release. Each count is noised from its own position in the key's stream, at
    the scale OpenDP calibrates for the vector's L1 bound `sensitivity`, then clamped to 0."""
    _check(sensitivity, epsilon)
    counts = list(true_counts)
    bad = [c for c in counts if isinstance(c, bool) or not isinstance(c, int) or c < 0]
    if bad:
        raise ValueError(f"counts must be non-negative integers, got {bad[:3]!r}")
    if not isinstance(key, bytes) or len(key) < 16:
        raise ValueError("a noise key must be at least 16 bytes")
    scale = _calibrated(True, sensitivity, float(epsilon))[0]
    rng = KeyedStream(key)
    return [max(0, c + discrete_laplace(scale, rng)) for c in counts]
