import numpy as np
import pytest

from xrdbench.augment.broadening import (
    INSTRUMENT_LEVEL_RATIO,
    PAPER_RANGES,
    STICK_OVERSAMPLE,
    broaden,
    broaden_phases,
    broaden_phases_exact,
    render_pseudo_voigt_exact,
    render_sticks_linear,
    width_lut,
)
from xrdbench.augment.instrument import instrument_broadening
from xrdbench.augment.profiles import caglioti_fwhm_deg, sample_broadening_fwhm_deg, tch_fwhm
from xrdbench.simulate.grids import NAMED_GRIDS

MULTIPHASE = NAMED_GRIDS["multiphase"]
XRDECOUPLER = NAMED_GRIDS["xrdecoupler"]
WAVELENGTH = PAPER_RANGES["wavelength_angstrom"]
L1_BAR = 0.02


def relative_l1(approx, exact):
    return np.abs(approx - exact).sum(axis=1) / np.abs(exact).sum(axis=1)


def pack(stick_lists):
    """CSR offsets, angles and intensities of [(two_theta, intensity), ...]."""
    offsets = np.r_[0, np.cumsum([len(t) for t, _ in stick_lists])]
    return offsets, np.concatenate([t for t, _ in stick_lists]), np.concatenate([i for _, i in stick_lists])


def stick_families(grid, rng):
    """A few realistic kinds of stick list on ``grid``."""
    lo, hi, width = grid.two_theta_min_deg, grid.two_theta_max_deg, grid.bin_width_deg
    handful = np.sort(rng.uniform(lo + 1, hi - 1, 6))
    many = np.sort(rng.uniform(lo, hi, 120))
    cluster_centres = rng.uniform(lo + 2, hi - 2, 4)
    clusters = np.sort((cluster_centres[:, None] + rng.uniform(-0.4, 0.4, (4, 12))).ravel())
    # sticks on the bin centre, a quarter and half a bin off it: where sub-bin position matters
    centres = grid.two_theta_deg[np.linspace(20, grid.n_bins - 20, 9).astype(int)]
    sub_bin = centres + width * np.tile([0.0, 0.25, 0.5], 3)
    return [(t, rng.uniform(1, 100, len(t))) for t in (handful, many, clusters, sub_bin)]


def parameter_pairs(n, rng):
    """(strain, size_nm) over the paper's ranges, the four corners first."""
    strain_lo, strain_hi = PAPER_RANGES["strain"]
    size_lo, size_hi = PAPER_RANGES["size_nm"]
    corners = [(s, z) for s in (strain_lo, strain_hi) for z in (size_lo, size_hi)]
    strain = np.r_[[c[0] for c in corners], rng.uniform(strain_lo, strain_hi, n - 4)]
    size = np.r_[[c[1] for c in corners], 10 ** rng.uniform(np.log10(size_lo), np.log10(size_hi), n - 4)]
    return strain, size


@pytest.fixture(scope="module")
def multiphase_case():
    rng = np.random.default_rng(7)
    strain, size = parameter_pairs(30, rng)
    families = stick_families(MULTIPHASE, rng)
    # every (strain, size) pair with every kind of stick list
    offsets, two_theta, intensity = pack(families * len(strain))
    strain, size = np.repeat(strain, len(families)), np.repeat(size, len(families))
    exact = broaden_phases_exact(offsets, two_theta, intensity, MULTIPHASE, strain, size, WAVELENGTH)
    lut = broaden_phases(offsets, two_theta, intensity, MULTIPHASE, strain, size, WAVELENGTH)
    return dict(strain=strain, size=size, exact=exact, lut=lut)


def test_lut_matches_exact_renderer_across_paper_ranges(multiphase_case):
    lut, exact = multiphase_case["lut"], multiphase_case["exact"]
    assert lut.dtype == np.float32 and lut.shape == exact.shape == (120, MULTIPHASE.n_bins)
    error = relative_l1(lut, exact)
    assert error.max() < L1_BAR, f"worst {error.max():.4f} at pattern {error.argmax()}"
    assert error.mean() < L1_BAR / 2


def test_lut_matches_exact_on_xrdecoupler_grid():
    rng = np.random.default_rng(3)
    strain, size = parameter_pairs(4, rng)  # the corners
    families = stick_families(XRDECOUPLER, rng)
    offsets, two_theta, intensity = pack(families * 4)
    strain, size = np.repeat(strain, len(families)), np.repeat(size, len(families))
    exact = broaden_phases_exact(offsets, two_theta, intensity, XRDECOUPLER, strain, size, WAVELENGTH)
    lut = broaden_phases(offsets, two_theta, intensity, XRDECOUPLER, strain, size, WAVELENGTH)
    assert relative_l1(lut, exact).max() < L1_BAR


