"""The module paths of earlier releases, kept for one release: importing one warns (``DeprecationWarning``) and
gives the module of its new home itself, so every name in it is the very object of the new path.

``MOVED`` maps an old path, or an old package with everything under it, to its new home; ``SPLIT`` an old
module whose names now live in several modules; ``EMPTIED`` an old package whose modules all moved. This is the
one table of old paths: a move adds a line here.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Sequence

MOVED = {
    "jetstore.schemas": "jetstore.schema.bundled",
    "jetstore.store.table": "jetstore.model.table",
    "jetstore.store.layout": "jetstore.model.layout",
    "jetstore.store.paths": "jetstore.model.paths",
    "jetstore.store.ranges": "jetstore.io.ranges",
    "jetstore.store.checksum": "jetstore.io.checksum",
    "jetstore.store.backend": "jetstore.io.backend",
    "jetstore.store.format": "jetstore.formats",
    "jetstore.store.manifest": "jetstore.dataset.manifest",
    "jetstore.store.fastcheck": "jetstore.dataset.fastcheck",
    "jetstore.store.lease": "jetstore.dataset.lease",
    "jetstore.store.writer": "jetstore.dataset.writer",
    "jetstore.store.dataset": "jetstore.dataset.dataset",
    "jetstore.store.collection": "jetstore.dataset.collection",
    "jetstore.stats.cells": "jetstore.model.cells",
    "jetstore.stats.split": "jetstore.model.split",
    "jetstore.stats.fraction": "jetstore.model.fraction",
    "jetstore.stats.export": "jetstore.interop.weaver",
    "jetstore.stats.labels": "jetstore.stats.plots",
    "jetstore.conversion.plan": "jetstore.conversion.tasks",
    "jetstore.sampler.plan": "jetstore.sampler.sampler_plan",
}
SPLIT = {
    "jetstore.store.storage": ("jetstore.io.locations", "jetstore.io.redaction", "jetstore.io.settings",
                               "jetstore.io.filesystems", "jetstore.io.storage_errors"),
}
EMPTIED = ("jetstore.store",)


def new_home(old: str) -> str | None:
    """The new path of ``old`` (a moved module, or one inside a moved package), or None."""
    for prefix, home in MOVED.items():
        if old == prefix or old.startswith(prefix + "."):
            return home + old[len(prefix):]
    return None


class _OldPath(importlib.abc.Loader):
    """Loads an old path: puts the module of the new home (or, for a split module, one that looks its names up
    in the new modules) in ``sys.modules`` under the old name."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        old = module.__name__
        if old in EMPTIED:
            warnings.warn(f"{old} is gone: its modules moved ({_homes(old)})", DeprecationWarning, stacklevel=2)
            return
        if old in SPLIT:
            homes = SPLIT[old]
            warnings.warn(f"{old} was split into {', '.join(homes)}; import from those", DeprecationWarning,
                          stacklevel=2)
            module.__getattr__ = _lookup(old, homes)  # type: ignore[method-assign]
            return
        home = new_home(old)
        assert home is not None
        warnings.warn(f"{old} moved to {home}; the old path goes away in the next release", DeprecationWarning,
                      stacklevel=2)
        sys.modules[old] = importlib.import_module(home)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None,
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname in EMPTIED:
            return importlib.machinery.ModuleSpec(fullname, _OldPath(), is_package=True)
        if fullname in SPLIT or new_home(fullname) is not None:
            return importlib.machinery.ModuleSpec(fullname, _OldPath())
        return None


def _lookup(old: str, homes: Sequence[str]):
    def __getattr__(name: str) -> object:
        for home in homes:
            module = importlib.import_module(home)
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"module {old!r} has no attribute {name!r}")
    return __getattr__


def _homes(package: str) -> str:
    """The packages the modules of ``package`` moved to."""
    homes = [home for old, home in MOVED.items() if old.startswith(package + ".")]
    homes += [home for old, split in SPLIT.items() if old.startswith(package + ".") for home in split]
    return ", ".join(sorted({".".join(home.split(".")[:2]) for home in homes}))


def install() -> None:
    """Make the old paths importable (once per process)."""
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
