"""The Kubernetes manifests: valid against the Kubernetes schemas (strict) and the dask-kubernetes CRD,
NRP's rules, and their command lines accepted by the real jetstore / trainer argument parsers."""

from __future__ import annotations

import importlib.resources
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jetstore.cli import build_parser
from train.cli import build_parser as train_parser

K8S = Path(__file__).resolve().parents[1] / "k8s"
MANIFESTS = sorted(K8S.glob("*.yaml"))
BIN = Path(sys.executable).parent


def documents():
    for path in MANIFESTS:
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield path.name, document


def pod_specs():
    for name, document in documents():
        kind = document["kind"]
        if kind in ("Job", "Deployment"):
            yield name, document["spec"]["template"]["spec"]
        elif kind == "DaskCluster":
            yield name, document["spec"]["worker"]["spec"]
            yield name, document["spec"]["scheduler"]["spec"]


def containers():
    for name, spec in pod_specs():
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            yield name, container


def test_every_manifest_is_present():
    names = {p.name for p in MANIFESTS}
    assert {"train-job.yaml", "dask-cluster.yaml", "dask-fallback.yaml", "convert-job.yaml"} <= names
    assert (K8S / "Dockerfile").exists() and (K8S / "README.md").exists()


@pytest.mark.parametrize("path", [p for p in MANIFESTS if p.name != "dask-cluster.yaml"], ids=lambda p: p.name)
def test_kubernetes_validate_strict(path):
    result = subprocess.run([str(BIN / "kubernetes-validate"), "--strict", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "INFO" in result.stdout and "ERROR" not in result.stdout


def test_dask_cluster_against_the_operator_crd(tmp_path):
    crd_path = importlib.resources.files("dask_kubernetes") / \
        "operator/deployment/helm/dask-kubernetes-operator/crds/daskcluster.yaml"
    crd = yaml.safe_load(crd_path.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = tmp_path / "daskcluster.schema.json"
    schema.write_text(json.dumps(version["schema"]["openAPIV3Schema"]))
    instance = tmp_path / "cluster.json"
    instance.write_text(json.dumps(yaml.safe_load((K8S / "dask-cluster.yaml").read_text())))
    result = subprocess.run([str(BIN / "check-jsonschema"), "--schemafile", str(schema), str(instance)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = yaml.safe_load((K8S / "dask-cluster.yaml").read_text())
    del broken["spec"]["scheduler"]["spec"]["containers"]
    instance.write_text(json.dumps(broken))
    result = subprocess.run([str(BIN / "check-jsonschema"), "--schemafile", str(schema), str(instance)],
                            capture_output=True, text=True)
    assert result.returncode != 0  # the schema check is not vacuous


def quantity(value: str) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "": 1}
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value)).groups()
    return float(number) * units[unit]


def test_nrp_rules():
    for name, container in containers():
        resources = container["resources"]
        for key, request in resources["requests"].items():
            limit = resources["limits"][key]
            assert quantity(request) <= quantity(limit) <= 1.2 * quantity(request), (name, key)
        for variable in container.get("env", []):
            if variable["name"] in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                assert "secretKeyRef" in variable["valueFrom"], (name, variable)
            if variable["name"].startswith("AWS_ENDPOINT_URL"):
                assert variable["value"].startswith("http://"), name
    for name, document in documents():
        if name == "train-job.yaml":
            spec = document["spec"]["template"]["spec"]
            term = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            assert term["nodeSelectorTerms"][0]["matchExpressions"][0]["key"] == "nvidia.com/gpu.product"
            shm = next(v for v in spec["volumes"] if v["name"] == "dshm")
            assert shm["emptyDir"]["medium"] == "Memory"
            assert {"mountPath": "/dev/shm", "name": "dshm"} in spec["containers"][0]["volumeMounts"]
    text = "".join(p.read_text() for p in MANIFESTS if "example" not in p.name)
    assert "AWS_SECRET_ACCESS_KEY:" not in text  # no literal keys outside the example Secret


def test_commands_are_valid_invocations():
    checked = 0
    for _, container in containers():
        command = [*container.get("command", []), *container.get("args", [])]
        if command[:1] == ["jetstore"]:
            build_parser().parse_args(command[1:])
            checked += 1
        elif command[:1] == ["torchrun"]:
            module = command.index("-m")
            assert command[module + 1] == "train"
            train_parser().parse_args(command[module + 2:])
            checked += 1
        elif command[:2] in (["dask", "worker"], ["dask", "scheduler"]):
            checked += 1
    assert checked >= 7
