"""What the ``jetstore`` command and the trainer's command line share: help that shows each option's default."""

from __future__ import annotations

import argparse


class HelpWithDefaults(argparse.HelpFormatter):
    """Help that shows each option's default, where it has a meaningful one the text does not state."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, {}, [], argparse.SUPPRESS) or "default" in text or not action.option_strings:
            return action.help
        return f"{text} (default: %(default)s)".lstrip()
