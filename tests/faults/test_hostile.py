"""Safe by construction: hostile checkpoints, expressions and YAML are refused before they run, errors never
print a file's contents, and the LocalCluster is private (127.0.0.1, mutual TLS with this run's credentials)."""

from __future__ import annotations

import os
import pickle
import resource
import subprocess
import sys
import time

import pytest
import yaml

from jetstore.errors import DatasetError, SchemaError
from tests.helpers import REPO, cli

torch = pytest.importorskip("torch")


class Payload:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_checkpoint_is_refused_not_run(tmp_path):
    from jetstore.train.checkpoint import load_checkpoint

    marker = tmp_path / "pwned"
    (tmp_path / "ckpt").mkdir()
    with open(tmp_path / "ckpt" / "latest.pt", "wb") as handle:
        pickle.dump({"model": Payload(str(marker))}, handle)
    with pytest.raises(DatasetError, match="not a loadable checkpoint"):
        load_checkpoint(str(tmp_path / "ckpt"))
    assert not marker.exists()


def test_plain_checkpoint_round_trips_with_weights_only(tmp_path):
    from jetstore.train.checkpoint import load_checkpoint, save_checkpoint

    state = {"model": {"w": torch.arange(4.0)}, "step": 7, "rng": torch.get_rng_state(),
             "sampler": {"epoch": 1, "batches": 3, "seed": 5}, "options": {"lr": 1e-3, "betas": (0.9, 0.99)}}
    save_checkpoint(str(tmp_path / "ckpt"), state, 7)
    loaded = load_checkpoint(str(tmp_path / "ckpt"))
    assert loaded["step"] == 7 and loaded["sampler"] == state["sampler"]
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])


def write_config(tmp_path, **changes) -> str:
    data = yaml.safe_load((REPO / "tests/fixtures/weaver_cms_ak4.yaml").read_text())
    for key, value in changes.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize("expression, fragment", [
    ("np.abs(jet_pfcand_deta, out=jet_pfcand_dphi)", "the keyword out="),
    ("np.abs(jet_pfcand_deta, jet_pfcand_dphi)", "np.abs() with 2 positional arguments"),
    ("np.clip(jet_pfcand_deta, 0, 1, jet_pfcand_dphi)", "np.clip() with 4 positional arguments"),
    ("np.nan_to_num(jet_pfcand_deta, False)", "np.nan_to_num() with 2 positional arguments"),
    ("np.sqrt(jet_pfcand_deta, where=jet_pfcand_dphi > 0)", "the keyword where="),
])
def test_expressions_cannot_write_to_their_inputs(tmp_path, expression, fragment):
    from jetstore.config import load_training_config

    config = write_config(tmp_path, new_variables={"evil": expression})
    with pytest.raises(SchemaError, match="new_variables") as error:
        load_training_config(config)
    assert fragment in str(error.value)


def test_exploding_constant_is_refused_by_schema_check(tmp_path):
    schema = yaml.safe_load((REPO / "jetstore/schema/bundled/cms_ak4.yaml").read_text())
    schema["jets"].append({"name": "boom", "expr": "jet_pt * ((((10**18)**64)**64)**64)**64"})
    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump(schema))
    start = time.perf_counter()
    result = cli("schema", "check", str(path), timeout=60)
    assert result.returncode == 2 and "its value is out of range" in result.stderr
    assert time.perf_counter() - start < 30 and "Traceback" not in result.stderr


def test_yaml_alias_bomb_is_refused_before_expansion(tmp_path):
    levels = ['a0: &a0 ["jet_pt", "jet_pt", "jet_pt", "jet_pt", "jet_pt", "jet_pt", "jet_pt", "jet_pt", "jet_pt"]']
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    text = (REPO / "tests/fixtures/weaver_cms_ak4.yaml").read_text()
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(levels) + "\n" + text.replace("weights:", "weights:\n   weight_branches: *a9", 1))
    # in a child process with 1 GiB of address space: expanding 9**10 strings would not fit
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)); "
            "from jetstore.config import load_training_config; load_training_config(sys.argv[1])")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "YAML aliases (*name) are not supported" in result.stderr
    assert "MemoryError" not in result.stderr
    assert resource.getrlimit(resource.RLIMIT_AS)  # the limit applied to the child only


def test_errors_never_print_file_contents(tmp_path):
    secret = "root:$6$Zx9SeCrEtHaSh$abcdef:19000:0:99999:7:::"
    path = tmp_path / "shadow"
    path.write_text(f"{secret}\ndaemon:*:19000:0:99999:7:::\n")
    for args in (("schema", "check", str(path)), ("stats", str(tmp_path), "--config", str(path))):
        result = cli(*args)
        assert result.returncode in (2, 4) and "SeCrEtHaSh" not in result.stderr + result.stdout, result.stderr


def test_local_cluster_is_private():
    """Loopback only, and mutual TLS with this run's credentials: another local process (a plain client, or
    one with credentials of its own) cannot connect, so it cannot run code as the converting user."""
    from jetstore.conversion.cluster import dask_client

    with dask_client(workers=1, quiet=True) as client:
        address = client.scheduler.address
        assert address.startswith("tls://127.0.0.1:")
        assert client.dashboard_link.startswith("http://127.0.0.1:")
        workers = client.scheduler_info()["workers"]
        assert workers and all(w.startswith("tls://127.0.0.1:") for w in workers)
        assert client.submit(sum, [1, 2]).result() == 3  # the run's own client works
        code = ("import sys; from distributed import Client; from distributed.security import Security\n"
                "for security in (None, Security.temporary()):\n"
                "    try:\n"
                "        Client(sys.argv[1], timeout=4, security=security).submit(sum, [1]).result()\n"
                "    except Exception as exc:\n"
                "        print('refused', type(exc).__name__)\n"
                "    else:\n"
                "        print('CONNECTED')\n"
                "try:\n"
                "    Client(sys.argv[1].replace('tls://', 'tcp://'), timeout=4).submit(sum, [1]).result()\n"
                "except Exception as exc:\n"
                "    print('refused', type(exc).__name__)\n"
                "else:\n"
                "    print('CONNECTED')\n")
        for target in (address, *workers):
            result = subprocess.run([sys.executable, "-c", code, target], capture_output=True, text=True, timeout=90)
            assert result.stdout.split().count("refused") == 3 and "CONNECTED" not in result.stdout, result
