"""Exporting a weaver-core data-config with ``preprocess.params`` and ``reweight_hists`` filled in, so
weaver-core trains on it without recomputing either (its ``--no-remake-weights`` path), and the weaver
options that read jetstore's Parquet shards correctly.

Shards are sorted by (class, pT) for the sampler. weaver-core's default ``--fetch-step 0.01`` loads the same
1% slice of every file at a time, which in a sorted shard is a single class: its first batches would hold
one class only. Whole shards per fetch (``--fetch-by-files --fetch-step K``) hold every class, and weaver
shuffles them in memory."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from jetstore.config.weaver import TrainingConfig
from jetstore.stats.result import StatsResult
from jetstore.store.manifest import Manifest

JETS_PER_FETCH = 200_000  # what weaver holds in memory per DataLoader worker with the advised options


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


def export_weaver_yaml(config: TrainingConfig, stats: StatsResult, reading: str = "") -> str:
    header = (f"# weaver-core data-config exported by jetstore (config {config.hash});\n"
              "# preprocess.params and weights.reweight_hists were computed by `jetstore stats`.\n")
    if reading:
        header += f"# {reading}\n"
    return header + yaml.safe_dump(weaver_options(config, stats), sort_keys=False)


def weaver_reading(manifest: Manifest, url: str) -> str:
    """How to point weaver-core at the dataset's shards: the files and the fetch options, as text."""
    if manifest.format != "parquet":
        return (f"weaver-core reads Parquet, not {manifest.format}: convert again with --format parquet to "
                "train weaver-core on the shards (jetstore's own sampler reads either)")
    mean = max(1, manifest.n_jets // max(1, len(manifest.shards)))
    files = max(1, min(len(manifest.shards), round(JETS_PER_FETCH / mean)))
    return (f"weaver-core on these shards (sorted by class and pT): --data-train '{url.rstrip('/')}/shards/*.parquet' "
            f"--fetch-by-files --fetch-step {files} (whole shards per fetch, ~{files * mean:,} jets in memory per "
            "worker); the default --fetch-step 0.01 would give batches of one class")
