"""Writer A for the fencing tests: a real conversion in this process (an in-process Dask cluster, so the
whole writer stops together) that freezes itself with SIGSTOP just before one commit step, exactly where a
paused VM or a suspended batch job would stop it: after its lease check, before the write.

    python tests/faults/stalled_writer.py POINT OUTPUT INPUT... [--jets-per-shard N] [--overwrite]

POINT: ``publish`` (before the second shard's publish), ``seal`` (before the manifest's commit point),
``sealed`` (just after it, before the manifest's version is written to the history) or ``clean-up`` (after the
manifest is installed, before its clean-up deletes). The pause wraps the real
storage call, which runs unchanged once the process is continued (SIGCONT). Exit code and one-line error
as the CLI gives them.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys


def freeze_before(owner: type, name: str, when=lambda *args: True, skip: int = 0) -> None:
    """Stop this process the ``skip + 1``-th time ``owner.name`` is called with ``when(*args)`` true."""
    original = getattr(owner, name)
    calls = {"n": 0}

    @functools.wraps(original)
    def paused(*args, **kwargs):
        if when(*args):
            calls["n"] += 1
            if calls["n"] == skip + 1:
                print("frozen", flush=True)
                os.kill(os.getpid(), signal.SIGSTOP)
        return original(*args, **kwargs)

    setattr(owner, name, paused)


def freeze_after(owner: type, name: str) -> None:
    """Stop this process when the first call of ``owner.name`` has returned."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def paused(*args, **kwargs):
        result = original(*args, **kwargs)
        print("frozen", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)
        return result

    setattr(owner, name, paused)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("point", choices=("publish", "seal", "sealed", "clean-up"))
    parser.add_argument("output")
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--jets-per-shard", type=int, default=1000)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    from jetstore import convert
    from jetstore.errors import JetstoreError
    from jetstore.store import backend, lease

    if args.point == "publish":
        for kind in (backend.LocalBackend, backend.S3Backend):
            freeze_before(kind, "publish", skip=1)
    elif args.point == "seal":
        freeze_before(lease.Lease, "seal")
    elif args.point == "sealed":
        freeze_after(lease.Lease, "seal")
    else:
        for kind in (backend.LocalBackend, backend.S3Backend):
            freeze_before(kind, "delete", when=lambda self, keys: any(k.startswith("shards/") for k in keys))
    try:
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            report = convert(args.inputs, "cms_ak4", args.output, client=client, progress=False,
                             jets_per_shard=args.jets_per_shard, overwrite=args.overwrite,
                             log=lambda message: print(message, flush=True))
    except JetstoreError as exc:
        print(f"jetstore: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    print(f"committed generation {report.manifest.generation}", flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
