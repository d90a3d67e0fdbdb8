"""Multi-phase space-group metrics (multi-phase paper, Appendix A §1.7–1.8, Fig. A3).

Pure functions on numpy arrays. Conventions:

* Space groups are the integers 1-230; column ``g - 1`` of a (N, 230) array is
  space group ``g``. ``y`` (N, 230) is the multi-hot truth; K* = y.sum(axis=1) is
  the number of distinct true space groups and must be ≥ 1 for every sample.
* **Presence models** give probabilities ``scores`` (N, 230). The prediction at
  threshold τ is ``scores >= τ``; τ is the best of ``np.linspace(0, 1, 101)`` (rounded to 0.01)
  by micro-F1 on the evaluated split.
* **Slot models** give ``slot_probs`` (N, K, 231), softmax over 230 classes plus
  NONE (last). The gate of slot k is g_k = 1 − π_k,NONE; the class of slot k is
  the argmax over the 230 space-group columns only (NONE excluded). The
  *slot-union* prediction at gate τ is the set of classes of the slots with
  g_k ≥ τ (space-group confidence threshold 0). τ is swept over 0.10, 0.12, …,
  0.90 (41 values) and the best by micro-F1 is reported, beside the fixed τ = 0.5.
  The ranking score of class c is max_k π_k,c.
* **Micro** precision / recall / F1 sum TP, FP, FN over all samples and classes;
  a 0/0 ratio is 0. F1 = 2TP / (2TP + FP + FN).
* **Threshold ties**: among thresholds with equal micro-F1 the lowest wins.
* **Top-K set metrics**: classes are ranked by score with
  ``np.argsort(-score, kind="stable")``, so among equal scores the lower space
  group ranks first. For m ∈ {1, 3, 5} the top min(m·K*, 230) classes are
  taken; recall@mK* is the sample mean of |top ∩ truth| / K*, cover@mK* the
  fraction of samples whose whole truth is in the top. They do not depend on
  the threshold.
* **IoU** is the sample mean of the Jaccard index |pred ∩ truth| / |pred ∪ truth|
  at the chosen threshold (the union is never empty since K* ≥ 1).
* **Strata** (Fig. A3): by the number of phases ``k`` (N,) and by whether the
  smallest phase fraction, min(phase_weight[i, :k[i]]), is ≤ 10 % (with a 1e-6
  tolerance for float32 weights). Each stratum reports micro-F1 at the
  split-level chosen threshold, cover@K* and recall@K*. Strata are listed by
  ``k`` then ``False`` before ``True``, only those with samples.

The returned dicts hold only Python ints, floats, bools and lists (JSON-ready).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "FIXED_GATE",
    "GATE_THRESHOLDS",
    "LOW_FRACTION",
    "PRESENCE_THRESHOLDS",
    "TOPK_MULTIPLES",
    "class_ranks",
    "evaluate_presence",
    "evaluate_slots",
    "jaccard",
    "low_fraction_flags",
    "micro_prf",
    "slot_gates",
    "slot_scores",
    "slot_union",
    "topk_set_metrics",
]

N_SPACE_GROUPS = 230
#: The presence thresholds swept: 0.00, 0.01, …, 1.00 (``np.linspace(0, 1, 101)`` rounded to 2 decimals, so
#: the reported threshold prints cleanly, e.g. 0.7 not 0.7000000000000001).
PRESENCE_THRESHOLDS = np.round(np.linspace(0.0, 1.0, 101), 2)
#: The slot gates swept: 0.10, 0.12, …, 0.90.
GATE_THRESHOLDS = np.round(np.linspace(0.10, 0.90, 41), 2)
FIXED_GATE = 0.5
TOPK_MULTIPLES = (1, 3, 5)
LOW_FRACTION = 0.10
_LOW_FRACTION_TOL = 1e-6


# ---------------------------------------------------------------- building blocks


def micro_prf(tp, fp, fn) -> tuple[float, float, float]:
    """Micro (precision, recall, F1) from summed counts; 0/0 := 0."""
    tp, fp, fn = float(tp), float(fp), float(fn)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return precision, recall, f1


def _counts(pred: np.ndarray, y: np.ndarray) -> tuple[int, int, int]:
    tp = int(np.count_nonzero(pred & y))
    return tp, int(np.count_nonzero(pred)) - tp, int(np.count_nonzero(y)) - tp


def class_ranks(scores: np.ndarray) -> np.ndarray:
    """(N, C) rank of each class within its row, 0 = highest score; ties: lower class first."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(scores.shape[1])[None, :].repeat(len(scores), 0), axis=1)
    return ranks


