"""The docs site: ``mkdocs build --strict`` (what ``make docs`` runs) renders docs/, the README as the home page and
the API reference from the docstrings without a warning (a broken link or anchor, a page left out of the nav, a
docstring griffe cannot parse fails it), with no network."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

DEAD_PROXY = "http://127.0.0.1:9"  # anything that tries the network fails at once


def offline(command: list[str]) -> list[str]:
    """``command`` in a network namespace of its own (no interfaces) where the machine allows it."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "--net", "true"], capture_output=True).returncode == 0:
        return [unshare, "--net", *command]
    return command


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs", reason="mkdocs is in the docs extra (make install installs it)")
    folder = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "HTTP_PROXY": DEAD_PROXY, "HTTPS_PROXY": DEAD_PROXY,
           "http_proxy": DEAD_PROXY, "https_proxy": DEAD_PROXY, "NO_PROXY": "", "no_proxy": ""}
    command = offline([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)])
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-4000:]
    return folder


def text(page: Path) -> str:
    """A page's article, tags removed."""
    html = page.read_text()
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html[html.index("<article"):html.index("</article>")]))


def test_every_docs_page_is_on_the_site(site):
    pages = {p.stem for p in (REPO / "docs").glob("*.md")} - {"index"}
    assert pages >= {"guide", "convert", "stats", "sampler", "faults", "architecture", "api"}
    for name in pages:
        assert (site / name / "index.html").is_file(), name
    assert (site / "figures/part_cms_ak4_roc.b.png").is_file() and (site / "manifest.schema.json").is_file()


def test_the_home_page_is_the_readme_with_its_links_on_the_site(site):
    home = (site / "index.html").read_text()
    assert "make demo" in text(site / "index.html") and "Training batches" in home
    assert 'href="convert/#from-nanoaod--pfnano"' in home  # README's docs/convert.md#... link, rewritten
    assert 'id="from-nanoaod--pfnano"' in (site / "convert/index.html").read_text()  # GitHub's anchor
    guide = (site / "guide/index.html").read_text()
    assert 'href="https://github.com/jetstore/jetstore/blob/main/k8s/README.md"' in guide  # outside docs/


def test_the_api_reference_is_rendered_from_the_docstrings(site):
    api = text(site / "api/index.html")
    for name in ("convert", "load_schema", "Dataset", "Collection", "compute_stats", "JetDataset", "SamplerOptions",
                 "StorageError"):
        assert f" {name} " in api, name
    convert = api[api.index(" convert ( "):api.index(" ConvertReport dataclass")]
    assert " Parameters: " in convert and " Returns: " in convert and " Raises: " in convert
    assert " jets_per_shard int Input entries per shard;" in convert  # the docstring's row, with its annotation
    assert ":class:" not in api and ":mod:" not in api  # Sphinx roles shown as code
