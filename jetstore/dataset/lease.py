"""One writer at a time, fenced: a dataset's write lease (``_lease.json``).

The lease names its holder (run, host, pid), when it was last renewed, its state (``writing``,
``committing``, ``released``) and its **generation**, which every taking of the lease increases. Every
change of the lease is a conditional write against the version just read (``If-Match`` / ``If-None-Match``
on S3, honoured by AWS, Ceph RGW and moto; a digest compared under a lock on local disk), so of two writers
racing for it exactly one wins, and a writer that lost it can no longer renew, seal or release it.

- **acquire**: create it (no lease yet), take a released one, or take over a stale one (not renewed for
  ``TTL`` seconds, or held by a dead process on this host; ``--break-lease``: any), each as one conditional
  write. A lease taken over in the ``committing`` state is first completed for its holder (its manifest
  installed, its clean-up done), so a commit decided by sealing is never lost.
- **renew** every ``HEARTBEAT`` seconds; **check** (any process: still this run's generation) before each
  shard is published; **seal** (``writing`` → ``committing``) is the commit point of the manifest;
  **release** (→ ``released``, the generation kept for the next writer).

Names a writer writes carry its generation (see ``model/paths.py``), which is what fences the data itself.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace

from jetstore.documents import DocumentError, load_json
from jetstore.errors import DatasetError, LeaseError, echo
from jetstore.io.backend import Backend, Versioned
from jetstore.model import paths

TTL = 120.0
HEARTBEAT = 30.0
STATES = ("writing", "committing", "released")
MAX_HOST = 255
MAX_LEASE_BYTES = 4096  # a lease record is ~200 bytes


@dataclass(frozen=True)
class LeaseRecord:
    run_id: str
    host: str
    pid: int
    created: float
    renewed: float
    generation: int = 0
    state: str = "writing"

    def describe(self, now: float) -> str:
        return f"run {self.run_id[:12]} (pid {self.pid} on {self.host}, renewed {now - self.renewed:.0f} s ago)"

    def stale(self, now: float, ttl: float) -> bool:
        if now - self.renewed > ttl:
            return True
        return self.host == socket.gethostname() and not _alive(self.pid)

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def decode(cls, data: bytes, where: str) -> LeaseRecord:
        """A validated lease record; a malformed one is a :class:`DatasetError` naming the field."""
        def malformed(reason: str) -> DatasetError:
            return DatasetError(f"{where}: {paths.LEASE} is malformed ({reason}); remove it or pass --break-lease")

        try:
            fields = load_json(data, limit=MAX_LEASE_BYTES)
        except DocumentError as exc:
            raise malformed(str(exc)) from None
        if not isinstance(fields, dict):
            raise malformed("not a JSON object")
        fields = {"generation": 0, "state": "writing", **fields}
        unknown = sorted(set(fields) - set(cls.__dataclass_fields__))
        if unknown:
            raise malformed(f"unknown field {echo(unknown[0])}")
        checks = {
            "run_id": (lambda v: isinstance(v, str) and paths.RUN_ID.match(v), "32 hexadecimal digits"),
            "host": (lambda v: isinstance(v, str) and 0 < len(v) <= MAX_HOST, "a host name"),
            "pid": (lambda v: _integer(v) and v >= 0, "a process id"),
            "created": (_seconds, "a number (seconds since 1970)"),
            "renewed": (_seconds, "a number (seconds since 1970)"),
            "generation": (lambda v: _integer(v) and 0 <= v < 10**12, "a generation number"),
            "state": (lambda v: v in STATES, " or ".join(STATES)),
        }
        for name, (valid, expected) in checks.items():
            if name not in fields:
                raise malformed(f"no '{name}'")
            if not valid(fields[name]):
                raise malformed(f"'{name}' must be {expected}, not {echo(fields[name])}")
        return cls(**fields)


class Lease:
    """The write lease of run ``run_id`` (generation ``generation`` once acquired) on a dataset."""

    def __init__(self, backend: Backend, url: str, run_id: str, generation: int | None = None, ttl: float = TTL):
        if not paths.RUN_ID.match(run_id):
            raise ValueError(f"run id {run_id!r} is not 32 hexadecimal digits")
        self.backend, self.url, self.run_id, self.generation, self.ttl = backend, url, run_id, generation, ttl

    def read(self, break_lease: bool = False) -> tuple[LeaseRecord | None, Versioned | None]:
        """The lease and its version (None, None when there is none; a malformed one is None with its
        version when breaking it)."""
        current = self.backend.read_versioned(paths.LEASE)
        if current is None:
            return None, None
        try:
            return LeaseRecord.decode(current.data, self.url), current
        except DatasetError:
            if break_lease:
                return None, current
            raise

    def acquire(self, break_lease: bool = False, complete: Callable[[LeaseRecord], None] | None = None,
                first_generation: Callable[[], int] = lambda: 1) -> LeaseRecord | None:
        """Take the lease, or raise :class:`LeaseError` naming the holder. Returns the lease taken over from
        a crashed or broken run, if any. ``complete`` finishes the commit of a holder found ``committing``;
        ``first_generation`` gives the lowest generation the dataset's names allow."""
        for _ in range(5):
            holder, current = self.read(break_lease)
            now = time.time()
            if holder is not None and holder.state != "released" \
                    and not (break_lease or holder.stale(now, self.ttl)):
                raise LeaseError(f"{self.url}: another conversion is writing this dataset: {holder.describe(now)}; "
                                 "wait for it to finish, or pass --break-lease if it crashed")
            if holder is not None and holder.state == "committing" and complete is not None:
                with contextlib.suppress(LeaseError):  # a newer commit meanwhile: the lease is read again
                    complete(holder)
            # above every generation seen: the lease's, and those the dataset's names carry (a lease
            # removed or rewritten by hand never makes a writer reuse an older generation)
            generation = max(holder.generation + 1 if holder is not None else 1, first_generation())
            record = LeaseRecord(self.run_id, socket.gethostname(), os.getpid(), now, now, generation)
            if current is None:
                taken = self.backend.put_if_absent(paths.LEASE, record.encode())
            else:
                taken = self.backend.put_if_match(paths.LEASE, record.encode(), current.token)
            if taken is not None:
                self.generation = generation
                return holder if holder is not None and holder.state != "released" else None
            break_lease = False  # someone else changed the lease meanwhile: look again
        raise LeaseError(f"{self.url}: could not take the write lease (others keep taking it)")

    def check(self) -> LeaseRecord:
        """This run's lease, or :class:`LeaseError` unless this run still holds it."""
        return self._mine(self.read()[0])

    def renew(self) -> None:
        self._change(lambda record: replace(record, renewed=time.time()))

    def seal(self) -> None:
        """``writing`` → ``committing``: from here on the run's manifest is committed (a run that takes over
        completes it). Raises :class:`LeaseError` when the lease was lost before."""
        self._change(lambda record: replace(record, state="committing", renewed=time.time()), state="writing")

    def release(self) -> None:
        """Give the lease up (keeping its generation); nothing happens if this run no longer holds it."""
        with contextlib.suppress(LeaseError, DatasetError, OSError):
            self._change(lambda record: replace(record, state="released", renewed=time.time()))

    @contextlib.contextmanager
    def held(self, break_lease: bool = False, heartbeat: float = HEARTBEAT,
             complete: Callable[[LeaseRecord], None] | None = None,
             first_generation: Callable[[], int] = lambda: 1) -> Iterator[LeaseRecord | None]:
        """Acquire, renew in a background thread while the block runs, release at the end; gives the lease
        taken over, if any."""
        previous = self.acquire(break_lease, complete, first_generation)
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

    def _change(self, change: Callable[[LeaseRecord], LeaseRecord], state: str | None = None) -> None:
        """One conditional write of this run's lease, changed by ``change``."""
        holder, current = self.read()
        record = self._mine(holder, state)
        assert current is not None  # a missing lease is not this run's: refused above
        if self.backend.put_if_match(paths.LEASE, change(record).encode(), current.token) is None:
            self._mine(self.read()[0], state)  # names the new holder
            raise self._lost("it changed meanwhile")

    def _mine(self, holder: LeaseRecord | None, state: str | None = None) -> LeaseRecord:
        if holder is None or holder.run_id != self.run_id or holder.generation != self.generation \
                or holder.state == "released" or (state is not None and holder.state != state):
            taken = (f"now held by {holder.describe(time.time())}" if holder is not None and holder.state != "released"
                     else "it was released or removed")
            raise self._lost(taken)
        return holder

    def _lost(self, why: str) -> LeaseError:
        return LeaseError(f"{self.url}: this conversion lost its write lease ({why}); nothing more is written")


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _seconds(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True
