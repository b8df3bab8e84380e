"""weaver-core data-config YAML, accepted as is.

Every key weaver-core 0.5 understands is accepted; unknown keys are errors naming the key. Expressions
(``selection``, ``new_variables``, custom labels) go through jetstore's safe evaluator, so weaver's
``np.``/``ak.`` spellings work and nothing is passed to ``eval``. Defaults follow weaver's ``DataConfig``.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from jetstore.errors import SchemaError, echo
from jetstore.model.cells import CellRule
from jetstore.schema.expression import Expression
from jetstore.schema.load import check_keys, read_yaml

TOP_KEYS = ("treename", "branch_magic", "file_magic", "selection", "test_time_selection", "preprocess",
            "new_variables", "inputs", "labels", "observers", "monitor_variables", "weights", "bucketing")
PREPROCESS_KEYS = ("method", "data_fraction", "params")
INPUT_KEYS = ("length", "pad_mode", "vars")
LABEL_KEYS = ("type", "value", "targets")  # targets: jetstore's regression targets beside simple labels
WEIGHT_KEYS = ("use_precomputed_weights", "weight_branches", "reweight_method", "reweight_vars", "reweight_basewgt",
               "reweight_classes", "class_weights", "reweight_threshold", "reweight_discard_under_overflow",
               "reweight_hists")
PARAM_KEYS = ("length", "pad_mode", "center", "scale", "min", "max", "pad_value")
PAD_MODES = ("constant", "wrap")


@dataclass(frozen=True)
class Variable:
    """One input variable: ``[name, subtract_by, multiply_by, clip_min, clip_max, pad_value]``.

    ``center`` is a number, None (no standardisation) or ``"auto"`` (computed by ``jetstore stats``).
    """

    name: str
    center: float | str | None
    scale: float = 1.0
    min: float = -5.0
    max: float = 5.0
    pad_value: float = 0.0

    @property
    def is_auto(self) -> bool:
        return self.center == "auto"


def _center(name: str, center: float | str | None) -> float | str | None:
    """weaver's rule: a ``*_mask`` variable is never standardised (``auto`` becomes None)."""
    return None if center == "auto" and name.endswith("_mask") else center


@dataclass(frozen=True)
class InputGroup:
    """An ``inputs`` entry: variables stacked into one ``[C, length]`` tensor (``[C]`` if length is None)."""

    name: str
    length: int | None
    pad_mode: str
    variables: tuple[Variable, ...]


@dataclass(frozen=True)
class WeightsSpec:
    """The ``weights`` block (weaver's WeightMaker semantics)."""

    method: str
    x_var: str
    y_var: str
    x_bins: tuple[float, ...]
    y_bins: tuple[float, ...]
    classes: tuple[str, ...]
    class_weights: tuple[float, ...]
    threshold: float
    discard_under_overflow: bool
    hists: dict[str, np.ndarray] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class TrainingConfig:
    """A parsed weaver data-config. ``options`` keeps the original mapping for export."""

    options: dict[str, Any]
    selection: Expression | None
    new_variables: dict[str, Expression]
    auto_standardization: bool
    data_fraction: float
    inputs: tuple[InputGroup, ...]
    label_type: str
    label_columns: tuple[str, ...]
    custom_labels: dict[str, Expression]
    observers: tuple[str, ...]
    monitor_variables: tuple[str, ...]
    weights: WeightsSpec | None
    source: str = "config"

    @property
    def variables(self) -> dict[str, Variable]:
        """Every input variable by name (weaver requires one definition per name)."""
        return {v.name: v for group in self.inputs for v in group.variables}

    @property
    def auto_variables(self) -> tuple[str, ...]:
        """Variables whose centre and scale ``jetstore stats`` computes."""
        return tuple(n for n, v in self.variables.items() if v.is_auto)

    def cell_rule(self) -> CellRule:
        """The classes and reweighting cells this config asks for (the weights block's, else its labels)."""
        spec = self.weights
        if spec is not None:
            return CellRule(spec.classes, spec.x_var, spec.y_var, spec.x_bins, spec.y_bins, spec.discard_under_overflow)
        return CellRule(self.label_columns if self.label_type == "simple" else ())

    @property
    def hash(self) -> str:
        """Identity of what the statistics depend on: selection, new variables, labels, the variables'
        names, the data fraction and the weights block. Stored results (``preprocess.params``,
        ``reweight_hists``), observers and manual centres do not change it, so an exported config keeps
        the hash of the config it came from."""
        relevant = {k: self.options.get(k) for k in ("selection", "new_variables", "labels")}
        relevant["inputs"] = {g.name: [v.name for v in g.variables] for g in self.inputs}
        relevant["data_fraction"] = self.data_fraction
        relevant["weights"] = {k: v for k, v in (self.options.get("weights") or {}).items() if k != "reweight_hists"}
        return xxhash.xxh3_64_hexdigest(json.dumps(relevant, sort_keys=True, default=str).encode())


