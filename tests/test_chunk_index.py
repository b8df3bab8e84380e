"""Zarr shards carry a chunk index (issue #34): the reader finds every chunk from it instead of the zip's central
directory and gets exactly what the directory gives; shards without one (written before it) read by their
directory; a damaged or lying index is an error naming the shard, never wrong jets."""

from __future__ import annotations

import dataclasses
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from jetstore.dataset.dataset import Dataset
from jetstore.dataset.manifest import ShardEntry
from jetstore.errors import DatasetError
from jetstore.formats.zarr import archive, chunk_index, directory
from jetstore.formats.zarr.reader import ZarrShardReader
from tests.helpers import forget_shard_metadata, shard_entries, with_comment, zip_entries


def reader_of(dataset: Dataset, shard: ShardEntry, data: bytes, folder: Path) -> ZarrShardReader:
    """A reader of ``shard`` rewritten as ``data`` (in a copy of the dataset under ``folder``), through the dataset's
    own reader as if the manifest listed the new file."""
    copy = folder / "copy.zarr"
    if not copy.exists():
        shutil.copytree(dataset.root, copy)
    (copy / shard.path).write_bytes(data)
    forget_shard_metadata()
    entry = dataclasses.replace(shard, bytes=len(data), files={"": (len(data), "rewritten")})
    reader = Dataset.open(str(copy)).source.reader(entry)
    assert isinstance(reader, ZarrShardReader)
    return reader


def read_all(reader: ZarrShardReader, dataset: Dataset):
    return reader.read(dataset.manifest.columns.select(None, None))


def assert_same_tables(a, b) -> None:
    assert a.jets.keys() == b.jets.keys() and a.blocks.keys() == b.blocks.keys()
    for name in a.jets:
        np.testing.assert_array_equal(a.jets[name], b.jets[name], err_msg=name)
    for block in a.blocks:
        np.testing.assert_array_equal(a.blocks[block].counts, b.blocks[block].counts)
        for name in a.blocks[block].features:
            np.testing.assert_array_equal(a.blocks[block].features[name], b.blocks[block].features[name], err_msg=name)


def rebuilt(path: Path, index: bool = True, lie=None) -> bytes:
    """The shard's zip written again by jetstore's zip writer from its members: with a chunk index (whose chunk
    columns ``lie(chunks)`` may change) or, ``index=False``, as jetstore wrote shards before the index."""
    entries, keys, key_ids, documents = shard_entries(path)
    out = path.parent / "rebuilt.zip"
    if not index:
        archive.write_zip(out, [entries, documents])
        return out.read_bytes()
    told = dataclasses.replace(entries, **lie(entries)) if lie else entries
    member, pointer = chunk_index.build(told, keys, key_ids, documents)
    archive.write_zip(out, [entries, member, documents], pointer)
    return out.read_bytes()


def test_the_index_gives_what_the_directory_gives(ak4_zarr, tmp_path):
    dataset = Dataset.open(str(ak4_zarr))
    for shard in dataset.manifest.shards:
        data = (ak4_zarr / shard.path).read_bytes()
        with zipfile.ZipFile(ak4_zarr / shard.path) as handle:
            assert handle.comment.startswith(b"jetstore.chunk_index/1 ") and chunk_index.NAME in handle.namelist()
        assert rebuilt(ak4_zarr / shard.path) == data  # the test's rebuilding writes what the converter wrote
        forget_shard_metadata()
        indexed = dataset.source.reader(shard)
        assert isinstance(indexed, ZarrShardReader)
        assert indexed.source.requests == 2  # the tail, then the index with the metadata documents after it
        by_directory = reader_of(dataset, shard, with_comment(data, b""), tmp_path)
        a, b = indexed.index, by_directory.index
        assert a.arrays.keys() == b.arrays.keys() and len(a.arrays) > 10
        assert (a.n_jets, a.unit_jets) == (b.n_jets, b.unit_jets)
        for block in a.unit_offsets:
            np.testing.assert_array_equal(a.unit_offsets[block], b.unit_offsets[block])
        for key, array in a.arrays.items():
            other = b.arrays[key]
            assert (array.dtype, array.chunk, array.size) == (other.dtype, other.chunk, other.size)
            for field in ("offsets", "data_offsets", "sizes", "crcs"):
                np.testing.assert_array_equal(getattr(array, field), getattr(other, field), err_msg=f"{key} {field}")
        assert_same_tables(read_all(indexed, dataset), read_all(by_directory, dataset))


def test_a_shard_written_before_the_index_reads_by_its_directory(ak4_zarr, tmp_path):
    dataset = Dataset.open(str(ak4_zarr))
    shard = dataset.manifest.shards[0]
    old = rebuilt(ak4_zarr / shard.path, index=False)
    with zipfile.ZipFile(ak4_zarr / shard.path) as handle:
        index_bytes = handle.getinfo(chunk_index.NAME).file_size
    stored = shard.bytes
    assert zipfile.ZipFile(ak4_zarr / shard.path).comment and len(old) < stored
    print(f"index member {index_bytes} B of a {stored} B shard")
    forget_shard_metadata()
    expected = dataset.read_shard(shard)
    assert_same_tables(read_all(reader_of(dataset, shard, old, tmp_path), dataset), expected)


