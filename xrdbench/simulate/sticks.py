"""Powder XRD stick patterns: exact, vectorised re-implementation of pymatgen's physics.

The physics is that of :class:`pymatgen.analysis.diffraction.xrd.XRDCalculator`
(``symprec=0``), so that the ``fast`` engine is a drop-in replacement whose peaks
agree with the ``pymatgen`` engine to floating-point rounding:

- every reciprocal-lattice point g with ``2 sin(θmin)/λ ≤ |g| ≤ 2 sin(θmax)/λ``
  is a reflection (no multiplicity correction: equivalent points are all enumerated);
- atomic form factor ``f(s) = Z − 41.78214·s²·Σ aᵢ exp(−bᵢ s²)`` with ``s = |g|/2 = sinθ/λ``
  and pymatgen's own ``ATOMIC_SCATTERING_PARAMS`` table;
- optional isotropic Debye–Waller factor ``exp(−B s²)`` per element (B in Å²);
- structure factor ``F(g) = Σⱼ occⱼ fⱼ exp(2πi g·rⱼ)``; intensity ``|F|²`` times the
  Lorentz-polarisation factor ``(1 + cos²2θ) / (sin²θ cosθ)``;
- reflections whose 2θ round to the same multiple of 1e-5° are merged: intensities
  summed, position taken from the reflection of smallest |g|;
- peaks below 1e-3 of the strongest (on the 0–100 scale) are dropped and the rest
  scaled so that the strongest is 100.

Why it is fast (numpy only, float64 throughout):

- Friedel's law: the form factors are real (pymatgen models no anomalous dispersion), so
  |F(g)| = |F(−g)| and only one half-space of reflections is computed;
- the phase factorises per axis, ``exp(2πi(hx+ky+lz)) = eₕ(x)·eₖ(y)·eₗ(z)``, with the
  per-axis tables built as powers of ``exp(2πi x)``; for each element the structure factors
  of a block of (h, k) rows × l columns are then one BLAS matrix product;
- a cell centrosymmetric about the origin (most CoRE MOF cells) has real F(g) = Σ w cos(2π g·r):
  half the atoms and one real GEMM, a quarter of the complex flops;
- form factors, Bragg angles and Lorentz-polarisation factors are evaluated once per
  distinct |g|, not per reflection.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pymatgen.analysis.diffraction.xrd import ATOMIC_SCATTERING_PARAMS, XRDCalculator
from pymatgen.core import Element, Structure

__all__ = [
    "ENGINES",
    "HKLFamilies",
    "get_engine",
    "simulate_sticks",
    "simulate_sticks_arrays",
    "simulate_sticks_pymatgen",
    "structure_to_arrays",
]

DEFAULT_WAVELENGTH_ANGSTROM = 1.54184  # Cu Kα, weighted mean of Kα1 and Kα2
DEFAULT_TWO_THETA_RANGE_DEG = (5.0, 90.0)
TWO_THETA_MERGE_TOL_DEG = 1e-5  # pymatgen's AbstractDiffractionPatternCalculator.TWO_THETA_TOL
SCALED_INTENSITY_TOL = 1e-3  # pymatgen's SCALED_INTENSITY_TOL, on the 0–100 scale
FORM_FACTOR_PREFACTOR = 41.78214  # pymatgen's constant in f(s), s in 1/Å
# Complex entries of one (hk rows × atoms) phase block held at once: 2^20 × 16 B = 16 MiB.
PHASE_CHUNK_ENTRIES = 1 << 20
# Row blocks per cell aimed at, and their least size: several blocks fit the sphere better
# (each GEMM spans only its own l range), too many small ones lose to per-call overhead.
CHUNKS_TARGET, ROWS_PER_CHUNK_MIN = 8, 64


@dataclass(frozen=True)
class HKLFamilies:
    """Miller-index families of each merged peak, stored CSR-like.

    Families of peak ``i`` are rows ``peak_offsets[i]:peak_offsets[i+1]`` of ``hkl`` and
    ``multiplicity``, in pymatgen's order (first appearance). A family is the set of
    reflections whose sorted absolute indices agree; ``hkl`` is its lexicographically
    largest member, as in pymatgen. Hexagonal lattices use 4-index (h, k, i, l).
    """

    peak_offsets: np.ndarray  # (n_peaks + 1,) int64
    hkl: np.ndarray  # (n_families, 3 or 4) int64
    multiplicity: np.ndarray  # (n_families,) int64

    @property
    def peak_multiplicity(self) -> np.ndarray:
        """Number of reciprocal-lattice points merged into each peak."""
        if len(self.multiplicity) == 0:
            return np.zeros(len(self.peak_offsets) - 1, dtype=np.int64)
        return np.add.reduceat(self.multiplicity, self.peak_offsets[:-1])

    def to_pymatgen(self) -> list[list[dict]]:
        """The same structure as ``DiffractionPattern.hkls``."""
        hkl = [tuple(int(v) for v in row) for row in self.hkl]
        mult = self.multiplicity.tolist()
        return [
            [{"hkl": hkl[f], "multiplicity": mult[f]} for f in range(start, stop)]
            for start, stop in zip(self.peak_offsets[:-1].tolist(), self.peak_offsets[1:].tolist(), strict=True)
        ]


@lru_cache(maxsize=None)
def _element_scattering(symbol: str) -> tuple[int, np.ndarray]:
    """(Z, (n, 2) array of (a_i, b_i)) for an element symbol, from pymatgen's table."""
    try:
        coeffs = ATOMIC_SCATTERING_PARAMS[symbol]
    except KeyError:
        raise ValueError(f"no X-ray scattering coefficients for element {symbol!r}") from None
    return Element(symbol).Z, np.asarray(coeffs, dtype=np.float64)


