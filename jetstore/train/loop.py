"""The training loop: a network (built-in ParT or a weaver network file) fed by ``JetDataset``, epochs each
followed by a validation on the held-out jets (or ``--val-data``), the best and the last model saved, AMP
(bf16 / fp16), torchrun DDP, gradient accumulation, exact resume from checkpoints.

Under DDP every rank builds the same initial model, wraps it before the optimizer is made (Lookahead's slow
weights are copies of the weights it starts from), accumulates gradients locally (``no_sync``) until the last
batch of a step, and holds the same weights at every checkpoint (checked: a digest per rank). Metrics are summed
over the ranks. A checkpoint keeps every rank's random state, the epoch's position (``feed.Position``) and the
model's standardisation (``frozen.py``)."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from jetstore import JetDataset
from jetstore.config import load_training_config
from jetstore.config.weaver import TrainingConfig
from jetstore.dataset.collection import Collection
from jetstore.errors import DatasetError, JetstoreError
from jetstore.sampler.world import World
from jetstore.stats.result import StatsResult, read_stats
from jetstore.train.checkpoint import BEST_MODEL, LAST_MODEL, load_checkpoint, load_weights, save_checkpoint, save_model
from jetstore.train.distributed import gathered, rng_state, seed_rank, set_rng_state, setup_distributed, weights_digest
from jetstore.train.feed import Feed, Position, SharedEpoch, loader
from jetstore.train.frozen import (
    EXPORTED_CONFIG,
    MetricWeights,
    changed_keys,
    content_hash,
    frozen_text,
    load_frozen,
    with_observers,
)
from jetstore.train.metrics import MetricsLog
from jetstore.train.network import Network, build_network, load_model_state
from jetstore.train.objective import Objective, Tally
from jetstore.train.optim import Schedule, inner, load_optimizer_state, make_optimizer, optimizer_state
from jetstore.train.options import APPLIED, REFUSED, TrainOptions, flag, write_run

LOG = logging.getLogger("jetstore.train")
AMP_TYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}

__all__ = ["TrainOptions", "build", "train"]


def set_torch_threads(options: TrainOptions) -> int:
    """torch's intra-op threads: the cores the sampler's threads leave (``--threads`` per loading process), at
    least one, unless ``--torch-threads`` says. Both pools busy-waiting on the same cores is what made 2-core
    training 5× slower than with ``OMP_NUM_THREADS=1``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = options.torch_threads or max(1, cores - options.threads * max(1, options.workers))
    torch.set_num_threads(threads)
    return threads


def amp_dtype(options: TrainOptions, device: torch.device) -> torch.dtype | None:
    return AMP_TYPES[options.amp or ("bf16" if device.type == "cuda" else "none")]


def check_output(options: TrainOptions) -> None:
    """--output (and a local --checkpoints) must be folders or not exist yet: one line, not a traceback."""
    for name, value in (("output", options.output), ("checkpoints", options.checkpoints)):
        if value is not None and "://" not in value and Path(value).exists() and not Path(value).is_dir():
            raise JetstoreError(f"{flag(name)} {value}: not a folder (a file is there)")


@dataclass
class Run:
    """Everything a run trains with."""

    options: TrainOptions
    config: TrainingConfig  # frozen: the training's standardisation and weight tables written in
    dataset: JetDataset
    validation: JetDataset | None
    weights: MetricWeights  # each validation jet's metric weight
    network: Network
    module: torch.nn.Module  # the model, wrapped for DDP when there are several ranks
    objective: Objective
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    amp: torch.dtype | None
    feed: Feed
    frozen: str  # the config's text with the standardisation and weight tables the model trains with
    rank: int = 0
    world: int = 1

    @property
    def model(self) -> torch.nn.Module:
        return self.network.model


def validation_jets(options: TrainOptions) -> int | None:
    """Jets per validation: ``--jets-per-epoch-val``, else (with ``--jets-per-epoch`` and the held-out split)
    weaver's rule, the training epoch scaled by the held-out to training ratio, else every held-out jet."""
    if options.jets_per_epoch_val or options.val_data or not options.jets_per_epoch:
        return options.jets_per_epoch_val
    return max(1, round(options.jets_per_epoch * options.holdout / (1 - options.holdout)))


