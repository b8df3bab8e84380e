"""Packaging: the installed package list is complete, and the core (convert, inspect, verify, stats,
export-weaver) installs and runs without the optional torch / plotting / training dependencies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.helpers import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
OPTIONAL = ("torch", "matplotlib", "mplhep", "hist", "weaver", "tensorboard", "sklearn")


def test_the_package_list_names_every_package_folder():
    setuptools = PYPROJECT["tool"]["setuptools"]
    folders = {"jetstore": REPO / "jetstore", **{name: REPO / path for name, path in setuptools["package-dir"].items()}}
    found = set()
    for name, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            relative = init.parent.relative_to(folder)
            found.add(".".join([name, *relative.parts]))
    assert set(setuptools["packages"]) == found
    assert not (REPO / "jetstore/schemas").exists() and not (REPO / "jetstore/train").exists()  # one real folder


def test_the_core_dependencies_exclude_the_optional_ones():
    core = " ".join(PYPROJECT["project"]["dependencies"])
    assert not any(name in core for name in ("torch", "matplotlib", "mplhep", "weaver", "tensorboard"))
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert any(d.startswith("torch") for d in extras["torch"])
    assert {"matplotlib", "mplhep", "hist"} <= {d.split(">")[0].split("=")[0] for d in extras["plots"]}


@pytest.fixture(scope="module")
def without_optional(tmp_path_factory) -> dict[str, str]:
    """An environment in which importing any optional dependency fails as if it were not installed (also in
    the Dask worker processes, which inherit PYTHONPATH)."""
    shim = tmp_path_factory.mktemp("shim")
    for name in OPTIONAL:
        (shim / name).mkdir()
        (shim / name / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{name}'\", name={name!r})\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), str(REPO)])}


def jetstore(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jetstore", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_core_converts_and_computes_stats_without_optional_dependencies(without_optional, tmp_path):
    sample = str(REPO / "jetstore/data/sample_cms_ak4_a.root")
    config = str(REPO / "tests/fixtures/weaver_cms_ak4.yaml")
    steps = [("convert", sample, "--schema", "cms_ak4", "-o", "ds.zarr", "--workers", "1", "-q"),
             ("verify", "ds.zarr"), ("inspect", "ds.zarr", "--json"),
             ("stats", "ds.zarr", "--config", config, "--workers", "1", "-q"),
             ("export-weaver", "ds.zarr", "--config", config, "-o", "weaver.yaml")]
    results = [jetstore(without_optional, tmp_path, *step) for step in steps]
    for step, result in zip(steps, results, strict=True):
        assert result.returncode == 0, f"{step[0]}: {result.stderr[-2000:]}"
    assert json.loads(results[2].stdout)["jets"] == 1264
    assert (tmp_path / "weaver.yaml").exists()
    probe = ("import sys, jetstore; jetstore.convert, jetstore.compute_stats, jetstore.Dataset, jetstore.load_schema;"
             f"assert not {{m.partition('.')[0] for m in sys.modules}} & set({OPTIONAL!r}); print('clean')")
    imported = subprocess.run([sys.executable, "-c", probe], env=without_optional, capture_output=True, text=True)
    assert imported.stdout.strip() == "clean", imported.stderr


@pytest.mark.parametrize("args, extra", [(("train", "--help"), "train"),
                                         (("stats", "ds.zarr", "--config", "c.yaml", "--plots", "p"), "plots")])
def test_a_missing_extra_is_one_line_naming_it(without_optional, tmp_path, args, extra):
    result = jetstore(without_optional, tmp_path, *args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].endswith(f"pip install 'jetstore[{extra}]'")
