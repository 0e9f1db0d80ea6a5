"""Tests for maskdet.core.metrics, checked against numbers worked out by hand."""

import json

import numpy as np
import pytest

from maskdet.core.metrics import classification_report, confusion_matrix, roc_auc, roc_curve

# ---------------------------------------------------------------------------
# Two-class example (labels: 0 = no_mask, 1 = mask); probs[:, 1] is the mask score.
#
#   idx  y  p(mask)  pred (argmax)
#    0   0   0.10     0
#    1   0   0.40     0
#    2   0   0.60     1   <- false positive (score 0.60)
#    3   0   0.20     0
#    4   1   0.90     1
#    5   1   0.60     1   <- ties with idx 2
#    6   1   0.30     0   <- false negative (score of predicted class 0.70)
#    7   1   0.45     0   <- false negative (score of predicted class 0.55)
#
# Confusion matrix [true][pred]: true 0 -> pred 0: {0,1,3} = 3, pred 1: {2} = 1
#                                true 1 -> pred 0: {6,7}   = 2, pred 1: {4,5} = 2
# ---------------------------------------------------------------------------
Y2 = [0, 0, 0, 0, 1, 1, 1, 1]
P_MASK = np.array([0.10, 0.40, 0.60, 0.20, 0.90, 0.60, 0.30, 0.45])
PROBS2 = np.column_stack([1.0 - P_MASK, P_MASK])
LABELS2 = ["no_mask", "mask"]

# ---------------------------------------------------------------------------
# Three-class example (0 = mask, 1 = no_mask, 2 = incorrect).
#
#   idx  y   probs                 pred
#    0   0   [0.70, 0.20, 0.10]    0
#    1   0   [0.30, 0.60, 0.10]    1   <- wrong, score 0.60, true_score 0.30
#    2   1   [0.15, 0.45, 0.40]    1
#    3   1   [0.10, 0.80, 0.10]    1
#    4   2   [0.50, 0.10, 0.40]    0   <- wrong, score 0.50, true_score 0.40
#    5   2   [0.05, 0.45, 0.50]    2
#
# Confusion matrix [true][pred]: [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
# ---------------------------------------------------------------------------
Y3 = [0, 0, 1, 1, 2, 2]
PROBS3 = np.array([
    [0.70, 0.20, 0.10],
    [0.30, 0.60, 0.10],
    [0.15, 0.45, 0.40],
    [0.10, 0.80, 0.10],
    [0.50, 0.10, 0.40],
    [0.05, 0.45, 0.50],
])
LABELS3 = ["mask", "no_mask", "incorrect"]


