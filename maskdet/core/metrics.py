"""Evaluation metrics for maskdet classifiers: pure numpy functions, no I/O."""

from __future__ import annotations

from typing import Sequence

import numpy as np

MAX_CURVE_POINTS = 200


def _as_int_labels(values, name: str) -> np.ndarray:
    """Return `values` as a 1-D int64 array, raising ValueError if they are not whole numbers."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind in "biu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    if arr.size == 0:
        return arr.astype(np.int64)
    raise ValueError(f"{name} must contain integer class indices, got dtype {arr.dtype}")


def _check_binary_inputs(y_true_binary, scores) -> tuple[np.ndarray, np.ndarray]:
    """Validate binary labels and scores; return them as (bool array, float array)."""
    y = np.asarray(y_true_binary)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(f"y_true_binary and scores must be 1-D, got shapes {y.shape} and {s.shape}")
    if y.size == 0:
        raise ValueError("y_true_binary and scores must not be empty")
    if y.shape != s.shape:
        raise ValueError(f"y_true_binary has {y.size} items but scores has {s.size}")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("y_true_binary must contain only 0/1 (or False/True)")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite (no NaN or inf)")
    return y == 1, s


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Return a (num_classes, num_classes) int matrix of counts indexed [true, pred]."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    t = _as_int_labels(y_true, "y_true")
    p = _as_int_labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} items but y_pred has {p.size}")
    for name, arr in (("y_true", t), ("y_pred", p)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"{name} values must be in [0, {num_classes - 1}], "
                             f"got range [{arr.min()}, {arr.max()}]")
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def roc_curve(y_true_binary: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (fpr, tpr, thresholds): one point per distinct score plus a leading (0, 0) at threshold inf."""
    y, s = _check_binary_inputs(y_true_binary, scores)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    # Last index of each run of equal scores: all tied samples cross the threshold together.
    last_of_run = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]
    tps = np.cumsum(y)[last_of_run]
    fps = (last_of_run + 1) - tps
    tps = np.r_[0, tps].astype(np.float64)
    fps = np.r_[0, fps].astype(np.float64)
    thresholds = np.r_[np.inf, s[last_of_run]]
    n_pos, n_neg = tps[-1], fps[-1]
    # Like sklearn, an axis with no samples of its class is undefined (NaN).
    tpr = tps / n_pos if n_pos > 0 else np.full_like(tps, np.nan)
    fpr = fps / n_neg if n_neg > 0 else np.full_like(fps, np.nan)
    return fpr, tpr, thresholds


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Return 1-based ranks of `values`, tied values sharing the mean of their ranks."""
    uniq, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ranks_before = np.cumsum(counts) - counts
    mean_rank = ranks_before + (counts + 1) / 2.0
    return mean_rank[inverse.reshape(-1)]


def roc_auc(y_true_binary, scores) -> float | None:
    """Return the ROC AUC via Mann-Whitney U (ties count 0.5), or None if only one class is present."""
    y, s = _check_binary_inputs(y_true_binary, scores)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _downsample(fpr: np.ndarray, tpr: np.ndarray, max_points: int = MAX_CURVE_POINTS) -> tuple[list, list]:
    """Return the curve as python lists with at most `max_points` points, keeping first and last."""
    if fpr.size > max_points:
        idx = np.unique(np.round(np.linspace(0, fpr.size - 1, max_points)).astype(int))
        fpr, tpr = fpr[idx], tpr[idx]
    return [float(v) for v in fpr], [float(v) for v in tpr]


def _safe_div(num: float, den: float) -> float:
    """Return num / den, or 0.0 when den is zero (sklearn's zero_division=0)."""
    return float(num) / float(den) if den else 0.0


def _validate_report_inputs(y_true, probs, labels, names) -> tuple[np.ndarray, np.ndarray]:
    """Check classification_report inputs and return (y_true as int array, probs as float array)."""
    y = _as_int_labels(y_true, "y_true")
    p = np.asarray(probs, dtype=np.float64)
    if y.size == 0:
        raise ValueError("y_true must not be empty")
    if len(labels) == 0:
        raise ValueError("labels must not be empty")
    if p.ndim != 2:
        raise ValueError(f"probs must be 2-D (N, C), got shape {p.shape}")
    if p.shape != (y.size, len(labels)):
        raise ValueError(f"probs shape {p.shape} does not match (len(y_true), len(labels)) "
                         f"= ({y.size}, {len(labels)})")
    if not np.all(np.isfinite(p)):
        raise ValueError("probs must be finite (no NaN or inf)")
    if y.min() < 0 or y.max() >= len(labels):
        raise ValueError(f"y_true values must be in [0, {len(labels) - 1}], "
                         f"got range [{y.min()}, {y.max()}]")
    if names is not None and len(names) != y.size:
        raise ValueError(f"names has {len(names)} items but y_true has {y.size}")
    return y, p


def classification_report(y_true: Sequence[int], probs: np.ndarray, labels: list[str],
                          names: Sequence[str] | None = None) -> dict:
    """Return a JSON-serialisable dict of accuracy, per-class and macro metrics, AUCs, ROC curves and mistakes."""
    y, p = _validate_report_inputs(y_true, probs, labels, names)
    n, c = p.shape
    pred = np.argmax(p, axis=1)
    cm = confusion_matrix(y, pred, c)

    per_class = []
    for k in range(c):
        tp = int(cm[k, k])
        fp = int(cm[:, k].sum()) - tp
        fn = int(cm[k, :].sum()) - tp
        per_class.append({
            "label": str(labels[k]),
            "precision": _safe_div(tp, tp + fp),
            "recall": _safe_div(tp, tp + fn),
            "f1": _safe_div(2 * tp, 2 * tp + fp + fn),
            "support": tp + fn,
        })

    auc_per_class = [roc_auc(y == k, p[:, k]) for k in range(c)]
    if c == 2:
        auc = auc_per_class[1]
    else:
        defined = [a for a in auc_per_class if a is not None]
        auc = float(np.mean(defined)) if defined else None

    curves = []
    for k in range(c):
        is_k = y == k
        if 0 < is_k.sum() < n:
            fpr, tpr, _ = roc_curve(is_k, p[:, k])
            fpr_list, tpr_list = _downsample(fpr, tpr)
        else:
            fpr_list, tpr_list = [], []
        curves.append({"label": str(labels[k]), "fpr": fpr_list, "tpr": tpr_list})

    wrong = np.flatnonzero(pred != y)
    misclassified = [{
        "index": int(i),
        "name": None if names is None else str(names[i]),
        "true": str(labels[y[i]]),
        "predicted": str(labels[pred[i]]),
        "score": float(p[i, pred[i]]),
        "true_score": float(p[i, y[i]]),
    } for i in wrong]
    misclassified.sort(key=lambda m: (-m["score"], m["index"]))

    return {
        "num_samples": int(n),
        "labels": [str(label) for label in labels],
        "accuracy": _safe_div(np.trace(cm), n),
        "per_class": per_class,
        "macro_precision": float(np.mean([m["precision"] for m in per_class])),
        "macro_recall": float(np.mean([m["recall"] for m in per_class])),
        "macro_f1": float(np.mean([m["f1"] for m in per_class])),
        "confusion_matrix": cm.tolist(),
        "roc_auc": auc,
        "roc_auc_per_class": auc_per_class,
        "roc_curves": curves,
        "misclassified": misclassified,
    }
