"""One row of ``bench/sampler.py --sections local`` in a fresh process, with the code of any checkout: for A/B
comparisons of two versions of the sampler on the same data, alternating processes.

    python bench/sampler_ab.py TREE ROW [--data bench/out/sampler/ak4.zarr] [--config ...] [--fraction F]
                                        [--plans-kept N]

TREE: a checkout of jetstore (e.g. ``git worktree add /tmp/main main``; its own ``bench/sampler.py`` measures);
ROW: ``limit`` (decode + pad, no sampling), ``t1`` / ``t2`` (a full weighted epoch with 1 / 2 threads) or ``w2``
(1 thread, 2 DataLoader workers). The dataset is the local section's (built by ``bench/sampler.py``); ``--fraction``:
weighted epochs of that fraction of its jets instead of all. ``--plans-kept``: for trees that kept Zarr read plans
per shard (before plans were made together), keep at most this many (0: as on datasets beyond those caches).
Prints jets/s per core and wall, as that section does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROWS = {"t1": (1, 0), "t2": (2, 0), "w2": (1, 2)}  # threads, DataLoader workers


def main() -> None:
    here = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tree", type=Path)
    parser.add_argument("row", choices=["limit", *ROWS])
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
    config = training_config_from_dict(yaml.safe_load(Path(args.config).read_text()))
    dataset = Dataset.open(args.data)
    if args.row == "limit":
        result = sampler.raw_limit(dataset, config)
    else:
        threads, workers = ROWS[args.row]
        result = sampler.run_jetstore(args.data, config, int(args.fraction * dataset.manifest.n_jets), threads, workers)
    print(f"{args.row} {tree.name} {Path(args.data).name} {args.fraction:g}: {result['jets'] / result['cpu']:,.0f} "
          "jets/s per core, "
          f"{result['jets'] / result['wall']:,.0f} wall", flush=True)


if __name__ == "__main__":
    main()
