"""The network a run trains: the built-in ParT, or a weaver-core network file used unchanged.

A network file defines ``get_model(data_config, **kwargs) -> (model, model_info)`` and optionally
``get_loss(data_config, **kwargs)``; ``kwargs`` are the ``-o KEY VALUE`` options (Python literals, read with
``ast.literal_eval``). The model is called as weaver calls it, ``model(*[batch[k] for k in
data_config.input_names])``. The file is Python code the user chose to run: it is imported and executed,
exactly as weaver-core does with ``--network-config``."""

from __future__ import annotations

import ast
import importlib.util
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jetstore.config.weaver import TrainingConfig
from jetstore.errors import JetstoreError, SchemaError
from jetstore.train import batchnorm
from jetstore.train.model import Tagger
from jetstore.train.options import TrainOptions

LABEL = "_label_"


class DataConfig:
    """What weaver-core's ``DataConfig`` offers a network file, from a jetstore config: ``input_names``,
    ``input_dicts``, ``input_shapes``, ``label_type``, ``label_value`` (the label list, or the custom labels'
    expressions), ``label_names``, ``observer_names``, ``preprocess_params``, ...; any other name is looked up
    in the config's options (weaver's ``__getattr__``), e.g. ``data_config.labels``."""

    def __init__(self, config: TrainingConfig):
        self.options = config.options
        self.input_names = tuple(g.name for g in config.inputs)
        self.input_dicts = {g.name: [v.name for v in g.variables] for g in config.inputs}
        self.input_shapes = {g.name: (-1, len(g.variables), g.length) for g in config.inputs}
        self.label_type = config.label_type
        labels = config.options.get("labels") or {}
        self.label_value: list[str] | dict[str, Any]
        self.label_names: tuple[str, ...]
        if config.label_type == "simple":
            self.label_value = list(config.label_columns)
            self.label_names = (LABEL,)
        else:
            self.label_value = dict(labels.get("value") or {})
            self.label_names = tuple(self.label_value)
        self.observer_names = tuple(config.observers)
        self.monitor_variables = tuple(config.monitor_variables)
        self.z_variables = self.observer_names or self.monitor_variables
        self.selection = config.options.get("selection")
        self.test_time_selection = config.options.get("test_time_selection") or self.selection
        self.var_funcs = {k: v for k, v in (config.options.get("new_variables") or {}).items() if k != v}
        self.weight_name = "_weight_" if config.weights is not None else None
        self.preprocess_params = {
            v.name: {"length": g.length, "pad_mode": g.pad_mode, "center": v.center, "scale": v.scale,
                     "min": v.min, "max": v.max, "pad_value": v.pad_value}
            for g in config.inputs for v in g.variables}

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["options"][name]
        except KeyError:
            raise AttributeError(name) from None

    def export_json(self, path: str | Path) -> None:
        """``preprocess.json`` beside an ONNX model, in weaver-core's layout (what inference code reads)."""
        out: dict[str, Any] = {"output_names": self.label_value, "input_names": list(self.input_names)}
        for group, names in self.input_dicts.items():
            infos = {}
            for name in names:
                info = self.preprocess_params[name]
                unstandardised = info["center"] is None
                infos[name] = {"median": 0 if unstandardised else info["center"], "norm_factor": info["scale"],
                               "replace_inf_value": 0, "lower_bound": -1e32 if unstandardised else info["min"],
                               "upper_bound": 1e32 if unstandardised else info["max"], "pad": info["pad_value"]}
            out[group] = {"var_names": names, "var_infos": infos,
                          "var_length": self.preprocess_params[names[0]]["length"]}
        Path(path).write_text(json.dumps(out, indent=2))


@dataclass
class Network:
    """A model, the batch groups it is called with (in order), its ``model_info`` and its own loss."""

    model: nn.Module
    input_names: tuple[str, ...]
    info: dict[str, Any]
    loss: Callable | None  # get_loss's; None: the objective's default
    builtin: bool
    regression: bool  # a network file's single output is a regression (weaver's regression mode)

    def __call__(self, module: nn.Module, batch: Mapping[str, torch.Tensor]):
        """(class logits or None, regression outputs ``[N, T]`` or None) of ``module`` (the model, maybe wrapped
        for DDP) on a batch."""
        raw = module(*(batch[name] for name in self.input_names))
        if self.builtin:
            return raw
        if isinstance(raw, tuple | list):  # a network file with a classification and a regression head
            logits, regression = raw
            return logits, regression.reshape(len(regression), -1)
        return (None, raw.reshape(len(raw), -1)) if self.regression else (raw, None)