def validation_dataset(options: TrainOptions, config: TrainingConfig, weights: MetricWeights,
                       world: World) -> JetDataset | None:
    """Each held-out jet (or each jet of --val-data) once per pass, in the order stored, standardised as in
    training; a fixed random part of them (every jet's own hash) when fewer are asked."""
    if not (options.val_data or options.holdout > 0):
        return None
    url = options.val_data or options.data_url
    split, fraction = ("all", 0.0) if options.val_data else ("holdout", options.holdout)
    wanted = validation_jets(options)
    common: dict[str, Any] = {"threads": options.threads, "seed": options.seed, "cache_dir": options.cache_dir,
                              "cache_limit": options.cache_limit}
    dataset = JetDataset(url, with_observers(config, weights.observers), options.batch_size, world=world,
                         training=False, observers=True, split=split, holdout=fraction, **common)
    stats = dataset.stats  # the selected jets (else every stored jet), times the part validated
    available = (stats.jets_selected if stats else dataset.plan.collection.n_jets) * (fraction or 1.0)
    if wanted and wanted < available:  # a subset: the jets whose hash falls below the share asked
        share = (fraction or 1.0) * wanted / available
        dataset = JetDataset(url, with_observers(config, weights.observers), options.batch_size, world=world,
                             training=False, observers=True, split="holdout", holdout=share, **common)
    return dataset


def training_config(options: TrainOptions) -> TrainingConfig:
    """The run's data config (``--config``, required)."""
    if options.config is None:
        raise JetstoreError("--config: give the weaver-core data-config file to train with")
    return load_training_config(options.config)


def build(options: TrainOptions, device: torch.device, rank: int = 0, world: int = 1,
          frozen: str | None = None) -> Run:
    """The datasets, network (wrapped for DDP), objective and optimizer of a run (nothing restored yet); its
    frozen config: ``frozen`` (a checkpoint's) or the training data's standardisation now."""
    original = training_config(options)
    collection = Collection.open(options.data_url)
    stored = stored_stats(collection, original)
    if stored is not None:
        check_weights(stored.weight_tables, f"{options.data_url} (stats of {options.config})")
    common: dict[str, Any] = {"threads": options.threads, "holdout": options.holdout, "seed": options.seed,
                              "cache_dir": options.cache_dir, "cache_limit": options.cache_limit}

    def make(where: World) -> JetDataset:
        return JetDataset(collection, original, options.batch_size, jets_per_epoch=options.jets_per_epoch,
                          split="train" if options.holdout > 0 else "all", world=where, bucket=options.bucket,
                          read_factor=options.read_factor, **common)

    dataset = make(World(rank, world))
    text = frozen_text(original, dataset.stats)
    if frozen is not None and load_frozen(frozen, "checkpoint").options != load_frozen(text, "stats").options:
        raise JetstoreError(f"{options.data_url}: its stored statistics for {options.config} differ from those the "
                            f"checkpoint in {options.checkpoint_url} was trained with (stats recomputed?); use "
                            "another --output for a new run")
    config = load_frozen(frozen or text, f"{options.output}/{EXPORTED_CONFIG}")
    weights = MetricWeights(config)
    validation = validation_dataset(options, config, weights, World(rank, world))
    regression = options.regression_mode or config.label_type == "custom"
    dtype = amp_dtype(options, device)
    torch.manual_seed(options.seed)  # the same initial weights on every rank
    network = build_network(options, config, regression, use_amp=dtype is not None)
    network.model.to(device)
    # DDP broadcasts rank 0's weights when it wraps; the optimizer (Lookahead's slow weights) is made after
    module = torch.nn.parallel.DistributedDataParallel(network.model) if world > 1 else network.model
    seed_rank(options.seed, rank, device)  # dropout differs from rank to rank
    objective = Objective.for_config(config, regression, network.loss, options.regression_weight)
    optimizer = make_optimizer(options.optimizer, network.model, options.lr, options.weight_decay)
    if len(dataset) < options.grad_accum:
        raise JetstoreError(f"{options.data_url}: an epoch holds {len(dataset)} batches of {options.batch_size} "
                            f"per rank, fewer than --grad-accum {options.grad_accum}; set --jets-per-epoch")
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    feed = Feed(dataset, make, options.workers, options.grad_accum, rank, world, device, options.seed)
    return Run(options, config, dataset, validation, weights, network, module, objective, optimizer, scaler,
               dtype, feed, frozen or text, rank, world)