def topk_set_metrics(scores: np.ndarray, y: np.ndarray, multiple: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample (recall, cover) of the top min(multiple·K*, C) classes: (N,) float, (N,) bool."""
    y = np.asarray(y, dtype=bool)
    k_star = y.sum(axis=1)
    top = class_ranks(np.asarray(scores)) < np.minimum(multiple * k_star, y.shape[1])[:, None]
    hits = (top & y).sum(axis=1)
    return hits / k_star, hits == k_star


def jaccard(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-sample |pred ∩ y| / |pred ∪ y| (N,); an empty union gives 1."""
    inter = (pred & y).sum(axis=1)
    union = (pred | y).sum(axis=1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def low_fraction_flags(k: np.ndarray, phase_weight: np.ndarray) -> np.ndarray:
    """(N,) bool: the smallest of phase_weight[i, :k[i]] is ≤ 10 %."""
    k = np.asarray(k, dtype=int)
    weights = np.asarray(phase_weight, dtype=float)
    if weights.ndim != 2 or len(weights) != len(k):
        raise ValueError(f"multi_phase: phase_weight must be (N, max phases) with N = {len(k)}, "
                         f"got {weights.shape}")
    if k.min(initial=1) < 1 or k.max(initial=1) > weights.shape[1]:
        raise ValueError(f"multi_phase: k must lie in 1..{weights.shape[1]}")
    used = np.arange(weights.shape[1])[None, :] < k[:, None]
    smallest = np.where(used, weights, np.inf).min(axis=1)
    return smallest <= LOW_FRACTION + _LOW_FRACTION_TOL


def slot_gates(slot_probs: np.ndarray) -> np.ndarray:
    """(N, K) gates 1 − π_NONE (NONE is the last column)."""
    return 1.0 - slot_probs[..., -1]


def slot_scores(slot_probs: np.ndarray) -> np.ndarray:
    """(N, C) ranking score of each space group: its maximum probability over the slots."""
    return slot_probs[..., :-1].max(axis=1)


def slot_union(slot_probs: np.ndarray, gate: float) -> np.ndarray:
    """(N, C) bool slot-union prediction: argmax classes (NONE excluded) of the slots with gate ≥ ``gate``."""
    n, n_slots, n_out = slot_probs.shape
    classes = slot_probs[..., :-1].argmax(axis=2)  # (N, K), ties → lower class
    active = slot_gates(slot_probs) >= gate
    pred = np.zeros((n, n_out - 1), dtype=bool)
    rows, slots = np.nonzero(active)
    pred[rows, classes[rows, slots]] = True
    return pred


# ---------------------------------------------------------------- reports


def _check(y: np.ndarray, k: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y) > 0.5
    if y.ndim != 2 or len(y) != n:
        raise ValueError(f"multi_phase: y must be ({n}, C), got {y.shape}")
    if (y.sum(axis=1) == 0).any():
        raise ValueError("multi_phase: every sample needs at least one true space group")
    k = np.asarray(k, dtype=int).reshape(-1)
    if len(k) != n:
        raise ValueError(f"multi_phase: k must have {n} entries, got {len(k)}")
    return y, k


def _report(pred: np.ndarray, threshold: float, scores: np.ndarray, y: np.ndarray, k: np.ndarray,
            low: np.ndarray) -> dict:
    precision, recall, f1 = micro_prf(*_counts(pred, y))
    report = {"n_samples": int(len(y)), "threshold": float(threshold), "micro_precision": precision,
              "micro_recall": recall, "micro_f1": f1, "iou": float(jaccard(pred, y).mean())}
    per_sample = {}
    for multiple in TOPK_MULTIPLES:
        name = "K*" if multiple == 1 else f"{multiple}K*"
        recall_m, cover_m = topk_set_metrics(scores, y, multiple)
        per_sample[name] = (recall_m, cover_m)
        report[f"cover@{name}"] = float(cover_m.mean())
        report[f"recall@{name}"] = float(recall_m.mean())
    strata = []
    for k_value in np.unique(k):
        for flag in (False, True):
            rows = (k == k_value) & (low == flag)
            if not rows.any():
                continue
            recall_1, cover_1 = per_sample["K*"]
            strata.append({"k": int(k_value), "min_fraction_le_10pct": bool(flag), "n_samples": int(rows.sum()),
                           "micro_f1": micro_prf(*_counts(pred[rows], y[rows]))[2],
                           "cover@K*": float(cover_1[rows].mean()), "recall@K*": float(recall_1[rows].mean())})
    report["strata"] = strata
    return report


def evaluate_presence(scores: np.ndarray, y: np.ndarray, k: np.ndarray, phase_weight: np.ndarray) -> dict:
    """Metrics of a presence model: ``scores`` (N, 230) probabilities, at the best of 101 thresholds.

    Returns ``{"n_samples", "threshold", "micro_precision", "micro_recall", "micro_f1", "iou",
    "cover@K*", "recall@K*", "cover@3K*", "recall@3K*", "cover@5K*", "recall@5K*", "strata": [...]}``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"multi_phase: scores must be (N, C), got {scores.shape}")
    y, k = _check(y, k, len(scores))
    if y.shape != scores.shape:
        raise ValueError(f"multi_phase: scores {scores.shape} and y {y.shape} differ")
    low = low_fraction_flags(k, phase_weight)
    # counts at every threshold at once: #{score >= τ} = n − #{score < τ}
    all_sorted = np.sort(scores, axis=None)
    true_sorted = np.sort(scores[y])
    predicted = all_sorted.size - np.searchsorted(all_sorted, PRESENCE_THRESHOLDS, side="left")
    tp = true_sorted.size - np.searchsorted(true_sorted, PRESENCE_THRESHOLDS, side="left")
    fp, fn = predicted - tp, true_sorted.size - tp
    f1 = np.array([micro_prf(*c)[2] for c in zip(tp, fp, fn)])
    threshold = float(PRESENCE_THRESHOLDS[int(np.argmax(f1))])  # first maximum: the lowest threshold
    return _report(scores >= threshold, threshold, scores, y, k, low)


def evaluate_slots(slot_probs: np.ndarray, y: np.ndarray, k: np.ndarray, phase_weight: np.ndarray) -> dict:
    """Metrics of a slot model: ``slot_probs`` (N, K, 231), slot-union at the best gate and at 0.5.

    Returns ``{"n_samples", "best_gate": {...}, "fixed_gate": {...}}``, each inner dict with the keys
    of :func:`evaluate_presence` and ``"threshold"`` the gate.
    """
    slot_probs = np.asarray(slot_probs, dtype=np.float64)
    if slot_probs.ndim != 3:
        raise ValueError(f"multi_phase: slot_probs must be (N, K, C+1), got {slot_probs.shape}")
    y, k = _check(y, k, len(slot_probs))
    if y.shape[1] != slot_probs.shape[2] - 1:
        raise ValueError(f"multi_phase: slot_probs {slot_probs.shape} need y with {slot_probs.shape[2] - 1} "
                         f"columns, got {y.shape}")
    low = low_fraction_flags(k, phase_weight)
    scores = slot_scores(slot_probs)
    f1 = [micro_prf(*_counts(slot_union(slot_probs, gate), y))[2] for gate in GATE_THRESHOLDS]
    best = float(GATE_THRESHOLDS[int(np.argmax(f1))])
    return {"n_samples": int(len(y)),
            "best_gate": _report(slot_union(slot_probs, best), best, scores, y, k, low),
            "fixed_gate": _report(slot_union(slot_probs, FIXED_GATE), FIXED_GATE, scores, y, k, low)}
