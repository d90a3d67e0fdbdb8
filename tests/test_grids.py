import numpy as np
import pytest

from xrdbench.errors import ConfigError
from xrdbench.simulate.grids import NAMED_GRIDS, Grid, grid_from_config, render_stick_lists, render_sticks

XRDECOUPLER = NAMED_GRIDS["xrdecoupler"]
MULTIPHASE = NAMED_GRIDS["multiphase"]


def test_named_grids_bin_counts_and_geometry():
    assert XRDECOUPLER.n_bins == 8500 and len(XRDECOUPLER.two_theta_deg) == 8500
    assert MULTIPHASE.n_bins == 2048 and len(MULTIPHASE.two_theta_deg) == 2048
    assert XRDECOUPLER.bin_width_deg == pytest.approx(0.01)
    assert XRDECOUPLER.bin_edges_deg[[0, -1]] == pytest.approx([5.0, 90.0])
    assert XRDECOUPLER.two_theta_deg[0] == pytest.approx(5.005)
    assert MULTIPHASE.bin_edges_deg[[0, -1]] == pytest.approx([5.0, 120.0])


def test_grid_from_config():
    assert grid_from_config({"name": "xrdecoupler"}) == XRDECOUPLER
    assert grid_from_config("multiphase") == MULTIPHASE
    assert grid_from_config({"name": "xrdecoupler", "min": 5, "max": 90, "n_bins": 8500}) == XRDECOUPLER
    custom = grid_from_config({"name": "simxrd", "min": 10, "max": 80, "n_bins": 3500})
    assert custom == Grid("simxrd", 10.0, 80.0, 3500)
    with pytest.raises(ConfigError, match="n_bins"):
        grid_from_config({"name": "nope", "min": 10, "max": 80})
    with pytest.raises(ConfigError, match="max"):
        grid_from_config({"name": "bad", "min": 80, "max": 10, "n_bins": 5})
    with pytest.raises(ConfigError, match="integer"):
        grid_from_config({"name": "bad", "min": 1, "max": 10, "n_bins": 2.5})


def test_bounds_land_in_first_and_last_bin():
    pattern = render_sticks(np.array([5.0, 90.0]), np.array([10.0, 20.0]), XRDECOUPLER)
    assert pattern.dtype == np.float32 and pattern.shape == (8500,)
    assert pattern[0] == 10.0 and pattern[8499] == 20.0
    assert np.count_nonzero(pattern) == 2
    assert XRDECOUPLER.bin_index(np.array([5.0, 5.0099999, 5.01, 89.99, 90.0])).tolist() == [0, 0, 1, 8499, 8499]


def test_every_bin_holds_its_own_lower_edge():
    edges = XRDECOUPLER.bin_edges_deg[:-1]
    assert np.array_equal(XRDECOUPLER.bin_index(edges), np.arange(8500))
    assert np.array_equal(MULTIPHASE.bin_index(MULTIPHASE.two_theta_deg), np.arange(2048))


def test_out_of_range_sticks_are_dropped():
    pattern = render_sticks(np.array([4.999, 90.001, 120.0, 50.0]), np.array([1.0, 2.0, 3.0, 4.0]), XRDECOUPLER)
    assert pattern.sum() == 4.0
    assert pattern[4500] == 4.0


def test_max_and_sum_rules_in_one_bin():
    two_theta, intensity = np.array([30.001, 30.004]), np.array([40.0, 70.0])
    assert render_sticks(two_theta, intensity, XRDECOUPLER, "max")[2500] == 70.0
    assert render_sticks(two_theta, intensity, XRDECOUPLER, "sum")[2500] == 110.0
    with pytest.raises(ConfigError, match="rule"):
        render_sticks(two_theta, intensity, XRDECOUPLER, "mean")


def test_intensities_kept_as_given():
    pattern = render_sticks(np.array([20.0, 40.0]), np.array([3.0, 7.5]), MULTIPHASE)
    assert sorted(pattern[pattern > 0].tolist()) == [3.0, 7.5]


@pytest.mark.parametrize("rule", ["max", "sum"])
@pytest.mark.parametrize("grid", [XRDECOUPLER, MULTIPHASE], ids=lambda g: g.name)
def test_ragged_batch_equals_rows(rule, grid):
    rng = np.random.default_rng([7, 0, 0])
    counts = np.array([0, 5, 300, 1, 0, 40])
    offsets = np.concatenate([[0], np.cumsum(counts)])
    two_theta = rng.uniform(0.0, 125.0, offsets[-1])
    two_theta[:3] = [grid.two_theta_min_deg, grid.two_theta_max_deg, grid.two_theta_max_deg]
    intensity = rng.uniform(0.0, 100.0, offsets[-1])
    batch = render_stick_lists(offsets, two_theta, intensity, grid, rule)
    assert batch.shape == (len(counts), grid.n_bins) and batch.dtype == np.float32
    for i in range(len(counts)):
        rows = slice(offsets[i], offsets[i + 1])
        assert np.array_equal(batch[i], render_sticks(two_theta[rows], intensity[rows], grid, rule))
    assert not batch[0].any() and not batch[4].any()


def test_bad_offsets_rejected():
    with pytest.raises(ValueError, match="offsets"):
        render_stick_lists(np.array([0, 3]), np.zeros(2), np.zeros(2), MULTIPHASE)
    with pytest.raises(ValueError, match="offsets"):
        render_stick_lists(np.array([1, 2]), np.zeros(2), np.zeros(2), MULTIPHASE)
