"""The zarr-backed batches: chunk-aligned, complete, opened per worker, deterministic order."""

import numpy as np
import pytest
import torch
import zarr
from conftest import build_bank, structures_table
from torch.utils.data import DataLoader

from xrdbench.augment.datasets import build_dataset_split
from xrdbench.simulate.grids import NAMED_GRIDS
from xrdbench.splits import build_splits
from xrdbench.train.data import ChunkShuffleSampler, ZarrBatches


@pytest.fixture(scope="module")
def split_store(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    table = structures_table(30)
    bank = build_bank(table, directory, NAMED_GRIDS["multiphase"])
    splits = build_splits(table, fractions={"train": 1.0, "val": 0.0, "test": 0.0}, seed=0,
                          match_duplicates=False, progress=False)
    out = directory / "train.zarr"
    build_dataset_split(bank, splits, out, name="toy", split="train", progress=False,
                        options=dict(kind="clean", seed=0, chunk_rows=8, augment={},
                                     splits={"train": {"materials": ["train"]}}),
                        dask_options={"scheduler": "synchronous"})
    return out


def test_batches_cover_every_row_once_in_workers(split_store):
    dataset = ZarrBatches(split_store, batch_rows=4)
    sampler = ChunkShuffleSampler(dataset, seed=1)
    loader = DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=2)
    seen = torch.cat([batch["index"] for batch in loader])
    assert sorted(seen.tolist()) == list(range(30))
    store = zarr.open_group(str(split_store), mode="r")
    for batch in DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=0):
        rows = batch["index"].numpy()
        np.testing.assert_array_equal(batch["x"].numpy(), store["x"][:][rows])
        assert (batch["targets"]["space_group"].numpy() + 1 == store["phase_space_group"][:][rows, 0]).all()
        assert len(set(rows // dataset.chunk_rows)) == 1, "a batch never straddles two chunks"


def test_epochs_deal_rows_into_new_batches(split_store):
    dataset = ZarrBatches(split_store, batch_rows=4)
    sampler = ChunkShuffleSampler(dataset, seed=1)
    batches = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        batches.append({frozenset(dataset[key]["index"].tolist()) for key in sampler})
    assert batches[0] != batches[1]
    unshuffled = ChunkShuffleSampler(dataset, seed=1, shuffle=False)
    assert [dataset[key]["index"].tolist() for key in unshuffled] == [list(range(i, min(i + 4, 30)))
                                                                      for i in range(0, 30, 4)]


def test_order_depends_only_on_seed_and_epoch(split_store):
    dataset = ZarrBatches(split_store, batch_rows=4)
    first, again, other = (ChunkShuffleSampler(dataset, seed=s) for s in (1, 1, 2))
    assert list(first) == list(again)
    assert list(other) != list(again)
    first.set_epoch(1)
    assert list(first) != list(again)
    chunks = [index // dataset.batches_per_chunk for index, _ in again]
    runs = [chunk for j, chunk in enumerate(chunks) if j == 0 or chunk != chunks[j - 1]]
    assert len(runs) == len(set(runs)), "each chunk's batches come together"


def test_batch_rows_must_divide_chunks(split_store):
    with pytest.raises(ValueError, match="must divide"):
        ZarrBatches(split_store, batch_rows=3)
