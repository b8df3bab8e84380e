"""Evaluation: ROC curves (scikit-learn), AUCs and background rejections for class pairs derived from the
config's labels; bias and resolution of regression targets.

Pairs: the classes named like a background (QCD, light quarks, gluons) are the backgrounds; every other class
(but ``undef``) is a signal, scored with ``p(s) / (p(s) + Σ p(b))`` against each background and, when there
are several, against all of them together (CMS AK4: b vs uds, b vs g, b vs uds+g, ...; JetClass: each of
Hbb, Hcc, ..., Tbl vs QCD). A label set with no background-like class gets one-vs-rest curves."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

EFFICIENCIES = (0.3, 0.5, 0.7)
BACKGROUND_NAMES = ("qcd", "uds", "udsg", "light", "g", "gluon", "ud", "s")
IGNORED_NAMES = ("undef", "unknown", "other")


class Pair(NamedTuple):
    name: str
    signal: tuple[str, ...]
    background: tuple[str, ...]


def class_pairs(classes: list[str]) -> list[Pair]:
    """The signal-vs-background pairs a label set calls for (see the module docstring)."""
    def is_background(name: str) -> bool:
        lowered = name.lower()
        return lowered in BACKGROUND_NAMES or lowered.startswith("qcd")

    backgrounds = [c for c in classes if is_background(c)]
    signals = [c for c in classes if c not in backgrounds and c.lower() not in IGNORED_NAMES]
    if not backgrounds:
        return [Pair(f"{c}_vs_rest", (c,), tuple(o for o in classes if o != c)) for c in classes]
    pairs = []
    for signal in signals:
        pairs += [Pair(f"{signal}_vs_{b}", (signal,), (b,)) for b in backgrounds]
        if len(backgrounds) > 1:
            pairs.append(Pair(f"{signal}_vs_{'+'.join(backgrounds)}", (signal,), tuple(backgrounds)))
    return pairs


def discriminant(scores: np.ndarray, classes: list[str], signal: tuple[str, ...],
                 background: tuple[str, ...]) -> np.ndarray:
    """``Σ p(signal) / (Σ p(signal) + Σ p(background))``, as CMS's BvsL / CvsL and ParT's X-vs-QCD scores."""
    index = {c: i for i, c in enumerate(classes)}
    s = scores[:, [index[c] for c in signal]].sum(axis=1)
    b = scores[:, [index[c] for c in background]].sum(axis=1)
    return s / np.maximum(s + b, 1e-12)


def pair_scores(scores: np.ndarray, labels: np.ndarray, classes: list[str], pair: Pair):
    """The discriminant of the signal jets and of the background jets of a pair."""
    score = discriminant(scores, classes, pair.signal, pair.background)
    is_s = np.isin(labels, [classes.index(c) for c in pair.signal])
    is_b = np.isin(labels, [classes.index(c) for c in pair.background])
    return score[is_s], score[is_b]


def roc(signal: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(signal efficiency, background efficiency) over all thresholds."""
    from sklearn.metrics import roc_curve

    truth = np.concatenate([np.ones(len(signal)), np.zeros(len(background))])
    fpr, tpr, _ = roc_curve(truth, np.concatenate([signal, background]))
    return tpr, fpr


def auc(signal: np.ndarray, background: np.ndarray) -> float:
    """Area under the ROC curve (NaN without jets of both kinds)."""
    from sklearn.metrics import roc_auc_score

    if not len(signal) or not len(background):
        return float("nan")
    truth = np.concatenate([np.ones(len(signal)), np.zeros(len(background))])
    return float(roc_auc_score(truth, np.concatenate([signal, background])))


def rejection(signal: np.ndarray, background: np.ndarray, efficiency: float) -> float:
    """1 / background efficiency at the threshold where the signal efficiency first reaches ``efficiency``
    (NaN without jets of both kinds)."""
    if not len(signal) or not len(background):
        return float("nan")
    tpr, fpr = roc(signal, background)
    at = fpr[min(np.searchsorted(tpr, efficiency), len(fpr) - 1)]
    return float(1 / at) if at > 0 else float("inf")


