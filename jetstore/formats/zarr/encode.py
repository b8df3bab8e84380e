"""Blosc-encoding every chunk of an array in one call, without holding the GIL, with zip CRCs.

A 100k-jet shard of 256-jet units holds ~30,000 chunks of 1-16 KiB. Encoded one ``numcodecs`` call each, a
chunk costs a Python round trip and, inside c-blosc 1, a fresh zstd context (``ZSTD_compress``): ~50 µs for a
1 KiB chunk, half of it setting up the context. Here a numba kernel walks an array's chunks and writes each as a
Blosc frame:

- zstd (the default codec) in one block, as c-blosc frames it (header, block start, stream size, stream; or
  the chunk stored as it is when it does not compress), with the byte or bit shuffle done in the kernel and
  one zstd context reused for every chunk;
- any other codec, or a chunk larger than one Blosc block, through ``blosc_compress_ctx``.

Both give exactly the bytes ``numcodecs.Blosc(...).encode(chunk)`` gives (tests/test_zarr_encode.py checks it
for every dtype, shuffle and codec), so shards stay byte-for-byte deterministic whichever path wrote them, and
any Blosc reader decodes them. Where the C functions cannot be found, numcodecs encodes chunk by chunk.
"""

from __future__ import annotations

import ctypes
import threading
import zlib
from dataclasses import dataclass

import numba
import numpy as np
from numcodecs import Blosc

from jetstore.formats.zarr.ccall import INT, POINTER, SIZE, address, blosc_library, c_call, crc32, zlib_crc32
from jetstore.formats.zarr.frame import (
    BIT_SHUFFLE,
    BYTE_SHUFFLE,
    DONT_SPLIT,
    HEADER,
    MEMCPYED,
    ZSTD_FORMAT,
    bit_shuffle,
    byte_shuffle,
    write_header,
    write_u32,
)

MIN_BUFFER = 128  # c-blosc stores smaller chunks as they are
BLOCK_LIMIT = 1 << 18  # jetstore's Blosc block (the writer's blocksize): a chunk up to this is one block
ZSTD_MAX_LEVEL = 22


@dataclass(frozen=True)
class Codec:
    """A Blosc codec as the writer configures it: compressor name, level, shuffle and block size."""

    cname: str
    clevel: int
    shuffle: int
    blocksize: int

    def numcodecs(self) -> Blosc:
        return Blosc(cname=self.cname, clevel=self.clevel, shuffle=self.shuffle, blocksize=self.blocksize)


@dataclass(frozen=True)
class Encoded:
    """Encoded chunks: chunk i is ``data[offsets[i]:offsets[i] + sizes[i]]``, its zip CRC-32 ``crcs[i]``."""

    data: np.ndarray
    offsets: np.ndarray
    sizes: np.ndarray
    crcs: np.ndarray


def _c_functions():
    """The addresses of (blosc_compress_ctx, ZSTD_compressCCtx, ZSTD_isError, crc32) and ZSTD_createCCtx as a
    ctypes function, or None."""
    try:
        library = blosc_library()
        addresses = tuple(address(function) for function in (library.blosc_compress_ctx, library.ZSTD_compressCCtx,
                                                              library.ZSTD_isError, zlib_crc32()))
        create = library.ZSTD_createCCtx
    except (OSError, AttributeError):
        return None
    create.argtypes, create.restype = [], ctypes.c_void_p
    return addresses, create


_blosc_compress = c_call(INT, [INT, INT, SIZE, SIZE, POINTER, POINTER, SIZE, POINTER, SIZE, INT])  # blosc_compress_ctx
_zstd_compress = c_call(SIZE, [POINTER, POINTER, SIZE, POINTER, SIZE, INT])  # ZSTD_compressCCtx(context, ..., level)
_zstd_is_error = c_call(INT, [SIZE])

FUNCTIONS = _c_functions()
_CONTEXTS = threading.local()  # one zstd context per thread (a context is not thread-safe), kept for the process


def capacity(n_values: int, chunk: int, itemsize: int) -> int:
    """The most bytes :func:`encode_chunks` writes for ``n_values`` values in chunks of ``chunk``."""
    return n_values // chunk * (chunk * itemsize + HEADER)


