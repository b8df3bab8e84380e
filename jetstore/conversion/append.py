"""Appending inputs to an existing dataset (``jetstore convert NEW ... --output EXISTING --append``).

The dataset's schema, format, layout and shard size stay as they are (a request that differs is refused, naming
the option); an input the dataset already holds (the same URL, or the same content elsewhere: kind, size and
content identity) is skipped, saying so, and one at a known URL whose content changed is a failure. The new
shards are committed as in any conversion, under the write lease; the old ones are not touched. The new
manifest lists old and new, one ``version`` more (every version is kept as ``_manifests/<version>.json``), and
its ``plan_hash`` is that of a one-shot conversion of all the inputs, so stats of the smaller dataset are
stale (``jetstore stats`` says to rerun) and a rerun after an interruption reuses what was committed."""

from __future__ import annotations

from collections.abc import Callable

from jetstore.conversion.read import InputInfo
from jetstore.conversion.request import ConvertRequest
from jetstore.dataset.manifest import InputEntry, Manifest, ShardEntry
from jetstore.errors import DatasetError
from jetstore.io.locations import public_url


def check_appendable(request: ConvertRequest, manifest: Manifest | None) -> Manifest:
    """The manifest to append to; none, or one of another schema, format, layout or shard size, is a
    :class:`DatasetError` naming what differs."""
    where = request.output
    if manifest is None:
        raise DatasetError(f"{where}: no dataset to append to; convert without --append first")
    if manifest.schema_hash != request.schema.hash:
        raise DatasetError(f"{where}: the dataset was converted with schema '{manifest.schema.get('name')}' "
                           f"({manifest.schema_hash}); --append needs the same schema, not '{request.schema.name}' "
                           f"({request.schema.hash})")
    ours = {"format": request.format, "jets-per-shard": request.jets_per_shard,
            **{key.replace("_", "-"): value for key, value in request.layout.to_dict().items()}}
    theirs = {"format": manifest.format, "jets-per-shard": manifest.jets_per_shard,
              **{key.replace("_", "-"): value for key, value in manifest.layout.to_dict().items()}}
    for option, value in theirs.items():
        if ours[option] != value:
            raise DatasetError(f"{where}: the dataset has --{option} {value}; --append needs the same "
                               f"(this run asks for {ours[option]})")
    return manifest


def new_inputs(infos: list[InputInfo], manifest: Manifest, failures: dict[str, str],
               log: Callable[[str], None]) -> list[InputInfo]:
    """The inputs the dataset does not hold yet; the others are logged as skipped (same content) or become
    failures (a URL of the dataset whose content changed)."""
    by_url = {entry.url: entry for entry in manifest.inputs}
    fresh = []
    for info in infos:
        entry = entry_of(info)  # its URL as stored: without credentials
        same = next((held for held in manifest.inputs if held.same_content(entry)), None)
        if same is not None:
            elsewhere = "" if same.url == info.url else f" as {same.url} (the same content)"
            log(f"{info.url}: already in the dataset{elsewhere}; skipped")
        elif entry.url in by_url:
            failures[info.url] = ("already in the dataset with other content (size or identity changed); convert "
                                  "everything again with --overwrite to replace it")
        else:
            fresh.append(info)
    return fresh


def merged(manifest: Manifest, inputs: tuple[InputEntry, ...], shards: tuple[ShardEntry, ...],
           failures: dict[str, str]) -> tuple[tuple[InputEntry, ...], tuple[ShardEntry, ...], dict[str, str]]:
    """The inputs, shards and skipped inputs of the next version: the dataset's, then the new ones (an input
    skipped before and added now leaves ``skipped_inputs``)."""
    added = {entry.url for entry in inputs}
    skipped = {url: reason for url, reason in manifest.skipped_inputs.items() if url not in added}
    return manifest.inputs + inputs, manifest.shards + shards, {**skipped, **failures}


def entry_of(info: InputInfo) -> InputEntry:
    """The manifest's record of a validated input."""
    return InputEntry(public_url(info.url), info.entries, info.size, info.kind, info.identity)