def test_sub_bin_position_of_a_narrow_peak_is_kept():
    # ε = 0 and the largest size: a Lorentzian narrower than a bin at low angle
    grid = MULTIPHASE
    centre = grid.two_theta_deg[100]
    offsets = np.arange(7)
    two_theta = centre + grid.bin_width_deg * np.array([-0.5, -0.3, 0.0, 0.1, 0.25, 0.45])
    intensity = np.full(6, 100.0)
    strain, size = np.zeros(6), np.full(6, PAPER_RANGES["size_nm"][1])
    assert sample_broadening_fwhm_deg(centre, 0.0, size[0], WAVELENGTH)[1] < grid.bin_width_deg
    lut = broaden_phases(offsets, two_theta, intensity, grid, strain, size, WAVELENGTH)
    exact = broaden_phases_exact(offsets, two_theta, intensity, grid, strain, size, WAVELENGTH)
    assert relative_l1(lut, exact).max() < L1_BAR
    # a bin-resolution rendering could not tell these apart: the peaks move with the sticks
    window = slice(90, 111)
    centroid = (lut[:, window] * grid.two_theta_deg[window]).sum(1) / lut[:, window].sum(1)
    exact_centroid = (exact[:, window] * grid.two_theta_deg[window]).sum(1) / exact[:, window].sum(1)
    assert np.all(np.diff(centroid) > 0)
    np.testing.assert_allclose(centroid, exact_centroid, atol=0.02 * grid.bin_width_deg)


def test_area_is_preserved_away_from_the_edges():
    rng = np.random.default_rng(1)
    n = 8
    two_theta = rng.uniform(30, 95, (n, 20))
    intensity = rng.uniform(1, 100, (n, 20))
    offsets = np.arange(n + 1) * 20
    strain, size = parameter_pairs(n, rng)
    out = broaden_phases(offsets, two_theta.ravel(), intensity.ravel(), MULTIPHASE, strain, size, WAVELENGTH)
    # only Lorentzian tails beyond 5° and 120° go missing: well under 1 %
    np.testing.assert_allclose(out.sum(1), intensity.sum(1), rtol=0.01)
    exact = broaden_phases_exact(offsets, two_theta.ravel(), intensity.ravel(), MULTIPHASE, strain, size, WAVELENGTH)
    np.testing.assert_allclose(out.sum(1), exact.sum(1), rtol=0.002)


def test_empty_and_out_of_range_stick_lists():
    offsets = np.array([0, 0, 2])
    two_theta = np.array([1.0, 150.0])  # both outside 5–120°
    args = (offsets, two_theta, np.array([50.0, 50.0]), MULTIPHASE, [0.001, 0.001], [150, 150], WAVELENGTH)
    out, exact = broaden_phases(*args), broaden_phases_exact(*args)
    assert out.shape == (2, MULTIPHASE.n_bins)
    assert np.all(out[0] == 0)
    # only Lorentzian tails of sticks off the grid reach in: under 1 % of their intensity
    assert 0 < out[1].sum() < 1.0 and 0 < exact[1].sum() < 1.0


def dense_sticks_at_centres(grid, bins, intensity):
    """A dense pattern holding sticks exactly on bin centres, and the same sticks as a list."""
    patterns = np.zeros((1, grid.n_bins), dtype=np.float32)
    patterns[0, bins] = intensity
    return patterns, np.array([0, len(bins)]), grid.two_theta_deg[bins], np.asarray(intensity, dtype=np.float64)


@pytest.mark.parametrize("eta", [0.0, 1.0, 0.4])
def test_broaden_constant_width_matches_exact_profiles(eta):
    grid = MULTIPHASE
    bins = np.array([300, 1000, 1700])
    patterns, offsets, two_theta, intensity = dense_sticks_at_centres(grid, bins, [100.0, 40.0, 70.0])
    lut = width_lut(grid, 1)
    for fwhm_bins in (lut.fwhm_bins[8], np.sqrt(lut.fwhm_bins[8] * lut.fwhm_bins[9]), 3.3):
        fwhm_deg = fwhm_bins * grid.bin_width_deg
        out = broaden(patterns, fwhm_deg, eta, grid)
        exact = render_pseudo_voigt_exact(offsets, two_theta, intensity, grid, fwhm_deg, eta)
        assert relative_l1(out, exact)[0] < 0.015
    # on a level itself the LUT holds the exact kernel
    fwhm_deg = lut.fwhm_bins[10] * grid.bin_width_deg
    out = broaden(patterns, fwhm_deg, eta, grid)
    exact = render_pseudo_voigt_exact(offsets, two_theta, intensity, grid, fwhm_deg, eta)
    np.testing.assert_allclose(out, exact, atol=1e-4 * intensity.max())


