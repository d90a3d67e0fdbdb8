"""The papers' figures (PNG, matplotlib Agg), drawn only from the pipeline's outputs.

One function per figure, ``plot_xxx(inputs..., out_png) -> Path``; each writes its PNG
atomically (:func:`xrdbench.atomic.atomic_path`) and returns the path. The data each
figure draws comes from a public helper (``spc_frame``, ``confusion_frames``, ...), so it
can be checked without looking at pixels.

Inputs (nothing else is read)::

    results/models/{dataset}/{run}/history.csv             single-phase training (loss_<task>, alpha_<task>)
    results/models/{dataset}/xrdecoupler/{model.json,best.pt}   t-SNE of the shared representation
    results/datasets/{dataset}/{split}.zarr                 x, phase_space_group (t-SNE sample)
    results/eval/{dataset}/{run}/{split}.json               single-phase metrics (``spc``)
    results/eval/{dataset}/{run}/{split}.predictions.parquet    target, pred_1 (confusion)
    results/models/multiphase/{run}/history.csv             step, val_micro_f1, slot_diversity
    results/eval/multiphase/{run}/{split}.json              multi-phase metrics (``strata``)

Figures (see :data:`FIGURES` for their captions): ``mgda_losses`` (XRDecoupler Fig. 4
left/middle), ``spc_bars`` (Fig. 2), ``tsne`` (Fig. 4 right), ``confusion_family``
(Fig. 1 style), ``val_f1_curves`` (latent-phase Fig. A1), ``slot_diversity`` (Fig. A2)
and ``stratified`` (Fig. A3). :func:`write_all_figures` draws every figure whose inputs
exist and skips the others.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from xrdbench.atomic import atomic_path
from xrdbench.errors import XrdbenchError
from xrdbench.evaluate.single_phase import FIGURE1_FAMILY, SPC_PROPERTIES, confusion_family
from xrdbench.report.tables import MODELS, MULTIPHASE_MODELS, MULTIPHASE_SPLITS

__all__ = [
    "CRYSTAL_SYSTEMS",
    "FIGURES",
    "FigureInputError",
    "confusion_frames",
    "loss_curves",
    "plot_confusion_family",
    "plot_mgda_losses",
    "plot_slot_diversity",
    "plot_spc_bars",
    "plot_stratified",
    "plot_tsne",
    "plot_val_f1_curves",
    "spc_frame",
    "stratified_frame",
    "tsne_embedding",
    "write_all_figures",
]

PathLike = str | os.PathLike

#: Figure name → caption (the same text as ``workflow/report/{name}.rst``, for Snakemake ``report()``).
FIGURES: dict[str, str] = {
    "mgda_losses": (
        "Training loss of each task (space group and the superclasses) per epoch for XRDecoupler, "
        "trained with a fixed weighted sum of the task losses (left, no MGDA) and with MGDA-UB "
        "task weights (right), as in Figure 4 (left, middle) of the XRDecoupler paper. Without "
        "MGDA the coarse superclasses are learned first and the space group and point group "
        "later; with MGDA the tasks should descend together."),
    "spc_bars": (
        "Sub-property confusion (Figure 2 of the XRDecoupler paper): among the test samples "
        "whose space group is predicted wrongly (top-1), the share whose lattice type (centring "
        "letter), Bravais lattice, crystal system and point group are nevertheless right, for "
        "each model. The legend gives each model's number of wrong predictions; a missing bar "
        "means the model made no wrong prediction."),
    "tsne": (
        "t-SNE of XRDecoupler's shared representation (the embedding fed to every task head) on "
        "a random sample of the training split, coloured by crystal system, as in Figure 4 "
        "(right) of the XRDecoupler paper (which colours by space group). Sample size, "
        "perplexity and seed are given in the title."),
    "confusion_family": (
        "Confusion among the easily confused tetragonal space groups I4, I-4, P4 and P-4 "
        "(Figure 1 of the XRDecoupler paper) on the test split, one matrix per model: rows "
        "are the true space group, columns the top-1 prediction, with predictions outside the "
        "family under 'other'. Cells show counts and are shaded by the share of their row. A "
        "model with no test sample in the family shows an empty matrix."),
    "val_f1_curves": (
        "Validation micro-F1 against training step for the multi-phase models: the "
        "multi-label presence models (CNN, Transformer) and the phase-clustered Transformer, "
        "as in Figure A1 of the latent-phase paper."),
    "slot_diversity": (
        "Slot diversity of the phase-clustered Transformer during training: the mean absolute "
        "cosine similarity between distinct latent phase slots (lower means more distinct "
        "slots), as in Figure A2 of the latent-phase paper."),
    "stratified": (
        "Multi-phase metrics stratified by the number of phases K (x axis) and by whether the "
        "smallest phase fraction is at most 10% (dashed) or above (solid), on the in-library "
        "(left) and out-of-library test (right) splits, as in Figure A3 of the latent-phase "
        "paper. Rows: micro-F1 at the split's chosen threshold, cover@K* and recall@K*. The "
        "phase-clustered model is shown at its best slot gate. Strata with few samples are noisy."),
}

#: Crystal systems in order of increasing symmetry (fixed colours in the t-SNE).
CRYSTAL_SYSTEMS = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic")
#: SPC properties in the bars' order, with their axis labels.
SPC_LABELS = {"lattice_type": "lattice type", "bravais_lattice": "Bravais lattice",
              "crystal_system": "crystal system", "point_group": "point group"}
#: Multi-phase strata metrics: key → label.
STRATA_METRICS = {"micro_f1": "micro-F1", "cover@K*": "cover@K*", "recall@K*": "recall@K*"}
#: Task order of the loss curves (others follow in alphabetical order).
TASK_ORDER = ("space_group", "crystal_system", "lattice_system", "bravais_lattice", "centring", "point_group",
              "arithmetic_class", "laue_class")


class FigureInputError(XrdbenchError, ValueError):
    """A figure's input is unreadable or lacks what the figure needs; the message names the file."""


