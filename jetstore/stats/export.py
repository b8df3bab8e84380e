"""Exporting a weaver-core data-config with ``preprocess.params`` and ``reweight_hists`` filled in, so
weaver-core trains on it without recomputing either (its ``--no-remake-weights`` path), and the jets as
files weaver-core reads correctly, with the command that reads them.

Shards are sorted by (class, pT) for the sampler, so weaver-core does not read them directly: its
``--fetch-step`` slices of a sorted shard are one class, and its ``--train-val-split`` validates on the top-pT
part of every file. :func:`write_weaver_files` writes the jets for weaver, shuffled, split into training and
held-out files (jetstore's held-out split), and :func:`weaver_command` prints the command that reads them."""

from __future__ import annotations

import copy
import logging
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from jetstore.config.weaver import TrainingConfig
from jetstore.errors import SchemaError
from jetstore.stats.result import StatsResult
from jetstore.stats.split import Split
from jetstore.store import paths
from jetstore.store.format import get_format
from jetstore.store.layout import ENTRY, INPUT

if TYPE_CHECKING:
    from jetstore.store.dataset import Dataset

LOG = logging.getLogger(__name__)


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


def write_weaver_files(dataset: Dataset, directory: str | Path, holdout: float | None = None, seed: int = 0,
                       log: Callable[[str], None] | None = None) -> tuple[Path, Path]:
    """The dataset's jets as weaver-ready Parquet files, one per shard: ``DIR/train/<dataset>.<shard>.parquet`` (the
    jets jetstore's trainer trains on) and ``DIR/val/<dataset>.<shard>.parquet`` (its held-out split, ``holdout``
    of the jets), each file's rows in a fixed random order. Returns the two folders.

    Why: weaver-core reads local files and takes ranges of each (``--fetch-step`` slices, ``--train-val-split``
    the last 20%); in jetstore's shards, sorted by class and pT, those ranges are one class or the highest-pT
    jets. Shuffled rows make every range a fair sample, and the held-out files are the jets jetstore validates
    and predicts on, so both trainers are scored on the same jets."""
    log = log or LOG.info
    split = Split("holdout") if holdout is None else Split("holdout", holdout)
    target = Path(directory)
    if "://" in str(directory):
        raise SchemaError(f"{directory}: weaver-core reads local files; give a local folder for --files")
    manifest = dataset.manifest
    writer_type = get_format("parquet").writer
    folders = (target / "train", target / "val")
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    for index, shard in enumerate(manifest.shards):
        table = dataset.read_shard(shard)
        held = split.mask(shard.sources, table.jets[ENTRY], table.jets.get(INPUT))
        rng = np.random.default_rng([seed, index])
        name = weaver_file_name(dataset.url, index)
        for folder, rows in zip(folders, (np.flatnonzero(~held), np.flatnonzero(held)), strict=True):
            final = folder / name
            partial = final.with_name(f".{name}.partial")
            writer = writer_type(partial, manifest.columns, manifest.layout)
            writer.write(table.take(rng.permutation(rows)))
            writer.close()
            partial.replace(final)  # complete files only: a rerun overwrites
        log(f"  {shard.path}: {int((~held).sum()):,} training and {int(held.sum()):,} held-out jets")
    return folders


def weaver_file_name(dataset_url: str, index: int) -> str:
    """The weaver-ready file of the dataset's shard ``index`` (in manifest order): ``<dataset>.<index>.parquet``."""
    return f"{paths.dataset_name(dataset_url)}.{index:05d}.parquet"


def weaver_command(config_path: str | Path, folders: dict[str | None, tuple[Path, Path]], weights: bool,
                   network: str | None = None) -> str:
    """The weaver-core command that trains on the written files with the exported config; ``folders``: the
    (training, held-out) folders of every sample (None: one unnamed group), as weaver's named groups."""
    def files(name: str | None, folder: Path) -> str:
        return shlex.quote(f"{name + ':' if name else ''}{Path(folder).resolve()}/*.parquet")

    train = [files(name, pair[0]) for name, pair in folders.items()]
    val = [files(name, pair[1]) for name, pair in folders.items()]
    parts = ["weaver", "--data-train", *train, "--data-val", *val, "--data-config",
             shlex.quote(str(Path(config_path).resolve()))]
    if weights:
        parts.append("--no-remake-weights")  # the exported reweight_hists are the weights: not recomputed
    parts += ["--network-config", shlex.quote(str(Path(network).resolve())) if network else "NETWORK.py"]
    return " ".join(parts)


def weaver_hint(url: str) -> str:
    """What to do when no files were written."""
    return (f"weaver-core cannot train on {url.rstrip('/')}/shards as they are (it reads local files, and "
            "ranges of shards sorted by class and pT give it one class at a time and only high-pT jets to "
            "validate on): add --files DIR to write weaver-ready Parquet files and print the weaver command")
