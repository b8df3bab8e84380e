"""The one line the docs promise, at the edges of the command line: paths of the wrong kind, options out of
range, configs that refer to themselves, values no standardisation or weight can come from, credentials in a
URL or on the command line, an S3 input at an unreachable endpoint, and the noise of Dask (a worker's
"Compute Failed" traceback, the dashboard's tornado traceback). Each runs ``jetstore`` in this process."""

from __future__ import annotations

import json
import math
import shutil
import time
import urllib.error
import urllib.request

import pytest
import yaml

from jetstore.cli import main
from jetstore.io.redaction import RedactingFilter
from jetstore.io.settings import StorageOptions
from jetstore.model import paths
from tests.conftest import free_port
from tests.helpers import REPO, stats_file

CONFIG = REPO / "tests/fixtures/weaver_cms_ak4.yaml"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """``jetstore ARGV`` in this process: exit code, stdout, stderr (argparse's usage errors included)."""
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    """The error line, after checking it is the only one besides argparse's usage lines."""
    lines = [line for line in err.strip().splitlines() if not line.startswith(("usage:", " "))]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def dataset(train_dataset, tmp_path_factory):
    """A copy of the trainers' dataset (stats for the fixture config included)."""
    target = tmp_path_factory.mktemp("edges") / "ds.zarr"
    shutil.copytree(train_dataset, target)
    return target


def config_with(tmp_path, new_variables: dict, variable: str) -> str:
    """The fixture config with ``new_variables`` added and ``variable`` standardised among the pf_features."""
    data = yaml.safe_load(CONFIG.read_text())
    data["new_variables"].update(new_variables)
    data["inputs"]["pf_features"]["vars"].append(variable)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


# ---------------------------------------------------------------- paths and options, before any work


@pytest.mark.parametrize("case", ["plots-file", "export-to-folder", "files-file", "holdout", "infer-to-folder",
                                  "client-kwargs", "output-root", "output-empty", "output-file"])
