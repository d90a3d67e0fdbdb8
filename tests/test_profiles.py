import math

import numpy as np
import pytest
from scipy.integrate import quad

from xrdbench.augment.profiles import (
    caglioti_fwhm_deg,
    gaussian_bin_integral,
    gaussian_fwhm_strain_rad,
    lorentzian_bin_integral,
    lorentzian_fwhm_scherrer_rad,
    pseudo_voigt,
    pseudo_voigt_bin_integral,
    sample_broadening_fwhm_deg,
    tch_eta,
    tch_fwhm,
)


def test_tch_pure_gaussian_and_pure_lorentzian():
    assert tch_fwhm(0.3, 0.0) == pytest.approx(0.3)
    assert tch_eta(0.3, 0.0) == pytest.approx(0.0)
    assert tch_fwhm(0.0, 0.2) == pytest.approx(0.2)
    # 1.36603 − 0.47719 + 0.11116 = 1.0 exactly
    assert tch_eta(0.0, 0.2) == pytest.approx(1.0, abs=1e-12)
    assert tch_eta(0.0, 0.0) == 0.0  # a delta; no division by zero


def test_tch_mixed_by_hand():
    total = (1 + 2.69269 + 2.42843 + 4.47163 + 0.07842 + 1) ** 0.2  # Γ_G = Γ_L = 1
    assert total == pytest.approx(1.63464, abs=1e-5)  # 11.67117^(1/5)
    assert tch_fwhm(1.0, 1.0) == pytest.approx(total, rel=1e-12)
    q = 1 / total
    assert tch_eta(1.0, 1.0) == pytest.approx(1.36603 * q - 0.47719 * q**2 + 0.11116 * q**3, rel=1e-12)
    # homogeneous of degree 1 in the widths, η of degree 0
    assert tch_fwhm(0.02, 0.02) == pytest.approx(0.02 * total)
    assert tch_eta(0.02, 0.02) == pytest.approx(tch_eta(1.0, 1.0))


def test_scherrer_and_strain_by_hand():
    theta = math.radians(30.0)  # 2θ = 60°
    # 4 · 0.002 · tan 30° = 0.0046188 rad
    assert gaussian_fwhm_strain_rad(0.002, theta) == pytest.approx(0.0046188022, rel=1e-7)
    # 0.9 · 1.54184 / (1000 · cos 30°) = 1.387656 / 866.0254 = 0.00160233 rad
    assert lorentzian_fwhm_scherrer_rad(1000.0, theta, 1.54184) == pytest.approx(0.0016023271, rel=1e-7)
    assert lorentzian_fwhm_scherrer_rad(1000.0, theta, 1.54184, shape_factor=1.0) == pytest.approx(0.0017803635, rel=1e-7)


def test_sample_broadening_converts_nm_and_degrees_and_broadcasts():
    gamma_g, gamma_l = sample_broadening_fwhm_deg(60.0, 0.002, 100.0, 1.54184)  # 100 nm = 1000 Å
    assert gamma_g == pytest.approx(math.degrees(0.0046188022))
    assert gamma_l == pytest.approx(math.degrees(0.0016023271), rel=1e-7)
    angles = np.linspace(10, 110, 7)
    strain, size_nm = np.array([[0.0], [0.001]]), np.array([[100.0], [250.0]])
    gamma_g, gamma_l = sample_broadening_fwhm_deg(angles, strain, size_nm, 1.5)
    assert gamma_g.shape == gamma_l.shape == (2, 7)
    assert np.all(gamma_g[0] == 0) and np.all(np.diff(gamma_g[1]) > 0) and np.all(np.diff(gamma_l) > 0)


def test_pseudo_voigt_unit_area_and_fwhm():
    for fwhm, eta in [(0.5, 0.0), (0.5, 1.0), (0.2, 0.37)]:
        area, _ = quad(lambda x: pseudo_voigt(x, fwhm, eta), -np.inf, np.inf, limit=200)
        assert area == pytest.approx(1.0, abs=1e-8)
        peak = pseudo_voigt(0.0, fwhm, eta)
        assert pseudo_voigt(fwhm / 2, fwhm, eta) == pytest.approx(peak / 2, rel=1e-12)


def test_bin_integrals_match_quadrature_and_sum_to_one():
    for fwhm, eta in [(0.05, 0.0), (0.05, 1.0), (3.0, 0.6)]:
        expected, _ = quad(lambda x: pseudo_voigt(x, fwhm, eta), 0.1, 0.35, points=[0.2])
        assert pseudo_voigt_bin_integral(0.1, 0.35, fwhm, eta) == pytest.approx(expected, rel=1e-9)
    # a peak far narrower than its bin lands wholly in it
    edges = np.arange(-5, 6) - 0.5
    narrow = gaussian_bin_integral(edges[:-1], edges[1:], 0.01)
    assert narrow[5] == pytest.approx(1.0) and narrow.sum() == pytest.approx(1.0)
    assert lorentzian_bin_integral(-1e9, 1e9, 0.3) == pytest.approx(1.0)


def test_caglioti_by_hand():
    # 2θ = 90°: tanθ = 1, FWHM² = U + V + W
    assert caglioti_fwhm_deg(90.0, 0.004, 0.0, 0.002) == pytest.approx(math.sqrt(0.006))
    tan_theta = math.tan(math.radians(30.0))
    assert caglioti_fwhm_deg(60.0, 0.004, -0.001, 0.002) == pytest.approx(
        math.sqrt(0.004 * tan_theta**2 - 0.001 * tan_theta + 0.002)
    )
    assert caglioti_fwhm_deg(10.0, 0.0, -1.0, 0.0) == 0.0  # negative FWHM² clipped
