"""Apply a trained model (``results/models/{dataset}/{run}/``) to measured patterns.

Steps per pattern: read it (:func:`~xrdbench.predict.patterns.read_pattern`); convert
its 2θ to the model's wavelength when the measured one is given and differs; resample
it onto the model's grid, unmeasured bins masked, a finer measurement binned by the rule
that made the training patterns (:func:`resampling_rule`); scale it like the training
dataset's ``x`` (:func:`input_normalization`); multiply by the spec's ``input_scale``, as the
trainer does; forward.

Outputs, one dict per pattern (:func:`predict_patterns`):

- single-phase models (``spec["kind"] == "single_phase"``): ``top_k`` = the k best space
  groups with ``space_group``, ``symbol`` (Hermann–Mauguin, short) and ``probability``
  (softmax over the 230), and ``superclasses`` = for each superclass head the model
  has, its ``prediction``, ``probability``, the top-1 space group's value of that
  superclass (``from_top1``) and whether the two agree (``consistent``);
- multi-phase models (``"multi_phase"``): ``phases`` = the predicted phase set, each
  with ``space_group``, ``symbol`` and ``probability``. From a ``presence`` head
  (B, 230) logits: sigmoid, kept at ≥ ``spec.get("threshold", 0.5)``. From a
  ``slot_logits`` head (B, K, 231), class 231 (last) = NONE: per slot a softmax over
  the 231; a slot is active when its gate 1 − π_NONE is ≥ ``spec.get("gate", 0.5)``
  and then predicts its most probable real space group (NONE excluded); the set is
  the union over active slots, each group's probability max_k π_k,g (the slot-union
  convention of :mod:`xrdbench.evaluate.multi_phase`).

Every result also records the pattern file, its points in use, the measured fraction
of the grid, the resampling method and the normalization applied.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from xrdbench.atomic import write_bytes_atomic
from xrdbench.augment.normalize import CLEAN_SCALE
from xrdbench.errors import XrdbenchError
from xrdbench.evaluate.single_phase import ranked_space_groups, softmax
from xrdbench.predict.patterns import (
    MeasuredPattern,
    convert_wavelength,
    normalize_pattern,
    read_pattern,
    resample_to_grid,
    resampling_method,
)
from xrdbench.symmetry.tables import SUPERCLASSES, space_group_table, superclass_index
from xrdbench.train.checkpoint import load_model, spec_grid

log = logging.getLogger(__name__)

__all__ = [
    "add_predict_command",
    "format_predictions",
    "input_normalization",
    "predict_arrays",
    "predict_patterns",
    "predictions_frame",
    "prepare_input",
    "resampling_rule",
    "run_predict",
    "write_predictions",
]

N_SPACE_GROUPS = 230
SLOT_GATE = 0.5


# ---------------------------------------------------------------- the input scale


def input_normalization(spec: dict, model_dir=None) -> dict:
    """How to scale a pattern so that it looks like the model's training ``x``: the
    ``normalization`` its ``model.json`` recorded at training time
    (:func:`xrdbench.augment.normalize.dataset_normalization`)."""
    if not isinstance(spec.get("normalization"), dict):
        where = f"{model_dir}/model.json" if model_dir is not None else "model.json"
        raise XrdbenchError(f"{where}: no 'normalization' entry; retrain the model with this version of xrdbench")
    return dict(spec["normalization"])


def resampling_rule(spec: dict, normalization: dict | None = None) -> str:
    """How a measurement finer than the model's grid is binned onto it: like the training ``x``.

    ``"max"`` when the model was trained on a clean dataset (``dataset_kind`` ``clean``; a
    ``model.json`` without that key: the clean normalization, ``{"method": "max", "value":
    100}``): its ``x`` are a bank's sticks binned by the render rule ``max``, so each bin
    keeps its strongest measured point. ``model.json`` does not record the bank's render
    rule; ``max`` is the only one the shipped configs use, and a ``render_rule`` key, if
    present, is honoured (``sum`` falls back to the bin mean). Augmented datasets
    (continuous profiles) give ``"average"``, the bin mean. See
    :mod:`xrdbench.predict.patterns`.
    """
    normalization = normalization if normalization is not None else spec.get("normalization")
    if "dataset_kind" in spec:
        clean = spec["dataset_kind"] == "clean"
    else:
        clean = normalization == {"method": "max", "value": CLEAN_SCALE}
    return "max" if clean and spec.get("render_rule", "max") == "max" else "average"


# ---------------------------------------------------------------- one pattern → model input


def prepare_input(pattern: MeasuredPattern, spec: dict, *, wavelength_angstrom: float | None = None,
                  normalization: dict | None = None, model_dir=None) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(x (L,) float32 on the training scale, before input_scale; mask (L,) uint8; info)``.

    ``info`` holds ``n_points`` (points in use after the wavelength conversion),
    ``measured_fraction`` of the grid, the ``resampling`` method (``interpolate``,
    ``average`` or ``max``, see :func:`resampling_rule`) and the ``normalization``.
    """
    grid = spec_grid(spec)
    two_theta, intensity, lines = pattern.two_theta_deg, pattern.intensity, pattern.lines
    model_wavelength = spec.get("wavelength_angstrom")
    if wavelength_angstrom is not None:
        if not wavelength_angstrom > 0:
            raise XrdbenchError(f"--wavelength must be positive, got {wavelength_angstrom}")
        if model_wavelength is None:
            raise XrdbenchError("the model records no wavelength_angstrom in its model.json; "
                                "cannot convert a pattern measured at another wavelength")
        if not math.isclose(wavelength_angstrom, model_wavelength, rel_tol=0, abs_tol=1e-9):
            two_theta, kept = convert_wavelength(two_theta, wavelength_angstrom, model_wavelength)
            intensity, lines = intensity[kept], lines[kept]
            if len(two_theta) < 2:
                raise XrdbenchError(
                    f"{pattern.path}, {pattern.line_range()}: fewer than 2 points remain after converting 2θ from "
                    f"{wavelength_angstrom} Å to the model's {model_wavelength} Å (angles beyond 180° do not exist)")
    used = MeasuredPattern(pattern.path, two_theta, intensity, lines)
    if two_theta[-1] < grid.two_theta_min_deg or two_theta[0] > grid.two_theta_max_deg or \
            not np.any((grid.two_theta_deg >= two_theta[0]) & (grid.two_theta_deg <= two_theta[-1])):
        raise XrdbenchError(
            f"{pattern.path}, {used.line_range()}: the measured range 2θ {two_theta[0]:g}–{two_theta[-1]:g}° "
            f"covers no bin of the model's grid {grid.two_theta_min_deg:g}–{grid.two_theta_max_deg:g}° "
            f"({grid.n_bins} bins)" + (f" at {model_wavelength} Å" if model_wavelength else ""))
    normalization = normalization or input_normalization(spec)
    method = resampling_method(two_theta, grid, resampling_rule(spec, normalization))
    x, mask = resample_to_grid(two_theta, intensity, grid, method=method)
    x = normalize_pattern(x, mask, normalization)
    info = {"n_points": int(len(two_theta)), "measured_fraction": float(mask.mean()),
            "two_theta_min_deg": float(two_theta[0]), "two_theta_max_deg": float(two_theta[-1]),
            "resampling": method, "normalization": normalization}
    return x, mask, info