def _element_groups(elements: Sequence[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """Distinct element symbols (sorted) and each scatterer's index among them."""
    symbols = tuple(sorted(set(elements)))
    index = {symbol: i for i, symbol in enumerate(symbols)}
    return symbols, np.fromiter((index[e] for e in elements), dtype=np.int64, count=len(elements))


@lru_cache(maxsize=4096)
def _form_factor_params(symbols: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z (G,), a (G, n), b (G, n) of the elements, zero-padded to a common number of Gaussians."""
    params = [_element_scattering(symbol) for symbol in symbols]
    n = max(len(c) for _, c in params)
    a, b = np.zeros((len(symbols), n)), np.zeros((len(symbols), n))
    for i, (_, coeffs) in enumerate(params):
        a[i, : len(coeffs)], b[i, : len(coeffs)] = coeffs[:, 0], coeffs[:, 1]
    return np.array([z for z, _ in params], dtype=np.float64), a, b


def _is_hexagonal(lattice_matrix: np.ndarray, angle_tol_deg: float = 5.0, length_tol: float = 0.01) -> bool:
    """pymatgen's ``Lattice.is_hexagonal``: two right angles, one of 60° or 120°, equal lengths."""
    lengths = np.sqrt(np.sum(lattice_matrix**2, axis=1))
    angles = []
    for i in range(3):
        j, k = (i + 1) % 3, (i + 2) % 3
        cos = np.dot(lattice_matrix[j], lattice_matrix[k]) / (lengths[j] * lengths[k])
        angles.append(math.degrees(math.acos(max(-1.0, min(1.0, float(cos))))))
    right = [i for i in range(3) if abs(angles[i] - 90) <= angle_tol_deg]
    hexa = [i for i in range(3) if abs(angles[i] - 60) <= angle_tol_deg or abs(angles[i] - 120) <= angle_tol_deg]
    return len(right) == 2 and len(hexa) == 1 and abs(lengths[right[0]] - lengths[right[1]]) <= length_tol


def _reciprocal_points(
    reciprocal_matrix: np.ndarray, lattice_lengths: np.ndarray, g_min: float, g_max: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reflections of one Friedel half-space with g_min ≤ |g| ≤ g_max.

    Returns Miller indices with permuted axes ``pqr`` (M, 3), |g| (M,) in Å⁻¹, and ``axes``:
    the index axes ordered from the shortest range to the longest, so that
    ``pqr == hkl[:, axes]``. The half-space is (p, q, r) lexicographically positive, and
    reflections come sorted by (p, q, r), the order the factorised structure-factor GEMMs
    want. |g| is evaluated with the same operations, in the same order, as pymatgen's
    neighbour search, and the sphere edge uses its tolerances (radii under 1 Å⁻¹ keep
    |g| ≤ g_max; larger ones |g|² < g_max² + 1e-8), so reflections on the range boundary
    are kept identically.
    """
    # |h| = |g·a| ≤ |g||a|: the index box that contains the sphere.
    bound = np.floor(g_max * lattice_lengths + 1e-4).astype(np.int64)
    axes = np.argsort(bound, kind="stable")
    shape = (bound[axes[0]] + 1, 2 * bound[axes[1]] + 1, 2 * bound[axes[2]] + 1)
    dims = np.argsort(axes)  # box dimension of each Miller index
    index = []  # h, k, l as float arrays broadcast over the (p, q, r) box
    for axis in range(3):
        low = 0 if dims[axis] == 0 else -bound[axis]
        values = np.arange(low, bound[axis] + 1, dtype=np.float64)
        index.append(values.reshape([-1 if d == dims[axis] else 1 for d in range(3)]))
    h, k, l = index
    g2 = np.zeros(shape)
    for c in range(3):
        component = h * reciprocal_matrix[0, c] + k * reciprocal_matrix[1, c] + l * reciprocal_matrix[2, c]
        g2 += component * component
    inside = np.sqrt(g2) <= g_max if g_max < 1.0 else g2 < g_max * g_max + 1e-8
    # Friedel half-space: p > 0, or p == 0 and q > 0, or p == q == 0 and r > 0.
    q0, r0 = bound[axes[1]], bound[axes[2]]
    inside[0, :q0, :] = False
    inside[0, q0, : r0 + 1] = False
    ip, iq, ir = np.nonzero(inside)
    g = np.sqrt(g2[ip, iq, ir])
    keep = g >= g_min
    pqr = np.empty((int(keep.sum()), 3), dtype=np.int64)
    pqr[:, 0], pqr[:, 1], pqr[:, 2] = ip[keep], iq[keep] - q0, ir[keep] - r0
    return pqr, g[keep], axes


def _unit_phases(n_max: int, coords: np.ndarray, *, symmetric: bool) -> np.ndarray:
    """exp(2πi n x) for n in [−n_max, n_max] (or [0, n_max]) as rows, coordinates x as columns.

    Built as powers of exp(2πi x) (one complex exponential per atom, then products): the
    relative rounding grows like n·1e-16, far below what intensities need, and trig per
    entry would cost several times more.
    """
    base = np.exp((2j * np.pi) * coords)
    powers = np.empty((n_max + 1, len(coords)), dtype=np.complex128)
    powers[0] = 1.0
    if n_max:
        np.cumprod(np.broadcast_to(base, (n_max, len(coords))), axis=0, out=powers[1:])
    if not symmetric:
        return powers
    return np.concatenate([powers[:0:-1].conj(), powers])


def _phase_sums_direct(
    hkl: np.ndarray, frac_coords: np.ndarray, weights: np.ndarray, group_bounds: np.ndarray, *, real: bool
) -> np.ndarray:
    """S[e, m] = Σ_{j in e} wⱼ exp(2πi hklₘ·rⱼ), one phase per (reflection, atom): cheapest for small cells.

    Atoms are sorted by element; element e owns atoms ``group_bounds[e]:group_bounds[e+1]``.
    With ``real`` only the cosine sum is formed (centrosymmetric cells, see
    :func:`_inversion_representatives`).
    """
    n_max = np.abs(hkl).max(axis=0) if len(hkl) else np.zeros(3, dtype=np.int64)
    # exp(2πi g·r) = e_h(x) e_k(y) e_l(z): three table look-ups and two complex products per
    # (reflection, atom) cost less than one cos and one sin.
    phase = _unit_phases(int(n_max[0]), frac_coords[:, 0], symmetric=True)[hkl[:, 0] + n_max[0]]
    phase *= _unit_phases(int(n_max[1]), frac_coords[:, 1], symmetric=True)[hkl[:, 1] + n_max[1]]
    phase *= _unit_phases(int(n_max[2]), frac_coords[:, 2], symmetric=True)[hkl[:, 2] + n_max[2]]
    group_of_atom = np.repeat(np.arange(len(group_bounds) - 1), np.diff(group_bounds))
    group_weights = np.zeros((len(weights), len(group_bounds) - 1))
    group_weights[np.arange(len(weights)), group_of_atom] = weights
    if real:
        return (phase.real @ group_weights).T
    return ((phase.real @ group_weights) + 1j * (phase.imag @ group_weights)).T


def _phase_sums_factorized(
    pqr: np.ndarray, xyz: np.ndarray, weights: np.ndarray, group_bounds: np.ndarray, chunk_entries: int,
    *, real: bool,
) -> np.ndarray:
    """S[e, m] as :func:`_phase_sums_direct`, via per-axis phase tables and GEMMs.

    Indices and coordinates come with axes renamed (p, q, r) from the shortest index range to
    the longest, reflections sorted by (p, q, r) with p ≥ 0 (see :func:`_reciprocal_points`).
    Matrix rows are the (p, q) pairs: ``A[(p, q), j] = wⱼ eₚ(xⱼ) e_q(yⱼ)`` times
    ``E[r, j] = e_r(zⱼ)`` transposed gives a (p, q) × r block of structure factors, one GEMM
    per element. With ``real`` only Re(A Eᵀ) = [Re A, Im A] @ [Re E, −Im E]ᵀ is formed: one
    real GEMM, a quarter of the complex one's flops.
    """
    n_refl, n_groups = len(pqr), len(group_bounds) - 1
    out = np.empty((n_groups, n_refl), dtype=np.float64 if real else np.complex128)
    n0, n1, n2 = int(pqr[:, 0].max()), int(np.abs(pqr[:, 1]).max()), int(np.abs(pqr[:, 2]).max())
    e0 = _unit_phases(n0, xyz[:, 0], symmetric=False) * weights  # (n0+1, N)
    e1 = _unit_phases(n1, xyz[:, 1], symmetric=True)  # (2n1+1, N)
    e2 = _unit_phases(n2, xyz[:, 2], symmetric=True)  # (2n2+1, N)
    group_slices = [slice(group_bounds[e], group_bounds[e + 1]) for e in range(n_groups)]
    if real:
        e2_real = [np.concatenate([e2[:, atoms].real, -e2[:, atoms].imag], axis=1) for atoms in group_slices]
    p, q, r = pqr[:, 0], pqr[:, 1] + n1, pqr[:, 2] + n2  # q, r now index e1, e2
    # Reflections arrive sorted by (p, q, r): rows are runs of equal (p, q).
    row_key = p * (2 * n1 + 1) + q
    row_start = np.flatnonzero(np.concatenate(([True], row_key[1:] != row_key[:-1], [True])))
    p_row, q_row = p[row_start[:-1]], q[row_start[:-1]]
    n_rows = len(row_start) - 1
    row_of_refl = np.repeat(np.arange(n_rows), np.diff(row_start))
    # A few chunks even when memory allows one: each chunk's GEMM spans only its own r range,
    # which hugs the sphere better than the whole box does.
    rows_per_chunk = min(max(ROWS_PER_CHUNK_MIN, -(-n_rows // CHUNKS_TARGET)), chunk_entries // max(1, len(xyz)))
    rows_per_chunk = max(1, rows_per_chunk)
    for start in range(0, n_rows, rows_per_chunk):
        stop = min(start + rows_per_chunk, n_rows)
        refl = slice(row_start[start], row_start[stop])
        r_refl = r[refl]
        r_lo, r_hi = int(r_refl.min()), int(r_refl.max())
        # Position of each reflection in the flattened (rows, r_hi − r_lo + 1) GEMM output.
        flat = (row_of_refl[refl] - start) * (r_hi - r_lo + 1) + (r_refl - r_lo)
        pq = e0[p_row[start:stop]] * e1[q_row[start:stop]]  # (rows, N)
        for e, atoms in enumerate(group_slices):
            a = pq[:, atoms]
            if real:
                box = np.concatenate([a.real, a.imag], axis=1) @ e2_real[e][r_lo : r_hi + 1].T
            else:
                box = a @ e2[r_lo : r_hi + 1, atoms].T
            out[e, refl] = box.ravel()[flat]
    return out


# An atom's inversion partner must sit within this fractional distance of −r (per axis,
# periodic). Far below CIF precision yet above the rounding of 1 − x; the phase error it
# allows is below 1e-8 rad.
INVERSION_TOL = 1e-11


def _inversion_representatives(
    frac_coords: np.ndarray, groups: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """For a cell centrosymmetric about the origin: (atom indices, weights) that reproduce F.

    If every atom at r has one of the same element and weight at −r, F(g) = Σⱼ wⱼ cos(2π g·rⱼ)
    is real, and one atom per pair with doubled weight (self-inverse atoms keep theirs) gives
    it. Returns None when the cell is not (or not recognisably) centrosymmetric about the
    origin; the caller then takes the general complex path, so a miss costs time, never accuracy.
    """
    n_atoms = len(frac_coords)
    if n_atoms < 2:
        return None
    # Partners found by hashing coordinates on a 2^-20 grid, then verified to INVERSION_TOL.
    # A pair straddling a grid boundary is just not recognised.
    grid = float(1 << 20)

    def cell_key(x):
        cells = np.mod(np.round(x * grid).astype(np.int64), 1 << 20)
        return (cells[:, 0] << 40) | (cells[:, 1] << 20) | cells[:, 2]

    key = cell_key(frac_coords)
    inverted_key = cell_key(-frac_coords)
    by_key = np.argsort(key)
    sorted_key = key[by_key]
    slot = np.minimum(np.searchsorted(sorted_key, inverted_key), n_atoms - 1)
    partner = by_key[slot]
    index = np.arange(n_atoms)
    if (
        np.any(sorted_key[slot] != inverted_key)
        or np.any(partner[partner] != index)
        or np.any(groups[partner] != groups)
        or np.any(weights[partner] != weights)
    ):
        return None
    delta = frac_coords[partner] + frac_coords
    delta -= np.round(delta)
    if np.max(np.abs(delta)) > INVERSION_TOL:
        return None
    representative = partner >= index
    return index[representative], np.where(partner == index, 1.0, 2.0)[representative] * weights[representative]


# Below this many (reflection × atom) pairs one phase per pair beats the GEMMs' set-up cost.
DIRECT_PHASE_ENTRIES = 1 << 17


def _phase_sums(
    pqr: np.ndarray, xyz: np.ndarray, weights: np.ndarray, groups: np.ndarray, n_groups: int, chunk_entries: int
) -> tuple[np.ndarray, bool]:
    """(S, real): per-element phase sums S[e, m] for reflections ``pqr`` and atoms at ``xyz``
    (both with permuted axes), real-valued when the cell is centrosymmetric about the origin."""
    by_element = np.argsort(groups, kind="stable")
    xyz, weights, groups = xyz[by_element], weights[by_element], groups[by_element]
    centrosymmetric = _inversion_representatives(xyz, groups, weights)
    real = centrosymmetric is not None
    if real:
        atoms, weights = centrosymmetric
        xyz, groups = xyz[atoms], groups[atoms]
    group_bounds = np.searchsorted(groups, np.arange(n_groups + 1))
    if len(pqr) == 0:
        return np.zeros((n_groups, 0)), real
    if len(pqr) * len(xyz) <= DIRECT_PHASE_ENTRIES:
        return _phase_sums_direct(pqr, xyz, weights, group_bounds, real=real), real
    return _phase_sums_factorized(pqr, xyz, weights, group_bounds, chunk_entries, real=real), real


def _merge_and_scale(two_theta_deg: np.ndarray, intensity: np.ndarray):
    """pymatgen's merging, dropping and scaling of reflections sorted by angle.

    Reflections whose 2θ round to the same multiple of the tolerance are one peak, at the
    first (smallest) angle, with summed intensity; peaks under SCALED_INTENSITY_TOL of the
    strongest (0–100 scale) are dropped; the strongest becomes 100. Returns the peaks'
    (two_theta_deg, intensity) plus each merged group's first index and whether it was kept.
    """
    if len(two_theta_deg) == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
    keys = np.round(two_theta_deg / TWO_THETA_MERGE_TOL_DEG).astype(np.int64)
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    peak_intensity = np.add.reduceat(intensity, starts)
    # Same expression as pymatgen, so peaks at the threshold are kept identically.
    kept = peak_intensity / peak_intensity.max() * 100 > SCALED_INTENSITY_TOL
    peak_intensity = peak_intensity[kept]
    if len(peak_intensity) == 0:  # every reflection extinct: nothing to scale
        return np.zeros(0), np.zeros(0), starts, kept
    return two_theta_deg[starts][kept], peak_intensity / (peak_intensity.max() / 100), starts, kept


def simulate_sticks_arrays(
    lattice_matrix: np.ndarray,
    frac_coords: np.ndarray,
    elements: Sequence[str],
    occupancies: np.ndarray | None = None,
    wavelength: float = DEFAULT_WAVELENGTH_ANGSTROM,
    two_theta_range: tuple[float, float] | None = DEFAULT_TWO_THETA_RANGE_DEG,
    *,
    debye_waller_factors: Mapping[str, float] | None = None,
    return_hkl: bool = False,
    chunk_entries: int = PHASE_CHUNK_ENTRIES,
):
    """Stick pattern from arrays: one row per scatterer (a disordered site is one row per species).

    Args:
        lattice_matrix: (3, 3) real-space lattice vectors as rows, Å.
        frac_coords: (N, 3) fractional coordinates of the scatterers.
        elements: N element symbols (``"Fe"``, not ``"Fe2+"``).
        occupancies: (N,) site occupancies; all 1 when omitted.
        wavelength: X-ray wavelength in Å.
        two_theta_range: (min, max) 2θ in degrees, or None for the whole limiting sphere |g| ≤ 2/λ.
        debye_waller_factors: isotropic B in Å² per element symbol, applied as exp(−B s²).
        return_hkl: also return the :class:`HKLFamilies` of each peak.
        chunk_entries: bound on complex entries per (hk rows × atoms) block; memory only.

    Returns:
        ``(two_theta_deg, intensity)`` float64 arrays sorted by angle, strongest peak 100,
        plus ``hkl_families`` when ``return_hkl``. A pattern with no reflection in range
        gives empty arrays.
    """
    lattice_matrix = np.asarray(lattice_matrix, dtype=np.float64).reshape(3, 3)
    frac_coords = np.asarray(frac_coords, dtype=np.float64).reshape(-1, 3)
    elements = list(elements)
    weights = np.ones(len(elements)) if occupancies is None else np.asarray(occupancies, dtype=np.float64)
    if not (len(elements) == len(frac_coords) == len(weights)):
        raise ValueError("frac_coords, elements and occupancies must have one row per scatterer")
    dw = debye_waller_factors or {}

    # pymatgen's crystallographic reciprocal lattice, the same floating-point steps.
    reciprocal_matrix = (np.linalg.inv(lattice_matrix).T * 2 * np.pi) / (2 * np.pi)
    if two_theta_range is None:
        g_min, g_max = 0.0, 2 / wavelength
    else:
        g_min, g_max = (2 * math.sin(math.radians(t / 2)) / wavelength for t in two_theta_range)
    lattice_lengths = np.sqrt(np.sum(lattice_matrix**2, axis=1))
    pqr, g, axes = _reciprocal_points(reciprocal_matrix, lattice_lengths, g_min, g_max)

    symbols, groups = _element_groups(elements)
    phase, real = _phase_sums(pqr, frac_coords[:, axes], weights, groups, len(symbols), chunk_entries)

    if return_hkl:
        # pymatgen's half-space ((h, k, l) lexicographically positive) and order (|g|, then
        # −h, −k, −l) fix which member of a Friedel pair is listed first in each family.
        hkl = np.empty_like(pqr)
        hkl[:, axes] = pqr
        h, k, l = hkl.T
        mirrored = (h < 0) | ((h == 0) & (k < 0)) | ((h == 0) & (k == 0) & (l < 0))
        hkl = np.where(mirrored[:, None], -hkl, hkl)
        order = np.lexsort((-hkl[:, 2], -hkl[:, 1], -hkl[:, 0], g))
        hkl = hkl[order]
    else:
        order = np.argsort(g)  # merging only needs |g| order
    g, phase = g[order], phase[:, order]

    # Reflections of equal |g| share form factors, Bragg angle and Lorentz-polarisation factor:
    # evaluate those once per distinct |g| (symmetry makes them far fewer than reflections).
    g_start = np.flatnonzero(np.concatenate(([True], g[1:] != g[:-1]))) if len(g) else np.zeros(0, np.int64)
    g_count = np.diff(np.append(g_start, len(g)))
    g_distinct = g[g_start]
    theta = np.arcsin(np.clip(wavelength * g_distinct / 2, -1, 1))
    s2 = (g_distinct / 2) ** 2
    z, a_coeff, b_coeff = _form_factor_params(symbols)
    # f(s) = Z − 41.78214 s² Σᵢ aᵢ exp(−bᵢ s²), laid out (element, |g|) so that every ufunc
    # runs over the long axis.
    gaussians = np.zeros((len(symbols), len(g_distinct)))
    for i in range(a_coeff.shape[1]):
        gaussians += a_coeff[:, i, None] * np.exp(b_coeff[:, i, None] * -s2)
    form_factor = z[:, None] - FORM_FACTOR_PREFACTOR * s2 * gaussians
    if dw:
        b_iso = np.array([dw.get(symbol, 0.0) for symbol in symbols], dtype=np.float64)
        form_factor *= np.exp(b_iso[:, None] * -s2)
    structure_factor = np.einsum("em,em->m", np.repeat(form_factor, g_count, axis=1), phase)
    f_squared = structure_factor**2 if real else structure_factor.real**2 + structure_factor.imag**2
    cos_2theta = np.cos(2 * theta)
    lorentz_polarization = (1 + cos_2theta**2) / (np.sin(theta) ** 2 * np.cos(theta))
    intensity = (np.add.reduceat(f_squared, g_start) if len(g) else np.zeros(0)) * lorentz_polarization
    two_theta_deg = np.degrees(2 * theta)

    peak_two_theta, peak_intensity, starts, kept = _merge_and_scale(two_theta_deg, intensity)
    if not return_hkl:
        return peak_two_theta, peak_intensity
    peak_of_distinct_g = np.cumsum(np.isin(np.arange(len(g_start)), starts)) - 1
    peak_of_refl = np.repeat(peak_of_distinct_g, g_count)
    families = _hkl_families(hkl, peak_of_refl, kept, _is_hexagonal(lattice_matrix))
    return peak_two_theta, peak_intensity, families


def _hkl_families(hkl: np.ndarray, peak_of_refl: np.ndarray, kept: np.ndarray, hexagonal: bool) -> HKLFamilies:
    """Group each kept peak's reflections (and their Friedel mates) into permutation families."""
    n_refl = len(hkl)
    # Members in pymatgen's order: each reflection followed by its Friedel mate.
    members = np.empty((2 * n_refl, 3), dtype=np.int64)
    members[0::2], members[1::2] = hkl, -hkl
    peak = np.repeat(peak_of_refl, 2)
    if hexagonal:
        members = np.column_stack([members[:, 0], members[:, 1], -members[:, 0] - members[:, 1], members[:, 2]])
    select = kept[peak]
    members, peak = members[select], peak[select]
    appearance = np.arange(len(members))
    family_key = np.column_stack([peak, np.sort(np.abs(members), axis=1)])
    uniq, family_of_member, multiplicity = np.unique(family_key, axis=0, return_inverse=True, return_counts=True)
    family_of_member = family_of_member.ravel()
    n_fam = len(uniq)
    first = np.full(n_fam, len(members), dtype=np.int64)
    np.minimum.at(first, family_of_member, appearance)
    # Representative: the lexicographically largest member of each family.
    by_value = np.lexsort([members[:, c] for c in range(members.shape[1] - 1, -1, -1)] + [family_of_member])
    last_of_family = np.r_[family_of_member[by_value][1:] != family_of_member[by_value][:-1], True]
    representative = np.empty((n_fam, members.shape[1]), dtype=np.int64)
    representative[family_of_member[by_value][last_of_family]] = members[by_value][last_of_family]
    fam_order = np.lexsort((first, uniq[:, 0]))
    kept_peak_index = np.cumsum(kept) - 1
    fam_peak = kept_peak_index[uniq[fam_order, 0]]
    offsets = np.searchsorted(fam_peak, np.arange(int(kept.sum()) + 1))
    return HKLFamilies(offsets.astype(np.int64), representative[fam_order], multiplicity[fam_order].astype(np.int64))


def structure_to_arrays(structure: Structure) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """(lattice_matrix, frac_coords, elements, occupancies), one row per (site, species)."""
    # pymatgen requires U11_cif on every site or none, so the first site tells.
    if len(structure) and "U11_cif" in structure[0].properties:
        raise ValueError("anisotropic displacement (U11_cif, ...) site properties are not supported by the fast engine")
    site_index, elements, occupancies = [], [], []
    for i, site in enumerate(structure):
        for species, occupancy in site.species.items():
            site_index.append(i)
            elements.append(species.symbol)
            occupancies.append(occupancy)
    frac_coords = structure.frac_coords
    if len(site_index) != len(frac_coords):
        frac_coords = frac_coords[site_index]
    return structure.lattice.matrix, frac_coords, elements, np.asarray(occupancies, dtype=np.float64)


def simulate_sticks(
    structure: Structure,
    wavelength: float = DEFAULT_WAVELENGTH_ANGSTROM,
    two_theta_range: tuple[float, float] | None = DEFAULT_TWO_THETA_RANGE_DEG,
    *,
    debye_waller_factors: Mapping[str, float] | None = None,
    return_hkl: bool = False,
):
    """Stick pattern of a pymatgen Structure (the ``fast`` engine); see :func:`simulate_sticks_arrays`.

    Equals ``XRDCalculator(wavelength).get_pattern(structure, scaled=True, two_theta_range)``
    (symprec=0): the same peaks, at the same angles (computed by the same float operations),
    scaled intensities equal to ~1e-12. The cell is used as given (no symmetry refinement).
    wavelength in Å, two_theta_range in degrees. Structures carrying anisotropic U11_cif...
    site properties are refused (pymatgen would apply them; this engine does not).
    """
    lattice_matrix, frac_coords, elements, occupancies = structure_to_arrays(structure)
    return simulate_sticks_arrays(
        lattice_matrix, frac_coords, elements, occupancies, wavelength, two_theta_range,
        debye_waller_factors=debye_waller_factors, return_hkl=return_hkl,
    )


def simulate_sticks_pymatgen(
    structure: Structure,
    wavelength: float = DEFAULT_WAVELENGTH_ANGSTROM,
    two_theta_range: tuple[float, float] | None = DEFAULT_TWO_THETA_RANGE_DEG,
    *,
    debye_waller_factors: Mapping[str, float] | None = None,
    return_hkl: bool = False,
):
    """The reference engine: pymatgen's XRDCalculator (symprec=0), same signature and return."""
    calculator = XRDCalculator(wavelength=float(wavelength), debye_waller_factors=debye_waller_factors)
    pattern = calculator.get_pattern(structure, scaled=True, two_theta_range=two_theta_range)
    two_theta_deg = np.asarray(pattern.x, dtype=np.float64)
    intensity = np.asarray(pattern.y, dtype=np.float64)
    if not return_hkl:
        return two_theta_deg, intensity
    offsets = np.cumsum([0] + [len(peak) for peak in pattern.hkls])
    width = 4 if structure.lattice.is_hexagonal() else 3
    hkl = np.array([fam["hkl"] for peak in pattern.hkls for fam in peak], dtype=np.int64).reshape(-1, width)
    mult = np.array([fam["multiplicity"] for peak in pattern.hkls for fam in peak], dtype=np.int64)
    return two_theta_deg, intensity, HKLFamilies(offsets.astype(np.int64), hkl, mult)


ENGINES: dict[str, Callable] = {"fast": simulate_sticks, "pymatgen": simulate_sticks_pymatgen}


def get_engine(name: str) -> Callable:
    """The stick simulator named by config key ``simulate.engine``."""
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"simulate.engine must be one of {sorted(ENGINES)}, got {name!r}") from None
