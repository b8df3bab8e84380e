"""Side by side: jetstore's trainer against weaver-core 0.5.3's own train.py, on the same network files (ParT and
ParticleNet, small), the same training jets (jetstore's 90% training part; weaver reads it as written by
``jetstore export-weaver --files``, with the same standardisation and weight tables), the same steps, batch size,
optimizer (ranger) and constant learning rate, several seeds each; both models score the same independent jets
(ttbar_2, matched jet by jet on event and ijet) and are scored by the same AUC code (jetstore.train.evaluate).

    nice -n 10 python bench/train_vs_weaver.py [--steps 300] [--seeds 3] [--networks part pnet] [--fetch-step-1]

Prints (and writes bench/out/versus/results.json) per network and pair: every run's AUC, mean ± std per trainer,
the paired differences (run i of each) and the statistical uncertainty of one AUC on these jets. With
``--fetch-step-1`` weaver also runs with ``--fetch-step 1`` (whole files per fetch: its batches then mix as
jetstore's do), which measures how much of the difference its 1% fetches make. Needs ../shared/data/cms_ak4.
Runs resume: a finished run's predictions are reused."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data/cms_ak4"
TRAIN_FILES = [str(DATA / f"{name}.root") for name in ("ttbar_1", "qcd30_1", "qcd150_1", "wjets_1", "zbb_1")]
TEST_FILE = str(DATA / "ttbar_2.root")
CONFIG = str(SHARED / "bench/weaver_cms_ak4.yaml")
OUT = REPO / "bench/out/versus"
NETWORKS = {  # small networks: the comparison is of the trainers, on a shared 2-core machine
    "part": (REPO / "tests/fixtures/networks/example_ParticleTransformer.py",
             ["-o", "embed_dims", "[32, 64, 32]", "-o", "pair_embed_dims", "[16, 16, 16]", "-o", "num_heads", "2",
              "-o", "num_layers", "2", "-o", "num_cls_layers", "1"]),
    "pnet": (REPO / "tests/fixtures/networks/example_ParticleNet.py",
             ["-o", "conv_params", "[(8, (32, 32, 32)), (8, (64, 64, 64))]", "-o", "fc_params", "[(64, 0.1)]"]),
}
PAIRS = {"b_vs_uds": (("b",), ("uds",)), "b_vs_g": (("b",), ("g",)), "b_vs_uds+g": (("b",), ("uds", "g")),
         "c_vs_uds+g": (("c",), ("uds", "g")), "b+bb_vs_c+cc": (("b", "bb"), ("c", "cc"))}
CLASSES = ["b", "bb", "c", "cc", "uds", "g"]
BATCH, LR = 128, 1e-3
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def run(command: list[str], log: Path) -> float:
    start = time.perf_counter()
    with open(log, "w") as handle:
        status = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=ENV, cwd=OUT).returncode
    if status:
        sys.exit(f"failed ({status}): {' '.join(command)}; see {log}")
    return time.perf_counter() - start


def jetstore(*args: str) -> list[str]:
    return [sys.executable, "-m", "jetstore", *args]


def prepare() -> None:
    """The datasets, stats, and weaver's files of the same training jets (once)."""
    OUT.mkdir(parents=True, exist_ok=True)
    if not (OUT / "train.zarr/_manifest.json").exists():
        run(jetstore("convert", *TRAIN_FILES, "--schema", "cms_ak4", "--output", "train.zarr"), OUT / "convert.log")
        run(jetstore("stats", "train.zarr", "--config", CONFIG), OUT / "stats.log")
    if not (OUT / "test.zarr/_manifest.json").exists():
        run(jetstore("convert", TEST_FILE, "--schema", "cms_ak4", "--output", "test.zarr"), OUT / "convert-test.log")
    if not (OUT / "weaver.yaml").exists():
        run(jetstore("export-weaver", "train.zarr", "--config", CONFIG, "-o", "weaver.yaml", "--files",
                     "weaver-data"), OUT / "export.log")


def train_jetstore(name: str, seed: int, steps: int) -> tuple[Path, float]:
    network, options = NETWORKS[name]
    folder = OUT / f"jetstore-{name}-{seed}"
    prediction = folder / "test.parquet"
    if prediction.exists():
        return prediction, json.loads((folder / "time.json").read_text())["seconds"]
    seconds = run(jetstore("train", "--data", "train.zarr", "--config", CONFIG, "--output", str(folder), "-n",
                           str(network), *options, "--num-epochs", "1", "--steps", str(steps), "--jets-per-epoch",
                           str(steps * BATCH), "--jets-per-epoch-val", str(10 * BATCH), "--batch-size", str(BATCH),
                           "--lr", str(LR), "--optimizer", "ranger", "--lr-scheduler", "none", "--seed", str(seed),
                           "--threads", "1", "--no-progress"), OUT / f"jetstore-{name}-{seed}.log")
    run(jetstore("train", "--output", str(folder), "--predict", str(prediction), "--predict-data", "test.zarr",
                 "-n", str(network), "--no-progress"), OUT / f"jetstore-{name}-{seed}-predict.log")
    (folder / "time.json").write_text(json.dumps({"seconds": seconds}))
    return prediction, seconds


