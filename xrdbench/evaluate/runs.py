"""Evaluate a trained run on a dataset split: metrics JSON, predictions parquet, confusion matrix.

Only evaluation splits are accepted (never ``train``) and the model runs in eval mode.
Outputs, for ``results/eval/{dataset}/{run}/{split}``:

- ``{split}.json``: :func:`xrdbench.evaluate.single_phase.evaluate_single_phase` plus ``meta``
  (dataset, split, run, model, preset, training dataset and size, grid, machine, training
  wall time), which the report tables print in their headers;
- ``{split}.predictions.parquet``: per sample the material id, target, top-5 groups and
  probabilities, and each superclass head's prediction;
- ``{split}.confusion.csv``: space-group confusion over the groups seen in targets or
  predictions (rows true, columns predicted).
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
from xrdbench.evaluate.single_phase import confusion, evaluate_single_phase, predictions_frame
from xrdbench.provenance import machine_description
from xrdbench.train.checkpoint import load_model
from xrdbench.train.runs import resolve_device


@torch.no_grad()
def predict_split(model: torch.nn.Module, spec: dict, split_path, device: str = "cpu") -> dict[str, np.ndarray]:
    """Space-group logits (N, 230) and each head's argmax over the rows of a dataset split, in row order."""
    store = zarr.open_group(str(split_path), mode="r")
    n_bins = store["x"].shape[1]
    if n_bins != spec["grid"]["n_bins"]:
        raise XrdbenchError(f"{split_path}: {n_bins} bins, but model {spec['run']} was trained on "
                            f"{spec['grid']['n_bins']} (grid {spec['grid']['name']})")
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


def evaluate_run(model_dir, split_path, out_prefix, *, dataset: str, split: str, device: str = "auto") -> dict:
    """Evaluate the model in ``model_dir`` on one split; write ``{out_prefix}.json`` and siblings."""
    if split == "train":
        raise XrdbenchError(f"{split_path}: evaluation runs on val and test splits only, never on train")
    device = resolve_device(device)
    model, spec = load_model(model_dir, device=device)
    predicted = predict_split(model, spec, split_path, device)
    metrics = evaluate_single_phase(predicted["logits"], predicted["target_sg"], predicted["heads"])
    training = json.loads((Path(model_dir) / "training.json").read_text())
    metrics["meta"] = {"dataset": dataset, "split": split, "run": spec["run"], "model": spec["model"],
                       "preset": spec["preset"], "train_dataset": spec["dataset"], "n_train": training["n_train"],
                       "grid": spec["grid"], "machine": machine_description(),
                       "train_wall_s": training["train_wall_s"], "train_machine": training["machine"]}

    frame = predictions_frame(predicted["ids"], predicted["logits"], predicted["target_sg"])
    for task, codes in predicted["heads"].items():
        frame[f"head_{task}"] = codes
    top1 = frame["pred_1"].to_numpy()
    labels = sorted(set(predicted["target_sg"]) | set(top1))
    matrix = pd.DataFrame(confusion(predicted["target_sg"], top1, labels),
                          index=pd.Index(labels, name="target"), columns=[str(label) for label in labels])

    out_prefix = Path(out_prefix)
    write_parquet_atomic(frame, out_prefix.with_name(out_prefix.name + ".predictions.parquet"))
    write_csv_atomic(matrix.reset_index(), out_prefix.with_name(out_prefix.name + ".confusion.csv"))
    write_bytes_atomic(out_prefix.with_name(out_prefix.name + ".json"),
                       (json.dumps(metrics, indent=2, sort_keys=True) + "\n").encode())
    return metrics
