"""The layout: the module paths of earlier releases import for one release with a DeprecationWarning and give
the very objects of their new homes, and the command line parses jetstore's own options before a command whose
options are the trainer's (one name per module: tests/test_packaging.py)."""

from __future__ import annotations

import importlib
import sys

import pytest

from jetstore import _moved
from jetstore.cli import main

OLD_NAMES = [  # an old path, a name in it, the new home of that name
    ("jetstore.store.dataset", "Dataset", "jetstore.dataset.dataset"),
    ("jetstore.store.collection", "Collection", "jetstore.dataset.collection"),
    ("jetstore.store.manifest", "Manifest", "jetstore.dataset.manifest"),
    ("jetstore.store.table", "JetTable", "jetstore.model.table"),
    ("jetstore.store.paths", "shard_name", "jetstore.model.paths"),
    ("jetstore.store.format", "FORMATS", "jetstore.formats"),
    ("jetstore.store.format.zarr.reader", "ZarrShardReader", "jetstore.formats.zarr.reader"),
    ("jetstore.store.backend", "open_backend", "jetstore.io.backend"),
    ("jetstore.store.storage", "StorageOptions", "jetstore.io.settings"),
    ("jetstore.store.storage", "failure", "jetstore.io.storage_errors"),
    ("jetstore.store.storage", "public_url", "jetstore.io.locations"),
    ("jetstore.stats.cells", "CellRule", "jetstore.model.cells"),
    ("jetstore.stats.split", "Split", "jetstore.model.split"),
    ("jetstore.stats.export", "export_weaver_yaml", "jetstore.interop.weaver"),
    ("jetstore.conversion.plan", "ShardTask", "jetstore.conversion.tasks"),
    ("jetstore.sampler.plan", "SamplerOptions", "jetstore.sampler.sampler_plan"),
]


@pytest.fixture
def fresh(monkeypatch):
    """Old paths not imported yet in this process (each import warns once)."""
    for name in [m for m in sys.modules if _moved.new_home(m) or m in _moved.SPLIT or m in _moved.EMPTIED]:
        monkeypatch.delitem(sys.modules, name)


@pytest.mark.parametrize(("old", "name", "home"), OLD_NAMES)
def test_an_old_path_warns_and_gives_the_same_object(fresh, old, name, home):
    if home.startswith("jetstore.sampler"):
        pytest.importorskip("torch")
    with pytest.warns(DeprecationWarning, match=old.replace(".", r"\.")):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(home), name)


def test_an_old_from_import_gives_the_same_module(fresh):
    with pytest.warns(DeprecationWarning):
        from jetstore.store import paths
    from jetstore.model import paths as new

    assert paths is new


def test_the_bundled_schemas_are_found_under_the_old_package_name(fresh):
    from importlib import resources

    with pytest.warns(DeprecationWarning):
        names = {p.name for p in resources.files("jetstore.schemas").iterdir()}
    assert "cms_ak4.yaml" in names


@pytest.mark.parametrize(("old", "home"), sorted(_moved.MOVED.items()))
def test_every_old_path_is_its_new_module(fresh, old, home):
    if home.startswith("jetstore.sampler"):
        pytest.importorskip("torch")
    if home == "jetstore.stats.plots":
        pytest.importorskip("matplotlib")
    with pytest.warns(DeprecationWarning):
        module = importlib.import_module(old)
    assert module is importlib.import_module(home)


def test_jetstore_options_go_before_the_trainer_s(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["-v", "train", "--help"])
    assert exited.value.code == 0 and "usage: jetstore train" in capsys.readouterr().out


def test_unknown_options_of_jetstore_s_own_commands_are_refused(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["inspect", "x", "--no-such-option"])
    assert exited.value.code == 2 and "unrecognized arguments: --no-such-option" in capsys.readouterr().err