def load_training_config(path: str | Path) -> TrainingConfig:
    return training_config_from_dict(read_yaml(path, "config"), where=str(path))


def training_config_from_dict(data: Any, where: str = "config") -> TrainingConfig:
    if not isinstance(data, Mapping):
        raise SchemaError(f"{where}: expected a mapping at the top level")
    options = copy.deepcopy(dict(data))
    check_keys(options, TOP_KEYS, where)
    preprocess = _mapping(options.get("preprocess") or {}, f"{where}: preprocess")
    check_keys(preprocess, PREPROCESS_KEYS, f"{where}: preprocess")
    method = str(preprocess.get("method", "manual")).lower()
    auto = method.startswith("auto")
    fraction = _number(preprocess.get("data_fraction", 0.1), f"{where}: preprocess.data_fraction")
    if not 0 < fraction <= 1:
        raise SchemaError(f"{where}: preprocess.data_fraction must be in (0, 1], got {fraction}")
    known_params = preprocess.get("params") or {}

    new_variables = {}
    for name, expr in _mapping(options.get("new_variables") or {}, f"{where}: new_variables").items():
        if expr == name:  # weaver drops self-mappings
            continue
        new_variables[str(name)] = Expression.parse(str(expr), f"{where}: new_variables.{name}")

    inputs = tuple(_input_group(name, spec, auto, known_params, f"{where}: inputs.{name}")
                   for name, spec in _mapping(options.get("inputs") or {}, f"{where}: inputs").items())
    _check_unique_variables(inputs, where)

    labels = _mapping(options.get("labels") or {}, f"{where}: labels")
    check_keys(labels, LABEL_KEYS, f"{where}: labels")
    label_type = labels.get("type", "simple")
    custom: dict[str, Expression] = {}
    columns: tuple[str, ...] = ()
    if label_type == "simple":
        if not isinstance(labels.get("value"), list) or not labels["value"]:
            raise SchemaError(f"{where}: labels.value must be a non-empty list of label columns for type 'simple'")
        columns = tuple(str(v) for v in labels["value"])
        custom = {str(k): Expression.parse(str(v), f"{where}: labels.targets.{k}")
                  for k, v in _mapping(labels.get("targets") or {}, f"{where}: labels.targets").items()}
    elif label_type == "custom":
        custom = {str(k): Expression.parse(str(v), f"{where}: labels.value.{k}")
                  for k, v in _mapping(labels.get("value") or {}, f"{where}: labels.value").items()}
    else:
        raise SchemaError(f"{where}: labels.type must be 'simple' or 'custom', got {echo(label_type)}")

    observers = _names(options.get("observers"), f"{where}: observers")
    monitor = _names(options.get("monitor_variables"), f"{where}: monitor_variables")
    if observers and monitor:
        raise SchemaError(f"{where}: set either 'observers' or 'monitor_variables', not both")
    selection = options.get("selection")
    return TrainingConfig(
        options=options,
        selection=Expression.parse(str(selection), f"{where}: selection") if selection else None,
        new_variables=new_variables, auto_standardization=auto, data_fraction=fraction, inputs=inputs,
        label_type=label_type, label_columns=columns, custom_labels=custom, observers=observers,
        monitor_variables=monitor, weights=_weights(options.get("weights"), f"{where}: weights"), source=where,
    )


def _input_group(name: str, spec: Any, auto: bool, known: Mapping, where: str) -> InputGroup:
    spec = _mapping(spec, where)
    check_keys(spec, INPUT_KEYS, where)
    length = spec.get("length")
    if length is not None and (not isinstance(length, int) or length <= 0):
        raise SchemaError(f"{where}.length must be a positive integer or null, got {echo(length)}")
    pad_mode = str(spec.get("pad_mode", "constant")).lower()
    if pad_mode not in PAD_MODES:
        raise SchemaError(f"{where}.pad_mode must be one of {', '.join(PAD_MODES)}, got {echo(pad_mode)}")
    if name.endswith("_mask") and pad_mode != "constant":
        raise SchemaError(f"{where}: the pad_mode of a mask input must be 'constant'")
    raw_vars = spec.get("vars")
    if not isinstance(raw_vars, list) or not raw_vars:
        raise SchemaError(f"{where}.vars must be a non-empty list")
    variables = []
    for index, item in enumerate(raw_vars):
        item = item if isinstance(item, list) else [item]
        if not item or not isinstance(item[0], str) or len(item) > 6:
            raise SchemaError(f"{where}.vars[{index}]: expected name or [name, subtract_by, multiply_by, "
                              f"clip_min, clip_max, pad_value], got {echo(item)}")
        if item[0] in known:  # parameters already computed (an exported config)
            here = f"{where}: preprocess.params.{item[0]}"
            params = _mapping(known[item[0]], here)
            check_keys(params, PARAM_KEYS, here)
            center = params.get("center")
            values: list[Any] = [center if center in (None, "auto") else _number(center, f"{here}.center")]
            values += [_number(params.get(key, default), f"{here}.{key}")
                       for key, default in (("scale", 1), ("min", -5), ("max", 5), ("pad_value", 0))]
        else:
            defaults = ["auto" if auto else None, 1, -5, 5, 0]
            values = item[1:] + defaults[len(item) - 1:]
            here = f"{where}.vars[{index}] ({item[0]})"
            if values[0] is not None and values[0] != "auto":
                values[0] = _number(values[0], f"{here}: subtract_by (a number, null or 'auto')")
            values[1:] = [_number(v, f"{here}: scale, clip and pad values") for v in values[1:]]
        variables.append(Variable(item[0], _center(item[0], values[0]), *values[1:]))
    return InputGroup(name, length, pad_mode, tuple(variables))


