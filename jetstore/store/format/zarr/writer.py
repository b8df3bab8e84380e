"""Writing a Zarr v3 shard: one ``.zarr.zip`` (a standard Zarr v3 ZipStore, entries stored uncompressed).

Inside: ``jets/<column>`` 1-D arrays, and per node block ``<block>/counts`` (nodes per jet) beside one flat
``<block>/<feature>`` values array per feature. Chunks are Blosc-zstd (or lz4), byte shuffle for floats and
bit shuffle for integers. A jet chunk is one *unit* (``layout.chunk_jets`` jets, the sampler's read
granularity); a block's value chunks hold at most ``layout.chunk_values`` values and, for sparse blocks,
about half a typical unit's values, so no value chunk spans more than about two units.

The zip entries are ordered unit by unit, so a unit's chunks are one contiguous byte range: group ``k``
holds unit k's jet and count chunks and the value chunks that start inside it, the chunks that run on into
unit k+1 last. Reading unit k is then one range: from the tail of group k-1 to the end of group k. The
block offsets at every unit boundary are stored in the root group's attributes (``unit_offsets``), and
every ``zarr.json`` plus the zip directory come last, so one read of the file's tail describes it all.

Why a zip: a shard is one object, so publishing it is one rename locally and one PUT on S3 (atomic), a
dataset has one object per shard instead of thousands, and any Zarr v3 reader opens it
(``zarr.storage.ZipStore``, or ``xarray.open_zarr(store, group="jets")``).
"""

from __future__ import annotations

import functools
import json
import zipfile

import numpy as np
import zarr
from numcodecs import Blosc
from zarr.codecs import BloscCodec

from jetstore.store.format.base import ShardWriter
from jetstore.store.layout import BlockColumns
from jetstore.store.table import JetTable, offsets_of

COUNTS = "counts"
JETS = "jets"
JET_DIMENSION = "jet"
MIN_VALUE_CHUNK = 1024
BLOCK_BYTES = 1 << 18  # Blosc compresses a whole chunk (≤ 256 KiB) as one block: faster both ways, no bigger
SHUFFLE_NAMES = {Blosc.SHUFFLE: "shuffle", Blosc.BITSHUFFLE: "bitshuffle"}
UNIT_ALIGNED = "unit_aligned"  # each unit's node values start at a chunk boundary
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # zip entry timestamps fixed so identical shards have identical bytes


