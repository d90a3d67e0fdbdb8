"""Augmentation parameters, each sample drawn from its own random stream.

Sample ``i`` of a split uses ``numpy.random.default_rng([i, split_id, root_seed])`` and
nothing else, so its parameters (and its noise) are byte-identical whatever batch or
chunk it is computed in. The stream is consumed in a fixed order, independent of the
switches and of the draws' outcomes (so turning one effect off never changes another's
parameters):

1. ``Generator.random(n)``: one block of ``n`` U[0, 1) doubles, laid out as
   :func:`draw_layout` lists (with the defaults, n = 71):

   ==========================  ==========  =================================================
   block                       draws       transform
   ==========================  ==========  =================================================
   k                           1           categorical ``k_probabilities`` by inverse CDF
   materials                   5           distinct pool positions, sequential without replacement
   weights                     5           Gamma(α) by inverse CDF → Dirichlet → minimum weight
   orientation_applied         5           applied where u < ``orientation_probability``
   orientation_strength        5           U(``orientation_strength_range``)
   orientation_coefficients    5 × n_basis U(−1, 1), slot-major (n_basis = Chebyshev order + Fourier terms)
   strain                      5           U(``strain_range``)
   size                        5           10^U(``size_log10_nm_range``) nm
   zero_shift                  1           U(``zero_shift_range_deg``)
   caglioti                    3           ΔU, ΔV, ΔW uniform in their ranges, added to ``caglioti_base``
   window                      2           lo, hi uniform in their ranges
   baseline_amplitude          1           U(``baseline_amplitude_range``)
   baseline_coefficients       order + 1   U(``baseline_coefficient_range``), lowest power first
   floor                       2           offset, slope uniform in their ranges
   noise_sigma                 1           U(``noise_sigma_range``)
   ==========================  ==========  =================================================

   Per-phase blocks always hold 5 slots; slots ≥ K are drawn and discarded.
2. the noise (:func:`noise_field`) comes from a second stream of the sample's own,
   ``default_rng([sample_index, split_id, root_seed, 1])``, so the parameters can be
   stored without the noise and the noise regenerated without them (skipping the first
   stream's parameter block with ``PCG64.advance`` cost a third as much as the normals).

Switched-off effects and empty slots get neutral values: 0 for shifts, strengths,
strains, sizes, amplitudes, offsets and σ; ``False`` for orientation; a window of
[0°, 180°]; ``phase_index`` −1 and ``weight`` 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from math import prod

import numpy as np
from numpy.random import PCG64, Generator, SeedSequence

from xrdbench.augment.mixing import distinct_materials, floored_dirichlet, phase_count
from xrdbench.errors import ConfigError

__all__ = ["DEFAULT_OPTIONS", "MAX_PHASES", "draw_layout", "noise_field", "resolve_options",
           "sample_mixture_parameters"]

MAX_PHASES = 5

#: The ``augment`` config section: the latent-phase paper's values (Appendix A §1.1).
DEFAULT_OPTIONS: dict = {
    # phase set and proportions
    "k_probabilities": [0.20, 0.40, 0.25, 0.10, 0.05],
    "dirichlet_alpha": 1.0,
    "min_phase_weight": 0.03,
    # preferred orientation (phase-wise)
    "orientation": True,
    "orientation_probability": 0.6,
    "orientation_strength_range": [-0.18, 0.18],
    "orientation_chebyshev_order": 3,
    "orientation_fourier_terms": 2,
    "orientation_clip": [0.85, 1.2],
    # microstructure broadening (phase-wise, TCH pseudo-Voigt)
    "phase_broadening": True,
    "strain_range": [0.0, 0.0025],
    "size_log10_nm_range": [2.0, 2.4],
    "wavelength_angstrom": 1.54184,
    # global instrument effects on the mixture
    "zero_shift": True,
    "zero_shift_range_deg": [-0.06, 0.06],
    "instrument_broadening": True,
    "caglioti_base": [0.0, 0.0, 0.0],
    "caglioti_du_range": [0.0, 0.004],
    "caglioti_dv_range": [0.0, 0.0],
    "caglioti_dw_range": [0.0018, 0.002],
    # measurement
    "window": True,
    "window_lo_range_deg": [5.0, 20.0],
    "window_hi_range_deg": [80.0, 120.0],
    "baseline": True,
    "baseline_amplitude_range": [0.06, 0.18],
    "baseline_coefficient_range": [-0.12, 0.12],
    "baseline_polynomial_order": 4,
    "floor": True,
    "floor_offset_range": [0.003, 0.03],
    "floor_slope_range": [-0.01, 0.01],
    "noise": True,
    "noise_sigma_range": [0.0008, 0.0025],
    "normalize": True,
    "normalize_percentile": 99.0,
}


def resolve_options(options: Mapping | None) -> dict:
    """Defaults overlaid with ``options``; unknown keys and impossible values raise :class:`ConfigError`."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise ConfigError(f"augment: unknown option(s) {unknown}; known: {sorted(DEFAULT_OPTIONS)}")
    resolved = {**DEFAULT_OPTIONS, **options}
    p = np.asarray(resolved["k_probabilities"], dtype=np.float64)
    if not (1 <= len(p) <= MAX_PHASES and np.all(p >= 0) and p.sum() > 0):
        raise ConfigError(f"augment.k_probabilities must be 1–{MAX_PHASES} non-negative numbers, got {p.tolist()}")
    k_max = int(np.nonzero(p)[0].max()) + 1
    if k_max * resolved["min_phase_weight"] > 1:
        raise ConfigError(f"augment.min_phase_weight={resolved['min_phase_weight']} cannot hold for {k_max} phases")
    bound = (resolved["baseline_polynomial_order"] + 1) * max(map(abs, resolved["baseline_coefficient_range"]))
    if bound >= 30:  # softplus is evaluated as log1p(exp(p)); keep exp far from overflow
        raise ConfigError("augment.baseline_coefficient_range is too wide: the polynomial could reach ±30")
    if not 0 <= resolved["normalize_percentile"] <= 100:
        raise ConfigError("augment.normalize_percentile must be in [0, 100]")
    for key, value in resolved.items():
        if key.endswith("_range") or key.endswith("_range_deg") or key == "orientation_clip":
            if len(value) != 2 or value[0] > value[1]:
                raise ConfigError(f"augment.{key} must be [low, high] with low ≤ high, got {value}")
    return resolved