# ---------------------------------------------------------------- plumbing


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, out_png: PathLike, rect=None) -> Path:
    """Lay out ``figure`` (within ``rect``), write it as PNG atomically, close it, return the path."""
    out = Path(out_png)
    try:
        figure.tight_layout(rect=rect)
        with atomic_path(out) as tmp:
            figure.savefig(tmp, dpi=130, format="png")
    finally:
        _pyplot().close(figure)
    return out


def _name(source) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else "<data>"


def _read_history(source, required: Sequence[str]) -> pd.DataFrame:
    """A history as a DataFrame, from a CSV path or a DataFrame, with ``required`` columns."""
    if isinstance(source, pd.DataFrame):
        frame = source
    else:
        try:
            frame = pd.read_csv(source)
        except (OSError, ValueError) as error:
            raise FigureInputError(f"{source}: cannot read history: {error}") from error
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise FigureInputError(f"{_name(source)}: history lacks column(s) {missing}; has {list(frame.columns)}")
    return frame


def _read_json(source) -> dict:
    if isinstance(source, Mapping):
        return dict(source)
    try:
        return json.loads(Path(source).read_text())
    except (OSError, ValueError) as error:
        raise FigureInputError(f"{source}: cannot read evaluation JSON: {error}") from error


def _task_label(task: str) -> str:
    return task.replace("_", " ")


