"""The training loop: a network (built-in ParT or a weaver network file) fed by ``JetDataset``, epochs each
followed by a validation on the held-out jets (or ``--val-data``), the best and the last model saved, AMP
(bf16 / fp16), torchrun DDP, gradient accumulation, exact resume from checkpoints."""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from jetstore import JetDataset
from jetstore.config import load_training_config
from jetstore.config.weaver import TrainingConfig
from jetstore.errors import JetstoreError
from jetstore.stats.export import export_weaver_yaml

from .checkpoint import BEST_MODEL, LAST_MODEL, load_checkpoint, load_weights, save_checkpoint, save_model
from .metrics import MetricsLog
from .network import Network, build_network
from .objective import Objective, Tally
from .optim import inner, load_optimizer_state, make_optimizer, optimizer_state, schedule
from .options import TrainOptions, write_run

LOG = logging.getLogger("jetstore.train")
EXPORTED_CONFIG = "data_config.yaml"
AMP_TYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}

__all__ = ["TrainOptions", "build", "train"]


def setup_distributed() -> tuple[int, int, torch.device]:
    """torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; initialise the process group when there are several."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
    return (dist.get_rank() if dist.is_initialized() else 0), world, device


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


def validation_jets(options: TrainOptions) -> int | None:
    """Jets per validation: ``--jets-per-epoch-val``, else (with ``--jets-per-epoch`` and the held-out split)
    weaver's rule, the training epoch scaled by the held-out to training ratio, else the natural epoch."""
    if options.jets_per_epoch_val or options.val_data or not options.jets_per_epoch:
        return options.jets_per_epoch_val
    return max(1, round(options.jets_per_epoch * options.holdout / (1 - options.holdout)))


@dataclass
class Run:
    """Everything a run trains with."""

    options: TrainOptions
    config: TrainingConfig
    dataset: JetDataset
    validation: JetDataset | None
    network: Network
    objective: Objective
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None
    amp: torch.dtype | None
    steps_per_epoch: int
    total_steps: int

    @property
    def model(self) -> torch.nn.Module:
        return self.network.model


def build(options: TrainOptions, device: torch.device) -> Run:
    """The datasets, network, objective, optimizer and schedule of a run (nothing restored yet)."""
    config = load_training_config(options.config)
    common = {"threads": options.threads, "holdout": options.holdout, "seed": options.seed,
              "cache_dir": options.cache_dir, "cache_limit": options.cache_limit}
    dataset = JetDataset(options.data_url, config, options.batch_size, jets_per_epoch=options.jets_per_epoch,
                         split="train" if options.holdout > 0 else "all", bucket=options.bucket, **common)
    validation = None
    if options.val_data or options.holdout > 0:
        validation = JetDataset(options.val_data or options.data_url, config, options.batch_size,
                                jets_per_epoch=validation_jets(options),
                                split="all" if options.val_data else "holdout", **common)
    regression = options.regression_mode or config.label_type == "custom"
    dtype = amp_dtype(options, device)
    network = build_network(options, config, regression, use_amp=dtype is not None)
    network.model.to(device)
    objective = Objective.for_config(config, regression, network.loss, options.regression_weight)
    optimizer = make_optimizer(options.optimizer, network.model, options.lr, options.weight_decay)
    if len(dataset) < options.grad_accum:
        raise JetstoreError(f"{options.data_url}: an epoch holds {len(dataset)} batches of {options.batch_size}, "
                            f"fewer than --grad-accum {options.grad_accum}; set --jets-per-epoch")
    steps_per_epoch = len(dataset) // options.grad_accum
    total = options.steps or options.num_epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        inner(optimizer), schedule(options.lr_scheduler, total, options.warmup_steps, options.decay_start))
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    return Run(options, config, dataset, validation, network, objective, optimizer, scheduler, scaler, dtype,
               steps_per_epoch, total)


@dataclass
class Progress:
    """Where a run stands (all of it in every checkpoint)."""

    step: int = 0
    epoch: int = 0
    consumed: int = 0  # batches of this epoch
    best_metric: float | None = None
    best_epoch: int | None = None
    epoch_tally: dict | None = None  # the running epoch's training sums
    summary: dict[str, Any] = field(default_factory=dict)


def checkpoint_state(run: Run, progress: Progress, epoch_tally: Tally) -> dict[str, Any]:
    model = run.model
    return {
        "model": model.state_dict(), "optimizer": optimizer_state(run.optimizer),
        "buffers": {k: v.clone() for k, v in model.named_buffers()},  # incl. ParT's non-persistent trimmer state
        "scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict() if run.scaler else None,
        "step": progress.step, "rng": torch.get_rng_state(),
        "sampler": {"epoch": progress.epoch, "batches": progress.consumed, "seed": run.options.seed},
        "progress": {"best_metric": progress.best_metric, "best_epoch": progress.best_epoch,
                     "epoch_tally": epoch_tally.state(), "summary": progress.summary},
        "options": run.options.to_dict(),
    }