def _assert_plain_json_types(obj, path="report"):
    """Every leaf must be a plain python int/float/str/bool/None (no numpy scalars)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            assert type(key) is str, f"{path} has non-str key {key!r}"
            _assert_plain_json_types(value, f"{path}[{key!r}]")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            _assert_plain_json_types(value, f"{path}[{i}]")
    else:
        assert obj is None or type(obj) in (int, float, str, bool), f"{path} is {type(obj)}"


# --- confusion_matrix -------------------------------------------------------

def test_confusion_matrix_two_class_by_hand():
    pred = PROBS2.argmax(axis=1)  # [0, 0, 1, 0, 1, 1, 0, 0]
    cm = confusion_matrix(np.array(Y2), pred, 2)
    np.testing.assert_array_equal(cm, [[3, 1], [2, 2]])
    assert np.issubdtype(cm.dtype, np.integer)
    assert cm.sum() == 8


def test_confusion_matrix_counts_unseen_class_as_zero_row_and_column():
    # true [0, 1, 1, 0], pred [1, 1, 0, 0]: (0,1), (1,1), (1,0), (0,0) -> one each; class 2 unused.
    cm = confusion_matrix(np.array([0, 1, 1, 0]), np.array([1, 1, 0, 0]), 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [1, 1, 0], [0, 0, 0]])


def test_confusion_matrix_rejects_out_of_range_and_length_mismatch():
    with pytest.raises(ValueError, match="y_pred"):
        confusion_matrix(np.array([0, 1]), np.array([0, 2]), 2)
    with pytest.raises(ValueError, match="y_true"):
        confusion_matrix(np.array([-1, 1]), np.array([0, 1]), 2)
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0, 1, 1]), np.array([0, 1]), 2)


# --- roc_curve / roc_auc ----------------------------------------------------

def test_roc_curve_two_class_by_hand_with_tie():
    # Distinct scores, descending, with the classes at each score:
    #   0.90 (P) | 0.60 (P, N tied) | 0.45 (P) | 0.40 (N) | 0.30 (P) | 0.20 (N) | 0.10 (N)
    # cumulative TP: 1, 2, 3, 3, 4, 4, 4   -> /4 positives
    # cumulative FP: 0, 1, 1, 2, 2, 3, 4   -> /4 negatives
    # The tie at 0.60 moves TP and FP together: a single diagonal step, not two points.
    fpr, tpr, thr = roc_curve(np.array(Y2), P_MASK)
    np.testing.assert_allclose(fpr, [0, 0, 0.25, 0.25, 0.5, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(tpr, [0, 0.25, 0.5, 0.75, 0.75, 1.0, 1.0, 1.0])
    assert thr[0] == np.inf
    np.testing.assert_allclose(thr[1:], [0.9, 0.6, 0.45, 0.4, 0.3, 0.2, 0.1])


def test_roc_auc_two_class_by_hand_with_tie():
    # Positive scores {0.9, 0.6, 0.3, 0.45} vs negative scores {0.1, 0.4, 0.6, 0.2}; 4*4 = 16 pairs.
    # Negatives beaten by each positive (a tie counts 0.5):
    #   0.90 -> 4;  0.60 -> 3 (0.1, 0.4, 0.2) + 0.5 (tie with 0.6) = 3.5;
    #   0.30 -> 2 (0.1, 0.2);  0.45 -> 3 (0.1, 0.4, 0.2)
    # AUC = (4 + 3.5 + 2 + 3) / 16 = 12.5 / 16 = 0.78125
    assert roc_auc(np.array(Y2), P_MASK) == pytest.approx(0.78125)


def test_roc_auc_equals_area_under_roc_curve():
    # Trapezoids of the hand-computed curve above:
    #   (0,.25)->(.25,.5): .25*(.25+.5)/2 = .09375;  (.25,.75)->(.5,.75): .25*.75 = .1875
    #   (.5,1)->(.75,1): .25;  (.75,1)->(1,1): .25;  vertical steps add 0.  Total = .78125
    fpr, tpr, _ = roc_curve(np.array(Y2), P_MASK)
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(0.78125)
    assert area == pytest.approx(roc_auc(np.array(Y2), P_MASK))


def test_roc_all_scores_tied_is_the_diagonal():
    # One distinct score: the curve jumps straight from (0,0) to (1,1); every pair is a tie -> 0.5.
    fpr, tpr, thr = roc_curve(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.5, 0.5]))
    np.testing.assert_allclose(fpr, [0.0, 1.0])
    np.testing.assert_allclose(tpr, [0.0, 1.0])
    np.testing.assert_allclose(thr, [np.inf, 0.5])
    assert roc_auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)


def test_roc_auc_perfect_and_inverted():
    y = np.array([0, 0, 1, 1])
    assert roc_auc(y, np.array([0.1, 0.2, 0.8, 0.9])) == pytest.approx(1.0)
    # Every positive scores below every negative -> 0 of 4 pairs won.
    assert roc_auc(y, np.array([0.9, 0.8, 0.2, 0.1])) == pytest.approx(0.0)


def test_roc_auc_accepts_boolean_labels():
    y = np.array(Y2) == 1
    assert roc_auc(y, P_MASK) == pytest.approx(0.78125)


def test_roc_auc_none_when_only_one_class_present():
    assert roc_auc(np.array([1, 1, 1]), np.array([0.2, 0.5, 0.9])) is None
    assert roc_auc(np.array([0, 0]), np.array([0.2, 0.5])) is None


def test_roc_functions_reject_bad_input():
    with pytest.raises(ValueError, match="empty"):
        roc_auc(np.array([]), np.array([]))
    with pytest.raises(ValueError):
        roc_auc(np.array([0, 1, 1]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="0/1"):
        roc_curve(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="finite"):
        roc_auc(np.array([0, 1]), np.array([0.1, np.nan]))


# --- classification_report: two classes ------------------------------------

def test_report_two_class_metrics_by_hand():
    r = classification_report(Y2, PROBS2, LABELS2)
    assert r["num_samples"] == 8
    assert r["labels"] == ["no_mask", "mask"]
    assert r["confusion_matrix"] == [[3, 1], [2, 2]]
    # accuracy = diagonal / N = (3 + 2) / 8
    assert r["accuracy"] == pytest.approx(0.625)

    no_mask, mask = r["per_class"]
    # no_mask: TP = 3, FP = 2 (masks predicted no_mask), FN = 1
    #   precision = 3/5 = 0.6, recall = 3/4 = 0.75, F1 = 2*3 / (2*3 + 2 + 1) = 6/9 = 2/3
    assert no_mask == {"label": "no_mask", "precision": pytest.approx(0.6),
                       "recall": pytest.approx(0.75), "f1": pytest.approx(2 / 3), "support": 4}
    # mask: TP = 2, FP = 1, FN = 2
    #   precision = 2/3, recall = 2/4 = 0.5, F1 = 2*2 / (2*2 + 1 + 2) = 4/7
    #   (check: 2PR/(P+R) = 2*(2/3)*(1/2) / (2/3 + 1/2) = (2/3) / (7/6) = 4/7)
    assert mask == {"label": "mask", "precision": pytest.approx(2 / 3),
                    "recall": pytest.approx(0.5), "f1": pytest.approx(4 / 7), "support": 4}

    # Macro = unweighted means: P = (0.6 + 2/3)/2 = 19/30, R = (0.75 + 0.5)/2 = 0.625,
    # F1 = (2/3 + 4/7)/2 = (14/21 + 12/21)/2 = 13/21
    assert r["macro_precision"] == pytest.approx(19 / 30)
    assert r["macro_recall"] == pytest.approx(0.625)
    assert r["macro_f1"] == pytest.approx(13 / 21)


def test_report_two_class_auc_uses_class_one_scores():
    r = classification_report(Y2, PROBS2, LABELS2)
    # Same data as test_roc_auc_two_class_by_hand_with_tie: 12.5 / 16.
    assert r["roc_auc"] == pytest.approx(0.78125)
    # Class 0 one-vs-rest uses 1 - p(mask) against y == 0: every pairwise comparison flips
    # both sides, so the AUC is identical.
    assert r["roc_auc_per_class"] == [pytest.approx(0.78125), pytest.approx(0.78125)]


def test_report_two_class_gives_both_roc_curves():
    r = classification_report(Y2, PROBS2, LABELS2)
    assert [c["label"] for c in r["roc_curves"]] == ["no_mask", "mask"]
    mask_curve = r["roc_curves"][1]
    assert mask_curve["fpr"] == pytest.approx([0, 0, 0.25, 0.25, 0.5, 0.5, 0.75, 1.0])
    assert mask_curve["tpr"] == pytest.approx([0, 0.25, 0.5, 0.75, 0.75, 1.0, 1.0, 1.0])
    for curve in r["roc_curves"]:
        assert (curve["fpr"][0], curve["tpr"][0]) == (0.0, 0.0)
        assert (curve["fpr"][-1], curve["tpr"][-1]) == (1.0, 1.0)


def test_report_misclassified_sorted_most_confident_first():
    names = [f"img_{i}.jpg" for i in range(8)]
    r = classification_report(Y2, PROBS2, LABELS2, names=names)
    # Mistakes: idx 2 (pred mask, p=0.60), idx 6 (pred no_mask, p=1-0.30=0.70),
    # idx 7 (pred no_mask, p=1-0.45=0.55)  -> by score descending: 6, 2, 7
    assert [m["index"] for m in r["misclassified"]] == [6, 2, 7]
    first = r["misclassified"][0]
    assert first == {"index": 6, "name": "img_6.jpg", "true": "mask", "predicted": "no_mask",
                     "score": pytest.approx(0.70), "true_score": pytest.approx(0.30)}
    second = r["misclassified"][1]
    assert (second["true"], second["predicted"]) == ("no_mask", "mask")
    assert second["score"] == pytest.approx(0.60) and second["true_score"] == pytest.approx(0.40)
    assert r["misclassified"][2]["score"] == pytest.approx(0.55)


def test_report_misclassified_name_is_none_without_names():
    r = classification_report(Y2, PROBS2, LABELS2)
    assert len(r["misclassified"]) == 3  # 8 samples - 5 correct
    assert all(m["name"] is None for m in r["misclassified"])


# --- classification_report: three classes ----------------------------------

def test_report_three_class_macro_metrics_by_hand():
    r = classification_report(Y3, PROBS3, LABELS3)
    assert r["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # accuracy = (1 + 2 + 1) / 6 = 2/3
    assert r["accuracy"] == pytest.approx(2 / 3)
    mask, no_mask, incorrect = r["per_class"]
    # mask:      TP 1, FP 1 (idx 4), FN 1 (idx 1) -> P = 1/2, R = 1/2, F1 = 2/(2+1+1) = 1/2
    assert (mask["precision"], mask["recall"], mask["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    # no_mask:   TP 2, FP 1 (idx 1), FN 0         -> P = 2/3, R = 1,   F1 = 4/(4+1+0) = 4/5
    assert (no_mask["precision"], no_mask["recall"], no_mask["f1"]) == pytest.approx((2 / 3, 1.0, 0.8))
    # incorrect: TP 1, FP 0, FN 1 (idx 4)         -> P = 1,   R = 1/2, F1 = 2/(2+0+1) = 2/3
    assert (incorrect["precision"], incorrect["recall"], incorrect["f1"]) == pytest.approx((1.0, 0.5, 2 / 3))
    assert [c["support"] for c in r["per_class"]] == [2, 2, 2]
    # macro P = (1/2 + 2/3 + 1)/3 = (13/6)/3 = 13/18
    # macro R = (1/2 + 1 + 1/2)/3 = 2/3
    # macro F1 = (1/2 + 4/5 + 2/3)/3 = (15/30 + 24/30 + 20/30)/3 = 59/90
    assert r["macro_precision"] == pytest.approx(13 / 18)
    assert r["macro_recall"] == pytest.approx(2 / 3)
    assert r["macro_f1"] == pytest.approx(59 / 90)


def test_report_three_class_one_vs_rest_auc_by_hand():
    r = classification_report(Y3, PROBS3, LABELS3)
    # mask (col 0):      pos {0.70, 0.30} vs neg {0.15, 0.10, 0.50, 0.05}
    #   0.70 beats 4; 0.30 beats 3 (0.15, 0.10, 0.05)          -> 7/8 = 0.875
    # no_mask (col 1):   pos {0.45, 0.80} vs neg {0.20, 0.60, 0.10, 0.45}
    #   0.45 beats 2 (0.20, 0.10) + tie 0.5 -> 2.5; 0.80 beats 4 -> 6.5/8 = 0.8125
    # incorrect (col 2): pos {0.40, 0.50} vs neg {0.10, 0.10, 0.40, 0.10}
    #   0.40 beats 3 + tie 0.5 -> 3.5; 0.50 beats 4           -> 7.5/8 = 0.9375
    assert r["roc_auc_per_class"] == [pytest.approx(0.875), pytest.approx(0.8125), pytest.approx(0.9375)]
    # macro = (0.875 + 0.8125 + 0.9375) / 3 = 2.625 / 3 = 0.875
    assert r["roc_auc"] == pytest.approx(0.875)
    assert len(r["roc_curves"]) == 3


def test_report_three_class_misclassified():
    r = classification_report(Y3, PROBS3, LABELS3)
    # idx 1: mask -> no_mask at 0.60 (true 0.30); idx 4: incorrect -> mask at 0.50 (true 0.40)
    got = [(m["index"], m["true"], m["predicted"], m["score"], m["true_score"]) for m in r["misclassified"]]
    assert got == [(1, "mask", "no_mask", pytest.approx(0.6), pytest.approx(0.3)),
                   (4, "incorrect", "mask", pytest.approx(0.5), pytest.approx(0.4))]


def test_report_class_never_predicted_has_zero_precision_not_nan():
    # y = [0, 1, 2, 2], preds = [0, 1, 0, 1]: class 2 is never predicted.
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.5, 0.2, 0.3], [0.2, 0.5, 0.3]])
    r = classification_report([0, 1, 2, 2], probs, LABELS3)
    incorrect = r["per_class"][2]
    # TP 0, FP 0 -> precision 0/0 -> 0.0; recall 0/2 = 0; F1 = 0/(0+0+2) = 0
    assert incorrect == {"label": "incorrect", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert not any(np.isnan(v) for c in r["per_class"] for v in (c["precision"], c["recall"], c["f1"]))
    # mask: TP 1, FP 1 -> P 1/2, R 1;  no_mask: TP 1, FP 1 -> P 1/2, R 1
    # macro P = (1/2 + 1/2 + 0)/3 = 1/3
    assert r["macro_precision"] == pytest.approx(1 / 3)


def test_report_class_without_support_has_zero_recall_and_no_auc():
    # y = [0, 1, 0, 1] (class 2 absent); preds = [0, 1, 2, 1]: class 2 predicted once, wrongly.
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.1, 0.6], [0.2, 0.6, 0.2]])
    r = classification_report([0, 1, 0, 1], probs, LABELS3)
    incorrect = r["per_class"][2]
    # TP 0, FP 1, FN 0 -> precision 0/1 = 0, recall 0/0 -> 0, F1 = 0/(0+1+0) = 0
    assert (incorrect["precision"], incorrect["recall"], incorrect["f1"], incorrect["support"]) == (0.0, 0.0, 0.0, 0)
    # OvR AUC: mask pos {0.7, 0.3} vs neg {0.1, 0.2}: 4/4 = 1.0
    #          no_mask pos {0.8, 0.6} vs neg {0.2, 0.1}: 4/4 = 1.0
    #          incorrect: no positives -> None, left out of the macro average
    assert r["roc_auc_per_class"] == [pytest.approx(1.0), pytest.approx(1.0), None]
    assert r["roc_auc"] == pytest.approx(1.0)
    assert r["roc_curves"][2] == {"label": "incorrect", "fpr": [], "tpr": []}


def test_report_perfect_classifier():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9]])
    r = classification_report([0, 0, 1, 1], probs, LABELS2)
    assert r["accuracy"] == 1.0
    assert r["roc_auc"] == 1.0
    assert r["roc_auc_per_class"] == [1.0, 1.0]
    assert r["macro_precision"] == r["macro_recall"] == r["macro_f1"] == 1.0
    assert r["confusion_matrix"] == [[2, 0], [0, 2]]
    assert r["misclassified"] == []
    # A perfect ranking passes through the top-left corner (0, 1).
    curve = r["roc_curves"][1]
    assert any(f == 0.0 and t == 1.0 for f, t in zip(curve["fpr"], curve["tpr"]))


def test_report_auc_none_when_only_one_class_present():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    r = classification_report([0, 0, 0], probs, LABELS2)
    assert r["roc_auc"] is None
    assert r["roc_auc_per_class"] == [None, None]
    assert all(c["fpr"] == [] and c["tpr"] == [] for c in r["roc_curves"])
    # 2 of 3 predicted correctly (idx 2 -> mask).
    assert r["accuracy"] == pytest.approx(2 / 3)
    assert json.loads(json.dumps(r, allow_nan=False)) == r


def test_report_is_json_serialisable_with_plain_types():
    r = classification_report(np.array(Y3), PROBS3.astype(np.float32), LABELS3, names=np.array(["a", "b", "c", "d", "e", "f"]))
    _assert_plain_json_types(r)
    text = json.dumps(r, allow_nan=False)
    assert json.loads(text) == r
    assert r["misclassified"][0]["name"] == "b"


def test_report_roc_curves_downsampled_to_200_points():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 500)
    p1 = rng.random(1000)  # 1000 distinct scores -> 1001 curve points before downsampling
    r = classification_report(y, np.column_stack([1 - p1, p1]), LABELS2)
    for curve in r["roc_curves"]:
        assert 2 <= len(curve["fpr"]) == len(curve["tpr"]) <= 200
        assert (curve["fpr"][0], curve["tpr"][0]) == (0.0, 0.0)
        assert (curve["fpr"][-1], curve["tpr"][-1]) == (1.0, 1.0)
        assert np.all(np.diff(curve["fpr"]) >= 0) and np.all(np.diff(curve["tpr"]) >= 0)
    assert len(json.dumps(r["roc_curves"])) < 20_000


# --- classification_report: validation -------------------------------------

def test_report_rejects_empty_input():
    with pytest.raises(ValueError, match="empty"):
        classification_report([], np.zeros((0, 2)), LABELS2)


def test_report_rejects_probs_shape_mismatch():
    with pytest.raises(ValueError, match="labels"):  # 3 columns, 2 labels
        classification_report([0, 1], np.full((2, 3), 1 / 3), LABELS2)
    with pytest.raises(ValueError, match="y_true"):  # 3 rows, 2 samples
        classification_report([0, 1], np.full((3, 2), 0.5), LABELS2)
    with pytest.raises(ValueError, match="2-D"):
        classification_report([0, 1], np.array([0.4, 0.6]), LABELS2)


def test_report_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        classification_report([0, 2], np.full((2, 2), 0.5), LABELS2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        classification_report([-1, 1], np.full((2, 2), 0.5), LABELS2)


def test_report_rejects_names_length_mismatch():
    with pytest.raises(ValueError, match="names"):
        classification_report([0, 1], np.full((2, 2), 0.5), LABELS2, names=["only_one.jpg"])
