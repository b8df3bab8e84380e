"""Writing a dataset: staging, publishing and committing shards, then the manifest.

A shard is built in a staging directory of its run, published (one atomic rename locally, one PUT on S3),
and only then committed by writing its record under ``_commits/``. A rerun reuses a shard only if its
record has the same task key and its files still have the recorded sizes and checksums. ``finish``
writes the manifest and removes what it does not reference, and only this run's staging. Every commit
and the manifest are written only while this run holds the dataset's write lease.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from fsspec.implementations.local import LocalFileSystem

from jetstore.errors import DatasetError
from jetstore.store import paths, storage
from jetstore.store.checksum import combined_checksum, file_checksum, files_intact
from jetstore.store.lease import Lease
from jetstore.store.manifest import Manifest, ShardEntry, read_manifest, write_manifest, write_manifest_version


@dataclass(frozen=True)
class DatasetWriter:
    """Writes the dataset at ``url`` for run ``run_id`` (small and picklable: sent to Dask workers)."""

    url: str
    options: storage.StorageOptions = field(default_factory=storage.StorageOptions)
    run_id: str = ""
    jets_per_entry: int = 1  # the most jets an input entry gives (per-event inputs: many)

    @property
    def location(self) -> tuple[Any, str]:
        return storage.filesystem(self.url, self.options)

    def lease(self) -> Lease:
        fs, root = self.location
        return Lease(fs, root, self.url, self.run_id)

    # -- before the run (client) -----------------------------------------------------------------------

    def existing_manifest(self) -> Manifest | None:
        fs, root = self.location
        if not fs.exists(paths.join(root, paths.MANIFEST)):
            return None
        return read_manifest(fs, root)

    def remove_dataset(self) -> None:
        """Delete everything of an existing dataset but the lease (``--overwrite``)."""
        fs, root = self.location
        if not fs.exists(root):
            return
        for item in fs.ls(root, detail=False):
            if PurePosixPath(item).name != paths.LEASE:
                storage.remove(fs, item)

    # -- one shard (workers) ---------------------------------------------------------------------------

    def committed(self, name: str, task_key: str) -> ShardEntry | None:
        """The committed shard ``name`` if its record has ``task_key`` and its files verify, else None."""
        fs, root = self.location
        path = paths.commit_path(root, name)
        try:
            record = json.loads(fs.cat_file(path))
            entry = ShardEntry.from_dict(record, path, self.jets_per_entry)
        except (FileNotFoundError, ValueError, DatasetError):
            return None
        if entry.task_key != task_key or not files_intact(fs, paths.join(root, entry.path), entry.files):
            return None
        return entry

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A scratch directory of this run for one shard: under ``<root>/.staging/<run>/`` when local (so
        publishing is a rename), in the system temp dir otherwise. Removed afterwards."""
        fs, root = self.location
        if storage.is_local_fs(fs):
            base = Path(root) / paths.STAGING / (self.run_id or "run")
            base.mkdir(parents=True, exist_ok=True)
            directory = Path(tempfile.mkdtemp(dir=base))
        else:
            directory = Path(tempfile.mkdtemp(prefix=f"jetstore-{self.run_id[:8]}-"))
        try:
            yield directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def commit(self, name: str, local: Path, suffix: str, task_key: str, **content: Any) -> ShardEntry:
        """Publish the finished shard at ``local`` as ``shards/<name><suffix>`` and write its record.

        ``content``: ``n_jets``, ``class_counts``, ``node_counts``, ``source``, ``entry_start``, ``entry_stop``."""
        fs, root = self.location
        relative = f"{paths.SHARDS}/{name}{suffix}"
        files = _local_checksums(local)
        if self.run_id:
            self.lease().check()
        storage.publish(fs, local, paths.join(root, relative))
        entry = ShardEntry(name=name, path=relative, bytes=sum(size for size, _ in files.values()),
                           checksum=combined_checksum(files), files=files, task_key=task_key, **content)
        storage.write_bytes_atomic(fs, paths.commit_path(root, name), json.dumps(entry.to_dict()).encode())
        return entry

    # -- the end of the run (client) -------------------------------------------------------------------

    def finish(self, manifest: Manifest) -> None:
        """Write the manifest (while holding the lease; its version first, as ``_manifests/<version>.json``),
        then remove unreferenced shards and records and all staging (no other run writes: this one holds the
        lease)."""
        fs, root = self.location
        if self.run_id:
            self.lease().check()
        write_manifest_version(fs, root, manifest)
        write_manifest(fs, root, manifest)
        referenced = {PurePosixPath(s.path).name for s in manifest.shards}
        records = {f"{s.name}.json" for s in manifest.shards}
        for directory, keep in ((paths.SHARDS, referenced), (paths.COMMITS, records)):
            folder = paths.join(root, directory)
            if fs.exists(folder):
                for item in fs.ls(folder, detail=False):
                    if PurePosixPath(item).name not in keep:
                        storage.remove(fs, item)
        if storage.is_local_fs(fs):
            shutil.rmtree(Path(root) / paths.STAGING, ignore_errors=True)

    def remove_staging(self, run_id: str | None = None) -> None:
        """Remove the staging of this run (or of ``run_id``: a crashed run whose lease this one took over),
        and the staging folder once empty."""
        fs, root = self.location
        if not storage.is_local_fs(fs):
            return
        staging = Path(root) / paths.STAGING
        shutil.rmtree(staging / (run_id or self.run_id or "run"), ignore_errors=True)
        with contextlib.suppress(OSError):
            staging.rmdir()


def _local_checksums(local: Path) -> dict[str, tuple[int, str]]:
    fs = LocalFileSystem()
    sizes = storage.list_files(fs, str(local))
    return {name: (size, file_checksum(fs, paths.join(str(local), name))) for name, size in sizes.items()}

