"""One row of ``bench/sampler.py --sections local`` in a fresh process, with the code of any checkout: for A/B
comparisons of two versions of the sampler on the same data, alternating processes.

    python bench/sampler_ab.py TREE ROW [--data bench/out/sampler/ak4.zarr] [--config ...] [--fraction F]
                                        [--plans-kept N]

TREE: a checkout of jetstore (e.g. ``git worktree add /tmp/main main``; its own ``bench/sampler.py`` measures); ROW:
``limit`` (decode + pad, no sampling), ``t1`` / ``t2`` (a full weighted epoch with 1 / 2 threads), ``w2`` (1 thread, 2
DataLoader workers), ``chunks`` (every chunk of a Zarr dataset's shards checked and decoded by the tree's kernel,
``decode_chunks``, in one call per shard; best of 5, CPU µs per chunk) or ``plans`` (the weighted config's plans of a
shard's units, ``plan_units``, in windows of 1 and 10 random units; best of 5, µs per unit). The dataset is the local
section's (built by ``bench/sampler.py``); ``--fraction``: weighted epochs of that fraction of its jets instead of
all. ``--plans-kept``: for trees that kept Zarr read plans per shard (before plans were made together), keep at most
this many (0: as on datasets beyond those caches). Prints jets/s per core and wall, as that section does.
"""

from __future__ import annotations

import argparse
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

ROWS = {"t1": (1, 0), "t2": (2, 0), "w2": (1, 2)}  # threads, DataLoader workers


def main() -> None:
    here = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tree", type=Path)
    parser.add_argument("row", choices=["limit", "chunks", "plans", *ROWS])
    parser.add_argument("--data", default=str(here / "bench/out/sampler/ak4.zarr"))
    parser.add_argument("--config", default=str(here.parent / "shared/bench/weaver_cms_ak4.yaml"))
    parser.add_argument("--fraction", type=float, default=1.0, help="epoch size, as a fraction of the jets")
    parser.add_argument("--plans-kept", type=int, help="Zarr read plans kept per shard (trees that kept them)")
    args = parser.parse_args()
    tree = args.tree.resolve()
    sys.path[:0] = [str(tree), str(tree / "bench")]
    import sampler
    import torch
    import yaml

    import jetstore
    import jetstore.formats.zarr.reader as zarr_reader
    from jetstore.config.weaver import training_config_from_dict
    from jetstore.dataset.dataset import Dataset

    if not Path(jetstore.__file__).resolve().is_relative_to(tree):
        sys.exit(f"jetstore was imported from {jetstore.__file__}, not from {tree}")
    torch.set_num_threads(1)
    if args.plans_kept is not None:
        if not hasattr(zarr_reader, "MAX_PLANS"):
            sys.exit(f"{tree} keeps no read plans (--plans-kept is for trees that did)")
        zarr_reader.MAX_PLANS = args.plans_kept
    if args.row == "chunks":
        return decode_all_chunks(tree, Path(args.data))
    config = training_config_from_dict(yaml.safe_load(Path(args.config).read_text()))
    dataset = Dataset.open(args.data)
    if args.row == "plans":
        return plan_units_times(tree, dataset, sampler.BatchBuilder(dataset.schema, config, {
            n: (v.center, v.scale) for n, v in sampler.read_stats(dataset, config.hash).variables.items()}).needs,
            Path(args.data).name)
    if args.row == "limit":
        result = sampler.raw_limit(dataset, config)
    else:
        threads, workers = ROWS[args.row]
        result = sampler.run_jetstore(args.data, config, int(args.fraction * dataset.manifest.n_jets), threads, workers)
    print(f"{args.row} {tree.name} {Path(args.data).name} {args.fraction:g}: {result['jets'] / result['cpu']:,.0f} "
          "jets/s per core, "
          f"{result['jets'] / result['wall']:,.0f} wall", flush=True)


def plan_units_times(tree: Path, dataset, selection, name: str) -> None:
    """The ``plans`` row: the first shard's units in random windows of 10 (a window's share of a shard of a few
    shards' dataset) and of 1 (of a dataset of many shards), timed by the tree's own ``sampler.plan_times``."""
    import sampler

    shard = dataset.manifest.shards[0]
    reader, jets = dataset.source.reader(shard), dataset.unit_jets
    starts = np.random.default_rng(0).permutation(np.arange(0, shard.n_jets - jets + 1, jets)).tolist()
    times = []
    for size in (10, 1):
        windows = [[(a, a + jets) for a in starts[i:i + size]] for i in range(0, len(starts), size)]
        together = sampler.plan_times(reader, selection, windows)["together"]
        times.append(f"windows of {size} {1e6 * together:.1f}")
    print(f"plans {tree.name} {name}: µs per unit, " + ", ".join(times), flush=True)


def decode_all_chunks(tree: Path, data: Path) -> None:
    """The ``chunks`` row: each shard's chunks found by its zip directory (so every tree decodes the same ones)."""
    from jetstore.formats.zarr.chunks import decode_chunks

    best, chunks = 0.0, 0
    for path in sorted((data / "shards").glob("*.zip")):
        raw = np.fromfile(path, np.uint8)
        entries = [e for e in zipfile.ZipFile(path).infolist() if "/c/" in e.filename and e.compress_size >= 16]
        headers = np.array([e.header_offset for e in entries], np.int64)
        names = np.array([len(e.filename.encode()) for e in entries], np.int64)
        starts = headers + 30 + names + np.array([len(e.extra) for e in entries], np.int64)
        decoded = np.array([int.from_bytes(raw[s + 4:s + 8].tobytes(), "little") for s in starts], np.int64)
        places = np.concatenate([[0], np.cumsum(decoded)[:-1]]).astype(np.int64)
        out = np.empty(int(decoded.sum()), np.uint8)
        times = []
        for _ in range(5):
            start = time.process_time()
            failed, _ = decode_chunks(raw, headers, names, np.array([e.compress_size for e in entries], np.int64),
                                      np.array([e.CRC for e in entries], np.uint64), out, places, decoded)
            times.append(time.process_time() - start)
            if failed >= 0:
                sys.exit(f"{path}: chunk {entries[failed].filename} does not decode")
        best, chunks = best + min(times), chunks + len(entries)
    print(f"chunks {tree.name} {data.name}: {chunks:,} chunks, {best / chunks * 1e6:.2f} µs per chunk", flush=True)


if __name__ == "__main__":
    main()