def encode_chunks(values: np.ndarray, chunk: int, codec: Codec, out: np.ndarray | None = None) -> Encoded:
    """Encode ``values`` (1-D, a whole number of chunks of ``chunk`` items) chunk by chunk, into ``out`` (bytes,
    at least :func:`capacity`; a new buffer when None)."""
    values = np.ascontiguousarray(values)
    typesize = values.dtype.itemsize
    n_chunks = len(values) // chunk
    width = chunk * typesize
    sizes = np.zeros(n_chunks, np.int64)
    crcs = np.zeros(n_chunks, np.uint32)
    offsets = np.arange(n_chunks, dtype=np.int64) * (width + HEADER)
    if out is None:
        out = np.empty(capacity(len(values), chunk, typesize), np.uint8)
    if FUNCTIONS is None:
        return _encode_in_python(values, chunk, codec, out, offsets, sizes, crcs)
    addresses, create = FUNCTIONS
    context = getattr(_CONTEXTS, "zstd", None)
    if context is None:
        context = _CONTEXTS.zstd = np.uint64(create())
    name = np.frombuffer(codec.cname.encode() + b"\0", np.uint8)
    failed = _encode(values.view(np.uint8), width, typesize, codec.clevel, codec.shuffle, codec.blocksize,
                     codec.cname == "zstd" and width <= min(codec.blocksize, BLOCK_LIMIT), name, context, out,
                     offsets, sizes, crcs, *addresses)
    if failed >= 0:
        raise RuntimeError(f"Blosc could not encode chunk {failed} ({codec})")
    return Encoded(out, offsets, sizes, crcs)


def _encode_in_python(values: np.ndarray, chunk: int, codec: Codec, out: np.ndarray, offsets: np.ndarray,
                      sizes: np.ndarray, crcs: np.ndarray) -> Encoded:
    encoder = codec.numcodecs()
    for i, start in enumerate(offsets.tolist()):
        frame = encoder.encode(values[i * chunk:(i + 1) * chunk])
        out[start:start + len(frame)] = np.frombuffer(frame, np.uint8)
        sizes[i], crcs[i] = len(frame), zlib.crc32(frame)
    return Encoded(out, offsets, sizes, crcs)


@numba.njit(cache=True, nogil=True)
def _encode(data, width, typesize, clevel, shuffle, blocksize, framed, name, context, out, offsets, sizes, crcs,
            compress, zstd, is_error, crc32_address):  # pragma: no cover
    """Encode every ``width``-byte chunk of ``data`` into ``out[offsets[i]:]``; -1, or the chunk that failed."""
    scratch = np.empty(width, np.uint8)
    level = clevel * 2 - 1 if clevel < 9 else ZSTD_MAX_LEVEL
    flags = DONT_SPLIT | (ZSTD_FORMAT << 5) | (BYTE_SHUFFLE if shuffle == 1 else BIT_SHUFFLE if shuffle == 2 else 0)
    for i in range(len(offsets)):
        source = data[i * width:(i + 1) * width]
        frame = out[offsets[i]:offsets[i] + width + HEADER]
        if not framed:
            size = _blosc_compress(compress, np.uint64(clevel), np.uint64(shuffle), np.uint64(typesize),
                                   np.uint64(width), np.uint64(source.ctypes.data), np.uint64(frame.ctypes.data),
                                   np.uint64(width + HEADER), np.uint64(name.ctypes.data), np.uint64(blocksize),
                                   np.uint64(1))
            if size <= 0:
                return i
        else:
            size = 0
            if clevel > 0 and width >= MIN_BUFFER:
                if shuffle == 1 and typesize > 1:
                    byte_shuffle(source, scratch, typesize)
                    stream = scratch
                elif shuffle == 2 and width >= typesize:
                    bit_shuffle(source, scratch, typesize)
                    stream = scratch
                else:
                    stream = source
                written = _zstd_compress(zstd, context, np.uint64(frame[24:].ctypes.data), np.uint64(width - 8),
                                         np.uint64(stream.ctypes.data), np.uint64(width), np.uint64(level))
                if _zstd_is_error(is_error, np.uint64(written)) == 0 and written > 0:
                    write_header(frame, flags, typesize, width, 24 + written)
                    write_u32(frame, 16, 20)
                    write_u32(frame, 20, written)
                    size = 24 + written
            if size == 0:  # stored as it is
                write_header(frame, flags | MEMCPYED, typesize, width, width + HEADER)
                frame[HEADER:HEADER + width] = source
                size = width + HEADER
        sizes[i] = size
        crcs[i] = crc32(crc32_address, np.uint64(0), np.uint64(frame.ctypes.data), np.uint64(size))
    return -1
