"""The dataset manifest: the single, atomically written object that makes a folder a dataset.

It is validated on every read against ``manifest.schema.json`` (errors name the key) and carries its own
checksum, so a damaged or hand-edited manifest is refused rather than trusted.
"""

from __future__ import annotations

import builtins
import dataclasses
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import jsonschema
import xxhash

from jetstore.dataset.fastcheck import Check, compile_schema
from jetstore.documents import MAX_JSON_BYTES, DocumentError, load_json
from jetstore.errors import DatasetError, LeaseError, StorageError
from jetstore.io.backend import Backend
from jetstore.io.filesystems import read_object
from jetstore.model import paths
from jetstore.model.layout import Layout, TableColumns

FORMAT_VERSION = 3  # 3: input kinds and content identities, manifest versions (appends); 2 is read too
SHARD_VERSION = 4  # what a shard's bytes follow (in every task key): 3 packs small inputs (the _input column), 4
# stores each jet's node starts in Zarr shards
MAX_MESSAGE = 200
MAX_MANIFEST_BYTES = MAX_JSON_BYTES  # ~800,000 shards (a 200,000-shard manifest is 135 MB, read in ~10 s)


@dataclass(frozen=True)
class InputEntry:
    """One converted input file: its kind (root, parquet, hdf5) and what identifies its content wherever it lies
    (the size, and a ROOT file's UUID, a hash of a Parquet file's footer or of an HDF5 file's bytes)."""

    url: str
    entries: int
    size: int
    kind: str
    identity: str

    def same_content(self, other: InputEntry) -> bool:
        return (self.kind, self.identity, self.size) == (other.kind, other.identity, other.size)


@dataclass(frozen=True)
class Piece:
    """Entries ``[entry_start, entry_stop)`` of one input file, converted into a shard."""

    source: str
    entry_start: int
    entry_stop: int

    @property
    def entries(self) -> int:
        return self.entry_stop - self.entry_start


@dataclass(frozen=True)
class ShardEntry:
    """One committed shard: where it is, what it holds (jets of one or several input pieces: small inputs are
    packed together; a jet's ``_input`` column is its piece), and checksums of its files."""

    name: str
    path: str
    n_jets: int
    class_counts: dict[str, int]
    node_counts: dict[str, int]
    bytes: int
    checksum: str
    files: dict[str, tuple[int, str]]
    pieces: tuple[Piece, ...]
    task_key: str

    @property
    def sources(self) -> tuple[str, ...]:
        """The input files of the shard's pieces, by piece."""
        return tuple(piece.source for piece in self.pieces)

    @property
    def entries(self) -> int:
        return sum(piece.entries for piece in self.pieces)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["files"] = {k: list(v) for k, v in self.files.items()}
        out["pieces"] = [dataclasses.asdict(p) for p in self.pieces]
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str, jets_per_entry: int = 1, checked: bool = False) -> ShardEntry:
        """A validated shard record (as in the manifest and the ``_commits/`` records; format 2's one
        ``source``/``entry_start``/``entry_stop`` is one piece); a shard holds at most ``jets_per_entry`` jets per
        input entry (1 for per-jet trees). ``checked``: ``data`` was validated already (with its manifest)."""
        if not checked:
            validate(data, where, "#/$defs/shard")
        entry = dict(data)
        entry["files"] = {k: (int(v[0]), str(v[1])) for k, v in data["files"].items()}
        if "pieces" in entry:
            entry["pieces"] = tuple(Piece(**p) for p in entry["pieces"])
        else:
            entry["pieces"] = (Piece(entry.pop("source"), entry.pop("entry_start"), entry.pop("entry_stop")),)
        shard = cls(**entry)
        for index, piece in enumerate(shard.pieces):
            if piece.entry_stop < piece.entry_start:
                raise DatasetError(f"{where}: pieces[{index}]: entry_stop {piece.entry_stop} is before entry_start "
                                   f"{piece.entry_start}")
        if shard.n_jets > jets_per_entry * shard.entries:
            raise DatasetError(f"{where}: n_jets {shard.n_jets} is more than the shard's {shard.entries} input "
                               "entries allow")
        if sum(shard.class_counts.values()) > shard.n_jets:
            raise DatasetError(f"{where}: class_counts add up to more than n_jets ({shard.n_jets})")
        return shard


MAX_JETS_PER_EVENT = 1000  # bounds a tampered n_jets of per-event (NanoAOD) datasets before anything is allocated


