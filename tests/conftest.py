"""Shared fixtures: the bundled sample, a real Dask LocalCluster, a moto S3 server over HTTP, and a real
Ceph RGW (HTTP + HTTPS) when one can be started; independent readings of the inputs with uproot."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

REPO = Path(__file__).resolve().parents[1]
SAMPLE_FILES = sorted(str(p) for p in (REPO / "jetstore" / "data").glob("sample_cms_ak4_*.root"))
SHARED = REPO.parent / "shared"
SHARED_AK4 = sorted(str(p) for p in (SHARED / "data" / "cms_ak4").glob("*.root"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def sample_files() -> list[str]:
    assert len(SAMPLE_FILES) == 2, "bundled sample missing: run tests/fixtures/make_sample.py"
    return SAMPLE_FILES


@pytest.fixture(scope="session")
def shared_ak4() -> list[str]:
    if not SHARED_AK4:
        pytest.skip("../shared/data/cms_ak4 is not present")
    return SHARED_AK4


@pytest.fixture(scope="session")
def dask_client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        yield client


@pytest.fixture(scope="session")
def jetclass_file(tmp_path_factory) -> str:
    """A JetClass-named file (floats, tree 'tree') written by the repo's generator with PyPI's ROOT."""
    pytest.importorskip("ROOT")
    path = tmp_path_factory.mktemp("jetclass") / "jetclass_sample.root"
    subprocess.run([sys.executable, str(REPO / "tests/fixtures/make_sample.py"), "jetclass", str(path),
                    "--jets", "300", "--seed", "5"], check=True, capture_output=True)
    return str(path)


# ---------------------------------------------------------------- S3 servers


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    key: str
    secret: str
    ca_bundle: str | None = None

    def environ(self) -> dict[str, str]:
        env = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.key,
               "AWS_SECRET_ACCESS_KEY": self.secret, "AWS_DEFAULT_REGION": "us-east-1"}
        if self.ca_bundle:
            env["AWS_CA_BUNDLE"] = self.ca_bundle
        return env

    @property
    def options(self) -> dict[str, str]:
        """jetstore storage options for this server (instead of the environment)."""
        out = {"endpoint_url": self.endpoint, "key": self.key, "secret": self.secret}
        return out | ({"client_kwargs": {"verify": self.ca_bundle}} if self.ca_bundle else {})

    def make_bucket(self, name: str) -> None:
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.key,
                              aws_secret_access_key=self.secret, region_name="us-east-1",
                              verify=self.ca_bundle or True)
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists):
            client.create_bucket(Bucket=name)


@pytest.fixture(scope="session")
def moto_server():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(f"http://127.0.0.1:{port}", "AKIAMOTOTESTKEY00001", "moto-Secret-Value-8c1f9e")
    finally:
        server.stop()


@pytest.fixture
def s3_env(monkeypatch):
    """Point the AWS_* environment at a server for one test."""
    def apply(server: S3Server) -> None:
        for name in ("AWS_ENDPOINT_URL_S3", "AWS_CA_BUNDLE", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            monkeypatch.delenv(name, raising=False)
        for name, value in server.environ().items():
            monkeypatch.setenv(name, value)
    return apply


@pytest.fixture(scope="session")
def ceph_rgw(tmp_path_factory):
    """A real Ceph RGW: started by .ci/run (JETSTORE_CEPH_* set) or here; skipped, saying why, otherwise."""
    if os.environ.get("JETSTORE_CEPH_UNAVAILABLE"):
        pytest.skip(os.environ["JETSTORE_CEPH_UNAVAILABLE"])
    if not os.environ.get("JETSTORE_CEPH_HTTP"):
        directory = tmp_path_factory.mktemp("ceph")
        try:
            out = subprocess.run(["bash", str(REPO / "tests/ceph/rgw.sh"), "start", str(directory)],
                                 capture_output=True, text=True, timeout=240)
        except subprocess.TimeoutExpired:
            pytest.skip("Ceph RGW did not start within 240 s")
        if out.returncode != 0:
            pytest.skip(f"Ceph RGW cannot start here: {out.stderr.strip()[-300:]}")
        for item in out.stdout.split()[1:]:
            name, _, value = item.partition("=")
            os.environ[name] = value
        stop = directory
    else:
        stop = None
    yield {
        "http": S3Server(os.environ["JETSTORE_CEPH_HTTP"], "JETKEY", "JETSECRET"),
        "https": S3Server(os.environ["JETSTORE_CEPH_HTTPS"], "JETKEY", "JETSECRET", os.environ["JETSTORE_CEPH_CA"]),
    }
    if stop is not None:
        subprocess.run(["bash", str(REPO / "tests/ceph/rgw.sh"), "stop", str(stop)], capture_output=True)


# ---------------------------------------------------------------- independent reference reading


def reference_jets(files: list[str], tree: str = "Events", selection: str | None = "cms_ak4") -> dict:
    """Read every branch with uproot and apply the cms_ak4 skim with plain numpy (not jetstore's evaluator).

    Returns jet columns as numpy arrays and vector branches as awkward arrays, all files concatenated.
    """
    pieces = []
    for path in files:
        with uproot.open(path) as handle:
            arrays = handle[tree].arrays(library="ak")
        if selection == "cms_ak4":
            pt, eta = ak.to_numpy(arrays["jet_pt"]), ak.to_numpy(arrays["jet_eta"])
            arrays = arrays[(pt > 20) & (np.abs(eta) < 2.5)]
        pieces.append(arrays)
    return ak.concatenate(pieces) if len(pieces) > 1 else pieces[0]


def cms_ak4_skim(arrays) -> np.ndarray:
    pt, eta = ak.to_numpy(arrays["jet_pt"]), ak.to_numpy(arrays["jet_eta"])
    return (pt > 20) & (np.abs(eta) < 2.5)


def reference_for(dataset, skim=cms_ak4_skim, local=lambda url: url):
    """Independent expectation of a dataset's content: for every shard, uproot's reading of its entry
    range, skimmed with plain numpy, ordered as the schema's ``sort_by`` asks (numpy lexsort); with the
    provenance fields ``_entry`` (each jet's entry) and ``_input`` (its piece of the shard)."""
    pieces = []
    schema = dataset.schema
    for shard in dataset.manifest.shards:
        parts = []
        for index, piece in enumerate(shard.pieces):  # small inputs are packed into one shard, in piece order
            with uproot.open(local(piece.source)) as handle:
                arrays = handle[schema.tree].arrays(library="ak", entry_start=piece.entry_start,
                                                    entry_stop=piece.entry_stop)
            entries = np.arange(piece.entry_start, piece.entry_stop, dtype=np.int64)
            arrays = ak.with_field(arrays, entries, "_entry")
            parts.append(ak.with_field(arrays, np.full(len(entries), index, np.int32), "_input"))
        arrays = ak.concatenate(parts) if len(parts) > 1 else parts[0]
        if skim is not None:
            arrays = arrays[skim(arrays)]
        if schema.sort_by:
            keys = []
            for key in schema.sort_by:
                if key == "label":
                    onehot = np.stack([ak.to_numpy(arrays[c.branch]) != 0 for c in schema.labels], axis=1)
                    keys.append(np.where(onehot.any(axis=1), onehot.argmax(axis=1), len(schema.labels)))
                else:
                    keys.append(ak.to_numpy(arrays[key]))
            arrays = arrays[np.lexsort(keys[::-1])]
        pieces.append(arrays)
    return ak.concatenate(pieces) if len(pieces) > 1 else pieces[0]


def assert_table_matches(table, reference, schema) -> None:
    """Every stored value equals uproot's reading of the input (exact for float32 / exact integer casts)."""
    assert table.n_jets == len(reference)
    for column in schema.jet_columns:
        expected = ak.to_numpy(reference[column.branch])
        np.testing.assert_array_equal(table.jets[column.name].astype(expected.dtype), expected,
                                      err_msg=column.name)
    for block in schema.blocks:
        data = table.blocks[block.name]
        for feature in block.features:
            values = reference[feature.branch]
            np.testing.assert_array_equal(data.counts, ak.to_numpy(ak.num(values, axis=1)), err_msg=feature.name)
            np.testing.assert_array_equal(data.features[feature.name], ak.to_numpy(ak.flatten(values)),
                                          err_msg=feature.name)


# ---------------------------------------------------------------- readers


@pytest.fixture(scope="session")
def ak4_zarr(dask_client, tmp_path_factory) -> Path:
    """The bundled sample converted to Zarr, 3 shards named ak4.<n> (for the readers' tests)."""
    from jetstore import convert

    root = tmp_path_factory.mktemp("readers") / "ak4.zarr"
    assert convert(SAMPLE_FILES, "cms_ak4", str(root), client=dask_client, jets_per_shard=1000, progress=False,
                   log=lambda _: None).ok
    return root


@pytest.fixture(scope="session")
def ak4_parquet(dask_client, tmp_path_factory) -> Path:
    """The bundled sample converted to Parquet, as :func:`ak4_zarr`."""
    from jetstore import convert

    root = tmp_path_factory.mktemp("readers") / "ak4.parquet"
    assert convert(SAMPLE_FILES, "cms_ak4", str(root), format="parquet", client=dask_client, jets_per_shard=1000,
                   progress=False, log=lambda _: None).ok
    return root


# ---------------------------------------------------------------- training


@pytest.fixture(scope="session")
def train_dataset(dask_client, tmp_path_factory) -> str:
    """The bundled sample converted (Zarr) with stats for tests/fixtures/weaver_cms_ak4.yaml: the trainer tests'
    dataset."""
    from jetstore import convert
    from jetstore.config import load_training_config
    from jetstore.stats.result import write_stats
    from jetstore.stats.run import compute_stats
    from jetstore.store.dataset import Dataset

    out = tmp_path_factory.mktemp("train") / "sample.zarr"
    assert convert(SAMPLE_FILES, "cms_ak4", str(out), client=dask_client, progress=False, log=lambda _: None).ok
    dataset = Dataset.open(str(out))
    config = load_training_config(REPO / "tests/fixtures/weaver_cms_ak4.yaml")
    write_stats(dataset, compute_stats(dataset, config, dask_client, log=lambda _: None))
    return str(out)
