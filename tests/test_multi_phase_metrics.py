"""Multi-phase metrics against direct per-sample loops, on random scores with ties and K* up to 5."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xrdbench.evaluate.multi_phase import (FIXED_GATE, GATE_THRESHOLDS, PRESENCE_THRESHOLDS, evaluate_presence,
                                          evaluate_slots)

C = 230
REPORT_KEYS = {"n_samples", "threshold", "micro_precision", "micro_recall", "micro_f1", "iou", "cover@K*",
               "recall@K*", "cover@3K*", "recall@3K*", "cover@5K*", "recall@5K*", "strata"}
STRATUM_KEYS = {"k", "min_fraction_le_10pct", "n_samples", "micro_f1", "cover@K*", "recall@K*"}


# ---------------------------------------------------------------- random inputs


def _truth(rng: np.random.Generator, n: int):
    """y (n, C) with K* = 1..5 (every value present), k ≥ K* phases, Dirichlet weights padded with zeros."""
    y = np.zeros((n, C), dtype=np.int64)
    k = np.zeros(n, dtype=np.int64)
    weights = np.zeros((n, 5))
    for i in range(n):
        k_star = 1 + i % 5
        y[i, rng.choice(C, k_star, replace=False)] = 1
        k[i] = min(5, k_star + int(rng.integers(0, 2)))  # a duplicated space group sometimes
        weights[i, :k[i]] = rng.dirichlet(np.ones(k[i]))
    weights[0, :k[0]] = 1.0 / k[0]
    weights[1, :k[1]] = [0.1] + [0.9 / (k[1] - 1)] * (k[1] - 1)  # exactly 10 %: counts as low
    return y, k, weights


def _presence_scores(rng: np.random.Generator, y: np.ndarray) -> np.ndarray:
    """Probabilities on a coarse grid (many ties), higher for true classes on average."""
    raw = rng.random(y.shape) * 0.7 + 0.35 * y * rng.random(y.shape)
    return np.round(np.clip(raw, 0, 1) * 20) / 20


def _slot_probs(rng: np.random.Generator, y: np.ndarray) -> np.ndarray:
    n = len(y)
    raw = np.round(rng.random((n, 5, C)) * 4)  # integer levels: ties in each slot's argmax
    for i in range(n):
        for slot, c in enumerate(np.nonzero(y[i])[0]):
            if rng.random() < 0.7:
                raw[i, slot, c] = 6.0
    none = rng.choice([0.0, 50.0, 200.0, 600.0, 2000.0], size=(n, 5, 1))
    full = np.concatenate([raw, none], axis=2)
    return full / full.sum(axis=2, keepdims=True)


# ---------------------------------------------------------------- direct per-sample reference


def _ranking(row) -> list[int]:
    return sorted(range(len(row)), key=lambda c: (-row[c], c))  # lower class first on ties


def _reference(pred_sets, score_rows, y, k, weights, threshold):
    truth = [set(np.nonzero(row)[0].tolist()) for row in y]
    tp = sum(len(p & t) for p, t in zip(pred_sets, truth))
    fp = sum(len(p - t) for p, t in zip(pred_sets, truth))
    fn = sum(len(t - p) for p, t in zip(pred_sets, truth))

    def prf(tp, fp, fn):
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        return precision, recall, f1

    precision, recall, f1 = prf(tp, fp, fn)
    out = {"n_samples": len(y), "threshold": threshold, "micro_precision": precision, "micro_recall": recall,
           "micro_f1": f1, "iou": float(np.mean([len(p & t) / len(p | t) for p, t in zip(pred_sets, truth)]))}
    per = {}
    for m, name in [(1, "K*"), (3, "3K*"), (5, "5K*")]:
        recalls, covers = [], []
        for row, t in zip(score_rows, truth):
            top = set(_ranking(row)[:m * len(t)])
            recalls.append(len(top & t) / len(t))
            covers.append(t <= top)
        per[name] = (recalls, covers)
        out[f"cover@{name}"] = float(np.mean(covers))
        out[f"recall@{name}"] = float(np.mean(recalls))
    low = [min(weights[i, :k[i]]) <= 0.1 + 1e-6 for i in range(len(y))]
    strata = []
    for k_value in sorted(set(k.tolist())):
        for flag in (False, True):
            rows = [i for i in range(len(y)) if k[i] == k_value and low[i] == flag]
            if not rows:
                continue
            s_tp = sum(len(pred_sets[i] & truth[i]) for i in rows)
            s_fp = sum(len(pred_sets[i] - truth[i]) for i in rows)
            s_fn = sum(len(truth[i] - pred_sets[i]) for i in rows)
            strata.append({"k": k_value, "min_fraction_le_10pct": flag, "n_samples": len(rows),
                           "micro_f1": prf(s_tp, s_fp, s_fn)[2],
                           "cover@K*": float(np.mean([per["K*"][1][i] for i in rows])),
                           "recall@K*": float(np.mean([per["K*"][0][i] for i in rows]))})
    out["strata"] = strata
    return out


def _presence_sets(scores, threshold):
    return [{c for c in range(C) if row[c] >= threshold} for row in scores]


def _slot_sets(probs, gate):
    sets = []
    for sample in probs:
        chosen = set()
        for slot in sample:
            if 1.0 - slot[-1] >= gate:
                classes = slot[:-1]
                chosen.add(max(range(C), key=lambda c: (classes[c], -c)))  # first maximum
        sets.append(chosen)
    return sets


def _f1(pred_sets, y):
    return _reference(pred_sets, [np.zeros(C)] * len(y), y, np.ones(len(y), int), np.ones((len(y), 5)), 0)[
        "micro_f1"]


def _assert_report(actual, expected):
    assert set(actual) == REPORT_KEYS
    for key in REPORT_KEYS - {"strata"}:
        assert actual[key] == pytest.approx(expected[key], rel=1e-12, abs=1e-12), key
    assert len(actual["strata"]) == len(expected["strata"])
    for got, want in zip(actual["strata"], expected["strata"]):
        assert set(got) == STRATUM_KEYS
        assert (got["k"], got["min_fraction_le_10pct"], got["n_samples"]) == (
            want["k"], want["min_fraction_le_10pct"], want["n_samples"])
        for key in ("micro_f1", "cover@K*", "recall@K*"):
            assert got[key] == pytest.approx(want[key], rel=1e-12, abs=1e-12), key


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("seed", [0, 1])
def test_presence_metrics_match_per_sample_loops(seed):
    rng = np.random.default_rng(seed)
    y, k, weights = _truth(rng, 40)
    scores = _presence_scores(rng, y)
    report = evaluate_presence(scores, y, k, weights)
    json.dumps(report)

    f1s = [_f1(_presence_sets(scores, t), y) for t in PRESENCE_THRESHOLDS]
    best = float(PRESENCE_THRESHOLDS[int(np.argmax(f1s))])
    assert report["threshold"] == best
    assert report["micro_f1"] == pytest.approx(max(f1s), rel=1e-12)
    _assert_report(report, _reference(_presence_sets(scores, best), scores, y, k, weights, best))
    assert {s["k"] for s in report["strata"]} == set(k.tolist())
    assert any(s["min_fraction_le_10pct"] for s in report["strata"])


def test_presence_threshold_sweep_picks_the_f1_maximising_threshold():
    y = np.zeros((2, C), dtype=int)
    y[0, 3] = y[1, [4, 9]] = 1
    scores = np.full((2, C), 0.2)
    scores[0, 3], scores[1, 4], scores[1, 9] = 0.62, 0.7, 0.95
    scores[0, 100] = 0.5  # a negative: the best thresholds lie in (0.5, 0.62]; the lowest is 0.51
    report = evaluate_presence(scores, y, np.array([1, 2]), np.array([[1.0, 0, 0, 0, 0], [0.5, 0.5, 0, 0, 0]]))
    assert report["threshold"] == pytest.approx(0.51)
    assert report["micro_f1"] == report["micro_precision"] == report["micro_recall"] == 1.0
    assert report["iou"] == 1.0


def test_ranking_ties_go_to_the_lower_class():
    y = np.zeros((1, C), dtype=int)
    y[0, 50] = 1
    scores = np.full((1, C), 0.3)  # all tied: the top-1 is class 0, top-3 classes 0-2
    report = evaluate_presence(scores, y, np.array([1]), np.array([[1.0, 0, 0, 0, 0]]))
    assert report["recall@K*"] == report["recall@5K*"] == 0.0
    y[0, 50], y[0, 2] = 0, 1  # still all tied: class 2 is third, in the top-3 but not the top-1
    report = evaluate_presence(scores, y, np.array([1]), np.array([[1.0, 0, 0, 0, 0]]))
    assert report["recall@K*"] == 0.0 and report["cover@3K*"] == 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_slot_metrics_match_per_sample_loops(seed):
    rng = np.random.default_rng(10 + seed)
    y, k, weights = _truth(rng, 30)
    probs = _slot_probs(rng, y)
    report = evaluate_slots(probs, y, k, weights)
    json.dumps(report)
    assert set(report) == {"n_samples", "best_gate", "fixed_gate"}
    assert report["n_samples"] == 30

    scores = probs[..., :-1].max(axis=1)
    f1s = [_f1(_slot_sets(probs, g), y) for g in GATE_THRESHOLDS]
    best = float(GATE_THRESHOLDS[int(np.argmax(f1s))])
    assert report["best_gate"]["threshold"] == best
    assert report["best_gate"]["micro_f1"] == pytest.approx(max(f1s), rel=1e-12)
    assert report["best_gate"]["micro_f1"] >= report["fixed_gate"]["micro_f1"] - 1e-12
    _assert_report(report["best_gate"], _reference(_slot_sets(probs, best), scores, y, k, weights, best))
    _assert_report(report["fixed_gate"],
                   _reference(_slot_sets(probs, FIXED_GATE), scores, y, k, weights, FIXED_GATE))
    assert report["fixed_gate"]["threshold"] == 0.5


def test_gate_grid():
    assert len(GATE_THRESHOLDS) == 41
    assert GATE_THRESHOLDS[0] == 0.1 and GATE_THRESHOLDS[-1] == 0.9 and 0.5 in GATE_THRESHOLDS
    assert len(PRESENCE_THRESHOLDS) == 101


def test_slot_union_excludes_none_and_low_gates():
    y = np.zeros((1, C), dtype=int)
    y[0, [7, 8]] = 1
    probs = np.zeros((1, 5, C + 1))
    probs[0, 0, 7], probs[0, 0, C] = 0.9, 0.1  # gate 0.9 → class 7
    probs[0, 1, 8], probs[0, 1, C] = 0.3, 0.7  # gate 0.3 → class 8 only at low gates
    probs[0, 2:, C] = 1.0  # NONE slots, gate 0
    report = evaluate_slots(probs, y, np.array([2]), np.array([[0.5, 0.5, 0, 0, 0]]))
    assert report["fixed_gate"]["micro_precision"] == 1.0 and report["fixed_gate"]["micro_recall"] == 0.5
    assert report["best_gate"]["threshold"] == 0.1 and report["best_gate"]["micro_f1"] == 1.0


def test_rejects_samples_without_truth():
    with pytest.raises(ValueError, match="at least one"):
        evaluate_presence(np.zeros((1, C)), np.zeros((1, C)), np.array([1]), np.ones((1, 5)))