# ---------------------------------------------------------------- model outputs → predictions


def _symbols() -> np.ndarray:
    table = space_group_table()
    out = np.empty(N_SPACE_GROUPS + 1, dtype=object)
    out[0] = None
    out[1:] = [str(s) for s in table["international_short"].reindex(range(1, N_SPACE_GROUPS + 1))]
    return out


def _superclass_of(space_group: int, name: str) -> str:
    return str(space_group_table().at[space_group, name])


def _single_phase(outputs: dict, k: int) -> list[dict]:
    logits = outputs["space_group"].detach().double().cpu().numpy()
    if logits.ndim != 2 or logits.shape[1] != N_SPACE_GROUPS:
        raise XrdbenchError(f"the model's space_group output has shape {logits.shape}; expected (B, 230)")
    probabilities = softmax(logits)
    ranked = ranked_space_groups(logits, k)
    symbols = _symbols()
    heads = [name for name in SUPERCLASSES if name in outputs]
    head_probabilities = {name: softmax(outputs[name].detach().double().cpu().numpy()) for name in heads}
    results = []
    for row in range(len(logits)):
        top = [{"rank": rank + 1, "space_group": int(group), "symbol": symbols[group],
                "probability": float(probabilities[row, group - 1])} for rank, group in enumerate(ranked[row])]
        superclasses = {}
        for name in heads:
            labels = list(superclass_index(name))  # label of each head class, by its index
            p = head_probabilities[name][row]
            code = int(np.argmax(p))
            label = labels[code] if code < len(labels) else str(code)
            expected = _superclass_of(top[0]["space_group"], name)
            superclasses[name] = {"prediction": label, "probability": float(p[code]), "from_top1": expected,
                                  "consistent": label == expected}
        results.append({"kind": "single_phase", "top_k": top, "superclasses": superclasses})
    return results


