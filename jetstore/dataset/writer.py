"""Writing a dataset: staging, publishing and committing shards, then the manifest, fenced by the lease.

A shard is built in a staging folder of its run, published under a name carrying the run's lease
generation (``shards/<name>.g<G><suffix>``: one rename locally, one PUT on S3), and only then committed by
its record ``_commits/<name>.g<G>.json``; both after checking that the run still holds generation ``G``.
A rerun reuses a shard only if its newest record has the same task key and its files still have the
recorded sizes and checksums.

The manifest is committed in three steps: written to ``_pending/manifest.g<G>.json``; the lease sealed
(``writing`` → ``committing``, a conditional write that fails once another run took the lease: the commit
point); then installed as ``_manifest.json`` by a conditional write that never replaces the manifest of a
newer generation. A run that takes over a sealed lease completes the install and the clean-up itself.
Clean-up removes only jetstore's names (``paths.owned``) of generation ``G`` or older that the manifest
does not reference: never another tool's file, never what a newer writer wrote.

``--overwrite`` replaces a dataset the same way: nothing is deleted before the new manifest is installed
(until then the old dataset stays readable), and only a folder holding nothing but jetstore's names
may be overwritten (:meth:`DatasetWriter.check_owned`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fsspec.implementations.local import LocalFileSystem

from jetstore.dataset.lease import Lease, LeaseRecord
from jetstore.dataset.manifest import (
    Manifest,
    ShardEntry,
    install_manifest,
    install_newer,
    manifest_generation,
    read_manifest,
)
from jetstore.dataset.manifest import version_key as manifest_version_key
from jetstore.documents import load_json
from jetstore.errors import DatasetError, LeaseError
from jetstore.formats import FORMATS, get_format
from jetstore.io import filesystems, settings
from jetstore.io.backend import Backend, open_backend
from jetstore.io.checksum import combined_checksum, file_checksum, files_intact
from jetstore.model import paths

MAX_FOREIGN_SHOWN = 3


@dataclass(frozen=True)
class DatasetWriter:
    """Writes the dataset at ``url`` for run ``run_id`` holding lease ``generation`` (small and picklable:
    sent to Dask workers). ``reuse``: whether committed shards of earlier runs may be reused."""

    url: str
    options: settings.StorageOptions = field(default_factory=settings.StorageOptions)
    run_id: str = ""
    jets_per_entry: int = 1  # the most jets an input entry gives (per-event inputs: many)
    generation: int = 0
    reuse: bool = True

    @property
    def backend(self) -> Backend:
        return open_backend(self.url, self.options)

    def lease(self) -> Lease:
        return Lease(self.backend, self.url, self.run_id, self.generation or None)

    # -- before the run (client) -----------------------------------------------------------------------

    @contextlib.contextmanager
    def hold(self, break_lease: bool = False) -> Iterator[tuple[DatasetWriter, LeaseRecord | None]]:
        """Take the write lease for the block: this writer at its generation, and the lease taken over
        (whose run's staging is removed), if any."""
        self.backend.require_writes()
        lease = Lease(self.backend, self.url, self.run_id)
        with lease.held(break_lease, complete=self._complete, first_generation=self._first_generation) as previous:
            assert lease.generation is not None  # set by taking the lease
            writer = dataclasses.replace(self, generation=lease.generation)
            if previous is not None:
                writer.remove_staging(previous)
            if not self.reuse:  # --overwrite starts over: what failed runs left (nothing reuses it) goes first
                writer._clean_up(writer.existing_manifest(), writer.generation - 1, stats=False)
            yield writer, previous

    def existing_manifest(self) -> Manifest | None:
        backend = self.backend
        if not backend.exists(paths.MANIFEST):
            return None
        return read_manifest(backend.fs, backend.root)

    def check_owned(self) -> None:
        """Raise a :class:`DatasetError` unless everything at the output is jetstore's (``--overwrite``):
        a valid manifest, the lease, and only jetstore's names in its folders. Nothing is touched."""
        backend = self.backend
        foreign = [name for name in backend.entries() if name not in paths.TOP_LEVEL
                   and not paths.TEMPORARY.match(name)]
        for folder in (paths.SHARDS, paths.COMMITS, paths.PENDING, paths.STATS, paths.STAGING, paths.MANIFESTS):
            foreign += [f"{folder}/{name}" for name in backend.entries(folder)
                        if paths.owned(f"{folder}/{name}") is None and not paths.TEMPORARY.match(name)]
        if backend.exists(paths.MANIFEST):
            try:
                read_manifest(backend.fs, backend.root)
            except DatasetError as exc:
                raise DatasetError(f"{self.url}: --overwrite refused: its {paths.MANIFEST} is not a valid jetstore "
                                   f"manifest ({exc}); nothing was deleted") from None
        if foreign:
            shown = ", ".join(foreign[:MAX_FOREIGN_SHOWN]) + (f" and {len(foreign) - MAX_FOREIGN_SHOWN} more"
                                                               if len(foreign) > MAX_FOREIGN_SHOWN else "")
            raise DatasetError(f"{self.url}: --overwrite refused: it holds files that are not jetstore's ({shown}); "
                               "nothing was deleted: write the dataset to an empty or a jetstore folder")

    # -- one shard (workers) ---------------------------------------------------------------------------

    def committed(self, name: str, task_key: str) -> ShardEntry | None:
        """The newest committed shard ``name`` if its record has ``task_key`` and its files verify, else None."""
        if not self.reuse:
            return None
        backend = self.backend
        records = []
        for key in backend.list(f"{paths.COMMITS}/{name}."):
            found = paths.owned(key)
            if found is not None and found[0] == name and found[1] <= self.generation:
                records.append((found[1], key))
        for _, key in sorted(records, reverse=True):
            try:
                entry = ShardEntry.from_dict(load_json(backend.read(key)), key, self.jets_per_entry)
            except (FileNotFoundError, ValueError, DatasetError):
                continue
            if paths.record_of(entry.path) != key:
                continue
            if entry.task_key == task_key and files_intact(backend.fs, backend.path(entry.path), entry.files):
                return entry
        return None

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A scratch folder of this run for one shard (beside the data where publishing is a rename)."""
        with self.backend.staging(paths.staging_folder(self.generation, self.run_id)) as directory:
            yield directory

    def commit(self, name: str, local: Path, suffix: str, task_key: str, **content: Any) -> ShardEntry:
        """Publish the finished shard at ``local`` as ``shards/<name>.g<G><suffix>`` and write its record.

        ``content``: ``n_jets``, ``class_counts``, ``node_counts``, ``source``, ``entry_start``, ``entry_stop``."""
        backend = self.backend
        key = paths.shard_key(name, suffix, self.generation)
        files = _local_checksums(local)
        self.lease().check()
        backend.publish(local, key)
        entry = ShardEntry(name=name, path=key, bytes=sum(size for size, _ in files.values()),
                           checksum=combined_checksum(files), files=files, task_key=task_key, **content)
        backend.put(paths.record_key(name, self.generation), json.dumps(entry.to_dict()).encode())
        return entry

    # -- the end of the run (client) -------------------------------------------------------------------

    def finish(self, manifest: Manifest) -> Manifest:
        """Commit ``manifest`` (stage, seal the lease, install), then clean up (see the module docstring);
        returns it as committed. Raises :class:`LeaseError` when the lease was lost before the seal: then
        nothing is committed."""
        backend, lease = self.backend, self.lease()
        manifest = dataclasses.replace(manifest, generation=self.generation)
        text = manifest.to_json().encode()
        pending = paths.pending_manifest_key(self.generation)
        lease.check()
        backend.put(pending, text)
        lease.seal()
        # the history first (every version a reader saw stays readable), fenced as the manifest: a writer that
        # stalled here while a newer one committed this version never replaces the newer one's
        install_manifest(backend, text, self.generation, self.url, manifest_version_key(manifest.version))
        installed = install_manifest(backend, text, self.generation, self.url)
        with contextlib.suppress(LeaseError):
            lease.check()  # still ours: nobody completed the commit for this run
            if installed:
                self._install_root_files(manifest)
                self._clean_up(manifest, self.generation, stats=not self.reuse)
        lease.release()
        backend.delete([pending])
        backend.prune(paths.PENDING)
        return manifest

    def remove_staging(self, previous: LeaseRecord | None = None) -> None:
        """Remove the staging of this run (or of the run whose lease this one took over)."""
        record = previous or LeaseRecord(self.run_id, "", 0, 0, 0, self.generation)
        backend = self.backend
        for folder in (paths.staging_folder(record.generation, record.run_id), f"{paths.STAGING}/{record.run_id}"):
            backend.delete_prefix(folder)
        backend.prune(paths.STAGING)

    # -- the protocol ----------------------------------------------------------------------------------

    def _complete(self, holder: LeaseRecord) -> None:
        """Complete the commit of a run found with a sealed lease: install its manifest, clean up."""
        backend = self.backend
        try:
            text = backend.read(paths.pending_manifest_key(holder.generation))
        except FileNotFoundError:
            return
        manifest = Manifest.from_json(text, where=paths.pending_manifest_key(holder.generation))
        install_manifest(backend, text, holder.generation, self.url, manifest_version_key(manifest.version))
        install_manifest(backend, text, holder.generation, self.url)
        self._install_root_files(manifest)
        self._clean_up(manifest, holder.generation, stats=False)

    def _install_root_files(self, manifest: Manifest) -> None:
        """The format's files beside the manifest (a Zarr root group), installed as the manifest is; those of
        another format, left by a dataset this one replaced, are removed (when not newer than this commit)."""
        backend, made = self.backend, {}
        for name in FORMATS.names():
            root = get_format(name).root
            if root is None:
                continue
            if name == manifest.format:
                made = root.make(manifest)
                for key, text in made.items():
                    install_newer(backend, key, text, manifest.generation, root.generation, self.url)
            stale = [key for key in root.keys if key not in made and (found := backend.read_versioned(key))
                     and root.generation(found.data) <= manifest.generation]
            backend.delete(stale)

    def _clean_up(self, manifest: Manifest | None, generation: int, stats: bool) -> None:
        """Remove jetstore's names of ``generation`` or older that ``manifest`` (None: no dataset yet) does not
        reference (and, for ``--overwrite``, the old dataset's stats), and the staging of those generations."""
        backend = self.backend
        shards = manifest.shards if manifest is not None else ()
        keep = {s.path for s in shards} | {paths.record_of(s.path) for s in shards}
        keep.add(paths.pending_manifest_key(generation))
        doomed = []
        for folder in (paths.SHARDS, paths.COMMITS, paths.PENDING, *((paths.STATS,) if stats else ())):
            for key in backend.list(f"{folder}/"):
                found = paths.owned(key)
                if found is not None and found[1] <= generation and key not in keep:
                    doomed.append(key)
        backend.delete(doomed)
        if stats:  # the old dataset's per-shard partial stats (stats/cache.py), one folder per config
            for name in backend.entries(paths.STATS):
                if paths.owned(f"{paths.STATS}/{name}") is not None and not name.endswith(".json"):
                    backend.delete_prefix(f"{paths.STATS}/{name}")
        for name in backend.entries(paths.STAGING):
            found = paths.owned(f"{paths.STAGING}/{name}")
            if found is not None and found[1] <= generation:
                backend.delete_prefix(f"{paths.STAGING}/{name}")
        for folder in (paths.SHARDS, paths.COMMITS, paths.PENDING, paths.STAGING):
            backend.prune(folder)

    def _first_generation(self) -> int:
        """The generation of a dataset's first lease: above every generation its names and manifest carry."""
        backend = self.backend
        seen = [0]
        for folder in (paths.SHARDS, paths.COMMITS, paths.PENDING):
            seen += [found[1] for key in backend.list(f"{folder}/") if (found := paths.owned(key)) is not None]
        current = backend.read_versioned(paths.MANIFEST)
        if current is not None:
            seen.append(manifest_generation(current.data))
        return max(seen) + 1


def _local_checksums(local: Path) -> dict[str, tuple[int, str]]:
    fs = LocalFileSystem()
    sizes = filesystems.list_files(fs, str(local))
    return {name: (size, file_checksum(fs, paths.join(str(local), name))) for name, size in sizes.items()}
