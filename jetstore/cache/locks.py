"""Locks shared by every process and thread of a node: a byte range of a file (who downloads it), and a whole
file (who changes the cache's accounting; shared by the writes in flight, exclusive for a count of the disk).

Range locks are Linux open-file-description locks (``F_OFD_SETLKW``): held by one open descriptor, so two
threads of a process exclude each other as two processes do, and a lock goes with its descriptor (a process
that dies releases it). Where they do not exist (macOS), a range lock takes the whole file (``flock``): still
correct, with less parallelism between processes that fill one object.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
from collections.abc import Iterator

OFD_WAIT = getattr(fcntl, "F_OFD_SETLKW", None)
OFD_TRY = getattr(fcntl, "F_OFD_SETLK", None)


def _flock_struct(kind: int, start: int, length: int) -> bytes:
    """A ``struct flock`` (l_type, l_whence, l_start, l_len, l_pid; l_pid 0 as OFD locks require)."""
    return struct.pack("hhqqi", kind, os.SEEK_SET, start, length, 0)


@contextlib.contextmanager
def range_lock(path: str, start: int, end: int) -> Iterator[None]:
    """Hold bytes ``[start, end)`` of the file ``path`` exclusively (waiting for whoever holds an overlap)."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if OFD_WAIT is not None:
            fcntl.fcntl(descriptor, OFD_WAIT, _flock_struct(fcntl.F_WRLCK, start, max(1, end - start)))
        else:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def in_use(path: str) -> bool:
    """Whether some descriptor holds a lock on any part of ``path`` now (never waits)."""
    try:
        descriptor = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        if OFD_TRY is not None:
            fcntl.fcntl(descriptor, OFD_TRY, _flock_struct(fcntl.F_WRLCK, 0, 0))
        else:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def file_lock(path: str, shared: bool = False) -> Iterator[None]:
    """Hold the file ``path`` exclusively, or ``shared`` with other shared holders (``flock``; created if
    missing)."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)
