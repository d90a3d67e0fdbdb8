"""Multi-phase benchmark runs end to end on a toy mixture dataset, through the shared trainer."""

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
import zarr
from conftest import build_bank, structures_table
from snakemake.utils import validate

from xrdbench.augment.datasets import build_dataset_split
from xrdbench.config import check_config
from xrdbench.errors import ConfigError
from xrdbench.evaluate.multi_phase import evaluate_presence, evaluate_slots
from xrdbench.evaluate.runs import evaluate_run
from xrdbench.simulate.grids import NAMED_GRIDS
from xrdbench.splits import build_splits
from xrdbench.train import trainer
from xrdbench.train.checkpoint import load_model
from xrdbench.train.runs import run_tasks, train_run
from xrdbench.train.trainer import MULTI_PHASE_DEFAULTS, lr_factor, train_options

GRID = NAMED_GRIDS["multiphase"]
MODELS = ("multilabel_cnn", "multilabel_transformer", "phase_cluster_transformer")
TINY = {"steps": 6, "eval_every": 3, "warmup_steps": 2, "batch_rows": 8, "lr": 1e-3}
META_KEYS = {"dataset", "split", "run", "model", "preset", "train_dataset", "n_train", "grid", "machine",
             "train_wall_s", "train_machine"}


@pytest.fixture(scope="module")
def schema_config(repo_root):
    config = yaml.safe_load((repo_root / "config.yaml").read_text())
    validate(config, str(repo_root / "workflow" / "schemas" / "config.schema.yaml"))
    return config


@pytest.fixture(scope="module")
def toy(tmp_path_factory, schema_config):
    """A toy mixture dataset (train 32, val 16, test 16 samples of 1–5 phases) on the multiphase grid."""
    directory = tmp_path_factory.mktemp("mixtures")
    table = structures_table(30)
    bank = build_bank(table, directory, GRID)
    splits = build_splits(table, fractions={"train": 0.6, "val": 0.2, "test": 0.2}, seed=0,
                          match_duplicates=False, progress=False)
    sizes = {"train": 32, "val": 16, "test": 16}
    paths = {}
    for split, n in sizes.items():
        paths[split] = directory / f"{split}.zarr"
        build_dataset_split(bank, splits, paths[split], name="toy", split=split, progress=False,
                            options=dict(kind="mixture", seed=0, chunk_rows=8, augment=schema_config["augment"],
                                         splits={split: {"materials": [split], "n_samples": n}}),
                            dask_options={"scheduler": "synchronous"})
    return paths


@pytest.fixture(scope="module")
def trained(toy, tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    runs = {}
    for model in MODELS:
        out = root / model
        summary = train_run(model, {"model": model}, toy["train"], toy["val"], out, preset="demo",
                            train_dataset="toy", train_overrides=TINY, device="cpu", progress=False)
        runs[model] = (out, summary)
    return runs


@pytest.mark.parametrize("model", MODELS)
def test_a_multi_phase_run_trains_by_steps(trained, toy, model):
    out, summary = trained[model]
    spec = json.loads((out / "model.json").read_text())
    assert spec["kind"] == "multi_phase" and spec["tasks"] == {"space_group": 230}
    assert spec["train"]["steps"] == 6 and spec["train"]["schedule"] == "warmup_cosine"
    assert spec["input_scale"] == 1.0 and spec["dataset_kind"] == "mixture"
    point = "gate" if model == "phase_cluster_transformer" else "threshold"
    history = pd.read_csv(out / "history.csv")
    assert list(history["step"]) == [3, 6]
    best = history.loc[history["val_micro_f1"].idxmax()]
    assert spec[point] == summary[point] == best["val_threshold"]
    assert summary["best_step"] == best["step"] and summary["best_val_micro_f1"] == best["val_micro_f1"]
    assert summary["steps"] == 6 and summary["n_train"] == 32 and summary["train_wall_s"] > 0
    columns = ["step", "lr", "loss", "val_micro_f1", "val_threshold", "wall_s"]
    if model == "phase_cluster_transformer":
        columns.insert(3, "slot_diversity")
        assert history["slot_diversity"].between(0, 1).all()
    assert list(history.columns) == columns
    # the lr column is the rate of each period's last step
    assert np.allclose(history["lr"], [1e-3 * lr_factor(step - 1, spec["train"]) for step in history["step"]])
    best_pt = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
    assert best_pt["step"] == best["step"] and best_pt["val_micro_f1"] == best["val_micro_f1"]


def assert_close(got, expected, where="metrics"):
    """Same keys, lengths, ints and bools; floats to 1e-6 (batched and whole-split forwards round apart)."""
    if isinstance(expected, dict):
        assert got.keys() == expected.keys(), where
        for key in expected:
            assert_close(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(got) == len(expected), where
        for i, (a, b) in enumerate(zip(got, expected)):
            assert_close(a, b, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=1e-6, abs=1e-9), where
    else:
        assert got == expected and type(got) is type(expected), where


@pytest.mark.parametrize("model", MODELS)
def test_evaluation_is_the_metrics_of_the_loaded_model(trained, toy, tmp_path, model):
    out, _ = trained[model]
    metrics = evaluate_run(out, toy["test"], tmp_path / "test", dataset="toy", split="test", device="cpu")
    assert json.loads((tmp_path / "test.json").read_text()) == json.loads(json.dumps(metrics))
    meta = metrics.pop("meta")
    assert set(meta) == META_KEYS
    assert meta["run"] == model and meta["split"] == "test" and meta["n_train"] == 32 and meta["preset"] == "demo"

    loaded, spec = load_model(out)
    store = zarr.open_group(str(toy["test"]), mode="r")
    with torch.no_grad():
        outputs = loaded(torch.from_numpy(store["x"][:]) * spec["input_scale"],
                         torch.from_numpy(store["mask"][:].astype(np.float32)))
    truth = store["y"][:], store["k"][:], store["phase_weight"][:]
    if "presence" in outputs:
        expected = evaluate_presence(torch.sigmoid(outputs["presence"]).numpy(), *truth)
    else:
        expected = evaluate_slots(outputs["slot_logits"].softmax(-1).numpy(), *truth)
    assert_close(metrics, expected)

    predictions = pd.read_parquet(tmp_path / "test.predictions.parquet")
    assert len(predictions) == len(truth[0]) and (predictions["k"] == truth[1]).all()
    assert [list(t) for t in predictions["target"]] == [list(np.flatnonzero(row) + 1) for row in truth[0]]
    assert {"predicted", "material_ids", "pred_1", "prob_5"} <= set(predictions.columns)
    assert (predictions["prob_1"] >= predictions["prob_5"]).all()
    assert not (tmp_path / "test.confusion.csv").exists()


def test_resume_gives_the_same_weights(toy, tmp_path, monkeypatch):
    """Crash after the second of three evaluations (mid-epoch), resume, compare with a straight run."""
    run = {"model": "phase_cluster_transformer"}  # dropout in every block: the RNG state matters
    overrides = dict(TINY, steps=9, eval_every=3)
    kwargs = dict(preset="demo", train_dataset="toy", train_overrides=overrides, device="cpu", progress=False)
    train_run("slots", run, toy["train"], toy["val"], tmp_path / "straight", **kwargs)

    write_csv, calls = trainer.write_csv_atomic, []

    def crash_on_second(frame, path):
        write_csv(frame, path)
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(trainer, "write_csv_atomic", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        train_run("slots", run, toy["train"], toy["val"], tmp_path / "resumed", **kwargs)
    monkeypatch.setattr(trainer, "write_csv_atomic", write_csv)
    assert torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)["step"] == 6
    summary = train_run("slots", run, toy["train"], toy["val"], tmp_path / "resumed", **kwargs)

    straight = torch.load(tmp_path / "straight" / "last.pt", weights_only=False)
    resumed = torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)
    for name, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][name]), name
    assert summary["steps"] == 9 and resumed["step"] == 9
    a, b = (pd.read_csv(tmp_path / d / "history.csv") for d in ("straight", "resumed"))
    pd.testing.assert_frame_equal(a.drop(columns="wall_s"), b.drop(columns="wall_s"))


