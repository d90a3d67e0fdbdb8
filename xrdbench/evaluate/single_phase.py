"""Single-phase space-group metrics: top-k, macro F1/recall, superclasses, SPC, confusion.

Pure functions on numpy arrays. Conventions used throughout:

* Space groups are the integers 1-230. A score matrix has shape ``(N, 230)``
  and column ``g - 1`` holds the score of space group ``g``.
* Scores may be logits or probabilities for the ranking metrics (ranking is
  invariant to softmax); :func:`predictions_frame` says which it assumes.
* Ties in the ranking are broken deterministically by the order of
  ``np.argsort(-scores, axis=1, kind="stable")``: among equal scores the lower
  space-group number ranks first. (scikit-learn's ``top_k_accuracy_score``
  breaks ties the other way, so the two agree exactly only without ties.)
* Macro averages (F1, recall) run over the classes present in the targets or
  in the predictions; classes absent from both are excluded. A class that is
  predicted but never true is included and scores 0 (recall 0/0 := 0).
* The "lattice type" of the SPC analysis (Figure 2 of the XRDecoupler paper)
  is the centring letter (P, A, C, I, F, R); the Bravais lattice (e.g. tI) is
  reported beside it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from xrdbench.symmetry import SUPERCLASSES, space_group_table, superclass_index

N_SPACE_GROUPS = 230

#: The Figure 1 family of the XRDecoupler paper: I4, I-4, P4, P-4
#: (numbers checked against ``space_group_table().international_short``).
FIGURE1_FAMILY = (79, 82, 75, 81)

#: SPC properties: output key → column of the space-group table.
SPC_PROPERTIES = {
    "lattice_type": "centring",
    "bravais_lattice": "bravais_lattice",
    "crystal_system": "crystal_system",
    "point_group": "point_group",
}

__all__ = [
    "FIGURE1_FAMILY",
    "N_SPACE_GROUPS",
    "SPC_PROPERTIES",
    "confusion",
    "confusion_family",
    "evaluate_single_phase",
    "head_accuracy",
    "macro_f1",
    "macro_recall",
    "predictions_frame",
    "ranked_space_groups",
    "softmax",
    "spc_analysis",
    "superclass_accuracy",
    "superclass_labels",
    "top_k_accuracy",
]


# ---------------------------------------------------------------- validation and lookups


def _space_groups(values, name: str = "space groups") -> np.ndarray:
    """1-D int64 array of space-group numbers in 1..230."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.issubdtype(array.dtype, np.integer):
        if np.issubdtype(array.dtype, np.floating) and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
            array = array.astype(np.int64)
        else:
            raise ValueError(f"{name} must be integers 1-{N_SPACE_GROUPS}, got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    if array.min() < 1 or array.max() > N_SPACE_GROUPS:
        raise ValueError(f"{name} must lie in 1..{N_SPACE_GROUPS}, got range {array.min()}..{array.max()}")
    return array


def _pair(target, predicted, name_t: str = "target", name_p: str = "predicted"):
    t = np.asarray(target)
    p = np.asarray(predicted)
    if t.ndim != 1 or p.ndim != 1:
        raise ValueError(f"{name_t} and {name_p} must be 1-D, got shapes {t.shape} and {p.shape}")
    if t.shape != p.shape:
        raise ValueError(f"{name_t} and {name_p} differ in length: {t.shape[0]} vs {p.shape[0]}")
    if t.size == 0:
        raise ValueError(f"{name_t} is empty")
    return t, p


def _scores(scores, n: int | None = None) -> np.ndarray:
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != N_SPACE_GROUPS:
        raise ValueError(f"scores must have shape (N, {N_SPACE_GROUPS}), got {array.shape}")
    if array.shape[0] == 0:
        raise ValueError("scores is empty")
    if n is not None and array.shape[0] != n:
        raise ValueError(f"scores has {array.shape[0]} rows but target has {n} entries")
    if not np.all(np.isfinite(array)):
        raise ValueError("scores contain NaN or infinite values")
    return array


@functools.cache
def _lookup(column: str) -> np.ndarray:
    """Array of length 231: entry g is the value of ``column`` for space group g (entry 0 unused)."""
    table = space_group_table()
    if column not in table.columns:
        raise KeyError(f"unknown column {column!r}; expected one of {tuple(table.columns)}")
    values = table[column].reindex(range(1, N_SPACE_GROUPS + 1))
    out = np.empty(N_SPACE_GROUPS + 1, dtype=object)
    out[0] = None
    out[1:] = [str(v) for v in values]
    return out


def superclass_labels(space_groups, name: str) -> np.ndarray:
    """Superclass value (a string, e.g. ``"tetragonal"``) of each space group.

    ``name`` is one of ``SUPERCLASSES`` (or any column of the space-group table).
    """
    if name not in SUPERCLASSES and name != "international_short":
        raise KeyError(f"unknown superclass {name!r}; expected one of {SUPERCLASSES}")
    return _lookup(name)[_space_groups(space_groups)]


# ---------------------------------------------------------------- ranking


def ranked_space_groups(scores, k: int | None = None) -> np.ndarray:
    """Space groups (1-230) ranked best first for each row, ``(N, k)``.

    Ties: the order of ``np.argsort(-scores, axis=1, kind="stable")``, i.e. the
    lower space-group number first among equal scores.
    """
    array = _scores(scores)
    order = np.argsort(-array, axis=1, kind="stable")
    if k is not None:
        if not 1 <= k <= N_SPACE_GROUPS:
            raise ValueError(f"k must lie in 1..{N_SPACE_GROUPS}, got {k}")
        order = order[:, :k]
    return order + 1


def top_k_accuracy(scores, target, k: int) -> float:
    """Fraction of samples whose target space group is among the ``k`` best-scored.

    ``scores`` is ``(N, 230)`` (column g-1 for group g; logits or probabilities),
    ``target`` holds space groups 1-230. Ties are broken by the order of
    ``np.argsort(-scores, axis=1, kind="stable")`` (lower group number first).
    """
    target = _space_groups(target, "target")
    top = ranked_space_groups(_scores(scores, target.shape[0]), k)
    return float(np.mean(np.any(top == target[:, None], axis=1)))


# ---------------------------------------------------------------- macro metrics


def _per_class_counts(target, predicted):
    t, p = _pair(target, predicted)
    labels = np.union1d(t, p)  # classes present in target or predicted; the rest are excluded
    t_idx = np.searchsorted(labels, t)
    p_idx = np.searchsorted(labels, p)
    n = labels.shape[0]
    true_count = np.bincount(t_idx, minlength=n)
    pred_count = np.bincount(p_idx, minlength=n)
    tp = np.bincount(t_idx[t_idx == p_idx], minlength=n)
    return labels, tp, true_count, pred_count


def macro_f1(target, predicted) -> float:
    """Unweighted mean of per-class F1 over the classes present in ``target`` or ``predicted``.

    Classes absent from both targets and predictions are excluded from the macro
    average. A class predicted but never true (or true but never predicted) is
    included with F1 = 0. Equal to scikit-learn's
    ``f1_score(target, predicted, average="macro", labels=np.union1d(target, predicted), zero_division=0)``.
    """
    _, tp, true_count, pred_count = _per_class_counts(target, predicted)
    denominator = true_count + pred_count  # = 2TP + FP + FN, > 0 for every class in the union
    return float(np.mean(2.0 * tp / denominator))


def macro_recall(target, predicted) -> float:
    """Unweighted mean of per-class recall over the classes present in ``target`` or ``predicted``.

    Classes absent from both targets and predictions are excluded from the macro
    average. A class predicted but never true is included with recall 0 (0/0
    taken as 0). Equal to scikit-learn's
    ``recall_score(target, predicted, average="macro", labels=np.union1d(target, predicted), zero_division=0)``.
    """
    _, tp, true_count, _ = _per_class_counts(target, predicted)
    recall = np.divide(tp, true_count, out=np.zeros(tp.shape, dtype=np.float64), where=true_count > 0)
    return float(np.mean(recall))


def n_classes_in_average(target, predicted) -> int:
    """Number of classes the macro averages run over (present in target or predicted)."""
    t, p = _pair(target, predicted)
    return int(np.union1d(t, p).shape[0])


# ---------------------------------------------------------------- superclasses


def superclass_accuracy(target_sg, predicted_sg, name: str) -> float:
    """Accuracy on superclass ``name`` derived from space groups (single-head models).

    Both the target and the predicted space group are mapped through
    :func:`xrdbench.symmetry.space_group_table`; e.g. predicting 226 (Fm-3c)
    for 225 (Fm-3m) is right on every superclass, while predicting 229 (Im-3m)
    for 225 is right on crystal system and point group but wrong on centring.
    """
    t, p = _pair(target_sg, predicted_sg, "target_sg", "predicted_sg")
    return float(np.mean(superclass_labels(t, name) == superclass_labels(p, name)))


def head_accuracy(target_codes, predicted_codes) -> float:
    """Plain accuracy of a superclass head: the fraction of equal entries."""
    t, p = _pair(target_codes, predicted_codes, "target_codes", "predicted_codes")
    return float(np.mean(t == p))


def _head_targets(target_sg: np.ndarray, name: str, predicted: np.ndarray) -> np.ndarray:
    """Targets for a head in the form of its predictions: codes (``superclass_index``) or labels."""
    labels = superclass_labels(target_sg, name)
    if np.issubdtype(predicted.dtype, np.integer):
        index = superclass_index(name)
        return np.array([index[label] for label in labels], dtype=np.int64)
    return labels


# ---------------------------------------------------------------- SPC


def spc_analysis(target_sg, predicted_sg) -> dict:
    """Sub-property confusion analysis (Figure 2 of the XRDecoupler paper).

    Among the samples whose space group is wrong, the share whose lattice type
    (centring letter, the authors' "lattice type"), Bravais lattice, crystal
    system and point group are nevertheless right. Returns
    ``{"n_samples", "n_wrong", "lattice_type_column", <property>: {"n_correct", "accuracy"}}``
    for each key of ``SPC_PROPERTIES``; ``accuracy`` is ``None`` when no
    sample is wrong.
    """
    t, p = _pair(target_sg, predicted_sg, "target_sg", "predicted_sg")
    t = _space_groups(t, "target_sg")
    p = _space_groups(p, "predicted_sg")
    wrong = t != p
    n_wrong = int(wrong.sum())
    out: dict = {"n_samples": int(t.shape[0]), "n_wrong": n_wrong, "lattice_type_column": "centring"}
    for key, column in SPC_PROPERTIES.items():
        n_correct = int(np.sum(_lookup(column)[t[wrong]] == _lookup(column)[p[wrong]])) if n_wrong else 0
        out[key] = {"n_correct": n_correct, "accuracy": (n_correct / n_wrong) if n_wrong else None}
    return out


# ---------------------------------------------------------------- confusion


def confusion(target, predicted, labels) -> np.ndarray:
    """``(len(labels), len(labels))`` int confusion matrix, rows true, columns predicted.

    ``sklearn.metrics.confusion_matrix`` with ``labels``: samples whose target
    or prediction is not in ``labels`` are not counted.
    """
    from sklearn.metrics import confusion_matrix

    t, p = _pair(target, predicted)
    labels = list(labels)
    if not labels:
        raise ValueError("labels is empty")
    return confusion_matrix(t, p, labels=labels).astype(np.int64)


def confusion_family(target_sg, predicted_sg, groups: Sequence[int] = FIGURE1_FAMILY) -> pd.DataFrame:
    """Confusion within a family of space groups, default the Figure 1 family I4, I-4, P4, P-4.

    Only samples whose target is in ``groups`` are counted; predictions outside
    the family go to the column ``"other"``. Rows (index ``target``) and columns
    (``predicted``) are labelled by the short international symbols of
    ``groups`` in the given order, plus ``"other"``; shape ``(n, n + 1)``, int64.
    """
    t, p = _pair(target_sg, predicted_sg, "target_sg", "predicted_sg")
    t = _space_groups(t, "target_sg")
    p = _space_groups(p, "predicted_sg")
    family = _space_groups(np.asarray(list(groups)), "groups")
    if np.unique(family).shape[0] != family.shape[0]:
        raise ValueError(f"groups contains duplicates: {list(groups)}")
    n = family.shape[0]
    position = np.full(N_SPACE_GROUPS + 1, n, dtype=np.int64)  # n = "other"
    position[family] = np.arange(n)
    keep = np.isin(t, family)
    matrix = np.zeros((n, n + 1), dtype=np.int64)
    np.add.at(matrix, (position[t[keep]], position[p[keep]]), 1)
    symbols = [str(s) for s in _lookup("international_short")[family]]
    return pd.DataFrame(
        matrix,
        index=pd.Index(symbols, name="target"),
        columns=pd.Index(symbols + ["other"], name="predicted"),
    )


# ---------------------------------------------------------------- everything


def evaluate_single_phase(scores, target_sg, superclass_predictions: Mapping[str, np.ndarray] | None = None) -> dict:
    """All single-phase metrics, as a JSON-serializable dict of plain floats/ints.

    Keys: ``n_samples``, ``top1``, ``top2``, ``top5`` (fractions), ``macro_f1``,
    ``macro_recall``, ``n_classes_in_average`` (classes present in targets or
    argmax predictions; classes absent from both are excluded from the macro
    averages), ``superclass_accuracy`` = ``{"from_space_group": {name: acc for
    every superclass}, "from_head": {name: acc}}`` and ``spc`` (see
    :func:`spc_analysis`).

    ``superclass_predictions`` maps a superclass name to the predictions of a
    dedicated head (multi-head models): integer codes as in
    :func:`xrdbench.symmetry.superclass_index`, or the superclass labels as
    strings. Predicted space groups are the argmax of ``scores`` (ties: lower
    group number).
    """
    target = _space_groups(target_sg, "target_sg")
    array = _scores(scores, target.shape[0])
    ranked = ranked_space_groups(array, 5)
    predicted = ranked[:, 0]
    hits = ranked == target[:, None]
    result: dict = {
        "n_samples": int(target.shape[0]),
        "top1": float(np.mean(hits[:, :1].any(axis=1))),
        "top2": float(np.mean(hits[:, :2].any(axis=1))),
        "top5": float(np.mean(hits[:, :5].any(axis=1))),
        "macro_f1": macro_f1(target, predicted),
        "macro_recall": macro_recall(target, predicted),
        "n_classes_in_average": n_classes_in_average(target, predicted),
    }
    from_head: dict[str, float] = {}
    for name, values in (superclass_predictions or {}).items():
        if name not in SUPERCLASSES:
            raise KeyError(f"unknown superclass head {name!r}; expected one of {SUPERCLASSES}")
        values = np.asarray(values)
        if np.issubdtype(values.dtype, np.integer) or values.dtype.kind in "OUS":
            pass
        else:
            raise ValueError(f"head {name!r}: predictions must be integer codes or labels, got dtype {values.dtype}")
        if values.dtype.kind in "OS":
            values = values.astype(str)
        from_head[name] = head_accuracy(_head_targets(target, name, values), values)
    result["superclass_accuracy"] = {
        "from_space_group": {name: superclass_accuracy(target, predicted, name) for name in SUPERCLASSES},
        "from_head": from_head,
    }
    result["spc"] = spc_analysis(target, predicted)
    return result


# ---------------------------------------------------------------- predictions table


def softmax(scores) -> np.ndarray:
    """Row-wise softmax, numerically stable."""
    array = np.asarray(scores, dtype=np.float64)
    shifted = array - array.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def predictions_frame(ids, scores, target_sg, k: int = 5, scores_are: str = "logits") -> pd.DataFrame:
    """Per-sample table of the top-``k`` predictions, for saving as parquet.

    Columns: ``id``, ``target``, ``pred_1`` … ``pred_k`` (space groups, best
    first; ties as in :func:`top_k_accuracy`) and ``prob_1`` … ``prob_k``.
    ``scores`` are taken to be **logits** by default and turned into
    probabilities by a softmax over the 230 groups; pass
    ``scores_are="probabilities"`` for scores that already are (rows must be
    non-negative and sum to 1), which are then used unchanged.
    """
    target = _space_groups(target_sg, "target_sg")
    array = _scores(scores, target.shape[0])
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.shape[0] != target.shape[0]:
        raise ValueError(f"ids must be 1-D with {target.shape[0]} entries, got shape {ids.shape}")
    if scores_are == "logits":
        probabilities = softmax(array)
    elif scores_are == "probabilities":
        if np.any(array < 0) or not np.allclose(array.sum(axis=1), 1.0, atol=1e-4):
            raise ValueError("scores_are='probabilities' but rows are negative or do not sum to 1")
        probabilities = array
    else:
        raise ValueError(f"scores_are must be 'logits' or 'probabilities', got {scores_are!r}")
    ranked = ranked_space_groups(array, k)
    top_probabilities = np.take_along_axis(probabilities, ranked - 1, axis=1)
    columns: dict = {"id": ids, "target": target}
    for j in range(k):
        columns[f"pred_{j + 1}"] = ranked[:, j].astype(np.int64)
    for j in range(k):
        columns[f"prob_{j + 1}"] = top_probabilities[:, j].astype(np.float64)
    return pd.DataFrame(columns)
