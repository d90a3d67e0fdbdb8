"""A benchmark run: a model from the registry, its superclass tasks and options, trained on a dataset.

The config's ``single_phase.runs`` maps run names to ``{model, superclasses, options, train}``
and ``multi_phase.runs`` to ``{model, options, train}``; the model decides the run's kind
(``multi_phase`` for the models of :data:`xrdbench.train.trainer.MULTI_PHASE_OBJECTIVES`).
This module turns one entry into a network, its tasks and trainer options, trains it with
:func:`xrdbench.train.trainer.train` and leaves a model directory
(:mod:`xrdbench.train.checkpoint`) that evaluation and ``xrdbench predict`` load. A
multi-phase run's ``model.json`` and ``training.json`` also record the operating point
chosen on validation with the best checkpoint: ``threshold`` (presence models: the
sigmoid threshold) or ``gate`` (slot models: the gate 1 − π_NONE).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import zarr

from xrdbench.atomic import write_bytes_atomic
from xrdbench.augment.normalize import dataset_normalization
from xrdbench.errors import ConfigError
from xrdbench.models.registry import MODELS
from xrdbench.provenance import machine_description
from xrdbench.symmetry import SUPERCLASSES, superclass_index
from xrdbench.train.checkpoint import build_from_spec, write_spec
from xrdbench.train.trainer import MULTI_PHASE_OBJECTIVES, make_objective, train, train_options

N_SPACE_GROUPS = 230


def run_kind(run: dict) -> str:
    """``multi_phase`` for the multi-phase models, else ``single_phase``."""
    return "multi_phase" if run["model"] in MULTI_PHASE_OBJECTIVES else "single_phase"


def run_tasks(name: str, run: dict) -> dict[str, int]:
    """Task → class count: the space group, then the run's superclasses (multi-head models only).

    Multi-phase models predict the presence (or slot class) of each of the 230 space groups: ``space_group``.
    """
    import xrdbench.models  # noqa: F401 - registers every model

    if run_kind(run) == "multi_phase":
        if run.get("superclasses"):
            raise ConfigError(f"multi_phase.runs.{name}.superclasses: multi-phase models have no superclass heads")
        return {"space_group": N_SPACE_GROUPS}
    superclasses = list(run.get("superclasses") or [])
    unknown = [task for task in superclasses if task not in SUPERCLASSES]
    if unknown:
        raise ConfigError(f"single_phase.runs.{name}.superclasses: unknown {unknown}; expected some of {SUPERCLASSES}")
    if superclasses and not getattr(MODELS[run["model"]], "MULTI_HEAD", False):
        raise ConfigError(f"single_phase.runs.{name}.superclasses: model {run['model']!r} has one head; "
                          "superclass tasks need a multi-head model (xrdecoupler)")
    return {"space_group": N_SPACE_GROUPS, **{task: len(superclass_index(task)) for task in superclasses}}


def resolve_device(device: str, section: str = "single_phase") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{section}.device: cuda asked for, but torch sees no CUDA device")
    return device


def run_spec(name: str, run: dict, *, preset: str, train_dataset: str, train_path, train_overrides: dict) -> dict:
    """The ``model.json`` of a run trained on the split at ``train_path``."""
    attrs = dict(zarr.open_group(str(train_path), mode="r").attrs)
    options = train_options(run["model"], {**train_overrides, **run.get("train", {})})
    return {"run": name, "model": run["model"], "kind": run_kind(run), "preset": preset,
            "overrides": dict(run.get("options", {})), "tasks": run_tasks(name, run),
            "grid": {key: attrs["grid"][key] for key in ("name", "two_theta_min_deg", "two_theta_max_deg", "n_bins")},
            "wavelength_angstrom": attrs["wavelength_angstrom"], "input_scale": options["input_scale"],
            "dataset": train_dataset, "dataset_kind": attrs["options"]["kind"],
            "normalization": dataset_normalization(attrs["options"]), "train": options}


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
                    device=resolve_device(device, spec["kind"]), progress=progress)
    objective = make_objective(spec["train"], tuple(spec["tasks"]))
    best = history.loc[history[objective.metric].idxmax()]
    summary = {"run": name, "n_train": _rows(train_path), "n_val": _rows(val_path)}
    if spec["kind"] == "multi_phase":
        # the operating point chosen on validation with the best checkpoint, which xrdbench predict applies
        point = "gate" if spec["train"]["objective"] == "slots" else "threshold"
        summary.update({"steps": int(history["step"].iloc[-1]), "evaluations": int(len(history)),
                        "best_step": int(best["step"]), "best_val_micro_f1": float(best["val_micro_f1"]),
                        point: float(best["val_threshold"])})
        write_spec(out_dir, {**spec, point: summary[point]})
    else:
        summary.update({"epochs": int(len(history)), "best_epoch": int(best["epoch"]),
                        "best_val_top1": float(best["val_top1"])})
    summary.update({"train_wall_s": float(history["wall_s"].sum()),
                    "n_parameters": int(sum(p.numel() for p in model.parameters())),
                    "machine": machine_description()})
    write_bytes_atomic(out_dir / "training.json", (json.dumps(summary, indent=2) + "\n").encode())
    return summary
