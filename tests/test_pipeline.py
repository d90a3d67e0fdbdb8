"""augment_batch: effects chained in the paper's order, switchable, and batch-independent to the byte."""

import numpy as np
import pytest

from xrdbench.augment.normalize import percentile_normalize, unit_max
from xrdbench.augment.orientation import orientation_envelope
from xrdbench.augment.pipeline import augment_batch
from xrdbench.augment.sampling import DEFAULT_OPTIONS, sample_mixture_parameters
from xrdbench.augment.window import window_mask
from xrdbench.simulate.grids import NAMED_GRIDS, render_stick_lists

GRID = NAMED_GRIDS["multiphase"]
SWITCHES = ["orientation", "phase_broadening", "zero_shift", "instrument_broadening", "window", "baseline", "floor",
            "noise", "normalize"]
ALL_OFF = {name: False for name in SWITCHES}


@pytest.fixture(scope="module")
def pool():
    """30 synthetic materials, 20–150 sticks each over 5–120°, strongest stick 100 (the bank's scale)."""
    rng = np.random.default_rng(0)
    counts = rng.integers(20, 151, 30)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    two_theta = np.concatenate([np.sort(rng.uniform(5, 120, n)) for n in counts])
    intensity = np.concatenate([100 * rng.uniform(0.01, 1, n) / 1.0 for n in counts])
    intensity[offsets[:-1] + rng.integers(0, counts)] = 100.0
    return offsets, two_theta, intensity.astype(np.float32)


def run(pool, samples, options=None, split_id=1, seed=9):
    params = sample_mixture_parameters(samples, split_id, seed, len(pool[0]) - 1, options)
    return (*augment_batch(pool, params, GRID, options), params)


def test_outputs_are_masked_nonnegative_and_normalized(pool):
    x, mask, params = run(pool, np.arange(300))
    assert x.shape == mask.shape == (300, GRID.n_bins) and x.dtype == np.float32 and mask.dtype == np.uint8
    assert np.array_equal(mask, window_mask(params["window_lo_deg"], params["window_hi_deg"], GRID))
    assert np.all(np.isfinite(x)) and x.min() >= 0 and np.all(x[mask == 0] == 0)
    for row in range(0, 300, 37):
        assert np.percentile(x[row, mask[row] == 1], 99) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("options", [{}, {"phase_broadening": False}], ids=["all_effects", "no_phase_broadening"])
def test_batching_never_changes_a_byte(pool, options):
    x, mask, _ = run(pool, np.arange(1000), options)
    cuts = [0, 3, 64, 65, 400, 731, 999, 1000]  # 7 uneven batches
    parts = [run(pool, np.arange(a, b), options) for a, b in zip(cuts, cuts[1:])]
    assert np.concatenate([p[0] for p in parts]).tobytes() == x.tobytes()
    assert np.concatenate([p[1] for p in parts]).tobytes() == mask.tobytes()


def _clean_sticks(pool, material):
    offsets, two_theta, intensity = pool
    sticks = slice(offsets[material], offsets[material + 1])
    return two_theta[sticks], intensity[sticks].astype(np.float64) / intensity[sticks].max()


def test_all_effects_off_leaves_the_normalized_clean_pattern(pool):
    single = {**ALL_OFF, "k_probabilities": [1, 0, 0, 0, 0], "normalize": True}
    x, mask, params = run(pool, np.arange(40), single)
    assert np.all(mask == 1) and np.all(params["k"] == 1)
    for row in range(40):
        two_theta, intensity = _clean_sticks(pool, params["phase_index"][row, 0])
        clean = render_stick_lists(np.array([0, len(two_theta)]), two_theta, intensity, GRID, rule="sum")
        np.testing.assert_allclose(x[row], percentile_normalize(unit_max(clean), np.ones_like(mask[:1]))[0],
                                   rtol=1e-6)


