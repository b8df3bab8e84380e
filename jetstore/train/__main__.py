"""``python -m jetstore.train``: the same as ``jetstore train`` (one-line errors and exit codes included)."""
import sys

from jetstore.cli import main

raise SystemExit(main(["train", *sys.argv[1:]]))
