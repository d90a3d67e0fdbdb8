"""Benchmark runs end to end on a toy dataset: train a run, load it on the CPU, evaluate a split."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import zarr
from conftest import build_bank, structures_table

from xrdbench.augment.datasets import build_dataset_split
from xrdbench.errors import ConfigError, XrdbenchError
from xrdbench.evaluate.runs import evaluate_run
from xrdbench.evaluate.single_phase import evaluate_single_phase
from xrdbench.simulate.grids import NAMED_GRIDS
from xrdbench.splits import build_splits
from xrdbench.symmetry import superclass_index
from xrdbench.train.checkpoint import load_model
from xrdbench.train.runs import run_tasks, train_run

GRID = NAMED_GRIDS["multiphase"]
SUPERCLASSES = ["crystal_system", "bravais_lattice"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    directory = tmp_path_factory.mktemp("runs")
    table = structures_table(30)
    bank = build_bank(table, directory, GRID)
    splits = build_splits(table, fractions={"train": 0.6, "val": 0.2, "test": 0.2}, seed=0,
                          match_duplicates=False, progress=False)
    paths = {}
    for split in ("train", "val", "test"):
        paths[split] = directory / f"{split}.zarr"
        build_dataset_split(bank, splits, paths[split], name="toy", split=split, progress=False,
                            options=dict(kind="clean", seed=0, chunk_rows=8, augment={},
                                         splits={split: {"materials": [split]}}),
                            dask_options={"scheduler": "synchronous"})
    return paths


@pytest.fixture(scope="module")
def trained(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "toy" / "decoupler"
    run = {"model": "xrdecoupler", "superclasses": SUPERCLASSES, "options": {"use_global": False}}
    summary = train_run("decoupler", run, toy["train"], toy["val"], out, preset="demo", train_dataset="toy",
                        train_overrides={"epochs": 2, "batch_rows": 4}, device="cpu", progress=False)
    return out, summary


def test_a_run_leaves_a_loadable_model_directory(trained, toy):
    out, summary = trained
    spec = json.loads((out / "model.json").read_text())
    assert spec["tasks"] == {"space_group": 230, **{t: len(superclass_index(t)) for t in SUPERCLASSES}}
    assert spec["grid"]["n_bins"] == GRID.n_bins and spec["overrides"] == {"use_global": False}
    assert spec["train"]["epochs"] == 2 and spec["kind"] == "single_phase"
    assert summary["epochs"] == 2 and summary["n_train"] == zarr.open_group(str(toy["train"]))["x"].shape[0]
    assert summary["train_wall_s"] > 0
    history = pd.read_csv(out / "history.csv")
    assert {"wall_s", "loss_crystal_system", "alpha_space_group"} <= set(history.columns)

    model, loaded_spec = load_model(out)
    assert not model.training and loaded_spec == spec
    assert next(model.parameters()).device.type == "cpu"
    best = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
    for name, value in model.state_dict().items():
        assert torch.equal(value, best["model"][name]), name


def test_evaluation_matches_the_metrics_of_the_loaded_model(trained, toy, tmp_path):
    out, _ = trained
    metrics = evaluate_run(out, toy["test"], tmp_path / "test", dataset="toy", split="test", device="cpu")

    model, spec = load_model(out)
    store = zarr.open_group(str(toy["test"]), mode="r")
    with torch.no_grad():
        outputs = model(torch.from_numpy(store["x"][:]) * spec["input_scale"])
    target = store["phase_space_group"][:, 0]
    expected = evaluate_single_phase(outputs["space_group"].numpy(), target,
                                     {t: outputs[t].argmax(1).numpy() for t in SUPERCLASSES})
    for key in ("top1", "top2", "top5", "macro_f1", "macro_recall", "n_samples"):
        assert metrics[key] == pytest.approx(expected[key]), key
    assert set(metrics["superclass_accuracy"]["from_head"]) == set(SUPERCLASSES)
    assert metrics["meta"]["run"] == "decoupler" and metrics["meta"]["split"] == "test"
    assert metrics["meta"]["n_train"] == zarr.open_group(str(toy["train"]))["x"].shape[0]
    assert json.loads((tmp_path / "test.json").read_text()) == json.loads(json.dumps(metrics))

    predictions = pd.read_parquet(tmp_path / "test.predictions.parquet")
    assert len(predictions) == len(target) and (predictions["target"] == target).all()
    assert {"head_crystal_system", "pred_5", "prob_1"} <= set(predictions.columns)
    confusion = pd.read_csv(tmp_path / "test.confusion.csv", index_col="target")
    assert confusion.to_numpy().sum() == len(target)
    assert np.trace(confusion.to_numpy()) == round(metrics["top1"] * len(target))


def test_evaluation_refuses_the_train_split(trained, toy, tmp_path):
    with pytest.raises(XrdbenchError, match="never on train"):
        evaluate_run(trained[0], toy["train"], tmp_path / "train", dataset="toy", split="train", device="cpu")


def test_superclasses_need_a_multi_head_model():
    with pytest.raises(ConfigError, match=r"single_phase.runs.bad.superclasses.*one head"):
        run_tasks("bad", {"model": "cnn", "superclasses": ["crystal_system"]})
    with pytest.raises(ConfigError, match="unknown"):
        run_tasks("bad", {"model": "xrdecoupler", "superclasses": ["colour"]})
    assert run_tasks("ok", {"model": "cnn"}) == {"space_group": 230}


def test_fixed_weights_run_trains_without_mgda(toy, tmp_path):
    run = {"model": "xrdecoupler", "superclasses": SUPERCLASSES, "options": {"use_global": False},
           "train": {"task_weighting": "fixed", "beta": 0.5}}
    train_run("fixed", run, toy["train"], toy["val"], tmp_path, preset="demo", train_dataset="toy",
              train_overrides={"epochs": 1, "batch_rows": 4}, device="cpu", progress=False)
    history = pd.read_csv(tmp_path / "history.csv")
    assert "loss_crystal_system" in history and not any(c.startswith("alpha_") for c in history.columns)
