"""Dataset builds: dask over chunk-aligned blocks into zarr, byte-identical whatever the schedule."""

from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import build_bank, structures_table

from xrdbench.augment.datasets import build_dataset_split, check_chunk_alignment, material_pool
from xrdbench.config import deep_merge
from xrdbench.errors import ConfigError
from xrdbench.simulate.grids import NAMED_GRIDS
from xrdbench.splits import build_splits
from xrdbench.symmetry import SUPERCLASSES

FRACTIONS = {"train": 0.5, "val": 0.25, "test": 0.25}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A real bank on the multiphase grid, its split table, and the schema's augment defaults."""
    directory = tmp_path_factory.mktemp("bank")
    table = structures_table(24)
    bank = build_bank(table, directory, NAMED_GRIDS["multiphase"])
    splits = build_splits(table, fractions=FRACTIONS, seed=0, match_duplicates=False, balanced_per_group=2,
                          progress=False)
    return bank, splits


def augment_defaults(repo_root: Path) -> dict:
    from snakemake.utils import validate

    config = {}
    validate(config, str(repo_root / "workflow" / "schemas" / "config.schema.yaml"))
    return config["augment"]


def mixture_options(repo_root, **override) -> dict:
    options = dict(kind="mixture", seed=3, chunk_rows=16, augment=augment_defaults(repo_root),
                   splits={"train": {"materials": ["train"], "n_samples": 100},
                           "in_library": {"materials": ["in_library"], "n_samples": 30}})
    return deep_merge(options, override)


def store_bytes(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


def build(world, out, options, split="train", dask_options=None, block_rows=None):
    bank, splits = world
    return build_dataset_split(bank, splits, out, name="test", split=split, options=options,
                               dask_options=dask_options or {"scheduler": "threads", "workers": 2},
                               block_rows=block_rows, progress=False)


def test_clean_dataset_is_the_bank_rows_of_the_split(world, tmp_path):
    bank_path, splits = world
    options = dict(kind="clean", seed=0, chunk_rows=4, augment={}, splits={"test": {"materials": ["test"]}})
    n = build(world, tmp_path / "test.zarr", options, split="test")
    store, bank = zarr.open_group(str(tmp_path / "test.zarr"), mode="r"), zarr.open_group(str(bank_path), mode="r")
    test_ids = sorted(splits.loc[splits["split"] == "test", "id"])
    assert n == len(test_ids) and list(store["phase_material_id"][:, 0]) == test_ids
    rows = [list(bank["material_id"][:]).index(material) for material in test_ids]
    np.testing.assert_array_equal(store["x"][:], bank["intensity"][:][rows])
    assert (store["mask"][:] == 1).all() and (store["k"][:] == 1).all()
    y = store["y"][:]
    assert (y.sum(axis=1) == 1).all()
    assert (y.argmax(axis=1) + 1 == bank["space_group"][:][rows]).all()
    for name in SUPERCLASSES:
        assert (store[name][:] >= 0).all()
    assert store.attrs["grid"]["n_bins"] == 2048


def test_balanced_subset_and_empty_pool(world, tmp_path):
    bank_path, splits = world
    bank = zarr.open_group(str(bank_path), mode="r")
    balanced = material_pool(bank, splits, ["train"], balanced=True)
    assert len(balanced) == splits.loc[(splits["split"] == "train") & splits["balanced"]].shape[0] > 0
    options = dict(kind="clean", seed=0, chunk_rows=4, augment={}, splits={"test": {"materials": ["test"]}})
    empty = splits.assign(split="train")
    with pytest.raises(ConfigError, match="datasets.test.splits.test"):
        build_dataset_split(bank_path, empty, tmp_path / "x.zarr", name="test", split="test", options=options,
                            dask_options={}, progress=False)
    assert not (tmp_path / "x.zarr").exists()


def test_misaligned_blocks_are_refused():
    check_chunk_alignment((16, 16, 5), 16, 37)
    with pytest.raises(ValueError, match="not aligned"):
        check_chunk_alignment((10, 27), 16, 37)
    with pytest.raises(ValueError, match="not aligned"):
        check_chunk_alignment((16, 16), 16, 37)


def test_mixture_store_layout_and_labels(world, tmp_path, repo_root):
    build(world, tmp_path / "train.zarr", mixture_options(repo_root))
    store = zarr.open_group(str(tmp_path / "train.zarr"), mode="r")
    bank_path, splits = world
    train = set(splits.loc[splits["split"] == "train", "id"])
    x, mask, y, k = store["x"][:], store["mask"][:], store["y"][:], store["k"][:]
    assert x.shape == mask.shape == (100, 2048) and x.dtype == np.float32
    assert np.isfinite(x).all() and (x >= 0).all() and (x[mask == 0] == 0).all()
    ids, weights, groups = store["phase_material_id"][:], store["phase_weight"][:], store["phase_space_group"][:]
    for row in range(100):
        present = ids[row][ids[row] != ""]
        assert len(present) == k[row] and set(present) <= train and len(set(present)) == k[row]
        assert np.isclose(weights[row].sum(), 1.0, atol=1e-5) and (weights[row][:k[row]] >= 0.03 - 1e-6).all()
        assert set(np.flatnonzero(y[row]) + 1) == set(groups[row][:k[row]])
    single = k == 1
    assert (store["crystal_system"][:][~single] == -1).all() and (store["crystal_system"][:][single] >= 0).all()
    assert len(store["params"]) > 0


def test_same_bytes_for_any_block_size_and_scheduler(world, tmp_path, repo_root):
    options = mixture_options(repo_root)
    build(world, tmp_path / "reference.zarr", options, dask_options={"scheduler": "synchronous"})
    reference = store_bytes(tmp_path / "reference.zarr")
    build(world, tmp_path / "blocks.zarr", options, block_rows=48, dask_options={"scheduler": "threads",
                                                                                  "workers": 2})
    build(world, tmp_path / "processes.zarr", options, dask_options={"scheduler": "processes", "workers": 2})
    assert store_bytes(tmp_path / "blocks.zarr") == reference
    assert store_bytes(tmp_path / "processes.zarr") == reference
    other_chunks = mixture_options(repo_root, chunk_rows=8)
    build(world, tmp_path / "chunks.zarr", other_chunks)
    for name in ("x", "mask", "y", "phase_weight"):
        np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "chunks.zarr"), mode="r")[name][:],
                                      zarr.open_group(str(tmp_path / "reference.zarr"), mode="r")[name][:])


