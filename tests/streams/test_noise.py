"""Differentially private counts (streams/noise.py) on OpenDP's discrete Laplace. OpenDP takes no
seed (it draws from the OS's CSPRNG), so these tests are statistical: a fixed number of draws, and
bounds from the distribution's known moments with wide margins (5 standard errors or more), so a
correct sampler fails them with negligible probability and a wrong scale fails them surely.
Covers T6, T7 (issue 12: differential privacy per partner)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from privaflow.streams.noise import laplace_scale, noisy_count, noisy_counts

N = 20_000


def _moments(scale: float) -> tuple[float, float]:
    """(standard deviation, P(noise == 0)) of the discrete Laplace with this scale."""
    p = math.exp(-1 / scale)
    return math.sqrt(2 * p) / (1 - p), (1 - p) / (1 + p)


@pytest.mark.parametrize(("sensitivity", "epsilon"), [(1, 1.0), (1, 0.5), (2, 0.5), (1, 0.1)])
def test_noise_has_the_spread_of_the_calibrated_discrete_laplace(sensitivity: int, epsilon: float) -> None:
    scale = laplace_scale(sensitivity, epsilon)
    assert scale == pytest.approx(sensitivity / epsilon, rel=1e-6)
    true = 100_000  # far from 0, so the clamp never acts
    noise = np.array(noisy_counts([true] * N, sensitivity, epsilon), dtype=np.float64) - true
    sd, p_zero = _moments(scale)
    assert abs(noise.mean()) < 5 * sd / math.sqrt(N)
    assert noise.std() == pytest.approx(sd, rel=0.06)
    assert np.mean(noise == 0) == pytest.approx(p_zero, abs=5 * math.sqrt(p_zero * (1 - p_zero) / N) + 1e-3)
    assert np.all(noise == np.round(noise))  # integers: the discrete distribution, not rounded floats


def test_one_count_is_noisy_around_the_truth_and_never_negative() -> None:
    draws = np.array([noisy_count(50, 1, 0.5) for _ in range(3_000)])
    sd, _ = _moments(2.0)
    assert abs(draws.mean() - 50) < 5 * sd / math.sqrt(len(draws))
    assert draws.std() == pytest.approx(sd, rel=0.12)
    assert len(set(draws.tolist())) > 5  # noise, not a constant
    assert all(isinstance(v, int) for v in draws.tolist())


def test_small_counts_are_clamped_to_zero_as_post_processing() -> None:
    """True 0 at scale 10: P(noise <= 0) = 1 / (1 + p), all of which the clamp turns into 0."""
    draws = np.array(noisy_counts([0] * N, 1, 0.1))
    p = math.exp(-1 / 10)
    assert draws.min() == 0
    assert np.mean(draws == 0) == pytest.approx(1 / (1 + p), abs=0.02)
    assert np.mean(draws) > 3  # the clamp biases small cells upwards (the bench and the model doc say so)


def test_two_releases_of_the_same_grid_differ() -> None:
    """Fresh noise every call: nothing seeds OpenDP, so a republished window draws anew (which is why
    a republication must spend budget again or republish the stored noisy values)."""
    a, b = noisy_counts([30] * 200, 1, 0.5), noisy_counts([30] * 200, 1, 0.5)
    assert a != b


def test_a_larger_contribution_bound_means_more_noise() -> None:
    one = np.array(noisy_counts([1000] * N, 1, 1.0)).std()
    three = np.array(noisy_counts([1000] * N, 3, 1.0)).std()
    assert three > 2.5 * one


@pytest.mark.parametrize(("args", "says"), [
    ((-1, 1, 1.0), "non-negative integer"), ((2.5, 1, 1.0), "non-negative integer"), ((True, 1, 1.0), "integer"),
    ((3, 0, 1.0), "sensitivity"), ((3, 1.5, 1.0), "sensitivity"), ((3, 1, 0.0), "epsilon"),
    ((3, 1, float("inf")), "epsilon"), ((3, 1, float("nan")), "epsilon"), ((3, 1, -1.0), "epsilon"),
])
def test_bad_arguments_are_refused_naming_what_was_wrong(args: tuple, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        noisy_count(*args)


def test_a_grid_with_a_bad_cell_is_refused_and_an_empty_grid_is_empty() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        noisy_counts([1, -2, 3], 1, 1.0)
    assert noisy_counts([], 1, 1.0) == []