def _multi_phase(outputs: dict, threshold: float, gate: float = SLOT_GATE) -> list[dict]:
    symbols = _symbols()
    results = []
    if "presence" in outputs:
        logits = outputs["presence"].detach().double().cpu().numpy()
        if logits.ndim != 2 or logits.shape[1] != N_SPACE_GROUPS:
            raise XrdbenchError(f"the model's presence output has shape {logits.shape}; expected (B, 230)")
        probabilities = 1.0 / (1.0 + np.exp(-logits))
        for row in probabilities:
            groups = np.nonzero(row >= threshold)[0] + 1
            phases = [{"space_group": int(g), "symbol": symbols[g], "probability": float(row[g - 1])} for g in groups]
            phases.sort(key=lambda phase: (-phase["probability"], phase["space_group"]))
            results.append({"kind": "multi_phase", "rule": f"presence sigmoid >= {threshold:g}", "phases": phases})
        return results
    if "slot_logits" in outputs:
        logits = outputs["slot_logits"].detach().double().cpu().numpy()
        if logits.ndim != 3 or logits.shape[2] != N_SPACE_GROUPS + 1:
            raise XrdbenchError(f"the model's slot_logits output has shape {logits.shape}; expected (B, P, 231)")
        probabilities = softmax(logits.reshape(-1, N_SPACE_GROUPS + 1)).reshape(logits.shape)
        for row in probabilities:
            score = row[:, :-1].max(axis=0)  # max over slots of each group's probability
            active = (1.0 - row[:, -1]) >= gate
            groups = sorted({int(g) + 1 for g in np.argmax(row[active, :-1], axis=1)})
            phases = [{"space_group": g, "symbol": symbols[g], "probability": float(score[g - 1])} for g in groups]
            phases.sort(key=lambda phase: (-phase["probability"], phase["space_group"]))
            results.append({"kind": "multi_phase", "rule": f"slot union, gate 1 - p(NONE) >= {gate:g}",
                            "phases": phases})
        return results
    raise XrdbenchError(f"a multi_phase model must output 'presence' or 'slot_logits', got {sorted(outputs)}")


@torch.no_grad()
def predict_arrays(model: torch.nn.Module, spec: dict, x, *, top_k: int = 5, device: str = "cpu") -> list[dict]:
    """Predictions for ``x`` (B, L) on the training scale: multiplied by ``spec["input_scale"]``, then forward."""
    if not 1 <= top_k <= N_SPACE_GROUPS:
        raise XrdbenchError(f"--top-k must lie in 1..{N_SPACE_GROUPS}, got {top_k}")
    x = torch.as_tensor(np.atleast_2d(np.asarray(x, dtype=np.float32)), device=device)
    model.eval()
    outputs = model(x * spec.get("input_scale", 1.0))
    kind = spec.get("kind", "single_phase")
    if kind == "single_phase":
        return _single_phase(outputs, top_k)
    if kind == "multi_phase":
        return _multi_phase(outputs, float(spec.get("threshold", 0.5)), float(spec.get("gate", SLOT_GATE)))
    raise XrdbenchError(f"model.json kind must be single_phase or multi_phase, got {kind!r}")


def predict_patterns(paths: Sequence, model_dir, *, wavelength_angstrom: float | None = None, top_k: int = 5,
                     device: str = "cpu", batch_size: int = 64) -> list[dict]:
    """One result dict per pattern file (see the module docstring), in the order given."""
    model, spec = load_model(model_dir, device=device)
    normalization = input_normalization(spec, model_dir)
    prepared = []
    for path in paths:
        x, mask, info = prepare_input(read_pattern(path), spec, wavelength_angstrom=wavelength_angstrom,
                                      normalization=normalization)
        prepared.append((str(path), x, info))
    results = []
    for start in range(0, len(prepared), batch_size):
        chunk = prepared[start:start + batch_size]
        x = np.stack([item[1] for item in chunk])
        for (path, _, info), prediction in zip(chunk, predict_arrays(model, spec, x, top_k=top_k, device=device),
                                               strict=True):
            results.append({"pattern": path, "model": str(model_dir), **info, **prediction})
    return results


# ---------------------------------------------------------------- writing and printing


