"""The Zarr chunk decoder gives the same bytes and finds the same damage with c-blosc's C functions (the GIL-free
kernel) and without them (the fallback: ``zlib.crc32`` and ``numcodecs.blosc.decompress``); the kernel unframes
every frame jetstore's writer makes itself."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from numcodecs import Blosc

from jetstore.formats.zarr import chunks
from jetstore.formats.zarr.chunks import BAD_CRC, BAD_DATA, BAD_HEADER, BAD_SIZE, NOT_MINE, OK, SHORT
from jetstore.formats.zarr.encode import Codec, encode_chunks

VALUES = [np.arange(1000, dtype="f4") * 0.5, np.arange(300, dtype="i8") % 7, np.linspace(-1, 1, 64).astype("f8"),
          np.zeros(5, "i2")]  # the last stored as it is (too small to compress)


def archive(frames: list[bytes], names: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Zip local entries (header, name, stored frame) back to back, and where each starts."""
    out, headers = b"", []
    for name, frame in zip(names, frames, strict=True):
        headers.append(len(out))
        out += b"PK\x03\x04" + bytes(22) + len(name).to_bytes(2, "little") + bytes(2) + name + frame
    return np.frombuffer(out, np.uint8).copy(), np.array(headers, np.int64)


def decode(frames: list[bytes], sizes_out: list[int], buffer: np.ndarray | None = None,
           crcs: list[int] | None = None) -> tuple[tuple[int, int], bytes]:
    names = [f"a/c/{i}".encode() for i in range(len(frames))]
    packed, headers = archive(frames, names)
    buffer = packed if buffer is None else buffer
    starts = np.concatenate([[0], np.cumsum(sizes_out)[:-1]]).astype(np.int64)
    out = np.zeros(sum(sizes_out), np.uint8)
    result = chunks.decode_chunks(buffer, headers, np.array([len(n) for n in names], np.int64),
                                  np.array([len(f) for f in frames], np.int64),
                                  np.array(crcs if crcs is not None else [zlib.crc32(f) for f in frames], np.uint64),
                                  out, starts, np.array(sizes_out, np.int64))
    return (int(result[0]), int(result[1])), out.tobytes()


@pytest.fixture(params=["c-blosc", "fallback"])
def path(request, monkeypatch) -> str:
    if request.param == "fallback":
        monkeypatch.setattr(chunks, "FUNCTIONS", None)
    else:
        assert chunks.FUNCTIONS is not None  # this machine has the fast path: both are compared
    return request.param


def frames_of(codec: Blosc) -> tuple[list[bytes], list[int]]:
    return [codec.encode(v) for v in VALUES], [v.nbytes for v in VALUES]


@pytest.mark.parametrize("codec", [Blosc("zstd", 1, Blosc.SHUFFLE), Blosc("lz4", 5, Blosc.BITSHUFFLE)])
def test_both_paths_decode_numcodecs_frames_to_the_same_bytes(path, codec):
    frames, sizes = frames_of(codec)
    result, out = decode(frames, sizes)
    assert result == (-1, OK)
    assert out == b"".join(v.tobytes() for v in VALUES)


@pytest.mark.parametrize("shuffle", [Blosc.NOSHUFFLE, Blosc.SHUFFLE, Blosc.BITSHUFFLE])
@pytest.mark.parametrize("dtype", ["u1", "i2", "S3", "f4", "i8"])
def test_the_writers_frames_are_unframed_in_the_kernel_to_numcodecs_bytes(shuffle, dtype):
    """Stored, zstd and raw-stream frames, byte and bit shuffles, element counts off a multiple of 8 included."""
    rng = np.random.default_rng(7)
    for n in (1, 7, 8, 64, 100, 256, 1000):
        for values in (rng.normal(scale=50, size=n).astype(dtype), (np.arange(n) % 5).astype(dtype)):
            encoded = encode_chunks(values, n, Codec("zstd", 1, shuffle, 1 << 18))
            frame = encoded.data[encoded.offsets[0]:encoded.offsets[0] + encoded.sizes[0]]
            target = np.zeros(values.nbytes, np.uint8)
            kernel = chunks._unframe(frame, target, np.empty(values.nbytes, np.uint8),
                                     np.empty(values.nbytes, np.uint8), chunks._zstd_context(), chunks.FUNCTIONS[2])
            if shuffle == Blosc.BITSHUFFLE and n % 8 and frame[2] & 0x2 == 0:
                assert kernel == NOT_MINE  # c-blosc leaves these bytes as they are: c-blosc decodes them
                continue
            assert kernel == OK, (n, values[:4])
            assert target.tobytes() == values.tobytes()
            result, out = decode([frame.tobytes()], [values.nbytes])
            assert result == (-1, OK) and out == values.tobytes()


def damaged(case: str) -> dict:
    frames, sizes = frames_of(Blosc("zstd", 1, Blosc.SHUFFLE))
    packed, headers = archive(frames, [f"a/c/{i}".encode() for i in range(len(frames))])
    if case == "crc":
        return {"frames": frames, "sizes_out": sizes, "crcs": [zlib.crc32(f) ^ (i == 2) for i, f in enumerate(frames)]}
    if case == "header":
        packed[headers[1]] = ord("Q")
        return {"frames": frames, "sizes_out": sizes, "buffer": packed}
    if case == "short":
        return {"frames": frames, "sizes_out": sizes, "buffer": packed[:-10]}
    if case == "size":  # the output place is smaller than the frame's decoded size
        return {"frames": frames, "sizes_out": [sizes[0] - 4, *sizes[1:]]}
    body = bytearray(frames[1])  # a valid header over bytes that are not a block ("payload", for c-blosc) or
    start = 16 if case == "payload" else 24  # over a block whose zstd stream is not zstd (the kernel's own path)
    body[start:] = b"\xff" * (len(body) - start)
    return {"frames": [frames[0], bytes(body), *frames[2:]], "sizes_out": sizes}


@pytest.mark.parametrize(("case", "expected"), [("crc", (2, BAD_CRC)), ("header", (1, BAD_HEADER)),
                                                ("short", (3, SHORT)), ("size", (0, BAD_SIZE)),
                                                ("payload", (1, BAD_DATA)), ("stream", (1, BAD_DATA))])
def test_both_paths_find_the_same_damage(path, case, expected):
    result, _ = decode(**damaged(case))
    assert result == expected
