"""Each physical effect as a pure function of (patterns, parameters), on hand-made examples."""

import numpy as np
import pytest
from numpy.polynomial import chebyshev
from scipy.special import erf

from xrdbench.augment.background import add_background, additive_floor, multiplicative_baseline
from xrdbench.augment.instrument import caglioti_fwhm_grid, instrument_broadening, shift_sticks, zero_shift
from xrdbench.augment.mixing import distinct_materials, floored_dirichlet, mix, phase_count
from xrdbench.augment.noise import add_noise
from xrdbench.augment.normalize import masked_percentile, percentile_normalize, unit_max
from xrdbench.augment.orientation import orientation_basis, orientation_envelope
from xrdbench.augment.window import apply_window, normalized_angle, window_mask
from xrdbench.simulate.grids import NAMED_GRIDS

GRID = NAMED_GRIDS["multiphase"]
CENTRES = GRID.two_theta_deg


def gaussian_peaks(centres_deg, fwhm_deg=0.4):
    sigma = fwhm_deg / 2.3548200450309493
    centres_deg = np.atleast_1d(centres_deg)
    return np.exp(-0.5 * ((CENTRES - centres_deg[:, None]) / sigma) ** 2).astype(np.float32)


def centroid(patterns):
    patterns = np.asarray(patterns, dtype=np.float64)
    return (patterns * CENTRES).sum(axis=1) / patterns.sum(axis=1)


def variance(patterns):
    patterns = np.asarray(patterns, dtype=np.float64)
    return (patterns * (CENTRES - centroid(patterns)[:, None]) ** 2).sum(axis=1) / patterns.sum(axis=1)


# ---------------------------------------------------------------- orientation


def test_orientation_basis_is_chebyshev_then_fourier():
    t = np.linspace(-1, 1, 11)
    basis = orientation_basis(t, 3, 2)
    for order in (1, 2, 3):
        np.testing.assert_allclose(basis[:, order - 1], chebyshev.chebval(t, np.eye(4)[order]), atol=1e-12)
    np.testing.assert_allclose(basis[:, 3], np.sin(np.pi * t), atol=1e-12)
    np.testing.assert_allclose(basis[:, 4], np.cos(np.pi * t), atol=1e-12)


def test_orientation_envelope_has_unit_mean_and_stays_in_bounds():
    rng = np.random.default_rng(1)
    coefficients = rng.uniform(-1, 1, (200, 5))
    gentle = orientation_envelope(CENTRES, np.full((200, 1), 0.03), coefficients[:, None, :], GRID)
    assert gentle.min() > 0.85 and gentle.max() < 1.2  # nothing clipped, so the mean is exactly 1
    np.testing.assert_allclose(gentle.mean(axis=1), 1.0, atol=1e-12)
    strongest = orientation_envelope(CENTRES, rng.choice([-0.18, 0.18], (200, 1)), coefficients[:, None, :], GRID)
    assert strongest.min() >= 0.85 and strongest.max() <= 1.2
    assert np.abs(strongest.mean(axis=1) - 1).max() < 0.03
    assert np.all(orientation_envelope(CENTRES, 0.0, coefficients[0], GRID) == 1.0)


def test_orientation_envelope_at_sticks_equals_the_grid_envelope():
    coefficients = np.array([0.5, -0.3, 0.8, 0.1, -0.9])
    on_grid = orientation_envelope(CENTRES, 0.12, coefficients, GRID)
    at_sticks = orientation_envelope(CENTRES[[10, 500, 2000]], np.full(3, 0.12), np.tile(coefficients, (3, 1)), GRID)
    np.testing.assert_allclose(at_sticks, on_grid[[10, 500, 2000]], rtol=1e-14)
    assert not np.allclose(on_grid, 1.0)


# ---------------------------------------------------------------- mixing


def test_mix_is_the_weighted_sum_per_sample():
    phases = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=np.float32)
    x = mix(phases, np.array([0.25, 0.75, 1.0, 0.5]), np.array([0, 0, 2, 1]), n_samples=3)
    np.testing.assert_array_equal(x, [[0.25, 0.75, 0], [0.5, 0.5, 0.5], [0, 0, 1]])
    assert x.dtype == np.float32


