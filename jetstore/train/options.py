"""What a training run is: :class:`TrainOptions`, the one home of every option, its default, its check and what
a resume may do with it. The command line is derived from its fields (``cli.py``), a run's options are stored in
its output folder (``run.json``, locations made absolute) and its checkpoints, so ``--predict`` and
``--export-onnx`` reuse them without repeating any.

Every value is checked when the options are made (``TrainOptions(...)``, hence when the command line is parsed):
a bad one is a one-line :class:`~jetstore.errors.JetstoreError` (exit 2) naming the option."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jetstore.errors import JetstoreError

RUN_FILE = "run.json"
OPTIMIZERS = ("ranger", "lookahead-adamw", "adamw", "adam", "radam", "sgd")
# jetstore's per-step schedules and weaver-core's own names (see optim.py)
SCHEDULERS = ("flat+decay", "cosine", "one-cycle", "none", "flat+linear", "flat+cos", "warmup+cos", "steps")
SCHEDULE_MODES = ("per-step", "weaver")
AMP = ("bf16", "fp16", "none")
SIZES = ("tiny", "small", "full")
BATCHNORM = ("batch", "masked", "running")  # see batchnorm.py
MAX_RUN_FILE = 1 << 20  # bytes: a run.json is a page of options

# What a resume does with an option that differs from the checkpoint's (``resume=`` of each field):
REFUSED = "refused"  # the checkpoint is of another model or data: refused, naming the option
APPLIED = "applied"  # continued with the new value, said in one line (learning rate, schedule, length, ...)
FREE = "free"        # how the machine runs it (workers, threads, logging): taken as given, silently
# actions of one command, never part of a run
ACTIONS = ("predict", "predict_data", "export_onnx", "stop_at", "progress", "trust_run", "experiment_label")
# options naming local files or datasets: made absolute in run.json (URLs kept as given)
LOCATIONS = ("data", "config", "val_data", "network_config", "load_model_weights", "checkpoints", "output")


# ------------------------------------------------------------------------------------------- the checks

Check = Callable[[Any], str | None]  # a value → what is wrong with it (None: fine)


def integer(low: int) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            return f"must be an integer ≥ {low}"
        return None
    return check


def number(low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False) -> Check:
    def check(value: Any) -> str | None:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and (
            value > low if low_open else value >= low) and (value < high if high_open else value <= high)
        if ok:
            return None
        bounds = f"{'>' if low_open else '≥'} {low:g}" + (
            f" and {'<' if high_open else '≤'} {high:g}" if math.isfinite(high) else "")
        return f"must be a finite number {bounds}"
    return check


def factor_or_auto(value: Any) -> str | None:
    if value == "auto" or number(1)(value) is None:
        return None
    return "must be a finite number ≥ 1 or 'auto'"


def number_or_auto(text: str) -> float | str:
    """The command line's ``--read-factor``: ``auto`` or a number."""
    return text if text == "auto" else float(text)


