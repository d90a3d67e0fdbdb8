"""Datasets: augmented and mixed patterns, built with dask into chunked zarr stores.

A dataset split (``results/datasets/{dataset}/{split}.zarr``) is N samples drawn
from the materials of one or more material splits of a bank. Rows are built in
chunk-aligned blocks by ``dask.array.map_blocks``; each block samples its own
parameters from per-sample random streams (``default_rng([sample_index,
split_id, root_seed])``) and writes its rows straight into zarr arrays created
beforehand with the same chunk grid. The output is therefore byte-identical
whatever the chunk size of the computation, the scheduler or the worker count.

Store layout, N samples on a grid of L bins, P = 5 phase slots:

- ``x`` (N, L) float32 and ``mask`` (N, L) uint8 (1 where the bin was measured);
- ``y`` (N, 230) uint8: multi-hot over space groups 1–230 (column g−1);
- ``k`` (N,) int8 phases; ``phase_space_group`` (N, P) int16 (0 = empty slot),
  ``phase_material_id`` (N, P) str ("" = empty), ``phase_weight`` (N, P) float32;
- one (N,) int16 array per superclass with the class index of
  :func:`xrdbench.symmetry.superclass_index` when K = 1, −1 otherwise;
- ``params/<name>``: every sampled augmentation parameter, for audit;
- attributes: grid, wavelength, dataset options, config hash, package versions,
  and the bank's own attributes under ``bank``.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import asdict
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import zarr

from xrdbench.atomic import atomic_path
from xrdbench.augment.sampling import MAX_PHASES
from xrdbench.config import deep_merge
from xrdbench.errors import ConfigError
from xrdbench.provenance import config_hash, package_versions
from xrdbench.simulate.grids import Grid
from xrdbench.symmetry.tables import SUPERCLASSES, superclass_index

N_SPACE_GROUPS = 230


def split_id(name: str) -> int:
    """A stable integer for a dataset split name, the second entry of every sample's seed."""
    return zlib.crc32(name.encode())


def check_chunk_alignment(dask_chunks: tuple[int, ...], zarr_chunk_rows: int, n_rows: int) -> None:
    """Refuse a row blocking that does not coincide with the store's chunk grid.

    Two writers sharing a zarr chunk overwrite each other's rows (with dask's
    ``to_zarr`` in this stack, silently): every block must start on a chunk
    boundary and span whole chunks, except the last.
    """
    starts = np.cumsum((0,) + tuple(dask_chunks))[:-1]
    if sum(dask_chunks) != n_rows or any(start % zarr_chunk_rows for start in starts):
        raise ValueError(f"row blocks {dask_chunks} are not aligned to zarr chunks of {zarr_chunk_rows} rows")


# ---------------------------------------------------------------- the pool: which bank rows a split draws from


def material_pool(bank: zarr.Group, splits: pd.DataFrame, material_splits: list[str], balanced: bool) -> np.ndarray:
    """Bank row indices of the materials feeding a dataset split, in material-id order.

    ``material_splits`` names material splits (``train``, ``val``, ``test``) or
    ``in_library`` (the training materials reserved for in-library evaluation).
    """
    chosen = pd.Series(False, index=splits.index)
    for name in material_splits:
        chosen |= splits["in_library"] if name == "in_library" else splits["split"] == name
    if balanced:
        chosen &= splits["balanced"]
    wanted = set(splits.loc[chosen, "id"])
    ids = bank["material_id"][:]
    rows = np.array([row for row, material in enumerate(ids) if material in wanted], dtype=np.int64)
    return rows[np.argsort(ids[rows], kind="stable")]


@functools.lru_cache(maxsize=4)
def bank_arrays(bank_path: str) -> dict[str, np.ndarray]:
    """The small per-row arrays of a bank, loaded once per worker process."""
    bank = zarr.open_group(bank_path, mode="r")
    names = ["stick_offsets", "stick_two_theta_deg", "stick_intensity", "material_id", "space_group", *SUPERCLASSES]
    return {name: bank[name][:] for name in names}


# ---------------------------------------------------------------- one block of rows