def test_mixture_transforms_on_fixed_draws():
    assert phase_count(np.array([0.0, 0.19, 0.2, 0.95, 0.999]), [0.2, 0.4, 0.25, 0.1, 0.05]).tolist() == [1, 1, 2, 4, 5]
    assert phase_count(np.array([0.0, 0.5]), [0, 1, 0, 0, 0]).tolist() == [2, 2]
    # Pool of 4: slot 0 takes rank 3 (position 3), slot 1 rank 2 of {0,1,2} (position 2), slot 2 rank 0.
    picks = distinct_materials(np.array([[0.99, 0.99, 0.0, 0.5, 0.5]]), np.array([3]), 4)
    assert picks.tolist() == [[3, 2, 0, -1, -1]]
    weight = floored_dirichlet(np.array([[0.5, 1e-9, 0.0, 0.7, 0.7]]), np.array([3]), 0.03)
    assert weight[0, 1] == pytest.approx(0.03, abs=1e-8) and weight[0, 2] == 0.03  # tiny draws hit the floor
    assert weight[0, 3:].tolist() == [0.0, 0.0] and weight.sum() == pytest.approx(1.0, abs=1e-15)


# ---------------------------------------------------------------- instrument


def test_zero_shift_moves_a_peak_by_delta():
    peaks = gaussian_peaks([30.0, 30.0, 75.0])
    shifted = zero_shift(peaks, np.array([0.05, -0.06, 0.031]), GRID)
    np.testing.assert_allclose(centroid(shifted) - centroid(peaks), [0.05, -0.06, 0.031], atol=2e-4)
    np.testing.assert_allclose(shifted.sum(axis=1), peaks.sum(axis=1), rtol=1e-5)
    np.testing.assert_array_equal(zero_shift(peaks, np.zeros(3), GRID), peaks)
    assert shift_sticks(np.array([10.0, 20.0]), 0.04).tolist() == [10.04, 20.04]


def test_instrument_broadening_adds_the_caglioti_variance():
    centres = np.array([25.0, 60.0, 100.0])
    peaks = gaussian_peaks(centres, fwhm_deg=0.3)
    u, v, w = np.array([0.004, 0.004, 0.004]), np.zeros(3), np.array([0.002, 0.002, 0.002])
    broadened = instrument_broadening(peaks, u, v, w, GRID)
    assert broadened.shape == peaks.shape and broadened.dtype == np.float32
    # Moments within ±2° of each peak (15 σ of the input): far bins only hold FFT round-off.
    near = np.abs(CENTRES - centres[:, None]) < 2.0
    added = variance(broadened * near) - variance(peaks * near)
    # Expected: the variance of a Gaussian of the Caglioti FWHM integrated over each bin.
    sigma = np.sqrt(0.004 * np.tan(np.deg2rad(centres) / 2) ** 2 + 0.002) / np.sqrt(8 * np.log(2))
    offset = GRID.bin_width_deg * np.arange(-20, 21)
    half = GRID.bin_width_deg / 2
    scale = sigma[:, None] * np.sqrt(2)
    kernel = 0.5 * (erf((offset + half) / scale) - erf((offset - half) / scale))
    np.testing.assert_allclose(added, (kernel * offset**2).sum(axis=1), rtol=0.05)
    np.testing.assert_allclose(broadened.sum(axis=1), peaks.sum(axis=1), rtol=1e-3)
    np.testing.assert_allclose(caglioti_fwhm_grid(u, v, w, GRID)[:, 1000],
                               np.sqrt(0.004 * np.tan(np.deg2rad(CENTRES[1000]) / 2) ** 2 + 0.002), rtol=1e-6)


# ---------------------------------------------------------------- window


def test_window_mask_keeps_exactly_the_bins_inside():
    lo, hi = np.array([5.0, 12.34, 20.0]), np.array([80.0, 101.7, 120.0])
    mask = window_mask(lo, hi, GRID)
    assert mask.dtype == np.uint8 and mask.shape == (3, GRID.n_bins)
    for row in range(3):
        inside = CENTRES[mask[row] == 1]
        assert inside.min() >= lo[row] and inside.max() <= hi[row]
        outside = CENTRES[mask[row] == 0]
        assert np.all((outside < lo[row]) | (outside > hi[row]))
    x = apply_window(np.ones((3, GRID.n_bins), np.float32), mask)
    assert np.array_equal(x, mask.astype(np.float32))
    assert normalized_angle([5.0, 62.5, 120.0], GRID).tolist() == [-1.0, 0.0, 1.0]


# ---------------------------------------------------------------- background


