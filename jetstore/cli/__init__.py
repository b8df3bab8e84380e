"""The ``jetstore`` command line (``app.py``: the parser, logging, one-line errors; one module per command)."""

from jetstore.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
