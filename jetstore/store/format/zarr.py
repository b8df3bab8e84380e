"""Zarr v3 shards, one ``.zarr.zip`` object per shard (a Zarr v3 ZipStore, entries stored uncompressed).

Inside: ``jets/<column>`` 1-D arrays, and per node block ``<block>/counts`` (nodes per jet) beside one
flat ``<block>/<feature>`` values array per feature. Chunks are Blosc-zstd (or lz4), byte shuffle for floats and
bit shuffle for integers, so reading is decompression plus a copy.

Why a zip: a shard is then one object, so publishing it is one rename locally and one PUT on S3
(atomic), a dataset has a handful of objects per shard instead of ~150, and readers fetch a chunk with
one range read. Any Zarr v3 reader opens it (``zarr.storage.ZipStore`` or ``zip::s3://...``).

Writing bypasses zarr-python's per-call overhead (~1 ms per ``array[a:b] = x``): each full chunk is
encoded with the same numcodecs Blosc codec zarr uses and stored under its Zarr key; the ``zarr.json``
documents come from zarr-python itself (made once per process in memory, then filled with the shape).
"""

from __future__ import annotations

import functools
import json
import zipfile
from collections.abc import Iterable, Mapping

import numpy as np
import zarr
from numcodecs import Blosc
from zarr.codecs import BloscCodec

from jetstore.store.format.base import ShardReader, ShardWriter
from jetstore.store.table import BlockData, JetTable

COUNTS = "counts"
JETS = "jets"
SHUFFLE_NAMES = {Blosc.SHUFFLE: "shuffle", Blosc.BITSHUFFLE: "bitshuffle"}
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # zip entry timestamps fixed so identical shards have identical bytes


def _put(archive: zipfile.ZipFile, name: str, data: bytes | str) -> None:
    archive.writestr(zipfile.ZipInfo(name, date_time=FIXED_TIME), data)


class _ChunkWriter:
    """Appends to one 1-D array, writing each full chunk as soon as it is complete."""

    def __init__(self, archive: zipfile.ZipFile, key: str, dtype: np.dtype, chunk: int, codec: Blosc):
        self.archive, self.key, self.dtype, self.chunk, self.codec = archive, key, dtype, chunk, codec
        self.pending: list[np.ndarray] = []
        self.pending_size = 0
        self.size = 0

    def append(self, values: np.ndarray) -> None:
        if len(values):
            self.pending.append(values)
            self.pending_size += len(values)
        if self.pending_size >= self.chunk:
            self.flush(final=False)

    def flush(self, final: bool) -> None:
        if not self.pending:
            return
        data = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        full = len(data) - len(data) % self.chunk
        for start in range(0, full, self.chunk):
            self._write_chunk(data[start:start + self.chunk], self.chunk)
        rest = data[full:]
        if final and len(rest):
            padded = np.zeros(self.chunk, dtype=self.dtype)  # Zarr stores edge chunks at full size
            padded[:len(rest)] = rest
            self._write_chunk(padded, len(rest))
            rest = rest[:0]
        self.pending = [rest] if len(rest) else []
        self.pending_size = len(rest)

    def _write_chunk(self, values: np.ndarray, valid: int) -> None:
        index = self.size // self.chunk
        encoded = self.codec.encode(np.ascontiguousarray(values, dtype=self.dtype))
        _put(self.archive, f"{self.key}/c/{index}", encoded)
        self.size += valid

    def metadata(self) -> dict:
        codec = self.codec
        metadata = dict(_array_metadata(self.dtype.str, self.chunk, codec.cname, codec.clevel, codec.shuffle))
        metadata["shape"] = [self.size]
        return metadata


class ZarrShardWriter(ShardWriter):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.archive = zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self.writers: dict[str, _ChunkWriter] = {}
        for column in self.schema.jet_columns:
            self._add(f"{JETS}/{column.name}", self.dtypes[column.name], self.layout.chunk_jets)
        for block in self.schema.blocks:
            self._add(f"{block.name}/{COUNTS}", "int32", self.layout.chunk_jets)
            for feature in block.features:
                self._add(f"{block.name}/{feature.name}", self.dtypes[feature.name], self.layout.chunk_values)

    def _add(self, key: str, dtype: str, chunk: int) -> None:
        dtype = np.dtype(dtype)
        codec = Blosc(cname=self.layout.codec, clevel=self.layout.compression_level, shuffle=_shuffle(dtype))
        self.writers[key] = _ChunkWriter(self.archive, key, dtype, chunk, codec)

    def write(self, table: JetTable) -> None:
        for name, values in table.jets.items():
            self.writers[f"{JETS}/{name}"].append(values)
        for block_name, block in table.blocks.items():
            self.writers[f"{block_name}/{COUNTS}"].append(block.counts.astype(np.int32, copy=False))
            for name, values in block.features.items():
                self.writers[f"{block_name}/{name}"].append(values)

    def close(self) -> None:
        n_jets = 0
        for key, writer in self.writers.items():
            writer.flush(final=True)
            _put(self.archive, f"{key}/zarr.json", json.dumps(writer.metadata()))
            n_jets = writer.size if key.startswith(f"{JETS}/") else n_jets
        for group in dict.fromkeys(key.split("/")[0] for key in self.writers):
            _put(self.archive, f"{group}/zarr.json", json.dumps(_group_metadata({})))
        _put(self.archive, "zarr.json", json.dumps(_group_metadata({"n_jets": n_jets})))
        self.archive.close()


