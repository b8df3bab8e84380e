"""Small helpers shared by the conversion tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jetstore import convert
from jetstore.conversion import ConvertReport

REPO = Path(__file__).resolve().parents[1]


FIXTURE_CONFIG = REPO / "tests/fixtures/weaver_cms_ak4.yaml"


def stats_file(root: str | Path, config: str | Path = FIXTURE_CONFIG) -> Path:
    """A dataset's stored stats for ``config`` (the tests' datasets also hold other configs' stats)."""
    from jetstore.config import load_training_config
    from jetstore.model import paths

    return Path(paths.stats_path(str(root), load_training_config(config).hash))


def dev_tool(name: str) -> str:
    """The path of a command installed by the ``dev`` extra beside this Python; the test is skipped, saying
    so, where it is absent (CI installs it)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return str(path)


def run_convert(client, inputs, output, fmt="zarr", schema="cms_ak4", options=None, **kwargs) -> ConvertReport:
    """In-process conversion on the test cluster through the public API."""
    return convert([str(i) for i in inputs], schema, str(output), format=fmt, client=client, storage_options=options,
                   input_storage_options=options, progress=False, log=lambda _: None, **kwargs)


def cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the real ``jetstore`` command line in a subprocess (its own LocalCluster)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "jetstore", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=REPO)


def zip_entries(names: list[str], payloads: list[bytes]):
    """``payloads`` as the entries ``names`` of a zip written by :func:`jetstore.formats.zarr.archive.write_zip`."""
    import zlib

    import numpy as np

    from jetstore.formats.zarr import archive

    sizes = np.array([len(p) for p in payloads], np.int64)
    return archive.Entries(names, np.frombuffer(b"".join(payloads) or b"\0", np.uint8),
                           np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64), sizes,
                           np.array([zlib.crc32(p) for p in payloads], np.int64))


def shard_entries(path):
    """A Zarr shard's zip entries as jetstore's writer hands them to the zip and the chunk index: (chunks, their
    array keys, each chunk's key number, the metadata documents); the index entry itself left out."""
    import zipfile

    import numpy as np

    from jetstore.formats.zarr import chunk_index

    with zipfile.ZipFile(path) as handle:
        members = [(info.filename, handle.read(info)) for info in handle.infolist()
                   if info.filename != chunk_index.NAME]
    chunks = [(name, payload) for name, payload in members if "/c/" in name]
    documents = [(name, payload) for name, payload in members if "/c/" not in name]
    keys = list(dict.fromkeys(name.rsplit("/c/", 1)[0] for name, _ in chunks))
    number = {key: k for k, key in enumerate(keys)}
    key_ids = np.array([number[name.rsplit("/c/", 1)[0]] for name, _ in chunks], np.int64)
    return (zip_entries([n for n, _ in chunks], [p for _, p in chunks]), keys, key_ids,
            zip_entries([n for n, _ in documents], [p for _, p in documents]))


def with_comment(data: bytes, comment: bytes) -> bytes:
    """A zip's bytes with its comment replaced (an empty or foreign one: a Zarr shard then reads by its zip
    directory, as shards written before the chunk index do)."""
    from jetstore.formats.zarr.directory import END_SIGNATURE

    end = data.rfind(END_SIGNATURE)
    return data[:end + 20] + len(comment).to_bytes(2, "little") + comment


def forget_shard_metadata() -> None:
    """Forget the shard metadata (zip directories) this process parsed, as a new process would start."""
    from jetstore.formats.zarr.reader import CACHE

    with CACHE.lock:
        CACHE.items.clear()


def config_with_stats(dataset_url: str, path: Path, client, edit) -> str:
    """tests/fixtures/weaver_cms_ak4.yaml changed by ``edit(data)``, written to ``path``, its stats computed on
    ``client`` and stored in the dataset; returns the path."""
    import yaml

    from jetstore.config.weaver import training_config_from_dict
    from jetstore.dataset.dataset import Dataset
    from jetstore.stats.result import write_stats
    from jetstore.stats.run import compute_stats

    data = yaml.safe_load((REPO / "tests/fixtures/weaver_cms_ak4.yaml").read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))  # in order: network files take the inputs by position
    dataset = Dataset.open(dataset_url)
    write_stats(dataset, compute_stats(dataset, training_config_from_dict(data), client,
                                                        log=lambda _: None))
    return str(path)


def nano_collections(branches) -> tuple[dict, dict[str, dict]]:
    """NanoAOD branches (an awkward record of ``X_field`` arrays) as the event-level ones and, per collection, its
    fields; the ``nX`` counters are left out (uproot writes them for each collection; a Parquet skim has none)."""
    collections: dict[str, dict] = {}
    flat = {}
    prefixes = {n.partition("_")[0] for n in branches.fields}
    for name in branches.fields:
        prefix, _, field = name.partition("_")
        if branches[name].ndim == 2:
            collections.setdefault(prefix, {})[field] = branches[name]
        elif not (name.startswith("n") and name[1:] in prefixes):
            flat[name] = branches[name]
    return flat, collections
