"""One batch of augmented mixtures from the stick lists of a material pool.

Order, as the latent-phase paper (Appendix A §1.1), each step skippable by its switch:

1. gather each sample's K phases' sticks; scale each phase so its strongest stick is 1
   (the clean bank profile's scale, which the mixture weights refer to);
2. preferred orientation: multiply stick intensities by the phase's envelope (smooth,
   so evaluating it at the sticks equals applying it to the profile);
3. zero shift: add the sample's Δ to its sticks' 2θ (stick level: exact, and shared
   by all phases of the sample, so it is the mixture's shift);
4. phase broadening: TCH pseudo-Voigt per phase (:func:`broadening.broaden_phases`);
   switched off, sticks are summed into their bins;
5. mixing: convex combination with the sampled weights;
6. instrument broadening: the sample's Gaussian Caglioti function. Convolving the mixture
   with it equals convolving each phase, and a Gaussian convolved into a Voigt only adds
   to its Gaussian FWHM², so it is folded into step 4's profiles (one convolution pass
   instead of two; with phase broadening off, the sticks get the instrument's Gaussian alone);
7. scale the mixture to a maximum of 1 (the scale the background constants refer to);
8. window mask; background (multiplicative baseline, additive floor); noise, clipped at 0;
   unmeasured bins set to 0;
9. divide by the 99th percentile of the measured bins.

The switches (``options``: ``orientation``, ``phase_broadening``, ``zero_shift``,
``instrument_broadening``, ``window``, ``baseline``, ``floor``, ``noise``, ``normalize``) skip
a step; sample the parameters with the same options so that the stored parameters say what
was applied. Step 7 always runs: with background and noise off it only sets the scale,
which step 9 removes again.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from xrdbench.augment.background import add_background
from xrdbench.augment.broadening import broaden_phases
from xrdbench.augment.instrument import shift_sticks
from xrdbench.augment.mixing import mix
from xrdbench.augment.noise import add_noise
from xrdbench.augment.normalize import percentile_normalize, unit_max
from xrdbench.augment.orientation import orientation_envelope
from xrdbench.augment.sampling import noise_field, resolve_options
from xrdbench.augment.window import apply_window, window_mask
from xrdbench.simulate.grids import Grid, render_stick_lists

__all__ = ["augment_batch", "gather_phase_sticks"]


def gather_phase_sticks(offsets, two_theta_deg, intensity, rows):
    """CSR stick lists of the pool rows ``rows`` (repeats allowed): (offsets, 2θ, intensity, phase of each stick)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    starts = offsets[rows]
    counts = offsets[rows + 1] - starts
    new_offsets = np.concatenate([[0], np.cumsum(counts)])
    phase = np.repeat(np.arange(len(rows)), counts)
    source = np.arange(new_offsets[-1]) + np.repeat(starts - new_offsets[:-1], counts)
    return new_offsets, np.asarray(two_theta_deg)[source], np.asarray(intensity)[source], phase


def augment_batch(sticks, params: Mapping, grid: Grid, options: Mapping | None = None):
    """``(x (B, L) float32, mask (B, L) uint8)`` for the samples described by ``params``.

    ``sticks`` = (offsets, two_theta_deg, intensity) of the pool, CSR (row i owns
    ``offsets[i]:offsets[i+1]``); ``params`` as from
    :func:`~xrdbench.augment.sampling.sample_mixture_parameters`, with ``phase_index``
    indexing the rows of ``sticks``.
    """
    opts = resolve_options(options)
    offsets, pool_two_theta, pool_intensity = sticks
    phase_index = np.asarray(params["phase_index"])
    n_samples, n_bins = len(phase_index), grid.n_bins
    sample, slot = np.nonzero(phase_index >= 0)  # sample-major: a sample's phases in slot order
    stick_offsets, two_theta, intensity, stick_phase = gather_phase_sticks(
        offsets, pool_two_theta, pool_intensity, phase_index[sample, slot])
    intensity = intensity.astype(np.float64)
    strongest = np.zeros(len(sample))
    np.maximum.at(strongest, stick_phase, intensity)
    intensity /= np.where(strongest > 0, strongest, 1.0)[stick_phase]

    if opts["orientation"]:
        textured = np.nonzero(params["orientation_applied"][sample, slot][stick_phase])[0]
        phase = stick_phase[textured]
        intensity[textured] *= orientation_envelope(
            two_theta[textured], params["orientation_strength"][sample, slot][phase],
            params["orientation_coefficients"][sample, slot][phase], grid,
            chebyshev_order=opts["orientation_chebyshev_order"], clip=opts["orientation_clip"])
    if opts["zero_shift"]:
        two_theta = shift_sticks(two_theta, params["zero_shift_deg"][sample][stick_phase])
    caglioti_uvw = None
    if opts["instrument_broadening"]:
        caglioti_uvw = [params[f"caglioti_{name}"][sample] for name in "uvw"]
    if opts["phase_broadening"]:
        phases = broaden_phases(stick_offsets, two_theta, intensity, grid, params["strain"][sample, slot],
                                params["size_nm"][sample, slot], opts["wavelength_angstrom"],
                                caglioti_uvw=caglioti_uvw)
    elif caglioti_uvw is not None:
        phases = broaden_phases(stick_offsets, two_theta, intensity, grid, np.zeros(len(sample)),
                                np.full(len(sample), np.inf), opts["wavelength_angstrom"], caglioti_uvw=caglioti_uvw)
    else:
        phases = render_stick_lists(stick_offsets, two_theta, intensity, grid, rule="sum")
    x = mix(np.asarray(phases, dtype=np.float32), params["weight"][sample, slot], sample, n_samples)
    x = unit_max(np.asarray(x, dtype=np.float32))
    if opts["window"]:
        mask = window_mask(params["window_lo_deg"], params["window_hi_deg"], grid)
    else:
        mask = np.ones((n_samples, n_bins), dtype=np.uint8)
    x = add_background(x, grid, amplitude=params["baseline_amplitude"] if opts["baseline"] else None,
                       coefficients=params["baseline_coefficients"],
                       offset=params["floor_offset"] if opts["floor"] else None, slope=params["floor_slope"])
    if opts["noise"]:
        x = add_noise(x, params["noise_sigma"], noise_field(params["seed"], n_bins, opts))
    x = apply_window(x, mask)
    if opts["normalize"]:
        x = percentile_normalize(x, mask, opts["normalize_percentile"])
    return np.ascontiguousarray(x, dtype=np.float32), mask
