"""Augmentation parameters: the paper's distributions, and one random stream per sample."""

import numpy as np
import pytest
from scipy import stats

from xrdbench.augment.sampling import (
    DEFAULT_OPTIONS,
    draw_layout,
    noise_field,
    resolve_options,
    sample_mixture_parameters,
)
from xrdbench.errors import ConfigError

N = 20_000
POOL = 40
ALPHA = 1e-3  # significance of every distribution test; seeds are fixed, so each outcome is too


@pytest.fixture(scope="module")
def params():
    return sample_mixture_parameters(np.arange(N), split_id=7, root_seed=2024, pool_size=POOL)


def _uniform_ks(values, low, high):
    assert values.min() >= low and values.max() <= high
    return stats.kstest(values, stats.uniform(low, high - low).cdf).pvalue


def test_phase_count_follows_the_categorical(params):
    counts = np.bincount(params["k"], minlength=6)[1:]
    assert counts.sum() == N
    expected = N * np.array(DEFAULT_OPTIONS["k_probabilities"])
    assert stats.chisquare(counts, expected).pvalue > ALPHA


def test_phase_slots_are_distinct_pool_members_and_padded(params):
    index, k = params["phase_index"], params["k"]
    active = np.arange(5) < k[:, None]
    assert np.all((index >= 0) == active)
    assert index[active].max() < POOL
    ordered = np.sort(np.where(active, index, -1 - np.arange(5)), axis=1)  # padding made unique
    assert np.all(np.diff(ordered, axis=1) > 0)
    counts = np.bincount(index[active], minlength=POOL)
    assert stats.chisquare(counts).pvalue > ALPHA  # every material equally likely


def test_weights_are_floored_dirichlet(params):
    weight, k = params["weight"], params["k"]
    active = np.arange(5) < k[:, None]
    assert np.all(weight[active] >= 0.03)
    assert np.all(weight[~active] == 0)
    np.testing.assert_allclose(weight.sum(axis=1), 1.0, atol=1e-12)
    for n_phases in (2, 3, 4, 5):
        rows = k == n_phases
        # Above the floor, each share of a flat Dirichlet is Beta(1, K − 1).
        share = (weight[rows, 0] - 0.03) / (1 - n_phases * 0.03)
        assert stats.kstest(share, stats.beta(1, n_phases - 1).cdf).pvalue > ALPHA


def test_ranges_are_uniform(params):
    active = params["phase_index"] >= 0
    assert _uniform_ks(params["zero_shift_deg"], -0.06, 0.06) > ALPHA
    assert _uniform_ks(params["window_lo_deg"], 5, 20) > ALPHA
    assert _uniform_ks(params["window_hi_deg"], 80, 120) > ALPHA
    assert _uniform_ks(params["caglioti_u"], 0, 0.004) > ALPHA
    assert np.all(params["caglioti_v"] == 0)
    assert _uniform_ks(params["caglioti_w"], 0.0018, 0.002) > ALPHA
    assert _uniform_ks(params["strain"][active], 0, 0.0025) > ALPHA
    assert _uniform_ks(np.log10(params["size_nm"][active]), 2.0, 2.4) > ALPHA
    assert _uniform_ks(params["baseline_amplitude"], 0.06, 0.18) > ALPHA
    assert _uniform_ks(params["baseline_coefficients"].ravel(), -0.12, 0.12) > ALPHA
    assert _uniform_ks(params["floor_offset"], 0.003, 0.03) > ALPHA
    assert _uniform_ks(params["floor_slope"], -0.01, 0.01) > ALPHA
    assert _uniform_ks(params["noise_sigma"], 0.0008, 0.0025) > ALPHA


def test_orientation_applied_with_probability(params):
    active = params["phase_index"] >= 0
    applied = params["orientation_applied"]
    assert not np.any(applied & ~active)
    assert stats.binomtest(int(applied.sum()), int(active.sum()), 0.6).pvalue > ALPHA
    assert _uniform_ks(params["orientation_strength"][applied], -0.18, 0.18) > ALPHA
    assert _uniform_ks(params["orientation_coefficients"][applied].ravel(), -1, 1) > ALPHA
    assert np.all(params["orientation_strength"][~applied] == 0)
    assert np.all(params["orientation_coefficients"][~applied] == 0)


