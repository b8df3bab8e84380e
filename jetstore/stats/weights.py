"""weaver-core's WeightMaker, on merged per-class histograms.

The histograms are exact integer counts summed over shards, so the tables equal what weaver-core
computes in one pass over the same jets; the arithmetic below follows WeightMaker.make_weights step by
step, in the same dtypes.
"""

from __future__ import annotations

import numpy as np

from jetstore.config.weaver import WeightsSpec
from jetstore.model.table import is_member

MAX_WEIGHT = 0.9  # weaver: scale the smallest class below 1 to keep some randomness in sampling


def class_histograms(spec: WeightsSpec, x: np.ndarray, y: np.ndarray, labels: dict[str, np.ndarray]) -> dict:
    """Per-class 2-D counts in the reweight variables (float64, as ``np.histogram2d`` returns)."""
    x = np.asarray(x)
    y = np.asarray(y)
    if not spec.discard_under_overflow:
        x = np.clip(x, min(spec.x_bins), max(spec.x_bins))
        y = np.clip(y, min(spec.y_bins), max(spec.y_bins))
    out = {}
    for label in spec.classes:
        members = is_member(labels[label])
        hist, _, _ = np.histogram2d(x[members], y[members], bins=[list(spec.x_bins), list(spec.y_bins)])
        out[label] = hist
    return out


def weight_tables(spec: WeightsSpec, hists: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The reweighting tables (float32 ``[len(x_bins) - 1, len(y_bins) - 1]`` per class)."""
    raw = {label: np.asarray(hists[label]).astype("float32") for label in spec.classes}
    result = {label: raw[label].copy() for label in spec.classes}
    class_events = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        if spec.method == "flat":
            for label, class_weight in zip(spec.classes, spec.class_weights, strict=True):
                hist = result[label]
                if not np.any(hist > 0):
                    raise ValueError(f"class {label} has no jets in the reweighting bins")
                threshold = np.median(hist[hist > 0]) * 0.01
                reference = np.percentile(hist[hist > threshold], spec.threshold)
                weight = np.clip(np.nan_to_num(reference / hist, posinf=0), 0, 1)
                result[label] = weight
                class_events[label] = np.sum(raw[label] * weight) / class_weight
        else:
            reference_hist = raw[spec.classes[0]]
            for label, class_weight in zip(spec.classes, spec.class_weights, strict=True):
                ratio = np.nan_to_num(reference_hist / result[label], posinf=0)
                upper = np.percentile(ratio[ratio > 0], 100 - spec.threshold)
                weight = np.clip(ratio / upper, 0, 1)
                result[label] = weight
                class_events[label] = np.sum(raw[label] * weight) / class_weight
    smallest = min(class_events.values()) * MAX_WEIGHT
    for label in spec.classes:
        result[label] *= float(smallest) / class_events[label]
    return result
