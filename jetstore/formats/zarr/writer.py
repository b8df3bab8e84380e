"""Writing a Zarr v3 shard: one ``.zarr.zip`` (a standard Zarr v3 ZipStore, entries stored uncompressed).

Inside: ``jets/<column>`` 1-D arrays, and per node block ``<block>/counts`` and ``<block>/starts`` (per jet:
its nodes, and where they start) beside one flat ``<block>/<feature>`` values array per feature. Chunks are
Blosc-zstd (or lz4), byte shuffle for floats and bit shuffle for integers, each chunk one Blosc block. A jet
chunk is one *unit* (``layout.chunk_jets`` jets, the sampler's read granularity); node values are chunked
**aligned to the units**: every unit's values start at a chunk boundary (the rest of its last chunk is zero
padding), in chunks of at most ``layout.chunk_values`` values, so reading a unit decodes only its own jets.
Jet i's nodes are ``values[starts[i]:starts[i] + counts[i]]`` of every feature: any Zarr reader gets the
right jets from what is stored, the padding included.

The zip entries are ordered unit by unit, so a unit's chunks are one contiguous byte range: group ``k`` holds
unit k's chunks of every array. The block offsets at every unit boundary are stored in the root group's
attributes (``unit_offsets``), and the chunk index (``chunk_index.py``: where every chunk lies, pointed at by the
zip's comment), every ``zarr.json`` and the zip directory come last, so a reader finds every chunk from the file's
tail and one more read, without the directory; the root's ``zarr.json`` holds them all (consolidated metadata),
so a reader opens any group without listing the zip. Chunks are encoded array by array in one call each
(``encode.py``) and the zip is laid out in one pass (``archive.py``).

Why a zip: a shard is one object, so publishing it is one rename locally and one PUT on S3 (atomic), a
dataset has one object per shard instead of thousands, and any Zarr v3 reader opens it
(``zarr.storage.ZipStore``, or ``xarray.open_zarr(store, group="jets")``).
"""

from __future__ import annotations

import functools
import json
import zlib
from dataclasses import dataclass

import numpy as np
import zarr
from numcodecs import Blosc
from zarr.codecs import BloscCname, BloscCodec, BloscShuffle

from jetstore.formats.base import ShardWriter
from jetstore.formats.zarr import chunk_index
from jetstore.formats.zarr.archive import Entries, write_zip
from jetstore.formats.zarr.encode import Codec, capacity, encode_chunks
from jetstore.formats.zarr.layout import (
    CONSOLIDATED,
    COUNTS,
    JET_DIMENSION,
    JETS,
    NODE_LAYOUT,
    STARTS,
    UNIT_ALIGNED,
    node_dimension,
)
from jetstore.model.layout import BlockColumns
from jetstore.model.table import BlockData, JetTable, offsets_of

MIN_VALUE_CHUNK = 1024
BLOCK_BYTES = 1 << 18  # Blosc compresses a whole chunk (≤ 256 KiB) as one block: faster both ways, no bigger
SHUFFLE_NAMES = {Blosc.SHUFFLE: "shuffle", Blosc.BITSHUFFLE: "bitshuffle"}
_INLINE = {"kind": "inline", "must_understand": False}
@dataclass
class _Array:
    """One array of the shard: its key, values (a whole number of chunks), chunk length and the unit whose zip
    group holds each chunk."""

    key: str
    values: np.ndarray
    chunk: int
    owner: np.ndarray
    dimension: str
    attributes: dict | None = None


