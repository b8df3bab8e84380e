"""What a training run is: :class:`TrainOptions`, the one home of every default. The command line is derived
from its fields (``cli.py``), and a run's options are stored in its output folder (``run.json``) and its
checkpoints, so ``--predict`` and ``--export-onnx`` reuse them without repeating any."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jetstore.errors import JetstoreError

RUN_FILE = "run.json"
OPTIMIZERS = ("ranger", "lookahead-adamw", "adamw", "adam", "radam", "sgd")
SCHEDULERS = ("flat+decay", "cosine", "one-cycle", "none")
AMP = ("bf16", "fp16", "none")
SIZES = ("tiny", "small", "full")
# what a checkpoint depends on: resuming with another value would train a different model
IDENTITY = ("config", "network_config", "network_options", "size", "batch_size", "seed", "optimizer", "features",
            "vectors", "mask", "holdout", "data", "regression_mode", "bucket")
# actions of one command, never part of a run
ACTIONS = ("predict", "predict_data", "export_onnx", "stop_at", "progress")


def option(default: Any = None, help: str = "", **cli: Any) -> Any:
    """A field with its command-line help; ``cli`` holds argparse extras (``flags``, ``choices``, ``metavar``)."""
    factory = {"default_factory": lambda: default} if isinstance(default, list | dict) else {"default": default}
    return field(**factory, metadata={"help": help, **cli})


@dataclass(frozen=True)
class TrainOptions:
    # data
    data: tuple[str, ...] = option((), "jetstore dataset URL, local or s3:// (repeat for several datasets; "
                                   "NAME:URL names one)", metavar="URL")
    config: str | None = option(None, "weaver-core data-config (stats computed for it by `jetstore stats`)")
    holdout: float = option(0.1, "fraction of --data kept out of training: validated every epoch and scored by "
                                 "--predict (0: none)")
    val_data: str | None = option(None, "validate on this dataset (all its jets) instead of the held-out part")
    jets_per_epoch: int | None = option(None, "jets sampled per training epoch (weaver's --samples-per-epoch; "
                                              "default: the dataset's natural weighted epoch)")
    jets_per_epoch_val: int | None = option(None, "jets sampled per validation (default: --jets-per-epoch times "
                                                  "held-out / training share, as weaver; else the natural weighted "
                                                  "epoch of the validation jets)")
    # model
    network_config: str | None = option(None, "weaver-core network file with get_model(data_config, **kwargs) "
                                              "(and get_loss); user code, imported and run (default: the built-in "
                                              "ParT)", flags=("-n", "--network-config"))
    network_options: tuple[tuple[str, str], ...] = option(
        (), "KEY VALUE passed to get_model / get_loss (a Python literal, as weaver's -o)",
        flags=("-o", "--network-option"), nargs=2, metavar=("KEY", "VALUE"))
    size: str = option("small", "built-in ParT size", choices=SIZES)
    features: str = option("pf_features", "built-in ParT: the input group of particle features")
    vectors: str = option("pf_vectors", "built-in ParT: the input group of 4-vectors (px, py, pz, E)")
    mask: str = option("pf_mask", "built-in ParT: the input group of the particle mask")
    regression_mode: bool = option(False, "regression on weaver's custom labels (implied by labels.type: custom)")
    regression_weight: float = option(1.0, "weight of the regression loss beside the classification loss "
                                           "(labels.targets)")
    load_model_weights: str | None = option(None, "start from these weights (a state_dict or a jetstore "
                                                  "checkpoint; tensors of another shape are left out)")
    # optimisation
    num_epochs: int = option(20, "epochs (each followed by a validation)")
    steps: int | None = option(None, "total optimizer steps (default: --num-epochs epochs); the last epoch may "
                                     "end early")
    batch_size: int = option(256, "jets per batch")
    grad_accum: int = option(1, "batches per optimizer step")
    optimizer: str = option("ranger", "ranger = Lookahead(RAdam), as weaver; lookahead-adamw; adamw; "
                                      "adam; radam; sgd (momentum 0.9)", choices=OPTIMIZERS)
    lr: float = option(1e-3, "peak learning rate", flags=("--lr", "--start-lr"))
    weight_decay: float = option(0.0, "weight decay (not for biases, norms and tokens)")
    lr_scheduler: str = option("flat+decay", "flat+decay: flat, then exponential decay to 1%% from --decay-start; "
                                             "cosine; one-cycle; none", choices=SCHEDULERS)
    warmup_steps: float = option(0.0, "linear warm-up: steps, or a fraction of all steps if below 1")
    decay_start: float = option(0.7, "flat+decay: where the decay starts, as a fraction of all steps")
    amp: str | None = option(None, "mixed precision (default: bf16 on a GPU, none on CPU)", choices=AMP)
    seed: int = option(1, "seed of the sampler and the model")
    bucket: int = option(0, "training batches of jets of similar multiplicity, trimmed to their longest jet (ParT: "
                            "less padding, faster steps); MIN_LENGTH: the fewest positions kept (e.g. 17 for a "
                            "ParticleNet of 16 neighbours); 0: random batches", nargs="?", const=1,
                         metavar="MIN_LENGTH")
    # machine
    workers: int = option(0, "DataLoader worker processes (0: the sampler's threads feed the loop in-process)")
    threads: int = option(2, "sampler CPU threads per loading process")
    torch_threads: int | None = option(None, "torch intra-op threads (default: the cores the sampler leaves, "
                                             "at least 1)")
    cache_dir: str | None = option(None, "node-local directory keeping the shards read from object storage, shared "
                                         "by the node's ranks and workers: later epochs read it (an emptyDir or "
                                         "node SSD on Kubernetes)", metavar="DIR")
    cache_limit: str | None = option(None, "the most --cache-dir may take, e.g. 500G or 2Ti (default: until its "
                                           "disk is full); keep it below an emptyDir's sizeLimit", metavar="SIZE")
    # output
    output: str = option("runs/part", "run folder: metrics, TensorBoard logs, run.json, predictions")
    checkpoints: str | None = option(None, "checkpoint directory or s3:// URL (default <output>/checkpoints)")
    checkpoint_every: int = option(200, "steps between checkpoints (and at every epoch's end)")
    log_every: int = option(20, "steps between metric lines")
    stop_at: int | None = option(None, "end this run at this step (time-boxed jobs); a rerun resumes")
    progress: bool = option(True, "a progress bar on stderr")
    # actions instead of training
    predict: str | None = option(None, "predict with the run's best model instead of training: OUT.root or "
                                       "OUT.parquet (the run's own options are read back)", metavar="OUT")
    predict_data: str | None = option(None, "dataset to predict on (default: the held-out part of --data)")
    export_onnx: str | None = option(None, "export the run's best model to this .onnx file (with "
                                           "preprocess.json beside it)", metavar="OUT.onnx")

    def __post_init__(self) -> None:
        if isinstance(self.data, str):  # TrainOptions(data="url") as well as a tuple
            object.__setattr__(self, "data", (self.data,))
        object.__setattr__(self, "data", tuple(self.data))
        object.__setattr__(self, "network_options", tuple(tuple(pair) for pair in self.network_options))

    @property
    def checkpoint_url(self) -> str:
        return self.checkpoints or str(Path(self.output) / "checkpoints")

    @property
    def data_url(self) -> str | list[str]:
        """What ``JetDataset`` is given: the one URL, or the list of them."""
        if not self.data:
            raise JetstoreError("no --data: name the dataset(s) to train on")
        return self.data[0] if len(self.data) == 1 else list(self.data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainOptions:
        """Options stored by an earlier run (unknown keys, from another version, are left out)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def differences(self, other: TrainOptions) -> list[str]:
        """The identity options in which ``other`` differs, as ``--name value`` of ``other``."""
        return [f"--{name.replace('_', '-')} {getattr(other, name)!r} (this run: {getattr(self, name)!r})"
                for name in IDENTITY if getattr(self, name) != getattr(other, name)]


def write_run(options: TrainOptions) -> Path:
    """``<output>/run.json``: the run's options (read back by --predict and --export-onnx)."""
    path = Path(options.output) / RUN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = {k: v for k, v in options.to_dict().items() if k not in ACTIONS}
    path.write_text(json.dumps({"options": stored}, indent=1) + "\n")
    return path


def read_run(output: str) -> TrainOptions | None:
    """The options of the run in ``output`` (None if no run was started there)."""
    path = Path(output) / RUN_FILE
    if not path.exists():
        return None
    try:
        return TrainOptions.from_dict(json.loads(path.read_text())["options"])
    except (ValueError, KeyError, TypeError) as exc:
        raise JetstoreError(f"{path}: not a run description ({type(exc).__name__}); remove it or use another "
                            "--output") from None