def draw_layout(options: Mapping) -> list[tuple[str, tuple[int, ...]]]:
    """(block name, shape) of the U[0, 1) block each sample draws first, in stream order."""
    n_basis = options["orientation_chebyshev_order"] + options["orientation_fourier_terms"]
    return [("k", (1,)), ("materials", (MAX_PHASES,)), ("weights", (MAX_PHASES,)),
            ("orientation_applied", (MAX_PHASES,)), ("orientation_strength", (MAX_PHASES,)),
            ("orientation_coefficients", (MAX_PHASES, n_basis)), ("strain", (MAX_PHASES,)),
            ("size", (MAX_PHASES,)), ("zero_shift", (1,)), ("caglioti", (3,)), ("window", (2,)),
            ("baseline_amplitude", (1,)), ("baseline_coefficients", (options["baseline_polynomial_order"] + 1,)),
            ("floor", (2,)), ("noise_sigma", (1,))]


def _seeds(sample_index, split_id: int, root_seed: int) -> np.ndarray:
    sample_index = np.asarray(sample_index, dtype=np.int64).reshape(-1)
    if np.any(sample_index < 0) or split_id < 0 or root_seed < 0:
        raise ValueError("sample indices, split_id and root_seed must be non-negative")
    seed = np.empty((len(sample_index), 3), dtype=np.uint64)
    seed[:, 0], seed[:, 1], seed[:, 2] = sample_index, split_id, root_seed
    return seed


def _uniform_blocks(seed: np.ndarray, layout) -> dict[str, np.ndarray]:
    n_draws = sum(prod(shape) for _, shape in layout)
    draws = np.empty((len(seed), n_draws))
    for row, key in enumerate(seed.tolist()):
        np.random.default_rng(key).random(out=draws[row])
    blocks, start = {}, 0
    for name, shape in layout:
        blocks[name] = draws[:, start:start + prod(shape)].reshape((len(seed),) + shape)
        start += prod(shape)
    return blocks


def _uniform(u, bounds) -> np.ndarray:
    return bounds[0] + (bounds[1] - bounds[0]) * u


