"""``python -m jetstore.train``: the same as ``jetstore train`` (one-line errors and exit codes included)."""
import argparse
import sys

from jetstore.console import configure_logging, guarded
from jetstore.train.cli import main

configure_logging(0, ())
raise SystemExit(guarded(lambda args: main(args.arguments), argparse.Namespace(arguments=sys.argv[1:]), verbosity=0,
                         extra="train"))
