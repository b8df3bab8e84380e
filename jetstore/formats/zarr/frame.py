"""c-blosc 1's frame of one block, as jetstore writes it and reads it back: the header's fields and flags, and the
byte and bit shuffles both ways (numba, no GIL).

A frame is a 16-byte header (format version 2, codec format version, flags, item size, then as little-endian
32-bit words the decoded size, the block size and the frame's size), then either the data as it is (``MEMCPYED``)
or the block's start (20) and one stream: its size and its compressed bytes. Shuffled data holds byte j of
element i at ``j * n + i``; bit-shuffled data holds, per byte j and bit k, the bits of all elements in a row.
"""

from __future__ import annotations

import numba
import numpy as np

HEADER = 16  # a frame's header; a frame is never larger than its data plus this
BYTE_SHUFFLE, MEMCPYED, BIT_SHUFFLE, UNKNOWN_FLAG, DONT_SPLIT, ZSTD_FORMAT = 0x1, 0x2, 0x4, 0x8, 0x10, 4


@numba.njit(cache=True, nogil=True, inline="always")
def read_u32(b, at):  # pragma: no cover
    return np.int64(b[at]) | (np.int64(b[at + 1]) << 8) | (np.int64(b[at + 2]) << 16) | (np.int64(b[at + 3]) << 24)


@numba.njit(cache=True, nogil=True, inline="always")
def write_u32(b, at, value):  # pragma: no cover
    for k in range(4):
        b[at + k] = (value >> (8 * k)) & 0xFF


@numba.njit(cache=True, nogil=True)
def write_header(frame, flags, typesize, width, total):  # pragma: no cover
    frame[0], frame[1], frame[2], frame[3] = 2, 1, flags, typesize  # Blosc format 2, zstd format 1
    write_u32(frame, 4, width)
    write_u32(frame, 8, width)  # one block: the chunk
    write_u32(frame, 12, total)


@numba.njit(cache=True, nogil=True)
def byte_shuffle(source, out, typesize):  # pragma: no cover
    """Byte j of element i to ``out[j * n + i]`` (c-blosc's shuffle; chunks are whole elements)."""
    n = len(source) // typesize
    for i in range(n):
        for j in range(typesize):
            out[j * n + i] = source[i * typesize + j]


@numba.njit(cache=True, nogil=True)
def byte_unshuffle(shuffled, out, typesize):  # pragma: no cover
    """The inverse of :func:`byte_shuffle` (elements of 2, 4 and 8 bytes assembled as words, which the compiler
    vectorises: a 4 KiB chunk in ~0.3 µs, where a byte-by-byte loop takes 5 µs)."""
    n = len(out) // typesize
    if typesize == 4:
        words = out.view(np.uint32)
        for i in range(n):
            words[i] = (np.uint32(shuffled[i]) | (np.uint32(shuffled[n + i]) << 8)
                        | (np.uint32(shuffled[2 * n + i]) << 16) | (np.uint32(shuffled[3 * n + i]) << 24))
    elif typesize == 8:
        longs = out.view(np.uint64)
        for i in range(n):
            x = np.uint64(0)
            for j in range(8):
                x |= np.uint64(shuffled[j * n + i]) << np.uint64(8 * j)
            longs[i] = x
    elif typesize == 2:
        halves = out.view(np.uint16)
        for i in range(n):
            halves[i] = np.uint16(shuffled[i]) | (np.uint16(shuffled[n + i]) << 8)
    else:
        for j in range(typesize):
            for i in range(n):
                out[i * typesize + j] = shuffled[j * n + i]


@numba.njit(cache=True, nogil=True, inline="always")
def transpose8(x):  # pragma: no cover
    """The 8 × 8 bit matrix of ``x`` (row k: byte k) transposed; its own inverse."""
    t = (x ^ (x >> np.uint64(7))) & np.uint64(0x00AA00AA00AA00AA)
    x = x ^ t ^ (t << np.uint64(7))
    t = (x ^ (x >> np.uint64(14))) & np.uint64(0x0000CCCC0000CCCC)
    x = x ^ t ^ (t << np.uint64(14))
    t = (x ^ (x >> np.uint64(28))) & np.uint64(0x00000000F0F0F0F0)
    return x ^ t ^ (t << np.uint64(28))


@numba.njit(cache=True, nogil=True)
def bit_shuffle(source, out, typesize):  # pragma: no cover
    """c-blosc's bit shuffle: bit k of byte j of element i goes to bit ``i % 8`` of ``out[(8 * j + k) * n / 8 +
    i / 8]`` when the ``n`` elements are a multiple of 8 (else the bytes stay as they are)."""
    n = len(source) // typesize
    if n % 8:
        out[:] = source
        return
    rows = n // 8
    for group in range(rows):
        for j in range(typesize):
            x = np.uint64(0)
            for m in range(8):
                x |= np.uint64(source[(8 * group + m) * typesize + j]) << np.uint64(8 * m)
            x = transpose8(x)
            for k in range(8):
                out[(8 * j + k) * rows + group] = np.uint8((x >> np.uint64(8 * k)) & np.uint64(0xFF))


@numba.njit(cache=True, nogil=True)
def bit_unshuffle(shuffled, out, planes, typesize):  # pragma: no cover
    """The inverse of :func:`bit_shuffle` for a multiple of 8 elements: per byte j and 8 elements, the 8 bytes
    holding their bits (one per k), transposed, are byte j of the 8 elements: written as byte planes (into
    ``planes``, or straight into ``out`` for 1-byte elements), then unshuffled."""
    rows = len(out) // typesize // 8
    target = out if typesize == 1 else planes[:len(out)]
    words = target.view(np.uint64)  # byte plane j holds words j * rows ... (j + 1) * rows - 1
    for j in range(typesize):
        bits = shuffled[8 * j * rows:8 * (j + 1) * rows]
        for group in range(rows):
            y = np.uint64(0)
            for k in range(8):
                y |= np.uint64(bits[k * rows + group]) << np.uint64(8 * k)
            words[j * rows + group] = transpose8(y)
    if typesize > 1:
        byte_unshuffle(target, out, typesize)