def test_eta_zero_is_gaussian_and_eta_one_lorentzian():
    grid = MULTIPHASE
    patterns, *_ = dense_sticks_at_centres(grid, np.array([1024]), [1.0])
    fwhm_deg = 6.0 * grid.bin_width_deg
    gauss, lorentz = broaden(patterns, fwhm_deg, 0.0, grid)[0], broaden(patterns, fwhm_deg, 1.0, grid)[0]
    mixed = broaden(patterns, fwhm_deg, np.full((1, grid.n_bins), 0.3), grid)[0]
    np.testing.assert_allclose(mixed, 0.7 * gauss + 0.3 * lorentz, atol=1e-6)
    # Gaussian: nothing beyond 4 FWHM; Lorentzian: heavy tails, ~ Γ / (2π d²)
    assert np.abs(gauss[1024 + 24 :]).max() < 1e-6
    assert lorentz[1024 + 60] == pytest.approx(6.0 / (2 * np.pi * 60**2), rel=0.05)


def test_instrument_broadening_of_a_dense_pattern():
    grid = MULTIPHASE
    rng = np.random.default_rng(5)
    bins = np.sort(rng.choice(np.arange(40, grid.n_bins - 40), 50, replace=False))
    patterns, offsets, two_theta, intensity = dense_sticks_at_centres(grid, bins, rng.uniform(1, 100, 50))
    u_max, w_max = PAPER_RANGES["caglioti_u_deg2"][1], PAPER_RANGES["caglioti_w_deg2"][1]
    for u, w in [(u_max, w_max), (0.0, 0.0018), (0.001, 0.0019)]:
        out = broaden(patterns, caglioti_fwhm_deg(grid.two_theta_deg, u, 0.0, w), 0, grid)
        stick_fwhm_deg = caglioti_fwhm_deg(two_theta, u, 0.0, w)
        exact = render_pseudo_voigt_exact(offsets, two_theta, intensity, grid, stick_fwhm_deg, 0.0)
        assert relative_l1(out, exact)[0] < L1_BAR
        assert out.sum() == pytest.approx(intensity.sum(), rel=1e-4)
    # zero width: identity (the lowest level is a quarter bin)
    np.testing.assert_allclose(broaden(patterns, 0.0, 0, grid), patterns, atol=1e-4 * intensity.max())


def test_instrument_broadening_on_its_coarser_table_matches_exact():
    # instrument_broadening uses a table of its own, spaced INSTRUMENT_LEVEL_RATIO apart
    grid = MULTIPHASE
    rng = np.random.default_rng(6)
    bins = np.sort(rng.choice(np.arange(40, grid.n_bins - 40), 60, replace=False))
    patterns, offsets, two_theta, intensity = dense_sticks_at_centres(grid, bins, rng.uniform(1, 100, 60))
    u_max, w_max = PAPER_RANGES["caglioti_u_deg2"][1], PAPER_RANGES["caglioti_w_deg2"][1]
    u = np.r_[u_max, 0.0, rng.uniform(0, u_max, 6)]
    w = np.r_[w_max, 0.0018, rng.uniform(0.0018, w_max, 6)]
    out = instrument_broadening(np.repeat(patterns, len(u), axis=0), u, np.zeros_like(u), w, grid)
    for row in range(len(u)):
        stick_fwhm_deg = caglioti_fwhm_deg(two_theta, u[row], 0.0, w[row])
        exact = render_pseudo_voigt_exact(offsets, two_theta, intensity, grid, stick_fwhm_deg, 0.0)
        assert relative_l1(out[row : row + 1], exact)[0] < L1_BAR / 2
    lut = width_lut(grid, 1, INSTRUMENT_LEVEL_RATIO)
    assert lut.level_ratio == INSTRUMENT_LEVEL_RATIO and width_lut(grid, 1, INSTRUMENT_LEVEL_RATIO) is lut