def _labels(arrays: dict, pool: np.ndarray, phase_index: np.ndarray, weight: np.ndarray) -> dict[str, np.ndarray]:
    n = len(phase_index)
    present = phase_index >= 0
    rows = np.where(present, pool[np.clip(phase_index, 0, None)], 0)
    space_group = np.where(present, arrays["space_group"][rows], 0).astype(np.int16)
    y = np.zeros((n, N_SPACE_GROUPS), dtype=np.uint8)
    sample, slot = np.nonzero(present)
    y[sample, space_group[sample, slot] - 1] = 1
    k = present.sum(axis=1).astype(np.int8)
    labels = dict(y=y, k=k, phase_space_group=space_group,
                  phase_material_id=np.where(present, arrays["material_id"][rows], "").astype(object),
                  phase_weight=np.where(present, weight, 0).astype(np.float32))
    for name in SUPERCLASSES:
        index = superclass_index(name)
        codes = np.array([index[value] for value in arrays[name][rows[:, 0]]], dtype=np.int16)
        labels[name] = np.where(k == 1, codes, -1).astype(np.int16)
    return labels


def build_block(sample_index: np.ndarray, *, bank_path: str, pool: np.ndarray, grid: Grid, options: dict,
                split: str) -> dict[str, np.ndarray]:
    """Every array of the rows ``sample_index``: inputs, mask, labels and sampled parameters."""
    arrays = bank_arrays(bank_path)
    n = len(sample_index)
    if options["kind"] == "clean":
        # Clean single-phase patterns, one per material, as the XRDecoupler paper uses them.
        bank = zarr.open_group(bank_path, mode="r")
        rows = pool[sample_index]
        order = np.argsort(rows, kind="stable")
        x = np.empty((n, grid.n_bins), dtype=np.float32)
        x[order] = bank["intensity"].get_orthogonal_selection((rows[order], slice(None)))
        mask = np.ones_like(x, dtype=np.uint8)
        phase_index = np.full((n, MAX_PHASES), -1, dtype=np.int64)
        phase_index[:, 0] = sample_index
        weight = np.zeros((n, MAX_PHASES), dtype=np.float32)
        weight[:, 0] = 1.0
        params = {}
    else:
        from xrdbench.augment.pipeline import augment_batch
        from xrdbench.augment.sampling import sample_mixture_parameters

        params = sample_mixture_parameters(sample_index, split_id(split), options["seed"], len(pool),
                                           options["augment"])
        if options["kind"] == "single_phase":
            # One sample per material, in material order, alone; only the effects are random.
            params["k"][:] = 1
            params["phase_index"][:] = -1
            params["phase_index"][:, 0] = sample_index % len(pool)
            params["weight"][:] = 0.0
            params["weight"][:, 0] = 1.0
        offsets = arrays["stick_offsets"]
        sticks = (offsets, arrays["stick_two_theta_deg"], arrays["stick_intensity"])
        x, mask = augment_batch(sticks, _pool_params(params, pool), grid, options["augment"])
        phase_index, weight = params["phase_index"], params["weight"]
    return dict(x=x, mask=mask, **_labels(arrays, pool, phase_index, weight),
                **{f"params/{name}": value for name, value in params.items() if name not in ("phase_index",
                                                                                             "weight")})


def _pool_params(params: dict, pool: np.ndarray) -> dict:
    """Parameters with phase indices translated from pool positions to bank rows."""
    translated = dict(params)
    index = params["phase_index"]
    translated["phase_index"] = np.where(index >= 0, pool[np.clip(index, 0, None)], -1)
    return translated


def _write_block(sample_index: np.ndarray, *, store_path: str, **kwargs) -> np.ndarray:
    arrays = build_block(sample_index, **kwargs)
    store = zarr.open_group(store_path, mode="r+")
    rows = slice(int(sample_index[0]), int(sample_index[-1]) + 1)
    for name, value in arrays.items():
        store[name][rows] = value
    return np.ones(1, dtype=np.int64)


# ---------------------------------------------------------------- the whole split


