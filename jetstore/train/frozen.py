"""The model's inputs as trained: the config with the training data's standardisation and weight tables written
in (weaver's ``preprocess.params`` and ``reweight_hists``), fixed when a run starts, stored in its folder
(``data_config.yaml``) and in every checkpoint, and used for validation and every prediction, whatever stats
another dataset has. Validation weighs each held-out jet by the training's sampling weight of its cell."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import xxhash
import yaml

from jetstore.config.weaver import TrainingConfig, training_config_from_dict
from jetstore.errors import JetstoreError
from jetstore.interop.weaver import export_weaver_yaml
from jetstore.stats.result import StatsResult

EXPORTED_CONFIG = "data_config.yaml"


def frozen_text(config: TrainingConfig, stats: StatsResult | None) -> str:
    """The config with ``stats`` written in, as weaver-core reads it (the config itself without stats)."""
    if stats is None:
        return yaml.safe_dump(config.options, sort_keys=False)
    return export_weaver_yaml(config, stats)


def load_frozen(text: str, where: str) -> TrainingConfig:
    return training_config_from_dict(yaml.safe_load(text), where=where)


def content_hash(config: TrainingConfig) -> str:
    """What a checkpoint's config is, by content (its path may move): every key, values included."""
    return xxhash.xxh3_64_hexdigest(json.dumps(config.options, sort_keys=True, default=str).encode())


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The keys (dotted, two levels deep) whose values differ."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, Mapping) and isinstance(b, Mapping) and not prefix:
            out += changed_keys(a, b, f"{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out


def with_observers(config: TrainingConfig, names: tuple[str, ...]) -> TrainingConfig:
    """``config`` whose batches also carry ``names`` (observers do not change its stats)."""
    return dataclasses.replace(config, observers=tuple(dict.fromkeys((*config.observers, *names))))


class MetricWeights:
    """Each jet's weight in validation metrics: its cell's weight in the frozen config's tables (weaver samples
    jets in proportion to it), 0 outside the cells; 1 for every jet without a ``weights`` block."""

    def __init__(self, config: TrainingConfig):
        self.rule = config.cell_rule() if config.weights is not None else None
        hists = config.weights.hists if config.weights is not None else None
        if self.rule is not None and not hists:
            raise JetstoreError(f"{config.source}: no weight tables (reweight_hists) to weigh validation jets with")
        self.table = self.rule.cell_weights(hists) if self.rule is not None else None

    @property
    def observers(self) -> tuple[str, ...]:
        """The variables a jet's weight needs in the batch."""
        return self.rule.variables if self.rule is not None else ()

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        if self.rule is None or self.table is None:
            return None
        values = {name: batch[name].numpy() for name in self.rule.variables}
        n = len(next(iter(values.values())))
        cells = self.rule.cells(values, np.ones(n, bool))
        weights = np.where(cells >= 0, self.table[np.maximum(cells, 0)], 0.0)
        return torch.from_numpy(weights.astype(np.float64))