def stored_stats(collection: Collection, config: TrainingConfig) -> StatsResult | None:
    """The data's stored stats of ``config`` (None when there are none: the sampler says whether it needs them)."""
    try:
        return read_stats(collection, config.hash)
    except DatasetError:
        return None


def check_weights(tables: dict[str, np.ndarray], where: str) -> None:
    """Weight tables a sampler can draw from: not all zero (each table's values are checked when read)."""
    if tables and not any(np.asarray(t).max(initial=0) > 0 for t in tables.values()):
        raise JetstoreError(f"{where}: every weight table is zero: no jet can be sampled")


@dataclass
class Progress:
    """Where a run stands (all of it in every checkpoint)."""

    step: int = 0
    position: Position = field(default_factory=Position)
    best_metric: float | None = None
    best_epoch: int | None = None
    epoch_tally: dict | None = None  # the running epoch's training sums (all ranks)
    summary: dict[str, Any] = field(default_factory=dict)


def total_steps(run: Run, progress: Progress) -> int:
    """Optimizer steps of the whole run: --steps, else those taken, those left in this epoch, and
    --num-epochs' remaining epochs."""
    if run.options.steps:
        return run.options.steps
    position = progress.position
    rest = max(0, run.options.num_epochs - position.epoch - 1) * run.feed.steps_per_epoch
    return progress.step + run.feed.steps(position) + rest if position.epoch < run.options.num_epochs else \
        progress.step


def checkpoint_state(run: Run, progress: Progress, epoch_tally: Tally, identity: dict[str, Any],
                     device: torch.device) -> dict[str, Any] | None:
    """The checkpoint (on rank 0; None elsewhere): every rank's random state and weights digest gathered."""
    ranks = gathered({"rng": rng_state(device), "digest": weights_digest(run.model)})
    digests = {r["digest"] for r in ranks}
    if len(digests) > 1:
        raise JetstoreError(f"at step {progress.step} the ranks' weights differ ({len(digests)} digests over "
                            f"{len(ranks)} ranks): a DDP fault; the last good checkpoint is in "
                            f"{run.options.checkpoint_url}")
    tally = merged(epoch_tally, run.world)
    if run.rank != 0:
        return None
    model = run.model
    return {
        "model": model.state_dict(), "optimizer": optimizer_state(run.optimizer),
        "buffers": {k: v.clone() for k, v in model.named_buffers()},  # incl. ParT's non-persistent trimmer state
        "scaler": run.scaler.state_dict() if run.scaler else None,
        "step": progress.step, "ranks": [r["rng"] for r in ranks], "digest": digests.pop(),
        "sampler": {**progress.position.to_dict(), "seed": run.options.seed},
        "progress": {"best_metric": progress.best_metric, "best_epoch": progress.best_epoch,
                     "epoch_tally": tally.state(), "summary": progress.summary},
        "options": run.options.absolute().to_dict(), **identity,
    }


def check_resume(options: TrainOptions, state: dict[str, Any], config: TrainingConfig) -> None:
    """Refuse a checkpoint of another run (naming what differs); say in one line which changed options apply."""
    stored = TrainOptions.from_dict(state.get("options", {}))
    refused = stored.changes(options, REFUSED)
    where = options.checkpoint_url
    if refused:
        raise JetstoreError(f"{where}: the checkpoint there is of another run: now {'; '.join(refused)}; use "
                            "another --output (or --checkpoints) for a new run")
    if state.get("config_hash") not in (None, content_hash(config)):
        keys = changed_keys(state.get("config") or {}, config.options)
        raise JetstoreError(f"{where}: the checkpoint was trained with another content of --config "
                            f"{options.config} (changed: {', '.join(keys) or 'its text'}); use another --output "
                            "for a new run, or restore the config")
    applied = stored.changes(options, APPLIED)
    if applied:
        LOG.info("resuming at step %d with changed options: %s", state.get("step", 0),
                 "; ".join(a.replace("(this run:", "(was") for a in applied))