def _ordered_tasks(tasks) -> list[str]:
    tasks = list(tasks)
    known = [t for t in TASK_ORDER if t in tasks]
    return known + sorted(t for t in tasks if t not in TASK_ORDER)


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(n, max_cols)
    return -(-n // cols), cols


# ---------------------------------------------------------------- 1. MGDA losses (Fig. 4 left/middle)


def loss_curves(history) -> pd.DataFrame:
    """Per-task training loss by epoch: index ``epoch``, one column per task (``loss_`` stripped), task order."""
    frame = _read_history(history, ("epoch",))
    columns = [c for c in frame.columns if c.startswith("loss_")]
    if not columns:
        raise FigureInputError(f"{_name(history)}: history has no loss_<task> column; has {list(frame.columns)}")
    curves = frame.set_index("epoch")[columns].rename(columns=lambda c: c[len("loss_"):])
    return curves[_ordered_tasks(curves.columns)]


def plot_mgda_losses(mgda_history, fixed_history, out_png: PathLike, *,
                     titles: tuple[str, str] = ("without MGDA (fixed task weights)", "with MGDA-UB")) -> Path:
    """Per-task training loss vs epoch, without MGDA (left) and with MGDA (right), shared y axis.

    ``mgda_history`` is the ``xrdecoupler`` run's history (path or DataFrame),
    ``fixed_history`` the ``xrdecoupler_fixed_weights`` run's; either may be ``None``, and
    its panel then says so. A task keeps its colour in both panels.
    """
    if mgda_history is None and fixed_history is None:
        raise FigureInputError("plot_mgda_losses: neither history was given")
    panels = [(titles[0], None if fixed_history is None else loss_curves(fixed_history)),
              (titles[1], None if mgda_history is None else loss_curves(mgda_history))]
    tasks = _ordered_tasks({t for _, c in panels if c is not None for t in c.columns})
    colours = {task: f"C{i % 10}" for i, task in enumerate(tasks)}
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for axis, (title, curves) in zip(axes, panels):
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("epoch")
        if curves is None:
            axis.text(0.5, 0.5, "run not available", transform=axis.transAxes, ha="center", va="center",
                      color="0.4")
            continue
        for task in curves.columns:
            axis.plot(curves.index, curves[task], color=colours[task], lw=1.4, label=_task_label(task))
        axis.grid(alpha=0.3)
        axis.legend(title="task", fontsize=8, title_fontsize=8)
    axes[0].set_ylabel("training loss (cross-entropy)")
    figure.suptitle("XRDecoupler training loss per task", fontsize=11)
    return _save(figure, out_png)


# ---------------------------------------------------------------- 2. SPC bars (Fig. 2)


def spc_frame(eval_jsons: Mapping[str, object]) -> pd.DataFrame:
    """The SPC accuracies: index model (the mapping's keys, in order), columns the SPC properties
    (``lattice_type``, ``bravais_lattice``, ``crystal_system``, ``point_group``) as fractions
    (NaN where the model made no wrong prediction), plus ``n_wrong`` and ``n_samples``."""
    rows = {}
    for model, source in eval_jsons.items():
        data = _read_json(source)
        spc = data.get("spc")
        if not isinstance(spc, Mapping) or any(p not in spc for p in SPC_PROPERTIES) or "n_wrong" not in spc:
            raise FigureInputError(f"{_name(source)}: no complete 'spc' entry (expected keys n_wrong, "
                                   f"{', '.join(SPC_PROPERTIES)})")
        row = {}
        for prop in SPC_PROPERTIES:
            accuracy = spc[prop].get("accuracy")
            row[prop] = np.nan if accuracy is None else float(accuracy)
        row["n_wrong"] = int(spc["n_wrong"])
        row["n_samples"] = int(spc.get("n_samples", data.get("n_samples", -1)))
        rows[model] = row
    return pd.DataFrame.from_dict(rows, orient="index", columns=[*SPC_PROPERTIES, "n_wrong", "n_samples"])


def plot_spc_bars(eval_jsons: Mapping[str, object], out_png: PathLike, *, title: str | None = None) -> Path:
    """Grouped bars: per SPC property, per model (the mapping's keys, display names), the share (%)
    of wrongly classified samples whose property is right. Values come from each JSON's ``spc``."""
    if not eval_jsons:
        raise FigureInputError("plot_spc_bars: no evaluation JSON given")
    frame = spc_frame(eval_jsons)
    props = list(SPC_PROPERTIES)
    n_models = len(frame)
    width = 0.8 / n_models
    positions = np.arange(len(props))
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(max(7, 1.6 * len(props) + 0.5 * n_models), 4.6 + 0.2 * (n_models // 3)))
    for i, (model, row) in enumerate(frame.iterrows()):
        heights = 100.0 * row[props].to_numpy(dtype=float)
        offset = positions + (i - (n_models - 1) / 2) * width
        bars = axis.bar(offset, heights, width=width * 0.95, color=f"C{i % 10}",
                        label=f"{model} ({int(row['n_wrong'])} wrong of {int(row['n_samples'])})")
        for bar, height in zip(bars, heights):
            text = "n/a" if np.isnan(height) else f"{height:.0f}"
            axis.text(bar.get_x() + bar.get_width() / 2, 0 if np.isnan(height) else height, text,
                      ha="center", va="bottom", fontsize=7)
    axis.set_xticks(positions, [SPC_LABELS[p] for p in props])
    axis.set_ylim(0, 110)
    axis.set_ylabel("right despite wrong space group (%)")
    axis.set_title(title or "Sub-property confusion: wrong space-group predictions, by property", fontsize=10)
    axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=min(n_models, 3), frameon=False)
    axis.grid(axis="y", alpha=0.3)
    return _save(figure, out_png)


# ---------------------------------------------------------------- 3. t-SNE (Fig. 4 right)


def _perplexity(n: int, wanted: float = 30.0) -> float:
    """sklearn needs perplexity < n; keep about 3 neighbours per unit of perplexity for small n."""
    return float(max(1.0, min(wanted, (n - 1) / 3.0)))


def tsne_embedding(model_dir: PathLike, split_path: PathLike, n: int = 3000, *, seed: int = 0,
                   batch_size: int = 256, device: str = "cpu", perplexity: float = 30.0) -> pd.DataFrame:
    """2-D t-SNE of the model's shared representation on ``n`` random rows of a split.

    Returns columns ``row`` (the split's row index), ``tsne_1``, ``tsne_2``, ``space_group`` and
    ``crystal_system``; ``attrs["perplexity"]`` holds the perplexity used (adapted to small n).
    The sample (``numpy.random.default_rng(seed)``, without replacement, all rows when the
    split is smaller than ``n``) and t-SNE (``random_state=seed``) are deterministic.
    """
    import torch
    import zarr
    from sklearn.manifold import TSNE

    from xrdbench.symmetry import space_group_table
    from xrdbench.train.checkpoint import load_model

    if n < 2:
        raise ValueError(f"tsne_embedding: n must be at least 2, got {n}")
    try:
        group = zarr.open_group(str(split_path), mode="r")
        x_array, labels_array = group["x"], group["phase_space_group"]
    except Exception as error:  # zarr raises several types for a missing or broken store
        raise FigureInputError(f"{split_path}: not a dataset split with 'x' and 'phase_space_group': {error}") \
            from error
    total = int(x_array.shape[0])
    if total < 2:
        raise FigureInputError(f"{split_path}: {total} row(s), t-SNE needs at least 2")
    rows = np.sort(np.random.default_rng(seed).choice(total, size=min(n, total), replace=False))
    x = np.asarray(x_array.get_orthogonal_selection((rows, slice(None))), dtype=np.float32)
    space_group = np.asarray(labels_array.get_orthogonal_selection((rows, 0)), dtype=np.int64)
    model, spec = load_model(model_dir, device=device)
    scale = float(spec.get("input_scale", 1.0))
    chunks = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch = torch.from_numpy(x[start:start + batch_size]).to(device) * scale
            out = model(batch, return_embedding=True)
            if not isinstance(out, Mapping) or "embedding" not in out:
                raise FigureInputError(f"{model_dir}: model {spec.get('model')!r} returns no 'embedding'")
            chunks.append(out["embedding"].detach().float().cpu().numpy().reshape(len(batch), -1))
    embedding = np.concatenate(chunks)
    used = _perplexity(len(rows), perplexity)
    points = TSNE(n_components=2, perplexity=used, init="pca", random_state=seed).fit_transform(embedding)
    systems = space_group_table()["crystal_system"].reindex(space_group).astype(object).to_numpy()
    frame = pd.DataFrame({"row": rows, "tsne_1": points[:, 0], "tsne_2": points[:, 1],
                          "space_group": space_group, "crystal_system": systems})
    frame.attrs["perplexity"] = used
    return frame


def plot_tsne(model_dir: PathLike, split_path: PathLike, out_png: PathLike, n: int = 3000, *, seed: int = 0,
              device: str = "cpu", title: str | None = None) -> Path:
    """t-SNE of XRDecoupler's shared representation on ``n`` random rows of a split, coloured by
    crystal system (see :func:`tsne_embedding`)."""
    frame = tsne_embedding(model_dir, split_path, n, seed=seed, device=device)
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(8, 5.5))
    for i, system in enumerate(CRYSTAL_SYSTEMS):
        chosen = frame[frame["crystal_system"] == system]
        if len(chosen):
            axis.scatter(chosen["tsne_1"], chosen["tsne_2"], s=6, alpha=0.7, color=f"C{i}", lw=0,
                         label=f"{system} ({len(chosen)})")
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_xlabel("t-SNE 1")
    axis.set_ylabel("t-SNE 2")
    split = Path(split_path).name.removesuffix(".zarr")
    axis.set_title(title or f"XRDecoupler shared representation, t-SNE of {len(frame)} {split} samples\n"
                   f"(perplexity {frame.attrs['perplexity']:.3g}, seed {seed})", fontsize=10)
    axis.legend(title="crystal system", fontsize=8, title_fontsize=8, markerscale=2.5,
                loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _save(figure, out_png)


# ---------------------------------------------------------------- 7. confusion within a family (Fig. 1)


def confusion_frames(predictions: Mapping[str, object],
                     groups: Sequence[int] = FIGURE1_FAMILY) -> dict[str, pd.DataFrame]:
    """Per model (the mapping's keys), :func:`confusion_family` of ``target`` vs ``pred_1`` from its
    predictions parquet (path or DataFrame); an empty table gives the all-zero matrix."""
    out = {}
    for model, source in predictions.items():
        if isinstance(source, pd.DataFrame):
            frame = source
        else:
            try:
                frame = pd.read_parquet(source, columns=["target", "pred_1"])
            except Exception as error:  # pyarrow raises its own types for missing columns or files
                raise FigureInputError(f"{source}: cannot read target, pred_1: {error}") from error
        if len(frame):
            matrix = confusion_family(frame["target"].to_numpy(), frame["pred_1"].to_numpy(), groups)
        else:
            matrix = confusion_family(np.array([1]), np.array([1]), groups) * 0  # labels only, no counts
        out[model] = matrix
    return out


def plot_confusion_family(predictions: Mapping[str, object], out_png: PathLike, *,
                          groups: Sequence[int] = FIGURE1_FAMILY, split: str = "test") -> Path:
    """One confusion matrix per model within a space-group family (default I4, I-4, P4, P-4):
    rows true, columns top-1 predicted plus ``other``; counts written in the cells, shading by
    row share. A model with no sample in the family gets an empty matrix and says so."""
    if not predictions:
        raise FigureInputError("plot_confusion_family: no predictions given")
    matrices = confusion_frames(predictions, groups)
    n_rows, n_cols = _grid(len(matrices))
    plt = _pyplot()
    figure, axes = plt.subplots(n_rows, n_cols, figsize=(4.3 * n_cols, 3.9 * n_rows), squeeze=False)
    for axis in axes.flat[len(matrices):]:
        axis.set_visible(False)
    family = ", ".join(next(iter(matrices.values())).index)
    for axis, (model, matrix) in zip(axes.flat, matrices.items()):
        counts = matrix.to_numpy()
        totals = counts.sum(axis=1, keepdims=True)
        share = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
        axis.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        for (i, j), count in np.ndenumerate(counts):
            axis.text(j, i, str(count), ha="center", va="center", fontsize=9,
                      color="white" if share[i, j] > 0.6 else "black")
        axis.set_xticks(range(counts.shape[1]), list(matrix.columns))
        axis.set_yticks(range(counts.shape[0]), list(matrix.index))
        axis.set_xlabel("predicted (top-1)")
        axis.set_ylabel("true space group")
        n = int(counts.sum())
        if n == 0:
            axis.set_title(f"{model}: no {split} samples in this family", fontsize=10)
        else:
            right = int(np.trace(counts[:, :counts.shape[0]]))
            axis.set_title(f"{model}: {right}/{n} right", fontsize=10)
    figure.suptitle(f"Confusion within {family} ({split} split)", fontsize=11)
    return _save(figure, out_png)


# ---------------------------------------------------------------- 4. and 5. multi-phase training curves


def plot_val_f1_curves(histories: Mapping[str, object], out_png: PathLike) -> Path:
    """Validation micro-F1 against step, one line per multi-phase run (mapping key = display name).
    Rows without a validation value (NaN) are skipped."""
    if not histories:
        raise FigureInputError("plot_val_f1_curves: no history given")
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.2))
    for i, (model, source) in enumerate(histories.items()):
        frame = _read_history(source, ("step", "val_micro_f1")).dropna(subset=["val_micro_f1"])
        axis.plot(frame["step"], frame["val_micro_f1"], color=f"C{i % 10}", lw=1.4, marker=".", ms=3,
                  label=model)
    axis.set_xlabel("training step")
    axis.set_ylabel("validation micro-F1")
    axis.set_title("Multi-phase models: validation micro-F1 during training", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return _save(figure, out_png)


def plot_slot_diversity(history, out_png: PathLike, *, model: str = "Phase-cluster (Transformer)") -> Path:
    """Slot diversity (mean absolute cosine similarity between distinct slots) against step."""
    frame = _read_history(history, ("step", "slot_diversity")).dropna(subset=["slot_diversity"])
    if frame.empty:
        raise FigureInputError(f"{_name(history)}: no slot_diversity value")
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.2))
    axis.plot(frame["step"], frame["slot_diversity"], color="C2", lw=1.4, label=model)
    axis.set_xlabel("training step")
    axis.set_ylabel("mean |cosine similarity| between slots\n(lower = more diverse)")
    axis.set_ylim(bottom=0)
    axis.set_title(f"{model}: slot diversity during training", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return _save(figure, out_png)


# ---------------------------------------------------------------- 6. stratified multi-phase metrics (Fig. A3)


def stratified_frame(eval_jsons: Mapping[str, Mapping[str, object]], *, gate: str = "best_gate") -> pd.DataFrame:
    """The ``strata`` of every multi-phase evaluation as one table.

    ``eval_jsons`` maps a model's display name to ``{split: JSON path or dict}``. Slot runs
    (with ``best_gate`` / ``fixed_gate``) are read at ``gate``. Columns: ``model``, ``split``,
    ``k``, ``min_fraction_le_10pct``, ``n_samples`` and the :data:`STRATA_METRICS` keys.
    """
    rows = []
    for model, splits in eval_jsons.items():
        for split, source in splits.items():
            data = _read_json(source)
            if "strata" not in data and gate in data:
                data = data[gate]
            strata = data.get("strata")
            if not isinstance(strata, list):
                raise FigureInputError(f"{_name(source)}: no 'strata' list (nor under {gate!r})")
            for stratum in strata:
                missing = [key for key in ("k", "min_fraction_le_10pct", *STRATA_METRICS) if key not in stratum]
                if missing:
                    raise FigureInputError(f"{_name(source)}: a stratum lacks {missing}")
                rows.append({"model": model, "split": split, "k": int(stratum["k"]),
                             "min_fraction_le_10pct": bool(stratum["min_fraction_le_10pct"]),
                             "n_samples": int(stratum.get("n_samples", 0)),
                             **{key: float(stratum[key]) for key in STRATA_METRICS}})
    return pd.DataFrame(rows, columns=["model", "split", "k", "min_fraction_le_10pct", "n_samples",
                                       *STRATA_METRICS])


def plot_stratified(eval_jsons: Mapping[str, Mapping[str, object]], out_png: PathLike, *,
                    splits: Mapping[str, str] = MULTIPHASE_SPLITS, gate: str = "best_gate") -> Path:
    """Multi-phase metrics (rows: micro-F1, cover@K*, recall@K*) against K, per split (columns:
    in-library, out-of-library), one colour per model; solid: smallest phase fraction > 10 %,
    dashed: ≤ 10 %. ``eval_jsons`` as in :func:`stratified_frame`."""
    frame = stratified_frame(eval_jsons, gate=gate)
    if frame.empty:
        raise FigureInputError("plot_stratified: no strata in the given evaluations")
    split_keys = [s for s in splits if s in set(frame["split"])] + \
        sorted(set(frame["split"]) - set(splits))
    models = list(eval_jsons)
    plt = _pyplot()
    figure, axes = plt.subplots(len(STRATA_METRICS), len(split_keys), figsize=(5.2 * len(split_keys), 8.4),
                                squeeze=False, sharex=True, sharey="row")
    for col, split in enumerate(split_keys):
        for row, (metric, label) in enumerate(STRATA_METRICS.items()):
            axis = axes[row, col]
            for i, model in enumerate(models):
                for low, style in ((False, "-"), (True, "--")):
                    chosen = frame[(frame["model"] == model) & (frame["split"] == split)
                                   & (frame["min_fraction_le_10pct"] == low)].sort_values("k")
                    if len(chosen):
                        axis.plot(chosen["k"], chosen[metric], style, marker="o", ms=3, color=f"C{i % 10}",
                                  label=f"{model}, min fraction {'≤' if low else '>'} 10%")
            axis.grid(alpha=0.3)
            if col == 0:
                axis.set_ylabel(label)
            if row == 0:
                axis.set_title(f"{splits.get(split, split)} ({split})", fontsize=10)
            if row == len(STRATA_METRICS) - 1:
                axis.set_xlabel("number of phases K")
    ks = sorted(set(frame["k"]))
    axes[-1, 0].set_xticks(ks)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    for axis in axes.flat:  # a legend entry for every model and stratum drawn anywhere
        for handle, label in zip(*axis.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    figure.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    figure.suptitle("Multi-phase metrics by number of phases and smallest phase fraction", fontsize=11)
    return _save(figure, out_png, rect=(0, 0.04 + 0.025 * ((len(labels) + 1) // 2), 1, 1))


# ---------------------------------------------------------------- everything


def write_all_figures(results_dir: PathLike, out_dir: PathLike, *, train_dataset: str = "mof",
                      eval_dataset: str = "mof", split: str = "test", tsne_split: str = "train",
                      tsne_n: int = 3000, seed: int = 0, device: str = "cpu") -> list[Path]:
    """Draw ``{out_dir}/{name}.png`` for every figure of :data:`FIGURES` whose inputs exist under
    ``results_dir`` (laid out as in the module docstring); skip the others. Returns the paths
    written, in :data:`FIGURES` order. A figure with some of its models missing shows the rest."""
    results, out = Path(results_dir), Path(out_dir)
    models_dir, eval_dir = results / "models", results / "eval"
    written: list[Path] = []

    mgda = models_dir / train_dataset / "xrdecoupler" / "history.csv"
    fixed = models_dir / train_dataset / "xrdecoupler_fixed_weights" / "history.csv"
    if mgda.is_file() or fixed.is_file():
        written.append(plot_mgda_losses(mgda if mgda.is_file() else None, fixed if fixed.is_file() else None,
                                        out / "mgda_losses.png"))

    spc = {name: eval_dir / eval_dataset / run / f"{split}.json" for run, name in MODELS}
    spc = {name: path for name, path in spc.items() if path.is_file()}
    if spc:
        written.append(plot_spc_bars(spc, out / "spc_bars.png"))

    model_dir = models_dir / train_dataset / "xrdecoupler"
    split_path = results / "datasets" / train_dataset / f"{tsne_split}.zarr"
    if (model_dir / "model.json").is_file() and (model_dir / "best.pt").is_file() and split_path.is_dir():
        written.append(plot_tsne(model_dir, split_path, out / "tsne.png", tsne_n, seed=seed, device=device))

    parquets = {name: eval_dir / eval_dataset / run / f"{split}.predictions.parquet" for run, name in MODELS}
    parquets = {name: path for name, path in parquets.items() if path.is_file()}
    if parquets:
        written.append(plot_confusion_family(parquets, out / "confusion_family.png", split=split))

    histories = {name: models_dir / "multiphase" / run / "history.csv" for run, name in MULTIPHASE_MODELS}
    histories = {name: path for name, path in histories.items() if path.is_file()}
    if histories:
        written.append(plot_val_f1_curves(histories, out / "val_f1_curves.png"))

    slot_history = models_dir / "multiphase" / "phase_cluster_transformer" / "history.csv"
    if slot_history.is_file():
        written.append(plot_slot_diversity(slot_history, out / "slot_diversity.png"))

    strata = {name: {s: eval_dir / "multiphase" / run / f"{s}.json" for s in MULTIPHASE_SPLITS}
              for run, name in MULTIPHASE_MODELS}
    strata = {name: {s: p for s, p in splits.items() if p.is_file()} for name, splits in strata.items()}
    strata = {name: splits for name, splits in strata.items() if splits}
    if strata:
        written.append(plot_stratified(strata, out / "stratified.png"))

    order = {name: i for i, name in enumerate(FIGURES)}
    return sorted(written, key=lambda path: order[path.stem])
