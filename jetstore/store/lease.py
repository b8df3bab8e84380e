"""One writer at a time: a dataset's write lease (``_lease.json``).

A conversion creates the lease with an exclusive create (``O_EXCL`` locally, ``If-None-Match: *`` on S3,
which AWS, Ceph RGW and moto honour), renews it every ``HEARTBEAT`` seconds, checks it before every commit
and before writing the manifest, and deletes it at the end. A second writer finds it and refuses with one
line naming the holder. A lease not renewed for ``TTL`` seconds, or held by a dead process on this host,
is stale and is taken over; ``--break-lease`` takes over any lease.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from jetstore.errors import DatasetError, LeaseError
from jetstore.store import paths, storage

TTL = 120.0
HEARTBEAT = 30.0


@dataclass(frozen=True)
class LeaseRecord:
    run_id: str
    host: str
    pid: int
    created: float
    renewed: float

    def describe(self, now: float) -> str:
        return f"run {self.run_id[:12]} (pid {self.pid} on {self.host}, renewed {now - self.renewed:.0f} s ago)"

    def stale(self, now: float, ttl: float) -> bool:
        if now - self.renewed > ttl:
            return True
        return self.host == socket.gethostname() and not _alive(self.pid)


class Lease:
    """The write lease of run ``run_id`` on the dataset at ``root``."""

    def __init__(self, fs, root: str, url: str, run_id: str, ttl: float = TTL):
        self.fs, self.root, self.url, self.run_id, self.ttl = fs, root, url, run_id, ttl
        self.path = paths.join(root, paths.LEASE)

    def acquire(self, break_lease: bool = False) -> LeaseRecord | None:
        """Take the lease, or raise :class:`LeaseError` naming the holder. Returns the lease taken over (a
        crashed or broken run's), if any."""
        now = time.time()
        record = LeaseRecord(self.run_id, socket.gethostname(), os.getpid(), now, now)
        previous = None
        for _ in range(3):
            if storage.create_exclusive(self.fs, self.path, _encode(record)):
                return previous
            holder = self.read()
            if holder is None:  # released meanwhile: try again
                continue
            if not (break_lease or holder.stale(time.time(), self.ttl)):
                raise LeaseError(f"{self.url}: another conversion is writing this dataset: "
                                 f"{holder.describe(time.time())}; wait for it to finish, or pass --break-lease "
                                 "if it crashed")
            storage.remove(self.fs, self.path)  # stale or broken: take over (the create above decides races)
            previous, break_lease = holder, False
        raise LeaseError(f"{self.url}: could not take the write lease (others keep taking it)")

    def read(self) -> LeaseRecord | None:
        try:
            data = json.loads(self.fs.cat_file(self.path))
            return LeaseRecord(**data)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise DatasetError(f"{self.url}: {paths.LEASE} is malformed ({exc}); remove it or pass "
                               "--break-lease") from None

    def check(self) -> None:
        """Raise :class:`LeaseError` unless this run still holds the lease."""
        holder = self.read()
        if holder is None or holder.run_id != self.run_id:
            taken = f"now held by {holder.describe(time.time())}" if holder else "it was removed"
            raise LeaseError(f"{self.url}: this conversion lost its write lease ({taken}); nothing more is written")

    def renew(self) -> None:
        self.check()
        holder = self.read()
        now = time.time()
        renewed = LeaseRecord(self.run_id, holder.host, holder.pid, holder.created, now)
        storage.write_bytes_atomic(self.fs, self.path, _encode(renewed))

    def release(self) -> None:
        with contextlib.suppress(LeaseError, DatasetError, OSError):
            self.check()
            storage.remove(self.fs, self.path)

    @contextlib.contextmanager
    def held(self, break_lease: bool = False, heartbeat: float = HEARTBEAT) -> Iterator[LeaseRecord | None]:
        """Acquire, renew in a background thread while the block runs, release at the end; gives the lease
        taken over, if any."""
        previous = self.acquire(break_lease)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(heartbeat):
                with contextlib.suppress(Exception):  # a lost lease shows at the next check
                    self.renew()

        thread = threading.Thread(target=beat, name="jetstore-lease", daemon=True)
        thread.start()
        try:
            yield previous
        finally:
            stop.set()
            thread.join()
            self.release()


def _encode(record: LeaseRecord) -> bytes:
    return json.dumps(asdict(record)).encode()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
