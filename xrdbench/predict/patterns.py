"""Measured powder patterns: reading, wavelength conversion, resampling onto a model's grid, scaling.

Reading (:func:`read_pattern`)
    Two or more columns, 2θ in degrees then intensity; a third column (the esd of
    ``.xye`` files) and any further ones are ignored. Fields are separated by
    whitespace and/or commas (``.xy``, ``.xye``, ``.csv``, ``.txt`` alike). Blank lines and
    comment lines (first non-blank character ``#``, ``!`` or ``;``) are skipped, and one
    header line of non-numeric text is allowed before the first data line
    (``2theta,intensity``). 2θ must increase strictly. Every error names the file and
    the line.

Wavelength (:func:`convert_wavelength`)
    A pattern measured at λ₁ is converted to the model's λ₀ through the d-spacing,
    ``d = λ₁ / (2 sin θ₁) = λ₀ / (2 sin θ₀)``, i.e. ``sin θ₀ = (λ₀/λ₁) sin θ₁``. Points whose
    converted angle does not exist (``sin θ₀ > 1``) are dropped. Intensities are kept as
    measured (no Lorentz-polarization re-weighting: the model is given the peak
    positions of the other wavelength, not a re-simulated pattern).

Resampling (:func:`resample_to_grid`)
    The measured profile is treated as the piecewise-linear curve through its points.
    When the measurement is at least as coarse as the grid (median step ≥ bin
    width, within 0.1 %), each bin takes the curve's value at its centre (linear interpolation):
    a coarse profile carries no information between its points, and a pattern given
    on the grid's own centres is reproduced exactly. When the measurement is finer
    (median step < 0.999 × bin width), each bin summarises the points it holds, by
    the rule that made the model's training patterns (``fine``):

    - ``"max"``, for models trained on clean patterns (a bank's sticks binned onto the
      grid by rule ``max``: each bin keeps its strongest stick): each bin takes the
      largest measured point whose 2θ lies in it, i.e. the measured points are binned
      exactly as the training sticks were: sticks measured on points that nest in the
      grid's bins give back the training pattern exactly; otherwise a line within half
      a step of a bin edge may land in the neighbouring bin, which no resampling can
      tell from the file. The bin mean would not be the training
      transform: it dilutes a sharp line by the ratio of step to bin width, sums two
      lines that share a bin (where the training patterns keep the stronger), and
      splits a line between two bins, so the relative intensities the model saw in
      training are lost. (For isolated lines inside their bins the mean is the maximum
      times step / bin width, which the ``max`` scaling undoes; lines that share a bin or
      sit near an edge are what it gets wrong, and a MOF pattern has hundreds of them.)
      A measured bin that holds no point (a local gap in the measurement) takes the
      curve's value at its centre. Noise is not averaged down: the bin keeps its highest
      excursion, as it keeps its strongest line; such a model has never seen noise.
    - ``"average"``, for models trained on augmented patterns (continuous profiles:
      broadened peaks, background, noise, percentile-normalised): each bin takes the
      curve's *mean over the bin* (the exact integral of the linear interpolant divided
      by the covered width): this is what a detector with the model's bin width would
      have recorded; it uses every measured point, averages noise down, and does not
      alias (point-sampling a fine profile at the centres would drop the points
      between them and can miss a sharp peak's maximum).

    :func:`xrdbench.predict.predict.resampling_rule` picks ``fine`` from the model's
    ``model.json``. Bins whose centre lies outside the measured range are unmeasured:
    value 0 and mask 0, as the training window mask does.

Scaling (:func:`normalize_pattern`)
    To the scale of the training dataset's ``x`` (see
    :func:`xrdbench.predict.predict.input_normalization`): ``{"method": "max", "value":
    v}`` scales the strongest measured bin to ``v`` (clean datasets: 100, the bank's
    stick scale); ``{"method": "percentile", "q": q}`` divides by the q-th percentile of
    the measured bins (augmented datasets, as :func:`xrdbench.augment.normalize.percentile_normalize`).
    Negative intensities (over-subtracted background) are clipped to 0 first, as the
    training noise is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xrdbench.augment.normalize import masked_percentile
from xrdbench.errors import XrdbenchError
from xrdbench.simulate.grids import Grid

__all__ = [
    "COMMENT_CHARS",
    "FINE_RULES",
    "MeasuredPattern",
    "convert_wavelength",
    "normalize_pattern",
    "parse_pattern_text",
    "read_pattern",
    "resample_to_grid",
    "resampling_method",
]

COMMENT_CHARS = ("#", "!", ";")
_SPLIT = re.compile(r"[,\s]+")


@dataclass
class MeasuredPattern:
    """A measured pattern as read: 2θ (degrees, strictly increasing), intensity, and the file line of each point."""

    path: str
    two_theta_deg: np.ndarray
    intensity: np.ndarray
    lines: np.ndarray = field(repr=False)
    wavelength_angstrom: float | None = None

    def __len__(self) -> int:
        return len(self.two_theta_deg)

    def line_range(self) -> str:
        """``"line N"`` or ``"lines N-M"``: where the points in use come from, for messages."""
        if len(self.lines) == 0:
            return "no data line"
        first, last = int(self.lines[0]), int(self.lines[-1])
        return f"line {first}" if first == last else f"lines {first}-{last}"


def _number(token: str, name: str, where: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise XrdbenchError(f"{where}: non-numeric {name} {token!r}") from None
    if not np.isfinite(value):
        raise XrdbenchError(f"{where}: {name} {token!r} is not a finite number")
    return value


def parse_pattern_text(text: str, path: str = "<pattern>") -> MeasuredPattern:
    """Parse the text of a pattern file (see the module docstring); ``path`` names it in errors."""
    two_theta: list[float] = []
    intensity: list[float] = []
    lines: list[int] = []
    header_seen = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip().lstrip("\ufeff")
        if not line or line.startswith(COMMENT_CHARS):
            continue
        where = f"{path}, line {number}"
        tokens = [token for token in _SPLIT.split(line) if token]
        if not two_theta and not header_seen:
            try:
                float(tokens[0])
            except ValueError:
                header_seen = True  # one line of column names before the data
                continue
        if len(tokens) < 2:
            raise XrdbenchError(f"{where}: a single column ({line!r}); expected 2θ (degrees) and intensity, "
                                "separated by whitespace or a comma")
        angle = _number(tokens[0], "2θ", where)
        value = _number(tokens[1], "intensity", where)
        if two_theta and angle <= two_theta[-1]:
            raise XrdbenchError(f"{where}: 2θ {angle:g} is not above the previous point's {two_theta[-1]:g} "
                                f"(line {lines[-1]}); 2θ must increase strictly")
        two_theta.append(angle)
        intensity.append(value)
        lines.append(number)
    if len(two_theta) < 2:
        found = "no data line" if not two_theta else f"only one data point (line {lines[0]})"
        last = number if text.splitlines() else 0
        raise XrdbenchError(f"{path}, line {last}: {found}; a pattern needs at least 2 points")
    return MeasuredPattern(path, np.asarray(two_theta, dtype=np.float64), np.asarray(intensity, dtype=np.float64),
                           np.asarray(lines, dtype=np.int64))


def read_pattern(path) -> MeasuredPattern:
    """Read a measured pattern file (``.xy``, ``.xye``, ``.csv``, ``.txt``, ...); see the module docstring."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as error:
        raise XrdbenchError(f"{path}: cannot read the pattern ({error.strerror or error})") from None
    return parse_pattern_text(text, str(path))