def train_weaver(name: str, seed: int, steps: int, fetch_step: float) -> tuple[Path, float]:
    network, options = NETWORKS[name]
    tag = f"weaver{'-fetch1' if fetch_step == 1 else ''}-{name}-{seed}"
    folder = OUT / tag
    prediction = folder / "test.root"
    if prediction.exists():
        return prediction, json.loads((folder / "time.json").read_text())["seconds"]
    folder.mkdir(exist_ok=True)
    seconds = run([sys.executable, "-m", "weaver.train", "--data-train", str(OUT / "weaver-data/train/*.parquet"),
                   "--data-val", str(OUT / "weaver-data/val/*.parquet"), "--data-test", TEST_FILE,
                   "--data-config", "weaver.yaml", "--no-remake-weights", "-n", str(network), *options,
                   "--model-prefix", str(folder / "net"), "--num-epochs", "1", "--steps-per-epoch", str(steps),
                   "--steps-per-epoch-val", "10", "--batch-size", str(BATCH), "--start-lr", str(LR),
                   "--optimizer", "ranger", "--lr-scheduler", "none", "--gpus", "", "--num-workers", "1",
                   "--fetch-step", str(fetch_step), "--fetch-step-val", "1", "--predict-output", str(prediction)],
                  OUT / f"{tag}.log")
    (folder / "time.json").write_text(json.dumps({"seconds": seconds}))
    return prediction, seconds


def scores(path: Path) -> dict[tuple[int, int], tuple[np.ndarray, int]]:
    """(event, ijet) → (class scores, class index) of a prediction file (jetstore's Parquet or weaver's ROOT)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = {k: v.to_numpy() for k, v in zip(pq.read_table(path).column_names, pq.read_table(path).columns,
                                                   strict=True) if k != "sample"}
    else:
        import uproot

        with uproot.open(path) as handle:
            table = handle["Events"].arrays(library="np")
    matrix = np.stack([table[f"score_label_{c}"] for c in CLASSES], axis=1)
    labels = np.argmax(np.stack([table[f"label_{c}"] for c in CLASSES], axis=1), axis=1)
    return {(int(e), int(j)): (matrix[i], int(labels[i])) for i, (e, j) in enumerate(zip(table["event"],
                                                                                           table["ijet"],
                                                                                           strict=True))}


def aucs(predictions: list[dict], keys: list) -> list[dict[str, float]]:
    from jetstore.train.evaluate import Pair, auc, pair_scores

    out = []
    for found in predictions:
        matrix = np.stack([found[k][0] for k in keys])
        labels = np.array([found[k][1] for k in keys])
        out.append({name: auc(*pair_scores(matrix, labels, CLASSES, Pair(name, s, b))[:2])
                    for name, (s, b) in PAIRS.items()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--fetch-step-1", action="store_true", help="also weaver with --fetch-step 1 (the reason)")
    args = parser.parse_args()
    if not DATA.exists():
        sys.exit(f"needs {DATA}")
    prepare()
    results: dict = {}
    for name in args.networks:
        trainers = {"jetstore": lambda s, n=name: train_jetstore(n, s, args.steps),
                    "weaver": lambda s, n=name: train_weaver(n, s, args.steps, 0.01)}
        if args.fetch_step_1:
            trainers["weaver --fetch-step 1"] = lambda s, n=name: train_weaver(n, s, args.steps, 1.0)
        runs = {trainer: [make(seed) for seed in range(1, args.seeds + 1)] for trainer, make in trainers.items()}
        found = {trainer: [scores(path) for path, _ in items] for trainer, items in runs.items()}
        keys = sorted(set.intersection(*(set(f) for items in found.values() for f in items)))
        measured = {trainer: aucs(items, keys) for trainer, items in found.items()}
        from jetstore.train.evaluate import auc_error

        labels = np.array([found["jetstore"][0][k][1] for k in keys])
        counts = {pair: (int(np.isin(labels, [CLASSES.index(c) for c in s]).sum()),
                         int(np.isin(labels, [CLASSES.index(c) for c in b]).sum())) for pair, (s, b) in PAIRS.items()}
        results[name] = {"jets": len(keys), "seconds": {t: [round(s) for _, s in items] for t, items in runs.items()},
                         "pairs": {}}
        print(f"\n{name}: {len(keys):,} test jets matched; seconds per run "
              f"{ {t: [round(s) for _, s in items] for t, items in runs.items()} }")
        for pair in PAIRS:
            row = {t: [m[pair] for m in items] for t, items in measured.items()}
            differences = np.array(row["jetstore"]) - np.array(row["weaver"])
            error = auc_error(float(np.mean(row["jetstore"])), *counts[pair])
            results[name]["pairs"][pair] = {**row, "difference": differences.tolist(), "statistical": error,
                                            "jets": counts[pair]}
            text = "  ".join(f"{t} {np.mean(v):.4f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.4f}"
                             for t, v in row.items())
            print(f"  {pair:14s} {counts[pair][0]:>5,}/{counts[pair][1]:<5,} {text}  jetstore − weaver "
                  f"{differences.mean():+.4f} ± {differences.std(ddof=1) if len(differences) > 1 else 0:.4f}"
                  f"  (one AUC ± {error:.4f})")
    (OUT / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