def restore(run: Run, state: dict[str, Any], progress: Progress, device: torch.device) -> None:
    """Continue from a checkpoint made with the same identity options and config."""
    model = run.model
    load_model_state(model, state["model"], run.options.checkpoint_url, run.network)
    buffers = dict(model.named_buffers())
    for name, value in state["buffers"].items():
        buffers[name].copy_(value)
    load_optimizer_state(run.optimizer, state["optimizer"])
    for group in inner(run.optimizer).param_groups:  # --weight-decay applies on resume (lr: the schedule)
        group["weight_decay"] = run.options.weight_decay if group["weight_decay"] else 0.0
    if run.scaler is not None and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    sampler = dict(state["sampler"])
    if sampler.pop("seed", run.options.seed) != run.options.seed:
        raise JetstoreError(f"{run.options.checkpoint_url}: the checkpoint's sampler has another seed")
    progress.position = Position.from_dict(sampler)
    ranks = state.get("ranks") or []
    if run.rank < len(ranks) and len(ranks) == run.world:
        set_rng_state(ranks[run.rank], device)
    else:  # another world: a fresh, reproducible state per rank
        seed_rank(run.options.seed, run.rank, device, state["step"])
    if not run.feed.native(progress.position) and run.rank == 0:
        LOG.info("resuming with %d rank(s) × %d loading slot(s) an epoch begun with %d × %d: its %d batches left "
                 "are dealt to the new ranks (%d steps of %d batches each)", run.world, run.feed.slots,
                 progress.position.world_size, progress.position.slots, run.feed.left(progress.position),
                 run.feed.steps(progress.position), run.options.grad_accum)
    saved = state.get("progress", {})
    progress.step = state["step"]
    progress.best_metric, progress.best_epoch = saved.get("best_metric"), saved.get("best_epoch")
    progress.epoch_tally = saved.get("epoch_tally") if run.rank == 0 else None  # the ranks' sums, counted once
    progress.summary = saved.get("summary", {})


def start_from_weights(model: torch.nn.Module, url: str) -> None:
    """Fine-tuning: the tensors of ``url`` whose names and shapes fit the model; the others are reported."""
    weights = load_weights(url)
    own = model.state_dict()
    fitting = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(fitting, strict=False)
    left = sorted(set(own) - set(fitting))
    unused = sorted(set(weights) - set(fitting))
    LOG.info("started from %s: %d tensors loaded; %d left at their initial values%s; %d not used%s", url,
             len(fitting), len(left), f" ({', '.join(left[:6])}{', ...' if len(left) > 6 else ''})" if left else "",
             len(unused), f" ({', '.join(unused[:6])}{', ...' if len(unused) > 6 else ''})" if unused else "")


def validate(run: Run, val_loader: torch.utils.data.DataLoader, device: torch.device) -> dict[str, float]:
    """Metrics of the network on the validation jets: each once, weighted as the training samples them."""
    tally = run.objective.tally(keep=True)
    run.module.eval()
    with torch.no_grad():
        for batch in val_loader:
            weights = run.weights(batch)
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=run.amp or torch.bfloat16, enabled=run.amp is not None):
                logits, regression = run.network(run.module, batch)
                loss = run.objective.loss(logits, regression, batch)
                assert loss is not None  # a batch's mean loss always exists
                per_jet = run.objective.loss(logits, regression, batch, reduction="none") \
                    if weights is not None else None
            tally.add(loss, logits, regression, batch, weights, per_jet)
    run.module.train()
    return merged(tally, run.world).metrics()


def merged(tally: Tally, world: int) -> Tally:
    """``tally`` with every other rank's added (the same on every rank)."""
    if world == 1:
        return tally
    total = tally.objective.tally(tally.keep)
    total.merge(gathered(tally.parts()))
    return total


def is_better(objective: Objective, metrics: dict[str, float], best: float | None) -> tuple[bool, float]:
    """weaver's rule: the highest validation accuracy (classification), the lowest validation loss
    (regression)."""
    value = metrics["loss"] if objective.regression else metrics.get("accuracy", 0.0)
    better = best is None or (value < best if objective.regression else value > best)
    return better, value


