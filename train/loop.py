"""The training loop: ParT fed by ``JetDataset``, Lookahead(AdamW) with ParT's flat-then-decay schedule,
AMP (bf16 on GPU), torchrun DDP, gradient accumulation, exact resume from checkpoints."""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn import functional
from tqdm import tqdm
from weaver.utils.nn.optimizer.lookahead import Lookahead

from jetstore import JetDataset
from jetstore.config import load_training_config
from jetstore.errors import DatasetError
from jetstore.stats.export import export_weaver_yaml

from .checkpoint import load_checkpoint, save_checkpoint
from .evaluate import performance, plot_rocs, write_predictions
from .metrics import MetricsLog
from .model import Inputs, Tagger

EXPORTED_CONFIG = "data_config.yaml"


@dataclass(frozen=True)
class TrainOptions:
    data: str
    config: str
    output: str = "runs/part"
    checkpoints: str | None = None  # local path or s3:// URL; default <output>/checkpoints
    steps: int = 1000
    batch_size: int = 256
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.01
    decay_start: float = 0.7  # ParT recipe: flat, then exponential decay to 1% over the last 30%
    size: str = "small"
    workers: int = 0  # DataLoader worker processes; 0: the sampler's own threads feed the loop in-process
    threads: int = 2  # JetDataset CPU threads (decoding, batch assembly) in each loading process
    jets_per_epoch: int | None = None
    seed: int = 1
    amp: bool | None = None  # default: bf16 autocast on GPU
    checkpoint_every: int = 200
    log_every: int = 20
    regression_weight: float = 1.0
    stop_at: int | None = None  # end this run at this step (time-boxed jobs); the schedule still spans `steps`
    progress: bool = True  # a progress bar on stderr (rank 0): steps, loss, jets/s, data-wait share
    holdout: float = 0.1  # fraction of the jets kept out of training (JetDataset split "holdout")
    predict_split: str = "holdout"  # what --predict scores: "holdout" of the training data, or "all" (other data)
    inputs: Inputs = field(default_factory=Inputs)


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


def schedule(step: int, total: int, decay_start: float) -> float:
    start = int(total * decay_start)
    if step < start:
        return 1.0
    return math.exp(math.log(0.01) * (step - start) / max(total - start, 1))


def checkpoint_url(options: TrainOptions) -> str:
    return options.checkpoints or str(Path(options.output) / "checkpoints")


def make_model(config, options: TrainOptions, device: torch.device, use_amp: bool) -> tuple[Tagger, list[str]]:
    """The tagger for a config's feature group, classes and regression targets (returned too)."""
    features = next(g for g in config.inputs if g.name == options.inputs.features)
    targets = list(config.custom_labels)
    model = Tagger(len(features.variables), len(config.label_columns), len(targets), options.size,
                   use_amp=use_amp).to(device)
    return model, targets


def build(options: TrainOptions, device: torch.device):
    config = load_training_config(options.config)
    dataset = JetDataset(options.data, config, options.batch_size, seed=options.seed,
                         jets_per_epoch=options.jets_per_epoch, split="train" if options.holdout > 0 else "all",
                         holdout=options.holdout, threads=options.threads)
    model, targets = make_model(config, options, device, use_amp=device.type == "cuda")
    decay, no_decay = [], []
    skip = model.no_weight_decay()
    for name, parameter in model.named_parameters():
        (no_decay if name in skip or parameter.ndim <= 1 else decay).append(parameter)
    inner = torch.optim.AdamW([{"params": decay, "weight_decay": options.weight_decay},
                               {"params": no_decay, "weight_decay": 0.0}], lr=options.lr)
    optimizer = Lookahead(inner, alpha=0.5, k=6)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        inner, lambda step: schedule(step, options.steps, options.decay_start))
    return config, dataset, model, optimizer, scheduler, targets


