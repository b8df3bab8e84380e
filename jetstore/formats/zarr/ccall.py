"""C functions called from numba kernels by their address.

A ctypes function object passed to a kernel costs the dispatcher ~0.7 ms to type at every call; its address,
passed as an integer, costs nothing, and a kernel whose C functions are arguments (not globals) is cached on
disk. :func:`c_call` makes the intrinsic that calls a function at an address; the Blosc encoder and decoder
use it, each for the C functions it needs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic
from numcodecs import blosc

POINTER = ir.IntType(8).as_pointer()
INT = ir.IntType(32)
SIZE = ir.IntType(64)


def c_call(result: ir.IntType, arguments: list[ir.Type]):
    """An intrinsic ``call(address, *args)`` calling the C function at ``address`` with ``args`` (every one a
    uint64: pointers as addresses, narrower integers truncated) and returning its result as an int64."""

    def codegen(context, builder, signature, args):
        function = builder.inttoptr(args[0], ir.FunctionType(result, arguments).as_pointer())
        values = cgutils.unpack_tuple(builder, args[1])
        converted = [builder.inttoptr(value, kind) if isinstance(kind, ir.PointerType)
                     else builder.trunc(value, kind) if kind.width < 64 else value
                     for value, kind in zip(values, arguments, strict=True)]
        returned = builder.call(function, converted)
        return builder.sext(returned, ir.IntType(64)) if result.width < 64 else returned

    @intrinsic
    def call(typingctx, address, *args):
        if len(args) != len(arguments):
            return None
        return types.int64(types.uint64, types.UniTuple(types.uint64, len(arguments))), codegen

    return call


def address(function: Any) -> np.uint64:
    """A ctypes function's address, as kernels take it (OSError for a null pointer: the caller falls back)."""
    value = ctypes.cast(function, ctypes.c_void_p).value
    if value is None:
        raise OSError(f"{function} has no address")
    return np.uint64(value)


def blosc_library() -> ctypes.CDLL:
    """numcodecs' Blosc extension, which carries the c-blosc and the zstd it links, so frames made or unmade with
    them are those numcodecs reads and writes (raises OSError where it cannot be loaded)."""
    return ctypes.CDLL(blosc.__file__)


def zlib_crc32() -> Any:
    """zlib's ``crc32`` (raises OSError where zlib cannot be loaded)."""
    return ctypes.CDLL(ctypes.util.find_library("z") or "libz.so.1").crc32


crc32 = c_call(SIZE, [SIZE, POINTER, INT])  # zlib: crc32(crc, bytes, length)