def test_local_cluster_gives_the_same_bytes(world, tmp_path, repo_root):
    from distributed import LocalCluster

    options = mixture_options(repo_root)
    build(world, tmp_path / "reference.zarr", options, dask_options={"scheduler": "synchronous"})
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                      processes=True) as cluster:
        build(world, tmp_path / "cluster.zarr", options, dask_options={"scheduler_address": cluster.scheduler_address})
    assert store_bytes(tmp_path / "cluster.zarr") == store_bytes(tmp_path / "reference.zarr")


def test_seed_and_split_change_the_samples(world, tmp_path, repo_root):
    build(world, tmp_path / "a.zarr", mixture_options(repo_root))
    build(world, tmp_path / "b.zarr", mixture_options(repo_root, seed=4))
    a, b = (zarr.open_group(str(tmp_path / n), mode="r")["x"][:] for n in ("a.zarr", "b.zarr"))
    assert not np.array_equal(a, b)


def test_single_phase_kind_augments_each_material_once_in_order(world, tmp_path, repo_root):
    bank_path, splits = world
    options = mixture_options(repo_root, kind="single_phase",
                              splits={"train": {"materials": ["train"], "n_samples": None}})
    n = build(world, tmp_path / "single.zarr", options)
    store = zarr.open_group(str(tmp_path / "single.zarr"), mode="r")
    train_ids = sorted(splits.loc[splits["split"] == "train", "id"])
    assert n == len(train_ids)
    assert list(store["phase_material_id"][:, 0]) == train_ids
    assert (store["k"][:] == 1).all() and (store["phase_weight"][:, 0] == 1).all()
    assert (store["phase_material_id"][:, 1:] == "").all()
    assert (store["crystal_system"][:] >= 0).all()