@dataclass(frozen=True)
class Manifest:
    """Format, schema and hash, layout and stored columns, inputs, shards; ``version``: 1 for a conversion, one
    more for every append (each version is also kept as ``_manifests/<version>.json``)."""

    format: str
    schema: dict[str, Any]
    schema_hash: str
    plan_hash: str
    layout: Layout
    columns: TableColumns
    jets_per_shard: int
    inputs: tuple[InputEntry, ...]
    shards: tuple[ShardEntry, ...]
    skipped_inputs: dict[str, str] = field(default_factory=dict)
    created: str = ""
    jetstore_version: str = ""
    format_version: int = FORMAT_VERSION  # as read (written: always the current one)
    version: int = 1
    generation: int = 0  # of the write lease it was committed under (dataset/lease.py)

    @property
    def n_jets(self) -> int:
        return sum(s.n_jets for s in self.shards)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.shards)

    @property
    def class_counts(self) -> dict[str, int]:
        return _sum_counts(s.class_counts for s in self.shards)

    @property
    def node_counts(self) -> dict[str, int]:
        return _sum_counts(s.node_counts for s in self.shards)

    @property
    def unit_jets(self) -> int:
        """Jets per unit (one Zarr jet chunk / Parquet row group): the finest read."""
        return self.layout.chunk_jets

    def to_json(self) -> str:
        data = self._plain()
        data["checksum"] = _checksum(data)
        return json.dumps(data, indent=1)

    def _plain(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION, "version": self.version, "format": self.format, "schema": self.schema,
            "schema_hash": self.schema_hash, "plan_hash": self.plan_hash, "layout": self.layout.to_dict(),
            "columns": self.columns.to_dict(), "jets_per_shard": self.jets_per_shard,
            "inputs": [dataclasses.asdict(i) for i in self.inputs], "shards": [s.to_dict() for s in self.shards],
            "skipped_inputs": self.skipped_inputs, "created": self.created, "jetstore_version": self.jetstore_version,
            "generation": self.generation,
            "totals": {"jets": self.n_jets, "bytes": self.bytes, "class_counts": self.class_counts,
                       "node_counts": self.node_counts},
        }

    @classmethod
    def from_json(cls, text: str | builtins.bytes, where: str = paths.MANIFEST) -> Manifest:
        try:
            data = load_json(text)
        except DocumentError as exc:
            raise DatasetError(f"{where}: {exc}") from None
        del text
        if isinstance(data, dict) and isinstance(data.get("format_version"), int) and \
                data["format_version"] > FORMAT_VERSION:
            raise DatasetError(f"{where}: format_version {data['format_version']} is newer than this jetstore "
                               f"supports ({FORMAT_VERSION}); upgrade jetstore")
        if isinstance(data, dict) and data.get("format_version") == 1:
            raise DatasetError(f"{where}: written by jetstore 0.1 (format_version 1); convert the inputs again")
        validate(data, where)
        if _checksum({k: v for k, v in data.items() if k != "checksum"}) != data["checksum"]:
            raise DatasetError(f"{where}: checksum mismatch: the manifest was edited or damaged")
        if data["format_version"] == 2:  # ROOT inputs only, one version
            data = {**data, "version": 1, "inputs": [{"url": i["url"], "entries": i["entries"], "size": i["size"],
                                                      "kind": "root", "identity": i["uuid"]} for i in data["inputs"]]}
        manifest = cls(
            format=data["format"], schema=data["schema"], schema_hash=data["schema_hash"],
            plan_hash=data["plan_hash"], layout=Layout.from_dict(data["layout"]),
            columns=TableColumns.from_dict(data["columns"]), jets_per_shard=data["jets_per_shard"],
            inputs=tuple(InputEntry(**i) for i in data["inputs"]),
            shards=_shard_entries(data["shards"], where, jets_per_entry(data["schema"])),
            skipped_inputs=data["skipped_inputs"], created=data["created"],
            jetstore_version=data["jetstore_version"], format_version=data["format_version"], version=data["version"],
            generation=data.get("generation", 0),
        )
        if len({s.name for s in manifest.shards}) != len(manifest.shards):
            raise DatasetError(f"{where}: shard names are not unique")
        return manifest


def _shard_entries(records: list[Any], where: str, per_entry: int) -> tuple[ShardEntry, ...]:
    """The validated shard records as entries, each record dropped once built (a manifest of 200,000 shards
    never holds both forms at once)."""
    entries = []
    for index, record in enumerate(records):
        entries.append(ShardEntry.from_dict(record, f"{where}: shards[{index}]", per_entry, checked=True))
        records[index] = None
    return tuple(entries)