def _create_arrays(group: zarr.Group, template: dict[str, np.ndarray], n_rows: int, chunk_rows: int) -> None:
    for name, value in template.items():
        shape = (n_rows,) + value.shape[1:]
        chunks = (chunk_rows,) + value.shape[1:]
        if value.dtype == object or value.dtype.kind in "US":
            group.create_array(name, shape=shape, chunks=chunks, dtype=str)
        else:
            group.create_array(name, shape=shape, chunks=chunks, dtype=value.dtype, fill_value=0)


def dask_scheduler(options: dict):
    """A context for dask's scheduler from the ``dask`` config section.

    ``scheduler_address`` or ``scheduler_file`` connect to an existing
    dask.distributed cluster; otherwise ``scheduler`` picks threads, processes or
    synchronous with ``workers`` workers.
    """
    if options.get("scheduler_address") or options.get("scheduler_file"):
        from distributed import Client

        return Client(address=options.get("scheduler_address"), scheduler_file=options.get("scheduler_file"))
    return dask.config.set(scheduler=options.get("scheduler", "threads"), num_workers=options.get("workers"))


def build_dataset_split(bank_path: str | Path, splits: pd.DataFrame, out_path: str | Path, *, name: str,
                        split: str, options: dict, dask_options: dict, block_rows: int | None = None,
                        progress: bool = True) -> int:
    """Build one dataset split into ``out_path`` (atomically); return its number of samples.

    ``options`` is the dataset's config: ``kind`` (``clean``, ``single_phase`` or
    ``mixture``), ``splits[split]`` (its material splits, sample count, balanced
    flag), ``seed``, ``chunk_rows`` and ``augment`` (the effect options).
    ``block_rows`` (a multiple of ``chunk_rows``) sets the dask block size; it
    changes the schedule, never the bytes.
    """
    bank = zarr.open_group(str(bank_path), mode="r")
    grid = Grid(**bank.attrs["grid"])
    if options["kind"] != "clean" and bank.attrs.get("wavelength_angstrom"):
        # The Scherrer width must use the wavelength the bank's patterns were simulated with.
        options = deep_merge(options, {"augment": {"wavelength_angstrom": bank.attrs["wavelength_angstrom"]}})
    spec = options["splits"][split]
    pool = material_pool(bank, splits, spec["materials"], spec.get("balanced", False))
    if len(pool) == 0:
        raise ConfigError(f"datasets.{name}.splits.{split}: no material of {spec['materials']} is in {bank_path}")
    n_samples = len(pool) if options["kind"] != "mixture" or spec.get("n_samples") is None else spec["n_samples"]
    if options["kind"] != "mixture" and spec.get("n_samples") is not None:
        n_samples = min(n_samples, spec["n_samples"])
    chunk_rows = int(options["chunk_rows"])
    block_rows = block_rows or chunk_rows
    if block_rows % chunk_rows:
        raise ValueError(f"block_rows={block_rows} must be a multiple of chunk_rows={chunk_rows}")

    block_kwargs = dict(bank_path=str(bank_path), pool=pool, grid=grid, options=options, split=split)
    template = build_block(np.arange(min(2, n_samples)), **block_kwargs)
    with atomic_path(out_path) as tmp:
        group = zarr.open_group(str(tmp), mode="w")
        _create_arrays(group, template, n_samples, chunk_rows)
        group.attrs.update(dict(dataset=name, split=split, grid=asdict(grid), n_pool=int(len(pool)),
                                wavelength_angstrom=bank.attrs.get("wavelength_angstrom"),
                                options=options, config_hash=config_hash(options), versions=package_versions(),
                                bank=dict(bank.attrs), superclasses={s: list(superclass_index(s))
                                                                     for s in SUPERCLASSES}))
        indices = da.arange(n_samples, chunks=block_rows, dtype=np.int64)
        check_chunk_alignment(indices.chunks[0], chunk_rows, n_samples)
        written = indices.map_blocks(_write_block, store_path=str(tmp), dtype=np.int64, chunks=(1,),
                                     **block_kwargs)
        with dask_scheduler(dask_options):
            if progress:
                from dask.diagnostics import ProgressBar

                with ProgressBar(minimum=1):
                    written.compute()
            else:
                written.compute()
    return n_samples
