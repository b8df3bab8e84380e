"""Several datasets read as one: weaver's named groups (``--data-train ttbar:/data/ttbar_* qcd:/data/qcd_*``).

Physicists keep one jet library per simulated sample and add samples over months. A :class:`Collection` opens
several datasets (local or on different S3 buckets), names each one (its *sample*) and gives every shard of
every member one global position, so statistics and the sampler treat the union as one dataset whose jets
know their sample. A single dataset is a collection of one, with the identity and stats location it always
had.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import xxhash

from jetstore.dataset.dataset import Dataset, RangeCache, ShardSource
from jetstore.dataset.manifest import ShardEntry
from jetstore.errors import DatasetError
from jetstore.formats import ShardReader

NAMED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_.+-]*):(?!//)(?P<url>.+)$")  # NAME:URL, not s3://...
SAMPLE_NAME = re.compile(r"^[A-Za-z0-9_.+-]{1,64}$")
DataSpec = str | Dataset | Sequence[str | Dataset] | Mapping[str, str | Dataset]


def parse_sample(text: str) -> tuple[str | None, str]:
    """``NAME:URL`` (weaver's group syntax) → (NAME, URL); a plain URL (``s3://…`` included) → (None, URL)."""
    match = NAMED.match(text)
    return (match["name"], match["url"]) if match else (None, text)


def default_name(url: str) -> str:
    """A sample's name when none is given: its folder's name without the suffix (``/data/hbb.zarr`` → ``hbb``)."""
    stem = PurePosixPath(url.rstrip("/").split("://", 1)[-1]).name.split(".")[0]
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", stem) or "sample"


@dataclass(frozen=True)
class Member:
    """One dataset of a collection, under its sample name."""

    name: str
    dataset: Dataset

    @property
    def url(self) -> str:
        return self.dataset.url


@dataclass(frozen=True)
class Collection:
    """Datasets read as one; shards are numbered member after member, in manifest order."""

    members: tuple[Member, ...]

    @classmethod
    def open(cls, data: DataSpec | Collection, storage_options: Mapping[str, Any] | None = None) -> Collection:
        """Open several datasets as one.

        Parameters
        ----------
        data
            A dataset URL, ``NAME:URL``, a list of them, a mapping sample name → URL, opened
            :class:`~jetstore.dataset.dataset.Dataset` objects, or a collection (returned as it is). A dataset
            given without a name is named after its folder (``/data/hbb.zarr`` → ``hbb``); datasets given the
            same name are one sample.
        storage_options
            fsspec storage options for the URLs (default: the ``AWS_*`` environment variables).

        Returns
        -------
        Collection
            The members in the order given, their shards numbered member after member.

        Raises
        ------
        DatasetError
            No dataset given, a sample name that is not 1-64 letters, digits or ``_.+-``, the same dataset listed
            twice, or a dataset that cannot be opened (see :meth:`Dataset.open`).
        """
        if isinstance(data, Collection):
            return data
        if isinstance(data, str | Dataset):
            data = [data]
        items = list(data.items()) if isinstance(data, Mapping) else [_named(item) for item in data]
        if not items:
            raise DatasetError("no dataset given")
        members: list[Member] = []
        seen: dict[str, str] = {}  # plan hash → URL
        taken = {name for name, _ in items if name}
        for name, item in items:
            dataset = item if isinstance(item, Dataset) else Dataset.open(item, storage_options)
            name = name or _free_name(default_name(dataset.url), taken)
            if not SAMPLE_NAME.match(name):
                raise DatasetError(f"{dataset.url}: sample name {name!r} must be 1-64 letters, digits or _.+-")
            if dataset.manifest.plan_hash in seen:
                raise DatasetError(f"{dataset.url}: the same dataset as {seen[dataset.manifest.plan_hash]} is "
                                   "listed twice")
            seen[dataset.manifest.plan_hash] = dataset.url
            members.append(Member(name, dataset))
        return cls(tuple(members))

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self) -> Iterator[Member]:
        return iter(self.members)

    @property
    def samples(self) -> tuple[str, ...]:
        """The sample names, in order of first appearance (datasets given the same name are one sample, as
        weaver merges the files of groups of the same name)."""
        return tuple(dict.fromkeys(m.name for m in self.members))

    def sample_of(self, member: int) -> int:
        """The sample index of a member."""
        return self.samples.index(self.members[member].name)

    @property
    def single(self) -> bool:
        return len(self.members) == 1

    @property
    def identity(self) -> str:
        """What the union's statistics depend on: the members' plan hashes, in any order (a single dataset:
        its own plan hash, so its stats stay where they always were)."""
        hashes = sorted(m.dataset.manifest.plan_hash for m in self.members)
        return hashes[0] if self.single else xxhash.xxh3_64_hexdigest("\n".join(hashes).encode())

    @property
    def url(self) -> str:
        """For messages: the member URLs."""
        return " + ".join(m.url for m in self.members)

    @property
    def n_jets(self) -> int:
        return sum(m.dataset.manifest.n_jets for m in self.members)

    @property
    def bytes(self) -> int:
        return sum(m.dataset.manifest.bytes for m in self.members)

    def shards(self) -> Iterator[tuple[int, ShardEntry]]:
        """(member index, shard) for every shard, in global order."""
        for index, member in enumerate(self.members):
            for shard in member.dataset.manifest.shards:
                yield index, shard

    def key_prefix(self, member: int) -> str:
        """What prefixes a member's shard names in the union's stats: nothing for a single dataset, else its
        dataset's identity (two datasets may hold shards of the same name)."""
        return "" if self.single else f"{self.members[member].dataset.manifest.plan_hash}/"

    def shard_key(self, member: int, shard: ShardEntry) -> str:
        return self.key_prefix(member) + shard.name


@dataclass(frozen=True)
class ShardCatalog:
    """Every shard of a collection by global position, with the reader of its dataset (small and picklable:
    what a DataLoader worker needs to read any shard)."""

    sources: tuple[ShardSource, ...]  # per member
    shards: tuple[ShardEntry, ...]
    member: np.ndarray               # per shard

    @classmethod
    def of(cls, collection: Collection, cache: RangeCache | None = None) -> ShardCatalog:
        """The collection's shards, read through ``cache`` when given."""
        pairs = list(collection.shards())
        return cls(tuple(dataclasses.replace(m.dataset.source, cache=cache) for m in collection),
                   tuple(s for _, s in pairs),
                   np.array([m for m, _ in pairs], np.int64))

    def reader(self, shard: int) -> ShardReader:
        return self.sources[int(self.member[shard])].reader(self.shards[shard])


def _named(item: str | Dataset) -> tuple[str | None, str | Dataset]:
    return parse_sample(item) if isinstance(item, str) else (None, item)


def _free_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``... when taken (and take it)."""
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name}_{number}"
    taken.add(candidate)
    return candidate