def predictions_frame(results: Iterable[dict]) -> pd.DataFrame:
    """One row per pattern and prediction: single-phase rows are the ranks (``rank``, ``space_group``,
    ``symbol``, ``probability``, and per superclass head ``<name>``, ``<name>_consistent``);
    multi-phase rows are the predicted phases (a pattern with none gets one row with empty fields)."""
    rows = []
    for result in results:
        base = {"pattern": result["pattern"], "model": result.get("model"), "kind": result["kind"],
                "measured_fraction": result.get("measured_fraction")}
        if result["kind"] == "single_phase":
            heads = {}
            for name, head in result.get("superclasses", {}).items():
                heads[name] = head["prediction"]
                heads[f"{name}_consistent"] = head["consistent"]
            for entry in result["top_k"]:
                rows.append({**base, **entry, **heads})
        else:
            if not result["phases"]:
                rows.append({**base, "space_group": None, "symbol": None, "probability": None})
            for entry in result["phases"]:
                rows.append({**base, **entry})
    return pd.DataFrame(rows)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def write_predictions(results: list[dict], out) -> Path:
    """Write ``results`` to ``out``: ``.csv`` (:func:`predictions_frame`) or ``.json`` (the full dicts)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".csv":
        data = predictions_frame(results).to_csv(index=False).encode()
    elif suffix == ".json":
        data = (json.dumps(results, indent=2, default=_json_default) + "\n").encode()
    else:
        raise XrdbenchError(f"{out}: --out must end in .csv or .json")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out, data)
    return out


def format_predictions(results: Iterable[dict]) -> str:
    """A human-readable report of ``results``."""
    blocks = []
    for result in results:
        lo, hi = result.get("two_theta_min_deg", float("nan")), result.get("two_theta_max_deg", float("nan"))
        lines = [f"{result['pattern']}: {result.get('n_points', '?')} points, 2θ {lo:.3f}–{hi:.3f}°, "
                 f"{100 * result.get('measured_fraction', 0):.0f}% of the model's grid measured"]
        if result["kind"] == "single_phase":
            lines.append("  rank  space group        probability")
            for entry in result["top_k"]:
                lines.append(f"  {entry['rank']:>4}  {entry['space_group']:>3} {entry['symbol']:<14} "
                             f"{entry['probability']:>10.4f}")
            for name, head in result.get("superclasses", {}).items():
                mark = "consistent with" if head["consistent"] else "DIFFERS from"
                lines.append(f"  {name}: {head['prediction']} (p = {head['probability']:.3f}), {mark} the top-1 "
                             f"space group's {head['from_top1']}")
        else:
            lines.append(f"  predicted phases ({result.get('rule', '')}):" if result["phases"]
                         else f"  no phase predicted ({result.get('rule', '')})")
            for entry in result["phases"]:
                lines.append(f"    {entry['space_group']:>3} {entry['symbol']:<14} {entry['probability']:>8.4f}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


# ---------------------------------------------------------------- command line


def add_predict_command(subparsers) -> argparse.ArgumentParser:
    """Register ``predict PATTERN... --model DIR [--wavelength Å] [--top-k 5] [--out FILE.csv|FILE.json]``.

    ``subparsers`` is the object returned by ``ArgumentParser.add_subparsers``; the
    handler is stored as ``handler`` (and ``threads`` defaults to 1), as in xrdbench.cli.
    """
    help_text = "predict space groups (or phase sets) of measured patterns with a trained model"
    sub = subparsers.add_parser("predict", help=help_text, description=help_text + (
        ". Patterns: two columns, 2θ (degrees) and intensity (a third, esd, is ignored), separated by "
        "whitespace or commas; comment lines start with #, ! or ;."))
    sub.add_argument("patterns", nargs="+", metavar="PATTERN", help="measured pattern files (.xy, .xye, .csv, .txt)")
    sub.add_argument("--model", required=True, metavar="DIR",
                     help="a trained model directory (model.json + best.pt), e.g. results/models/mof/xrdecoupler")
    sub.add_argument("--wavelength", type=float, default=None, metavar="ANGSTROM",
                     help="the patterns' wavelength in Å; converted to the model's through d-spacings when it differs "
                          "(default: taken to be the model's)")
    sub.add_argument("--top-k", type=int, default=5, help="space groups to report per pattern (default 5)")
    sub.add_argument("--out", default=None, metavar="FILE", help="also write the predictions to FILE.csv or FILE.json")
    sub.add_argument("--device", default="cpu", help="torch device (default cpu)")
    sub.set_defaults(handler=run_predict, threads=1)
    return sub


def run_predict(args: argparse.Namespace) -> list[dict]:
    """The ``predict`` handler: print the predictions, and write them to ``--out`` if given."""
    if args.out is not None and Path(args.out).suffix.lower() not in (".csv", ".json"):
        raise XrdbenchError(f"{args.out}: --out must end in .csv or .json")
    results = predict_patterns(args.patterns, args.model, wavelength_angstrom=args.wavelength, top_k=args.top_k,
                               device=args.device)
    print(format_predictions(results))
    if results:
        print(f"\ninput scaling: {results[0]['normalization']}")
    if args.out is not None:
        log.info("predictions -> %s", write_predictions(results, args.out))
    return results
