"""Angle-dependent pseudo-Voigt broadening on a fixed 2θ grid, by a width look-up table.

The latent-phase paper applies "variable-width convolution on the fixed grid using a
LUT-based approximation (log-spaced width levels with per-bin interpolation)". Here:

- :class:`WidthLUT` holds, per log-spaced FWHM level, the spectra of a unit-area,
  bin-integrated Gaussian and Lorentzian kernel. It is built once per grid and cached.
- :func:`broaden` computes output bin j as η_j·L-conv + (1−η_j)·G-conv, each at width Γ_j,
  interpolated linearly in log Γ between the two bracketing levels. A pseudo-Voigt is linear
  in η, so two convolutions per level suffice; the input is transformed once, each pattern
  then visits only the levels its own widths span, one inverse FFT per level and profile.
- :func:`broaden_phases` renders stick lists and broadens them with the TCH widths of
  microstrain and crystallite size. A peak narrower than a bin depends on where its stick
  sits inside the bin, which a bin-resolution rendering loses (≈15 % L1 at Γ ≈ 0.6 bin). So
  sticks are spread onto a grid ``STICK_OVERSAMPLE`` times finer with cubic (Keys) weights,
  convolved there in Fourier space, and decimated back by summing the spectrum's aliases.
  Γ and η change together and smoothly along 2θ, so each level gets one pseudo-Voigt of the
  pattern's own η at that width: one inverse FFT per level. Those inverse FFTs are most of
  its time, so its table is spaced a little coarser (``STICK_LEVEL_RATIO``), and patterns are
  rendered, transformed and convolved in chunks of alike widths that stay in cache.
- The instrument's Gaussian is folded into each phase's profile (``caglioti_uvw``: its FWHM²
  adds to the Gaussian part's, exact for a Voigt), which costs nothing extra; a second pass
  over the mixture cost about an eighth of the pipeline's time. Dense patterns are broadened
  by :func:`~xrdbench.augment.instrument.instrument_broadening` on a table of its own,
  ``INSTRUMENT_LEVEL_RATIO`` apart: a narrow Gaussian mixes well between coarser levels.
- :func:`render_pseudo_voigt_exact` / :func:`broaden_phases_exact` render every stick as its
  own bin-integrated pseudo-Voigt: the slow reference the LUT is tested against.

Widths outside the LUT's range are clamped to it; its lowest level (a quarter bin) is a
delta for all practical purposes. Convolutions are circular over a zero-padded length: the
padding takes most of the Lorentzian tails leaving one end of the grid; what wraps round
to the other end is a small part of the error budget the tests hold to (2 % L1).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import scipy.fft

from xrdbench.augment.profiles import (
    caglioti_fwhm_deg,
    gaussian_bin_integral,
    lorentzian_bin_integral,
    pseudo_voigt_bin_integral,
    sample_broadening_fwhm_deg,
    tch_eta,
    tch_fwhm,
)
from xrdbench.simulate.grids import Grid, stick_lists

__all__ = [
    "INSTRUMENT_LEVEL_RATIO",
    "PAPER_RANGES",
    "STICK_OVERSAMPLE",
    "WidthLUT",
    "broaden",
    "broaden_phases",
    "broaden_phases_exact",
    "phase_fwhm_eta",
    "render_pseudo_voigt_exact",
    "render_sticks_linear",
    "width_lut",
]

# The latent-phase paper's sampling ranges: they fix how wide the LUT must reach.
PAPER_RANGES = {
    "strain": (0.0, 0.0025),
    "size_nm": (10**2.0, 10**2.4),
    "wavelength_angstrom": 1.54184,
    "caglioti_u_deg2": (0.0, 0.004),
    "caglioti_w_deg2": (0.0, 0.002),
}
STICK_OVERSAMPLE = 4  # fine points per bin for sticks; 2 leaves up to 5 % L1 at Γ ≈ 0.6 bin
LEVEL_RATIO = 2.0 ** (1 / 3)  # adjacent FWHM levels: ≈1 % worst L1 from log-linear mixing
# broaden_phases' levels: each costs one inverse FFT per pattern, the bulk of its time.
# Without the instrument, the tests' worst L1 was 1.2 % at 2^(1/3) and 1.3 % at 2^0.4 (2^0.6:
# 2.2 %, over the bar). Folding the instrument in puts most widths near one bin, where mixing
# levels is hardest: the tests' worst became 1.7 % at 2^(1/3), 1.5 % at 2^0.35, 1.1 % at 2^0.37
# and 2.3 % at 2^0.4 (where the levels fall against the corner widths matters more than their
# spacing); on 300 phases drawn from the paper's ranges, 0.8 %, 0.9 %, 1.0 % and 1.3 %.
# 2^0.37 is ≈4 % faster than 2^(1/3). Quadratic (three-level) interpolation in log width was
# tried and bought little: at 2^0.6 the worst rows only went from 2.2 % to 2.0 %.
STICK_LEVEL_RATIO = 2.0 ** 0.37
# The instrument's Gaussian (Caglioti, 0.75–2.1 bins on the paper's ranges) mixes more
# gracefully than the stick pseudo-Voigts: 2^0.5 keeps it under 1 % L1 with ≈30 % fewer levels.
INSTRUMENT_LEVEL_RATIO = 2.0 ** 0.5
MIN_FWHM_BINS = 0.25
SPECTRUM_TOL = 1e-3  # Fourier bands where a kernel stays below this are skipped
PAD_FRACTION = 0.06  # zero padding against wrap-around of Lorentzian tails
KNOT_STEP = 64  # bins between exact TCH evaluations in broaden_phases (16, 32 and 128 gave the same L1)
ROWS_PER_CHUNK = 64  # patterns convolved together (measured best of 32–256)


def _max_fwhm_deg(grid: Grid) -> float:
    """Widest TCH FWHM the paper's phase or instrument ranges produce on ``grid``."""
    two_theta = grid.two_theta_max_deg
    gamma_g, gamma_l = sample_broadening_fwhm_deg(
        two_theta, PAPER_RANGES["strain"][1], PAPER_RANGES["size_nm"][0], PAPER_RANGES["wavelength_angstrom"]
    )
    u_max, w_max = PAPER_RANGES["caglioti_u_deg2"][1], PAPER_RANGES["caglioti_w_deg2"][1]
    instrument = caglioti_fwhm_deg(two_theta, u_max, 0.0, w_max)
    return float(tch_fwhm(np.hypot(gamma_g, instrument), gamma_l))


