"""Intensity scaling: unit maximum before the background, 99th percentile at the end.

The final input is divided by the q-th percentile of its measured bins, a robust
maximum: one sharp reflection or a noise spike does not set the scale, as it would
with the maximum. Unmeasured bins (mask 0) neither count nor change (they stay 0).
"""

from __future__ import annotations

import numpy as np

__all__ = ["CLEAN_SCALE", "dataset_normalization", "masked_percentile", "percentile_normalize", "unit_max"]

#: The maximum of a clean dataset's ``x``: bank patterns are stick intensities 0–100 binned by maximum.
CLEAN_SCALE = 100.0


def unit_max(patterns: np.ndarray) -> np.ndarray:
    """Rows divided by their maximum (all-zero rows stay 0)."""
    peak = patterns.max(axis=1, keepdims=True)
    return patterns / np.where(peak > 0, peak, 1).astype(patterns.dtype)


def _top_values(values: np.ndarray, m: int, n_groups: int = 128) -> np.ndarray:
    """The m largest values of each row, ascending (B, m), without sorting whole rows.

    Bins are dealt into ``n_groups`` groups (bin i → group i mod n_groups); the m groups with
    the largest maxima hold the m largest values (any value elsewhere is at most its group's
    maximum, which each chosen group matches or beats), so only their bins are sorted.
    """
    n_rows, n_bins = values.shape
    depth = -(-n_bins // n_groups)
    if m >= n_groups:
        return np.sort(values, axis=1)[:, n_bins - m:]
    padded = np.full((n_rows, depth * n_groups), -np.inf, dtype=values.dtype)
    padded[:, :n_bins] = values
    dealt = padded.reshape(n_rows, depth, n_groups)
    chosen = np.argpartition(dealt.max(axis=1), n_groups - m, axis=1)[:, None, n_groups - m:]
    candidates = np.take_along_axis(dealt, chosen, axis=2).reshape(n_rows, depth * m)
    return np.sort(candidates, axis=1)[:, depth * m - m:]


def masked_percentile(patterns: np.ndarray, mask: np.ndarray, q: float = 99.0) -> np.ndarray:
    """Per-row q-th percentile over the bins with mask 1 (numpy's default "linear" method); 0 for empty rows.

    Vectorized: masked bins count as −∞, and the two order statistics around rank
    ``q/100 · (n_valid − 1)`` are read from the top of each row (a high percentile only
    needs the few largest values; see :func:`_top_values`).
    """
    valid = mask.astype(bool)
    n_bins = patterns.shape[1]
    n_valid = valid.sum(axis=1)
    position = (q / 100.0) * np.maximum(n_valid - 1, 0)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, np.maximum(n_valid - 1, 0))
    frac = position - below
    # Ranks counted down from the largest valid value; the deepest one fixes how many to keep.
    depth_below, depth_above = n_valid - 1 - below, n_valid - 1 - above
    m = int(min(max(int(np.max(depth_below, initial=0)) + 1, 1), n_bins))
    top = _top_values(np.where(valid, patterns, -np.inf), m)
    rows = np.arange(len(patterns))
    a = top[rows, m - 1 - np.clip(depth_below, 0, m - 1)].astype(np.float64)
    b = top[rows, m - 1 - np.clip(depth_above, 0, m - 1)].astype(np.float64)
    with np.errstate(invalid="ignore"):  # rows with nothing measured read −inf; they are replaced below
        value = np.where(frac > 0, a + (b - a) * frac, a)
    return np.where(n_valid > 0, value, 0.0)


def percentile_normalize(patterns: np.ndarray, mask: np.ndarray, q: float = 99.0) -> np.ndarray:
    """Rows divided by their masked q-th percentile; rows whose percentile is ≤ 0 are left as they are."""
    level = masked_percentile(patterns, mask, q)
    return patterns / np.where(level > 0, level, 1.0).astype(patterns.dtype)[:, None]


def dataset_normalization(options: dict) -> dict:
    """How a dataset's ``x`` is scaled, from its options (the ``options`` attribute of its stores).

    ``clean``: the bank's sticks, strongest 100 → ``{"method": "max", "value": 100}``; augmented
    kinds: the q-th percentile of the measured bins → ``{"method": "percentile", "q": q}``, or
    with ``augment.normalize`` off the unit maximum → ``{"method": "max", "value": 1}``.
    Trained models record it (``model.json``) so that ``xrdbench predict`` scales alike.
    """
    if options["kind"] == "clean":
        return {"method": "max", "value": CLEAN_SCALE}
    augment = options.get("augment", {})
    if augment.get("normalize", True):
        return {"method": "percentile", "q": float(augment.get("normalize_percentile", 99.0))}
    return {"method": "max", "value": 1.0}
