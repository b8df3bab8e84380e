"""Checking and decoding many zip-stored Blosc chunks in one call without holding the GIL.

A numba kernel walks the chunks of a fetched byte range: it checks each zip local header, the chunk's
CRC-32 (zlib's ``crc32``) and Blosc-decompresses it (``blosc_decompress_ctx`` from the c-blosc that
numcodecs ships) straight into the output. Reader threads then decode in parallel. Where either C
function cannot be found, a Python loop over ``zlib.crc32`` and ``numcodecs.blosc.decompress`` does the same.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import zlib

import numba
import numpy as np
from numcodecs import blosc

LOCAL_HEADER_SIZE = 30
OK, BAD_HEADER, BAD_CRC, BAD_DATA, SHORT = 0, 1, 2, 3, 4
PROBLEMS = {BAD_HEADER: "bad zip entry header", BAD_CRC: "fails its CRC check", BAD_DATA: "does not decode",
            SHORT: "is cut short"}


def _c_functions():
    """(blosc_decompress_ctx, crc32) as ctypes functions, or None."""
    try:
        decompress = ctypes.CDLL(blosc.__file__).blosc_decompress_ctx
        crc32 = ctypes.CDLL(ctypes.util.find_library("z") or "libz.so.1").crc32
    except (OSError, AttributeError):
        return None
    decompress.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    decompress.restype = ctypes.c_int
    crc32.argtypes = [ctypes.c_ulong, ctypes.c_void_p, ctypes.c_uint]
    crc32.restype = ctypes.c_ulong
    return decompress, crc32


FUNCTIONS = _c_functions()

if FUNCTIONS is not None:
    _decompress, _crc32 = FUNCTIONS

    @numba.njit(nogil=True)  # not cached: it calls C functions through ctypes pointers
    def _decode_chunks(buffer, headers, name_lengths, sizes, crcs, out, out_starts, out_sizes):  # pragma: no cover
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
            if _crc32(0, buffer[start:].ctypes.data, sizes[i]) != crcs[i]:
                return i, BAD_CRC
            if _decompress(buffer[start:].ctypes.data, out[out_starts[i]:].ctypes.data, out_sizes[i], 1) < 0:
                return i, BAD_DATA
        return -1, OK


def decode_chunks(buffer: np.ndarray, headers: np.ndarray, name_lengths: np.ndarray, sizes: np.ndarray,
                  crcs: np.ndarray, out: np.ndarray, out_starts: np.ndarray, out_sizes: np.ndarray) -> tuple[int, int]:
    """Check and decode chunk i (local header at ``buffer[headers[i]]``) into ``out[out_starts[i]:]``
    (``out_sizes[i]`` bytes): ``(-1, OK)``, or the first failing chunk and its problem."""
    if FUNCTIONS is not None:
        return _decode_chunks(buffer, headers, name_lengths, sizes, crcs, out, out_starts, out_sizes)
    view = memoryview(buffer)
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
        try:
            blosc.decompress(data, out[out_starts[i]:out_starts[i] + out_sizes[i]])
        except Exception:
            return i, BAD_DATA
    return -1, OK
