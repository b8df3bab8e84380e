"""The numba zip-directory parser of Zarr shards against :mod:`zipfile` (the reference), including the zip64 end
records a shard of more than 65,535 chunks gets."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from jetstore.formats.zarr import directory


def _zip(names: list[str], comment: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index, name in enumerate(names):
            archive.writestr(name, bytes([index % 256]) * (index % 7))
        archive.comment = comment
    return buffer.getvalue()


def _entries(data: bytes) -> directory.Entries:
    count, offset, size = directory.locate(data, 0, len(data))
    return directory.parse(data[offset:offset + size], count)


@pytest.mark.parametrize("chunks", [10, 70_000])  # 70,000: zip64 end records
def test_the_directory_is_zipfile_s(chunks):
    names = ["zarr.json", "jets/jet_pt/zarr.json", *(f"jets/jet_pt/c/{i}" for i in range(chunks // 2)),
             *(f"pfcand/pfcand_eta/c/{i}" for i in range(chunks - chunks // 2)), "jets/c/x", "odd/c/"]
    data = _zip(names, comment=b"a comment")
    infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    entries = _entries(data)
    assert len(entries) == len(infos)
    np.testing.assert_array_equal(entries.offsets, [i.header_offset for i in infos])
    np.testing.assert_array_equal(entries.sizes, [i.compress_size for i in infos])
    np.testing.assert_array_equal(entries.crcs, np.array([i.CRC for i in infos], np.uint32))
    np.testing.assert_array_equal(entries.name_lengths, [len(i.filename) for i in infos])
    assert sorted(entries.keys) == ["jets/jet_pt", "pfcand/pfcand_eta"]
    parsed = [f"{entries.keys[k]}/c/{n}" if n >= 0 else entries.others[i]
              for i, (k, n) in enumerate(zip(entries.key_ids, entries.numbers, strict=True))]
    assert parsed == names  # not chunks: the documents, a non-numeric and an empty chunk number


@pytest.mark.slow
def test_a_broken_directory_is_one_clear_error():
    data = _zip(["zarr.json", "a/c/0", "a/c/1"])
    count, offset, size = directory.locate(data, 0, len(data))
    with pytest.raises(directory.DirectoryError, match="cut short"):
        directory.parse(data[offset:offset + size - 10], count)
    garbled = bytearray(data)
    garbled[offset] ^= 0xFF
    with pytest.raises(directory.DirectoryError, match="bad entry header"):
        directory.parse(bytes(garbled[offset:offset + size]), count)
    with pytest.raises(directory.DirectoryError, match="not a zip file"):
        directory.locate(data[:-30], 0, len(data) - 30)
