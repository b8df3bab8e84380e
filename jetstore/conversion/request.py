"""What a conversion is asked to do, with every local path made absolute on the client (Dask workers run in
other directories, on other machines), and the expansion of input patterns."""

from __future__ import annotations

import dataclasses
import glob
import os
from dataclasses import dataclass, field

from jetstore.schema import Schema
from jetstore.store import storage
from jetstore.store.layout import Layout

OBJECT_STORES = ("s3", "s3a")


@dataclass(frozen=True)
class ConvertRequest:
    """What to convert, where to, and how the shards are cut. The defaults here are the defaults of
    :func:`jetstore.convert` and of ``jetstore convert`` (one home). ``append``: add the inputs to the existing
    dataset at ``output`` (same schema, format, layout and shard size)."""

    inputs: tuple[str, ...]
    schema: Schema
    output: str
    format: str = "zarr"
    jets_per_shard: int = 100_000
    layout: Layout = field(default_factory=Layout)
    read_step: int = 20_000
    overwrite: bool = False
    skip_bad_inputs: bool = False
    break_lease: bool = False
    append: bool = False
    input_options: storage.StorageOptions = field(default_factory=storage.StorageOptions)
    output_options: storage.StorageOptions = field(default_factory=storage.StorageOptions)

    def resolved(self) -> ConvertRequest:
        """The request with local inputs and output as absolute paths."""
        return dataclasses.replace(self, inputs=tuple(storage.absolute(url) for url in self.inputs),
                                   output=storage.dataset_location(self.output, write=True))


def expand_inputs(patterns: tuple[str, ...], options: storage.StorageOptions) -> tuple[list[str], dict[str, str]]:
    """Expand globs (local or remote; never HTTP(S) URLs, whose ``?`` starts a query) and find missing local
    files; a pattern that matches nothing or a file that does not exist is a failure named by itself (in
    its public form: no credentials)."""
    urls: list[str] = []
    failures: dict[str, str] = {}
    probed: set[str] = set()
    for pattern in patterns:
        if not storage.is_pattern(pattern):
            missing = (not os.path.exists(pattern) if storage.is_local(pattern)
                       else _bucket(pattern) not in probed and not _reachable(pattern, options))
            if missing:
                failures[storage.public_url(pattern)] = "no such file"
            else:
                urls.append(pattern)
            probed.add(_bucket(pattern))
            continue
        if storage.is_local(pattern):
            matches = sorted(glob.glob(pattern))
        else:
            with storage.access(pattern, options):
                fs, _ = storage.filesystem(pattern, storage.probe_options(options))
                prefix = f"{storage.protocol(pattern)}://"
                matches = [prefix + m for m in sorted(fs.glob(pattern.split("://", 1)[1]))]
        if not matches:
            failures[storage.public_url(pattern)] = "no file matches this pattern"
        urls.extend(matches)
    return list(dict.fromkeys(urls)), failures


def _bucket(url: str) -> str:
    """Where an object-store input lies (protocol and bucket): one check before the run per place."""
    return url.split("/", 3)[2] if storage.protocol(url) in OBJECT_STORES else ""


def _reachable(url: str, options: storage.StorageOptions) -> bool:
    """Whether an object-store input exists, asked once per bucket with few retries and a short timeout,
    so an unreachable endpoint, refused credentials or a missing bucket fail the run in seconds as a
    :class:`~jetstore.errors.StorageError` naming the endpoint (not as a failure of every input, after
    minutes of retries on the workers). Other inputs (local, HTTP: a presigned URL may refuse HEAD) are True."""
    if storage.protocol(url) not in OBJECT_STORES:
        return True
    with storage.access(storage.public_url(url), options):
        fs, path = storage.filesystem(url, storage.probe_options(options))
        try:
            fs.info(path)
        except FileNotFoundError:
            return False
    return True
