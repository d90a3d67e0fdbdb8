"""Stage ``datasets``: augmented single- and multi-phase patterns from the banks' stick lists.

One module per physical effect, each a pure function of (patterns, parameters) on
(B, L) batches; :mod:`~xrdbench.augment.sampling` draws the parameters from each
sample's own random stream and :func:`~xrdbench.augment.pipeline.augment_batch` chains
the effects in the latent-phase paper's order.
"""

from xrdbench.augment.background import add_background, additive_floor, multiplicative_baseline
from xrdbench.augment.instrument import caglioti_fwhm_grid, instrument_broadening, shift_sticks, zero_shift
from xrdbench.augment.mixing import distinct_materials, floored_dirichlet, mix, phase_count
from xrdbench.augment.noise import add_noise
from xrdbench.augment.normalize import masked_percentile, percentile_normalize, unit_max
from xrdbench.augment.orientation import orientation_basis, orientation_envelope
from xrdbench.augment.pipeline import augment_batch, gather_phase_sticks
from xrdbench.augment.sampling import (
    DEFAULT_OPTIONS,
    MAX_PHASES,
    draw_layout,
    noise_field,
    resolve_options,
    sample_mixture_parameters,
)
from xrdbench.augment.window import apply_window, normalized_angle, window_mask

__all__ = [
    "DEFAULT_OPTIONS",
    "MAX_PHASES",
    "add_background",
    "add_noise",
    "additive_floor",
    "apply_window",
    "augment_batch",
    "caglioti_fwhm_grid",
    "distinct_materials",
    "draw_layout",
    "floored_dirichlet",
    "gather_phase_sticks",
    "instrument_broadening",
    "masked_percentile",
    "mix",
    "multiplicative_baseline",
    "noise_field",
    "normalized_angle",
    "orientation_basis",
    "orientation_envelope",
    "percentile_normalize",
    "phase_count",
    "resolve_options",
    "sample_mixture_parameters",
    "shift_sticks",
    "unit_max",
    "window_mask",
    "zero_shift",
]
