"""``jetstore k8s train|predict``: Jobs rendered from the trainer's options, valid against the Kubernetes schemas
(kubernetes-validate --strict, offline), with no hand edits but names and secrets: the checked-in
k8s/train-job.yaml is exactly the documented command's output; the trainer's command line inside parses back to
the options asked; pods hardened; bad requests one line."""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest
import yaml

from jetstore.cli import main
from jetstore.train.cli import parse_options
from tests.helpers import REPO, dev_tool

CONFIG = "tests/fixtures/weaver_cms_ak4.yaml"
NETWORK = "tests/fixtures/networks/deep_sets.py"
BASE = ["--name", "pn-v2", "--image", "registry.example/me/jetstore:0.2.0-cu126", "--bucket", "mine",
        "--pull-secret", "gitlab-pull", "--kerberos-secret", "eos-keytab", "--kerberos-principal", "me@CERN.CH",
        "--gpus", "2", "--data", "s3://mine/ak4/train.zarr", "--data", "eos:root://eosuser.cern.ch//eos/ak4.zarr",
        "--config", CONFIG, "-n", NETWORK, "-o", "hidden", "64", "--steps", "1000", "--workers", "2"]


def render(capsys, monkeypatch, *args: str) -> list[dict]:
    monkeypatch.chdir(REPO)
    capsys.readouterr()
    assert main(["k8s", *args]) == 0, capsys.readouterr().err
    return list(yaml.safe_load_all(capsys.readouterr().out))


def validate(documents: list[dict], tmp_path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    result = subprocess.run([dev_tool("kubernetes-validate"), "--strict", str(path)], capture_output=True, text=True)
    assert result.returncode == 0 and "ERROR" not in result.stdout, result.stdout + result.stderr


def test_the_checked_in_job_is_the_documented_commands_output(capsys, monkeypatch, tmp_path):
    """k8s/train-job.yaml is its first line's command's output, the README shows that command, and every
    `jetstore k8s` command of the README renders valid Jobs."""
    text = (REPO / "k8s/train-job.yaml").read_text()
    command = re.match(r"# Rendered by: jetstore (k8s train .*) > k8s/train-job\.yaml\n", text).group(1)
    body = "".join(line + "\n" for line in text.splitlines() if not line.startswith("#"))
    assert list(yaml.safe_load_all(body)) == render(capsys, monkeypatch, *shlex.split(command)[1:])
    documented = [line.split(" > ")[0] for line in (REPO / "k8s/README.md").read_text().splitlines()
                  if line.startswith("jetstore k8s ")]
    assert f"jetstore {command}" in documented and len(documented) == 2
    for line in documented:
        validate(render(capsys, monkeypatch, *shlex.split(line)[2:]), tmp_path)


def test_a_rendered_run_is_valid_and_complete(capsys, monkeypatch, tmp_path):
    config_map, job, board = render(capsys, monkeypatch, "train", *BASE)
    validate([config_map, job, board], tmp_path)
    assert config_map["data"] == {"weaver_cms_ak4.yaml": (REPO / CONFIG).read_text(),
                                  "deep_sets.py": (REPO / NETWORK).read_text()}
    pod = job["spec"]["template"]["spec"]
    train = pod["containers"][0]  # the main container: kubectl logs job/jetstore-train-pn-v2 is training
    command = [*train["command"], *train["args"]]
    assert command[:5] == ["torchrun", "--standalone", "--nproc_per_node=2", "-m", "jetstore.train"]
    options = parse_options(command[5:])
    assert options.data == ("s3://mine/ak4/train.zarr", "eos:root://eosuser.cern.ch//eos/ak4.zarr")
    assert (options.config, options.network_config) == ("/config/weaver_cms_ak4.yaml", "/config/deep_sets.py")
    assert (options.output, options.checkpoints) == ("/output/pn-v2", "s3://mine/runs/pn-v2/checkpoints")
    assert options.network_options == (("hidden", "64"),) and options.steps == 1000 and options.workers == 2
    assert pod["imagePullSecrets"] == [{"name": "gitlab-pull"}]
    assert train["resources"]["limits"]["nvidia.com/gpu"] == "2"
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["key"] == "nvidia.com/gpu.product"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory" and volumes["keytab"]["secret"]["secretName"] == \
        "eos-keytab"
    env = {e["name"]: e for e in train["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "jetstore-s3"
    assert env["KRB5CCNAME"]["value"] == "FILE:/krb/cache"
    sidecar = pod["initContainers"][0]  # a native sidecar renewing the ticket while training runs
    assert sidecar["restartPolicy"] == "Always" and "kinit -k -t /keytab/keytab me@CERN.CH" in sidecar["command"][2]
    assert board["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["--logdir", "/output/pn-v2/tensorboard"]
    for document in (job, board):
        hardened(document)


def hardened(job: dict) -> None:
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
        limits, requests = container["resources"]["limits"], container["resources"]["requests"]
        assert limits.keys() == requests.keys() >= {"cpu", "memory", "ephemeral-storage"}  # NRP's rules


def test_the_prediction_job(capsys, monkeypatch, tmp_path):
    (job,) = render(capsys, monkeypatch, "predict", "--name", "pn-v2", "--image", "registry.example/j:1",
                    "--predict-data", "s3://mine/ak4/test.zarr", "-n", NETWORK)
    validate([job], tmp_path)
    hardened(job)
    container = job["spec"]["template"]["spec"]["containers"][0]
    command = [*container["command"], *container["args"]]
    assert command[:2] == ["jetstore", "train"]
    options = parse_options(command[2:])
    assert (options.output, options.predict) == ("/output/pn-v2", "/output/pn-v2/predictions.parquet")
    assert options.network_config == "/config/deep_sets.py"  # named again: a run folder's file is not trusted
    assert options.predict_data == "s3://mine/ak4/test.zarr"


@pytest.mark.parametrize(("change", "message"), [
    ({"--data": "ak4.zarr"}, "--data: give the datasets' s3:// (or root://) URLs"),
    ({"--bucket": None}, "give --bucket (or --checkpoints s3://...)"),
    ({"--name": "Part_1"}, "--name 'Part_1': 1-40 lower-case letters"),
    ({"--lr": "nan"}, "--lr nan: must be a finite number > 0"),
    ({"--kerberos-principal": None}, "--kerberos-secret and --kerberos-principal go together"),
])
def test_bad_requests_are_one_line(change, message, capsys, monkeypatch):
    args = list(BASE)
    for key, value in change.items():
        at = args.index(key) if key in args else None
        if at is not None:
            del args[at:at + 2]
        if value is not None:
            args += [key, value]
    monkeypatch.chdir(REPO)
    capsys.readouterr()
    assert main(["k8s", "train", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
