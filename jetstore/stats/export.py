"""Exporting a weaver-core data-config with ``preprocess.params`` and ``reweight_hists`` filled in, so
weaver-core trains on it without recomputing either (its ``--no-remake-weights`` path)."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from jetstore.config.weaver import TrainingConfig
from jetstore.stats.result import StatsResult


def weaver_options(config: TrainingConfig, stats: StatsResult) -> dict[str, Any]:
    """The config's options with standardisation parameters and weight tables from ``stats``."""
    options = copy.deepcopy(config.options)
    params: dict[str, dict[str, Any]] = {}
    for group in config.inputs:
        for variable in group.variables:
            center, scale = variable.center, variable.scale
            if variable.is_auto:
                if variable.name.endswith("_mask"):
                    center, scale = None, 1.0
                else:
                    computed = stats.variables[variable.name]
                    center, scale = computed.center, computed.scale
            params[variable.name] = {
                "length": group.length, "pad_mode": group.pad_mode,
                "center": None if center is None else float(center), "scale": float(scale),
                "min": float(variable.min), "max": float(variable.max), "pad_value": float(variable.pad_value),
            }
    preprocess = dict(options.get("preprocess") or {})
    preprocess["method"] = "manual"
    preprocess.setdefault("data_fraction", config.data_fraction)
    preprocess["params"] = params
    options["preprocess"] = preprocess
    if config.weights is not None:
        options["weights"] = dict(options["weights"])
        options["weights"]["reweight_hists"] = {k: v.tolist() for k, v in stats.weight_tables.items()}
    return options


def export_weaver_yaml(config: TrainingConfig, stats: StatsResult) -> str:
    header = (f"# weaver-core data-config exported by jetstore (config {config.hash});\n"
              "# preprocess.params and weights.reweight_hists were computed by `jetstore stats`.\n")
    return header + yaml.safe_dump(weaver_options(config, stats), sort_keys=False)