def epoch_message(run: Run) -> str:
    """What an epoch is: its jets, and the natural weighted epoch it replaces (or that replaced a too small one)."""
    plan, options = run.dataset.plan, run.options
    natural = float(plan.units.expected.sum())
    jets = run.feed.length * options.batch_size * run.world
    if options.jets_per_epoch:
        why = f"--jets-per-epoch {options.jets_per_epoch:,}"
    elif plan.shape.scale * plan.shape.rounds != 1:
        why = (f"the data's size, since the natural epoch is smaller than a batch per rank "
               f"({options.batch_size} × {run.world}); set --jets-per-epoch to choose")
    else:
        why = "the natural weighted epoch"
    return (f"epochs of {jets:,} sampled jets ({run.feed.length} batches per rank): {why}; the natural weighted "
            f"epoch (Σ of the training jets' sampling weights) holds {natural:,.0f} jets")


def train(options: TrainOptions) -> dict[str, Any]:
    """Train (or resume) the run; returns its summary (also when the run had finished before)."""
    check_output(options)
    rank, world, device = setup_distributed()
    torch_threads = set_torch_threads(options)
    state = load_checkpoint(options.checkpoint_url)
    original = training_config(options)
    if state is not None:
        check_resume(options, state, original)
    run = build(options, device, rank, world, state.get("frozen_config") if state else None)
    frozen = run.frozen
    progress = Progress(position=run.feed.start(0))
    if state is not None:
        restore(run, state, progress, device)
    elif options.load_model_weights:
        start_from_weights(run.model, options.load_model_weights)
    total = total_steps(run, progress)
    if progress.step >= total and state is not None:
        return {**progress.summary, "status": f"finished earlier (step {progress.step} of {total}); nothing to do"}
    if rank == 0:
        write_run(options, content_hash(original))
        (Path(options.output) / EXPORTED_CONFIG).write_text(frozen)
        LOG.info("%s, %d steps of %d jets × %d rank(s); torch threads %d on %s",
                 "built-in ParT" if run.network.builtin else options.network_config, total,
                 options.batch_size * options.grad_accum, world, torch_threads, device)
        LOG.info(epoch_message(run))
    log = MetricsLog(options.output, enabled=rank == 0, step=progress.step, epoch=progress.position.epoch)
    identity = {"config_hash": content_hash(original), "config": original.options, "frozen_config": frozen}
    try:
        return _loop(run, progress, total, device, log, identity)
    finally:
        log.close()


def _loop(run: Run, progress: Progress, total: int, device: torch.device, log: MetricsLog,
          identity: dict[str, Any]) -> dict[str, Any]:
    options, module, k = run.options, run.module, run.options.grad_accum
    schedule = Schedule(options, total, run.feed.steps_per_epoch)
    last_step = min(total, options.stop_at or total)
    epoch_tally = run.objective.tally()
    if progress.epoch_tally:
        epoch_tally.restore(progress.epoch_tally)
    window, timing = run.objective.tally(), {"wait": 0.0, "time": 0.0, "jets": 0}
    last_window: dict[str, Any] = {}
    val_loader = loader(SharedEpoch(run.validation), options.workers, device, options.seed) \
        if run.validation is not None else None
    run.module.train()
    bar = tqdm(total=last_step, initial=progress.step, unit="step", desc="training", file=sys.stderr,
               disable=run.rank != 0 or not options.progress, dynamic_ncols=True)

    def save() -> None:
        state = checkpoint_state(run, progress, epoch_tally, identity, device)
        if state is not None:
            save_checkpoint(options.checkpoint_url, state, progress.step)

    while progress.step < last_step:
        start = progress.position
        tick = time.perf_counter()
        for micro, batch in enumerate(run.feed.batches(start), 1):
            waited = time.perf_counter() - tick
            batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
            stepping = micro % k == 0
            # under DDP, gradients are averaged over the ranks once per step, at its last batch
            with contextlib.nullcontext() if stepping or run.world == 1 else cast(DDP, module).no_sync():
                with torch.autocast(device.type, dtype=run.amp or torch.bfloat16, enabled=run.amp is not None):
                    logits, regression = run.network(module, batch)
                    loss = run.objective.loss(logits, regression, batch)
                assert loss is not None  # as in validation
                scaled = loss / k
                (run.scaler.scale(scaled) if run.scaler else scaled).backward()
            for tally in (window, epoch_tally):
                tally.add(loss, logits, regression, batch)
            if stepping:
                _step(run, schedule, progress.step)
                progress.step += 1
                progress.position = run.feed.advanced(start, micro)
                bar.update()
                if progress.step % options.checkpoint_every == 0 or progress.step == last_step:
                    save()
            elapsed = time.perf_counter() - tick
            timing["wait"] += waited
            timing["time"] += elapsed
            timing["jets"] += len(next(iter(batch.values())))
            if stepping and (progress.step % options.log_every == 0 or progress.step == last_step):
                last_window = {**merged(window, run.world).metrics(),
                               "jets_per_s": timing["jets"] * run.world / timing["time"],
                               "data_wait_fraction": timing["wait"] / timing["time"],
                               "lr": schedule.lr(progress.step - 1), "epoch": start.epoch}
                log.log(progress.step, last_window)
                bar.set_postfix(loss=f"{last_window['loss']:.4f}", jets_s=f"{last_window['jets_per_s']:,.0f}",
                                data_wait=f"{100 * last_window['data_wait_fraction']:.0f}%", refresh=False)
                window, timing = run.objective.tally(), {"wait": 0.0, "time": 0.0, "jets": 0}
            if stepping and progress.step >= last_step:
                break
            tick = time.perf_counter()
        if run.feed.steps(progress.position) == 0 or progress.step >= total:  # the epoch, or the run, is complete
            _end_epoch(run, val_loader, progress, epoch_tally, last_window, device, log, schedule)
            epoch_tally = run.objective.tally()
            progress.position = run.feed.start(progress.position.epoch + 1)
            save()
    bar.close()
    if progress.step < total:
        return {**last_window, "step": progress.step,
                "status": f"stopped at step {progress.step} of {total} (--stop-at); rerun to resume"}
    return {**progress.summary, "status": "finished"}


