"""``jetstore k8s train|predict``: the Kubernetes (NRP) manifests of a training run, rendered from the trainer's own
options, so the Job needs no hand edits but names and secrets.

``jetstore k8s train [k8s options] [jetstore train options] > job.yaml`` writes three documents: a ConfigMap with
the data-config (and the network file, if any) read from the command line's local files, the training Job
(``torchrun -m jetstore.train`` as its main container, so ``kubectl logs job/<name>`` shows training; checkpoints on
S3, ``--output`` on a ReadWriteMany PVC; resubmitting it resumes), and a TensorBoard Job on the same PVC.
``jetstore k8s predict`` writes the prediction Job of a trained run. Every trainer option is checked as
``jetstore train`` checks it; the pods run hardened (non-root, no privilege escalation, no capabilities,
seccomp RuntimeDefault, no service-account token)."""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from jetstore.errors import JetstoreError
from jetstore.train.cli import _Parser, build_parser, parse_options
from jetstore.train.options import TrainOptions, flag

UID = 1000  # the images' user
NRP_S3 = "http://rook-ceph-rgw-nautiluss3.rook"  # NRP's in-cluster Ceph RGW (HTTP, path-style)
GPUS = ("NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-80GB-PCIe", "NVIDIA-L40", "NVIDIA-GeForce-RTX-3090")
NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?")
CONFIG_DIR, OUTPUT_DIR, KRB_DIR = "/config", "/output", "/krb"
KINDS = ("train", "predict")


@dataclasses.dataclass(frozen=True)
class Pod:
    """What the pods run with: the k8s options (``jetstore k8s train --help``)."""

    name: str
    image: str
    bucket: str | None = None
    pull_secret: str | None = None
    s3_secret: str = "jetstore-s3"
    s3_endpoint: str = NRP_S3
    kerberos_secret: str | None = None
    kerberos_principal: str | None = None
    gpus: int = 1
    gpu_product: tuple[str, ...] = GPUS
    cpu: int = 4
    memory_gi: int = 16
    shm_gi: int = 4
    pvc: str = "jetstore-train-output"

    def __post_init__(self) -> None:
        if not NAME.fullmatch(self.name):
            raise JetstoreError(f"--name {self.name!r}: 1-40 lower-case letters, digits and '-' (a Kubernetes name)")
        if (self.kerberos_secret is None) != (self.kerberos_principal is None):
            raise JetstoreError("--kerberos-secret and --kerberos-principal go together (the keytab and its user)")
        for value, what in ((self.gpus, "--gpus"), (self.cpu, "--cpu"), (self.memory_gi, "--memory-gi"),
                            (self.shm_gi, "--shm-gi")):
            if value < (0 if what == "--gpus" else 1):
                raise JetstoreError(f"{what} {value}: too small")

    @property
    def run(self) -> str:
        return f"{OUTPUT_DIR}/{self.name}"


def k8s_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jetstore k8s train|predict", description=__doc__, add_help=False,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="the run's name (Jobs jetstore-train-NAME, ...; its "
                                                      "--output is /output/NAME on the PVC)")
    parser.add_argument("--image", required=True, help="the GPU image (k8s/Dockerfile.gpu), registry/path:tag")
    parser.add_argument("--bucket", help="checkpoints in s3://BUCKET/runs/NAME/checkpoints (or give --checkpoints)")
    parser.add_argument("--pull-secret", help="imagePullSecrets: the Secret with the registry's credentials")
    parser.add_argument("--s3-secret", default="jetstore-s3", help="the Secret with AWS_ACCESS_KEY_ID and "
                                                                   "AWS_SECRET_ACCESS_KEY")
    parser.add_argument("--s3-endpoint", default=NRP_S3, help="the S3 endpoint (default: NRP's Ceph RGW)")
    parser.add_argument("--kerberos-secret", help="a Secret with a Kerberos keytab (key 'keytab') for root:// "
                                                  "(xrootd, e.g. EOS) data; renewed by a sidecar")
    parser.add_argument("--kerberos-principal", help="the keytab's principal, e.g. user@CERN.CH")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs (torchrun processes) of the pod")
    parser.add_argument("--gpu-product", action="append", help="allowed nvidia.com/gpu.product (repeat; default: "
                                                               + ", ".join(GPUS) + ")")
    parser.add_argument("--cpu", type=int, default=4, help="CPU cores of the pod")
    parser.add_argument("--memory-gi", type=int, default=16, help="memory of the pod, GiB")
    parser.add_argument("--shm-gi", type=int, default=4, help="/dev/shm (DataLoader workers, NCCL), GiB")
    parser.add_argument("--pvc", default="jetstore-train-output", help="the ReadWriteMany PVC of the run folders "
                                                                       "(k8s/train-pvc.yaml)")
    return parser


