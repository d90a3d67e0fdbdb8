"""A zarr-backed torch Dataset that serves chunk-aligned batches of a dataset split.

Each item is a whole batch: rows ``[i·b, (i+1)·b)`` with ``b`` dividing the store's
chunk size, so a batch never straddles two zarr chunks and one chunk decompression
serves ``chunk_rows / b`` consecutive batches. The store is opened lazily, inside
each DataLoader worker process (zarr handles must not cross a fork or a pickle).
Use it with ``batch_size=None`` and :class:`ChunkShuffleSampler`, whose keys
``(batch, epoch)`` also shuffle the rows inside each chunk, so that batches are not
the same groups of rows every epoch.
"""

from __future__ import annotations

import numpy as np
import torch
import zarr
from torch.utils.data import Dataset, Sampler

from xrdbench.symmetry.tables import SUPERCLASSES


class ZarrBatches(Dataset):
    """Batches of ``x`` (float32), ``mask`` and targets from ``results/datasets/{dataset}/{split}.zarr``.

    Targets: ``space_group`` as a 0-based class (group − 1) of the first phase, every
    superclass code stored in the split (−1 when K > 1), and the multi-hot ``y``; the
    multi-phase metrics' strata also get ``k`` (phases per sample) and ``phase_weight``.
    """

    def __init__(self, path: str, batch_rows: int, tasks: tuple[str, ...] = ("space_group", *SUPERCLASSES)):
        store = zarr.open_group(str(path), mode="r")
        self.path, self.tasks = str(path), tuple(tasks)
        self.n_rows = store["x"].shape[0]
        self.chunk_rows = store["x"].chunks[0]
        if self.chunk_rows % batch_rows:
            raise ValueError(f"batch_rows={batch_rows} must divide the store's chunk rows ({self.chunk_rows})")
        self.batch_rows = batch_rows
        self.attrs = dict(store.attrs)
        self._store = None
        self._cached: tuple[int, dict] | None = None

    def __len__(self) -> int:
        return -(-self.n_rows // self.batch_rows)

    @property
    def batches_per_chunk(self) -> int:
        return self.chunk_rows // self.batch_rows

    def _chunk(self, chunk: int) -> dict[str, np.ndarray]:
        if self._cached is None or self._cached[0] != chunk:
            if self._store is None:
                self._store = zarr.open_group(self.path, mode="r")
            rows = slice(chunk * self.chunk_rows, min((chunk + 1) * self.chunk_rows, self.n_rows))
            names = ["x", "mask", "y", "k", "phase_weight", "phase_space_group"]
            names += [t for t in self.tasks if t in SUPERCLASSES]
            self._cached = (chunk, {name: self._store[name][rows] for name in names})
        return self._cached[1]

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        """Batch ``key``: an index, in store order; or ``(index, (seed, epoch))``, whose rows are
        drawn from the index's chunk in an order fixed by (seed, epoch, chunk)."""
        index, shuffle = key if isinstance(key, tuple) else (key, None)
        chunk, position = divmod(index, self.batches_per_chunk)
        arrays = self._chunk(chunk)
        rows = np.arange(position * self.batch_rows, min((position + 1) * self.batch_rows, len(arrays["x"])))
        if shuffle is not None:
            order = np.random.default_rng([*shuffle, chunk]).permutation(len(arrays["x"]))
            rows = order[rows]
        batch = {"x": torch.from_numpy(arrays["x"][rows].astype(np.float32)),
                 "mask": torch.from_numpy(arrays["mask"][rows].astype(np.float32)),
                 "y": torch.from_numpy(arrays["y"][rows].astype(np.float32)),
                 "k": torch.from_numpy(arrays["k"][rows].astype(np.int64)),
                 "phase_weight": torch.from_numpy(arrays["phase_weight"][rows].astype(np.float32)),
                 "index": torch.from_numpy(chunk * self.chunk_rows + rows)}
        targets = {"space_group": torch.from_numpy(arrays["phase_space_group"][rows, 0].astype(np.int64) - 1)}
        for task in self.tasks:
            if task in SUPERCLASSES:
                targets[task] = torch.from_numpy(arrays[task][rows].astype(np.int64))
        batch["targets"] = {task: targets[task] for task in self.tasks}
        return batch


class ChunkShuffleSampler(Sampler):
    """Batch keys with the chunks in a seeded random order and each chunk's batches together.

    Keeps the one-chunk cache of :class:`ZarrBatches` hot while still shuffling the
    data between epochs: shuffled keys are ``(index, (seed, epoch))``, which also deal
    each chunk's rows into new batches. The order depends only on (seed, epoch).
    """

    def __init__(self, dataset: ZarrBatches, seed: int, shuffle: bool = True):
        self.n_batches, self.per_chunk = len(dataset), dataset.batches_per_chunk
        self.seed, self.shuffle, self.epoch = seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self):
        n_chunks = -(-self.n_batches // self.per_chunk)
        order = np.random.default_rng([self.epoch, self.seed]).permutation(n_chunks) if self.shuffle \
            else np.arange(n_chunks)
        for chunk in order:
            for index in range(chunk * self.per_chunk, min((chunk + 1) * self.per_chunk, self.n_batches)):
                yield (int(index), (self.seed, self.epoch)) if self.shuffle else int(index)