def _step(run: Run, schedule: Schedule, step: int) -> None:
    """One optimizer step at ``step``'s learning rate, gradients clipped if asked, then cleared."""
    schedule.apply(inner(run.optimizer), step)
    if run.scaler:
        if run.options.clip_grad_norm:
            run.scaler.unscale_(run.optimizer)
        _clip(run)
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        _clip(run)
        run.optimizer.step()
    run.optimizer.zero_grad()


def _clip(run: Run) -> None:
    if run.options.clip_grad_norm:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), max_norm=run.options.clip_grad_norm)


def _end_epoch(run: Run, val_loader: torch.utils.data.DataLoader | None, progress: Progress, epoch_tally: Tally,
               last_window: dict, device: torch.device, log: MetricsLog, schedule: Schedule) -> None:
    """Validate, record the epoch, save the last (and maybe the best) model, update the run's summary."""
    checkpoints, epoch = run.options.checkpoint_url, progress.position.epoch
    record = {"step": progress.step, **{f"train_{k}": v for k, v in merged(epoch_tally, run.world).metrics().items()},
              "lr": schedule.lr(max(progress.step - 1, 0))}
    best = False
    if val_loader is not None:
        metrics = validate(run, val_loader, device)
        record.update({f"val_{k}": v for k, v in metrics.items()})
        best, value = is_better(run.objective, metrics, progress.best_metric)
        if best:
            progress.best_metric, progress.best_epoch = value, epoch
    record["best"] = best
    if run.rank == 0:
        weights = run.model.state_dict()
        save_model(checkpoints, LAST_MODEL, weights)
        if best or val_loader is None:
            save_model(checkpoints, BEST_MODEL, weights)
        log.log_epoch(epoch, record)
        LOG.info("epoch %d (step %d): %s", epoch, progress.step,
                 ", ".join(f"{k} {v:.4g}" for k, v in record.items() if isinstance(v, float) and math.isfinite(v)
                           and (k.endswith(("loss", "accuracy")) or k.endswith(("resolution", "bias")))))
    progress.summary = {**last_window, **record, "step": progress.step, "epochs": epoch + 1,
                        "best_epoch": progress.best_epoch, "best_metric": progress.best_metric,
                        "best_model": f"{checkpoints}/{BEST_MODEL}", "last_model": f"{checkpoints}/{LAST_MODEL}"}
    if dist.is_initialized():
        dist.barrier()