def network_options(options: TrainOptions) -> dict[str, Any]:
    """The ``-o KEY VALUE`` options as Python values."""
    values = {}
    for key, text in options.network_options:
        try:
            values[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise SchemaError(f"-o {key} {text}: the value must be a Python literal (quote text: -o {key} "
                              f"\"'{text}'\")") from None
    return values


def load_network_file(path: str) -> Any:
    """Import a network file (user code: it runs); a file that is not Python, or fails to import, is one line."""
    file = Path(path)
    if not file.is_file():
        raise SchemaError(f"{path}: no such network file")
    if file.suffix != ".py":
        raise SchemaError(f"{path}: a network file is a Python file (.py) defining get_model(data_config, **kwargs)")
    spec = importlib.util.spec_from_file_location(f"_jetstore_network_{file.stem}", file)
    if spec is None or spec.loader is None:
        raise SchemaError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (SyntaxError, ImportError) as exc:
        raise SchemaError(f"{path}: the network file does not import: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    if not callable(getattr(module, "get_model", None)):
        raise SchemaError(f"{path}: a network file must define get_model(data_config, **kwargs)")
    return module


def check_inputs(network: Network, config: TrainingConfig, path: str) -> None:
    """A forward pass of the network file's model on two dummy jets of the config's input shapes: a model written
    for other inputs (another number of groups or features) is one line naming both files, not a traceback at
    the first batch. The random state and the model's statistics are left as they were."""
    shapes = {g.name: (2, len(g.variables), g.length) if g.length else (2, len(g.variables)) for g in config.inputs}
    training = network.model.training
    network.model.eval()
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            network.model(*(torch.ones(shapes[name]) for name in network.input_names))
    except Exception as exc:  # any failure of user code on the config's inputs is this mismatch
        groups = ", ".join(f"{n} {tuple(s[1:])}" for n, s in shapes.items())
        reason = (str(exc).splitlines() or [""])[0][:160]
        raise SchemaError(f"{path} does not fit {config.source}: its model fails on the config's {len(shapes)} "
                          f"input group(s) ({groups}): {type(exc).__name__}: {reason}") from None
    finally:
        network.model.train(training)


def load_model_state(model: nn.Module, weights: Mapping[str, torch.Tensor], where: str, network: Network) -> None:
    """Load saved weights; weights of another shape or names (another network or config) are one line."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else "")
        what = "the built-in ParT" if network.builtin else "the network file's model"
        raise JetstoreError(f"{where}: the saved weights do not fit {what} built from these options and config "
                            f"({detail[:200]})") from None


def build_network(options: TrainOptions, config: TrainingConfig, regression: bool, use_amp: bool = False,
                  for_inference: bool = False) -> Network:
    """The run's network: the built-in ParT, or ``options.network_config``'s ``get_model``."""
    if options.network_config is not None and options.batchnorm != "batch":
        raise JetstoreError(f"--batchnorm {options.batchnorm} sets the built-in ParT's BatchNorms; a "
                            "--network-config file's model is used as written")
    if options.network_config is None:
        if options.network_options:
            raise JetstoreError("-o/--network-option sets options of a --network-config file; the built-in ParT "
                                "takes --size")
        groups = {g.name: g for g in config.inputs}
        names = (options.features, options.vectors, options.mask)
        for name in names:
            if name not in groups:
                raise SchemaError(f"{config.source}: no input group '{name}' for the built-in ParT (groups: "
                                  f"{', '.join(groups)}); set --features/--vectors/--mask")
        model = Tagger(len(groups[options.features].variables), 0 if regression else len(config.label_columns),
                       len(config.custom_labels), options.size, use_amp=use_amp)
        batchnorm.apply(model.backbone, options.batchnorm)
        shapes = {n: (1, len(groups[n].variables), groups[n].length) for n in names}
        info = {"input_names": list(names), "input_shapes": shapes, "output_names": ["softmax"],
                "dynamic_axes": {**{n: {0: "N", 2: "n_" + n.split("_")[0]} for n in names}, "softmax": {0: "N"}}}
        return Network(model, names, info, None, builtin=True, regression=regression)
    module = load_network_file(options.network_config)
    data_config = DataConfig(config)
    kwargs = network_options(options)
    if use_amp:
        kwargs.setdefault("use_amp", True)  # as weaver's --use-amp
    if for_inference:
        kwargs["for_inference"] = True
    try:
        model, info = module.get_model(data_config, **kwargs)
        loss = module.get_loss(data_config, **kwargs) if callable(getattr(module, "get_loss", None)) else None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:  # written for other inputs/options
        raise SchemaError(f"{options.network_config}: get_model / get_loss fail on {config.source} with these -o "
                          f"options: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]}") from None
    network = Network(model, data_config.input_names, dict(info), loss, builtin=False, regression=regression)
    check_inputs(network, config, options.network_config)
    return network


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Parameters with and without weight decay (biases, norms and the model's ``no_weight_decay()`` names)."""
    names = getattr(model, "no_weight_decay", None)
    skip = set(names()) if callable(names) else set()
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if name in skip or parameter.ndim <= 1 or name.endswith(".bias") else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
