"""Throughput of the augmentation pipeline, and the broadening look-up table against the exact renderer.

Usage::

    python benchmarks/augment.py --bank results/banks/synthetic/multiphase.zarr --samples 20000

Prints, on the bank's grid (``multiphase``: 2,048 bins) with every effect on:

- mixtures per second for 1 and 2 worker processes (parameter sampling plus
  ``augment_batch``; blocks of ``--block`` samples; worker start-up excluded);
- the look-up-table broadening's speed-up over the exact per-peak renderer
  (``broaden_phases`` against ``broaden_phases_exact`` on the same phases), and
  their largest relative L1 difference ‖lut − exact‖₁ / ‖exact‖₁.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import zarr

from xrdbench.augment.broadening import broaden_phases, broaden_phases_exact
from xrdbench.augment.pipeline import augment_batch
from xrdbench.augment.sampling import DEFAULT_OPTIONS, sample_mixture_parameters
from xrdbench.simulate.grids import Grid

_WORKER: dict = {}


def _load(bank_path: str) -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    bank = zarr.open_group(bank_path, mode="r")
    _WORKER.update(grid=Grid(**bank.attrs["grid"]),
                   sticks=(bank["stick_offsets"][:], bank["stick_two_theta_deg"][:], bank["stick_intensity"][:]))


def _mixtures(start: int, stop: int) -> int:
    sticks, grid = _WORKER["sticks"], _WORKER["grid"]
    params = sample_mixture_parameters(np.arange(start, stop), 0, 0, len(sticks[0]) - 1, DEFAULT_OPTIONS)
    x, _ = augment_batch(sticks, params, grid, DEFAULT_OPTIONS)
    return len(x)


def mixtures_per_second(bank_path: str, n_samples: int, block: int, workers: int) -> float:
    blocks = [(start, min(start + block, n_samples)) for start in range(0, n_samples, block)]
    with ProcessPoolExecutor(max_workers=workers, initializer=_load, initargs=(bank_path,)) as pool:
        list(pool.map(_mixtures, [0] * workers, [block] * workers))  # warm-up: imports, LUT, caches
        start = time.perf_counter()
        done = sum(pool.map(_mixtures, *zip(*blocks)))
        return done / (time.perf_counter() - start)


def lut_against_exact(bank_path: str, n_phases: int, seed: int) -> tuple[float, float, float]:
    _load(bank_path)
    offsets, two_theta, intensity = _WORKER["sticks"]
    grid = _WORKER["grid"]
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(offsets) - 1, size=n_phases, replace=len(offsets) - 1 < n_phases)
    counts = offsets[rows + 1] - offsets[rows]
    new_offsets = np.concatenate([[0], np.cumsum(counts)])
    picks = np.concatenate([np.arange(offsets[r], offsets[r + 1]) for r in rows])
    strain = rng.uniform(*DEFAULT_OPTIONS["strain_range"], n_phases)
    size_nm = 10 ** rng.uniform(*DEFAULT_OPTIONS["size_log10_nm_range"], n_phases)
    args = (new_offsets, two_theta[picks], intensity[picks], grid, strain, size_nm, 1.54184)
    broaden_phases(*args)  # warm-up: builds the table
    timings = {}
    for name, function in (("lut", broaden_phases), ("exact", broaden_phases_exact)):
        start = time.perf_counter()
        out = function(*args)
        timings[name] = (time.perf_counter() - start, np.asarray(out, dtype=np.float64))
    lut, exact = timings["lut"][1], timings["exact"][1]
    relative_l1 = np.abs(lut - exact).sum(axis=1) / np.abs(exact).sum(axis=1)
    return timings["exact"][0] / timings["lut"][0], float(relative_l1.max()), float(np.median(relative_l1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bank", default="results/banks/synthetic/multiphase.zarr")
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--block", type=int, default=1000)
    parser.add_argument("--phases", type=int, default=500, help="phases for the LUT-versus-exact comparison")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not os.path.isdir(args.bank):
        raise SystemExit(f"{args.bank}: no bank there; build one with: snakemake --cores 2 {args.bank}")
    grid = Grid(**zarr.open_group(args.bank, mode="r").attrs["grid"])
    print(f"bank {args.bank}: grid {grid.name} ({grid.n_bins} bins), all effects on, blocks of {args.block}")
    for workers in (1, 2):
        rate = mixtures_per_second(args.bank, args.samples, args.block, workers)
        print(f"  {workers} worker{'s' if workers > 1 else ' '}  {rate:10.0f} mixtures/s  ({args.samples} mixtures)")
    speedup, worst, median = lut_against_exact(args.bank, args.phases, args.seed)
    print(f"broadening of {args.phases} phases: look-up table {speedup:.1f}x faster than the exact renderer; "
          f"relative L1 max {worst:.4f}, median {median:.4f}")


if __name__ == "__main__":
    main()