def text(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "must be a non-empty text"


def python_file(value: Any) -> str | None:
    if not isinstance(value, str) or not value.endswith(".py"):
        return "must name a Python file (.py) defining get_model(data_config, **kwargs)"
    return None


def one_of(choices: tuple[str, ...]) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"
    return check


def option(default: Any = None, help: str = "", check: Check | None = None, resume: str = APPLIED,
           **cli: Any) -> Any:
    """A field with its command-line help, its ``check`` (None is always allowed where the default is None) and
    what a resume does when it changes; ``cli`` holds argparse extras (``flags``, ``choices``, ``metavar``)."""
    if "choices" in cli and check is None:
        check = one_of(cli["choices"])
    factory = {"default_factory": lambda: default} if isinstance(default, list | dict) else {"default": default}
    return field(**factory, metadata={"help": help, "check": check, "resume": resume, **cli})


@dataclass(frozen=True)
class TrainOptions:
    # data
    data: tuple[str, ...] = option((), "jetstore dataset URL, local or s3:// (repeat for several datasets; "
                                   "NAME:URL names one)", text, REFUSED, metavar="URL")
    config: str | None = option(None, "weaver-core data-config (stats computed for it by `jetstore stats`); a "
                                      "resume checks its content, not its path", text, FREE)
    holdout: float = option(0.1, "fraction of --data kept out of training: validated every epoch and scored by "
                                 "--predict (0: none)", number(0, 1, high_open=True), REFUSED)
    val_data: str | None = option(None, "validate on this dataset instead of the held-out part", text)
    jets_per_epoch: int | None = option(None, "jets sampled per training epoch (weaver's --samples-per-epoch; "
                                              "default: the dataset's natural weighted epoch)", integer(1), REFUSED)
    read_factor: float | str | None = option(None, "training epochs read this many times the units they need, each "
                                                   "thinned as much (closer to the target distribution for as many "
                                                   "times the bytes); auto: per (class, pT bin), where an epoch is "
                                                   "too small for whole units (default: auto for natural epochs, 1 "
                                                   "with --jets-per-epoch)", factor_or_auto, REFUSED,
                                             type=number_or_auto, metavar="F|auto")
    jets_per_epoch_val: int | None = option(None, "jets per validation, each held-out jet at most once (default: "
                                                  "--jets-per-epoch times held-out / training share, as weaver; "
                                                  "without --jets-per-epoch every held-out jet)", integer(1))
    # model
    network_config: str | None = option(None, "weaver-core network file with get_model(data_config, **kwargs) "
                                              "(and get_loss); user code, imported and run (default: the built-in "
                                              "ParT)", python_file, REFUSED, flags=("-n", "--network-config"))
    network_options: tuple[tuple[str, str], ...] = option(
        (), "KEY VALUE passed to get_model / get_loss (a Python literal, as weaver's -o)", None, REFUSED,
        flags=("-o", "--network-option"), nargs=2, metavar=("KEY", "VALUE"))
    size: str = option("small", "built-in ParT size", resume=REFUSED, choices=SIZES)
    features: str = option("pf_features", "built-in ParT: the input group of particle features", text, REFUSED)
    vectors: str = option("pf_vectors", "built-in ParT: the input group of 4-vectors (px, py, pz, E)", text,
                          REFUSED)
    mask: str = option("pf_mask", "built-in ParT: the input group of the particle mask", text, REFUSED)
    batchnorm: str = option("batch", "built-in ParT: its BatchNorms when training: batch (weaver-core's batch "
                                     "statistics), masked (the input one's over real particles only), running "
                                     "(normalise with running statistics, learnt over real particles)",
                            resume=REFUSED, choices=BATCHNORM)
    regression_mode: bool = option(False, "regression on weaver's custom labels (implied by labels.type: custom)",
                                   resume=REFUSED)
    regression_weight: float = option(1.0, "weight of the regression loss beside the classification loss "
                                           "(labels.targets)", number(0))
    load_model_weights: str | None = option(None, "start from these weights (a state_dict or a jetstore "
                                                  "checkpoint; tensors of another shape are left out)", text, FREE)
    # optimisation
    num_epochs: int = option(20, "epochs (each followed by a validation)", integer(1))
    steps: int | None = option(None, "total optimizer steps (default: --num-epochs epochs); the last epoch may "
                                     "end early", integer(1))
    batch_size: int = option(256, "jets per batch", integer(1), REFUSED)
    grad_accum: int = option(1, "batches per optimizer step (the same as a batch this many times larger)",
                             integer(1), REFUSED)
    optimizer: str = option("ranger", "ranger = Lookahead(RAdam), as weaver; lookahead-adamw; adamw; "
                                      "adam; radam; sgd (momentum 0.9)", resume=REFUSED, choices=OPTIMIZERS)
    lr: float = option(1e-3, "peak learning rate (weaver's default is 5e-3)", number(0, low_open=True),
                       flags=("--lr", "--start-lr"))
    weight_decay: float = option(0.0, "weight decay (not for biases, norms and tokens)", number(0))
    lr_scheduler: str = option("flat+decay", "flat+decay: flat, then exponential decay to 1%% from "
                                             "--decay-start; cosine; one-cycle; none; weaver's flat+linear, "
                                             "flat+cos, warmup+cos, steps", choices=SCHEDULERS)
    schedule_mode: str = option("per-step", "per-step: every schedule changes the rate each step and --warmup-"
                                            "steps applies to all; weaver: weaver-core 0.5.3's formulas exactly "
                                            "(flat+decay and steps per epoch, warm-up only where weaver has one)",
                                choices=SCHEDULE_MODES)
    warmup_steps: float = option(0.0, "linear warm-up: steps, or a fraction of all steps if below 1", number(0))
    decay_start: float = option(0.7, "flat+decay: where the decay starts, as a fraction of all steps",
                                number(0, 1))
    clip_grad_norm: float | None = option(None, "clip the gradients' norm to this (weaver's clip_grad_norm "
                                                "optimizer option)", number(0, low_open=True))
    amp: str | None = option(None, "mixed precision (default: bf16 on a GPU, none on CPU)", choices=AMP)
    seed: int = option(1, "seed of the sampler and the model", integer(0), REFUSED)
    bucket: int = option(0, "training batches of jets of similar multiplicity, trimmed to their longest jet (ParT: "
                            "less padding, faster steps); MIN_LENGTH: the fewest positions kept (e.g. 17 for a "
                            "ParticleNet of 16 neighbours); 0: random batches", integer(0), REFUSED, nargs="?",
                         const=1, metavar="MIN_LENGTH")
    # machine
    workers: int = option(0, "DataLoader worker processes, kept for the whole run (0: the sampler's threads feed "
                             "the loop in-process)", integer(0), FREE)
    threads: int = option(2, "sampler CPU threads per loading process", integer(1), FREE)
    torch_threads: int | None = option(None, "torch intra-op threads (default: the cores the sampler leaves, "
                                             "at least 1)", integer(1), FREE)
    cache_dir: str | None = option(None, "node-local directory keeping the shards read from object storage, shared "
                                         "by the node's ranks and workers: later epochs read it (an emptyDir or "
                                         "node SSD on Kubernetes)", text, FREE, metavar="DIR")
    cache_limit: str | None = option(None, "the most --cache-dir may take, e.g. 500G or 2Ti (default: until its "
                                           "disk is full); keep it below an emptyDir's sizeLimit", text, FREE,
                                     metavar="SIZE")
    # output
    output: str = option("runs/part", "run folder: metrics, TensorBoard logs, run.json, predictions", text, FREE)
    checkpoints: str | None = option(None, "checkpoint directory or s3:// URL (default <output>/checkpoints)",
                                     text, FREE)
    checkpoint_every: int = option(200, "steps between checkpoints (and at every epoch's end)", integer(1), FREE)
    log_every: int = option(20, "steps between metric lines", integer(1), FREE)
    stop_at: int | None = option(None, "end this run at this step (time-boxed jobs); a rerun resumes", integer(1),
                                 FREE)
    progress: bool = option(True, "a progress bar on stderr", resume=FREE)
    experiment_label: str | None = option(None, "label of the figures, e.g. 'CMS Simulation' (mplhep's "
                                                "experiment text)", text, FREE)
    # actions instead of training
    predict: str | None = option(None, "predict with the run's best model instead of training: OUT.root or "
                                       "OUT.parquet (the run's own options are read back)", text, FREE,
                                 metavar="OUT")
    predict_data: str | None = option(None, "dataset to predict on (default: the held-out part of --data)", text,
                                      FREE)
    export_onnx: str | None = option(None, "export the run's best model to this .onnx file (with "
                                           "preprocess.json beside it)", text, FREE, metavar="OUT.onnx")
    trust_run: bool = option(False, "--predict / --export-onnx: import the network file that run.json names "
                                    "(Python code) without naming it again with -n", resume=FREE)

    def __post_init__(self) -> None:
        if isinstance(self.data, str):  # TrainOptions(data="url") as well as a tuple
            object.__setattr__(self, "data", (self.data,))
        object.__setattr__(self, "data", tuple(self.data))
        object.__setattr__(self, "network_options", tuple(tuple(pair) for pair in self.network_options))
        for item in dataclasses.fields(self):
            check, value = item.metadata.get("check"), getattr(self, item.name)
            if check is None or (value is None and item.default is None):
                continue
            for one in (value if isinstance(value, tuple) else (value,)):
                problem = check(one)
                if problem:
                    raise JetstoreError(f"{flag(item.name)} {_shown(one)}: {problem}")
        for key, _ in self.network_options:
            if not key.isidentifier():
                raise JetstoreError(f"-o {_shown(key)}: a network option's name must be a Python identifier")

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

    def absolute(self) -> TrainOptions:
        """These options with local locations made absolute (URLs and ``NAME:`` prefixes kept as given)."""
        changes: dict[str, Any] = {}
        for name in LOCATIONS:
            value = getattr(self, name)
            if isinstance(value, tuple):
                changes[name] = tuple(absolute_location(v) for v in value)
            elif value is not None:
                changes[name] = absolute_location(value)
        return dataclasses.replace(self, **changes)

    def changes(self, other: TrainOptions, kind: str) -> list[str]:
        """The options of a ``kind`` (REFUSED, APPLIED) in which ``other`` differs, as ``--name value (this run:
        value)``; locations are compared absolute."""
        mine, theirs = self.absolute(), other.absolute()
        return [f"{flag(f.name)} {_shown(getattr(theirs, f.name))} (this run: {_shown(getattr(mine, f.name))})"
                for f in dataclasses.fields(self) if f.metadata.get("resume") == kind and f.name not in ACTIONS
                and getattr(mine, f.name) != getattr(theirs, f.name)]


def flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


_NAMED = re.compile(r"^([A-Za-z_][\w.-]*):(?!//)")  # NAME:URL (a sample name), not a scheme


def local_path(value: str) -> Path | None:
    """The local path of a location (``NAME:path`` without its name); None for a URL (``s3://``, ...)."""
    named = _NAMED.match(value)
    rest = value[named.end():] if named else value
    return None if "://" in rest or not rest else Path(rest).expanduser()


def absolute_location(value: str) -> str:
    """A local path made absolute (``NAME:path`` keeps its name); a URL as it is."""
    path = local_path(value)
    if path is None:
        return value
    named = _NAMED.match(value)
    return (named.group(0) if named else "") + str(path.absolute())


def write_run(options: TrainOptions, config_hash: str | None = None) -> Path:
    """``<output>/run.json``: the run's options, local locations absolute (read back by --predict and
    --export-onnx from any folder), and the content hash of its config."""
    path = Path(options.output) / RUN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = {k: v for k, v in options.absolute().to_dict().items() if k not in ACTIONS}
    partial = path.with_name(f".{RUN_FILE}.partial")
    partial.write_text(json.dumps({"options": stored, "config_hash": config_hash}, indent=1) + "\n")
    partial.replace(path)
    return path


def read_run(output: str) -> TrainOptions | None:
    """The options of the run in ``output`` (None if no run was started there); a file that is not a run
    description (damaged, too large, too deeply nested, bad values) is one line naming it."""
    path = Path(output) / RUN_FILE
    if not path.exists():
        return None
    if not path.is_file() or path.stat().st_size > MAX_RUN_FILE:
        raise JetstoreError(f"{path}: not a run description (not a regular file of at most "
                            f"{MAX_RUN_FILE >> 10} KiB); remove it or use another --output")
    try:
        stored = json.loads(path.read_text())["options"]
        return TrainOptions.from_dict(stored)
    except JetstoreError as exc:
        raise JetstoreError(f"{path}: {exc}") from None
    except (ValueError, KeyError, TypeError, RecursionError, AttributeError) as exc:
        raise JetstoreError(f"{path}: not a run description ({type(exc).__name__}); remove it or use another "
                            "--output") from None
