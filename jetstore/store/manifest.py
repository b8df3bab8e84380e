"""The dataset manifest: the single, atomically written object that makes a folder a dataset."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from jetstore.errors import DatasetError
from jetstore.store import storage

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
COMMITS_DIR = "_commits"
SHARDS_DIR = "shards"


@dataclass(frozen=True)
class InputEntry:
    """One converted input file and its identity (size + ROOT file UUID)."""

    url: str
    entries: int
    size: int
    uuid: str


@dataclass(frozen=True)
class ShardEntry:
    """One committed shard: where it is, what it holds, and checksums of its files."""

    name: str
    path: str
    n_jets: int
    class_counts: dict[str, int]
    bytes: int
    checksum: str
    files: dict[str, tuple[int, str]]
    source: str
    entry_start: int
    entry_stop: int
    task_key: str

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["files"] = {k: list(v) for k, v in self.files.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShardEntry:
        data = dict(data)
        data["files"] = {k: (int(v[0]), str(v[1])) for k, v in data["files"].items()}
        return cls(**data)


@dataclass(frozen=True)
class Manifest:
    """Format version, schema and hash, inputs, shards; plus the options that shaped the shards."""

    format: str
    schema: dict[str, Any]
    schema_hash: str
    plan_hash: str
    inputs: tuple[InputEntry, ...]
    shards: tuple[ShardEntry, ...]
    options: dict[str, Any] = field(default_factory=dict)
    skipped_inputs: dict[str, str] = field(default_factory=dict)
    created: str = ""
    jetstore_version: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def n_jets(self) -> int:
        return sum(s.n_jets for s in self.shards)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.shards)

    @property
    def class_counts(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for shard in self.shards:
            for label, count in shard.class_counts.items():
                totals[label] = totals.get(label, 0) + count
        return totals

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["shards"] = [s.to_dict() for s in self.shards]
        data["totals"] = {"jets": self.n_jets, "bytes": self.bytes, "class_counts": self.class_counts}
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str, where: str = MANIFEST_NAME) -> Manifest:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: not valid JSON ({exc})") from None
        version = data.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise DatasetError(
                f"{where}: format_version {version!r} is newer than this jetstore supports "
                f"({FORMAT_VERSION}); upgrade jetstore"
            )
        data.pop("totals", None)
        try:
            data["inputs"] = tuple(InputEntry(**i) for i in data["inputs"])
            data["shards"] = tuple(ShardEntry.from_dict(s) for s in data["shards"])
            return cls(**data)
        except (KeyError, TypeError) as exc:
            raise DatasetError(f"{where}: malformed manifest ({exc})") from None


def read_manifest(fs, root: str) -> Manifest:
    """Read the manifest at a dataset root; a missing one means "not a dataset"."""
    path = storage.join(root, MANIFEST_NAME)
    try:
        text = fs.cat_file(path).decode()
    except FileNotFoundError:
        raise DatasetError(f"{root}: no {MANIFEST_NAME}; not a jetstore dataset (or conversion unfinished)") from None
    return Manifest.from_json(text, where=path)


def write_manifest(fs, root: str, manifest: Manifest) -> None:
    storage.write_bytes_atomic(fs, storage.join(root, MANIFEST_NAME), manifest.to_json().encode())
