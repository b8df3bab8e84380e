"""Evaluation: ROC curves (scikit-learn), AUCs with their uncertainties and background rejections for class pairs
derived from the config's labels; bias and resolution of regression targets. Every measure takes optional jet
weights (validation weighs jets as the training samples them).

Pairs: the classes named like a background (QCD, light quarks, gluons) are the backgrounds; every other class
(but ``undef``) is a signal, scored with ``p(s) / (p(s) + Σ p(b))`` against each background and, when there
are several, against all of them together (CMS AK4: b vs uds, b vs g, b vs uds+g, ...; JetClass: each of
Hbb, Hcc, ..., Tbl vs QCD). A label set with no background-like class gets one-vs-rest pairs.

A rejection measured from fewer than :data:`MIN_PASSING` background jets passing the cut is marked as low
statistics (listed in the summary's ``low_statistics``; drawn hollow in the figures): with none passing it is only
a lower bound (reported as null)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

EFFICIENCIES = (0.3, 0.5, 0.7)
BACKGROUND_NAMES = ("qcd", "uds", "udsg", "light", "g", "gluon", "ud", "s")
IGNORED_NAMES = ("undef", "unknown", "other")
MIN_PASSING = 10  # background jets passing a cut below which its rejection is marked as low statistics


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


class Scored(NamedTuple):
    """The discriminant and weight of a pair's signal and background jets."""

    signal: np.ndarray
    background: np.ndarray
    signal_weight: np.ndarray
    background_weight: np.ndarray


def pair_scores(scores: np.ndarray, labels: np.ndarray, classes: list[str], pair: Pair,
                weights: np.ndarray | None = None) -> Scored:
    score = discriminant(scores, classes, pair.signal, pair.background)
    is_s = np.isin(labels, [classes.index(c) for c in pair.signal])
    is_b = np.isin(labels, [classes.index(c) for c in pair.background])
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, np.float64)
    return Scored(score[is_s], score[is_b], w[is_s], w[is_b])


def _pair(signal: np.ndarray, background: np.ndarray, ws: np.ndarray | None, wb: np.ndarray | None):
    truth = np.concatenate([np.ones(len(signal)), np.zeros(len(background))])
    weight = None if ws is None and wb is None else np.concatenate([
        np.ones(len(signal)) if ws is None else ws, np.ones(len(background)) if wb is None else wb])
    return truth, np.concatenate([signal, background]), weight


