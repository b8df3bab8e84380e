"""Checking and decoding many zip-stored Blosc chunks in one call without holding the GIL.

A numba kernel walks the chunks of a fetched byte range: it checks each zip local header, the chunk's
CRC-32 (zlib's ``crc32``) and Blosc-decompresses it (``blosc_decompress_ctx`` from the c-blosc that
numcodecs ships) straight into the output. Reader threads then decode in parallel. Where either C
function cannot be found, a Python loop over ``zlib.crc32`` and ``numcodecs.blosc.decompress`` does the same.

Nothing in a chunk is trusted: before decompressing, ``blosc_cbuffer_validate`` checks the Blosc header
against the chunk's stored size (the compressed size it claims must be exactly what the zip holds) and the
size it would decompress to must be exactly the chunk's place in the output (its array's chunk shape times
the item size); decompression is given that size as its limit and must fill it exactly. A chunk crafted to
make c-blosc read past its bytes or write past its place is refused before c-blosc runs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import struct
import zlib

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic
from numcodecs import blosc

LOCAL_HEADER_SIZE = 30
BLOSC_HEADER_SIZE = 16
OK, BAD_HEADER, BAD_CRC, BAD_DATA, SHORT, BAD_SIZE = 0, 1, 2, 3, 4, 5
PROBLEMS = {BAD_HEADER: "bad zip entry header", BAD_CRC: "fails its CRC check", BAD_DATA: "does not decode",
            SHORT: "is cut short", BAD_SIZE: "has a Blosc header whose sizes do not fit the chunk"}


def _c_functions():
    """The addresses of (blosc_decompress_ctx, blosc_cbuffer_validate, crc32), or None."""
    try:
        library = ctypes.CDLL(blosc.__file__)
        decompress, validate = library.blosc_decompress_ctx, library.blosc_cbuffer_validate
        crc32 = ctypes.CDLL(ctypes.util.find_library("z") or "libz.so.1").crc32
    except (OSError, AttributeError):
        return None
    return tuple(np.uint64(ctypes.cast(function, ctypes.c_void_p).value) for function in (decompress, validate, crc32))


FUNCTIONS = _c_functions()
_BYTE_POINTER = ir.IntType(8).as_pointer()


def _c_call(result: ir.IntType, arguments: list[ir.Type]):
    """An intrinsic calling the C function at an address with integer arguments (pointers as addresses). The
    address is an argument, not a constant, so kernels calling it are cached; integers passed this way cost
    the dispatcher nothing (ctypes function objects took ~0.7 ms to type per call)."""
    signature = types.int64(types.uint64, *[types.uint64] * len(arguments))

    def codegen(context, builder, _, args):
        function = builder.inttoptr(args[0], ir.FunctionType(result, arguments).as_pointer())
        converted = [builder.inttoptr(value, kind) if isinstance(kind, ir.PointerType)
                     else builder.trunc(value, kind) if kind.width < 64 else value
                     for value, kind in zip(args[1:], arguments, strict=True)]
        returned = builder.call(function, converted)
        return builder.sext(returned, ir.IntType(64)) if result.width < 64 else returned

    if len(arguments) == 3:
        @intrinsic
        def call(typingctx, address, a, b, c):
            return signature, codegen
    else:
        @intrinsic
        def call(typingctx, address, a, b, c, d):
            return signature, codegen
    return call


_decompress = _c_call(ir.IntType(32), [_BYTE_POINTER, _BYTE_POINTER, ir.IntType(64), ir.IntType(32)])
_validate = _c_call(ir.IntType(32), [_BYTE_POINTER, ir.IntType(64), _BYTE_POINTER])
_crc32 = _c_call(ir.IntType(64), [ir.IntType(64), _BYTE_POINTER, ir.IntType(32)])


@numba.njit(cache=True, nogil=True)  # the C functions' addresses are arguments (not globals): the code is cached
def _decode_chunks(buffer, headers, name_lengths, sizes, crcs, out, out_starts, out_sizes,
                   decompress, validate, crc32):  # pragma: no cover
    claimed = np.zeros(1, np.uint64)
    one = np.uint64(1)
    for i in range(len(headers)):
        h = headers[i]
        if h + LOCAL_HEADER_SIZE > len(buffer):
            return i, SHORT
        if not (buffer[h] == 0x50 and buffer[h + 1] == 0x4B and buffer[h + 2] == 3 and buffer[h + 3] == 4):
            return i, BAD_HEADER
        name_length = np.int64(buffer[h + 26]) | (np.int64(buffer[h + 27]) << 8)
        extra = np.int64(buffer[h + 28]) | (np.int64(buffer[h + 29]) << 8)
        if name_length != name_lengths[i]:
            return i, BAD_HEADER
        start = h + LOCAL_HEADER_SIZE + name_length + extra
        if start + sizes[i] > len(buffer):
            return i, SHORT
        data = np.uint64(buffer[start:].ctypes.data)
        if np.uint64(_crc32(crc32, np.uint64(0), data, np.uint64(sizes[i]))) != crcs[i]:
            return i, BAD_CRC
        if out_starts[i] < 0 or out_starts[i] + out_sizes[i] > len(out) or sizes[i] < BLOSC_HEADER_SIZE:
            return i, BAD_SIZE
        if _validate(validate, data, np.uint64(sizes[i]), np.uint64(claimed.ctypes.data)) != 0 \
                or claimed[0] != out_sizes[i]:
            return i, BAD_SIZE
        target = np.uint64(out[out_starts[i]:].ctypes.data)
        if _decompress(decompress, data, target, np.uint64(out_sizes[i]), one) != out_sizes[i]:
            return i, BAD_DATA
    return -1, OK


def decode_chunks(buffer: np.ndarray, headers: np.ndarray, name_lengths: np.ndarray, sizes: np.ndarray,
                  crcs: np.ndarray, out: np.ndarray, out_starts: np.ndarray, out_sizes: np.ndarray) -> tuple[int, int]:
    """Check and decode chunk i (local header at ``buffer[headers[i]]``) into ``out[out_starts[i]:]``
    (``out_sizes[i]`` bytes): ``(-1, OK)``, or the first failing chunk and its problem."""
    if FUNCTIONS is not None:
        return _decode_chunks(buffer, headers, name_lengths, sizes, crcs, out, out_starts, out_sizes, *FUNCTIONS)
    view = buffer.data
    for i in range(len(headers)):
        h = int(headers[i])
        header = bytes(view[h:h + LOCAL_HEADER_SIZE])
        if len(header) < LOCAL_HEADER_SIZE:
            return i, SHORT
        name_length = int.from_bytes(header[26:28], "little")
        if header[:4] != b"PK\x03\x04" or name_length != name_lengths[i]:
            return i, BAD_HEADER
        start = h + LOCAL_HEADER_SIZE + name_length + int.from_bytes(header[28:30], "little")
        data = view[start:start + int(sizes[i])]
        if len(data) < sizes[i]:
            return i, SHORT
        if zlib.crc32(data) != crcs[i]:
            return i, BAD_CRC
        if not _sizes_fit(bytes(data[:BLOSC_HEADER_SIZE]), len(data), int(out_sizes[i])) \
                or out_starts[i] + out_sizes[i] > len(out):
            return i, BAD_SIZE
        try:
            blosc.decompress(data, out[out_starts[i]:out_starts[i] + out_sizes[i]])
        except Exception:
            return i, BAD_DATA
    return -1, OK


def _sizes_fit(header: bytes, stored: int, expected: int) -> bool:
    """What ``blosc_cbuffer_validate`` checks, plus the decoded size: the header claims exactly ``stored``
    compressed bytes and ``expected`` decoded ones."""
    if len(header) < BLOSC_HEADER_SIZE:
        return False
    nbytes, _, cbytes = struct.unpack("<III", header[4:16])
    return cbytes == stored and nbytes == expected
