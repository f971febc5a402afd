"""Segment-level metrics, pure numpy. Inputs are flat over segments: probs (n, C), labels (n,)
int class ids, background = class C-1.

    >>> pooled_accuracy(np.array([[0.9, 0.1], [0.3, 0.7]]), np.array([0, 0]))
    0.5
"""

from __future__ import annotations

import numpy as np


def _flat(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    probs = probs.reshape(-1, probs.shape[-1])
    labels = labels.reshape(-1)
    if len(probs) != len(labels):
        raise ValueError(f"{len(probs)} predictions for {len(labels)} labels")
    return probs, labels


def pooled_accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """AVE's metric: fraction of all segments whose argmax over all classes is the label."""
    probs, labels = _flat(probs, labels)
    return float(np.mean(probs.argmax(-1) == labels))


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) counts, rows = true class, columns = predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels).reshape(-1), np.asarray(pred).reshape(-1)), 1)
    return cm


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each true class (NaN for a class with no segments)."""
    totals = cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(cm) / np.maximum(totals, 1), np.nan)


def event_f1(pred: np.ndarray, labels: np.ndarray, background: int) -> dict[str, float]:
    """Event-vs-background detection: an event segment is a positive, whatever its class."""
    p = np.asarray(pred).reshape(-1) != background
    y = np.asarray(labels).reshape(-1) != background
    tp = float(np.sum(p & y))
    precision = tp / p.sum() if p.sum() else 0.0
    recall = tp / y.sum() if y.sum() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width confidence bins over (0, 1]: sum_b |B|/n * |acc(B) - conf(B)|,
    confidence = the top probability, a bin holding confidences in (lo, hi]."""
    probs, labels = _flat(probs, labels)
    conf = probs.max(-1).astype(np.float64)
    correct = (probs.argmax(-1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def summarize(probs: np.ndarray, labels: np.ndarray, class_names: list[str],
              bins: int = 15) -> dict[str, object]:
    """Every offline metric of a split as JSON-ready values."""
    probs, labels = _flat(probs, labels)
    n_classes = len(class_names)
    pred = probs.argmax(-1)
    cm = confusion_matrix(pred, labels, n_classes)
    per_class = per_class_accuracy(cm)
    return {
        "segments": len(labels),
        "accuracy": pooled_accuracy(probs, labels),
        "per_class_accuracy": {name: (None if np.isnan(a) else float(a))
                               for name, a in zip(class_names, per_class, strict=True)},
        "confusion": cm.tolist(),
        "event_vs_background": event_f1(pred, labels, n_classes - 1),
        "ece": expected_calibration_error(probs, labels, bins),
        "ece_bins": bins,
    }
