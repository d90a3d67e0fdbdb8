"""Training batches re-augmented on the fly: the stored samples with fresh effects per (sample, epoch, seed),
the same bytes whatever the worker count, the same labels as the store."""

import numpy as np
import pandas as pd
import pytest
import torch
import zarr
from conftest import build_bank, structures_table

from xrdbench.augment.datasets import build_dataset_split
from xrdbench.errors import ConfigError
from xrdbench.models import build_model
from xrdbench.simulate.grids import NAMED_GRIDS
from xrdbench.splits import build_splits
from xrdbench.train.data import ChunkShuffleSampler, ZarrBatches
from xrdbench.train.on_the_fly import OnTheFlyBatches, augment_rows
from xrdbench.train.trainer import _loader, batch_loader, train, train_options

GRID = NAMED_GRIDS["multiphase"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """The workflow's layout: results/banks/{source}/{grid}.zarr and results/datasets/toy/{split}.zarr."""
    results = tmp_path_factory.mktemp("results")
    table = structures_table(15)
    bank = build_bank(table, results / "banks" / "synthetic", GRID)
    splits = build_splits(table, fractions={"train": 0.6, "val": 0.4, "test": 0.0}, seed=0,
                          match_duplicates=False, progress=False)
    paths = {"bank": bank}
    for kind, split, n in (("mixture", "train", 20), ("mixture", "val", 8), ("clean", "train", None)):
        name = "toy" if kind == "mixture" else "clean"
        paths[name, split] = results / "datasets" / name / f"{split}.zarr"
        build_dataset_split(bank, splits, paths[name, split], name=name, split=split, progress=False,
                            options=dict(source="synthetic", grid=GRID.name, kind=kind, seed=0, chunk_rows=8,
                                         augment={}, splits={split: {"materials": [split], "n_samples": n}}),
                            dask_options={"scheduler": "synchronous"})
    return paths


def _epochs(loader, sampler, epochs=(0, 1)):
    out = []
    for epoch in epochs:
        sampler.set_epoch(epoch)
        out.append(list(loader))
    return out


def test_workers_do_not_change_the_bytes(stores):
    runs = {}
    for workers in (0, 2):
        loader, sampler = batch_loader(stores["toy", "train"], 4, shuffle=True, seed=1, num_workers=workers,
                                       augment=True)
        assert isinstance(loader.dataset, OnTheFlyBatches)
        runs[workers] = _epochs(loader, sampler)
    for serial, parallel in zip(runs[0], runs[2]):
        assert len(serial) == len(parallel) == 5
        for a, b in zip(serial, parallel):
            for name in ("x", "mask", "y", "k", "phase_weight", "index"):
                assert a[name].dtype == b[name].dtype and a[name].numpy().tobytes() == b[name].numpy().tobytes()
            assert all(torch.equal(a["targets"][t], b["targets"][t]) for t in a["targets"])


def test_rows_are_the_stored_samples_with_fresh_effects(stores):
    path = stores["toy", "train"]
    stored = zarr.open_group(str(path), mode="r")
    plain = ZarrBatches(path, batch_rows=4, tasks=("space_group", "crystal_system"))
    fresh = OnTheFlyBatches(path, batch_rows=4, tasks=("space_group", "crystal_system"), augment=True, seed=1)
    sampler = ChunkShuffleSampler(fresh, seed=1)
    by_epoch = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        x = np.zeros(stored["x"].shape, dtype=np.float32)
        for key in sampler:
            batch, reference = fresh[key], plain[key]
            assert set(batch) == set(reference) and set(batch["targets"]) == set(reference["targets"])
            for name in ("y", "k", "phase_weight", "index"):
                assert torch.equal(batch[name], reference[name]), name
                assert batch[name].dtype == reference[name].dtype
            for task in reference["targets"]:
                assert torch.equal(batch["targets"][task], reference["targets"][task]), task
            assert batch["x"].dtype == torch.float32 and batch["mask"].dtype == torch.float32
            assert batch["x"].shape == reference["x"].shape
            assert torch.equal(batch["x"] * (1 - batch["mask"]), torch.zeros_like(batch["x"]))
            x[batch["index"].numpy()] = batch["x"].numpy()
            again = fresh[key]  # the same key twice: the same bytes
            assert batch["x"].numpy().tobytes() == again["x"].numpy().tobytes()
        by_epoch.append(x)
    assert not np.isclose(by_epoch[0], stored["x"][:]).all(axis=1).any(), "every row re-augmented"
    assert not np.isclose(by_epoch[0], by_epoch[1]).all(axis=1).any(), "fresh effects every epoch"
    # a new dataset (a resumed run) serves the same bytes
    other = OnTheFlyBatches(path, batch_rows=4, tasks=("space_group",), augment=True, seed=1)
    key = next(iter(sampler))
    assert other[key]["x"].numpy().tobytes() == fresh[key]["x"].numpy().tobytes()
    # a plain index is epoch 0 of the dataset's run seed; another run seed draws other effects for the same rows
    seeded = OnTheFlyBatches(path, batch_rows=4, tasks=("space_group",), augment=True, seed=2)
    assert torch.equal(seeded[0]["index"], fresh[0]["index"])
    assert not np.isclose(seeded[0]["x"].numpy(), fresh[0]["x"].numpy()).all(axis=1).any()


def test_the_stored_seed_reproduces_the_stored_patterns(stores):
    """The phases, weights and effect streams are the store's: with its root seed, its x comes back."""
    path = stores["toy", "train"]
    stored = zarr.open_group(str(path), mode="r")
    dataset = OnTheFlyBatches(path, batch_rows=4, augment=True)
    bank = dataset._bank_arrays()
    rows = np.array([[bank["row"][m] if m else -1 for m in r] for r in stored["phase_material_id"][:].tolist()])
    x, mask = augment_rows(np.arange(len(rows)), rows, stored["phase_weight"][:], bank["sticks"], dataset.grid,
                           dataset.options, split="train", root_seed=0)
    np.testing.assert_allclose(x, stored["x"][:], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(mask, stored["mask"][:])


def test_overrides_switch_effects(stores):
    path = stores["toy", "train"]
    quiet = OnTheFlyBatches(path, batch_rows=4, augment={"noise": False, "baseline": False, "floor": False,
                                                         "window": False}, seed=1)
    batch = quiet[(0, (1, 0))]
    assert torch.equal(batch["mask"], torch.ones_like(batch["mask"]))
    noisy = OnTheFlyBatches(path, batch_rows=4, augment=True, seed=1)[(0, (1, 0))]
    assert not torch.equal(batch["x"], noisy["x"])
    with pytest.raises(ConfigError, match="unknown option"):
        OnTheFlyBatches(path, batch_rows=4, augment={"no_such_effect": True})
    with pytest.raises(ConfigError, match="kind 'clean'"):
        OnTheFlyBatches(stores["clean", "train"], batch_rows=4, augment=True)
    with pytest.raises(ConfigError, match="does not exist"):
        OnTheFlyBatches(path, batch_rows=4, augment=True, bank=path.parent / "nowhere.zarr")


def test_only_the_train_loader_augments_and_a_run_resumes(stores, tmp_path):
    # final_lr_factor 1: a flat rate after warmup, so steps=2 then steps=4 is a resume of steps=4
    options = train_options("multilabel_cnn", {"steps": 4, "eval_every": 2, "warmup_steps": 1, "batch_rows": 4,
                                               "lr": 1e-3, "final_lr_factor": 1.0, "num_workers": 2,
                                               "augment_on_the_fly": True})
    assert train_options("multilabel_cnn", {})["augment_on_the_fly"] is None

    def run(out, steps):
        torch.manual_seed(0)
        model = build_model("multilabel_cnn", preset="demo", two_theta_deg=GRID.two_theta_deg,
                            tasks={"space_group": 230})
        return model, train(model, stores["toy", "train"], stores["toy", "val"], out, dict(options, steps=steps),
                            device="cpu", progress=False)

    assert isinstance(_loader(stores["toy", "train"], options, True, 0, ("space_group",))[0].dataset,
                      OnTheFlyBatches)
    assert type(_loader(stores["toy", "val"], options, False, 0, ("space_group",))[0].dataset) is ZarrBatches
    straight, history = run(tmp_path / "straight", 4)
    assert list(history["step"]) == [2, 4] and np.isfinite(history["loss"]).all()
    run(tmp_path / "resumed", 2)
    resumed, _ = run(tmp_path / "resumed", 4)
    for name, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    assert list(pd.read_csv(tmp_path / "resumed" / "history.csv")["step"]) == [2, 4]


def test_an_epoch_counted_run_trains(stores, tmp_path):
    torch.manual_seed(0)
    model = build_model("mlp", preset="demo", two_theta_deg=GRID.two_theta_deg, tasks={"space_group": 230})
    options = train_options("mlp", {"epochs": 2, "batch_rows": 4, "lr": 1e-3, "input_scale": 1.0, "num_workers": 2,
                                    "augment_on_the_fly": {"noise": False}})
    history = train(model, stores["toy", "train"], stores["toy", "val"], tmp_path, options, progress=False)
    assert list(history["epoch"]) == [0, 1] and np.isfinite(history["loss_space_group"]).all()


def test_off_serves_the_store(stores):
    loader, _ = batch_loader(stores["toy", "train"], 4, augment=None)
    assert type(loader.dataset) is ZarrBatches
