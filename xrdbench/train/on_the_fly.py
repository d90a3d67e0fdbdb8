"""Training batches re-augmented on the fly: the stored samples, fresh effects every epoch.

:class:`OnTheFlyBatches` serves the same rows as :class:`~xrdbench.train.data.ZarrBatches`
(same keys, same order, same phases, weights, labels and targets) but replaces each
row's ``x`` and ``mask`` by a new augmentation of its phases, rendered from the bank's
stick lists with :func:`~xrdbench.augment.pipeline.augment_batch` inside the DataLoader
worker that serves the batch.

The parameters of sample ``i`` in data epoch ``e`` of a run seeded ``s`` come from the
stream ``default_rng([i, split_id(split), r])`` of
:func:`~xrdbench.augment.sampling.sample_mixture_parameters`, with
``r = SeedSequence([dataset seed, s, e, 1]).generate_state(1, uint64)[0]``: they depend on
nothing else, so the batch order, the worker count and a resume never change the bytes.
The phases (the stored ``phase_material_id``, looked up in the bank) and their weights
(the stored ``phase_weight``) are kept; every other parameter (orientation, broadening,
shift, instrument, window, background, noise) is drawn afresh. Drawing with the stored
``(split_id, dataset seed)`` instead reproduces the stored ``x`` (up to the weights'
float32 rounding): :func:`augment_rows` with ``root_seed`` = the dataset's seed.

The bank is found by the trainer option ``augment_bank`` or, when that is null, next
to the dataset as the workflow lays them out: ``results/datasets/{dataset}/{split}.zarr``
was built from ``results/banks/{source}/{grid}.zarr``. Its attributes must equal those the
dataset recorded. The bank is read lazily, once per process (zarr handles never cross a
fork or a pickle).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import zarr

from xrdbench.augment.datasets import bank_arrays, split_id
from xrdbench.augment.pipeline import augment_batch
from xrdbench.augment.sampling import MAX_PHASES, resolve_options, sample_mixture_parameters
from xrdbench.errors import ConfigError
from xrdbench.simulate.grids import Grid
from xrdbench.symmetry.tables import SUPERCLASSES
from xrdbench.train.data import ZarrBatches

__all__ = ["OnTheFlyBatches", "augment_options", "augment_rows", "bank_path", "epoch_root_seed"]

#: Sampling overrides that make every slot draw its own parameters (the phases and weights are then
#: replaced by the stored ones; the stream layout, hence every other draw, does not depend on these).
_ALL_SLOTS = {"k_probabilities": [0.0] * (MAX_PHASES - 1) + [1.0], "min_phase_weight": 0.0}


def augment_options(attrs: Mapping, setting) -> dict:
    """The effect options of a dataset re-augmented with trainer option ``augment_on_the_fly`` = ``setting``:
    ``True`` → the options the dataset was built with; a mapping → those, overridden by its keys."""
    options = dict(attrs["options"])
    if options.get("kind") not in ("single_phase", "mixture"):
        raise ConfigError(f"train.augment_on_the_fly: dataset {attrs.get('dataset')!r} is of kind "
                          f"{options.get('kind')!r}; only single_phase and mixture datasets record the "
                          "augmentation to redo (define a single_phase dataset to augment clean patterns)")
    if setting is True:
        overrides = {}
    elif isinstance(setting, Mapping):
        overrides = dict(setting)
    else:
        raise ConfigError(f"train.augment_on_the_fly must be null, a boolean or a mapping of augment options, "
                          f"got {setting!r}")
    merged = {**dict(options.get("augment") or {}), **overrides}
    resolve_options(merged)  # unknown keys or impossible values fail here, in the main process
    return merged


def bank_path(split_path, attrs: Mapping, explicit=None) -> Path:
    """The bank a dataset split was built from: ``explicit``, else the workflow's layout next to the split."""
    if explicit:
        return Path(explicit)
    options = attrs["options"]
    if not (options.get("source") and options.get("grid")):
        raise ConfigError(f"{split_path}: the dataset records no source/grid; set train.augment_bank to its bank")
    return Path(split_path).resolve().parents[2] / "banks" / options["source"] / f"{options['grid']}.zarr"


def _plain(value):
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def epoch_root_seed(dataset_seed: int, seed: int, epoch: int) -> int:
    """The root seed of data epoch ``epoch`` of a run seeded ``seed`` (the third entry of each sample's seed)."""
    return int(np.random.SeedSequence([int(dataset_seed), int(seed), int(epoch), 1]).generate_state(1, np.uint64)[0])


