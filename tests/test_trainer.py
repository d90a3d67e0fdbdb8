"""The shared trainer: deterministic, resumable to the same weights, MGDA for multi-head models."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import build_bank, structures_table

from xrdbench.augment.datasets import build_dataset_split
from xrdbench.errors import ConfigError
from xrdbench.models import build_model
from xrdbench.simulate.grids import NAMED_GRIDS
from xrdbench.splits import build_splits
from xrdbench.train.trainer import lr_factor, train, train_options

GRID = NAMED_GRIDS["multiphase"]


@pytest.fixture(scope="module")
def splits_on_disk(tmp_path_factory):
    directory = tmp_path_factory.mktemp("trainer")
    table = structures_table(24)
    bank = build_bank(table, directory, GRID)
    splits = build_splits(table, fractions={"train": 0.75, "val": 0.25, "test": 0.0}, seed=0,
                          match_duplicates=False, progress=False)
    paths = {}
    for split in ("train", "val"):
        paths[split] = directory / f"{split}.zarr"
        build_dataset_split(bank, splits, paths[split], name="toy", split=split, progress=False,
                            options=dict(kind="clean", seed=0, chunk_rows=8, augment={},
                                         splits={split: {"materials": [split]}}),
                            dask_options={"scheduler": "synchronous"})
    return paths


def _mlp():
    torch.manual_seed(0)
    return build_model("mlp", preset="demo", two_theta_deg=GRID.two_theta_deg, tasks={"space_group": 230})


def test_resume_gives_the_same_weights(splits_on_disk, tmp_path):
    options = train_options("mlp", {"epochs": 3, "batch_rows": 4, "lr": 1e-3})
    straight = _mlp()
    train(straight, splits_on_disk["train"], splits_on_disk["val"], tmp_path / "straight", options, progress=False)

    interrupted = _mlp()
    train(interrupted, splits_on_disk["train"], splits_on_disk["val"], tmp_path / "resumed", dict(options, epochs=2),
          progress=False)
    resumed = _mlp()  # a fresh process would build the model anew, then load last.pt
    history = train(resumed, splits_on_disk["train"], splits_on_disk["val"], tmp_path / "resumed", options,
                    progress=False)
    for name, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    assert list(history["epoch"]) == [0, 1, 2]
    written = pd.read_csv(tmp_path / "resumed" / "history.csv")
    assert list(written.columns[:2]) == ["epoch", "lr"] and "loss_space_group" in written
    assert (tmp_path / "resumed" / "best.pt").exists()


def test_training_reduces_the_loss(splits_on_disk, tmp_path):
    history = train(_mlp(), splits_on_disk["train"], splits_on_disk["val"], tmp_path,
                    train_options("mlp", {"epochs": 8, "batch_rows": 4, "lr": 3e-3}), progress=False)
    assert history["loss_space_group"].iloc[-1] < history["loss_space_group"].iloc[0]


def test_mgda_trains_every_head_and_logs_weights(splits_on_disk, tmp_path):
    tasks = {"space_group": 230, "crystal_system": 7, "bravais_lattice": 14}
    torch.manual_seed(0)
    model = build_model("xrdecoupler", preset="demo", two_theta_deg=GRID.two_theta_deg, tasks=tasks)
    history = train(model, splits_on_disk["train"], splits_on_disk["val"], tmp_path,
                    train_options("xrdecoupler", {"epochs": 2, "batch_rows": 8}), tasks=tuple(tasks),
                    progress=False)
    for task in tasks:
        assert np.isfinite(history[f"loss_{task}"]).all()
        assert history[f"alpha_{task}"].between(0, 1).all()
    assert np.allclose(history[[f"alpha_{t}" for t in tasks]].sum(axis=1), 1.0, atol=1e-5)


def test_schedules_follow_the_papers():
    xrdecoupler = train_options("xrdecoupler", {"epochs": 200})
    assert lr_factor(0, xrdecoupler) == 1.0 and np.isclose(lr_factor(199, xrdecoupler), 0.002)
    mamba = train_options("xrdmamba", {"epochs": 200})
    assert lr_factor(99, mamba) == 1.0 and lr_factor(150, mamba) < 1.0 and lr_factor(199, mamba) < 0.01
    with pytest.raises(ConfigError, match="train.task_weighting"):
        train_options("mlp", {"task_weighting": "vote"})


def test_bf16_autocast_trains_and_keeps_float32_weights(splits_on_disk, tmp_path):
    model = _mlp()
    history = train(model, splits_on_disk["train"], splits_on_disk["val"], tmp_path,
                    train_options("mlp", {"epochs": 4, "batch_rows": 4, "lr": 3e-3, "precision": "bf16"}),
                    device="cpu", progress=False)
    assert np.isfinite(history["loss_space_group"]).all()
    assert history["loss_space_group"].iloc[-1] < history["loss_space_group"].iloc[0]
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with pytest.raises(ConfigError, match="train.precision"):
        train_options("mlp", {"precision": "fp8"})