def main(argv: Sequence[str]) -> int:
    """``jetstore k8s train|predict ...``: the manifests on stdout."""
    if not argv or argv[0] not in KINDS or "--help" in argv or "-h" in argv:
        print(__doc__, file=sys.stderr)
        k8s_parser().print_help(sys.stderr)
        print("\nand the options of jetstore train (jetstore train --help)", file=sys.stderr)
        return 0 if argv and ("--help" in argv or "-h" in argv) else 2
    known, rest = k8s_parser().parse_known_args(argv[1:])
    values = vars(known)
    values["gpu_product"] = tuple(values["gpu_product"] or GPUS)
    pod = Pod(**values)
    render = train_documents if argv[0] == "train" else predict_documents
    sys.stdout.write(dump(render(pod, rest)))
    return 0


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:  # every value written out (kubectl reads anchors, people less)
        return True


def dump(documents: list[dict[str, Any]]) -> str:
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, width=120)


def _local_file(path: str | None, what: str) -> Path | None:
    if path is None:
        return None
    file = Path(path)
    if "://" in path or not file.is_file():
        raise JetstoreError(f"{what} {path}: give a local file (it is put in the run's ConfigMap)")
    return file


def train_documents(pod: Pod, argv: Sequence[str]) -> list[dict[str, Any]]:
    """ConfigMap, training Job and TensorBoard Job of a run."""
    options = parse_options(argv)
    if not options.data or any("://" not in url for url in options.data):
        raise JetstoreError("--data: give the datasets' s3:// (or root://) URLs: the pod reads no local path")
    if options.config is None:
        raise JetstoreError("--config: give the data-config file (it is put in the run's ConfigMap)")
    checkpoints = options.checkpoints or (f"s3://{pod.bucket}/runs/{pod.name}/checkpoints" if pod.bucket else None)
    if checkpoints is None or "://" not in checkpoints:
        raise JetstoreError("give --bucket (or --checkpoints s3://...): checkpoints must outlive the pod")
    files = {name: file for name, file in (("config", _local_file(options.config, "--config")),
                                            ("network_config", _local_file(options.network_config, "-n")))
             if file is not None}
    if len({f.name for f in files.values()}) < len(files):
        raise JetstoreError("--config and -n have the same file name: rename one")
    mounted: dict[str, Any] = {k: f"{CONFIG_DIR}/{f.name}" for k, f in files.items()}  # the ConfigMap's paths
    pod_options = dataclasses.replace(options, output=pod.run, checkpoints=checkpoints, progress=False, **mounted)
    command = ["torchrun", "--standalone", f"--nproc_per_node={max(pod.gpus, 1)}", "-m", "jetstore.train",
               *arguments(pod_options)]
    config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": f"jetstore-config-{pod.name}", "labels": _labels(pod, "train")},
                  "data": {f.name: f.read_text() for f in files.values()}}
    train = _job(pod, "train", command, gpus=pod.gpus, backoff=2)
    board = _job(pod, "tensorboard", ["tensorboard", "--logdir", f"{pod.run}/tensorboard", "--host", "0.0.0.0",
                                      "--port", "6006"], gpus=0, backoff=0, cpu=1, memory_gi=2, read_only=True)
    board["spec"]["activeDeadlineSeconds"] = 7 * 86400  # a week, then it frees its node's resources
    board["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": 6006, "name": "tensorboard"}]
    return [config_map, train, board]


def predict_documents(pod: Pod, argv: Sequence[str]) -> list[dict[str, Any]]:
    """The prediction Job of a trained run: its run folder on the PVC, a network file from the run's ConfigMap
    (named with -n, as a run folder's network file must be), the scores written into the run folder."""
    given = vars(build_parser(defaults=False).parse_args(argv))
    out = given.pop("predict", None) or f"{pod.run}/predictions.parquet"
    if not out.startswith(f"{pod.run}/"):
        raise JetstoreError(f"--predict {out}: the Job writes into the run folder {pod.run}/ on the PVC")
    network = _local_file(given.get("network_config"), "-n")
    if network is not None:
        given["network_config"] = f"{CONFIG_DIR}/{network.name}"
    options = TrainOptions(**{**given, "output": pod.run, "predict": out, "progress": False})
    return [_job(pod, "predict", ["jetstore", "train", *arguments(options)], gpus=min(pod.gpus, 1), backoff=1)]