def jets_per_entry(schema: dict[str, Any]) -> int:
    """At most this many jets per input entry: 1 for per-jet trees, a generous bound for per-event ones."""
    return MAX_JETS_PER_EVENT if schema.get("collection") else 1


def read_manifest(fs, root: str) -> Manifest:
    """Read the manifest at a dataset root; a missing one means "not a dataset"."""
    path = paths.join(root, paths.MANIFEST)
    try:
        return Manifest.from_json(read_object(fs, path, MAX_MANIFEST_BYTES), where=path)
    except FileNotFoundError:
        raise DatasetError(f"{root}: no {paths.MANIFEST}; not a jetstore dataset (or its conversion has not "
                           "finished)") from None
    except DocumentError as exc:
        raise DatasetError(f"{path}: {exc}") from None


def install_manifest(backend: Backend, text: bytes, generation: int, url: str, key: str = paths.MANIFEST) -> bool:
    """Install the manifest ``text`` of lease ``generation`` as ``_manifest.json`` (or, ``key``, as a version in
    the history) by a conditional write that never replaces the manifest of the same or a newer generation:
    True when this call wrote it, False when it was there already (installed by a run completing this one's
    commit); a :class:`LeaseError` when a newer generation's manifest is there."""
    installed = install_newer(backend, key, text, generation, manifest_generation, url)
    if installed is None:
        raise LeaseError(f"{url}: another conversion committed a newer dataset here meanwhile; this one's "
                         "manifest is not installed")
    return installed


def install_newer(backend: Backend, key: str, text: bytes, generation: int, generation_of: Callable[[bytes], int],
                  url: str) -> bool | None:
    """Write ``text`` (of lease ``generation``) at ``key`` by a conditional write that never replaces an object of
    the same or a newer generation (``generation_of`` reads it): True when written, False when ``text`` was there
    already, None when a newer generation's object is there."""
    for _ in range(8):
        current = backend.read_versioned(key)
        if current is not None and current.data == text:
            return False
        if current is not None and generation_of(current.data) >= generation:
            return None
        if current is None:
            written = backend.put_if_absent(key, text)
        else:
            written = backend.put_if_match(key, text, current.token)
        if written is not None:
            return True
    raise StorageError(f"{url}: {key} keeps changing under this conversion")


def manifest_generation(text: bytes) -> int:
    """The lease generation a stored manifest was committed under (0: before generations, or unreadable)."""
    try:
        value = load_json(text).get("generation", 0)
    except (ValueError, AttributeError):
        return 0
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def version_key(version: int) -> str:
    """Where every version of a manifest is kept (``_manifests/<version>.json``: written when its commit is
    sealed, before ``_manifest.json``, so every version a reader ever saw stays readable)."""
    return f"{paths.MANIFESTS}/{version}.json"


def read_manifest_version(fs, root: str, version: int) -> Manifest:
    """An earlier (or the current) version of a dataset's manifest."""
    path = paths.manifest_version_path(root, version)
    try:
        return Manifest.from_json(read_object(fs, path, MAX_MANIFEST_BYTES), where=path)
    except FileNotFoundError:
        raise DatasetError(f"{root}: no manifest version {version} ({path})") from None
    except DocumentError as exc:
        raise DatasetError(f"{path}: {exc}") from None


def validate(data: Any, where: str, definition: str = "#") -> None:
    """Check ``data`` against the manifest JSON Schema (or one of its ``$defs``); errors name the key."""
    if _predicate(definition)(data):
        return
    error = jsonschema.exceptions.best_match(_validator(definition).iter_errors(data))  # names the key
    if error is not None:
        key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
        message = error.message if len(error.message) <= MAX_MESSAGE else error.message[:MAX_MESSAGE] + "…"
        raise DatasetError(f"{where}: {key or 'top level'}: {message}")


@functools.cache
def _validator(definition: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(_target(definition))


@functools.cache
def _predicate(definition: str) -> Check:
    return compile_schema(_target(definition))


def _target(definition: str) -> dict[str, Any]:
    schema = _schema()
    return schema if definition == "#" else {"$ref": definition, "$defs": schema["$defs"]}


@functools.cache
def _schema() -> dict[str, Any]:
    return json.loads(resources.files("jetstore.dataset").joinpath("manifest.schema.json").read_text())


def _checksum(data: dict[str, Any]) -> str:
    return xxhash.xxh3_64_hexdigest(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())


def _sum_counts(parts) -> dict[str, int]:
    totals: dict[str, int] = {}
    for counts in parts:
        for key, count in counts.items():
            totals[key] = totals.get(key, 0) + count
    return totals
