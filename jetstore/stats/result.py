"""Stored statistics: one JSON object per (dataset, config) under ``<dataset>/_stats/<config hash>.json``."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field

import numpy as np

from jetstore.documents import MAX_JSON_BYTES, DocumentError, load_json
from jetstore.errors import DatasetError, echo
from jetstore.store import paths
from jetstore.store.backend import write_bytes_atomic
from jetstore.store.collection import Collection
from jetstore.store.dataset import Dataset
from jetstore.store.storage import read_object

STATS_VERSION = 2


@dataclass(frozen=True)
class VariableStats:
    """Summary of one input variable over real (unpadded) entries after selection."""

    name: str
    count: int
    nan_count: int
    mean: float
    std: float
    min: float
    max: float
    p16: float
    p50: float
    p84: float
    center: float
    scale: float
    histogram: dict[str, list[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class StatsResult:
    """Everything ``jetstore stats`` computes for one config."""

    config_hash: str
    plan_hash: str
    standardization_fraction: float
    weights_fraction: float
    fraction_mode: str
    jets_read: int
    jets_selected: int
    variables: dict[str, VariableStats]
    class_hists: dict[str, np.ndarray]
    weight_tables: dict[str, np.ndarray]
    unit_jets: int
    unit_counts: dict[str, np.ndarray]  # shard name → rows of (unit, cell, jets)
    version: int = STATS_VERSION

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        for key in ("class_hists", "weight_tables"):
            data[key] = {k: np.asarray(v).tolist() for k, v in getattr(self, key).items()}
        data["unit_counts"] = {s: np.asarray(v).astype(np.int64).T.tolist() for s, v in self.unit_counts.items()}
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str | bytes, where: str) -> StatsResult:
        """Parse stored stats; anything malformed is a :class:`DatasetError` naming the file and key."""
        try:
            data = load_json(text)
        except DocumentError as exc:
            raise DatasetError(f"{where}: {exc}; rerun `jetstore stats`") from None
        if not isinstance(data, dict):
            raise DatasetError(f"{where}: expected a JSON object; rerun `jetstore stats`")
        version = data.get("version")
        if not isinstance(version, int) or version != STATS_VERSION:
            newer = isinstance(version, int) and version > STATS_VERSION
            raise DatasetError(f"{where}: stats version {echo(version)} " + (
                "is newer than this jetstore supports" if newer else "is not this jetstore's; rerun `jetstore stats`"))
        key = "?"
        try:
            key = "variables"
            data["variables"] = {k: VariableStats(**v) for k, v in data["variables"].items()}
            for key, dtype in (("class_hists", np.float64), ("weight_tables", np.float32)):
                with np.errstate(over="ignore"):  # 1e300 as float32 is inf: refused below, naming the table
                    data[key] = {k: np.asarray(v, dtype=dtype) for k, v in data[key].items()}
            key = "unit_counts"
            data["unit_counts"] = {shard: np.asarray(rows, dtype=np.int64).reshape(3, -1).T
                                   for shard, rows in data["unit_counts"].items()}
            result = cls(**data)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise DatasetError(f"{where}: malformed stats at '{key}' ({type(exc).__name__}); "
                               "rerun `jetstore stats`") from None
        problem = result.problem()
        if problem is not None:
            raise DatasetError(f"{where}: {problem}; rerun `jetstore stats`")
        return result

    def problem(self) -> str | None:
        """What makes these stats unusable (None: nothing), naming the variable or class: a centre or scale
        that is not a finite number (a scale must be positive), weights outside [0, 1] (weaver's acceptance
        probabilities) or not finite, class histograms or unit counts that are negative or not finite, tables
        of another shape than their histograms. Checked when computed and when read."""
        for name, variable in self.variables.items():
            reason = standardisation_problem(variable)
            if reason is not None:
                return f"variables.{name}: {reason}"
        for label, table in self.weight_tables.items():
            hist = self.class_hists.get(label)
            if hist is None or table.ndim != 2 or table.shape != hist.shape:
                return f"weight_tables.{label}: its shape {table.shape} is not its class histogram's"
            if not (np.isfinite(table).all() and ((table >= 0) & (table <= 1)).all()):
                return f"weight_tables.{label}: weights must be finite numbers in [0, 1] (found {_worst(table)})"
        for label, hist in self.class_hists.items():
            if hist.ndim != 2 or not (np.isfinite(hist).all() and (hist >= 0).all()):
                return f"class_hists.{label}: counts must be a table of finite numbers ≥ 0 (found {_worst(hist)})"
        for shard, rows in self.unit_counts.items():
            if rows.size and rows.min() < 0:
                return f"unit_counts.{echo(shard)}: negative counts"
        return None


def standardisation_problem(variable: VariableStats) -> str | None:
    """Why a variable's standardisation cannot be used (None: it can): its centre and scale must be finite
    numbers and its scale positive, or every standardised value would be NaN, ±inf or 0."""
    values = {"center": variable.center, "scale": variable.scale, "count": variable.count}
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values.values()):
        return "center, scale and count must be numbers"
    if not (math.isfinite(variable.center) and math.isfinite(variable.scale) and variable.scale > 0):
        return (f"center {variable.center:.6g} and scale {variable.scale:.6g} cannot standardise it (a finite "
                "center and a finite scale > 0 are needed)")
    return None


def _worst(values: np.ndarray) -> str:
    """The most out-of-range value of an array, for messages."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    bad = flat[~np.isfinite(flat)]
    if bad.size:
        return f"{bad[0]:g}"
    return f"{flat.min():g} to {flat.max():g}" if flat.size else "nothing"


def write_stats(data: Dataset | Collection, result: StatsResult) -> str:
    """Store ``result`` with the data (a union's stats: in its first dataset); returns the path written."""
    collection = Collection.open(data)
    dataset = collection.members[0].dataset
    path = paths.stats_path(dataset.root, result.config_hash, None if collection.single else collection.identity)
    write_bytes_atomic(dataset.fs, path, result.to_json().encode())
    return path


def read_stats(data: Dataset | Collection, config_hash: str) -> StatsResult:
    """The stored stats of a config for these data (a union's: looked for in every member); missing, or
    computed before the data changed (an append, a reconversion) → a :class:`DatasetError` saying what to run."""
    collection = Collection.open(data)
    union = None if collection.single else collection.identity
    for member in collection:
        dataset = member.dataset
        path = paths.stats_path(dataset.root, config_hash, union)
        try:
            text = read_object(dataset.fs, path, MAX_JSON_BYTES)
        except FileNotFoundError:
            continue
        except DocumentError as exc:
            raise DatasetError(f"{path}: {exc}; rerun `jetstore stats`") from None
        result = StatsResult.from_json(text, where=path)
        if result.config_hash != config_hash:
            raise DatasetError(f"{path}: holds stats for config {result.config_hash}, not {config_hash}")
        if result.plan_hash != collection.identity:
            raise DatasetError(f"{path}: computed on another version of the data (before an append or a "
                               "reconversion); rerun `jetstore stats`")
        return result
    what = f"{collection.url}" if collection.single else f"the union of {len(collection)} datasets ({collection.url})"
    raise DatasetError(f"no stats for config {config_hash} of {what}; run `jetstore stats` first"
                       + ("" if collection.single else " with the same datasets"))
