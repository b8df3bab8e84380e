"""The ``jetstore`` command line: convert jet libraries (ROOT, Parquet, HDF5) to a sharded dataset or append to
one, inspect and verify it, infer and check schemas, compute and export statistics, train, run the demo.

Exit codes: 0 success; 1 some inputs failed (named on stderr), or `verify` found damaged shards (named); 2 a
usage, schema, config or expression error; 3 storage unusable (endpoint, credentials, permissions, bucket); 4 a
dataset problem (missing, unreadable manifest, locked by another writer, options that do not match it). Errors
are one line; -v adds the traceback."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from jetstore.conversion.request import ConvertRequest
from jetstore.documents import DocumentError, load_json, read_regular
from jetstore.errors import JetstoreError, SchemaError, StorageError
from jetstore.schema import load_schema
from jetstore.store import storage
from jetstore.store.format import FORMATS
from jetstore.store.layout import CODECS, Layout


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:  # the trainer has its own options: jetstore train --help
        _configure_logging(0, ())
        return _guarded(_train, argv[1:], verbosity=0, extra="train")
    if argv[:1] == ["k8s"]:  # a training run's Kubernetes Jobs, from the trainer's options: jetstore k8s --help
        _configure_logging(0, ())
        return _guarded(_k8s, argv[1:], verbosity=0, extra="train")
    parser = build_parser()
    args = parser.parse_args(argv)
    verbosity = args.verbose - args.quiet
    given = [getattr(args, name, {}) for name in ("storage_options", "input_storage_options")]
    _configure_logging(verbosity, [s for options in given for s in storage.StorageOptions(options).secrets()])
    if any(isinstance(options, _Inline) and storage.StorageOptions(options).secrets() for options in given):
        LOG.warning("jetstore: warning: credentials in --storage-options JSON are visible to every local user "
                    "(ps, /proc); use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or --storage-options @FILE")
    return _guarded(args.handler, args, verbosity=verbosity)


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to the current ``sys.stderr`` (also when it was replaced after set-up)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _configure_logging(verbosity: int, secrets: Sequence[str]) -> None:
    """jetstore's notices (the ``jetstore`` loggers) as bare lines on stderr at INFO; -q: errors only; -v: every
    library's INFO records with time and logger name, -vv: DEBUG. Secrets given as options never reach the
    output (botocore's debug logs print request headers)."""
    level = VERBOSITY_LEVELS[max(-1, min(2, verbosity))]
    handler = _StderrHandler()
    handler.setLevel(level)  # also for libraries that set their own loggers' levels (distributed)
    handler.addFilter(storage.RedactingFilter(list(secrets)))
    handler.set_name("jetstore-cli")
    ours = logging.getLogger("jetstore")
    for logger in (ours, logging.getLogger()):  # main() may run several times in one process (tests, notebooks)
        for old in [h for h in logger.handlers if h.get_name() == "jetstore-cli"]:
            logger.removeHandler(old)
    ours.setLevel(level)
    if verbosity > 0:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(level)
    else:
        handler.setFormatter(logging.Formatter("%(message)s"))
        ours.addHandler(handler)


STORAGE_OPTIONS_HELP = ("fsspec options for the dataset's storage (e.g. endpoint_url), as JSON or @FILE (a JSON file); "
                        "credentials: from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or @FILE, never inline (the "
                        "command line is visible to every local user)")
LOG = logging.getLogger("jetstore.cli")
MAX_OPTIONS_BYTES = 1 << 20
DATASETS_HELP = "dataset URL, or NAME:URL to name its sample (several: read as one, like weaver's --data-train groups)"
VERBOSITY_LEVELS = {-1: logging.ERROR, 0: logging.INFO, 1: logging.INFO, 2: logging.DEBUG}
# optional modules → the extra that installs them (the core needs none of them)
EXTRAS = {"torch": "torch", "matplotlib": "plots", "mplhep": "plots", "hist": "plots", "weaver": "train",
          "tensorboard": "train", "sklearn": "train", "onnx": "train"}


def _guarded(handler: Callable[[Any], int], args: Any, verbosity: int, extra: str | None = None) -> int:
    """Run a command; expected failures become one line on stderr and their exit code: a storage failure not
    caught on the way (``storage.failure`` recognises it) is named after the command's dataset URL. ``extra``:
    the extra that the command needs as a whole (else the one that installs the missing module)."""
    try:
        try:
            return handler(args)
        except (JetstoreError, ModuleNotFoundError, KeyboardInterrupt):
            raise
        except Exception as exc:
            url = getattr(args, "url", None) or next(iter(getattr(args, "urls", None) or ()), None) \
                or getattr(args, "output", None)  # the command's (first) dataset
            error = storage.failure(exc, url) if isinstance(url, str) else None
            if error is None:
                raise
            raise error from exc
    except JetstoreError as exc:
        urls = _urls(args)  # whatever a message quotes of a URL, it shows without credentials
        if verbosity > 0:
            print(storage.scrub_urls(traceback.format_exc(), urls), end="", file=sys.stderr)
        print(f"jetstore: error: {storage.scrub_urls(str(exc), urls)}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        missing = EXTRAS.get((exc.name or "").partition(".")[0])
        if missing is None:
            raise
        extra = extra or missing
        print(f"jetstore: error: this command needs {exc.name}, an optional dependency: "
              f"pip install 'jetstore[{extra}]'", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jetstore: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def _urls(args: object) -> list[str]:
    """The URLs a command was given (inputs, output, datasets; every ``://`` word of the trainer's argv)."""
    if isinstance(args, list):
        return [word for word in args if "://" in word]
    given = [getattr(args, name, None) for name in ("output", "url", "files", "scheduler")]
    given += [*(getattr(args, "inputs", None) or ()), *(getattr(args, "urls", None) or ())]
    return [url for url in given if isinstance(url, str) and "://" in url]


def _train(argv: list[str]) -> int:
    from jetstore.train.cli import main as train_main

    return train_main(argv)


def _k8s(argv: list[str]) -> int:
    from jetstore.train.k8s import main as k8s_main

    return k8s_main(argv)


def build_parser() -> argparse.ArgumentParser:
    from jetstore.version import __version__

    parser = argparse.ArgumentParser(prog="jetstore", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"jetstore {__version__}")
    _add_verbosity(parser, default=0)
    common = argparse.ArgumentParser(add_help=False)
    _add_verbosity(common, default=argparse.SUPPRESS)  # also accepted after the command
    subparsers = parser.add_subparsers(dest="command", required=True)

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        return subparsers.add_parser(name, parents=[common], formatter_class=_HelpWithDefaults,
                                     **kwargs)


    convert = command("convert", help="convert jet libraries (ROOT, Parquet, HDF5) into a sharded dataset")
    convert.add_argument("inputs", nargs="+", metavar="INPUT",
                         help="ROOT, Parquet or HDF5 files (told by their content): paths, globs or fsspec URLs")
    convert.add_argument("--schema", required=True, help="schema YAML, or the name of a bundled schema")
    convert.add_argument("--output", "-o", required=True, help="dataset URL: local path or s3://bucket/prefix")
    convert.add_argument("--format", choices=sorted(FORMATS), default=ConvertRequest.format, help="dataset format")
    convert.add_argument("--jets-per-shard", type=_positive, default=ConvertRequest.jets_per_shard,
                         help="input entries per shard")
    convert.add_argument("--chunk-jets", type=_positive, default=Layout.chunk_jets,
                         help="jets per Zarr chunk / Parquet row group")
    convert.add_argument("--chunk-values", type=_positive, default=Layout.chunk_values,
                         help="node values per Zarr chunk")
    convert.add_argument("--codec", choices=CODECS, default=Layout.codec,
                         help="zstd: smallest (default); lz4: fastest, ~15%% larger")
    convert.add_argument("--compression-level", type=int, default=Layout.compression_level,
                         help="codec level: higher is smaller and slower")
    convert.add_argument("--read-step", type=_positive, default=ConvertRequest.read_step,
                         help="input entries read at once")
    convert.add_argument("--scheduler", help="address of an existing Dask scheduler (default: a LocalCluster)")
    convert.add_argument("--workers", type=_positive, help="LocalCluster worker processes (default: cores)")
    convert.add_argument("--storage-options", type=_storage_options, default={}, metavar="JSON|@FILE",
                         help=STORAGE_OPTIONS_HELP)
    convert.add_argument("--input-storage-options", type=_storage_options, default={}, metavar="JSON|@FILE",
                         help="as --storage-options, for remote inputs")
    replace = convert.add_mutually_exclusive_group()
    replace.add_argument("--overwrite", action="store_true", help="delete any existing dataset first")
    replace.add_argument("--append", action="store_true",
                         help="add the inputs to the existing dataset at --output (same schema and options); inputs "
                              "it already holds are skipped")
    convert.add_argument("--skip-bad-inputs", action="store_true",
                         help="commit the dataset without inputs that failed (still exits non-zero)")
    convert.add_argument("--break-lease", action="store_true",
                         help="take over the dataset's write lease from a conversion that crashed")
    convert.add_argument("--no-progress", action="store_true", help="no progress bar (also with -q)")
    convert.set_defaults(handler=cmd_convert)

    inspect = command("inspect", help="summarise one or several datasets")
    inspect.add_argument("urls", nargs="+", metavar="DATASET", help=DATASETS_HELP)
    inspect.add_argument("--storage-options", type=_storage_options, default={}, metavar="JSON|@FILE",
                        help=STORAGE_OPTIONS_HELP)
    inspect.add_argument("--json", action="store_true", help="print the summary as JSON")
    inspect.set_defaults(handler=cmd_inspect)

    verify = command("verify", help="check every shard against the manifest's checksums")
    verify.add_argument("urls", nargs="+", metavar="DATASET", help=DATASETS_HELP)
    verify.add_argument("--storage-options", type=_storage_options, default={}, metavar="JSON|@FILE",
                        help=STORAGE_OPTIONS_HELP)
    verify.set_defaults(handler=cmd_verify)

    schema = command("schema", help="work with schemas")
    schema_commands = schema.add_subparsers(dest="schema_command", required=True)
    infer = schema_commands.add_parser("infer", parents=[common],
                                       help="write a schema for unseen ROOT, Parquet or HDF5 files (all must agree)")
    infer.add_argument("files", nargs="+", metavar="FILE")
    infer.add_argument("--tree", help="ROOT: tree name (default: the only TTree in the file, else Events)")
    infer.add_argument("--name", help="schema name (default: from the file names)")
    infer.add_argument("--output", "-o", help="write the YAML here (default: stdout)")
    infer.set_defaults(handler=cmd_schema_infer)
    check = schema_commands.add_parser("check", parents=[common], help="validate a schema file")
    check.add_argument("schema")
    check.set_defaults(handler=cmd_schema_check)

    stats = command("stats", help="compute standardisation and sampling weights for a config (over the union of "
                                  "several datasets: as weaver over all their files)")
    stats.add_argument("urls", nargs="+", metavar="DATASET", help=DATASETS_HELP)
    stats.add_argument("--config", required=True, help="weaver-core data-config YAML")
    stats.add_argument("--fraction", type=float,
                       help="use this fraction of the jets (default: preprocess.data_fraction for "
                            "standardisation and all jets for weights, as weaver-core)")
    stats.add_argument("--fraction-mode", choices=("weaver", "random"), default="weaver",
                       help="weaver: the first part of every input file, exactly as weaver-core; random: a fixed "
                            "pseudo-random subset of every shard")
    stats.add_argument("--scheduler", help="address of an existing Dask scheduler (default: a LocalCluster)")
    stats.add_argument("--workers", type=_positive, help="LocalCluster worker processes (default: cores)")
    stats.add_argument("--storage-options", type=_storage_options, default={}, metavar="JSON|@FILE",
                        help=STORAGE_OPTIONS_HELP)
    stats.add_argument("--plots", metavar="DIR", help="write plots here (PNG and PDF; needs jetstore[plots])")
    stats.add_argument("--experiment-label", metavar="TEXT",
                       help='label every plot, e.g. "CMS Simulation" (first word bold)')
    stats.set_defaults(handler=cmd_stats)

    export = command("export-weaver", help="write a weaver data-config with the stored stats")
    export.add_argument("urls", nargs="+", metavar="DATASET", help=DATASETS_HELP)
    export.add_argument("--config", required=True)
    export.add_argument("--output", "-o", required=True)
    export.add_argument("--storage-options", type=_storage_options, default={}, metavar="JSON|@FILE",
                        help=STORAGE_OPTIONS_HELP)
    export.add_argument("--files", metavar="DIR", help="also write the jets as weaver-ready Parquet files here "
                        "(DIR/train, DIR/val: the held-out split; rows shuffled) and print the weaver command")
    export.add_argument("--holdout", type=_fraction, help="held-out fraction for DIR/val (default: the trainer's, 0.1)")
    export.add_argument("--network-config", metavar="FILE", help="network file named in the printed command")
    export.set_defaults(handler=cmd_export_weaver)

    subparsers.add_parser("train", help="train a network (the built-in ParT or a weaver network file), predict "
                                        "with it, export it (see jetstore train --help)", add_help=False)
    k8s = subparsers.add_parser("k8s", help="the Kubernetes Jobs of a training run, from the trainer's options: "
                                            "jetstore k8s train|predict ... > job.yaml (see jetstore k8s --help)",
                                add_help=False)
    k8s.add_argument("arguments", nargs=argparse.REMAINDER)  # parsed by jetstore.train.k8s

    cache = command("cache", help="list or clear a node-local shard cache (the sampler's cache_dir)")
    cache_commands = cache.add_subparsers(dest="cache_command", required=True)
    listing = cache_commands.add_parser("ls", parents=[common], help="what the cache holds, per dataset")
    listing.add_argument("directory", metavar="DIR", help="the cache directory (cache_dir, --cache-dir)")
    listing.add_argument("--json", action="store_true", help="print every entry as JSON")
    listing.set_defaults(handler=cmd_cache_ls)
    clear = cache_commands.add_parser("clear", parents=[common], help="delete what the cache holds")
    clear.add_argument("directory", metavar="DIR", help="the cache directory")
    clear.add_argument("--dataset", metavar="URL", help="only the entries of this dataset")
    clear.set_defaults(handler=cmd_cache_clear)

    demo = command("demo", help="convert the bundled sample on a local Dask cluster")
    demo.add_argument("--output", default="demo-output", help="folder for the demo datasets")
    demo.add_argument("--workers", type=_positive, default=2)
    demo.set_defaults(handler=cmd_demo)
    return parser


class _HelpWithDefaults(argparse.HelpFormatter):
    """Help that shows each option's default, where it has a meaningful one the text does not state."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, {}, [], argparse.SUPPRESS) or "default" in text or not action.option_strings:
            return action.help
        return f"{text} (default: %(default)s)".lstrip()


def _add_verbosity(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=default,
                        help="more log output (-vv: debug); tracebacks with errors")
    parser.add_argument("-q", "--quiet", action="count", default=default, help="errors only, no progress bars")


def cmd_convert(args: argparse.Namespace) -> int:
    from jetstore.conversion import convert

    report = convert(
        args.inputs, args.schema, args.output, format=args.format, jets_per_shard=args.jets_per_shard,
        layout=Layout(args.chunk_jets, args.chunk_values, args.compression_level, args.codec), read_step=args.read_step,
        storage_options=args.storage_options, input_storage_options=args.input_storage_options,
        overwrite=args.overwrite, append=args.append, skip_bad_inputs=args.skip_bad_inputs,
        break_lease=args.break_lease, scheduler=args.scheduler, workers=args.workers,
        progress=not (args.no_progress or args.quiet), quiet=bool(args.quiet),
    )
    print(f"shards: {report.written} written, {report.reused} reused (verified)", file=sys.stderr)
    if report.manifest is not None:
        print_summary(args.output, report.manifest)
    if report.failures:
        print(f"\n{len(report.failures)} input(s) failed:", file=sys.stderr)
        for url, reason in report.failures.items():
            print(f"  {url}: {reason}", file=sys.stderr)
        if report.manifest is None:
            print("no manifest written: fix or remove these inputs and rerun (completed shards are kept), "
                  "or pass --skip-bad-inputs", file=sys.stderr)
        return 1
    return 0


def _open(args: argparse.Namespace):
    """The datasets named on the command line, as one collection."""
    from jetstore.store.collection import Collection

    return Collection.open(args.urls, args.storage_options)


def cmd_inspect(args: argparse.Namespace) -> int:
    collection = _open(args)
    if args.json:
        summaries = [dict(sample=member.name, **_summary(member.url, member.dataset.manifest)) for member in collection]
        print(json.dumps(summaries[0] if collection.single else {
            "datasets": summaries, "jets": collection.n_jets, "bytes": collection.bytes,
            "samples": list(collection.samples)}, indent=1))
        return 0
    for member in collection:
        print_summary(member.url, member.dataset.manifest, None if collection.single else member.name)
    if not collection.single:
        print(f"union    {collection.n_jets:,} jets in {len(collection)} datasets, samples "
              f"{', '.join(collection.samples)}")
    return 0


def _summary(url: str, manifest) -> dict:
    return {"url": url, "format": manifest.format, "jets": manifest.n_jets, "shards": len(manifest.shards),
            "bytes": manifest.bytes, "class_counts": manifest.class_counts, "node_counts": manifest.node_counts,
            "inputs": len(manifest.inputs), "version": manifest.version, "plan_hash": manifest.plan_hash,
            "schema_hash": manifest.schema_hash}


def cmd_stats(args: argparse.Namespace) -> int:
    from jetstore.config import load_training_config
    from jetstore.conversion.cluster import dask_client
    from jetstore.stats.result import write_stats
    from jetstore.stats.run import compute_stats

    if args.plots:  # a missing plots extra or a file in the way is reported before the cluster starts
        from jetstore.stats.plots import write_plots

        output_folder(args.plots, "--plots")
    config = load_training_config(args.config)
    collection = _open(args)
    with dask_client(args.scheduler, args.workers, quiet=bool(args.quiet)) as client:
        result = compute_stats(collection, config, client, args.fraction, args.fraction_mode,
                               progress=not args.quiet)
    path = write_stats(collection, result)
    print(f"stats for config {config.hash} → {path}")
    print(f"  jets read {result.jets_read:,}, selected {result.jets_selected:,} (standardisation fraction "
          f"{result.standardization_fraction})")
    for name, v in result.variables.items():
        print(f"  {name:<28} center {v.center:>11.5g}  scale {v.scale:>11.5g}  entries {v.count:,}"
              + (f"  NaN {v.nan_count:,}" if v.nan_count else ""))
    for label, hist in result.class_hists.items():
        kept = float((hist * result.weight_tables[label]).sum())
        print(f"  {label:<12} {hist.sum():>10,.0f} jets in bins, weighted {kept:>10,.1f}")
    if args.plots:
        written = write_plots(result, config, args.plots, args.experiment_label)
        print(f"  {len(written)} plot(s) in {args.plots}")
    return 0


def cmd_export_weaver(args: argparse.Namespace) -> int:
    from jetstore.config import load_training_config
    from jetstore.stats.export import export_weaver_yaml, weaver_command, weaver_hint, write_weaver_files
    from jetstore.stats.result import read_stats

    output_file(args.output, "--output")
    if args.files:
        output_folder(args.files, "--files")
    config = load_training_config(args.config)
    collection = _open(args)
    result = read_stats(collection, config.hash)
    if not args.files:
        Path(args.output).write_text(export_weaver_yaml(config, result))
        print(f"wrote {args.output}\n" + "\n".join(weaver_hint(m.url) for m in collection), file=sys.stderr)
        return 0
    print(f"writing weaver-ready Parquet files to {args.files}", file=sys.stderr)
    folders = {}  # weaver's named groups: a folder per sample (datasets of one sample share it)
    for member in collection:
        target = Path(args.files) if collection.single else Path(args.files) / member.name
        folders[None if collection.single else member.name] = write_weaver_files(member.dataset, target,
                                                                                 args.holdout)
    command = weaver_command(args.output, folders, weights=config.weights is not None, network=args.network_config)
    Path(args.output).write_text(export_weaver_yaml(config, result, f"weaver-core: {command}"))
    print(f"wrote {args.output}; train weaver-core on the files with (stdout):", file=sys.stderr)
    print(command)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    collection = _open(args)
    bad = total = 0
    for member in collection:
        dataset = member.dataset
        for shard in dataset.manifest.shards:
            problems = dataset.verify(shard)
            for problem in problems:
                print(f"{member.url}: shard {shard.path}: {problem}", file=sys.stderr)
            bad += bool(problems)
            total += 1
    print(f"{total - bad} of {total} shard(s) verified")
    return 1 if bad else 0


def _cache_store(directory: str):
    from jetstore.cache import CacheStore  # the CLI loads it only for these commands

    store = CacheStore(directory)
    if not store.exists:
        raise StorageError(f"{directory}: no jetstore cache there")
    return store


def cmd_cache_ls(args: argparse.Namespace) -> int:
    entries = _cache_store(args.directory).entries()
    if args.json:
        print(json.dumps([{"entry": e.name, **(e.key.to_dict() if e.key else {}), "bytes": e.held,
                           "verified": e.verified, "last_used": e.last_used} for e in entries], indent=1))
        return 0
    groups: dict[str, list] = {}
    for entry in entries:
        groups.setdefault(f"{entry.key.dataset} ({entry.key.endpoint})" if entry.key else "(unreadable)",
                          []).append(entry)
    for name, items in sorted(groups.items()):
        held = sum(e.held for e in items)
        print(f"{name}: {len(items)} shard(s), {held:,} bytes, {sum(e.verified for e in items)} complete and "
              f"verified")
    print(f"total: {sum(e.held for e in entries):,} bytes, {len(entries)} shard(s)")
    return 0


def cmd_cache_clear(args: argparse.Namespace) -> int:
    from jetstore.cache import ObjectKey

    dataset = ObjectKey.dataset_of(args.dataset) if args.dataset else None
    gone = _cache_store(args.directory).clear(dataset)
    print(f"deleted {len(gone)} shard(s), {sum(e.held for e in gone):,} bytes")
    return 0


def cmd_schema_infer(args: argparse.Namespace) -> int:
    from jetstore.conversion.infer import infer_schema
    from jetstore.schema.load import schema_from_dict

    if args.output:
        output_file(args.output, "--output")
    data, skipped = infer_schema(args.files, args.tree, args.name)
    schema_from_dict(data, where=args.files[0])
    names = ", ".join(Path(f).name for f in args.files[:3]) + (f" and {len(args.files) - 3} more"
                                                                 if len(args.files) > 3 else "")
    text = f"# inferred by `jetstore schema infer` from {names}\n"
    if skipped:
        text += f"# left out (not numbers or vectors of numbers): {', '.join(skipped)}\n"
    text += yaml.safe_dump(data, sort_keys=False)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_schema_check(args: argparse.Namespace) -> int:
    from jetstore.conversion.inputs import get_kind

    schema = load_schema(args.schema)
    if schema.source is not None:
        get_kind(schema.source)
    features = sum(len(b.features) for b in schema.blocks)
    print(f"{args.schema}: ok ({len(schema.jets)} jet columns, {len(schema.labels)} labels, "
          f"{len(schema.blocks)} blocks with {features} features, hash {schema.hash})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The embedded default: the bundled sample → Zarr and Parquet datasets on a local Dask cluster."""
    data = resources.files("jetstore") / "data"
    inputs = sorted(str(p) for p in Path(str(data)).glob("sample_cms_ak4_*.root"))
    status = 0
    for fmt in ("zarr", "parquet"):
        output = str(Path(args.output) / f"sample_cms_ak4.{fmt}")
        status |= main(["convert", *inputs, "--schema", "cms_ak4", "--output", output, "--format", fmt,
                        "--jets-per-shard", "1000", "--workers", str(args.workers)])
    return status


def print_summary(url: str, manifest, sample: str | None = None) -> None:
    print(f"dataset {url}" + (f" (sample {sample})" if sample else ""))
    print(f"  format   {manifest.format} (manifest v{manifest.format_version}, schema {manifest.schema['name']} "
          f"{manifest.schema_hash})")
    kinds = ", ".join(sorted({i.kind for i in manifest.inputs}))
    print(f"  jets     {manifest.n_jets:,} in {len(manifest.shards)} shard(s) from {len(manifest.inputs)} input(s)"
          + (f" ({kinds})" if kinds else "") + (f"; version {manifest.version}" if manifest.version > 1 else ""))
    print(f"  bytes    {manifest.bytes:,} ({manifest.bytes / max(manifest.n_jets, 1):.0f} per jet)")
    counts = manifest.class_counts
    total = max(sum(counts.values()), 1)
    print("  classes  " + ", ".join(f"{k} {v:,} ({100 * v / total:.1f}%)" for k, v in counts.items()))
    nodes = manifest.node_counts
    if nodes:
        print("  nodes    " + ", ".join(f"{k} {v:,} ({v / max(manifest.n_jets, 1):.1f} per jet)"
                                      for k, v in nodes.items()))
    if manifest.skipped_inputs:
        print(f"  skipped  {len(manifest.skipped_inputs)} bad input(s): {', '.join(manifest.skipped_inputs)}")


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1), not {value:g}")
    return value


def output_file(path: str, option: str) -> None:
    """A file the command will write, checked before any work: not a folder, FIFO or device (writing to a FIFO
    blocks), and in a folder that exists."""
    target = Path(path)
    if target.is_dir() or (target.exists() and not target.is_file()):
        kind = "a folder" if target.is_dir() else "not a regular file"
        raise JetstoreError(f"{option} {path}: is {kind}; give the name of a file to write")
    if not target.absolute().parent.is_dir():
        raise JetstoreError(f"{option} {path}: there is no folder {target.absolute().parent}")


def output_folder(path: str, option: str) -> None:
    """A folder the command will write into (made if absent), checked before any work: not a file."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise JetstoreError(f"{option} {path}: is a file; give a folder")


class _Inline(dict):
    """Storage options given as JSON on the command line (their secrets show in the process list)."""


def _storage_options(text: str) -> dict:
    """``--storage-options``: a JSON object, or ``@FILE`` holding one (a regular file: no FIFO, at most 1 MiB);
    checked for the types fsspec expects."""
    try:
        value = load_json(read_regular(text[1:], MAX_OPTIONS_BYTES) if text.startswith("@") else text)
        problem = storage.options_problem(value)
    except DocumentError as exc:
        raise argparse.ArgumentTypeError(f"{text[1:]} {exc}" if text.startswith("@") else str(exc)) from None
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text[1:]}: {exc.strerror}") from None
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return value if text.startswith("@") else _Inline(value)


__all__ = ["SchemaError", "main"]