def restore(run: Run, state: dict[str, Any], progress: Progress) -> None:
    """Continue from a checkpoint made with the same identity options."""
    stored = TrainOptions.from_dict(state.get("options", {}))
    changed = stored.differences(run.options)
    if changed:
        raise JetstoreError(f"{run.options.checkpoint_url}: the checkpoint there is of another run: now "
                            f"{'; '.join(changed)}; use another --output (or --checkpoints) for a new run")
    model = run.model
    model.load_state_dict(state["model"])
    buffers = dict(model.named_buffers())
    for name, value in state["buffers"].items():
        buffers[name].copy_(value)
    load_optimizer_state(run.optimizer, state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if run.scaler is not None and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    run.dataset.load_state_dict(state["sampler"])  # also refuses a checkpoint made with another seed
    torch.set_rng_state(state["rng"])
    saved = state.get("progress", {})
    progress.step, progress.epoch, progress.consumed = state["step"], state["sampler"]["epoch"], \
        state["sampler"]["batches"]
    progress.best_metric, progress.best_epoch = saved.get("best_metric"), saved.get("best_epoch")
    progress.epoch_tally, progress.summary = saved.get("epoch_tally"), saved.get("summary", {})


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


def loader(dataset: JetDataset, options: TrainOptions, device: torch.device, epoch: int, consumed: int = 0):
    dataset.set_epoch(epoch)
    if consumed:
        dataset.load_state_dict({"epoch": epoch, "batches": consumed, "seed": options.seed})
    # its own generator: creating a loader must not draw from the global RNG, or dropout after a resume
    # would differ from the uninterrupted run
    generator = torch.Generator().manual_seed(options.seed * 1000 + epoch)
    return torch.utils.data.DataLoader(dataset, batch_size=None, generator=generator, num_workers=options.workers,
                                       pin_memory=device.type == "cuda", persistent_workers=False)


def validate(run: Run, module: torch.nn.Module, device: torch.device) -> dict[str, float]:
    """Metrics of the network on the validation jets (the same jets every epoch)."""
    tally = run.objective.tally(keep=True)
    module.eval()
    with torch.no_grad():
        for batch in loader(run.validation, run.options, device, epoch=0):
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=run.amp or torch.bfloat16, enabled=run.amp is not None):
                logits, regression = run.network(module, batch)
                loss = run.objective.loss(logits, regression, batch)
            tally.add(loss, logits, regression, batch)
    module.train()
    if dist.is_initialized():
        gather_tally(tally)
    return tally.metrics()


def gather_tally(tally: Tally) -> None:
    """Every rank's validation sums and kept arrays, on every rank."""
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (tally.state(), tally.scores, tally.labels, tally.residuals))
    merged = parts[0][0]
    for state, *_ in parts[1:]:
        for key in ("loss", "batches", "jets", "correct"):
            merged[key] += state[key]
        for key in ("residual_sum", "residual_squares"):
            if merged[key] is not None:
                merged[key] = [a + b for a, b in zip(merged[key], state[key], strict=True)]
    tally.restore(merged)
    tally.scores, tally.labels, tally.residuals = ([x for part in parts for x in part[i]] for i in (1, 2, 3))


def is_better(objective: Objective, metrics: dict[str, float], best: float | None) -> tuple[bool, float]:
    """weaver's rule: the highest validation accuracy (classification), the lowest validation loss
    (regression)."""
    value = metrics["loss"] if objective.regression else metrics.get("accuracy", 0.0)
    better = best is None or (value < best if objective.regression else value > best)
    return better, value


def train(options: TrainOptions) -> dict[str, Any]:
    """Train (or resume) the run; returns its summary (also when the run had finished before)."""
    rank, world, device = setup_distributed()
    torch_threads = set_torch_threads(options)
    torch.manual_seed(options.seed + rank)
    run = build(options, device)
    progress = Progress()
    state = load_checkpoint(options.checkpoint_url)
    if state is not None:
        restore(run, state, progress)
    elif options.load_model_weights:
        start_from_weights(run.model, options.load_model_weights)
    if progress.step >= run.total_steps:
        return {**progress.summary, "status": f"finished earlier (step {progress.step} of {run.total_steps}); "
                                              "nothing to do"}
    if rank == 0:
        write_run(options)
        if run.dataset.stats is not None:  # the standardisation to evaluate held-out data with
            (Path(options.output) / EXPORTED_CONFIG).write_text(export_weaver_yaml(run.config, run.dataset.stats))
        LOG.info("%s, %d steps of %d jets (%d per epoch); torch threads %d on %s",
                 "built-in ParT" if run.network.builtin else options.network_config, run.total_steps,
                 options.batch_size * options.grad_accum, run.steps_per_epoch, torch_threads, device)
    module = torch.nn.parallel.DistributedDataParallel(run.model) if world > 1 else run.model
    log = MetricsLog(options.output, enabled=rank == 0)
    try:
        return _loop(run, module, progress, device, rank, world, log)
    finally:
        log.close()