def test_broaden_batch_shapes_and_linearity():
    grid = MULTIPHASE
    rng = np.random.default_rng(2)
    patterns = rng.uniform(0, 1, (40, grid.n_bins)).astype(np.float32)  # more rows than a chunk
    fwhm = rng.uniform(0.05, 0.5, (40, 1)) * (1 + grid.two_theta_deg / 120)
    out = broaden(patterns, fwhm, 0.0, grid)
    assert out.shape == patterns.shape and out.dtype == np.float32
    twice = broaden(2 * patterns, fwhm, 0.0, grid)
    np.testing.assert_allclose(twice, 2 * out, rtol=1e-4, atol=1e-5)
    # each row alone gives the same as in the batch
    np.testing.assert_allclose(broaden(patterns[7:8], fwhm[7:8], 0.0, grid), out[7:8], rtol=1e-4, atol=1e-5)
    assert broaden(np.zeros((0, grid.n_bins)), 0.1, 0.0, grid).shape == (0, grid.n_bins)


def test_render_sticks_linear_keeps_sum_and_centroid():
    grid = MULTIPHASE
    two_theta = grid.two_theta_deg[500] + grid.bin_width_deg * np.array([0.0, 0.3, 0.75])
    out = render_sticks_linear(np.array([0, 1, 2, 3]), two_theta, np.array([10.0, 10.0, 4.0]), grid)
    assert out.shape == (3, grid.n_bins) and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(1), [10.0, 10.0, 4.0], rtol=1e-6)
    centroid = (out * grid.two_theta_deg).sum(1) / out.sum(1)
    np.testing.assert_allclose(centroid, two_theta, atol=1e-6)
    np.testing.assert_allclose(out[1, 500:502], [7.0, 3.0], rtol=1e-5)
    with pytest.raises(ValueError, match="offsets"):
        render_sticks_linear(np.array([0, 2]), two_theta, np.ones(3), grid)


def test_lut_covers_the_paper_ranges():
    for grid in (MULTIPHASE, XRDECOUPLER):
        lut = width_lut(grid, STICK_OVERSAMPLE)
        gamma_g, gamma_l = sample_broadening_fwhm_deg(
            grid.two_theta_max_deg, PAPER_RANGES["strain"][1], PAPER_RANGES["size_nm"][0], WAVELENGTH
        )
        assert lut.fwhm_bins[-1] * grid.bin_width_deg >= tch_fwhm(gamma_g, gamma_l)
        assert lut.fwhm_bins[0] <= 0.25
        ratio = lut.fwhm_bins[1:] / lut.fwhm_bins[:-1]
        np.testing.assert_allclose(ratio, lut.level_ratio)  # log-spaced
        assert width_lut(grid, STICK_OVERSAMPLE) is lut  # cached


def test_a_row_never_depends_on_its_batch():
    # the workflow promises byte-identical outputs whatever the batching
    rng = np.random.default_rng(11)
    n = 150  # several chunks, sorted by width
    counts = rng.integers(5, 120, n)
    offsets = np.r_[0, np.cumsum(counts)]
    two_theta, intensity = rng.uniform(5, 120, offsets[-1]), rng.uniform(1, 100, offsets[-1])
    strain, size = parameter_pairs(n, rng)
    strain[10:40] = 0.0  # pure Lorentzian rows, batched with mixed ones or alone
    whole = broaden_phases(offsets, two_theta, intensity, MULTIPHASE, strain, size, WAVELENGTH)
    fwhm = caglioti_fwhm_deg(MULTIPHASE.two_theta_deg, rng.uniform(0, 0.004, (n, 1)), 0.0, 0.002)
    instrument = broaden(whole, fwhm, 0.0, MULTIPHASE)
    for lo, hi in [(0, 1), (1, 12), (12, 40), (40, 107), (107, 150)]:
        sticks = slice(offsets[lo], offsets[hi])
        part = broaden_phases(
            offsets[lo : hi + 1] - offsets[lo], two_theta[sticks], intensity[sticks], MULTIPHASE,
            strain[lo:hi], size[lo:hi], WAVELENGTH,
        )  # fmt: skip
        assert part.tobytes() == whole[lo:hi].tobytes()
        assert broaden(part, fwhm[lo:hi], 0.0, MULTIPHASE).tobytes() == instrument[lo:hi].tobytes()


def caglioti_corners(n, rng):
    """(U, V, W) over the paper's instrument ranges (ΔV = 0), the four corners first."""
    u_lo, u_hi = PAPER_RANGES["caglioti_u_deg2"]
    w_lo, w_hi = 0.0018, PAPER_RANGES["caglioti_w_deg2"][1]
    u = np.r_[u_lo, u_lo, u_hi, u_hi, rng.uniform(u_lo, u_hi, n - 4)]
    w = np.r_[w_lo, w_hi, w_lo, w_hi, rng.uniform(w_lo, w_hi, n - 4)]
    return u, np.zeros(n), w


