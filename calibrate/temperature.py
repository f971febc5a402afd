"""Temperature scaling and the event-vs-background threshold: pure numpy, float64.

    T = fit_temperature(logits, labels)                  # (n, C), (n,) -> T > 0
    probs = softmax(logits, T)
    p, f1 = fit_event_threshold(probs, labels, background=C - 1)

Temperature scaling (Guo et al. 2017): one T for all classes, chosen to minimise the negative
log-likelihood of softmax(logits / T) on held-out segments. NLL is convex in 1 / T, hence
unimodal in log T, so a golden-section search over log T in [log 0.05, log 20] finds it.
It never changes a label (argmax is unchanged), only the confidences.

Event threshold: a segment labelled with an event class but with confidence below p counts as
background (streamer.intervals applies it to the event intervals). p is chosen on the same
held-out segments to maximise event-vs-background F1 (model.metrics.event_f1: an event segment
is a positive whatever its class); among equally good thresholds the lowest, placed half way
between the confidences it separates.
"""

from __future__ import annotations

import math

import numpy as np

from model.metrics import event_f1

T_RANGE = (0.05, 20.0)
GOLDEN = (math.sqrt(5) - 1) / 2


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of softmax(logits / T) at the labels."""
    z = np.asarray(logits, np.float64).reshape(-1, np.shape(logits)[-1]) / temperature
    y = np.asarray(labels).reshape(-1)
    zmax = z.max(axis=-1)
    lse = zmax + np.log(np.exp(z - zmax[:, None]).sum(axis=-1))
    return float(np.mean(lse - z[np.arange(len(y)), y]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, t_range: tuple[float, float] = T_RANGE,
                    tol: float = 1e-7) -> float:
    """The T minimising nll(logits, labels, T) within t_range (golden section on log T)."""
    if np.size(labels) == 0:
        raise ValueError("no segments to fit a temperature on")
    lo, hi = math.log(t_range[0]), math.log(t_range[1])
    a, b = hi - GOLDEN * (hi - lo), lo + GOLDEN * (hi - lo)
    fa, fb = nll(logits, labels, math.exp(a)), nll(logits, labels, math.exp(b))
    while hi - lo > tol:
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - GOLDEN * (hi - lo)
            fa = nll(logits, labels, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + GOLDEN * (hi - lo)
            fb = nll(logits, labels, math.exp(b))
    return math.exp((lo + hi) / 2)


def fit_event_threshold(probs: np.ndarray, labels: np.ndarray, background: int
                        ) -> tuple[float, float]:
    """(threshold p, event F1 with it). p = 0 when no threshold beats keeping every label."""
    probs = np.asarray(probs, np.float64).reshape(-1, np.shape(probs)[-1])
    y_event = np.asarray(labels).reshape(-1) != background
    pred = probs.argmax(-1)
    conf = probs.max(-1)
    is_event = pred != background
    c = np.sort(conf[is_event])
    hit = np.sort(conf[is_event & y_event])
    cuts = np.append(np.unique(c), np.inf)  # keep the event labels with conf >= cut
    kept = len(c) - np.searchsorted(c, cuts, side="left")
    tp = len(hit) - np.searchsorted(hit, cuts, side="left")
    positives = int(y_event.sum())
    f1 = np.where(kept + positives > 0, 2 * tp / np.maximum(kept + positives, 1), 0.0)
    best = int(np.argmax(f1))  # the first of the best: the lowest threshold
    p = 0.0 if best == 0 else float((cuts[best - 1] + min(cuts[best], 1.0)) / 2)
    if p <= 1.0 / probs.shape[-1]:
        p = 0.0  # a label's confidence is never below 1 / C: no threshold
    return p, event_f1(apply_threshold(probs, p, background), labels, background)["f1"]


def apply_threshold(probs: np.ndarray, threshold: float, background: int) -> np.ndarray:
    """Labels with event labels under `threshold` confidence turned into background."""
    probs = np.asarray(probs).reshape(-1, np.shape(probs)[-1])
    pred = probs.argmax(-1)
    return np.where((pred != background) & (probs.max(-1) < threshold), background, pred)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 15
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width confidence bin (lo, hi] (as model.metrics.expected_calibration_error):
    edges (bins + 1,), accuracy, mean confidence (NaN where empty) and counts (bins,)."""
    probs = np.asarray(probs, np.float64).reshape(-1, np.shape(probs)[-1])
    y = np.asarray(labels).reshape(-1)
    conf = probs.max(-1)
    correct = (probs.argmax(-1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(which, correct, bins) / counts
        mean_conf = np.bincount(which, conf, bins) / counts
    return edges, acc, mean_conf, counts