def test_background_is_positive_baseline_times_pattern_plus_floor():
    rng = np.random.default_rng(3)
    n = 500
    amplitude = rng.uniform(0.06, 0.18, n)
    coefficients = rng.uniform(-0.12, 0.12, (n, 5))
    offset, slope = rng.uniform(0.003, 0.03, n), rng.uniform(-0.01, 0.01, n)
    t = normalized_angle(CENTRES, GRID)
    baseline = multiplicative_baseline(t, amplitude, coefficients)
    assert baseline.min() > 1.0 and baseline.max() < 1.0 + 0.18 * np.log1p(np.exp(0.6))
    floor = additive_floor(t, offset, slope)
    assert floor.min() >= 0 and floor.max() <= 0.04
    empty = add_background(np.zeros((n, GRID.n_bins), np.float32), GRID, amplitude=amplitude,
                           coefficients=coefficients, offset=offset, slope=slope)
    np.testing.assert_allclose(empty, floor, rtol=1e-6, atol=1e-9)
    peaks = unit_max(gaussian_peaks(rng.uniform(10, 110, n)))
    y = add_background(peaks, GRID, amplitude=amplitude, coefficients=coefficients, offset=offset, slope=slope)
    assert y.dtype == np.float32 and y.min() >= 0 and np.all(y >= peaks)
    # The floor only touches 0 where the slope outweighs the offset (clipped, never negative).
    assert np.all((floor.min(axis=1) > 0) == (np.abs(slope) < offset))
    # Flat polynomial: baseline is 1 + a·ln 2 everywhere.
    flat = multiplicative_baseline(t, np.array([0.1]), np.zeros((1, 5)))
    np.testing.assert_allclose(flat, 1 + 0.1 * np.log(2))
    assert add_background(peaks, GRID) is peaks


# ---------------------------------------------------------------- noise


def test_noise_has_the_sampled_std_and_clips_at_zero():
    rng = np.random.default_rng(4)
    sigma = np.array([0.0008, 0.0015, 0.0025])
    level = np.full((3, GRID.n_bins), 0.5, np.float32)
    z = rng.standard_normal((3, GRID.n_bins)).astype(np.float32)
    noisy = add_noise(level, sigma, z)
    np.testing.assert_allclose((noisy - level).std(axis=1), sigma, rtol=0.05)
    assert abs((noisy - level).mean(axis=1)).max() < 3 * 0.0025 / np.sqrt(GRID.n_bins) * 2
    at_zero = add_noise(np.zeros_like(level), sigma, z)
    assert at_zero.min() == 0 and (at_zero > 0).mean() == pytest.approx(0.5, abs=0.05)


# ---------------------------------------------------------------- normalization


def test_normalization_puts_the_masked_99th_percentile_at_one():
    rng = np.random.default_rng(5)
    x = rng.gamma(2.0, 1.0, (6, GRID.n_bins)).astype(np.float32)
    mask = window_mask(rng.uniform(5, 20, 6), rng.uniform(80, 120, 6), GRID)
    x *= mask
    for row in range(6):
        assert masked_percentile(x, mask)[row] == pytest.approx(np.percentile(x[row, mask[row] == 1], 99), rel=1e-6)
    normalized = percentile_normalize(x, mask)
    for row in range(6):
        assert np.percentile(normalized[row, mask[row] == 1], 99) == pytest.approx(1.0, rel=1e-6)
    assert np.all(normalized[mask == 0] == 0)
    x[0] = 0
    mask[1] = 0
    guarded = percentile_normalize(x, mask)
    assert np.all(np.isfinite(guarded)) and np.all(guarded[0] == 0) and np.array_equal(guarded[1], x[1])
    assert unit_max(x)[2].max() == 1.0


@pytest.mark.parametrize("q", [0.0, 50.0, 99.0, 100.0])
def test_masked_percentile_matches_numpy_for_any_window(q):
    rng = np.random.default_rng(6)
    x = rng.gamma(0.3, 1.0, (8, GRID.n_bins)).astype(np.float32)
    mask = np.zeros_like(x, dtype=np.uint8)
    for row, n_valid in enumerate([1, 2, 5, 23, 30, 700, 2047, 2048]):
        mask[row, rng.choice(GRID.n_bins, n_valid, replace=False)] = 1
    for row in range(8):
        expected = np.percentile(x[row, mask[row] == 1].astype(np.float64), q)
        assert masked_percentile(x, mask, q)[row] == pytest.approx(expected, rel=1e-6)
