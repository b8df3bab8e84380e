"""Batches grouped by multiplicity (``bucket``) against random batches, side by side in one run, on the CPU.

    python bench/bucketing.py [--sections padding,timing,physics] [--copies 2] [--seeds 1,2,3] [--steps 300]

* padding: per delivered jet, the padded positions and padded pairs (positions²) of the main block (PF
  candidates) and the SV block, over the jets' own mean of n and n²: random batches as padded to the config's
  length, as trimmed to their longest jet, as weaver-core's ParT trims them itself when training (a random 90-100%
  quantile of the lengths; the longest jets lose particles), and bucketed batches (the sampler's tensors); the
  sampler's jets/s, the spread of multiplicities in a batch, units per batch. On jittered copies of
  ../shared/data/cms_ak4 (config ../shared/bench/weaver_cms_ak4.yaml, 64 candidates) and on JetClass-style
  jets (tests/fixtures/make_sample.py jetclass, 128 particles), batches of 128 and 512;
* timing: the built-in ParT (``small``; weaver-core's ParticleTransformer with its trimming on, as trained)
  forward + backward + optimizer step per jet on the same number of random and bucketed batches, alternating,
  one torch thread, the same batch size;
* physics: ``jetstore train`` with and without ``--bucket`` (built-in ParT small, one epoch of ``--steps`` steps
  of 128 jets, so the model scored is the one after the last step; Ranger at 1e-3, constant rate, ``--seeds``,
  one sampler and one torch thread) on five cms_ak4 files, scored on every selected jet of ttbar_2 (never trained
  on): AUCs per seed, their mean and spread, the paired (same seed) differences, and each AUC's statistical
  uncertainty (bootstrap). ``--random-options`` / ``--bucketed-options`` add trainer options to either side
  (e.g. ``--bucketed-options "--batchnorm batch"``); every training is kept in its own folder
  (``bench/out/bucketing/physics/bucket_seed1_steps300_1epoch_batchnorm-batch``) and reused by later runs.

The physics section runs ``2 × len(seeds)`` trainings (~1.5 min each at ``--steps 50``, 1.5-3 min at 300, on 2
shared cores). The timing section's bucketed batches span the epoch's multiplicities, one chunk at a time: for a
fair mean, time a chunk's worth (``--timing-batches 100`` at batch 128) on a quiet machine.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sampler import build, jetclass_files  # noqa: E402

from jetstore import JetDataset  # noqa: E402
from jetstore.config.weaver import training_config_from_dict  # noqa: E402
from jetstore.conversion.cluster import dask_client  # noqa: E402
from jetstore.train.model import Tagger  # noqa: E402
from tests.fixtures.jittered import jittered_copies  # noqa: E402

SHARED = REPO.parent / "shared"
TRAIN_FILES = ("ttbar_1", "qcd30_1", "qcd150_1", "wjets_1", "zbb_1")
TEST_FILE = "ttbar_2"
PAIRS = {  # signal classes, background classes: the discriminant is the signal's scores over the pair's
    "b vs uds": (("label_b",), ("label_uds",)),
    "b vs g": (("label_b",), ("label_g",)),
    "b vs uds+g": (("label_b",), ("label_uds", "label_g")),
    "c vs uds+g": (("label_c",), ("label_uds", "label_g")),
    "b+bb vs c+cc": (("label_b", "label_bb"), ("label_c", "label_cc")),
}


# ---------------------------------------------------------------- data


def datasets(args) -> dict[str, tuple]:
    """name → (dataset URL, config, main block's mask group, SV mask group or None)."""
    scratch = Path(args.scratch)
    cms_config = training_config_from_dict(yaml.safe_load(Path(args.config).read_text()))
    jetclass_config = training_config_from_dict(
        yaml.safe_load((REPO / "tests/fixtures/weaver_jetclass.yaml").read_text()))
    files = sorted(glob.glob(str(SHARED / "data/cms_ak4/*.root")))
    with dask_client(workers=2, quiet=True) as client:
        ak4 = build(client, jittered_copies(files, scratch / f"jittered{args.copies}", args.copies),
                    str(scratch / f"ak4x{args.copies}.zarr"), "zarr", "cms_ak4", [cms_config])
        jetclass = build(client, jetclass_files(scratch / "jetclass"), str(scratch / "jetclass.zarr"), "zarr",
                         "jetclass", [jetclass_config])
    return {f"cms_ak4 ×{args.copies} jittered ({ak4.manifest.n_jets:,} jets)":
            (ak4.url, cms_config, "pf_mask", "sv_mask"),
            f"JetClass-style ({jetclass.manifest.n_jets:,} jets)": (jetclass.url, jetclass_config, "pf_mask", None)}


def epoch(url: str, config, batch: int, bucket: bool, batches: int, seed: int = 1) -> tuple[list[dict], float, float]:
    """``batches`` batches of one epoch (the first epoch's numba compilation and page cache warmed before), the
    sampler's wall seconds and units per batch."""
    ds = JetDataset(url, config, batch_size=batch, seed=seed, jets_per_epoch=batch * batches, bucket=bucket,
                    threads=1)
    ds.set_epoch(1)
    next(iter(ds))
    ds.set_epoch(0)
    start = time.perf_counter()
    out = [{k: v.numpy().copy() for k, v in b.items()} for b in ds]
    return out, time.perf_counter() - start, float(np.mean(ds.last_stream.units_per_batch))


def lengths(batches: list[dict], mask: str) -> tuple[np.ndarray, np.ndarray]:
    """Per jet its multiplicity in the block of ``mask`` (within the config's length), per batch the tensors'
    length."""
    return (np.concatenate([b[mask].sum(axis=(1, 2)) for b in batches]).astype(np.int64),
            np.array([b[mask].shape[2] for b in batches]))


def part_training_trim(n: np.ndarray, rng: np.random.Generator, draws: int = 32) -> tuple[float, float, float]:
    """What weaver-core's ParT does to a batch of multiplicities ``n`` when training (SequenceTrimmer: it keeps
    ``quantile(n, q)`` positions, q uniform in [0.9, 1.02] clamped at 1, dropping the rest of longer jets'
    particles), averaged over q: (squared length, real pairs kept, real pairs of all jets)."""
    q = np.minimum(rng.uniform(0.9, 1.02, draws), 1.0)
    kept = np.maximum(np.floor(np.quantile(n, q)), 1)
    pairs = np.minimum(n[None, :], kept[:, None]).astype(float) ** 2
    return float(np.mean(kept ** 2)), float(pairs.sum(axis=1).mean()), float((n.astype(float) ** 2).sum())


# ---------------------------------------------------------------- sections


def section_padding(data, args) -> None:
    print("\n### Padding per delivered jet, random against bucketed batches (one epoch each, same seed)\n")
    print("| data | batch | block | jets' own mean n / n² | positions per jet: random padded / trimmed to longest / "
          "**bucketed** | pairs per jet ÷ jets' own mean n²: random padded / trimmed to longest / ParT's own training "
          "trim / **bucketed** | the same, bucketed without class composition | real pairs ParT keeps when "
          "training: random / bucketed | spread of n in a batch "
          "(median p90−p10): random / bucketed | sampler jets/s: random / bucketed | units per batch: random / "
          "bucketed |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rng = np.random.default_rng(0)
    for name, (url, config, mask, sv) in data.items():
        lengths_of = {g.name: g.length for g in config.inputs}
        for batch in (128, 512):
            count = max(40, args.jets // batch)
            runs = {bucket: epoch(url, config, batch, bucket, count) for bucket in (False, True)}
            for block in (mask, sv):
                if block is None:
                    continue
                n, _ = lengths(runs[False][0], block)
                nb, tensor = lengths(runs[True][0], block)
                per_batch = np.split(n, len(runs[False][0]))
                trims = {k: np.array([part_training_trim(p, rng) for p in np.split(m, len(runs[k][0]))])
                         for k, m in ((False, n), (True, nb))}
                kept = [f"{100 * t[:, 1].sum() / t[:, 2].sum():.0f}%" for t in trims.values()]
                longest = np.array([max(1, p.max()) for p in per_batch])
                mean_n, mean_n2 = n.mean(), (n.astype(float) ** 2).mean()
                own_b = (nb.astype(float) ** 2).mean()
                full = lengths_of[block]
                positions = (full, longest.mean(), tensor.mean())
                pairs = (full ** 2 / mean_n2, (longest.astype(float) ** 2).mean() / mean_n2,
                         trims[False][:, 0].mean() / mean_n2,
                         (tensor.astype(float) ** 2).mean() / own_b, unstratified(nb, batch) / own_b)
                spread = [np.median([np.subtract(*np.percentile(p, [90, 10])) for p in np.split(m, len(r[0]))])
                          for m, r in ((n, runs[False]), (nb, runs[True]))]
                speed = [len(r[0]) * batch / r[1] for r in (runs[False], runs[True])]
                print(f"| {name} | {batch} | {block.split('_')[0]} | {mean_n:.1f} / {mean_n2:.0f} | "
                      f"{positions[0]:.0f} / {positions[1]:.1f} / **{positions[2]:.1f}** | "
                      f"{pairs[0]:.1f} / {pairs[1]:.2f} / {pairs[2]:.2f} / **{pairs[3]:.2f}** | {pairs[4]:.2f} | "
                      f"{' / '.join(kept)} | "
                      f"{spread[0]:.0f} / {spread[1]:.0f} | {speed[0]:,.0f} / {speed[1]:,.0f} | "
                      f"{runs[False][2]:.1f} / {runs[True][2]:.1f} |", flush=True)


def unstratified(n: np.ndarray, batch: int, window: int = 32768) -> float:
    """Mean squared batch length were the bucketed epoch's chunks (``window / 2`` jets, consecutive batches)
    sorted as one class: what keeping every batch's class composition costs."""
    lengths = []
    for chunk in np.split(n, np.arange(window // 2, len(n), window // 2)):
        ordered = np.sort(chunk)
        lengths += [max(1, part.max()) for part in np.split(ordered, np.arange(batch, len(ordered), batch))]
    return float(np.mean(np.square(lengths, dtype=float)))


def step_seconds(model: torch.nn.Module, optimizer, batch: dict, inputs: tuple[str, ...]) -> float:
    start = time.perf_counter()
    logits, _ = model(*(torch.from_numpy(batch[k]) for k in inputs))
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(batch["_label_"]))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def section_timing(data, args) -> None:
    print(f"\n### Built-in ParT (small) train step per jet, {args.timing_batches} random and bucketed batches "
          "alternating, 1 torch thread\n")
    print("| data | batch | ms per jet: random | bucketed | speed-up | mean tensor length: random / bucketed |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    inputs = ("pf_features", "pf_vectors", "pf_mask")
    for name, (url, config, _, _) in data.items():
        features = len(next(g for g in config.inputs if g.name == "pf_features").variables)
        for batch in args.timing_sizes:
            runs = {bucket: epoch(url, config, batch, bucket, args.timing_batches + 6)[0] for bucket in (False, True)}
            torch.manual_seed(1)
            model = Tagger(features, len(config.label_columns), size="small")
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
            for b in runs[False][:6]:  # ParT trims only after 5 steps
                step_seconds(model, optimizer, b, inputs)
            seconds = {False: 0.0, True: 0.0}
            for random_batch, bucketed_batch in zip(runs[False][6:], runs[True][6:], strict=True):
                seconds[False] += step_seconds(model, optimizer, random_batch, inputs)
                seconds[True] += step_seconds(model, optimizer, bucketed_batch, inputs)
            jets = args.timing_batches * batch
            lengths_of = [np.mean([b["pf_mask"].shape[2] for b in runs[k][6:]]) for k in (False, True)]
            print(f"| {name} | {batch} | {1e3 * seconds[False] / jets:.2f} | {1e3 * seconds[True] / jets:.2f} | "
                  f"**{seconds[False] / seconds[True]:.2f}×** | {lengths_of[0]:.0f} / {lengths_of[1]:.1f} |",
                  flush=True)


def jetstore(*argv: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    quiet = [] if argv[0] == "train" else ["-q"]  # the trainer's options follow `train` directly
    subprocess.run([sys.executable, "-m", "jetstore", *quiet, *argv], check=True, env=env, cwd=REPO)


def aucs(prediction: Path, classes: list[str], rng: np.random.Generator, resamples: int = 200) -> dict:
    """Per pair of :data:`PAIRS`: (AUC, bootstrap standard deviation over the scored jets)."""
    import pyarrow.parquet as pq
    from sklearn.metrics import roc_auc_score

    table = pq.read_table(prediction).to_pandas()
    scores, labels = table[[f"score_{c}" for c in classes]].to_numpy(), table["_label_"].to_numpy()
    out = {}
    for pair, (signal, background) in PAIRS.items():
        s = [classes.index(c) for c in signal]
        b = [classes.index(c) for c in background]
        keep = np.isin(labels, s + b)
        mine = scores[keep][:, s].sum(axis=1) / scores[keep][:, s + b].sum(axis=1)
        truth = np.isin(labels[keep], s)
        value = roc_auc_score(truth, mine)
        draws = [rng.integers(0, len(mine), len(mine)) for _ in range(resamples)]
        out[pair] = (value, float(np.std([roc_auc_score(truth[d], mine[d]) for d in draws])))
    return out


def run_folder(bucket: bool, seed: int, steps: int, options: list[str]) -> str:
    """A training's folder: its batches, seed, steps and its extra options (``--batchnorm running`` →
    ``_batchnorm-running``)."""
    extra = "_" + "-".join(t.lstrip("-") for t in options) if options else ""
    return f"{'bucket' if bucket else 'random'}_seed{seed}_steps{steps}_1epoch{extra}"


def section_physics(_, args) -> None:
    scratch = Path(args.scratch) / "physics"
    config = args.config
    classes = yaml.safe_load(Path(config).read_text())["labels"]["value"]
    files = [str(SHARED / f"data/cms_ak4/{name}.root") for name in TRAIN_FILES]
    train, test = scratch / "train.zarr", scratch / "test.zarr"
    for inputs, url in ((files, train), ([str(SHARED / f"data/cms_ak4/{TEST_FILE}.root")], test)):
        if not (url / "_manifest.json").exists():
            jetstore("convert", *inputs, "--schema", "cms_ak4", "--output", str(url), "--workers", "1")
    jetstore("stats", str(train), "--config", config)
    results: dict[bool, list[dict]] = {False: [], True: []}
    rng = np.random.default_rng(0)
    extra = {False: args.random_options, True: args.bucketed_options}
    for seed in args.seeds:
        for bucket in (False, True):
            run = scratch / run_folder(bucket, seed, args.steps, extra[bucket])
            prediction = run / "test.parquet"
            if not prediction.exists():
                start = time.perf_counter()
                jetstore("train", "--data", str(train), "--config", config, "--output", str(run), "--size", "small",
                         "--num-epochs", "1", "--batch-size", "128", "--jets-per-epoch", str(128 * args.steps),
                         "--jets-per-epoch-val", "1280", "--lr", "1e-3", "--optimizer", "ranger", "--lr-scheduler",
                         "none", "--seed", str(seed), "--no-progress", "--threads", "1", "--torch-threads", "1",
                         *(["--bucket"] if bucket else []), *extra[bucket])
                trained = time.perf_counter() - start
                jetstore("train", "--output", str(run), "--predict", str(prediction), "--predict-data", str(test),
                         "--threads", "1", "--torch-threads", "1")
                (run / "bench_seconds.json").write_text(json.dumps({"train": trained}))
            results[bucket].append(aucs(prediction, classes, rng))
            seconds = json.loads((run / "bench_seconds.json").read_text())["train"]
            print(f"seed {seed}, {run.name}: trained in {seconds:.0f} s; "
                  + ", ".join(f"{p} {v:.3f}" for p, (v, _) in results[bucket][-1].items()), flush=True)
    names = [" ".join(["random", *extra[False]]), " ".join(["bucketed", *extra[True]])]
    print(f"\n### AUCs on {TEST_FILE} after {args.steps} steps of 128 jets, seeds {args.seeds}: {names[0]} against "
          f"{names[1]}\n")
    print(f"| pair | {names[0]} (mean) | {names[1]} (mean) | bucketed − random per seed (mean ± its standard "
          "error) | seed spread (std) random / bucketed | statistical uncertainty |")
    print("| --- | --- | --- | --- | ---: | ---: |")
    lower = 0
    for pair in PAIRS:
        values = {k: np.array([r[pair][0] for r in v]) for k, v in results.items()}
        stat = np.mean([r[pair][1] for v in results.values() for r in v])
        cells = [", ".join(f"{x:.3f}" for x in values[k]) + f" ({values[k].mean():.3f})" for k in (False, True)]
        paired = values[True] - values[False]
        lower += int((paired < 0).sum())
        print(f"| {pair} | {cells[0]} | {cells[1]} | {', '.join(f'{d:+.3f}' for d in paired)} "
              f"(**{paired.mean():+.3f}** ± {paired.std(ddof=1) / np.sqrt(len(paired)):.3f}) | "
              f"{values[False].std(ddof=1):.3f} / {values[True].std(ddof=1):.3f} | ±{stat:.3f} |", flush=True)
    print(f"\nbucketed lower in {lower} of {len(PAIRS) * len(args.seeds)} (seed, pair) comparisons", flush=True)


SECTIONS = {"padding": section_padding, "timing": section_timing, "physics": section_physics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--config", default=str(SHARED / "bench/weaver_cms_ak4.yaml"))
    parser.add_argument("--copies", type=int, default=2, help="jittered copies of cms_ak4 (34k jets each)")
    parser.add_argument("--scratch", default=str(REPO / "bench/out/bucketing"))
    parser.add_argument("--jets", type=int, default=40_000, help="jets per epoch of the padding section")
    parser.add_argument("--timing-batches", type=int, default=20)
    parser.add_argument("--timing-sizes", type=lambda t: [int(x) for x in t.split(",")], default=[128, 512])
    parser.add_argument("--seeds", type=lambda t: [int(x) for x in t.split(",")], default=[1, 2, 3])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--random-options", type=str.split, default=[],
                        help="physics: more `jetstore train` options for the random batches' runs")
    parser.add_argument("--bucketed-options", type=str.split, default=[],
                        help="physics: more `jetstore train` options for the bucketed runs, e.g. '--batchnorm batch'")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sections = args.sections.split(",")
    data = datasets(args) if {"padding", "timing"} & set(sections) else {}
    print(f"torch {torch.__version__}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"{time.strftime('%Y-%m-%d')}", flush=True)
    for name in sections:
        SECTIONS[name](data, args)


if __name__ == "__main__":
    main()