def performance(scores: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, float]:
    """AUC of each class against the rest, and AUC and rejections of every derived pair."""
    out: dict[str, float] = {}
    for i, name in enumerate(classes):
        out[f"auc_{name}_vs_rest"] = auc(scores[labels == i, i], scores[labels != i, i])
    for pair in class_pairs(classes):
        signal, background = pair_scores(scores, labels, classes, pair)
        out[f"auc_{pair.name}"] = auc(signal, background)
        for efficiency in EFFICIENCIES:
            out[f"rejection_{pair.name}_at_{int(efficiency * 100)}"] = rejection(signal, background, efficiency)
    return out


def regression_metrics(residuals: np.ndarray, targets: list[str] | tuple[str, ...]) -> dict[str, float]:
    """Per target, from the residuals (prediction − truth, ``[N, T]``): the bias (their mean), the resolution
    (their standard deviation) and the robust resolution (half their 16–84% interval)."""
    out: dict[str, float] = {}
    for i, name in enumerate(targets[:residuals.shape[1]]):
        low, high = np.percentile(residuals[:, i], [16, 84]) if len(residuals) else (np.nan, np.nan)
        out[f"{name}_bias"] = float(residuals[:, i].mean()) if len(residuals) else float("nan")
        out[f"{name}_resolution"] = float(residuals[:, i].std()) if len(residuals) else float("nan")
        out[f"{name}_resolution_68"] = float((high - low) / 2)
    return out


def plot_rocs(path: str | Path, scores: np.ndarray, labels: np.ndarray, classes: list[str],
              experiment: str | None = None, note: str = "") -> list[Path]:
    """One figure per signal class (its curves against each background), PNG at 150 dpi and PDF; returns the
    PNG paths, ``<path stem>.<signal>.png``. ``note`` says which jets were scored (titled at the right)."""
    import matplotlib.style
    import mplhep

    by_signal: dict[str, list[Pair]] = {}
    for pair in class_pairs(classes):
        by_signal.setdefault("+".join(pair.signal), []).append(pair)
    written = []
    stem = Path(path)
    for signal, pairs in by_signal.items():
        with matplotlib.style.context(mplhep.style.CMS):  # no pyplot: the caller's session is left as it was
            written.append(_roc_figure(stem, signal, pairs, scores, labels, classes, experiment, note))
    return written


def _roc_figure(stem: Path, signal: str, pairs: list[Pair], scores: np.ndarray, labels: np.ndarray,
                classes: list[str], experiment: str | None, note: str) -> Path:
    import mplhep
    from matplotlib.figure import Figure

    from jetstore.stats.plots import save_figure

    figure = Figure(figsize=(10, 9))
    axis = figure.subplots()
    for pair in pairs:
        s, b = pair_scores(scores, labels, classes, pair)
        if not len(s) or not len(b):
            continue
        tpr, fpr = roc(s, b)
        keep = fpr > 0
        axis.plot(tpr[keep], fpr[keep], label=f"{signal} vs {'+'.join(pair.background)} "
                                              f"(AUC {auc(s, b):.3f}; {len(s):,} / {len(b):,} jets)")
    axis.set_yscale("log")
    axis.set_xlim(0, 1)
    axis.set_xlabel(f"{signal} jet efficiency")
    axis.set_ylabel("background jet efficiency (misidentification)")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=14, loc="upper left")  # the curves rise to the right
    if experiment:
        exp, _, text = experiment.partition(" ")
        mplhep.label.exp_text(exp, text, ax=axis, loc=0)
    if note:
        axis.set_title(note, loc="right", fontsize=16)
    figure.tight_layout()
    return save_figure(figure, stem.with_name(f"{stem.name}.{signal.replace('/', '_')}"))