class ZarrShardReader(ShardReader):
    """Reads arrays straight from the zip entries: one range read per chunk on remote storage, the zip
    directory and each array's metadata read once per opened shard."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._archive: zipfile.ZipFile | None = None
        self._metadata: dict[str, tuple[int, int, np.dtype]] = {}
        self._offsets: dict[str, np.ndarray] = {}

    def read(self, jet_columns: Iterable[str] | None = None, features: Mapping[str, Iterable[str]] | None = None,
             start: int = 0, stop: int | None = None) -> JetTable:
        jet_names, features = self._selection(jet_columns, features)
        jets = {name: self._array(f"{JETS}/{name}", start, stop) for name in jet_names}
        out_blocks = {}
        for block, names in features.items():
            offsets = self._block_offsets(block)
            end = len(offsets) - 1 if stop is None else min(stop, len(offsets) - 1)
            counts = np.diff(offsets[start:end + 1]).astype(np.int32)
            values = {name: self._array(f"{block}/{name}", int(offsets[start]), int(offsets[end])) for name in names}
            out_blocks[block] = BlockData(counts, values)
        return JetTable(jets, out_blocks)

    def close(self) -> None:
        if self._archive is not None:
            self._archive.close()
            self._archive = None
        super().close()

    def _zip(self) -> zipfile.ZipFile:
        if self._archive is None:
            self._archive = zipfile.ZipFile(self._open())
        return self._archive

    def _block_offsets(self, block: str) -> np.ndarray:
        if block not in self._offsets:
            counts = self._array(f"{block}/{COUNTS}", 0, None)
            offsets = np.zeros(len(counts) + 1, dtype=np.int64)
            np.cumsum(counts, out=offsets[1:])
            self._offsets[block] = offsets
        return self._offsets[block]

    def _array(self, key: str, start: int, stop: int | None) -> np.ndarray:
        archive = self._zip()
        if key not in self._metadata:
            metadata = json.loads(archive.read(f"{key}/zarr.json"))
            (size,), (chunk,) = metadata["shape"], metadata["chunk_grid"]["configuration"]["chunk_shape"]
            self._metadata[key] = (size, chunk, np.dtype(metadata["data_type"]))
        size, chunk, dtype = self._metadata[key]
        return read_chunks(archive, key, size, chunk, dtype, start, size if stop is None else min(stop, size))


def read_chunks(archive: zipfile.ZipFile, key: str, size: int, chunk: int, dtype: np.dtype, start: int,
                stop: int) -> np.ndarray:
    """Elements ``[start, stop)`` of a 1-D array, decoding only the chunks that hold them."""
    out = np.empty(max(stop - start, 0), dtype=dtype)
    if stop <= start:
        return out
    for index in range(start // chunk, (stop - 1) // chunk + 1):
        lo, hi = index * chunk, min(size, (index + 1) * chunk)
        decoded = np.frombuffer(Blosc().decode(archive.read(f"{key}/c/{index}")), dtype=dtype)
        a, b = max(lo, start), min(hi, stop)
        out[a - start:b - start] = decoded[a - lo:b - lo]
    return out


def _shuffle(dtype: np.dtype) -> int:
    """Byte shuffle for floats (measured on cms_ak4: 0.73× the ROOT input vs 0.79× with bit shuffle, at
    the same speed), bit shuffle for integers and booleans (labels, counts, ids)."""
    return Blosc.SHUFFLE if dtype.kind == "f" else Blosc.BITSHUFFLE


@functools.lru_cache(maxsize=64)
def _array_metadata(dtype: str, chunk: int, cname: str, level: int, shuffle: int) -> dict:
    """``zarr.json`` of a 1-D array exactly as zarr-python writes it, made once per process in memory."""
    store = zarr.storage.MemoryStore()
    zarr.create_array(
        store, shape=(0,), chunks=(chunk,), dtype=np.dtype(dtype), fill_value=0, zarr_format=3,
        compressors=BloscCodec(cname=cname, clevel=level, shuffle=SHUFFLE_NAMES[shuffle]),
    )
    return json.loads(store._store_dict["zarr.json"].to_bytes())


def _group_metadata(attributes: dict) -> dict:
    return {"zarr_format": 3, "node_type": "group", "attributes": attributes}
