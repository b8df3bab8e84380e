"""The Zarr writer's batched Blosc encoder gives exactly numcodecs' bytes (every dtype, shuffle, codec, level and
chunk size, with or without the C functions), and its one-pass zip writer gives archives zipfile, zarr and
jetstore's directory parser read (zip64 end records beyond 65,535 entries included)."""

from __future__ import annotations

import json
import zipfile
import zlib

import numpy as np
import pytest
import zarr
from numcodecs import Blosc

from jetstore.formats.zarr import archive, directory, encode
from jetstore.formats.zarr.encode import Codec, encode_chunks
from tests.helpers import zip_entries


def frames(values: np.ndarray, chunk: int, codec: Codec) -> list[bytes]:
    out = encode_chunks(values, chunk, codec)
    chunks = [out.data[a:a + n].tobytes() for a, n in zip(out.offsets, out.sizes, strict=True)]
    assert out.crcs.tolist() == [zlib.crc32(c) for c in chunks]
    return chunks


def sample(dtype: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if dtype == "?":
        values = rng.random(n) < 0.2
    elif dtype[0] == "f":
        values = (rng.normal(size=n) * rng.choice([1, 100], n)).astype(dtype)
    else:
        values = rng.integers(-3 if dtype[0] == "i" else 0, 50, n).astype(dtype)
    values[: n // 3] = 0  # a chunk of padding
    return values


@pytest.mark.parametrize("dtype", ["f4", "f8", "f2", "i1", "i2", "i4", "i8", "u1", "u2", "?"])
def test_frames_are_numcodecs_frames(dtype):
    rng = np.random.default_rng(3)
    for chunk in (8, 100, 256, 4096, 40000):  # stored as is (< 128 bytes), not a multiple of 8, one block, two
        values = sample(dtype, chunk * 3, rng)
        for cname, clevel, shuffle in (("zstd", 1, Blosc.SHUFFLE), ("zstd", 1, Blosc.BITSHUFFLE),
                                       ("zstd", 5, Blosc.NOSHUFFLE), ("zstd", 9, Blosc.BITSHUFFLE),
                                       ("zstd", 0, Blosc.SHUFFLE), ("lz4", 1, Blosc.SHUFFLE),
                                       ("lz4", 1, Blosc.BITSHUFFLE)):
            codec = Codec(cname, clevel, shuffle, 1 << 18)
            expected = [codec.numcodecs().encode(values[i * chunk:(i + 1) * chunk]) for i in range(3)]
            assert frames(values, chunk, codec) == expected, (dtype, chunk, codec)


def test_incompressible_chunks_are_stored_as_they_are():
    values = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)
    codec = Codec("zstd", 1, Blosc.NOSHUFFLE, 1 << 18)
    (frame,) = frames(values, 4096, codec)
    assert frame == codec.numcodecs().encode(values) and len(frame) == 4096 + 16 and frame[2] & 0x2  # memcpyed


def test_without_the_c_functions_numcodecs_encodes(monkeypatch):
    values = sample("f4", 3 * 256, np.random.default_rng(2))
    codec = Codec("zstd", 1, Blosc.SHUFFLE, 1 << 18)
    fast = frames(values, 256, codec)
    monkeypatch.setattr(encode, "FUNCTIONS", None)
    assert frames(values, 256, codec) == fast


@pytest.mark.slow
def test_a_zarr_array_written_in_one_pass_reads_back(tmp_path):
    values = np.arange(1000, dtype=np.float32)
    codec = Codec("zstd", 1, Blosc.SHUFFLE, 1 << 18)
    chunks = encode_chunks(np.concatenate([values, np.zeros(24, np.float32)]), 256, codec)
    document = zarr.create_array(zarr.storage.MemoryStore(), shape=(1000,), chunks=(256,), dtype="f4", fill_value=0,
                                 compressors=zarr.codecs.BloscCodec(cname="zstd", clevel=1, shuffle="shuffle",
                                                                    blocksize=1 << 18)).metadata.to_dict()
    metadata = {"": b'{"zarr_format": 3, "node_type": "group", "attributes": {}}', "x": json.dumps(document).encode()}
    path = tmp_path / "a.zip"
    archive.write_zip(path, [archive.Entries([f"x/c/{i}" for i in range(4)], chunks.data, chunks.offsets,
                                             chunks.sizes, chunks.crcs),
                             zip_entries([f"{k}/zarr.json".lstrip("/") for k in metadata], list(metadata.values()))])
    with zipfile.ZipFile(path) as handle:
        assert handle.testzip() is None and len(handle.infolist()) == 6
        assert all(i.compress_type == zipfile.ZIP_STORED and i.date_time == (1980, 1, 1, 0, 0, 0)
                   for i in handle.infolist())
    group = zarr.open_group(zarr.storage.ZipStore(path, mode="r"), mode="r")
    np.testing.assert_array_equal(group["x"][:], values)


def test_more_than_65535_entries_get_zip64_end_records(tmp_path):
    payloads = [f"{i}".encode() for i in range(70_000)]
    path = tmp_path / "many.zip"
    archive.write_zip(path, [zip_entries([f"a/c/{i}" for i in range(70_000)], payloads)])
    with zipfile.ZipFile(path) as handle:
        infos = handle.infolist()
        assert len(infos) == 70_000 and handle.read(infos[-1]) == b"69999"
    data = path.read_bytes()
    count, offset, size = directory.locate(data[-(1 << 16):], len(data) - (1 << 16), len(data))
    parsed = directory.parse(data[offset:offset + size], count)
    assert count == 70_000 and parsed.numbers[-1] == 69_999 and parsed.sizes[-1] == 5