@dataclass(frozen=True, eq=False)
class WidthLUT:
    """Kernel spectra at log-spaced FWHM levels for one grid and input resolution.

    ``oversample == 1`` serves dense patterns (bin-resolution input); ``oversample > 1``
    serves sticks spread onto ``oversample`` points per bin, whose rfft (length
    ``oversample·n_fft``) holds ``oversample`` bands of the bin grid's width: band b holds
    |f| ∈ [b/2, (b+1)/2) cycles per bin. Decimating to the bin grid sums the bands, so each
    kernel is stored per band, with the 1/oversample of decimation folded in. The kernels
    are even, so their spectra are real. Build with :meth:`build`; :func:`width_lut` caches.
    """

    grid: Grid
    oversample: int
    fwhm_bins: np.ndarray  # (n_levels,) float64, geometric with ratio level_ratio
    level_ratio: float
    n_fft: int  # padded length on the bin grid, even
    # (n_levels, oversample, n_fft + 2) float32: each real coefficient twice, to scale the
    # (re, im) pairs of a complex64 spectrum viewed as float32.
    gaussian_bands: np.ndarray
    lorentzian_bands: np.ndarray
    # (n_levels, oversample, 2): per band, the range of coefficients above spectrum_tol
    # (empty as (0, 0)); outside it the products are skipped.
    band_ranges: np.ndarray

    @classmethod
    def build(
        cls,
        grid: Grid,
        oversample: int = 1,
        max_fwhm_deg: float | None = None,
        min_fwhm_bins: float = MIN_FWHM_BINS,
        level_ratio: float = LEVEL_RATIO,
        pad_fraction: float = PAD_FRACTION,
        spectrum_tol: float = SPECTRUM_TOL,
    ) -> WidthLUT:
        """Levels ``min_fwhm_bins · level_ratio^k`` up to ``max_fwhm_deg`` (default: the widest
        width the paper's ranges give on ``grid``); kernel coefficients below ``spectrum_tol``
        are skipped. A coarser ``level_ratio`` is faster: 2^0.4 costs ≈15 % less time than
        2^(1/3) and raised the tests' worst L1 from 1.2 % to 1.3 %; 2^0.5 reached 1.7 %."""
        if oversample != 1 and oversample % 2:
            raise ValueError(f"oversample must be 1 or even, got {oversample}")
        max_fwhm_bins = (max_fwhm_deg or _max_fwhm_deg(grid)) / grid.bin_width_deg
        n_levels = int(np.ceil(np.log(max(max_fwhm_bins, min_fwhm_bins) / min_fwhm_bins) / np.log(level_ratio))) + 1
        fwhm_bins = min_fwhm_bins * level_ratio ** np.arange(n_levels)
        n_fft = 2 * scipy.fft.next_fast_len(int(np.ceil(grid.n_bins * (1 + pad_fraction) / 2)), real=True)
        n_fine = oversample * n_fft
        # Kernel offsets in bins, laid out circularly (negative offsets at the end).
        offset = np.fft.fftfreq(n_fine, d=1.0 / n_fine) / oversample
        bands = []
        for bin_integral in (gaussian_bin_integral, lorentzian_bin_integral):
            kernels = bin_integral(offset - 0.5, offset + 0.5, fwhm_bins[:, None])
            spectrum = scipy.fft.rfft(kernels, axis=1).real / oversample
            bands.append(cls._split_bands(spectrum, n_fft, oversample).astype(np.float32))
        significant = np.maximum(np.abs(bands[0]), np.abs(bands[1])) > spectrum_tol
        any_significant = significant.any(axis=2)
        start = np.where(any_significant, np.argmax(significant, axis=2), 0)
        stop = np.where(any_significant, significant.shape[2] - np.argmax(significant[..., ::-1], axis=2), 0)
        bands = [np.repeat(b, 2, axis=-1) for b in bands]
        return cls(grid, oversample, fwhm_bins, level_ratio, n_fft, bands[0], bands[1], np.stack([start, stop], -1))

    @staticmethod
    def _split_bands(spectrum: np.ndarray, n_fft: int, oversample: int) -> np.ndarray:
        """(..., oversample·n_fft/2 + 1) rfft → (..., oversample, n_fft/2 + 1) bands by |f|.

        Band 2m is stored directly at m + k/n_fft cycles per bin; band 2m + 1, beyond the
        fine Nyquist's mirror, is the conjugate of the rfft read backwards.
        """
        half = n_fft // 2
        if oversample == 1:  # one band: the spectrum itself
            return spectrum[..., None, :]
        out = np.empty(spectrum.shape[:-1] + (oversample, half + 1), dtype=spectrum.dtype)
        for band in range(oversample):
            if band % 2 == 0:
                start = band // 2 * n_fft
                out[..., band, :] = spectrum[..., start : start + half + 1]
            else:
                stop = (band + 1) // 2 * n_fft
                np.conjugate(spectrum[..., stop - half : stop + 1][..., ::-1], out=out[..., band, :])
        return out

    @cached_property
    def _kernels(self) -> dict[str, np.ndarray]:
        return {"gauss": self.gaussian_bands, "lorentz": self.lorentzian_bands}

    @property
    def n_levels(self) -> int:
        return len(self.fwhm_bins)

    def level_position(self, fwhm_bins: np.ndarray) -> np.ndarray:
        """Fractional level index of each width, clamped to the table (float32)."""
        fwhm_bins = np.maximum(np.asarray(fwhm_bins, dtype=np.float32), np.float32(1e-30))
        position = np.log(fwhm_bins / np.float32(self.fwhm_bins[0])) * np.float32(1.0 / np.log(self.level_ratio))
        return np.clip(position, 0, self.n_levels - 1).astype(np.float32)

    def spectrum_bands(self, signal_fine: np.ndarray) -> np.ndarray:
        """(B, oversample, n_fft/2 + 1) complex64 bands of a fine, padded (B, oversample·n_fft) input."""
        spectrum = scipy.fft.rfft(signal_fine, axis=1)
        return self._split_bands(spectrum, self.n_fft, self.oversample)

    def _fold(self, spectra: np.ndarray, rows, level: int, parts: tuple[str, ...]) -> np.ndarray:
        """Σ over bands of spectrum × kernel: for each part ("gauss", "lorentz"), the bin
        grid's spectrum of the decimated convolution, (n_parts, rows, n_fft/2 + 1) complex64.

        Bands and coefficients where the kernels are negligible are skipped.
        """
        n_bands, stop = self._level_extent[level]
        kernels = np.stack([self._kernels[part][level, :n_bands, : 2 * stop] for part in parts])
        pairs = spectra[rows, :n_bands, :stop].view(np.float32)  # complex × real, as (re, im) pairs
        folded = np.zeros((len(parts), len(pairs), self.n_fft + 2), dtype=np.float32)
        np.einsum("rbk,pbk->prk", pairs, kernels, out=folded[:, :, : 2 * stop])
        return folded.view(np.complex64)

    @cached_property
    def _level_extent(self) -> list[tuple[int, int]]:
        """Per level, (bands, coefficients per band) where its kernels are not negligible."""
        extent = []
        for ranges in self.band_ranges:
            n_bands = int(np.flatnonzero(ranges[:, 1] > ranges[:, 0])[-1]) + 1
            extent.append((n_bands, int(ranges[0, 1]) if n_bands == 1 else self.n_fft // 2 + 1))
        return extent

    @cached_property
    def _mixing_kernels(self) -> np.ndarray:
        """(n_levels, 2, oversample, n_fft + 2): the Gaussian and the Lorentzian − Gaussian bands."""
        return np.stack([self.gaussian_bands, self.lorentzian_bands - self.gaussian_bands], axis=1)

    def _fold_pseudo_voigt(self, spectra: np.ndarray, rows, level: int, eta: np.ndarray) -> np.ndarray:
        """Folded spectrum for one pseudo-Voigt per row, G + η·(L − G) at ``level``, as
        (rows, stop) complex64: coefficients from ``stop`` on are negligible (zero).

        Every row takes the same arithmetic whatever its η: a row's result never depends on
        the rows batched with it.
        """
        n_bands, stop = self._level_extent[level]
        kernels = self._mixing_kernels[level, :, :n_bands, : 2 * stop]
        pairs = spectra[rows, :n_bands, :stop].view(np.float32)  # complex × real, as (re, im) pairs
        gauss, difference = np.einsum("rbk,pbk->prk", pairs, kernels)
        difference *= eta[:, None]
        difference += gauss
        return difference.view(np.complex64)

    def convolve(self, bands: np.ndarray, position: np.ndarray, eta=0.0, *, level_eta=None) -> np.ndarray:
        """Variable-width pseudo-Voigt convolution of inputs given by :meth:`spectrum_bands`.

        ``position`` (B, L) is the level position of each output bin's FWHM
        (:meth:`level_position`); ``eta`` scalar or (B, L). Returns (B, L) float32.

        ``level_eta`` (B, n_levels), given instead of ``eta``, convolves each pattern's level ℓ
        with one pseudo-Voigt of mixing ``level_eta[:, ℓ]`` rather than a Gaussian and a
        Lorentzian mixed per bin: one inverse FFT per level instead of two. Mixing adjacent
        levels then interpolates η linearly along with log Γ, which is exact to first order
        where η changes smoothly with Γ (microstrain and size, Γ monotonic in 2θ).
        """
        n_patterns, n_bins = len(bands), self.grid.n_bins
        if n_patterns == 0:
            return np.zeros((0, n_bins), dtype=np.float32)
        position = np.broadcast_to(position, (n_patterns, n_bins))
        if level_eta is not None:
            eta = np.asarray(level_eta, dtype=np.float32).reshape(n_patterns, self.n_levels)
        elif np.ndim(eta) != 0:
            eta = np.broadcast_to(np.asarray(eta, dtype=np.float32), (n_patterns, n_bins))
        per_level = level_eta is not None
        if n_patterns <= ROWS_PER_CHUNK:
            return self._convolve_rows(bands, position, eta, per_level)
        # Patterns of alike widths visit alike levels: sorted into small chunks, each level
        # then runs on nearly all rows of a chunk, whose spectra stay in cache.
        order = np.lexsort((position[:, -1], position[:, 0]))
        out = np.empty((n_patterns, n_bins), dtype=np.float32)
        for start in range(0, n_patterns, ROWS_PER_CHUNK):
            rows = order[start : start + ROWS_PER_CHUNK]
            chunk_eta = eta if np.ndim(eta) == 0 else eta[rows]
            out[rows] = self._convolve_rows(bands[rows], position[rows], chunk_eta, per_level)
        return out

    def _convolve_rows(self, spectra, position, eta, per_level):
        n_patterns, n_bins = len(spectra), self.grid.n_bins
        # Every row gets the levels bracketing each of its bins, at least two.
        first = np.minimum(np.floor(position.min(axis=1)).astype(int), self.n_levels - 2)
        last = np.maximum(np.ceil(position.max(axis=1)).astype(int), first + 1)
        levels = range(first.min(), last.max() + 1)
        eta_scalar = np.ndim(eta) == 0
        if per_level:
            parts = ["mixed"]
        elif eta_scalar and eta in (0, 1):  # pure Gaussian or Lorentzian: half the work
            parts = ["lorentz" if eta == 1 else "gauss"]
        else:
            parts = ["gauss", "lorentz"]
        convs = {part: np.empty((len(levels), n_patterns, n_bins), dtype=np.float32) for part in parts}
        for index, level in enumerate(levels):
            rows = np.flatnonzero((first <= level) & (last >= level))
            if rows[-1] + 1 - rows[0] <= 1.25 * len(rows):
                rows = slice(rows[0], rows[-1] + 1)  # spare rows cost less than copies
            for part, stack in convs.items():
                if part == "mixed":
                    folded = self._fold_pseudo_voigt(spectra, rows, level, eta[rows, level])
                else:
                    folded = self._fold(spectra, rows, level, (part,))[0]
                stack[index, rows] = scipy.fft.irfft(folded, n=self.n_fft, axis=1)[:, :n_bins]
        # Linear interpolation in log width between the two levels bracketing each bin.
        lower = np.floor(position)
        np.clip(lower, first[:, None].astype(lower.dtype), (last[:, None] - 1).astype(lower.dtype), out=lower)
        frac = position - lower
        lower -= levels.start
        index = lower.astype(np.intp)
        index *= n_patterns * n_bins
        index += np.arange(n_patterns * n_bins).reshape(n_patterns, n_bins)
        out = {}
        for part, stack in convs.items():
            below = stack.ravel().take(index)
            above = stack.ravel().take(index + n_patterns * n_bins)
            above -= below
            above *= frac
            below += above
            out[part] = below
        if len(out) == 1:
            return next(iter(out.values()))
        # pV = G + η·(L − G), per bin
        mixed = out["lorentz"]
        mixed -= out["gauss"]
        mixed *= eta
        mixed += out["gauss"]
        return mixed


@lru_cache(maxsize=16)
def width_lut(grid: Grid, oversample: int = 1, level_ratio: float | None = None) -> WidthLUT:
    """The cached :class:`WidthLUT` of ``grid`` covering the paper's ranges; ``level_ratio``
    defaults to ``LEVEL_RATIO`` for dense input and ``STICK_LEVEL_RATIO`` for sticks."""
    if level_ratio is None:
        level_ratio = LEVEL_RATIO if oversample == 1 else STICK_LEVEL_RATIO
    return WidthLUT.build(grid, oversample, level_ratio=level_ratio)


def broaden(patterns: np.ndarray, fwhm_deg, eta, grid: Grid, *, lut: WidthLUT | None = None) -> np.ndarray:
    """Variable-width pseudo-Voigt broadening of dense patterns (B, L) → (B, L) float32.

    ``fwhm_deg`` and ``eta`` broadcast to (B, L): bin j is η_j·L + (1−η_j)·G at width Γ_j,
    with unit-area, bin-integrated kernels, so total intensity is kept away from the edges.
    ``eta=0`` is a pure Gaussian (e.g. the Caglioti instrument function) and skips the
    Lorentzian work.
    """
    patterns = np.atleast_2d(np.asarray(patterns, dtype=np.float32))
    lut = lut or width_lut(grid, 1)
    padded = np.zeros((len(patterns), lut.n_fft), dtype=np.float32)
    padded[:, : grid.n_bins] = patterns
    position = lut.level_position(np.asarray(fwhm_deg, dtype=np.float32) / np.float32(grid.bin_width_deg))
    return lut.convolve(lut.spectrum_bands(padded), position, eta)


def _split_linear(position, row, intensity, n_columns, n_rows):
    """Each value split between the two nearest integer columns, weights linear in distance;
    shares falling outside [0, n_columns) are dropped."""
    left = np.floor(position)
    frac = position - left
    left = left.astype(np.int64)
    out = np.zeros(n_rows * n_columns, dtype=np.float32)
    for column, weight in ((left, 1.0 - frac), (left + 1, frac)):
        keep = (column >= 0) & (column < n_columns)
        flat = row[keep] * n_columns + column[keep]
        np.add.at(out, flat, (weight[keep] * intensity[keep]).astype(np.float32))
    return out.reshape(n_rows, n_columns)


def render_sticks_linear(offsets, two_theta_deg, intensity, grid: Grid) -> np.ndarray:
    """Stick lists (CSR ``offsets``) on ``grid``, each stick split between its two nearest bin
    centres by linear weights: sums and centroids are kept. (B, L) float32; the share of a
    stick falling outside the grid's centres is dropped."""
    offsets, two_theta_deg, intensity, row = stick_lists(offsets, two_theta_deg, intensity)
    position = (two_theta_deg - grid.two_theta_deg[0]) / grid.bin_width_deg
    return _split_linear(position, row, intensity, grid.n_bins, len(offsets) - 1)


def _split_cubic(position, row, intensity, n_columns, n_rows):
    """Each value spread over its four nearest integer columns (circularly) with Keys' cubic
    convolution weights: sum, centroid and spread of a stick are kept, and a kernel sampled on
    the columns is interpolated to third order — far closer than the linear split's tent."""
    left = np.floor(position)
    t = position - left
    left = left.astype(np.int64)
    t2, t3 = t * t, t * t * t
    weights = (-0.5 * t3 + t2 - 0.5 * t, 1.5 * t3 - 2.5 * t2 + 1, -1.5 * t3 + 2 * t2 + 0.5 * t, 0.5 * t3 - 0.5 * t2)
    out = np.zeros(n_rows * n_columns, dtype=np.float32)
    for shift, weight in zip((-1, 0, 1, 2), weights):
        column = (left + shift) % n_columns + row * n_columns
        np.add.at(out, column, (weight * intensity).astype(np.float32))
    return out.reshape(n_rows, n_columns)


def phase_fwhm_eta(two_theta_deg, strain, size_nm, wavelength_angstrom, caglioti_uvw=None):
    """TCH (Γ in degrees, η) of microstrain and crystallite size, broadcast as
    :func:`~xrdbench.augment.profiles.sample_broadening_fwhm_deg`.

    ``caglioti_uvw`` = (U, V, W), broadcast alike, adds the instrument's Gaussian: Gaussians
    convolve by adding their FWHM², so the instrument widens the Voigt's Gaussian part,
    Γ_G² + Γ_Caglioti², before TCH combines it with the Lorentzian part (the Rietveld
    convention; exact for the Voigt profile the pseudo-Voigt approximates).
    """
    gamma_g, gamma_l = sample_broadening_fwhm_deg(two_theta_deg, strain, size_nm, wavelength_angstrom)
    if caglioti_uvw is not None:
        gamma_g = np.hypot(gamma_g, caglioti_fwhm_deg(two_theta_deg, *caglioti_uvw))
    fwhm = tch_fwhm(gamma_g, gamma_l)
    return fwhm, tch_eta(gamma_g, gamma_l, fwhm)


def broaden_phases(
    offsets,
    two_theta_deg,
    intensity,
    grid: Grid,
    strain,
    size_nm,
    wavelength_angstrom,
    *,
    caglioti_uvw=None,
    lut: WidthLUT | None = None,
) -> np.ndarray:
    """Phase patterns (B, L) float32 from stick lists, broadened by microstrain and size (LUT).

    Pattern b's sticks are ``offsets[b]:offsets[b+1]``; ``strain`` (B,) is ε, ``size_nm``
    (B,) the crystallite size in nm (``inf``: no size broadening). Each bin gets the TCH
    pseudo-Voigt of its own angle. ``caglioti_uvw`` = (U, V, W), each (B,), folds the
    instrument's Gaussian into the same profile (:func:`phase_fwhm_eta`).
    Intensities keep the sticks' scale: a bin holds the stick mass falling into it.
    """
    lut = lut or width_lut(grid, STICK_OVERSAMPLE)
    strain = np.asarray(strain, dtype=np.float64).reshape(-1, 1)
    size_nm = np.asarray(size_nm, dtype=np.float64).reshape(-1, 1)
    if caglioti_uvw is not None:
        caglioti_uvw = [np.asarray(c, dtype=np.float64).reshape(-1, 1) for c in caglioti_uvw]
    # Γ and η vary slowly with angle: evaluate TCH every KNOT_STEP bins and interpolate log
    # width and η linearly in between (TCH per bin would cost more than the convolutions).
    n_knots = -(-grid.n_bins // KNOT_STEP) + 1
    knot_deg = grid.two_theta_deg[0] + grid.bin_width_deg * KNOT_STEP * np.arange(n_knots)
    fwhm_deg, eta = phase_fwhm_eta(knot_deg, strain, size_nm, wavelength_angstrom, caglioti_uvw)
    knot_position = lut.level_position(fwhm_deg / grid.bin_width_deg)
    position = _interp_knots(knot_position, grid.n_bins)
    level_eta = _eta_at_levels(knot_position, eta.astype(np.float32), lut.n_levels)
    offsets, two_theta_deg, intensity, row = stick_lists(offsets, two_theta_deg, intensity)
    n_patterns, n_fine = len(offsets) - 1, lut.oversample * lut.n_fft
    position = np.broadcast_to(position, (n_patterns, grid.n_bins))
    level_eta = np.broadcast_to(level_eta, (n_patterns, lut.n_levels))
    stick_bins = (two_theta_deg - grid.two_theta_deg[0]) / grid.bin_width_deg
    # Sticks in the padding would wrap onto the far side of the grid: keep those near it only.
    pad = lut.n_fft - grid.n_bins
    near = (stick_bins > -pad / 2) & (stick_bins < grid.n_bins + pad / 2)
    stick_bins, row, intensity = stick_bins[near], row[near], intensity[near]
    first_stick = np.searchsorted(row, np.arange(n_patterns + 1))
    # Patterns of alike widths visit alike levels: sorted into small chunks, each rendered,
    # transformed and convolved in turn, its spectra staying in cache.
    out = np.empty((n_patterns, grid.n_bins), dtype=np.float32)
    order = np.lexsort((position[:, -1], position[:, 0]))
    for start in range(0, n_patterns, ROWS_PER_CHUNK):
        rows = order[start : start + ROWS_PER_CHUNK]
        counts = first_stick[rows + 1] - first_stick[rows]
        picks = np.arange(counts.sum()) + np.repeat(first_stick[rows] - (np.cumsum(counts) - counts), counts)
        local_row = np.repeat(np.arange(len(rows)), counts)
        fine = _split_cubic(stick_bins[picks] * lut.oversample, local_row, intensity[picks], n_fine, len(rows))
        out[rows] = lut._convolve_rows(lut.spectrum_bands(fine), position[rows], level_eta[rows], True)
    return out


def _eta_at_levels(knot_position: np.ndarray, knot_eta: np.ndarray, n_levels: int) -> np.ndarray:
    """η where each row's (non-decreasing) position crosses each level, (B, n_levels)."""
    levels = np.arange(n_levels, dtype=np.float32)
    right = np.clip((knot_position[:, :, None] < levels).sum(axis=1), 1, knot_position.shape[1] - 1)
    p0, p1 = (np.take_along_axis(knot_position, i, axis=1) for i in (right - 1, right))
    e0, e1 = (np.take_along_axis(knot_eta, i, axis=1) for i in (right - 1, right))
    t = np.clip((levels - p0) / np.maximum(p1 - p0, 1e-12), 0, 1)
    return e0 + (e1 - e0) * t


def _interp_knots(values: np.ndarray, n_columns: int) -> np.ndarray:
    """(B, K) values at columns 0, KNOT_STEP, 2·KNOT_STEP, … linearly interpolated to (B, n_columns)."""
    frac = np.arange(KNOT_STEP, dtype=np.float32) / KNOT_STEP
    left = values[:, :-1, None]
    out = left + (values[:, 1:, None] - left) * frac
    return out.reshape(len(values), -1)[:, :n_columns]


def render_pseudo_voigt_exact(
    offsets, two_theta_deg, intensity, grid: Grid, fwhm_deg_per_stick, eta_per_stick, *, chunk: int = 512
) -> np.ndarray:
    """Reference: every stick a bin-integrated pseudo-Voigt at its own width, summed. (B, L) float32."""
    offsets, two_theta_deg, intensity, row = stick_lists(offsets, two_theta_deg, intensity)
    fwhm = np.broadcast_to(np.asarray(fwhm_deg_per_stick, dtype=np.float64), two_theta_deg.shape)
    eta = np.broadcast_to(np.asarray(eta_per_stick, dtype=np.float64), two_theta_deg.shape)
    out = np.zeros((len(offsets) - 1, grid.n_bins))
    edges = grid.bin_edges_deg
    for start in range(0, len(two_theta_deg), chunk):
        part = slice(start, start + chunk)
        distance = edges[None, :] - two_theta_deg[part, None]
        mass = pseudo_voigt_bin_integral(
            distance[:, :-1], distance[:, 1:], np.maximum(fwhm[part, None], 1e-12), eta[part, None]
        )
        np.add.at(out, row[part], intensity[part, None] * mass)
    return out.astype(np.float32)


def broaden_phases_exact(
    offsets, two_theta_deg, intensity, grid: Grid, strain, size_nm, wavelength_angstrom, *, caglioti_uvw=None
) -> np.ndarray:
    """Exact counterpart of :func:`broaden_phases`: widths at each stick's own angle."""
    offsets, two_theta_deg, intensity, row = stick_lists(offsets, two_theta_deg, intensity)
    strain = np.asarray(strain, dtype=np.float64)[row]
    size_nm = np.asarray(size_nm, dtype=np.float64)[row]
    if caglioti_uvw is not None:
        caglioti_uvw = [np.asarray(c, dtype=np.float64)[row] for c in caglioti_uvw]
    fwhm_deg, eta = phase_fwhm_eta(two_theta_deg, strain, size_nm, wavelength_angstrom, caglioti_uvw)
    return render_pseudo_voigt_exact(offsets, two_theta_deg, intensity, grid, fwhm_deg, eta)
