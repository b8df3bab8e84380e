"""Opening a dataset with a large manifest: ``jetstore inspect`` on manifests of many shards, in a fresh
process, against the raw JSON parse of the same file (its floor) and against validating every shard with
jsonschema (what jetstore did before its compiled checks; extrapolated from 500 shards).

    python bench/manifest.py [--shards 20000,200000] [--workdir bench/out/manifest]

The manifest is the bundled sample's, its one shard record repeated under distinct names and re-sealed (a
valid manifest: every shard file it names need not exist to open it). Reported per size: the file's size,
``inspect``'s wall time and peak RSS, the parse floor and the ratio of the two, and jsonschema's estimate.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def base_manifest(workdir: Path):
    """The bundled sample converted once (one shard), its manifest."""
    from jetstore import convert
    from jetstore.store.dataset import Dataset

    out = workdir / "sample.zarr"
    if not (out / "_manifest.json").exists():
        inputs = sorted(str(p) for p in (REPO / "jetstore/data").glob("sample_cms_ak4_*.root"))
        assert convert(inputs, "cms_ak4", str(out), workers=1, progress=False, log=lambda _: None).ok
    return Dataset.open(str(out)).manifest


def write_large(manifest, shards: int, target: Path) -> int:
    first = manifest.shards[0]
    records = tuple(dataclasses.replace(first, name=f"{first.name}{i}", path=f"shards/s{i}.zarr.zip")
                    for i in range(shards))
    target.mkdir(parents=True, exist_ok=True)
    text = dataclasses.replace(manifest, shards=records).to_json()
    (target / "_manifest.json").write_text(text)
    return len(text)


def measure(code: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB, reported by the process itself at exit) of ``python -c code``."""
    report = ("import atexit, resource, sys; atexit.register(lambda: print('RSS', "
              "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr))\n")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", report + code], check=True, capture_output=True, text=True,
                          cwd=REPO)
    wall = time.perf_counter() - start
    return wall, int(done.stderr.rsplit("RSS ", 1)[1].split()[0]) / 1024


def jsonschema_estimate(path: Path, sample: int = 500) -> float:
    """Seconds jsonschema takes per shard record, times the records, plus once for the whole manifest."""
    import jsonschema

    from jetstore.store import manifest as module

    data = json.loads(path.read_text())
    validator = jsonschema.Draft202012Validator(module._target("#/$defs/shard"))
    start = time.perf_counter()
    for record in data["shards"][:sample]:
        list(validator.iter_errors(record))
    per_shard = (time.perf_counter() - start) / min(sample, len(data["shards"]))
    return 2 * per_shard * len(data["shards"])  # the whole document, then each record again (as before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", default="20000,200000")
    parser.add_argument("--workdir", default=str(REPO / "bench/out/manifest"))
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    manifest = base_manifest(workdir)
    print("| shards | manifest | inspect wall | inspect peak RSS | json.loads floor | ratio | jsonschema (est.) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for shards in (int(n) for n in args.shards.split(",")):
        target = workdir / f"large-{shards}.zarr"
        size = write_large(manifest, shards, target)
        inspect, rss = measure(f"import sys; from jetstore.cli import main; sys.exit(main(['-q', 'inspect', "
                               f"{str(target)!r}]))")
        floor, _ = measure(f"import json; json.loads(open({str(target / '_manifest.json')!r}, 'rb').read())")
        estimate = jsonschema_estimate(target / "_manifest.json")
        print(f"| {shards:,} | {size / 1e6:.0f} MB | {inspect:.1f} s | {rss:,.0f} MB | {floor:.1f} s | "
              f"{inspect / floor:.1f} | {estimate:,.0f} s |", flush=True)
        shutil.rmtree(target)


if __name__ == "__main__":
    main()