def _weights(data: Any, where: str) -> WeightsSpec | None:
    if data is None:
        return None
    data = _mapping(data, where)
    check_keys(data, WEIGHT_KEYS, where)
    if data.get("use_precomputed_weights"):
        raise SchemaError(f"{where}: use_precomputed_weights is not supported by jetstore's sampler; "
                          "use reweight_method flat or ref")
    if data.get("reweight_basewgt"):
        raise SchemaError(f"{where}: reweight_basewgt is not supported yet")
    method = data.get("reweight_method")
    if method not in ("flat", "ref"):
        raise SchemaError(f"{where}.reweight_method must be 'flat' or 'ref', got {echo(method)}")
    variables = _mapping(data.get("reweight_vars"), f"{where}.reweight_vars")
    if len(variables) != 2:
        raise SchemaError(f"{where}.reweight_vars must name exactly two variables")
    (x_var, x_bins), (y_var, y_bins) = variables.items()
    for var, bins in ((x_var, x_bins), (y_var, y_bins)):
        increasing = isinstance(bins, list) and len(bins) >= 2 and all(
            isinstance(b, int | float) for b in bins) and all(a < b for a, b in itertools.pairwise(bins))
        if not increasing:
            raise SchemaError(f"{where}.reweight_vars.{var} must be an increasing list of bin edges")
    classes = tuple(str(c) for c in data.get("reweight_classes") or ())
    if not classes:
        raise SchemaError(f"{where}.reweight_classes must list the label columns to reweight")
    class_weights = data.get("class_weights") or [1.0] * len(classes)
    if not isinstance(class_weights, list) or len(class_weights) != len(classes):
        raise SchemaError(f"{where}.class_weights must list one number per class ({len(classes)})")
    class_weights = [_number(w, f"{where}.class_weights") for w in class_weights]
    if not all(w > 0 for w in class_weights):
        raise SchemaError(f"{where}.class_weights must be positive numbers")
    hists = _tables(data.get("reweight_hists"), (len(x_bins) - 1, len(y_bins) - 1), f"{where}.reweight_hists")
    return WeightsSpec(
        method=method, x_var=str(x_var), y_var=str(y_var), x_bins=tuple(map(float, x_bins)),
        y_bins=tuple(map(float, y_bins)), classes=classes, class_weights=tuple(map(float, class_weights)),
        threshold=_number(data.get("reweight_threshold", 10), f"{where}.reweight_threshold"),
        discard_under_overflow=bool(data.get("reweight_discard_under_overflow", True)),
        hists=hists,
    )


def _number(value: Any, where: str) -> float:
    """A finite number from a config (a bool, text, NaN or ±inf is a :class:`SchemaError` naming the key)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SchemaError(f"{where} must be a finite number, got {echo(value)}")
    return float(value)


def _tables(data: Any, shape: tuple[int, int], where: str) -> dict[str, np.ndarray] | None:
    """``reweight_hists`` of an exported config: per class, a table of the bins' shape of weights in [0, 1]."""
    if not data:
        return None
    tables = {}
    for label, rows in _mapping(data, where).items():
        try:
            with np.errstate(over="ignore"):
                table = np.asarray(rows, dtype=np.float32)
        except (TypeError, ValueError):
            table = np.zeros(0, dtype=np.float32)
        if table.shape != shape or not (np.isfinite(table).all() and (table >= 0).all() and (table <= 1).all()):
            raise SchemaError(f"{where}.{label} must be a {shape[0]}×{shape[1]} table of weights in [0, 1]")
        tables[str(label)] = table
    return tables


def _check_unique_variables(inputs: tuple[InputGroup, ...], where: str) -> None:
    seen: dict[str, Variable] = {}
    for group in inputs:
        for variable in group.variables:
            previous = seen.setdefault(variable.name, variable)
            if previous != variable:
                raise SchemaError(f"{where}: variable '{variable.name}' is defined twice with different parameters")


def _names(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SchemaError(f"{where}: expected a list of variable names, got {echo(value)}")
    return tuple(value)


def _mapping(data: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise SchemaError(f"{where}: expected a mapping, got {type(data).__name__}")
    return data