def test_phase_broadening_alone_gives_the_broadened_clean_pattern(pool):
    from xrdbench.augment.broadening import broaden_phases

    options = {**ALL_OFF, "phase_broadening": True, "k_probabilities": [1, 0, 0, 0, 0]}
    x, _, params = run(pool, np.arange(10), options)
    for row in range(10):
        two_theta, intensity = _clean_sticks(pool, params["phase_index"][row, 0])
        clean = broaden_phases(np.array([0, len(two_theta)]), two_theta, intensity, GRID,
                               params["strain"][row, :1], params["size_nm"][row, :1], 1.54184)
        np.testing.assert_allclose(x[row], unit_max(np.asarray(clean, np.float32))[0], rtol=1e-5, atol=1e-7)


def test_mixture_is_the_weighted_sum_of_its_phases(pool):
    x, _, params = run(pool, np.arange(60), ALL_OFF)
    for row in range(60):
        expected = np.zeros(GRID.n_bins)
        for slot in range(params["k"][row]):
            two_theta, intensity = _clean_sticks(pool, params["phase_index"][row, slot])
            expected += params["weight"][row, slot] * render_stick_lists(
                np.array([0, len(two_theta)]), two_theta, intensity, GRID, rule="sum")[0]
        np.testing.assert_allclose(x[row], expected / expected.max(), rtol=1e-5, atol=1e-7)


def test_orientation_reweights_each_phase_by_its_envelope(pool):
    options = {**ALL_OFF, "orientation": True, "orientation_probability": 1.0, "k_probabilities": [1, 0, 0, 0, 0]}
    x, _, params = run(pool, np.arange(20), options)
    assert params["orientation_applied"][:, 0].all()
    for row in range(20):
        two_theta, intensity = _clean_sticks(pool, params["phase_index"][row, 0])
        envelope = orientation_envelope(two_theta, params["orientation_strength"][row, 0],
                                        params["orientation_coefficients"][row, 0], GRID)
        expected = render_stick_lists(np.array([0, len(two_theta)]), two_theta, intensity * envelope, GRID, "sum")
        np.testing.assert_allclose(x[row], unit_max(expected)[0], rtol=1e-5, atol=1e-7)


def test_zero_shift_moves_every_peak_of_the_mixture_by_delta():
    # Two materials with one reflection each, both in every sample.
    pool = (np.array([0, 1, 2]), np.array([40.0, 90.0]), np.array([100.0, 100.0], np.float32))
    options = {**ALL_OFF, "phase_broadening": True, "k_probabilities": [0, 1, 0, 0, 0]}
    unshifted, _, _ = run(pool, np.arange(8), options)
    shifted, _, params = run(pool, np.arange(8), {**options, "zero_shift": True})
    centres = GRID.two_theta_deg
    for peak in (40.0, 90.0):
        near = np.abs(centres - peak) < 2.0  # far bins hold only FFT round-off

        def centroid(x):
            return (x[:, near] * centres[near]).sum(axis=1) / x[:, near].sum(axis=1)

        np.testing.assert_allclose(centroid(shifted) - centroid(unshifted), params["zero_shift_deg"], atol=1e-3)
    assert np.abs(params["zero_shift_deg"]).max() > 0.02


@pytest.mark.parametrize("switch", SWITCHES)
def test_every_switch_changes_the_output(pool, switch):
    samples = np.arange(50)
    x_on, _, _ = run(pool, samples)
    x_off, _, params_off = run(pool, samples, {switch: False})
    assert not np.allclose(x_on, x_off, rtol=1e-4, atol=1e-6), switch


def test_defaults_are_the_paper_values():
    assert DEFAULT_OPTIONS["k_probabilities"] == [0.20, 0.40, 0.25, 0.10, 0.05]
    assert DEFAULT_OPTIONS["caglioti_dw_range"] == [0.0018, 0.002]
    assert all(DEFAULT_OPTIONS[name] is True for name in SWITCHES)
