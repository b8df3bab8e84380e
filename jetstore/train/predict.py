"""``--predict OUT.root|OUT.parquet``: the run's best model scores every selected jet of the held-out part of
its data (or of ``--predict-data``), in weaver-core's output layout.

Columns: ``score_<label>`` and ``<label>`` (true or false) per class and ``_label_`` (the class index), as
weaver writes them; per regression target the truth and ``pred_<target>``; the config's observers and the jet
identity columns the datasets store (``run``, ``luminosityBlock``, ``event``, ``ijet``: to match other taggers jet by
jet); ``_sample_`` (the sample's index) and, in Parquet, ``sample`` (its name; a ROOT file lists the names in its
``sample_names`` string). Beside it: ROC figures (``<stem>.roc.<signal>.png/.pdf``) and a per-sample AUC table
(``<stem>.samples.csv``)."""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jetstore import JetDataset
from jetstore.config import load_training_config
from jetstore.config.weaver import TrainingConfig
from jetstore.dataset.collection import Collection
from jetstore.errors import DatasetError, JetstoreError
from jetstore.train.checkpoint import LATEST, load_checkpoint, model_file
from jetstore.train.distributed import setup_distributed
from jetstore.train.evaluate import performance, plot_rocs, regression_metrics
from jetstore.train.frozen import EXPORTED_CONFIG, load_frozen, with_observers
from jetstore.train.loop import set_torch_threads
from jetstore.train.network import LABEL, build_network, load_model_state
from jetstore.train.objective import Objective
from jetstore.train.options import TrainOptions, absolute_location

LOG = logging.getLogger("jetstore.train")
SAMPLE = "_sample_"
IDENTITY = ("run", "luminosityBlock", "lumi", "event", "ijet", "jet_index")
SUFFIXES = (".root", ".parquet")


def sample_name(url: str) -> str:
    """A dataset's sample name: ``NAME`` of ``NAME:URL``, else the dataset folder's name."""
    named = re.match(r"^([A-Za-z_][\w.-]*):(?!//)", url)
    return named.group(1) if named else Path(url.rstrip("/")).name


def run_config(options: TrainOptions) -> TrainingConfig:
    """The config the model was trained with, its standardisation and weight tables written in: the run folder's
    ``data_config.yaml``, else the latest checkpoint's copy. Never another dataset's stats."""
    exported = Path(options.output) / EXPORTED_CONFIG
    if exported.is_file():
        return load_training_config(exported)
    state = load_checkpoint(options.checkpoint_url)
    if state is not None and isinstance(state.get("frozen_config"), str):
        return load_frozen(state["frozen_config"], f"{options.checkpoint_url}/{LATEST}")
    raise JetstoreError(f"{options.output}: no trained run there (no {EXPORTED_CONFIG}, no checkpoint with the "
                        "model's standardisation); give the run's --output (or --checkpoints)")


def identity_columns(collection: Collection) -> tuple[str, ...]:
    """The jet identity columns every dataset stores (run, luminosity block, event, jet index): written beside
    the scores, so that they match other taggers' jet by jet."""
    names = None
    for member in collection:
        stored = {c.name for c in member.dataset.schema.jet_columns}
        names = stored if names is None else names & stored
    return tuple(n for n in IDENTITY if n in (names or ()))


def prediction_split(options: TrainOptions) -> str:
    """Which jets to score: all of --predict-data, else the held-out part of --data. Jets the model trained on
    are refused (--holdout 0 leaves none held out) or named in a warning (--predict-data is a training set)."""
    if options.predict_data is None:
        if options.holdout == 0:
            raise JetstoreError(f"{options.output}: the run trained on every jet of --data (--holdout 0): its "
                                "scores would be of training jets; give --predict-data")
        return "holdout"
    trained = {absolute_location(d) for d in options.data}
    if absolute_location(options.predict_data) in trained:
        LOG.warning("--predict-data %s is training data of this run: its scores include the jets the model trained "
                    "on (%d%% of them); omit --predict-data to score the held-out part", options.predict_data,
                    round(100 * (1 - options.holdout)))
    return "all"


def load_trained(options: TrainOptions, config, for_inference: bool = False):
    """The run's network with its best (else last) weights, and the file they came from."""
    regression = options.regression_mode or config.label_type == "custom"
    network = build_network(options, config, regression, for_inference=for_inference)
    found = model_file(options.checkpoint_url)
    if found is None:
        raise DatasetError(f"{options.checkpoint_url}: no model to use; train first (or give the run's --output "
                           "/ --checkpoints)")
    name, weights = found
    load_model_state(network.model, weights, f"{options.checkpoint_url}/{name}", network)
    network.model.eval()
    return network, f"{options.checkpoint_url}/{name}"


