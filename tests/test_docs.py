"""The documentation's commands: every ``jetstore`` / ``python -m jetstore.train`` command in README.md and
docs/ parses with the real command-line parsers, and the README's walk-through runs as written on the bundled
sample (the training command time-boxed with its own ``--stop-at``)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jetstore.cli import build_parser
from jetstore.train.cli import build_parser as build_train_parser
from tests.helpers import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PROGRAMS = ("jetstore ", "python -m jetstore.train ", "torchrun ")


def documented_commands(path: Path) -> list[str]:
    """The jetstore command lines of a Markdown file's shell blocks, continuation lines joined."""
    commands = []
    for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", path.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith(PROGRAMS):
                commands.append(line.strip())
    return commands


def arguments(command: str) -> tuple[str, list[str]] | None:
    """(program, arguments) with each ``[optional | group]`` taken at its first alternative; None where the
    docs elide the arguments (``...``)."""
    tokens = shlex.split(command, comments=True)
    if "..." in tokens:
        return None
    if tokens[0] == "torchrun":
        tokens = tokens[tokens.index("-m") + 1:]
        tokens[0:1] = ["python", "-m", tokens[0]]
    kept, group = [], None
    for token in tokens:
        if token.startswith("[") and group is None:
            group, token = [], token[1:]
        if group is None:
            kept.append(token.split("|")[0] if "|" in token else token)
            continue
        closing = token.endswith("]")
        token = token.removesuffix("]")
        if token == "|":
            group.append(None)  # the alternatives after the first are dropped
        elif None not in group and token:
            group.append(token.split("|")[0])
        if closing:
            kept.extend(group[:group.index(None)] if None in group else group)
            group = None
    if kept[0] == "jetstore":
        return "jetstore", kept[1:]
    return "train", kept[3:]


def _cases():
    for path in DOCS:
        for command in documented_commands(path):
            yield pytest.param(command, id=f"{path.name}:{command[:60]}")


def test_the_docs_document_commands():
    assert sum(len(documented_commands(path)) for path in DOCS) >= 20


@pytest.mark.parametrize("command", list(_cases()))
def test_documented_command_parses(command):
    parsed = arguments(command)
    if parsed is None:
        pytest.skip("arguments elided in the docs")
    program, args = parsed
    if program == "jetstore" and args[:1] == ["train"]:
        program, args = "train", args[1:]
    parser = build_parser() if program == "jetstore" else build_train_parser()
    try:
        parser.parse_args(args)
    except SystemExit as error:
        pytest.fail(f"the documented command does not parse ({error}): {command}")


def _run(line: str, cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    program, args = arguments(line)
    args += extra
    executable = [sys.executable, "-m", "jetstore"] if program == "jetstore" else [sys.executable, "-m",
                                                                                    "jetstore.train"]
    result = subprocess.run([*executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, f"{line}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_the_readme_walkthrough_runs_as_written(tmp_path):
    """make demo's command, then the README's stats, export, batch and training commands, in a fresh folder."""
    (tmp_path / "tests").symlink_to(REPO / "tests")
    demo = _run("jetstore demo --output demo-output", tmp_path)
    assert "dashboard: http://127.0.0.1:" in demo.stderr
    readme = documented_commands(REPO / "README.md")
    runnable = [line for line in readme if "demo-output" in line]
    assert len(runnable) >= 4
    for line in runnable:
        training = "--predict" not in line and " --steps " in line
        _run(line, tmp_path, *(["--stop-at", "2"] if training else []))  # time-boxed by its own option

    shown = {fmt: json.loads(_run(f"jetstore inspect demo-output/sample_cms_ak4.{fmt} --json", tmp_path).stdout)
             for fmt in ("zarr", "parquet")}
    assert [shown[fmt]["format"] for fmt in shown] == ["zarr", "parquet"]
    assert shown["zarr"]["jets"] == shown["parquet"]["jets"] > 2000
    assert shown["zarr"]["class_counts"] == shown["parquet"]["class_counts"]
    assert shown["zarr"]["class_counts"]["label_uds"] > shown["zarr"]["class_counts"]["label_bb"] > 0
    text = _run("jetstore inspect demo-output/sample_cms_ak4.zarr", tmp_path).stdout
    assert "jets" in text and "label_b" in text and "shard(s)" in text
    assert {p.suffix for p in (tmp_path / "plots").iterdir()} == {".png", ".pdf"}
    exported = yaml.safe_load((tmp_path / "cfg.yaml").read_text())
    assert exported["preprocess"]["method"] == "manual" and exported["inputs"]["pf_features"]["vars"]
    steps = [json.loads(line)["step"] for line in (tmp_path / "runs/demo/metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 2
    scores = tmp_path / "runs/demo/scores.parquet"
    assert scores.exists() and list((tmp_path / "runs/demo").glob("scores.roc*.png"))

    snippets = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    snippet = next(s for s in snippets if "JetDataset(" in s)
    probe = "import torch\n" + snippet.replace("for batch in", "for n, batch in enumerate(") \
        .replace("num_workers=2):", "num_workers=2)):") + \
        "    assert batch['pf_features'].shape == (256, 10, 64) and batch['_label_'].dtype == torch.int64\n" \
        "    if n == 2: break\nprint('ok')\n"
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
