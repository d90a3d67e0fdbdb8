"""Single-phase metrics: agreement with scikit-learn and hand examples."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix, f1_score, recall_score, top_k_accuracy_score

from xrdbench.evaluate.single_phase import (
    FIGURE1_FAMILY,
    confusion,
    confusion_family,
    evaluate_single_phase,
    head_accuracy,
    macro_f1,
    macro_recall,
    predictions_frame,
    spc_analysis,
    superclass_accuracy,
    top_k_accuracy,
)
from xrdbench.symmetry import SUPERCLASSES, space_group_table, superclass_index

LABELS = np.arange(1, 231)


def random_case(seed: int, n: int = 400, n_classes_used: int = 40):
    """Scores that favour the target half the time, over a subset of groups (so some classes are absent)."""
    rng = np.random.default_rng(seed)
    used = rng.choice(LABELS, size=n_classes_used, replace=False)
    target = rng.choice(used, size=n)
    scores = rng.normal(size=(n, 230))
    boost = rng.random(n) < 0.5
    scores[np.arange(n)[boost], target[boost] - 1] += 2.5
    return scores, target


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_top_k_matches_sklearn(seed, k):
    scores, target = random_case(seed)
    expected = top_k_accuracy_score(target, scores, k=k, labels=LABELS)
    assert top_k_accuracy(scores, target, k) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_macro_metrics_match_sklearn(seed):
    scores, target = random_case(seed)
    predicted = scores.argmax(axis=1) + 1
    labels = np.union1d(target, predicted)
    assert labels.shape[0] < 230  # some classes are absent from both and must be excluded
    f1 = f1_score(target, predicted, average="macro", labels=labels, zero_division=0)
    recall = recall_score(target, predicted, average="macro", labels=labels, zero_division=0)
    assert macro_f1(target, predicted) == pytest.approx(f1, abs=1e-12)
    assert macro_recall(target, predicted) == pytest.approx(recall, abs=1e-12)


def test_top_k_ties_broken_by_lower_group_number():
    scores = np.zeros((2, 230))
    scores[:, [9, 19]] = 1.0  # groups 10 and 20 tie for first place
    assert top_k_accuracy(scores, np.array([10, 20]), 1) == 0.5
    assert top_k_accuracy(scores, np.array([10, 20]), 2) == 1.0


def test_macro_exclusion_rule_by_hand():
    # classes 1, 2, 3 true; 4 predicted but never true; 5..230 absent from both.
    target = np.array([1, 1, 2, 2, 3])
    predicted = np.array([1, 1, 2, 4, 2])
    # per-class F1: 1 -> 1; 2 -> 2*1/(2+2)=0.5; 3 -> 0; 4 -> 0 (included, predicted but never true)
    assert macro_f1(target, predicted) == pytest.approx((1 + 0.5 + 0 + 0) / 4)
    # per-class recall: 1 -> 1; 2 -> 0.5; 3 -> 0; 4 -> 0/0 := 0
    assert macro_recall(target, predicted) == pytest.approx((1 + 0.5 + 0 + 0) / 4)
    # averaging over all 230 classes would give a different (much smaller) number
    assert macro_f1(target, predicted) != pytest.approx(1.5 / 230)
    labels = [1, 2, 3, 4]
    assert macro_f1(target, predicted) == pytest.approx(
        f1_score(target, predicted, average="macro", labels=labels, zero_division=0)
    )
    assert macro_recall(target, predicted) == pytest.approx(
        recall_score(target, predicted, average="macro", labels=labels, zero_division=0)
    )


def test_figure1_family_numbers():
    table = space_group_table()
    symbols = [table.loc[g, "international_short"] for g in FIGURE1_FAMILY]
    assert symbols == ["I4", "I-4", "P4", "P-4"]


def test_superclass_accuracy_by_hand():
    table = space_group_table()
    # 226 (Fm-3c) for 225 (Fm-3m): same on every superclass.
    for name in SUPERCLASSES:
        assert table.loc[225, name] == table.loc[226, name]
        assert superclass_accuracy([225], [226], name) == 1.0
    # 229 (Im-3m) for 225: right on crystal system and point group, wrong on centring/Bravais lattice.
    target = np.array([225, 225])
    predicted = np.array([229, 225])
    assert superclass_accuracy(target, predicted, "crystal_system") == 1.0
    assert superclass_accuracy(target, predicted, "point_group") == 1.0
    assert superclass_accuracy(target, predicted, "laue_class") == 1.0
    assert superclass_accuracy(target, predicted, "centring") == 0.5
    assert superclass_accuracy(target, predicted, "bravais_lattice") == 0.5
    assert superclass_accuracy(target, predicted, "arithmetic_class") == 0.5
    # 2 (P-1) for 1 (P1): right on crystal system and centring, wrong on point group.
    assert superclass_accuracy([1], [2], "crystal_system") == 1.0
    assert superclass_accuracy([1], [2], "centring") == 1.0
    assert superclass_accuracy([1], [2], "point_group") == 0.0
    with pytest.raises(KeyError):
        superclass_accuracy([1], [2], "not_a_superclass")
    with pytest.raises(ValueError):
        superclass_accuracy([0], [2], "crystal_system")


def test_head_accuracy():
    assert head_accuracy(np.array([0, 1, 2, 3]), np.array([0, 1, 0, 3])) == 0.75
    with pytest.raises(ValueError):
        head_accuracy(np.array([0, 1]), np.array([0]))


def test_spc_by_hand():
    # Figure 1 family: I4 (79), I-4 (82), P4 (75), P-4 (81).
    target = np.array([79, 79, 82, 75, 75, 225])
    predicted = np.array([79, 82, 79, 79, 2, 225])
    spc = spc_analysis(target, predicted)
    assert spc["n_samples"] == 6
    assert spc["n_wrong"] == 4  # 79->82, 82->79, 75->79, 75->2
    # lattice type (centring): I=I, I=I, P!=I, P=P  -> 3 of 4
    assert spc["lattice_type"] == {"n_correct": 3, "accuracy": 0.75}
    # Bravais: tI=tI, tI=tI, tP!=tI, tP!=aP -> 2 of 4
    assert spc["bravais_lattice"] == {"n_correct": 2, "accuracy": 0.5}
    # crystal system: tetragonal x3, tetragonal vs triclinic -> 3 of 4
    assert spc["crystal_system"] == {"n_correct": 3, "accuracy": 0.75}
    # point group: 4 vs -4, -4 vs 4, 4 vs 4, 4 vs -1 -> 1 of 4
    assert spc["point_group"] == {"n_correct": 1, "accuracy": 0.25}
    none_wrong = spc_analysis([1, 2], [1, 2])
    assert none_wrong["n_wrong"] == 0 and none_wrong["point_group"]["accuracy"] is None


def test_confusion_matches_sklearn():
    rng = np.random.default_rng(5)
    target = rng.integers(1, 231, 300)
    predicted = rng.integers(1, 231, 300)
    labels = [1, 2, 14, 225, 230]
    matrix = confusion(target, predicted, labels)
    assert matrix.shape == (5, 5)
    np.testing.assert_array_equal(matrix, confusion_matrix(target, predicted, labels=labels))


def test_confusion_family_shape_and_counts():
    target = np.array([79, 79, 79, 82, 75, 81, 81, 225, 2])
    predicted = np.array([79, 82, 87, 79, 75, 81, 75, 79, 81])
    frame = confusion_family(target, predicted)
    assert frame.shape == (4, 5)
    assert list(frame.index) == ["I4", "I-4", "P4", "P-4"]
    assert list(frame.columns) == ["I4", "I-4", "P4", "P-4", "other"]
    expected = np.array(
        [
            [1, 1, 0, 0, 1],  # I4 -> I4, I-4, I4/m (other)
            [1, 0, 0, 0, 0],  # I-4 -> I4
            [0, 0, 1, 0, 0],  # P4 -> P4
            [0, 0, 1, 1, 0],  # P-4 -> P-4, P4
        ]
    )
    np.testing.assert_array_equal(frame.to_numpy(), expected)
    # targets outside the family (225, 2) are not counted, even when predicted inside it
    assert frame.to_numpy().sum() == 7
    with pytest.raises(ValueError):
        confusion_family(target, predicted, groups=[79, 79])


def test_evaluate_single_phase_json_round_trip():
    scores, target = random_case(7, n=200)
    predicted = scores.argmax(axis=1) + 1
    heads = {
        "crystal_system": np.array(
            [superclass_index("crystal_system")[v] for v in space_group_table().loc[predicted, "crystal_system"]]
        ),
        "centring": space_group_table().loc[target, "centring"].to_numpy().astype(str),  # labels, all right
    }
    result = evaluate_single_phase(scores, target, heads)
    round_trip = json.loads(json.dumps(result))
    assert round_trip == result
    assert result["n_samples"] == 200
    assert result["top1"] == pytest.approx(top_k_accuracy(scores, target, 1))
    assert result["top2"] == pytest.approx(top_k_accuracy(scores, target, 2))
    assert result["top5"] == pytest.approx(top_k_accuracy(scores, target, 5))
    assert result["top1"] <= result["top2"] <= result["top5"]
    assert result["macro_f1"] == pytest.approx(macro_f1(target, predicted))
    assert result["n_classes_in_average"] == np.union1d(target, predicted).shape[0]
    from_sg = result["superclass_accuracy"]["from_space_group"]
    assert set(from_sg) == set(SUPERCLASSES)
    # a head that predicts the superclass of the argmax group scores the same as the derived accuracy
    assert result["superclass_accuracy"]["from_head"]["crystal_system"] == pytest.approx(from_sg["crystal_system"])
    assert result["superclass_accuracy"]["from_head"]["centring"] == 1.0
    assert result["spc"]["n_wrong"] == int(np.sum(predicted != target))
    for value in (result["top1"], result["macro_f1"], result["n_samples"]):
        assert type(value) in (int, float)
    no_heads = evaluate_single_phase(scores, target)
    assert no_heads["superclass_accuracy"]["from_head"] == {}


def test_evaluate_rejects_bad_input():
    scores, target = random_case(8, n=10)
    with pytest.raises(ValueError):
        evaluate_single_phase(scores[:, :229], target)
    with pytest.raises(ValueError):
        evaluate_single_phase(scores, target[:9])
    bad = scores.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError):
        evaluate_single_phase(bad, target)


def test_predictions_frame(tmp_path):
    scores, target = random_case(9, n=30)
    ids = np.array([f"s{i}" for i in range(30)])
    frame = predictions_frame(ids, scores, target, k=5)
    assert list(frame.columns) == ["id", "target"] + [f"pred_{j}" for j in range(1, 6)] + [
        f"prob_{j}" for j in range(1, 6)
    ]
    probabilities = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    np.testing.assert_array_equal(frame["pred_1"].to_numpy(), scores.argmax(axis=1) + 1)
    np.testing.assert_allclose(frame["prob_1"].to_numpy(), probabilities.max(axis=1), rtol=1e-12)
    probs = frame[[f"prob_{j}" for j in range(1, 6)]].to_numpy()
    assert np.all(np.diff(probs, axis=1) <= 0)
    # probabilities passed as such are used unchanged
    same = predictions_frame(ids, probabilities, target, k=5, scores_are="probabilities")
    pd.testing.assert_frame_equal(same, frame, check_exact=False, rtol=1e-12)
    with pytest.raises(ValueError):
        predictions_frame(ids, scores, target, scores_are="probabilities")
    pytest.importorskip("pyarrow")
    path = tmp_path / "predictions.parquet"
    frame.to_parquet(path)
    pd.testing.assert_frame_equal(pd.read_parquet(path), frame)
