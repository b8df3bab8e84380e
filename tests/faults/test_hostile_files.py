"""Files that are not what they claim: a named pipe (FIFO) where a file is read, JSON and YAML nested 10^5
levels deep in every document jetstore reads. Each is one line naming the file, at once: no hang (a FIFO is
refused on its open descriptor, without waiting for a writer), no RecursionError traceback (the depth is
bounded in one place, ``jetstore.documents``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading

import pytest

from jetstore.cli import main
from jetstore.model import paths
from tests.helpers import REPO, stats_file

CONFIG = str(REPO / "tests/fixtures/weaver_cms_ak4.yaml")
DEEP_JSON = "[" * 100_000 + "]" * 100_000
DEEP_YAML = "a: " + "[" * 100_000 + "]" * 100_000 + "\n"
MAX_DEPTH = 64  # jetstore.documents.MAX_DEPTH


def run(capsys, *argv: str) -> tuple[int, str]:
    """``jetstore ARGV`` in this process: its exit code and stderr (argparse's usage errors included)."""
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


@contextlib.contextmanager
def unblocked(fifo: str):
    """While the block runs, any reader of ``fifo`` that blocks waiting for a writer gets one that closes at
    once (end of file): without the fix a test then fails on the message instead of hanging the suite."""
    done = threading.Event()

    def writer() -> None:
        while not done.wait(0.05):
            with contextlib.suppress(OSError):  # ENXIO: nobody is reading
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


@pytest.fixture(scope="module")
def dataset(train_dataset, tmp_path_factory):
    """A copy of the trainers' dataset (with its stats) to plant files in."""
    target = tmp_path_factory.mktemp("hostile") / "ds.zarr"
    shutil.copytree(train_dataset, target)
    return target


@pytest.mark.parametrize("case", ["input", "schema", "config", "manifest", "storage-options"])
def test_a_fifo_is_refused_without_waiting(case, dataset, tmp_path, capsys):
    fifo = str(tmp_path / ("_manifest.json" if case == "manifest" else "pipe"))
    os.mkfifo(fifo)
    argv = {"input": ["schema", "infer", fifo], "schema": ["schema", "check", fifo],
            "config": ["export-weaver", str(dataset), "--config", fifo, "-o", str(tmp_path / "x.yaml")],
            "manifest": ["inspect", str(tmp_path)],
            "storage-options": ["inspect", str(dataset), "--storage-options", f"@{fifo}"]}[case]
    with unblocked(fifo):
        code, err = run(capsys, *argv)
    expected = {"input": 1, "schema": 2, "config": 2, "manifest": 4, "storage-options": 2}[case]
    assert code == expected and "is a named pipe (FIFO), not a file" in err and fifo.rsplit("/", 1)[1] in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 3  # argparse: usage + error


@pytest.mark.parametrize("case", ["manifest", "lease", "stats", "schema", "config", "storage-options"])
def test_deeply_nested_documents_are_one_line(case, dataset, tmp_path, capsys, sample_files):
    copy = tmp_path / "ds.zarr"
    shutil.copytree(dataset, copy)
    planted = {"manifest": copy / paths.MANIFEST, "lease": copy / paths.LEASE,
               "stats": stats_file(copy), "schema": tmp_path / "schema.yaml",
               "config": tmp_path / "config.yaml"}.get(case)
    if planted is not None:  # a lease is at most 4 kB: 1,000 levels there
        planted.write_text(DEEP_YAML if case in ("schema", "config") else "[" * 1000 + "]" * 1000 if case == "lease"
                           else DEEP_JSON)
    out = str(tmp_path / "out.yaml")
    argv = {"manifest": ["inspect", str(copy)],
            "lease": ["convert", *sample_files, "--schema", "cms_ak4", "-o", str(copy), "--workers", "1"],
            "stats": ["export-weaver", str(copy), "--config", CONFIG, "-o", out],
            "schema": ["schema", "check", str(planted)],
            "config": ["export-weaver", str(copy), "--config", str(planted), "-o", out],
            "storage-options": ["inspect", str(copy), "--storage-options", DEEP_JSON]}[case]
    code, err = run(capsys, *argv)
    assert code == (4 if case in ("manifest", "lease", "stats") else 2), err
    assert f"nested deeper than {MAX_DEPTH} levels" in err and "Traceback" not in err, err[-2000:]
    assert planted is None or planted.name in err


@pytest.mark.parametrize("text, depth", [("[]", 1), ('{"a": [1, {"b": "[[[{{"}]}', 3), ('"\\"[["', 0),
                                         ('["\\\\", [[]]]', 3), ("3", 0), ('[{"]": "["}, [[]]]', 3)])
def test_json_depth_skips_brackets_inside_strings(text, depth):
    from jetstore.documents import json_depth, load_json

    assert json_depth(text) == depth == (_parsed_depth(load_json(text)))


def _parsed_depth(value) -> int:
    if isinstance(value, dict | list):
        items = value.values() if isinstance(value, dict) else value
        return 1 + max((_parsed_depth(v) for v in items), default=0)
    return 0


def test_yaml_within_the_bound_parses():
    from jetstore.documents import DocumentError, load_yaml

    nested = "a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    assert load_yaml(nested)["a"] is not None
    with pytest.raises(DocumentError, match="nested deeper"):
        load_yaml("a: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH)