def convert_wavelength(two_theta_deg, from_angstrom: float, to_angstrom: float) -> tuple[np.ndarray, np.ndarray]:
    """2θ measured at ``from_angstrom`` as it would be at ``to_angstrom``, through the d-spacing.

    Returns ``(converted 2θ of the kept points, kept)`` where ``kept`` is a boolean mask
    over the input: points whose converted angle does not exist (``sin θ > 1``), or whose
    input angle is outside (0°, 180°), are dropped. Order is preserved (the map is
    increasing).
    """
    if not (from_angstrom > 0 and to_angstrom > 0):
        raise XrdbenchError(f"wavelengths must be positive, got {from_angstrom} Å and {to_angstrom} Å")
    two_theta_deg = np.asarray(two_theta_deg, dtype=np.float64)
    if from_angstrom == to_angstrom:
        return two_theta_deg.copy(), np.ones(len(two_theta_deg), dtype=bool)
    valid = (two_theta_deg > 0) & (two_theta_deg < 180)
    sine = np.where(valid, np.sin(np.radians(two_theta_deg) / 2), 0.0) * (to_angstrom / from_angstrom)
    kept = valid & (sine <= 1.0)
    return np.degrees(2 * np.arcsin(sine[kept])), kept


def _curve_integral(x: np.ndarray, y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """∫ from x[0] to t of the piecewise-linear curve through (x, y), for t in [x[0], x[-1]]."""
    slope = np.diff(y) / np.diff(x)
    cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (y[1:] + y[:-1]) * np.diff(x))])
    segment = np.clip(np.searchsorted(x, t, side="right") - 1, 0, len(x) - 2)
    dt = t - x[segment]
    return cumulative[segment] + y[segment] * dt + 0.5 * slope[segment] * dt * dt


FINE_RULES = ("average", "max")


