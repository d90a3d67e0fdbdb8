"""The augmentation figure: one clean pattern, then the same pattern after each effect in turn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from xrdbench.atomic import atomic_path
from xrdbench.augment.pipeline import augment_batch
from xrdbench.augment.sampling import resolve_options, sample_mixture_parameters
from xrdbench.simulate.grids import Grid

#: Panels in the paper's order: (title, switches turned on so far, phases mixed).
STAGES = (
    ("clean sticks", (), 1),
    ("+ preferred orientation", ("orientation",), 1),
    ("+ TCH broadening (strain, size)", ("phase_broadening",), 1),
    ("+ second phase mixed in", (), 2),
    ("+ zero shift", ("zero_shift",), 2),
    ("+ Caglioti instrument broadening", ("instrument_broadening",), 2),
    ("+ scan window", ("window",), 2),
    ("+ background (baseline, floor)", ("baseline", "floor"), 2),
    ("+ noise, 99th-percentile normalization", ("noise", "normalize"), 2),
)
SWITCHES = ("orientation", "phase_broadening", "zero_shift", "instrument_broadening", "window", "baseline",
            "floor", "noise", "normalize")


def augmentation_stages(bank_path: str | Path, options: dict, sample_index: int = 0, seed: int = 0):
    """(grid, [(title, x, mask)]) for one sample, each effect added to the previous panel's."""
    bank = zarr.open_group(str(bank_path), mode="r")
    grid = Grid(**bank.attrs["grid"])
    sticks = (bank["stick_offsets"][:], bank["stick_two_theta_deg"][:], bank["stick_intensity"][:])
    opts = resolve_options(dict(options, k_probabilities=[0.0, 1.0, 0.0, 0.0, 0.0], orientation_probability=1.0))
    params = sample_mixture_parameters(np.array([sample_index]), 0, seed, len(sticks[0]) - 1, opts)
    panels, enabled = [], set()
    for title, switches, n_phases in STAGES:
        enabled.update(switches)
        stage = dict(params)
        if n_phases == 1:
            stage["phase_index"] = np.where(np.arange(5) < 1, params["phase_index"], -1)
            stage["weight"] = np.where(np.arange(5) < 1, 1.0, 0.0)[None, :]
        x, mask = augment_batch(sticks, stage, grid, dict(opts, **{s: s in enabled for s in SWITCHES}))
        panels.append((title, x[0], mask[0]))
    return grid, panels


def plot_augmentations(bank_path: str | Path, out_png: str | Path, options: dict, sample_index: int = 0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid, panels = augmentation_stages(bank_path, options, sample_index)
    figure, axes = plt.subplots(len(panels), 1, figsize=(9, 1.55 * len(panels)), sharex=True)
    for axis, (title, x, mask) in zip(axes, panels):
        axis.plot(grid.two_theta_deg, x / max(float(x.max()), 1e-12), lw=0.7, color="C0")
        hidden = mask == 0
        if hidden.any():
            axis.fill_between(grid.two_theta_deg, 0, 1.05, where=hidden, color="0.85", step="mid", lw=0)
        axis.set_ylim(0, 1.08)
        axis.set_yticks([])
        axis.text(0.99, 0.82, title, transform=axis.transAxes, ha="right", fontsize=8)
    axes[-1].set_xlabel("2θ (degrees)")
    axes[0].set_title(f"Augmentation, one sample on the {grid.name} grid (grey: outside the scan window)",
                      fontsize=9)
    figure.tight_layout()
    with atomic_path(out_png) as tmp:
        figure.savefig(tmp, dpi=130, format="png")
    plt.close(figure)
