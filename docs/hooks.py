"""Glue for the docs site (mkdocs.yml), used only by ``mkdocs build``.

- ``on_page_markdown`` (an mkdocs hook): a relative link from a page to a repository file outside docs/
  (``../k8s/README.md``) points to that file in the repository, as it does in a checkout. A link to a file that
  does not exist is left as it is, for ``mkdocs build --strict`` to report.
- ``SphinxRoles`` (a griffe extension for mkdocstrings): the docstrings' Sphinx roles (``:class:`~a.b.C```)
  shown as code (``C``) instead of as raw text.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import griffe

LINK = re.compile(r"\]\((\.\./[^)\s#]+)(#[^)\s]*)?\)")
ROLE = re.compile(r":(?:class|func|meth|mod|attr|obj|exc|data):`(~?)([^`]+)`")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    repository = Path(config.config_file_path).parent.resolve()
    folder = (Path(config.docs_dir) / page.file.src_uri).parent.resolve()

    def to_repository(link: re.Match) -> str:
        target = (folder / link.group(1)).resolve()
        if not target.exists() or not target.is_relative_to(repository):
            return link.group(0)
        path = target.relative_to(repository).as_posix()
        return f"]({config.repo_url.rstrip('/')}/blob/main/{path}{link.group(2) or ''})"

    return LINK.sub(to_repository, markdown)


class SphinxRoles(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(lambda role: f"`{role[2].rpartition('.')[2] if role[1] else role[2]}`",
                                           obj.docstring.value)
