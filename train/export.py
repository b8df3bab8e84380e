"""``--export-onnx OUT.onnx``: the run's best model as ONNX (softmax scores; regression outputs as they are),
with weaver-core's ``preprocess.json`` (input names, standardisation) beside it, as weaver's --export-onnx."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jetstore.errors import JetstoreError

from .network import DataConfig, Network
from .options import TrainOptions

LOG = logging.getLogger("jetstore.train")
PREPROCESS = "preprocess.json"


class Scores(nn.Module):
    """The built-in network for inference: softmax scores (or the regression outputs)."""

    def __init__(self, network: Network):
        super().__init__()
        self.model = network.model

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        logits, regression = self.model(*inputs)
        return torch.softmax(logits, dim=1) if logits is not None else regression


def export_onnx(options: TrainOptions, path: str, opset: int = 15) -> dict[str, Any]:
    import onnx  # noqa: F401 (torch's exporter needs it: a missing one is named by the CLI)

    from .predict import load_trained, run_config

    if not path.endswith(".onnx"):
        raise JetstoreError(f"{path}: the ONNX file's name must end in .onnx")
    config = run_config(options)
    network, source = load_trained(options, config, for_inference=True)
    model = Scores(network) if network.builtin else network.model
    model.eval()
    info = network.info
    axes = info.get("dynamic_axes") or {}
    # trace with 2 where an axis is dynamic (a traced size of 1 would be baked into the graph)
    inputs = tuple(torch.ones([2 if s == 1 and i in _axes(axes.get(name)) else (s or 2)
                               for i, s in enumerate(info["input_shapes"][name])]) for name in info["input_names"])
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"input_names": list(info["input_names"]), "output_names": list(info["output_names"]),
                              "dynamic_axes": axes or None, "opset_version": opset}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the networks' for_inference code paths are written for tracing
    with torch.no_grad():
        torch.onnx.export(model, inputs, str(target), **kwargs)
    DataConfig(config).export_json(target.with_name(PREPROCESS))
    LOG.info("wrote %s (%s, weights %s; inputs %s) and %s beside it", target, "built-in ParT" if network.builtin
             else options.network_config, source, ", ".join(info["input_names"]), PREPROCESS)
    return {"onnx": str(target), "preprocess": str(target.with_name(PREPROCESS)), "model": source,
            "inputs": list(info["input_names"]), "outputs": list(info["output_names"])}


def _axes(spec: Any) -> set[int]:
    if spec is None:
        return set()
    return set(spec.keys() if isinstance(spec, dict) else spec)