def test_warmup_cosine_schedule():
    options = train_options("multilabel_transformer", {"steps": 110, "warmup_steps": 10})
    assert options["schedule"] == "warmup_cosine" and options["objective"] == "presence"
    values = [lr_factor(step, options) for step in range(111)]
    assert values[0] == 0.0 and values[5] == pytest.approx(0.5) and values[10] == pytest.approx(1.0)
    assert values[60] == pytest.approx(0.5) and values[110] == pytest.approx(0.0, abs=1e-12)
    assert all(a <= b for a, b in zip(values[:10], values[1:11]))
    assert all(a >= b for a, b in zip(values[10:], values[11:]))
    floor = train_options("multilabel_cnn", {"steps": 20, "warmup_steps": 0, "final_lr_factor": 0.1})
    assert lr_factor(0, floor) == 1.0 and lr_factor(20, floor) == pytest.approx(0.1)
    assert train_options("phase_cluster_transformer", {})["objective"] == "slots"
    with pytest.raises(ConfigError, match="train.eval_every"):
        train_options("multilabel_cnn", {"eval_every": 0})


def test_the_schema_defaults_are_the_papers_protocol(repo_root):
    config = {}
    validate(config, str(repo_root / "workflow" / "schemas" / "config.schema.yaml"))
    section = config["multi_phase"]
    assert section["train"] == MULTI_PHASE_DEFAULTS
    assert section["train_dataset"] == "multiphase" and section["evaluate"] == {"multiphase": ["in_library", "test"]}
    assert {run["model"] for run in section["runs"].values()} == set(MODELS)
    assert MULTI_PHASE_DEFAULTS["lr"] == 1e-4 and MULTI_PHASE_DEFAULTS["warmup_steps"] == 4000


def test_multi_phase_tasks():
    assert run_tasks("m", {"model": "multilabel_cnn"}) == {"space_group": 230}
    with pytest.raises(ConfigError, match="multi_phase.runs.m.superclasses"):
        run_tasks("m", {"model": "phase_cluster_transformer", "superclasses": ["crystal_system"]})


@pytest.mark.parametrize("change, key", [
    ({"train_dataset": "nowhere"}, "multi_phase.train_dataset"),
    ({"train_dataset": "mof_balanced"}, "multi_phase.train_dataset"),
    ({"evaluate": {"multiphase": ["holdout"]}}, "multi_phase.evaluate.multiphase"),
    ({"runs": {"cnn": {"model": "multilabel_cnn"}}}, "multi_phase.runs.cnn"),
])
def test_config_checks_name_the_key(schema_config, change, key):
    config = copy.deepcopy(schema_config)
    config["multi_phase"].update(change)
    with pytest.raises(ConfigError, match=key):
        check_config(config)