class ZarrShardWriter(ShardWriter):
    """Collects the shard's jets (the converter holds a shard in memory anyway, to sort it) and writes
    the zip, unit by unit, on :meth:`close`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pieces: list[JetTable] = []

    def write(self, table: JetTable) -> None:
        if table.n_jets:
            self.pieces.append(table)

    def close(self) -> None:
        table = JetTable.concat(self.pieces) if self.pieces else None
        n_jets = table.n_jets if table is not None else 0
        unit = self.layout.chunk_jets
        n_units = -(-n_jets // unit)
        bounds = np.minimum(np.arange(n_units + 1, dtype=np.int64) * unit, n_jets)
        units = np.arange(n_units)
        arrays = [_Array(f"{JETS}/{name}", _padded(table.jets[name] if table is not None else None, dtype,
                                                   n_units * unit), unit, units, JET_DIMENSION)
                  for name, dtype in self.columns.jets]
        unit_offsets = {}
        for block in self.columns.blocks:
            data = table.blocks[block.name] if table is not None else None
            unit_offsets[block.name] = self._block(block, data, bounds, arrays)
        (chunks, key_ids), documents = self._encode(arrays), self._documents(arrays, n_jets)
        nodes = {b.name: int(table.blocks[b.name].counts.sum()) if table is not None else 0
                 for b in self.columns.blocks}
        attributes = {"n_jets": n_jets, "unit_jets": unit, "value_layout": UNIT_ALIGNED, "node_counts": nodes,
                      "unit_offsets": {b: offsets.tolist() for b, offsets in unit_offsets.items()}}
        documents.append(("zarr.json", {**_group_metadata(attributes), CONSOLIDATED: _consolidated(documents)}))
        metadata = _document_entries(documents)
        index, pointer = chunk_index.build(chunks, [a.key for a in arrays], key_ids, metadata)
        write_zip(self.path, [chunks, index, metadata], pointer)

    def _block(self, block: BlockColumns, data: BlockData | None, bounds: np.ndarray,
               arrays: list[_Array]) -> np.ndarray:
        """Counts and starts per jet, then every feature's values with each unit's values starting at a chunk
        boundary (the rest of a unit's last chunk is zero padding), so a unit is whole chunks of its own; jet i's
        values are ``[starts[i], starts[i] + counts[i])``. Returns where every unit's values start (and, last, the
        padded length)."""
        counts = data.counts.astype(np.int32) if data is not None else np.zeros(0, np.int32)
        n_units, unit = len(bounds) - 1, self.layout.chunk_jets
        real = offsets_of(counts)[bounds]  # where every unit's values start without padding
        chunk = value_chunk(real, self.layout.chunk_values)
        per_unit = -(-np.diff(real) // chunk)
        aligned = offsets_of(per_unit) * chunk
        unit_of_jet = np.repeat(np.arange(n_units), np.diff(bounds))
        shift = aligned[:-1] - real[:-1]  # per unit: padded position minus real position
        starts = offsets_of(counts)[:-1] + shift[unit_of_jet]
        units = np.arange(n_units)
        arrays.append(_Array(f"{block.name}/{COUNTS}", _padded(counts, "int32", n_units * unit), unit, units,
                             JET_DIMENSION))
        arrays.append(_Array(f"{block.name}/{STARTS}", _padded(starts, "int64", n_units * unit), unit, units,
                             JET_DIMENSION))
        owner = np.repeat(units, per_unit)
        position = np.repeat(shift, np.diff(real)) + np.arange(int(real[-1]))
        for name, dtype in block.features:
            padded = np.zeros(int(aligned[-1]), np.dtype(dtype))
            if data is not None:
                padded[position] = data.features[name]
            arrays.append(_Array(f"{block.name}/{name}", padded, chunk, owner, node_dimension(block.name)))
        return aligned

    def _codec(self, dtype: np.dtype) -> Codec:
        return Codec(self.layout.codec, self.layout.compression_level, _shuffle(dtype), BLOCK_BYTES)

    def _encode(self, arrays: list[_Array]) -> tuple[Entries, np.ndarray]:
        """Every chunk of every array encoded into one buffer, the zip entries ordered unit by unit (in a unit's
        group: array by array, chunk by chunk); and each entry's array (its place in ``arrays``)."""
        sizes = [capacity(len(a.values), a.chunk, a.values.dtype.itemsize) for a in arrays]
        source = np.empty(sum(sizes), np.uint8)
        bases = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        parts = [encode_chunks(a.values, a.chunk, self._codec(a.values.dtype), source[base:base + size])
                 for a, base, size in zip(arrays, bases.tolist(), sizes, strict=True)]
        order = np.argsort(np.concatenate([a.owner for a in arrays] or [np.zeros(0, np.int64)]), kind="stable")
        names = [f"{a.key}/c/{i}" for a in arrays for i in range(len(a.owner))]
        offsets = np.concatenate([p.offsets + base for p, base in zip(parts, bases, strict=True)] or [[]])
        key_ids = np.repeat(np.arange(len(arrays)), [len(a.owner) for a in arrays])[order]
        return Entries([names[i] for i in order.tolist()], source, offsets.astype(np.int64)[order],
                       _joined([p.sizes for p in parts])[order], _joined([p.crcs for p in parts])[order]), key_ids

    def _documents(self, arrays: list[_Array], n_jets: int) -> list[tuple[str, dict]]:
        """Every array's ``zarr.json`` (its real length as shape: the padding of its last chunk is Zarr's edge
        chunk), then every group's."""
        documents = []
        for array in arrays:
            codec = self._codec(array.values.dtype)
            document = dict(_array_metadata(array.values.dtype.str, array.chunk, codec.cname, codec.clevel,
                                            codec.shuffle, codec.blocksize, array.dimension))
            document["shape"] = [n_jets if array.dimension == JET_DIMENSION else len(array.values)]
            documents.append((f"{array.key}/zarr.json", document))
        for name in dict.fromkeys(a.key.split("/")[0] for a in arrays):
            attributes = {} if name == JETS else {"jets": NODE_LAYOUT}
            documents.append((f"{name}/zarr.json", _group_metadata(attributes)))
        return documents


