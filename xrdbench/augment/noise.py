"""Detector noise: i.i.d. Gaussian with a per-sample standard deviation, then clipped at 0.

The standard normals come from each sample's own stream
(:func:`xrdbench.augment.sampling.noise_field`); this function only scales and adds them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["add_noise"]


def add_noise(patterns: np.ndarray, sigma, standard_normal: np.ndarray) -> np.ndarray:
    """``max(x + σ z, 0)`` with σ (B,) and z (B, L) standard normals; counts cannot go negative."""
    sigma = np.asarray(sigma).astype(patterns.dtype)[:, None]
    return np.maximum(patterns + sigma * standard_normal.astype(patterns.dtype, copy=False), 0)
