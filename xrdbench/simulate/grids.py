"""Named 2θ grids and the binning of stick patterns onto them.

A grid is ``n_bins`` uniform bins over ``[two_theta_min_deg, two_theta_max_deg]``; bin ``i``
covers ``[min + i·w, min + (i+1)·w)`` with ``w = (max − min) / n_bins``, except that the
upper bound itself belongs to the last bin. Rendering puts every stick in its bin and keeps
the stick intensities as given (already 0–100 from the simulator): no rescaling after
binning, so a bin's value under rule ``max`` is the strongest stick it holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from xrdbench.errors import ConfigError

__all__ = ["Grid", "NAMED_GRIDS", "RULES", "grid_from_config", "render_stick_lists", "render_sticks", "stick_lists"]

RULES = ("max", "sum")


@dataclass(frozen=True)
class Grid:
    """Uniform 2θ binning, degrees."""

    name: str
    two_theta_min_deg: float
    two_theta_max_deg: float
    n_bins: int

    def __post_init__(self):
        if not (int(self.n_bins) == self.n_bins and self.n_bins > 0):
            raise ConfigError(f"grid {self.name!r}: n_bins must be a positive integer, got {self.n_bins!r}")
        if not self.two_theta_max_deg > self.two_theta_min_deg:
            raise ConfigError(
                f"grid {self.name!r}: max ({self.two_theta_max_deg}) must exceed min ({self.two_theta_min_deg})"
            )

    @property
    def bin_width_deg(self) -> float:
        return (self.two_theta_max_deg - self.two_theta_min_deg) / self.n_bins

    @cached_property
    def bin_edges_deg(self) -> np.ndarray:
        """(n_bins + 1,) float64 edges, min + i·w."""
        return self.two_theta_min_deg + self.bin_width_deg * np.arange(self.n_bins + 1)

    @cached_property
    def two_theta_deg(self) -> np.ndarray:
        """(n_bins,) float64 bin centres."""
        return self.two_theta_min_deg + self.bin_width_deg * (np.arange(self.n_bins) + 0.5)

    def bin_index(self, two_theta_deg: np.ndarray) -> np.ndarray:
        """Bin of each angle (int64); −1 for angles outside [min, max]. The max lands in the last bin."""
        two_theta_deg = np.asarray(two_theta_deg, dtype=np.float64)
        index = np.floor((two_theta_deg - self.two_theta_min_deg) / self.bin_width_deg).astype(np.int64)
        # Rounding can put an angle a hair below an edge into the next bin; the edges are
        # computed the same way, so compare with them to land exactly.
        index = np.clip(index, 0, self.n_bins - 1)
        index -= two_theta_deg < self.bin_edges_deg[index]
        index += (two_theta_deg >= self.bin_edges_deg[np.minimum(index + 1, self.n_bins)]) & (index < self.n_bins - 1)
        index = np.clip(index, 0, self.n_bins - 1)
        inside = (two_theta_deg >= self.two_theta_min_deg) & (two_theta_deg <= self.two_theta_max_deg)
        return np.where(inside, index, -1)

    def to_config(self) -> dict:
        """The dict stored in zarr attributes; :func:`grid_from_config` reads it back."""
        return {"name": self.name, "min": self.two_theta_min_deg, "max": self.two_theta_max_deg, "n_bins": self.n_bins}


NAMED_GRIDS: dict[str, Grid] = {
    "xrdecoupler": Grid("xrdecoupler", 5.0, 90.0, 8500),  # 0.01° steps, as the XRDecoupler paper
    "multiphase": Grid("multiphase", 5.0, 120.0, 2048),  # the latent-phase paper's input length
}


def grid_from_config(config: Mapping | str) -> Grid:
    """A grid from ``{name, min, max, n_bins}``, or from a name alone for the named grids.

    A dict holding only ``name`` (or a string) selects a named grid; explicit bounds override
    it, so a named grid can be redefined in config.
    """
    if isinstance(config, str):
        config = {"name": config}
    name = config.get("name")
    base = NAMED_GRIDS.get(name)
    keys = ("min", "max", "n_bins")
    if base is None and not all(k in config for k in keys):
        missing = [k for k in keys if k not in config]
        raise ConfigError(f"grid {name!r} is not one of {sorted(NAMED_GRIDS)}; give grid.{', grid.'.join(missing)}")
    defaults = base.to_config() if base else {}
    values = {k: config.get(k, defaults.get(k)) for k in keys}
    n_bins = values["n_bins"]
    if isinstance(n_bins, float) and n_bins.is_integer():
        n_bins = int(n_bins)
    if not isinstance(n_bins, int | np.integer) or isinstance(n_bins, bool):
        raise ConfigError(f"grid.n_bins must be an integer, got {n_bins!r}")
    return Grid(str(name), float(values["min"]), float(values["max"]), int(n_bins))


def _check_rule(rule: str) -> None:
    if rule not in RULES:
        raise ConfigError(f"render rule must be one of {RULES}, got {rule!r}")


def render_sticks(two_theta_deg: np.ndarray, intensity: np.ndarray, grid: Grid, rule: str = "max") -> np.ndarray:
    """One stick pattern on ``grid``: float32 (n_bins,), intensities kept as given.

    ``rule="max"`` keeps the strongest stick per bin (the XRDecoupler authors' choice);
    ``"sum"`` adds them. Sticks outside [min, max] are dropped; empty bins are 0.
    """
    return render_stick_lists(np.array([0, len(two_theta_deg)]), two_theta_deg, intensity, grid, rule)[0]


def stick_lists(offsets, two_theta_deg, intensity):
    """Checked CSR stick lists as arrays, plus the pattern (row) of every stick.

    Pattern ``i`` owns sticks ``offsets[i]:offsets[i+1]``; ``offsets`` has n_patterns + 1
    non-decreasing entries starting at 0.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    two_theta_deg = np.asarray(two_theta_deg, dtype=np.float64)
    intensity = np.asarray(intensity, dtype=np.float64)
    if offsets.ndim != 1 or len(offsets) == 0 or offsets[0] != 0 or np.any(np.diff(offsets) < 0):
        raise ValueError("offsets must be non-decreasing, start at 0 and have n_patterns + 1 entries")
    if offsets[-1] != len(two_theta_deg) or len(two_theta_deg) != len(intensity):
        raise ValueError("offsets[-1], len(two_theta_deg) and len(intensity) must agree")
    return offsets, two_theta_deg, intensity, np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))


