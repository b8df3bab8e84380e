"""Every command that reads a dataset (inspect, verify, stats, export-weaver, train, predict) reports a storage
failure as one line naming the URL and the cause, exit code 3, within 10 s: an unreachable endpoint, credentials
the server rejects (moto with authentication on), no credentials, and https:// against an http gateway."""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import time

import pytest

from jetstore.cli import main
from tests.conftest import free_port
from tests.helpers import REPO

URL = "s3://bucket/ds.zarr"
CONFIG = str(REPO / "tests/fixtures/weaver_cms_ak4.yaml")
NO_AWS_FILES = {"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent",
                "AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1"}
KEYS = {"AWS_ACCESS_KEY_ID": "AKIAWRONGKEY00000001", "AWS_SECRET_ACCESS_KEY": "wrong-secret-value-1234"}


@pytest.fixture(scope="module")
def authenticating_moto():
    """A moto server that checks credentials (none are valid): every request is refused with 403."""
    port = free_port()
    env = {"INITIAL_NO_AUTH_ACTION_COUNT": "0", "PATH": "/usr/bin:/bin"}
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import socket

    for _ in range(100):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.kill()
    server.wait()


@pytest.fixture(scope="module")
def trained_run(train_dataset, tmp_path_factory) -> str:
    """A finished local run (for predict against a broken --predict-data)."""
    output = tmp_path_factory.mktemp("run") / "run"
    assert main(["train", "--data", train_dataset, "--config", CONFIG, "--output", str(output), "--size", "tiny",
                 "--steps", "1", "--batch-size", "32", "--jets-per-epoch", "64", "--holdout", "0",
                 "--no-progress"]) == 0
    return str(output)


COMMANDS = {
    "inspect": lambda run, tmp: ["inspect", URL],
    "verify": lambda run, tmp: ["verify", URL],
    "stats": lambda run, tmp: ["stats", URL, "--config", CONFIG],
    "export-weaver": lambda run, tmp: ["export-weaver", URL, "--config", CONFIG, "-o", str(tmp / "w.yaml")],
    "train": lambda run, tmp: ["train", "--data", URL, "--config", CONFIG, "--output", str(tmp / "run"),
                               "--no-progress"],
    "predict": lambda run, tmp: ["train", "--output", run, "--predict", str(tmp / "p.parquet"), "--predict-data",
                                 URL, "--no-progress"],
}


@pytest.mark.parametrize("case", ["unreachable", "denied", "no credentials", "tls"])
@pytest.mark.slow
def test_storage_failures_are_one_line(case, moto_server, authenticating_moto, trained_run, monkeypatch, tmp_path,
                                       capsys):
    endpoint, keys, fragment = {
        "unreachable": (f"http://127.0.0.1:{free_port()}", KEYS, "cannot reach {endpoint}"),
        "denied": (authenticating_moto, KEYS, "access denied by {endpoint} (403)"),
        "no credentials": (moto_server.endpoint, {}, "no credentials for {endpoint}"),
        "tls": (moto_server.endpoint.replace("http://", "https://"), KEYS,
                "the TLS handshake with {endpoint} failed: an http:// endpoint given as https://"),
    }[case]
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_CA_BUNDLE", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**NO_AWS_FILES, **keys, "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()

    def run(arguments: list[str]) -> tuple[int, float]:
        start = time.perf_counter()
        return main(arguments), time.perf_counter() - start

    # the commands at once (each waits on the network, not the CPU): their messages are the same line
    with concurrent.futures.ThreadPoolExecutor(len(COMMANDS)) as pool:
        results = dict(zip(COMMANDS, pool.map(run, [make(trained_run, tmp_path) for make in COMMANDS.values()]),
                           strict=True))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("jetstore: error:")]
    assert {command: status for command, (status, _) in results.items()} == dict.fromkeys(COMMANDS, 3), err
    assert len(lines) == len(COMMANDS) and len(set(lines)) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"jetstore: error: {URL}: ") and fragment.format(endpoint=endpoint) in lines[0], lines
    assert KEYS["AWS_SECRET_ACCESS_KEY"] not in err
    assert all(took < 10 for _, took in results.values()), results