def arguments(options: TrainOptions) -> list[str]:
    """``--name=value`` of every option that differs from its default (repeated ones repeated)."""
    defaults = TrainOptions()
    out = []
    for item in dataclasses.fields(TrainOptions):
        value = getattr(options, item.name)
        if value == getattr(defaults, item.name):
            continue
        name = item.metadata.get("flags", (flag(item.name),))[-1]
        if isinstance(value, bool):
            out.append(name if value else f"--no-{name[2:]}")
        elif item.name == "network_options":
            out += [a for key, text in value for a in (name, key, text)]
        elif isinstance(value, tuple):
            out += [f"{name}={v}" for v in value]
        else:
            out.append(f"{name}={value}")
    return out


def _labels(pod: Pod, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "jetstore", "app.kubernetes.io/component": component,
            "app.kubernetes.io/instance": pod.name}


def _job(pod: Pod, component: str, command: list[str], gpus: int, backoff: int, cpu: int | None = None,
         memory_gi: int | None = None, read_only: bool = False) -> dict[str, Any]:
    """A Job of one hardened pod with the run's volumes and settings."""
    cpu, memory = cpu or pod.cpu, memory_gi or pod.memory_gi
    env: list[dict[str, Any]] = [
        {"name": "AWS_ENDPOINT_URL_S3", "value": pod.s3_endpoint},
        *({"name": key, "valueFrom": {"secretKeyRef": {"name": pod.s3_secret, "key": key}}}
          for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))]
    mounts = [{"name": "output", "mountPath": OUTPUT_DIR, **({"readOnly": True} if read_only else {})},
              {"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [{"name": "output", "persistentVolumeClaim": {"claimName": pod.pvc}},
                                     {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}}]
    if component != "tensorboard":
        mounts += [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "config", "mountPath": CONFIG_DIR}]
        volumes += [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{pod.shm_gi}Gi"}},
                    {"name": "config", "configMap": {"name": f"jetstore-config-{pod.name}"}}]
    requests = {"cpu": str(cpu), "memory": f"{memory}Gi", "ephemeral-storage": "2Gi",
                **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
    limits = {**requests, "cpu": f"{cpu * 1200}m", "memory": f"{memory * 1024 * 6 // 5}Mi",
              "ephemeral-storage": "2400Mi"}
    container = {"name": component, "image": pod.image, "command": command[:1], "args": command[1:], "env": env,
                 "resources": {"requests": requests, "limits": limits}, "volumeMounts": mounts,
                 "securityContext": _hardened()}
    spec: dict[str, Any] = {
        "restartPolicy": "Never", "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container], "volumes": volumes}
    if pod.pull_secret:
        spec["imagePullSecrets"] = [{"name": pod.pull_secret}]
    if gpus:
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In",
                                   "values": list(pod.gpu_product)}]}]}}}
    if pod.kerberos_secret and component != "tensorboard":
        _with_kerberos(pod, spec, container)
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": f"jetstore-{component}-{pod.name}", "labels": _labels(pod, component)},
            "spec": {"backoffLimit": backoff, "ttlSecondsAfterFinished": 86400,
                     "template": {"metadata": {"labels": _labels(pod, component)}, "spec": spec}}}


def _hardened() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _with_kerberos(pod: Pod, spec: dict[str, Any], container: dict[str, Any]) -> None:
    """A native sidecar (an init container that keeps running) renewing a Kerberos ticket from the keytab every 6
    hours into a shared ticket cache (``KRB5CCNAME``), for xrootd (root://) reads, e.g. from EOS."""
    cache = {"name": "KRB5CCNAME", "value": f"FILE:{KRB_DIR}/cache"}
    container["env"].append(cache)
    container["volumeMounts"].append({"name": "krb", "mountPath": KRB_DIR})
    spec["volumes"] += [{"name": "krb", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                        {"name": "keytab", "secret": {"secretName": pod.kerberos_secret, "defaultMode": 0o400}}]
    renew = (f"while true; do kinit -k -t /keytab/keytab {pod.kerberos_principal} || exit 1; "
             "touch /krb/ready; sleep 21600; done")
    spec["initContainers"] = [{
        "name": "kerberos", "image": pod.image, "restartPolicy": "Always", "command": ["sh", "-c", renew],
        "env": [cache], "startupProbe": {"exec": {"command": ["test", "-f", f"{KRB_DIR}/ready"]},
                                         "periodSeconds": 2, "failureThreshold": 30},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi", "ephemeral-storage": "10Mi"},
                      "limits": {"cpu": "60m", "memory": "76Mi", "ephemeral-storage": "12Mi"}},
        "volumeMounts": [{"name": "krb", "mountPath": KRB_DIR}, {"name": "keytab", "mountPath": "/keytab",
                                                                 "readOnly": True}],
        "securityContext": _hardened()}]