def test_batching_never_changes_a_byte():
    whole = sample_mixture_parameters(np.arange(1000), 3, 11, pool_size=25)
    cuts = [0, 1, 2, 130, 131, 500, 977, 1000]  # 7 uneven batches
    parts = [sample_mixture_parameters(np.arange(a, b), 3, 11, pool_size=25) for a, b in zip(cuts, cuts[1:])]
    for name, value in whole.items():
        joined = np.concatenate([part[name] for part in parts])
        assert joined.dtype == value.dtype and joined.tobytes() == value.tobytes(), name
    shuffled = np.random.default_rng(0).permutation(1000)
    again = sample_mixture_parameters(shuffled, 3, 11, pool_size=25)
    for name, value in whole.items():
        assert again[name].tobytes() == value[shuffled].tobytes(), name


def test_stream_is_keyed_by_sample_split_and_seed():
    base = sample_mixture_parameters(np.arange(50), 1, 5, pool_size=10)
    for other in (sample_mixture_parameters(np.arange(50), 2, 5, pool_size=10),
                  sample_mixture_parameters(np.arange(50), 1, 6, pool_size=10)):
        assert not np.array_equal(base["zero_shift_deg"], other["zero_shift_deg"])
    # The first draw of sample 3's own generator is its K.
    u = np.random.default_rng([3, 1, 5]).random()
    cdf = np.cumsum(DEFAULT_OPTIONS["k_probabilities"])
    assert base["k"][3] == np.searchsorted(cdf, u, side="right") + 1


def test_noise_is_the_samples_own_second_stream():
    params = sample_mixture_parameters(np.array([4, 9]), 1, 5, pool_size=10)
    noise = noise_field(params["seed"], 300)
    for row, i in enumerate((4, 9)):
        expected = np.random.default_rng([i, 1, 5, 1]).standard_normal(300, dtype=np.float32)
        assert noise[row].tobytes() == expected.tobytes()
        first_stream = np.random.default_rng([i, 1, 5]).standard_normal(300, dtype=np.float32)
        assert not np.allclose(noise[row], first_stream), "noise must not repeat the parameter stream"
    alone = noise_field(params["seed"][1:], 300)
    assert alone.tobytes() == noise[1:].tobytes(), "a sample's noise does not depend on its batch"
    assert abs(float(noise.mean())) < 0.1 and 0.9 < float(noise.std()) < 1.1


def test_switches_neutralize_only_their_own_parameters():
    on = sample_mixture_parameters(np.arange(200), 0, 1, pool_size=30)
    off = sample_mixture_parameters(np.arange(200), 0, 1, pool_size=30,
                                    options={"orientation": False, "zero_shift": False, "noise": False,
                                             "window": False, "phase_broadening": False})
    assert not off["orientation_applied"].any() and np.all(off["orientation_strength"] == 0)
    assert np.all(off["zero_shift_deg"] == 0) and np.all(off["noise_sigma"] == 0)
    assert np.all(off["strain"] == 0) and np.all(off["size_nm"] == 0)
    assert np.all(off["window_lo_deg"] == 0) and np.all(off["window_hi_deg"] == 180)
    for name in ("k", "phase_index", "weight", "caglioti_u", "caglioti_w", "baseline_amplitude", "floor_offset"):
        assert np.array_equal(on[name], off[name]), name


def test_single_phase_and_small_pools():
    single = sample_mixture_parameters(np.arange(500), 0, 1, pool_size=30, options={"k_probabilities": [1, 0, 0, 0, 0]})
    assert np.all(single["k"] == 1) and np.all(single["weight"][:, 0] == 1.0)
    small = sample_mixture_parameters(np.arange(500), 0, 1, pool_size=2)
    assert small["k"].max() == 2 and np.all(small["phase_index"][:, 2:] == -1)
    assert np.all(np.sort(small["phase_index"][small["k"] == 2, :2], axis=1) == [0, 1])


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="unknown"):
        resolve_options({"noise_sigma": 0.01})
    with pytest.raises(ConfigError, match="k_probabilities"):
        resolve_options({"k_probabilities": [0.5, 0.5, 0, 0, 0, 0]})
    with pytest.raises(ConfigError, match="min_phase_weight"):
        resolve_options({"min_phase_weight": 0.3})
    with pytest.raises(ConfigError, match="window_lo_range_deg"):
        resolve_options({"window_lo_range_deg": [20, 5]})