def predict(options: TrainOptions, output: str, max_jets: int | None = None, plots: bool = True) -> dict[str, Any]:
    """Scores (and regression outputs) of every selected jet with the run's best model (the first ``max_jets``):
    the output file, ROC figures (unless not ``plots``), the per-sample table, and the performance summary."""
    if Path(output).suffix not in SUFFIXES:
        raise JetstoreError(f"{output}: predictions are written as .root or .parquet")
    _, _, device = setup_distributed()
    set_torch_threads(options)
    config = run_config(options)
    network, source = load_trained(options, config)
    network.model.to(device)
    objective = Objective.for_config(config, network.regression)
    split = prediction_split(options)
    url = options.predict_data or options.data_url
    collection = Collection.open(url)
    config = with_observers(config, identity_columns(collection))
    dataset = JetDataset(collection, config, options.batch_size, training=False, observers=True, split=split,
                         holdout=options.holdout, threads=options.threads)
    columns: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for batch in torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=options.workers):
            logits, regression = network(network.model, {k: v.to(device) for k, v in batch.items()})
            n = len(next(iter(batch.values())))
            if logits is not None:
                columns.setdefault("scores", []).append(torch.softmax(logits.float(), dim=1).cpu().numpy())
                columns.setdefault(LABEL, []).append(batch[LABEL].numpy())
            if regression is not None:
                for i, name in enumerate(objective.targets[:regression.shape[1]]):
                    columns.setdefault(f"pred_{name}", []).append(regression[:, i].float().cpu().numpy())
                    columns.setdefault(name, []).append(batch[name].numpy())
            for name in config.observers:
                columns.setdefault(name, []).append(batch[name].numpy())
            columns.setdefault(SAMPLE, []).append(batch[SAMPLE].numpy() if SAMPLE in batch else np.zeros(n, np.int64))
            if max_jets and sum(len(s) for s in columns[SAMPLE]) >= max_jets:
                break
    if not columns:
        raise DatasetError(f"{url}: no selected jet in split {split!r} to predict on")
    arrays = {k: np.concatenate(v) for k, v in columns.items()}
    first_url = url if isinstance(url, str) else url[0]
    samples = tuple(getattr(dataset, "sample_names", None) or (sample_name(first_url),))
    scores = arrays.pop("scores", None)
    table = _columns(arrays, scores, objective)
    write_predictions(output, table, samples)
    summary: dict[str, Any] = {"output": output, "model": source, "jets": len(arrays[SAMPLE]),
                               "data": f"held-out {options.holdout:.0%} of {url}" if split == "holdout" else url}
    if objective.targets and "pred_" + objective.targets[0] in arrays:
        residuals = np.stack([arrays[f"pred_{t}"] - arrays[t] for t in objective.targets if f"pred_{t}" in arrays],
                             axis=1).astype(np.float64)
        summary.update(regression_metrics(residuals, objective.targets))
    if scores is not None:
        classes = objective.class_names
        labels = arrays[LABEL]
        note = f"held-out {options.holdout:.0%} of the training data" if split == "holdout" else sample_name(first_url)
        if plots:
            plot_rocs(Path(output).with_suffix(".roc"), scores, labels, classes, options.experiment_label, note)
        found = performance(scores, labels, classes)
        summary.update(found)
        for item in found["low_statistics"]:
            LOG.warning("low statistics: %s; its rejection is uncertain (a lower bound when none passes)", item)
        summary["per_sample"] = per_sample_table(Path(output).with_suffix(".samples.csv"), scores, labels,
                                                 arrays[SAMPLE], samples, classes)
    LOG.info("wrote %s (%d jets, model %s)", output, summary["jets"], source)
    return summary


def _columns(arrays: dict[str, np.ndarray], scores: np.ndarray | None, objective: Objective) -> dict[str, np.ndarray]:
    """weaver-core's column layout: per class its score and a true/false label, then the rest."""
    table: dict[str, np.ndarray] = {}
    if scores is not None:
        for i, label in enumerate(objective.classes):
            table[f"score_{label}"] = scores[:, i]
        for i, label in enumerate(objective.classes):
            table[label] = arrays[LABEL] == i
    table.update(arrays)
    return table


def write_predictions(path: str, table: dict[str, np.ndarray], samples: tuple[str, ...]) -> None:
    """ROOT (tree ``Events``, as weaver) or Parquet, by the suffix of ``path``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if path.endswith(".root"):
        import uproot

        with uproot.recreate(path) as handle:
            handle["Events"] = table
            handle["sample_names"] = "\n".join(samples)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = pa.DictionaryArray.from_arrays(pa.array(table[SAMPLE], pa.int32()), pa.array(list(samples)))
    pq.write_table(pa.table({**table, "sample": names}), path, compression="zstd")


def per_sample_table(path: Path, scores: np.ndarray, labels: np.ndarray, sample: np.ndarray,
                     samples: tuple[str, ...], classes: list[str]) -> dict[str, dict[str, float]]:
    """AUCs of every class pair per sample, written as CSV; returned by sample name."""
    rows: dict[str, dict[str, float]] = {}
    for index, name in enumerate(samples):
        mine = sample == index
        if not mine.any():
            continue
        found = performance(scores[mine], labels[mine], classes)
        rows[name] = {"jets": int(mine.sum()), **{k: v for k, v in found.items() if k.startswith("auc_")}}
    if rows:
        fields = ["sample", *next(iter(rows.values()))]
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fields)
            writer.writeheader()
            for name, values in rows.items():
                writer.writerow({"sample": name, **{k: (f"{v:.5f}" if isinstance(v, float) else v)
                                                    for k, v in values.items()}})
    return rows