def _loop(run: Run, module: torch.nn.Module, progress: Progress, device: torch.device, rank: int, world: int,
          log: MetricsLog) -> dict[str, Any]:
    options = run.options
    checkpoints = options.checkpoint_url
    last_step = min(run.total_steps, options.stop_at or run.total_steps)
    epoch_tally = run.objective.tally()
    if progress.epoch_tally:
        epoch_tally.restore(progress.epoch_tally)
    window, timing = run.objective.tally(), {"wait": 0.0, "time": 0.0, "jets": 0}
    last_window: dict[str, Any] = {}
    run.model.train()
    bar = tqdm(total=last_step, initial=progress.step, unit="step", desc="training", file=sys.stderr,
               disable=rank != 0 or not options.progress, dynamic_ncols=True)

    def save() -> None:
        if rank == 0:
            save_checkpoint(checkpoints, checkpoint_state(run, progress, epoch_tally), progress.step)

    while progress.step < last_step:
        batches = loader(run.dataset, options, device, progress.epoch, progress.consumed)
        tick = time.perf_counter()
        finished_epoch = True
        for batch in batches:
            waited = time.perf_counter() - tick
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=run.amp or torch.bfloat16, enabled=run.amp is not None):
                logits, regression = run.network(module, batch)
                loss = run.objective.loss(logits, regression, batch)
            scaled = loss / options.grad_accum
            (run.scaler.scale(scaled) if run.scaler else scaled).backward()
            progress.consumed += 1
            for tally in (window, epoch_tally):
                tally.add(loss, logits, regression, batch)
            stepped = progress.consumed % options.grad_accum == 0
            if stepped:
                if run.scaler:
                    run.scaler.step(run.optimizer)
                    run.scaler.update()
                else:
                    run.optimizer.step()
                run.optimizer.zero_grad()
                run.scheduler.step()
                progress.step += 1
                bar.update()
                if progress.step % options.checkpoint_every == 0 or progress.step == last_step:
                    save()
            elapsed = time.perf_counter() - tick
            timing["wait"] += waited
            timing["time"] += elapsed
            timing["jets"] += len(next(iter(batch.values())))
            if stepped and (progress.step % options.log_every == 0 or progress.step == last_step):
                last_window = {**window.metrics(), "jets_per_s": timing["jets"] * world / timing["time"],
                               "data_wait_fraction": timing["wait"] / timing["time"],
                               "lr": run.scheduler.get_last_lr()[0], "epoch": progress.epoch}
                log.log(progress.step, last_window)
                bar.set_postfix(loss=f"{last_window['loss']:.4f}", jets_s=f"{last_window['jets_per_s']:,.0f}",
                                data_wait=f"{100 * last_window['data_wait_fraction']:.0f}%", refresh=False)
                window, timing = run.objective.tally(), {"wait": 0.0, "time": 0.0, "jets": 0}
            if progress.step >= last_step:
                finished_epoch = False
                break
            tick = time.perf_counter()
        if finished_epoch or progress.step >= run.total_steps:  # an epoch, or the whole training, is complete
            _end_epoch(run, module, progress, epoch_tally, last_window, device, rank, log)
            epoch_tally = run.objective.tally()
            progress.epoch, progress.consumed = progress.epoch + 1, 0
            save()
    bar.close()
    if progress.step < run.total_steps:
        return {**last_window, "step": progress.step,
                "status": f"stopped at step {progress.step} of {run.total_steps} (--stop-at); rerun to resume"}
    return {**progress.summary, "status": "finished"}


def _end_epoch(run: Run, module: torch.nn.Module, progress: Progress, epoch_tally: Tally, last_window: dict,
               device: torch.device, rank: int, log: MetricsLog) -> None:
    """Validate, record the epoch, save the last (and maybe the best) model, update the run's summary."""
    checkpoints = run.options.checkpoint_url
    record = {"step": progress.step, **{f"train_{k}": v for k, v in epoch_tally.metrics().items()},
              "lr": run.scheduler.get_last_lr()[0]}
    best = False
    if run.validation is not None:
        metrics = validate(run, module, device)
        record.update({f"val_{k}": v for k, v in metrics.items()})
        best, value = is_better(run.objective, metrics, progress.best_metric)
        if best:
            progress.best_metric, progress.best_epoch = value, progress.epoch
    record["best"] = best
    if rank == 0:
        weights = run.model.state_dict()
        save_model(checkpoints, LAST_MODEL, weights)
        if best or run.validation is None:
            save_model(checkpoints, BEST_MODEL, weights)
        log.log_epoch(progress.epoch, record)
        LOG.info("epoch %d (step %d): %s", progress.epoch, progress.step,
                 ", ".join(f"{k} {v:.4g}" for k, v in record.items() if isinstance(v, float) and
                           (k.endswith(("loss", "accuracy")) or "resolution" in k or "bias" in k)))
    progress.summary = {**last_window, **record, "step": progress.step, "epochs": progress.epoch + 1,
                        "best_epoch": progress.best_epoch, "best_metric": progress.best_metric,
                        "best_model": f"{checkpoints}/{BEST_MODEL}", "last_model": f"{checkpoints}/{LAST_MODEL}"}
