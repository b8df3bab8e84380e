"""Benchmark reading CMS NanoAOD / PFNano (per-event collections and link tables) into jets, against the raw
uproot read of the same branches, one core, best of ``--repeat``:

    python bench/nano.py [--repeat 5] [--copies 500]

For the bundled ``nano_ak4`` (../shared/data/cms_nano/pfnano.root) and ``nano_ak8`` (nano_tt_v15.root)
schemas: the raw ``TTree.arrays`` of every branch the schema reads (the limit), and jetstore's read of the same
entries into per-jet tables (link tables resolved, nodes ordered by pT, expressions, casts; what a conversion
task does before sorting and encoding): the raw read's time per jet plus the time per jet to resolve the links
and build the table on one piece of ``--copies`` repetitions of the file's events (the files are small: 64
jets each). The tree is opened once: NanoAOD's ~2,000-branch metadata costs ~0.8 s per open, once per
conversion task.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import awkward as ak
import uproot

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import best_of  # noqa: E402

from jetstore import load_schema  # noqa: E402
from jetstore.conversion.events import explode  # noqa: E402
from jetstore.conversion.read import build_table, inspect_input  # noqa: E402

SHARED = REPO.parent / "shared"
CASES = {"nano_ak4": SHARED / "data/cms_nano/pfnano.root", "nano_ak8": SHARED / "data/cms_nano/nano_tt_v15.root"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--copies", type=int, default=500)
    args = parser.parse_args()
    print(f"{datetime.date.today()}, CPU seconds of one process (one core)\n")
    print("| schema | file | events | jets | nodes | raw read jets/s | jetstore read jets/s | × raw |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, path in CASES.items():
        print(measure(name, path, args.repeat, args.copies))


def measure(name: str, path: Path, repeat: int, copies: int) -> str:
    schema = load_schema(name)
    info = inspect_input(str(path), schema, {})
    branches = sorted(schema.branches)
    with uproot.open(path) as handle:
        events = handle[schema.tree].arrays([f"n{schema.collection}"], library="ak")
    jets = int(ak.sum(events[f"n{schema.collection}"]))
    handle = uproot.open(path)
    tree = handle[schema.tree]  # opened once: NanoAOD's ~2,000 branches take ~0.8 s of metadata per open

    def raw() -> dict:
        return tree.arrays(branches, library="ak", how=dict)

    # the file's events repeated: one piece of realistic size, so per-call costs do not dominate
    piece = {name: ak.concatenate([array] * copies) for name, array in raw().items()}

    def transform() -> None:
        per_jet, entries = explode(str(path), schema, piece, 0)
        build_table(str(path), schema, info.dtypes, per_jet, entries)

    per_jet, entries = explode(str(path), schema, piece, 0)
    nodes = sum(int(b.counts.sum()) for b in build_table(str(path), schema, info.dtypes, per_jet,
                                                         entries).blocks.values()) // copies
    raw_s = best_of(repeat, raw, time.process_time) / jets
    ours_s = raw_s + best_of(repeat, transform, time.process_time) / (copies * jets)
    raw_rate, ours = 1 / raw_s, 1 / ours_s
    handle.close()
    return (f"| {name} | {path.name} | {info.entries:,} | {jets:,} | {nodes:,} | {raw_rate:,.0f} | {ours:,.0f} | "
            f"{ours / raw_rate:.2f} |")


if __name__ == "__main__":
    main()
