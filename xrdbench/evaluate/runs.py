"""Evaluate a trained run on a dataset split: metrics JSON, predictions parquet, confusion matrix.

Only evaluation splits are accepted (never ``train``) and the model runs in eval mode.
The run's ``model.json`` ``kind`` picks the metrics. Single-phase outputs, for
``results/eval/{dataset}/{run}/{split}``:

- ``{split}.json``: :func:`xrdbench.evaluate.single_phase.evaluate_single_phase` plus ``meta``
  (dataset, split, run, model, preset, training dataset and size, grid, machine, training
  wall time), which the report tables print in their headers;
- ``{split}.predictions.parquet``: per sample the material id, target, top-5 groups and
  probabilities, and each superclass head's prediction;
- ``{split}.confusion.csv``: space-group confusion over the groups seen in targets or
  predictions (rows true, columns predicted).

Multi-phase outputs (models fed ``x`` and the measurement ``mask``):

- ``{split}.json``: exactly :func:`xrdbench.evaluate.multi_phase.evaluate_presence`
  (presence models) or :func:`~xrdbench.evaluate.multi_phase.evaluate_slots` (slot
  models) on the split, plus the same ``meta``;
- ``{split}.predictions.parquet``: per sample the row, material ids, ``k``, the true
  ``target`` groups, the ``predicted`` groups at the JSON's threshold (presence) or best
  gate (slots), and the five best-scored groups ``pred_1..5`` with scores ``prob_1..5``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import zarr

from xrdbench.atomic import write_bytes_atomic, write_csv_atomic, write_parquet_atomic
from xrdbench.errors import XrdbenchError
from xrdbench.evaluate.multi_phase import class_ranks, slot_scores, slot_union
from xrdbench.evaluate.single_phase import confusion, evaluate_single_phase, predictions_frame
from xrdbench.provenance import machine_description
from xrdbench.train.checkpoint import load_model, read_spec
from xrdbench.train.runs import resolve_device
from xrdbench.train.trainer import batch_loader, evaluate_loader, make_objective

TOP_K = 5


def check_grid(spec: dict, split_path) -> zarr.Group:
    """The split's store, after checking that it is on the model's grid."""
    store = zarr.open_group(str(split_path), mode="r")
    n_bins = store["x"].shape[1]
    if n_bins != spec["grid"]["n_bins"]:
        raise XrdbenchError(f"{split_path}: {n_bins} bins, but model {spec['run']} was trained on "
                            f"{spec['grid']['n_bins']} (grid {spec['grid']['name']})")
    return store


@torch.no_grad()
def predict_split(model: torch.nn.Module, spec: dict, split_path, device: str = "cpu") -> dict[str, np.ndarray]:
    """Space-group logits (N, 230) and each head's argmax over the rows of a dataset split, in row order."""
    store = check_grid(spec, split_path)
    model.eval()
    rows = store["x"].chunks[0]
    logits, heads = [], {task: [] for task in spec["tasks"] if task != "space_group"}
    for start in range(0, store["x"].shape[0], rows):
        x = torch.from_numpy(store["x"][start:start + rows].astype(np.float32)).to(device) * spec["input_scale"]
        outputs = model(x)
        logits.append(outputs["space_group"].float().cpu().numpy())
        for task in heads:
            heads[task].append(outputs[task].argmax(1).cpu().numpy())
    return {"logits": np.concatenate(logits), "heads": {task: np.concatenate(v) for task, v in heads.items()},
            "target_sg": store["phase_space_group"][:, 0].astype(np.int64),
            "ids": np.array([str(i) for i in store["phase_material_id"][:, 0]], dtype=object)}


def predict_multi_phase(model: torch.nn.Module, spec: dict, split_path, device: str = "cpu") -> dict:
    """A multi-phase model's scores on a split, in row order, and their metrics (``report``).

    Scores: sigmoid presences (N, 230), or slot probabilities (N, K, 231); see
    :func:`xrdbench.train.trainer.evaluate_loader`, which validation shares.
    """
    store = check_grid(spec, split_path)
    loader, _ = batch_loader(split_path, store["x"].chunks[0], shuffle=False)
    predicted = evaluate_loader(make_objective(spec["train"]), model, loader, spec["input_scale"], device)
    predicted["ids"] = [[str(i) for i in row if str(i)] for row in store["phase_material_id"][:]]
    return predicted