@pytest.mark.parametrize("comment", [b"jetstore.chunk_index/2 offset=1 size=2 crc=00000000 future",
                                     b"written by another tool"])
def test_a_comment_not_of_this_version_sends_the_reader_to_the_directory(ak4_zarr, tmp_path, comment):
    dataset = Dataset.open(str(ak4_zarr))
    shard = dataset.manifest.shards[0]
    data = with_comment((ak4_zarr / shard.path).read_bytes(), comment)
    assert_same_tables(read_all(reader_of(dataset, shard, data, tmp_path), dataset), dataset.read_shard(shard))


def test_a_damaged_index_is_named(ak4_zarr, tmp_path):
    dataset = Dataset.open(str(ak4_zarr))
    shard = dataset.manifest.shards[0]
    path = ak4_zarr / shard.path
    data = path.read_bytes()
    where = chunk_index.pointer(zipfile.ZipFile(path).comment, len(data))
    assert where is not None
    flipped = bytearray(data)
    flipped[where.offset + where.size // 2] ^= 0x10
    damaged = f"shard {shard.path} is damaged"
    with pytest.raises(DatasetError, match=f"{damaged} \\(its chunk index fails its CRC check\\)"):
        reader_of(dataset, shard, bytes(flipped), tmp_path)
    moved = with_comment(data, f"jetstore.chunk_index/1 offset={where.offset + 1} size={where.size} "
                               f"crc={where.crc:08x}".encode())
    with pytest.raises(DatasetError, match=f"{damaged} \\(its chunk index fails its CRC check\\)"):
        reader_of(dataset, shard, moved, tmp_path)
    with pytest.raises(DatasetError, match=f"{damaged} \\(its chunk index pointer is malformed"):
        reader_of(dataset, shard, with_comment(data, b"jetstore.chunk_index/1 offset=12"), tmp_path)


@pytest.mark.parametrize("lie", ["crcs", "sizes"])
def test_an_index_that_lies_gives_no_wrong_jets(ak4_zarr, tmp_path, lie):
    """An index with a valid CRC but two chunks' CRCs (or stored sizes, so the offsets between them shift)
    swapped: the chunks' own checks name the shard when they are read."""
    dataset = Dataset.open(str(ak4_zarr))
    shard = dataset.manifest.shards[0]

    def swapped(entries: archive.Entries) -> dict:
        values = getattr(entries, lie).copy()
        i = int(np.argmax(values[1:] != values[0])) + 1  # a chunk whose value differs from the first's
        values[[0, i]] = values[[i, 0]]
        return {lie: values}

    data = rebuilt(ak4_zarr / shard.path, lie=swapped)
    with pytest.raises(DatasetError, match=f"shard {shard.path} is damaged \\((chunk|zip entry) "):
        read_all(reader_of(dataset, shard, data, tmp_path), dataset)


def test_the_index_of_a_zip64_archive_is_its_directory(tmp_path):
    """More than 65,535 entries (zip64 end records, as a 250k-jet shard has): the index gives the directory's
    entries, field by field, and zipfile reads the archive with its comment."""
    n = 70_000
    keys = ["jets/a", "pfcand/b"]
    key_ids = np.arange(n) % 2
    names = [f"{keys[k]}/c/{i}" for k, i in zip(key_ids.tolist(), (np.arange(n) // 2).tolist(), strict=True)]
    chunks = zip_entries(names, [bytes([i % 251]) * (1 + i % 37) for i in range(n)])
    documents = zip_entries(["zarr.json"], [b'{"zarr_format": 3, "node_type": "group", "attributes": {}}'])
    member, pointer = chunk_index.build(chunks, keys, key_ids, documents)
    path = tmp_path / "many.zip"
    archive.write_zip(path, [chunks, member, documents], pointer)
    data = path.read_bytes()
    tail_start = len(data) - (1 << 16)
    count, offset, size = directory.locate(data[tail_start:], tail_start, len(data))
    by_directory = directory.parse(data[offset:offset + size], count)
    where = chunk_index.pointer(directory.comment(data[tail_start:]), offset)
    assert where is not None and count == n + 2
    by_index = chunk_index.entries(data[where.offset:where.offset + where.size], where, count, offset)
    for field in ("offsets", "sizes", "file_sizes", "methods", "crcs", "name_lengths", "numbers"):
        np.testing.assert_array_equal(getattr(by_index, field), getattr(by_directory, field), err_msg=field)
    for entries in (by_index, by_directory):
        assert [entries.keys[k] for k in entries.key_ids[:n]] == [keys[k] for k in key_ids]
    assert by_index.others == by_directory.others == {n: chunk_index.NAME, n + 1: "zarr.json"}
    assert where.size < 0.15 * size  # the directory holds 46 bytes and a name per entry
    with zipfile.ZipFile(path) as handle:
        assert handle.comment == pointer and handle.read(names[-1]) == bytes([(n - 1) % 251]) * (1 + (n - 1) % 37)