def node_dimension(block: str) -> str:
    return f"{block}_node"


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
        groups: list[list[tuple[str, bytes]]] = [[] for _ in range(n_units)]
        metadata: dict[str, dict] = {}
        for name, dtype in self.columns.jets:
            key = f"{JETS}/{name}"
            values = table.jets[name] if table is not None else np.zeros(0, dtype)
            metadata[key] = self._chunks(key, values, dtype, unit, JET_DIMENSION, np.arange(n_units), groups)
        unit_offsets = {}
        for block in self.columns.blocks:
            data = table.blocks[block.name] if table is not None else None
            unit_offsets[block.name] = self._block(block, data, bounds, groups, metadata)
        with zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for group in groups:
                for key, data in group:
                    _put(archive, key, data)
            for key, document in metadata.items():
                _put(archive, f"{key}/zarr.json", json.dumps(document))
            for name in dict.fromkeys(key.split("/")[0] for key in metadata):
                _put(archive, f"{name}/zarr.json", json.dumps(_group_metadata({})))
            nodes = {b.name: int(table.blocks[b.name].counts.sum()) if table is not None else 0
                     for b in self.columns.blocks}
            attributes = {"n_jets": n_jets, "unit_jets": unit, "value_layout": UNIT_ALIGNED, "node_counts": nodes,
                          "unit_offsets": {b: offsets.tolist() for b, offsets in unit_offsets.items()}}
            _put(archive, "zarr.json", json.dumps(_group_metadata(attributes)))

    def _block(self, block: BlockColumns, data, bounds: np.ndarray, groups, metadata) -> np.ndarray:
        """Counts, then every feature's values with each unit's values starting at a chunk boundary (the rest of
        a unit's last chunk is zero padding), so a unit is whole chunks of its own. Returns where every unit's
        values start (and, last, the padded length)."""
        counts = data.counts.astype(np.int32) if data is not None else np.zeros(0, np.int32)
        n_units = len(bounds) - 1
        key = f"{block.name}/{COUNTS}"
        metadata[key] = self._chunks(key, counts, "int32", self.layout.chunk_jets, JET_DIMENSION, np.arange(n_units),
                                     groups)
        real = offsets_of(counts)[bounds]  # where every unit's values start without padding
        chunk = value_chunk(real, self.layout.chunk_values)
        per_unit = -(-np.diff(real) // chunk)
        aligned = offsets_of(per_unit) * chunk
        owner = np.repeat(np.arange(n_units), per_unit)
        unit_of_value = np.repeat(np.arange(n_units), np.diff(real))
        position = aligned[:-1][unit_of_value] + np.arange(int(real[-1])) - real[:-1][unit_of_value]
        for name, dtype in block.features:
            key = f"{block.name}/{name}"
            padded = np.zeros(int(aligned[-1]), np.dtype(dtype))
            if data is not None:
                padded[position] = data.features[name]
            metadata[key] = self._chunks(key, padded, dtype, chunk, node_dimension(block.name), owner, groups)
        return aligned

    def _chunks(self, key: str, values: np.ndarray, dtype: str, chunk: int, dimension: str, owner: np.ndarray,
                groups) -> dict:
        """Encode ``values`` in chunks of ``chunk`` (the last zero-padded, as Zarr stores edge chunks), chunk i into
        the zip group of unit ``owner[i]``."""
        dtype = np.dtype(dtype)
        values = np.ascontiguousarray(values, dtype=dtype)
        codec = Blosc(cname=self.layout.codec, clevel=self.layout.compression_level, shuffle=_shuffle(dtype),
                      blocksize=BLOCK_BYTES)
        for index, unit in enumerate(owner.tolist()):
            piece = values[index * chunk:(index + 1) * chunk]
            if len(piece) < chunk:
                piece = np.concatenate([piece, np.zeros(chunk - len(piece), dtype)])
            groups[unit].append((f"{key}/c/{index}", codec.encode(piece)))
        document = dict(_array_metadata(dtype.str, chunk, codec.cname, codec.clevel, codec.shuffle, codec.blocksize,
                                        dimension))
        document["shape"] = [len(values)]
        return document


def value_chunk(unit_offsets: np.ndarray, cap: int) -> int:
    """Values per chunk of a block: a power of two near half a typical unit's values, at least
    ``MIN_VALUE_CHUNK`` and at most ``cap`` (dense blocks get ``cap``)."""
    per_unit = np.diff(unit_offsets)
    filled = per_unit[per_unit > 0]
    if not len(filled):
        return cap
    half = max(float(np.median(filled)) / 2, 1.0)
    return int(min(cap, max(MIN_VALUE_CHUNK, 1 << int(np.log2(half)))))


def _put(archive: zipfile.ZipFile, name: str, data: bytes | str) -> None:
    archive.writestr(zipfile.ZipInfo(name, date_time=FIXED_TIME), data)


def _shuffle(dtype: np.dtype) -> int:
    """Byte shuffle for floats (measured on cms_ak4: 0.73× the ROOT input vs 0.79× with bit shuffle, at
    the same speed), bit shuffle for integers and booleans (labels, counts, ids)."""
    return Blosc.SHUFFLE if dtype.kind == "f" else Blosc.BITSHUFFLE


@functools.lru_cache(maxsize=128)
def _array_metadata(dtype: str, chunk: int, cname: str, level: int, shuffle: int, blocksize: int,
                    dimension: str) -> dict:
    """``zarr.json`` of a 1-D array exactly as zarr-python writes it (made once per process in memory)."""
    codec = BloscCodec(cname=cname, clevel=level, shuffle=SHUFFLE_NAMES[shuffle], blocksize=blocksize)
    array = zarr.create_array(zarr.storage.MemoryStore(), shape=(0,), chunks=(chunk,), dtype=np.dtype(dtype),
                              fill_value=0, zarr_format=3, compressors=codec, dimension_names=[dimension])
    return json.loads(json.dumps(array.metadata.to_dict()))


def _group_metadata(attributes: dict) -> dict:
    return {"zarr_format": 3, "node_type": "group", "attributes": attributes}