def render_stick_lists(
    offsets: np.ndarray, two_theta_deg: np.ndarray, intensity: np.ndarray, grid: Grid, rule: str = "max"
) -> np.ndarray:
    """Many ragged stick patterns on ``grid``: float32 (n_patterns, n_bins).

    Sticks of pattern ``i`` are ``two_theta_deg[offsets[i]:offsets[i+1]]`` (CSR-like, so
    ``offsets`` has n_patterns + 1 entries starting at 0). Same rules as :func:`render_sticks`.
    """
    _check_rule(rule)
    offsets, two_theta_deg, intensity, row = stick_lists(offsets, two_theta_deg, intensity)
    n_patterns = len(offsets) - 1
    column = grid.bin_index(two_theta_deg)
    keep = column >= 0
    flat = row[keep] * grid.n_bins + column[keep]
    values = intensity[keep]
    out = np.zeros(n_patterns * grid.n_bins, dtype=np.float64)
    if rule == "sum":
        out += np.bincount(flat, weights=values, minlength=len(out))
    else:
        # ufunc.at is fast for this in numpy 2 (measured ~15x faster than a sort-based reduction).
        # Empty bins stay 0: stick intensities are non-negative.
        np.maximum.at(out, flat, values)
    return out.astype(np.float32).reshape(n_patterns, grid.n_bins)
