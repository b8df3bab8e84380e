"""Evaluation: per-jet scores with observers (Parquet), ROC curves, AUCs and background rejections."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

EFFICIENCIES = (0.3, 0.5, 0.7)


def roc_curve(signal: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signal efficiency and background efficiency for every threshold (descending score)."""
    scores = np.concatenate([signal, background])
    is_signal = np.concatenate([np.ones(len(signal)), np.zeros(len(background))])
    order = np.argsort(-scores, kind="stable")
    tpr = np.concatenate([[0.0], np.cumsum(is_signal[order]) / max(len(signal), 1)])
    fpr = np.concatenate([[0.0], np.cumsum(1 - is_signal[order]) / max(len(background), 1)])
    return tpr, fpr


def auc(signal: np.ndarray, background: np.ndarray) -> float:
    """Area under the ROC curve = P(score of a signal jet > score of a background jet), ties count ½."""
    scores = np.concatenate([signal, background])
    ranks = _average_ranks(scores)
    n_s, n_b = len(signal), len(background)
    if not n_s or not n_b:
        return float("nan")
    return float((ranks[:n_s].sum() - n_s * (n_s + 1) / 2) / (n_s * n_b))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def rejection(signal: np.ndarray, background: np.ndarray, efficiency: float) -> float:
    """1 / background efficiency at the given signal efficiency."""
    tpr, fpr = roc_curve(signal, background)
    at = fpr[min(np.searchsorted(tpr, efficiency), len(fpr) - 1)]
    return float(1 / at) if at > 0 else float("inf")


def discriminant(scores: np.ndarray, classes: list[str], signal: list[str], background: list[str]) -> np.ndarray:
    """``Σ p(signal) / (Σ p(signal) + Σ p(background))``, as CMS's BvsL / CvsL taggers."""
    index = {c: i for i, c in enumerate(classes)}
    s = scores[:, [index[c] for c in signal]].sum(axis=1)
    b = scores[:, [index[c] for c in background]].sum(axis=1)
    return s / np.maximum(s + b, 1e-12)


PAIRS = {"b_vs_uds": (["b"], ["uds"]), "b_vs_light": (["b", "bb"], ["uds", "g"]),
         "c_vs_light": (["c", "cc"], ["uds", "g"]), "b_vs_c": (["b", "bb"], ["c", "cc"])}


def pair_scores(scores: np.ndarray, labels: np.ndarray, classes: list[str]):
    """For each standard discriminant the classes allow: (name, signal jets' scores, background jets')."""
    for name, (signal, background) in PAIRS.items():
        if not set(signal + background) <= set(classes):
            continue
        score = discriminant(scores, classes, signal, background)
        is_s = np.isin(labels, [classes.index(c) for c in signal])
        is_b = np.isin(labels, [classes.index(c) for c in background])
        yield name, score[is_s], score[is_b]


def performance(scores: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, float]:
    """AUC of each class against the rest, and the standard flavour discriminants with rejections."""
    out: dict[str, float] = {}
    for i, name in enumerate(classes):
        out[f"auc_{name}_vs_rest"] = auc(scores[labels == i, i], scores[labels != i, i])
    for name, signal, background in pair_scores(scores, labels, classes):
        out[f"auc_{name}"] = auc(signal, background)
        for eff in EFFICIENCIES:
            out[f"rejection_{name}_at_{int(eff * 100)}"] = rejection(signal, background, eff)
    return out


def write_predictions(path: str | Path, scores: np.ndarray, labels: np.ndarray, classes: list[str],
                      extras: dict[str, np.ndarray]) -> None:
    columns = {f"score_{c}": scores[:, i] for i, c in enumerate(classes)}
    columns["label"] = labels
    columns.update(extras)
    pq.write_table(pa.table(columns), str(path), compression="zstd")


def plot_rocs(path: str | Path, scores: np.ndarray, labels: np.ndarray, classes: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 7))
    for name, signal, background in pair_scores(scores, labels, classes):
        if name == "b_vs_uds":
            continue
        tpr, fpr = roc_curve(signal, background)
        keep = fpr > 0
        axis.plot(tpr[keep], fpr[keep], label=f"{name.replace('_', ' ')} (AUC {auc(signal, background):.3f})")
    axis.set_yscale("log")
    axis.set_xlabel("signal efficiency")
    axis.set_ylabel("background efficiency (mistag rate)")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(str(path), dpi=90)
    plt.close(figure)
