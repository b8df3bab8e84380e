"""Small helpers shared by the conversion tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from jetstore.cli import resolve_schema
from jetstore.convert.run import ConvertReport, ConvertRequest, convert
from jetstore.store import storage

REPO = Path(__file__).resolve().parents[1]


def run_convert(client, inputs, output, fmt="zarr", schema="cms_ak4", options=None, **kwargs) -> ConvertReport:
    """In-process conversion on the test cluster (storage options resolved as the CLI does)."""
    schema = resolve_schema(schema) if isinstance(schema, str) else schema
    request = ConvertRequest(
        inputs=tuple(inputs), schema=schema, output=str(output), format=fmt,
        input_options=storage.resolve_storage_options(str(inputs[0]), options),
        output_options=storage.resolve_storage_options(str(output), options), **kwargs,
    )
    return convert(request, client, progress=False, log=lambda _: None)


def cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the real ``jetstore`` command line in a subprocess (its own LocalCluster)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "jetstore", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=REPO)