def test_wrong_paths_and_options_are_one_line(case, dataset, dask_client, sample_files, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep")
    scheduler = dask_client.scheduler.address
    convert = ["convert", sample_files[0], "--schema", "cms_ak4", "--scheduler", scheduler, "-o"]
    argv, code, fragment = {
        "plots-file": (["stats", str(dataset), "--config", str(CONFIG), "--scheduler", scheduler, "--plots",
                        str(a_file)], 2, "--plots"),
        "export-to-folder": (["export-weaver", str(dataset), "--config", str(CONFIG), "-o", str(tmp_path)], 2,
                             "is a folder"),
        "files-file": (["export-weaver", str(dataset), "--config", str(CONFIG), "-o", str(tmp_path / "w.yaml"),
                        "--files", str(a_file)], 2, "--files"),
        "holdout": (["export-weaver", str(dataset), "--config", str(CONFIG), "-o", str(tmp_path / "w.yaml"),
                     "--files", str(tmp_path / "files"), "--holdout", "5"], 2, "must be a fraction in [0, 1)"),
        "infer-to-folder": (["schema", "infer", sample_files[0], "-o", str(tmp_path)], 2, "is a folder"),
        "client-kwargs": (["inspect", "s3://bucket/ds", "--storage-options", '{"client_kwargs": 5}'], 2,
                          "'client_kwargs' must be a JSON object"),
        "output-root": ([*convert, "/"], 2, "names no folder"),
        "output-empty": ([*convert, ""], 2, "the dataset URL is empty"),
        "output-file": ([*convert, str(a_file)], 2, "is a file, not a folder"),
    }[case]
    result, _, err = run(capsys, *argv)
    assert result == code and fragment in one_line(err), err[-3000:]
    assert a_file.read_text() == "keep" and not (tmp_path / "files").exists()  # nothing written, nothing made
    assert not list(tmp_path.glob(f"{paths.MANIFEST}"))


# ---------------------------------------------------------------- configs and values


@pytest.mark.parametrize("new_variables, variable, code, fragment", [
    ({"loop_a": "loop_b + 1", "loop_b": "loop_a * 2"}, "loop_a", 2,
     "new_variables.loop_a refers to itself (loop_a → loop_b → loop_a)"),
    ({"selfish": "selfish + 1"}, "selfish", 2, "new_variables.selfish refers to itself (selfish → selfish)"),
    ({"where_1": "np.where(jet_pfcand_pt_log > 0)"}, "where_1", 2, "np.where() with 1 positional argument(s)"),
    ({"all_inf": "jet_pfcand_pt_log * 0 + np.inf"}, "all_inf", 4, "variable 'all_inf': center"),
    ({"all_minus_inf": "jet_pfcand_pt_log * 0 - np.inf"}, "all_minus_inf", 4, "variable 'all_minus_inf': center"),
])
def test_configs_no_stats_can_come_from_are_one_line(new_variables, variable, code, fragment, dataset, dask_client,
                                                     tmp_path, capsys):
    config = config_with(tmp_path, new_variables, variable)
    result, _, err = run(capsys, "-q", "stats", str(dataset), "--config", config, "--scheduler",
                         dask_client.scheduler.address, "--plots", str(tmp_path / "plots"))
    assert result == code and fragment in one_line(err), err[-3000:]


@pytest.mark.parametrize("where, value, fragment", [
    ("scale", math.nan, "variables.jet_pfcand_pt_log: center"),
    ("center", math.inf, "variables.jet_pfcand_pt_log: center"),
    ("weights", math.nan, "weight_tables.label_b: weights must be finite numbers in [0, 1] (found nan)"),
    ("weights", 1e300, "weight_tables.label_b: weights must be finite numbers in [0, 1]"),
    ("hists", -5.0, "class_hists.label_b: counts must be a table of finite numbers"),
])
def test_stored_stats_are_validated_when_read(where, value, fragment, dataset, tmp_path, capsys):
    copy = tmp_path / "ds.zarr"
    shutil.copytree(dataset, copy)
    path = stats_file(copy, CONFIG)
    data = json.loads(path.read_text())
    if where in ("scale", "center"):
        data["variables"]["jet_pfcand_pt_log"][where] = value
    else:
        key = "weight_tables" if where == "weights" else "class_hists"
        data[key]["label_b"][0][0] = value
    path.write_text(json.dumps(data))  # NaN and Infinity as Python's json writes them
    result, _, err = run(capsys, "export-weaver", str(copy), "--config", str(CONFIG), "-o", str(tmp_path / "w.yaml"))
    line = one_line(err)
    assert result == 4 and path.name in line and fragment in line and "rerun `jetstore stats`" in line, line


# ---------------------------------------------------------------- credentials


@pytest.mark.parametrize("command", ["inspect", "convert"])
def test_credentials_in_a_dataset_url_are_refused_unprinted(command, sample_files, capsys):
    url = "s3://AKID123:MySecretKey456@bucket/ds"
    argv = ["inspect", url] if command == "inspect" else ["convert", sample_files[0], "--schema", "cms_ak4", "-o",
                                                          url, "--workers", "1"]
    code, out, err = run(capsys, *argv)
    assert code == 2 and "s3://bucket/ds: refusing a dataset URL with credentials" in one_line(err)
    assert "MySecretKey456" not in out + err and "AKID123" not in out + err


@pytest.mark.slow
def test_storage_options_from_a_file(dask_client, sample_files, moto_server, tmp_path, capsys, monkeypatch):
    """Credentials in ``--storage-options @FILE`` work and stay out of the process list; inline ones work too,
    with a warning saying who can read them."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    moto_server.make_bucket("optionsfile")
    url = "s3://optionsfile/ds.zarr"
    options = tmp_path / "s3.json"
    options.write_text(json.dumps(moto_server.options))
    code, _, err = run(capsys, "convert", sample_files[0], "--schema", "cms_ak4", "-o", url, "--scheduler",
                       dask_client.scheduler.address, "--storage-options", f"@{options}", "-q")
    assert code == 0, err
    code, out, err = run(capsys, "inspect", url, "--storage-options", f"@{options}")
    assert code == 0 and "jets" in out and "warning" not in err, err
    code, out, err = run(capsys, "inspect", url, "--storage-options", json.dumps(moto_server.options))
    assert code == 0 and "credentials in --storage-options JSON are visible to every local user" in err
    assert moto_server.secret not in out + err


def test_masking_a_short_key_leaves_words_alone():
    options = StorageOptions({"key": "a", "secret": "s3cr3t-value"})
    text = "cannot read a file; the secret s3cr3t-value was refused (key=s3cr3t-value)"
    assert options.scrub(text) == "cannot read a file; the secret *** was refused (key=***)"
    assert RedactingFilter(["a", "re"], environ={}).redact("cannot read more") == "cannot read more"
    assert RedactingFilter(["abcd"], environ={}).redact("abcde abcd") == "abcde ***"


@pytest.mark.slow
def test_an_s3_input_at_an_unreachable_endpoint_fails_in_seconds(tmp_path, capsys, monkeypatch):
    endpoint = f"http://127.0.0.1:{free_port()}"
    for name, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    start = time.perf_counter()
    code, _, err = run(capsys, "convert", "s3://bucket/in.root", "--schema", "cms_ak4", "-o", str(tmp_path / "ds"),
                       "--workers", "1")
    assert code == 3 and f"s3://bucket/in.root: cannot reach {endpoint}" in one_line(err), err
    assert time.perf_counter() - start < 30 and not (tmp_path / "ds").exists()


# ---------------------------------------------------------------- Dask's noise


@pytest.mark.slow
def test_a_task_error_is_the_one_line_and_the_dashboard_stays_quiet(capfd, monkeypatch):
    """On the CLI's own LocalCluster: a task raising one of jetstore's errors prints no worker "Compute Failed …
    Traceback" block, and another local user's GET of /json/identity.json (which distributed fails to encode
    once tasks ran) puts no tornado traceback in the terminal: the route is not served."""
    from jetstore.conversion.cluster import dask_client
    from jetstore.errors import DatasetError
    from jetstore.stats.result import StatsResult

    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    with dask_client(workers=1, quiet=True) as client:
        with pytest.raises(DatasetError, match="expected a JSON object"):
            client.submit(StatsResult.from_json, "[]", "x.json", pure=False).result()
        base = client.dashboard_link.rsplit("/", 1)[0]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/json/identity.json", timeout=10)
        assert refused.value.code == 404
        assert urllib.request.urlopen(f"{base}/status", timeout=10).status == 200  # the dashboard itself
        time.sleep(0.5)  # the worker's log record, if any, reaches the terminal
    err = capfd.readouterr().err
    assert "Compute Failed" not in err and "Traceback" not in err and "tornado" not in err, err