def augment_rows(sample_index, phase_rows, phase_weight, sticks, grid: Grid, options: Mapping, *, split: str,
                 root_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x, mask)`` of samples ``sample_index`` (B,) made of the bank rows ``phase_rows`` (B, 5; −1 empty)
    in proportions ``phase_weight`` (B, 5), with effects drawn from ``[i, split_id(split), root_seed]``."""
    params = sample_mixture_parameters(sample_index, split_id(split), root_seed, MAX_PHASES,
                                       {**options, **_ALL_SLOTS})
    present = np.asarray(phase_rows) >= 0
    params["phase_index"] = np.asarray(phase_rows, dtype=np.int64)
    params["weight"] = np.where(present, phase_weight, 0.0)
    params["k"] = present.sum(axis=1)
    # neutral values in empty slots, as sample_mixture_parameters leaves them
    for name in ("orientation_applied", "orientation_strength", "strain", "size_nm"):
        params[name] = np.where(present, params[name], np.zeros((), params[name].dtype))
    params["orientation_coefficients"] = np.where(present[..., None], params["orientation_coefficients"], 0.0)
    return augment_batch(sticks, params, grid, options)


class OnTheFlyBatches(ZarrBatches):
    """:class:`ZarrBatches` whose ``x`` and ``mask`` are re-augmented from the bank for each (sample, epoch).

    Keys as ZarrBatches takes them: ``(index, (seed, epoch))`` from a shuffling
    :class:`~xrdbench.train.data.ChunkShuffleSampler`, or a plain index (epoch 0 of ``seed``).
    ``augment`` is the trainer option ``augment_on_the_fly`` (``True`` or a mapping of overrides).
    """

    def __init__(self, path: str, batch_rows: int, tasks: tuple[str, ...] = ("space_group", *SUPERCLASSES), *,
                 augment=True, bank=None, seed: int = 0):
        super().__init__(path, batch_rows, tasks)
        self.options = augment_options(self.attrs, augment)
        self.bank_path = str(bank_path(path, self.attrs, bank))
        if not Path(self.bank_path).exists():
            raise ConfigError(f"train.augment_on_the_fly: bank {self.bank_path} of {path} does not exist "
                              "(set train.augment_bank)")
        if _plain(dict(zarr.open_group(self.bank_path, mode="r").attrs)) != _plain(self.attrs["bank"]):
            raise ConfigError(f"train.augment_on_the_fly: {self.bank_path} is not the bank {path} was built from "
                              "(its attributes differ from those the dataset recorded)")
        self.grid = Grid(**self.attrs["grid"])
        self.split, self.dataset_seed, self.seed = self.attrs["split"], int(self.attrs["options"]["seed"]), seed
        self._bank: dict | None = None
        self._pid = os.getpid()

    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(_store=None, _cached=None, _bank=None)
        return state

    def _own_handles(self) -> None:
        """Drop handles and caches inherited from another process (a forked DataLoader worker)."""
        if self._pid != os.getpid():
            self._store, self._cached, self._bank, self._pid = None, None, None, os.getpid()

    def _bank_arrays(self) -> dict:
        if self._bank is None:
            arrays = bank_arrays(str(self.bank_path))  # the datasets stage's per-process cache
            self._bank = {"sticks": (arrays["stick_offsets"], arrays["stick_two_theta_deg"], arrays["stick_intensity"]),
                          "row": {material: row for row, material in enumerate(arrays["material_id"].tolist())}}
        return self._bank

    def _chunk(self, chunk: int) -> dict[str, np.ndarray]:
        self._own_handles()
        arrays = super()._chunk(chunk)
        if "phase_material_id" not in arrays:
            rows = slice(chunk * self.chunk_rows, min((chunk + 1) * self.chunk_rows, self.n_rows))
            arrays["phase_material_id"] = self._store["phase_material_id"][rows]
        return arrays

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        seed, epoch = key[1] if isinstance(key, tuple) else (self.seed, 0)
        batch = super().__getitem__(key)
        index = batch["index"].numpy()
        chunk = int(index[0]) // self.chunk_rows
        arrays = self._chunk(chunk)
        local = index - chunk * self.chunk_rows
        bank = self._bank_arrays()
        ids = arrays["phase_material_id"][local]
        try:
            phase_rows = np.array([[bank["row"][m] if m else -1 for m in row] for row in ids.tolist()],
                                  dtype=np.int64)
        except KeyError as missing:
            raise ConfigError(f"{self.path}: material {missing} is not in the bank {self.bank_path}") from None
        x, mask = augment_rows(index, phase_rows, arrays["phase_weight"][local], bank["sticks"], self.grid,
                               self.options, split=self.split,
                               root_seed=epoch_root_seed(self.dataset_seed, seed, epoch))
        batch["x"] = torch.from_numpy(x)
        batch["mask"] = torch.from_numpy(mask.astype(np.float32))
        return batch