def _bin_max(x: np.ndarray, y: np.ndarray, grid: Grid, measured: np.ndarray) -> np.ndarray:
    """Per measured bin, the largest ``y`` among the points whose ``x`` lies in it (the render rule ``max``);
    measured bins holding no point take the linear interpolant at their centre."""
    column = grid.bin_index(x)
    inside = column >= 0
    out = np.full(grid.n_bins, -np.inf)
    np.maximum.at(out, column[inside], y[inside])
    empty = measured & np.isneginf(out)
    out[empty] = np.interp(grid.two_theta_deg[empty], x, y)
    return np.where(measured, out, 0.0)


def resampling_method(two_theta_deg, grid: Grid, fine: str = "average") -> str:
    """What ``method="auto"`` of :func:`resample_to_grid` does with these 2θ: ``fine`` when the median
    step is below ``grid``'s bin width by more than 0.1 %, else ``"interpolate"``."""
    if fine not in FINE_RULES:
        raise ValueError(f"fine must be one of {FINE_RULES}, got {fine!r}")
    # The tolerance keeps a pattern written on the grid's own centres (rounded in the file) interpolated.
    step = np.median(np.diff(np.asarray(two_theta_deg, dtype=np.float64)))
    return fine if step < grid.bin_width_deg * (1 - 1e-3) else "interpolate"


def resample_to_grid(two_theta_deg, intensity, grid: Grid, method: str = "auto",
                     fine: str = "average") -> tuple[np.ndarray, np.ndarray]:
    """``(x float32 (L,), mask uint8 (L,))``: a measured profile on ``grid``'s bins.

    ``method``: ``"interpolate"`` (linear, at the bin centres), ``"average"`` (mean of the
    linear interpolant over each bin, clipped to the measured range), ``"max"`` (the
    largest measured point in each bin, as sticks are binned by the render rule ``max``)
    or ``"auto"``: ``fine`` (``"average"`` or ``"max"``) when the median measured step is
    below the bin width (by more than 0.1 %), interpolate otherwise (the module docstring
    says why). Bins whose centre lies outside ``[two_theta_deg[0], two_theta_deg[-1]]``
    get 0 and mask 0.
    """
    x = np.asarray(two_theta_deg, dtype=np.float64)
    y = np.asarray(intensity, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or len(x) < 2 or np.any(np.diff(x) <= 0):
        raise ValueError("two_theta_deg and intensity must be 1-D, of equal length ≥ 2, with 2θ strictly increasing")
    if method == "auto":
        method = resampling_method(x, grid, fine)
    centres = grid.two_theta_deg
    measured = (centres >= x[0]) & (centres <= x[-1])
    out = np.zeros(grid.n_bins, dtype=np.float64)
    if method == "interpolate":
        out[measured] = np.interp(centres[measured], x, y)
    elif method == "average":
        lo = np.clip(grid.bin_edges_deg[:-1][measured], x[0], x[-1])
        hi = np.clip(grid.bin_edges_deg[1:][measured], x[0], x[-1])
        # hi > lo for every measured bin: its centre lies inside [x0, x_last] and x0 < x_last.
        out[measured] = (_curve_integral(x, y, hi) - _curve_integral(x, y, lo)) / (hi - lo)
    elif method == "max":
        out = _bin_max(x, y, grid, measured)
    else:
        raise ValueError(f"method must be 'auto', 'interpolate', 'average' or 'max', got {method!r}")
    return out.astype(np.float32), measured.astype(np.uint8)


def normalize_pattern(x, mask, normalization: dict) -> np.ndarray:
    """``x`` (L,) or (B, L) scaled as the training data (see the module docstring); unmeasured bins stay 0.

    A pattern with nothing positive in its measured bins is returned as all zeros.
    """
    x = np.asarray(x, dtype=np.float32)
    single = x.ndim == 1
    x2 = np.atleast_2d(x)
    mask2 = np.atleast_2d(np.asarray(mask)).astype(bool)
    x2 = np.where(mask2, np.maximum(x2, 0), 0).astype(np.float32)
    method = normalization.get("method")
    if method == "max":
        level = np.where(mask2, x2, 0).max(axis=1) / float(normalization.get("value", 1.0))
    elif method == "percentile":
        level = masked_percentile(x2, mask2.astype(np.uint8), float(normalization.get("q", 99.0)))
    elif method == "none":
        level = np.ones(len(x2))
    else:
        raise XrdbenchError(f"unknown input normalization {normalization!r}; expected method max, percentile or none")
    factor = np.where(level > 0, 1.0 / np.where(level > 0, level, 1.0), 0.0).astype(np.float64)
    # x·(1/level) with level = peak/100 = 1 for a pattern already on the training scale leaves it unchanged.
    out = (x2.astype(np.float64) * factor[:, None]).astype(np.float32)
    return out[0] if single else out