def multi_phase_frame(predicted: dict) -> pd.DataFrame:
    """Per-sample predictions at the report's operating point, and the top-5 groups by score."""
    scores, report = predicted["scores"], predicted["report"]
    if scores.ndim == 3:  # slots: union of the gated slots' classes; a group's score is its best slot's
        chosen, ranking = slot_union(scores, report["best_gate"]["threshold"]), slot_scores(scores)
    else:
        chosen, ranking = scores >= report["threshold"], scores
    order = np.argsort(class_ranks(ranking), axis=1)[:, :TOP_K]  # ranks → classes, best first
    frame = pd.DataFrame({"row": np.arange(len(scores)), "material_ids": predicted["ids"],
                          "k": predicted["k"].astype(int),
                          "target": [list(np.flatnonzero(row > 0.5) + 1) for row in predicted["y"]],
                          "predicted": [list(np.flatnonzero(row) + 1) for row in chosen]})
    for rank in range(TOP_K):
        frame[f"pred_{rank + 1}"] = order[:, rank] + 1
        frame[f"prob_{rank + 1}"] = np.take_along_axis(ranking, order[:, rank:rank + 1], axis=1)[:, 0]
    return frame


def run_meta(spec: dict, model_dir, *, dataset: str, split: str) -> dict:
    """The ``meta`` of an evaluation JSON: what was evaluated, on what, trained how and where."""
    training = json.loads((Path(model_dir) / "training.json").read_text())
    return {"dataset": dataset, "split": split, "run": spec["run"], "model": spec["model"],
            "preset": spec["preset"], "train_dataset": spec["dataset"], "n_train": training["n_train"],
            "grid": spec["grid"], "machine": machine_description(),
            "train_wall_s": training["train_wall_s"], "train_machine": training["machine"]}


def evaluate_run(model_dir, split_path, out_prefix, *, dataset: str, split: str, device: str = "auto") -> dict:
    """Evaluate the model in ``model_dir`` on one split; write ``{out_prefix}.json`` and siblings."""
    if split == "train":
        raise XrdbenchError(f"{split_path}: evaluation runs on val and test splits only, never on train")
    device = resolve_device(device, read_spec(model_dir).get("kind", "single_phase"))
    model, spec = load_model(model_dir, device=device)
    out_prefix = Path(out_prefix)
    if spec.get("kind") == "multi_phase":
        predicted = predict_multi_phase(model, spec, split_path, device)
        metrics = dict(predicted["report"])
        frame = multi_phase_frame(predicted)
    else:
        metrics, frame = _single_phase(model, spec, split_path, device, out_prefix)
    metrics["meta"] = run_meta(spec, model_dir, dataset=dataset, split=split)
    write_parquet_atomic(frame, out_prefix.with_name(out_prefix.name + ".predictions.parquet"))
    write_bytes_atomic(out_prefix.with_name(out_prefix.name + ".json"),
                       (json.dumps(metrics, indent=2, sort_keys=True) + "\n").encode())
    return metrics


def _single_phase(model, spec: dict, split_path, device, out_prefix: Path) -> tuple[dict, pd.DataFrame]:
    """Single-phase metrics and predictions; writes the confusion matrix beside them."""
    predicted = predict_split(model, spec, split_path, device)
    metrics = evaluate_single_phase(predicted["logits"], predicted["target_sg"], predicted["heads"])
    frame = predictions_frame(predicted["ids"], predicted["logits"], predicted["target_sg"])
    for task, codes in predicted["heads"].items():
        frame[f"head_{task}"] = codes
    top1 = frame["pred_1"].to_numpy()
    labels = sorted(set(predicted["target_sg"]) | set(top1))
    matrix = pd.DataFrame(confusion(predicted["target_sg"], top1, labels),
                          index=pd.Index(labels, name="target"), columns=[str(label) for label in labels])
    write_csv_atomic(matrix.reset_index(), out_prefix.with_name(out_prefix.name + ".confusion.csv"))
    return metrics, frame