def roc(signal: np.ndarray, background: np.ndarray, ws: np.ndarray | None = None,
        wb: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(signal efficiency, background efficiency, background jets passing) over all thresholds."""
    from sklearn.metrics import roc_curve

    truth, score, weight = _pair(signal, background, ws, wb)
    fpr, tpr, thresholds = roc_curve(truth, score, sample_weight=weight, drop_intermediate=False)
    ordered = np.sort(background)
    return tpr, fpr, len(ordered) - np.searchsorted(ordered, thresholds, side="left")


def auc(signal: np.ndarray, background: np.ndarray, ws: np.ndarray | None = None,
        wb: np.ndarray | None = None) -> float:
    """Area under the ROC curve (NaN without jets of both kinds)."""
    from sklearn.metrics import roc_auc_score

    if not len(signal) or not len(background):
        return float("nan")
    truth, score, weight = _pair(signal, background, ws, wb)
    return float(roc_auc_score(truth, score, sample_weight=weight))


def effective(weights: np.ndarray | None, n: int) -> float:
    """Kish's effective number of jets of weighted jets."""
    if weights is None:
        return float(n)
    total = float(weights.sum())
    return total**2 / float((weights**2).sum()) if total > 0 else 0.0


def auc_error(value: float, n_signal: float, n_background: float) -> float:
    """The statistical uncertainty of an AUC (Hanley & McNeil 1982), from the (effective) jet counts."""
    if not (n_signal >= 1 and n_background >= 1) or not math.isfinite(value):
        return float("nan")
    q1, q2 = value / (2 - value), 2 * value**2 / (1 + value)
    variance = (value * (1 - value) + (n_signal - 1) * (q1 - value**2) + (n_background - 1) * (q2 - value**2))
    return math.sqrt(max(variance, 0.0) / (n_signal * n_background))


class Rejection(NamedTuple):
    value: float  # 1 / background efficiency (inf: no background jet passes; NaN: no jets)
    error: float
    passing: int  # background jets passing the cut


def rejection(signal: np.ndarray, background: np.ndarray, efficiency: float, ws: np.ndarray | None = None,
              wb: np.ndarray | None = None) -> Rejection:
    """The background rejection where the signal efficiency first reaches ``efficiency``, its binomial
    uncertainty and the background jets passing there."""
    if not len(signal) or not len(background):
        return Rejection(float("nan"), float("nan"), 0)
    return rejection_on(roc(signal, background, ws, wb), efficiency)


def rejection_on(curve: tuple[np.ndarray, np.ndarray, np.ndarray], efficiency: float) -> Rejection:
    """:func:`rejection` on a computed :func:`roc` curve."""
    tpr, fpr, passing = curve
    at = min(int(np.searchsorted(tpr, efficiency)), len(fpr) - 1)
    eff, k = float(fpr[at]), int(passing[at])
    if eff <= 0:
        return Rejection(float("inf"), float("nan"), k)
    return Rejection(1 / eff, math.sqrt(max(1 - eff, 0.0) / max(k, 1)) / eff, k)


def performance(scores: np.ndarray, labels: np.ndarray, classes: list[str],
                weights: np.ndarray | None = None) -> dict[str, Any]:
    """AUC of each class against the rest; AUC with its uncertainty (``_error``) and rejections (with
    ``_error``) of every derived pair; ``low_statistics``: the rejections measured from fewer than
    :data:`MIN_PASSING` background jets."""
    out: dict[str, float | list[str]] = {}
    w = None if weights is None else np.asarray(weights, np.float64)
    for i, name in enumerate(classes):
        mine = labels == i
        out[f"auc_{name}_vs_rest"] = auc(scores[mine, i], scores[~mine, i], *(
            (None, None) if w is None else (w[mine], w[~mine])))
    low: list[str] = []
    for pair in class_pairs(classes):
        s, b, ws, wb = pair_scores(scores, labels, classes, pair, w)
        value = auc(s, b, ws if w is not None else None, wb if w is not None else None)
        out[f"auc_{pair.name}"] = value
        out[f"auc_{pair.name}_error"] = auc_error(value, effective(ws if w is not None else None, len(s)),
                                                  effective(wb if w is not None else None, len(b)))
        curve = roc(s, b, *((ws, wb) if w is not None else (None, None))) if len(s) and len(b) else None
        for efficiency in EFFICIENCIES:
            key = f"rejection_{pair.name}_at_{int(efficiency * 100)}"
            found = rejection_on(curve, efficiency) if curve else Rejection(float("nan"), float("nan"), 0)
            out[key], out[f"{key}_error"] = found.value, found.error
            if len(b) and found.passing < MIN_PASSING:
                low.append(f"{key} ({found.passing} background jet{'s' if found.passing != 1 else ''} pass)")
    out["low_statistics"] = low
    return out


def regression_metrics(residuals: np.ndarray, targets: list[str] | tuple[str, ...],
                       weights: np.ndarray | None = None) -> dict[str, float]:
    """Per target, from the residuals (prediction − truth, ``[N, T]``) and optional jet weights: the bias (their
    mean), the resolution (their standard deviation) and the robust resolution (half their 16–84% interval)."""
    out: dict[str, float] = {}
    w = np.ones(len(residuals)) if weights is None else np.asarray(weights, np.float64)
    for i, name in enumerate(targets[:residuals.shape[1]]):
        if not len(residuals) or w.sum() <= 0:
            out[f"{name}_bias"] = out[f"{name}_resolution"] = out[f"{name}_resolution_68"] = float("nan")
            continue
        values = residuals[:, i]
        mean = float(np.average(values, weights=w))
        low, high = _quantiles(values, w, (0.16, 0.84))
        out[f"{name}_bias"] = mean
        out[f"{name}_resolution"] = float(np.sqrt(np.average((values - mean) ** 2, weights=w)))
        out[f"{name}_resolution_68"] = float((high - low) / 2)
    return out


def _quantiles(values: np.ndarray, weights: np.ndarray, q: tuple[float, ...]) -> np.ndarray:
    """Weighted quantiles (numpy's linear rule for equal weights)."""
    if np.all(weights == weights[0]):
        return np.percentile(values, [100 * x for x in q])
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    position = (cumulative - weights[order] / 2) / cumulative[-1]
    return np.interp(q, position, values[order])


def plot_rocs(path: str | Path, scores: np.ndarray, labels: np.ndarray, classes: list[str],
              experiment: str | None = None, note: str = "", weights: np.ndarray | None = None) -> list[Path]:
    """One figure per signal class (its curves against each background and all of them together, with their
    statistical bands), PNG at 150 dpi and PDF; returns the PNG paths, ``<path stem>.<signal>.png``. ``note``
    says which jets were scored (titled at the right)."""
    import matplotlib.style
    import mplhep

    by_signal: dict[str, list[Pair]] = {}
    for pair in class_pairs(classes):
        by_signal.setdefault("+".join(pair.signal), []).append(pair)
    written = []
    stem = Path(path)
    for signal, pairs in by_signal.items():
        with matplotlib.style.context(mplhep.style.CMS):  # no pyplot: the caller's session is left as it was
            written.append(_roc_figure(stem, signal, pairs, scores, labels, classes, experiment, note, weights))
    return written


def _roc_figure(stem: Path, signal: str, pairs: list[Pair], scores: np.ndarray, labels: np.ndarray,
                classes: list[str], experiment: str | None, note: str, weights: np.ndarray | None) -> Path:
    from matplotlib.figure import Figure

    from jetstore.stats.plots import _experiment, save_figure

    figure = Figure(figsize=(10, 9))
    axis = figure.subplots()
    for pair in pairs:
        s, b, ws, wb = pair_scores(scores, labels, classes, pair, weights)
        if not len(s) or not len(b):
            continue
        curve = roc(s, b, *((ws, wb) if weights is not None else (None, None)))
        tpr, fpr, passing = curve
        keep = fpr > 0
        value = auc(s, b, *((ws, wb) if weights is not None else (None, None)))
        error = auc_error(value, len(s), len(b))
        combined = len(pair.background) > 1
        line, = axis.plot(tpr[keep], fpr[keep], lw=2.5 if combined else 1.8, ls="-" if combined else "--",
                          label=f"vs {'+'.join(pair.background)}: AUC {value:.3f} ± {error:.3f} "
                                f"({len(s):,} / {len(b):,} jets)")
        # the binomial uncertainty of the background efficiency, from the jets passing each cut
        band = fpr[keep] * np.sqrt(np.maximum(1 - fpr[keep], 0) / np.maximum(passing[keep], 1))
        axis.fill_between(tpr[keep], np.maximum(fpr[keep] - band, fpr[keep] * 0.05), fpr[keep] + band,
                          color=line.get_color(), alpha=0.2, lw=0)
        for efficiency in EFFICIENCIES:
            found = rejection_on(curve, efficiency)
            if math.isfinite(found.value):
                low = found.passing < MIN_PASSING
                axis.plot([efficiency], [1 / found.value], "o", ms=7, color=line.get_color(),
                          mfc="none" if low else line.get_color())
    axis.set_yscale("log")
    axis.set_xlim(0, 1)
    axis.set_xlabel(f"{signal} jet efficiency")
    axis.set_ylabel("background jet efficiency (misidentification)")
    axis.grid(alpha=0.3, which="both")
    axis.plot([], [], "o", color="grey", label="30, 50, 70% working points")
    axis.plot([], [], "o", color="grey", mfc="none", label=f"(hollow: fewer than {MIN_PASSING} background jets pass)")
    axis.legend(fontsize=13, loc="best", title=f"{signal} jets against", title_fontsize=14)
    _experiment(axis, experiment)
    if note:
        axis.set_title(note, loc="right", fontsize=16)
    figure.tight_layout()
    return save_figure(figure, stem.with_name(f"{stem.name}.{signal.replace('/', '_')}"))
