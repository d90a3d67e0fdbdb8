"""A benchmark run: a model from the registry, its superclass tasks and options, trained on a dataset.

The config's ``single_phase.runs`` maps run names to ``{model, superclasses, options, train}``;
this module turns one entry into a network, its tasks and trainer options, trains it with
:func:`xrdbench.train.trainer.train` and leaves a model directory
(:mod:`xrdbench.train.checkpoint`) that evaluation and ``xrdbench predict`` load.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import zarr

from xrdbench.atomic import write_bytes_atomic
from xrdbench.errors import ConfigError
from xrdbench.models.registry import MODELS
from xrdbench.provenance import machine_description
from xrdbench.symmetry import SUPERCLASSES, superclass_index
from xrdbench.train.checkpoint import build_from_spec, write_spec
from xrdbench.train.trainer import train, train_options

N_SPACE_GROUPS = 230


def run_tasks(name: str, run: dict) -> dict[str, int]:
    """Task → class count: the space group, then the run's superclasses (multi-head models only)."""
    import xrdbench.models  # noqa: F401 - registers every model

    superclasses = list(run.get("superclasses") or [])
    unknown = [task for task in superclasses if task not in SUPERCLASSES]
    if unknown:
        raise ConfigError(f"single_phase.runs.{name}.superclasses: unknown {unknown}; expected some of {SUPERCLASSES}")
    if superclasses and not getattr(MODELS[run["model"]], "MULTI_HEAD", False):
        raise ConfigError(f"single_phase.runs.{name}.superclasses: model {run['model']!r} has one head; "
                          "superclass tasks need a multi-head model (xrdecoupler)")
    return {"space_group": N_SPACE_GROUPS, **{task: len(superclass_index(task)) for task in superclasses}}


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("single_phase.device: cuda asked for, but torch sees no CUDA device")
    return device


def run_spec(name: str, run: dict, *, preset: str, train_dataset: str, train_path, train_overrides: dict) -> dict:
    """The ``model.json`` of a run trained on the split at ``train_path``."""
    attrs = dict(zarr.open_group(str(train_path), mode="r").attrs)
    options = train_options(run["model"], {**train_overrides, **run.get("train", {})})
    return {"run": name, "model": run["model"], "kind": "single_phase", "preset": preset,
            "overrides": dict(run.get("options", {})), "tasks": run_tasks(name, run),
            "grid": {key: attrs["grid"][key] for key in ("name", "two_theta_min_deg", "two_theta_max_deg", "n_bins")},
            "wavelength_angstrom": attrs["wavelength_angstrom"], "input_scale": options["input_scale"],
            "dataset": train_dataset, "dataset_kind": attrs["options"]["kind"], "train": options}


def _rows(split_path) -> int:
    return int(zarr.open_group(str(split_path), mode="r")["x"].shape[0])


def train_run(name: str, run: dict, train_path, val_path, out_dir, *, preset: str, train_dataset: str,
              train_overrides: dict, device: str = "auto", progress: bool = True) -> dict:
    """Train one run into ``out_dir`` (resuming from its ``last.pt``); returns the training summary."""
    spec = run_spec(name, run, preset=preset, train_dataset=train_dataset, train_path=train_path,
                    train_overrides=train_overrides)
    out_dir = Path(out_dir)
    torch.manual_seed(spec["train"]["seed"])  # the weights' initialisation is part of the seeded run
    model = build_from_spec(spec)
    write_spec(out_dir, spec)
    history = train(model, train_path, val_path, out_dir, spec["train"], tasks=tuple(spec["tasks"]),
                    device=resolve_device(device), progress=progress)
    best = history.loc[history["val_top1"].idxmax()]
    summary = {"run": name, "n_train": _rows(train_path), "n_val": _rows(val_path), "epochs": int(len(history)), "best_epoch": int(best["epoch"]),
               "best_val_top1": float(best["val_top1"]), "train_wall_s": float(history["wall_s"].sum()),
               "n_parameters": int(sum(p.numel() for p in model.parameters())), "machine": machine_description()}
    write_bytes_atomic(out_dir / "training.json", (json.dumps(summary, indent=2) + "\n").encode())
    return summary