def value_chunk(unit_offsets: np.ndarray, cap: int) -> int:
    """Values per chunk of a block: a power of two near half a typical unit's values, at least
    ``MIN_VALUE_CHUNK`` and at most ``cap`` (dense blocks get ``cap``)."""
    per_unit = np.diff(unit_offsets)
    filled = per_unit[per_unit > 0]
    if not len(filled):
        return cap
    half = max(float(np.median(filled)) / 2, 1.0)
    return int(min(cap, max(MIN_VALUE_CHUNK, 1 << int(np.log2(half)))))


def _padded(values: np.ndarray | None, dtype: str, length: int) -> np.ndarray:
    """``values`` as ``dtype``, zero-padded to ``length`` (Zarr's edge chunk: the whole chunk is stored)."""
    out = np.zeros(length, np.dtype(dtype))
    if values is not None:
        out[:len(values)] = values
    return out


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _document_entries(documents: list[tuple[str, dict]]) -> Entries:
    """The metadata documents as zip entries."""
    texts = [json.dumps(document).encode() for _, document in documents]
    sizes = np.fromiter(map(len, texts), np.int64, len(texts))
    return Entries([name for name, _ in documents], np.frombuffer(b"".join(texts), np.uint8),
                   np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64), sizes,
                   np.fromiter(map(zlib.crc32, texts), np.int64, len(texts)))


def _shuffle(dtype: np.dtype) -> int:
    """Byte shuffle for floats (measured on cms_ak4: 0.73× the ROOT input vs 0.79× with bit shuffle, at
    the same speed), bit shuffle for integers and booleans (labels, counts, ids)."""
    return Blosc.SHUFFLE if dtype.kind == "f" else Blosc.BITSHUFFLE


@functools.lru_cache(maxsize=128)
def _array_metadata(dtype: str, chunk: int, cname: str, level: int, shuffle: int, blocksize: int,
                    dimension: str) -> dict:
    """``zarr.json`` of a 1-D array exactly as zarr-python writes it (made once per process in memory)."""
    codec = BloscCodec(cname=BloscCname(cname), clevel=level, shuffle=BloscShuffle(SHUFFLE_NAMES[shuffle]),
                       blocksize=blocksize)
    array = zarr.create_array(zarr.storage.MemoryStore(), shape=(0,), chunks=(chunk,), dtype=np.dtype(dtype),
                              fill_value=0, zarr_format=3, compressors=codec, dimension_names=[dimension])
    return json.loads(json.dumps(array.metadata.to_dict()))


def _group_metadata(attributes: dict) -> dict:
    return {"zarr_format": 3, "node_type": "group", "attributes": attributes}


def _consolidated(documents: list[tuple[str, dict]]) -> dict:
    """Every node's metadata in the root's ``zarr.json``, as ``zarr.consolidate_metadata`` writes it: readers
    then open any group without listing the store (``zip::s3://`` URLs cannot list a zip's folders)."""
    nodes = {}
    for key, document in documents:
        if document["node_type"] == "group":
            document = {**document, CONSOLIDATED: {**_INLINE, "metadata": {}}}
        nodes[key.removesuffix("/zarr.json")] = document
    return {**_INLINE, "metadata": nodes}
