"""A trained model's directory, ``results/models/{dataset}/{run}/``: what it holds and how to load it.

Files:

- ``model.json``: everything needed to rebuild the network and feed it: the registry
  ``model`` name, ``preset``, ``overrides``, ``tasks`` (task → class count), ``kind``
  (``single_phase`` or ``multi_phase``), the ``grid`` (``name``, ``two_theta_min_deg``,
  ``two_theta_max_deg``, ``n_bins``), ``wavelength_angstrom``, ``input_scale`` (the factor
  applied to the stored ``x`` before the forward pass), the training ``dataset`` and
  the trainer ``options``;
- ``best.pt``: ``{"model": state_dict, "epoch": …, ...}``, the checkpoint chosen on validation;
- ``last.pt``: the full training state, for resuming (see :mod:`xrdbench.train.trainer`);
- ``history.csv``: one row per epoch (or evaluation step).

Checkpoints always load on the CPU unless a device is asked for.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from xrdbench.atomic import write_bytes_atomic
from xrdbench.errors import XrdbenchError
from xrdbench.models.registry import build_model
from xrdbench.simulate.grids import Grid

SPEC_FILE = "model.json"
BEST_FILE = "best.pt"


def spec_grid(spec: dict) -> Grid:
    """The model's input grid, from its ``model.json`` entry."""
    return Grid(**spec["grid"])


def write_spec(model_dir, spec: dict) -> None:
    write_bytes_atomic(Path(model_dir) / SPEC_FILE, (json.dumps(spec, indent=2, sort_keys=True) + "\n").encode())


def read_spec(model_dir) -> dict:
    path = Path(model_dir) / SPEC_FILE
    if not path.is_file():
        raise XrdbenchError(f"{model_dir}: not a trained model directory (no {SPEC_FILE}); "
                            "train one with snakemake, e.g. snakemake results/models/mof/xrdecoupler/best.pt")
    return json.loads(path.read_text())


def build_from_spec(spec: dict) -> torch.nn.Module:
    return build_model(spec["model"], preset=spec["preset"], two_theta_deg=spec_grid(spec).two_theta_deg,
                       tasks=spec["tasks"], **spec.get("overrides", {}))


def load_model(model_dir, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """The network of ``model_dir`` with its best weights, in eval mode on ``device``, and its spec."""
    spec = read_spec(model_dir)
    weights = Path(model_dir) / BEST_FILE
    if not weights.is_file():
        raise XrdbenchError(f"{weights}: missing; the model in {model_dir} has not finished training")
    model = build_from_spec(spec)
    state = torch.load(weights, map_location=device, weights_only=False)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), spec