def optimizer_state(optimizer: Lookahead) -> dict:
    """weaver-core's Lookahead.state_dict() keeps only the inner optimizer; exact resume also needs the
    slow weights and the step counter."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return {"inner": optimizer.state_dict(), "step_counter": optimizer.step_counter,
            "slow": [optimizer.state[p]["cached_params"].clone() for p in params]}


def load_optimizer_state(optimizer: Lookahead, state: dict) -> None:
    optimizer.load_state_dict(state["inner"])
    optimizer.step_counter = state["step_counter"]
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for parameter, slow in zip(params, state["slow"], strict=True):
        optimizer.state[parameter]["cached_params"].copy_(slow)


def train(options: TrainOptions) -> dict[str, float]:
    rank, world, device = setup_distributed()
    torch.manual_seed(options.seed + rank)
    config, dataset, model, optimizer, scheduler, targets = build(options, device)
    checkpoints = checkpoint_url(options)
    step, epoch, consumed = 0, 0, 0
    state = load_checkpoint(checkpoints)
    if state is not None:
        model.load_state_dict(state["model"])
        buffers = dict(model.named_buffers())
        for name, value in state["buffers"].items():  # incl. non-persistent ones (ParT's trimmer warm-up)
            buffers[name].copy_(value)
        load_optimizer_state(optimizer, state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, epoch, consumed = state["step"], state["sampler"]["epoch"], state["sampler"]["batches"]
        dataset.load_state_dict(state["sampler"])  # also refuses a checkpoint made with another seed
        torch.set_rng_state(state["rng"])
    if rank == 0 and dataset.stats is not None:  # the standardisation to evaluate held-out data with
        Path(options.output).mkdir(parents=True, exist_ok=True)
        (Path(options.output) / EXPORTED_CONFIG).write_text(export_weaver_yaml(config, dataset.stats))
    wrapped = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    use_amp = options.amp if options.amp is not None else device.type == "cuda"
    log = MetricsLog(options.output, enabled=rank == 0)
    loader_kwargs = {"num_workers": options.workers, "pin_memory": device.type == "cuda",
                     "persistent_workers": False}
    totals = {"loss": 0.0, "correct": 0, "jets": 0, "wait": 0.0, "time": 0.0, "batches": 0}
    last: dict[str, float] = {}
    model.train()
    last_step = min(options.steps, options.stop_at or options.steps)
    bar = tqdm(total=last_step, initial=step, unit="step", desc="training", disable=rank != 0 or not options.progress,
               file=sys.stderr, dynamic_ncols=True)
    while step < last_step:
        dataset.set_epoch(epoch)
        if consumed:
            dataset.load_state_dict({"epoch": epoch, "batches": consumed, "seed": options.seed})
        # its own generator: creating a loader must not draw from the global RNG, or dropout after a resume
        # would differ from the uninterrupted run
        generator = torch.Generator().manual_seed(options.seed * 1000 + epoch)
        loader = torch.utils.data.DataLoader(dataset, batch_size=None, generator=generator, **loader_kwargs)
        tick = time.perf_counter()
        for batch in loader:
            waited = time.perf_counter() - tick
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits, regression = wrapped(batch[options.inputs.features], batch[options.inputs.vectors],
                                             batch[options.inputs.mask])
                loss = functional.cross_entropy(logits.float(), batch["_label_"])
                if regression is not None:
                    target = torch.stack([batch[t] for t in targets], dim=1)
                    loss = loss + options.regression_weight * functional.huber_loss(regression.float(), target)
            (loss / options.grad_accum).backward()
            consumed += 1
            totals["batches"] += 1
            totals["loss"] += float(loss.detach())
            totals["correct"] += int((logits.argmax(dim=1) == batch["_label_"]).sum())
            totals["jets"] += len(batch["_label_"])
            if consumed % options.grad_accum == 0:
                optimizer.step()
                optimizer.zero_grad()
                scheduler.step()
                step += 1
                bar.update()
                if (step % options.checkpoint_every == 0 or step == last_step) and rank == 0:
                    save_checkpoint(checkpoints, {
                        "model": model.state_dict(), "optimizer": optimizer_state(optimizer),
                        "buffers": {k: v.clone() for k, v in model.named_buffers()},
                        "scheduler": scheduler.state_dict(), "step": step, "rng": torch.get_rng_state(),
                        "sampler": dataset.state_dict(consumed), "options": asdict(options)}, step)
            elapsed = time.perf_counter() - tick
            totals["wait"] += waited
            totals["time"] += elapsed
            if totals["batches"] and (step % options.log_every == 0 or step == last_step) \
                    and consumed % options.grad_accum == 0:
                last = {"loss": totals["loss"] / totals["batches"], "accuracy": totals["correct"] / totals["jets"],
                        "jets_per_s": totals["jets"] * world / totals["time"],
                        "data_wait_fraction": totals["wait"] / totals["time"],
                        "lr": scheduler.get_last_lr()[0], "epoch": epoch}
                log.log(step, last)
                bar.set_postfix(loss=f"{last['loss']:.4f}", jets_s=f"{last['jets_per_s']:,.0f}",
                                data_wait=f"{100 * last['data_wait_fraction']:.0f}%", refresh=False)
                totals = dict.fromkeys(totals, 0) | {"loss": 0.0, "wait": 0.0, "time": 0.0}
            if step >= last_step:
                break
            tick = time.perf_counter()
        else:
            epoch, consumed = epoch + 1, 0
            continue
        break
    bar.close()
    log.close()
    return last


def predict(options: TrainOptions, output: str, max_jets: int | None = None) -> dict[str, float]:
    """Scores of every selected jet of ``options.data`` with the latest checkpoint: Parquet with observers,
    ROC plot, and the performance summary."""
    _, _, device = setup_distributed()
    exported = Path(options.output) / EXPORTED_CONFIG  # the training data's standardisation, if recorded
    config = load_training_config(exported if exported.exists() else options.config)
    model, targets = make_model(config, options, device, use_amp=False)
    state = load_checkpoint(checkpoint_url(options))
    if state is None:
        raise FileNotFoundError("no checkpoint to predict with")
    model.load_state_dict(state["model"])
    model.eval()
    split = options.predict_split if options.holdout > 0 else "all"
    dataset = JetDataset(options.data, config, options.batch_size, training=False, observers=True, split=split,
                         holdout=options.holdout, threads=options.threads)
    scores, labels, extras = [], [], {}
    with torch.no_grad():
        for batch in torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=options.workers):
            logits, regression = model(batch[options.inputs.features].to(device),
                                       batch[options.inputs.vectors].to(device), batch[options.inputs.mask].to(device))
            scores.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
            labels.append(batch["_label_"].numpy())
            for name in config.observers:
                extras.setdefault(name, []).append(batch[name].numpy())
            if regression is not None:
                for i, name in enumerate(targets):
                    extras.setdefault(f"pred_{name}", []).append(regression[:, i].float().cpu().numpy())
                    extras.setdefault(name, []).append(batch[name].numpy())
            if max_jets and sum(len(s) for s in scores) >= max_jets:
                break
    if not scores:
        raise DatasetError(f"{options.data}: no selected jet in split {split!r} to predict on")
    scores_array, labels_array = np.concatenate(scores), np.concatenate(labels)
    classes = [c.removeprefix("label_") for c in config.label_columns]
    write_predictions(output, scores_array, labels_array, classes, {k: np.concatenate(v) for k, v in extras.items()})
    note = (f"held-out {options.holdout:.0%} of the training data" if split == "holdout"
            else f"{Path(options.data.rstrip('/')).name}")
    plot_rocs(Path(output).with_suffix(".roc"), scores_array, labels_array, classes, note=note)
    return performance(scores_array, labels_array, classes)