def sample_mixture_parameters(sample_index, split_id: int, root_seed: int, pool_size: int,
                              options: Mapping | None = None) -> dict[str, np.ndarray]:
    """Every augmentation parameter of the samples ``sample_index`` (B,), as arrays with B rows.

    ``pool_size`` is the number of materials in the split's pool; ``phase_index`` holds
    positions in it. K is capped at ``pool_size`` (a pool of 3 cannot make 5 distinct phases).
    Keys: ``seed`` (B, 3) uint64, ``k``, ``phase_index`` (B, 5), ``weight`` (B, 5),
    ``orientation_applied`` / ``orientation_strength`` (B, 5), ``orientation_coefficients``
    (B, 5, n_basis), ``strain``, ``size_nm`` (B, 5), ``zero_shift_deg``, ``caglioti_u``,
    ``caglioti_v``, ``caglioti_w``, ``window_lo_deg``, ``window_hi_deg``, ``baseline_amplitude``,
    ``baseline_coefficients`` (B, order + 1), ``floor_offset``, ``floor_slope``, ``noise_sigma``.
    """
    opts = resolve_options(options)
    if pool_size < 1:
        raise ValueError("the material pool is empty")
    seed = _seeds(sample_index, int(split_id), int(root_seed))
    u = _uniform_blocks(seed, draw_layout(opts))
    n = len(seed)

    k = np.minimum(phase_count(u["k"][:, 0], opts["k_probabilities"]), pool_size)
    active = np.arange(MAX_PHASES) < k[:, None]
    phase_index = distinct_materials(u["materials"], k, pool_size)
    weight = floored_dirichlet(u["weights"], k, opts["min_phase_weight"], opts["dirichlet_alpha"])

    applied = active & (u["orientation_applied"] < opts["orientation_probability"]) & bool(opts["orientation"])
    strength = np.where(applied, _uniform(u["orientation_strength"], opts["orientation_strength_range"]), 0.0)
    coefficients = np.where(applied[..., None], _uniform(u["orientation_coefficients"], (-1.0, 1.0)), 0.0)

    broadened = active & bool(opts["phase_broadening"])
    strain = np.where(broadened, _uniform(u["strain"], opts["strain_range"]), 0.0)
    size_nm = np.where(broadened, 10.0 ** _uniform(u["size"], opts["size_log10_nm_range"]), 0.0)

    def switch(name, value, neutral=0.0):
        return value if opts[name] else np.full(n, neutral)

    zero_shift = switch("zero_shift", _uniform(u["zero_shift"][:, 0], opts["zero_shift_range_deg"]))
    base = opts["caglioti_base"]
    du, dv, dw = (_uniform(u["caglioti"][:, i], opts[f"caglioti_d{name}_range"]) for i, name in enumerate("uvw"))
    lo = _uniform(u["window"][:, 0], opts["window_lo_range_deg"])
    hi = _uniform(u["window"][:, 1], opts["window_hi_range_deg"])
    return {
        "seed": seed,
        "k": k,
        "phase_index": phase_index,
        "weight": weight,
        "orientation_applied": applied,
        "orientation_strength": strength,
        "orientation_coefficients": coefficients,
        "strain": strain,
        "size_nm": size_nm,
        "zero_shift_deg": zero_shift,
        "caglioti_u": switch("instrument_broadening", base[0] + du),
        "caglioti_v": switch("instrument_broadening", base[1] + dv),
        "caglioti_w": switch("instrument_broadening", base[2] + dw),
        "window_lo_deg": switch("window", lo, 0.0),
        "window_hi_deg": switch("window", hi, 180.0),
        "baseline_amplitude": switch("baseline", _uniform(u["baseline_amplitude"][:, 0],
                                                          opts["baseline_amplitude_range"])),
        "baseline_coefficients": np.where(opts["baseline"], _uniform(u["baseline_coefficients"],
                                                                     opts["baseline_coefficient_range"]), 0.0),
        "floor_offset": switch("floor", _uniform(u["floor"][:, 0], opts["floor_offset_range"])),
        "floor_slope": switch("floor", _uniform(u["floor"][:, 1], opts["floor_slope_range"])),
        "noise_sigma": switch("noise", _uniform(u["noise_sigma"][:, 0], opts["noise_sigma_range"])),
    }


#: Last entry of a sample's noise stream key, after (sample index, split, root seed).
NOISE_STREAM = 1


def noise_field(seed: np.ndarray, n_bins: int, options: Mapping | None = None) -> np.ndarray:
    """(B, n_bins) float32 standard normals, each sample's from its own noise stream:
    ``default_rng([*seed[b], NOISE_STREAM]).standard_normal(n_bins, dtype=float32)``.

    ``options`` is accepted for symmetry with the parameter sampling; the noise does not depend on it.
    """
    out = np.empty((len(seed), n_bins), dtype=np.float32)
    for row, key in enumerate(np.asarray(seed).tolist()):
        Generator(PCG64(SeedSequence([*key, NOISE_STREAM]))).standard_normal(dtype=np.float32, out=out[row])
    return out