def test_lut_with_the_instrument_folded_in_matches_exact():
    rng = np.random.default_rng(11)
    strain, size = parameter_pairs(8, rng)
    uvw = caglioti_corners(8, rng)
    families = stick_families(MULTIPHASE, rng)
    offsets, two_theta, intensity = pack(families * 8)
    strain, size = np.repeat(strain, len(families)), np.repeat(size, len(families))
    uvw = [np.repeat(c, len(families)) for c in uvw]
    exact = broaden_phases_exact(offsets, two_theta, intensity, MULTIPHASE, strain, size, WAVELENGTH,
                                 caglioti_uvw=uvw)
    lut = broaden_phases(offsets, two_theta, intensity, MULTIPHASE, strain, size, WAVELENGTH, caglioti_uvw=uvw)
    assert relative_l1(lut, exact).max() < L1_BAR
    # the instrument alone (no size, no strain): a Gaussian of the Caglioti width
    zero, infinite = np.zeros_like(strain), np.full_like(size, np.inf)
    exact = broaden_phases_exact(offsets, two_theta, intensity, MULTIPHASE, zero, infinite, WAVELENGTH,
                                 caglioti_uvw=uvw)
    lut = broaden_phases(offsets, two_theta, intensity, MULTIPHASE, zero, infinite, WAVELENGTH, caglioti_uvw=uvw)
    assert relative_l1(lut, exact).max() < L1_BAR


def voigt_bin_masses(two_theta, intensity, grid, gamma_g, gamma_l, per_bin=16):
    """Sticks as true Voigt profiles (Gaussian FWHM ``gamma_g``, Lorentzian ``gamma_l``, per stick),
    integrated over each bin by the midpoint rule on ``per_bin`` points."""
    from scipy.special import voigt_profile

    step = grid.bin_width_deg / per_bin
    fine = grid.two_theta_min_deg + step * (np.arange(grid.n_bins * per_bin) + 0.5)
    sigma = gamma_g / (2 * np.sqrt(2 * np.log(2)))
    density = sum(i * voigt_profile(fine - t, s, g / 2) for t, i, s, g in zip(two_theta, intensity, sigma, gamma_l))
    return (density * step).reshape(grid.n_bins, per_bin).sum(axis=1)


def test_folding_the_instrument_in_gives_the_voigt_of_all_three_broadenings():
    # Lorentzian (size) ⊗ Gaussian (strain) ⊗ Gaussian (instrument) is a Voigt whose Gaussian
    # FWHM² is the sum of the two: folding the instrument into the phase's TCH profile must
    # match it to the TCH pseudo-Voigt's own accuracy (up to 1.6 % L1 from the Voigt here) plus the
    # table's (up to 1.5 %), where size, strain or instrument dominate. Convolving the broadened,
    # binned phase a second time instead was 6 % off at the narrowest corner, and 35 % with the
    # instrument alone (a bin-resolution input has lost where its sticks sit inside their bins).
    rng = np.random.default_rng(5)
    two_theta = np.sort(rng.uniform(8, 115, 25))
    intensity = rng.uniform(1, 100, 25)
    # (strain, size, (U, V, W), whether the instrument dominates the width)
    cases = [(0.0, 251.0, (0.0, 0.0, 0.002), True), (0.0025, 100.0, (0.004, 0.0, 0.0018), False),
             (0.0008, 150.0, (0.002, 0.0, 0.0019), False), (0.0, np.inf, (0.004, 0.0, 0.002), True)]
    for strain, size_nm, uvw, narrow in cases:
        offsets = np.array([0, len(two_theta)])
        folded = broaden_phases(offsets, two_theta, intensity, MULTIPHASE, [strain], [size_nm], WAVELENGTH,
                                caglioti_uvw=[[c] for c in uvw])[0]
        gamma_g, gamma_l = sample_broadening_fwhm_deg(two_theta, strain, size_nm, WAVELENGTH)
        gamma_g = np.hypot(gamma_g, caglioti_fwhm_deg(two_theta, *uvw))
        voigt = voigt_bin_masses(two_theta, intensity, MULTIPHASE, gamma_g, gamma_l)
        assert relative_l1(folded[None], voigt[None])[0] < 0.03, (strain, size_nm, uvw)
        without = broaden_phases(offsets, two_theta, intensity, MULTIPHASE, [strain], [size_nm], WAVELENGTH)[0]
        if narrow:
            assert relative_l1(without[None], voigt[None])[0] > 2 * relative_l1(folded[None], voigt[None])[0], \
                "the instrument must show"
