"""Inputs that must not end in a broken or leaking dataset: overlapping one-hot labels are refused at
conversion (naming the file, the labels and the first entry); credentials in input URLs (user-info, a
presigned URL's query) never reach the manifest, the commit records or the output, and presigned HTTP(S)
inputs convert (their ``?`` is a query, not a glob)."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot

from jetstore.dataset.dataset import Dataset
from jetstore.io import locations
from tests.helpers import cli, run_convert


@pytest.fixture(scope="module")
def overlapping(sample_files, tmp_path_factory):
    """The first sample file with ``label_c`` also set on a b jet: (path, that jet's entry)."""
    with uproot.open(sample_files[0]) as handle:
        arrays = handle["Events"].arrays(library="ak")
    data = {name: arrays[name] for name in arrays.fields}
    label_c = ak.to_numpy(data["label_c"]).copy()
    entry = int(np.nonzero(ak.to_numpy(data["label_b"]) & (ak.to_numpy(data["jet_pt"]) > 20))[0][3])
    label_c[entry] = 1
    data["label_c"] = label_c
    path = tmp_path_factory.mktemp("overlap") / "overlap.root"
    with uproot.recreate(path) as out:
        tree = out.mktree("Events", {k: v.type if isinstance(v, ak.Array) else v.dtype for k, v in data.items()})
        tree.extend(data)
    return str(path), entry


def test_overlapping_labels_are_refused_at_conversion(dask_client, sample_files, overlapping, tmp_path):
    path, entry = overlapping
    report = run_convert(dask_client, [sample_files[1], path], tmp_path / "ds")
    assert report.manifest is None
    assert report.failures == {path: f"entry {entry}: the one-hot labels label_b, label_c are all set; a jet may "
                                     "have one label at most"}
    skipped = run_convert(dask_client, [sample_files[1], path], tmp_path / "ds", skip_bad_inputs=True)
    dataset = Dataset.open(str(tmp_path / "ds"))  # the dataset its own reader accepts
    assert skipped.manifest.n_jets == dataset.manifest.n_jets > 0 and path in dataset.manifest.skipped_inputs


def test_public_url_drops_user_info_and_query():
    url = "https://alice:t0ken-xyz@data.example.org:8443/lib/f.root?X-Amz-Signature=5ig5ig&X-Amz-Expires=600#x"
    assert locations.public_url(url) == "https://data.example.org:8443/lib/f.root"
    assert locations.public_url("s3://bucket/f.root") == "s3://bucket/f.root"
    assert locations.public_url("/data/f.root") == "/data/f.root"
    text = locations.scrub_urls(f"cannot open {url}: 403 (signature 5ig5ig, user token t0ken-xyz)", [url])
    assert "t0ken-xyz" not in text and "5ig5ig" not in text and "https://data.example.org:8443/lib/f.root" in text
    assert not locations.is_pattern("https://host/f.root?X-Amz-Signature=a*b") and locations.is_pattern("s3://b/*.root")


@pytest.mark.slow
def test_presigned_inputs_convert_and_leave_no_credentials(dask_client, sample_files, moto_server, s3_env,
                                                           tmp_path):
    import boto3
    from botocore.config import Config

    moto_server.make_bucket("presigned")
    s3_env(moto_server)
    client = boto3.client("s3", endpoint_url=moto_server.endpoint, aws_access_key_id=moto_server.key,
                          aws_secret_access_key=moto_server.secret, region_name="us-east-1",
                          config=Config(signature_version="s3v4"))
    client.upload_file(sample_files[0], "presigned", "lib/sample_a.root")
    url = client.generate_presigned_url("get_object", Params={"Bucket": "presigned", "Key": "lib/sample_a.root"},
                                        ExpiresIn=600)
    signature = url.split("X-Amz-Signature=")[1].split("&")[0]
    broken = url.replace("lib/sample_a.root", "lib/missing.root").replace("http://", "http://bob:pa55word@")
    out = tmp_path / "ds"
    result = cli("convert", url, broken, "--schema", "cms_ak4", "-o", str(out), "--skip-bad-inputs",
                 "--workers", "1", "--no-progress", env={"DASK_SCHEDULER_ADDRESS": ""})
    assert result.returncode == 1, result.stderr  # the missing one failed, named without credentials
    public = f"{moto_server.endpoint}/presigned/lib/sample_a.root"
    assert f"{moto_server.endpoint}/presigned/lib/missing.root:" in result.stderr
    dataset = Dataset.open(str(out))
    assert [i.url for i in dataset.manifest.inputs] == [public] and dataset.manifest.n_jets > 0
    assert all(source == public for s in dataset.manifest.shards for source in s.sources)
    stored = b"".join(p.read_bytes() for p in out.rglob("*.json"))
    for secret in (signature, "X-Amz-Credential", "pa55word", moto_server.key):
        assert secret.encode() not in stored
        assert secret not in result.stderr + result.stdout
