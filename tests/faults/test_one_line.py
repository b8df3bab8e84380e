"""The documented one line, also when things go sideways: a malformed lease field, Ctrl-C in the middle of a
conversion (no worker tracebacks), and ``-vv`` debug logs that never show the access key id or secret."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from jetstore.console import guarded
from jetstore.model import paths
from tests.helpers import REPO, cli


def test_a_malformed_lease_field_is_one_line(sample_files, tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / paths.LEASE).write_text(json.dumps({"run_id": "a" * 32, "host": "h", "pid": 1, "created": 0,
                                               "renewed": "yesterday"}))
    result = cli("convert", *sample_files, "--schema", "cms_ak4", "-o", str(out), "--workers", "1")
    assert result.returncode == 4 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"jetstore: error: {out}: _lease.json is malformed ('renewed' must be a number (seconds since 1970), "
        "not 'yesterday'); remove it or pass --break-lease")


def _default_sigint() -> None:
    """SIGINT as a terminal's foreground command gets it: a suite started in the background by a
    non-interactive shell (a CI script's ``cmd &``) inherits it ignored, and Python then never raises
    KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_mid_conversion_is_one_line(sample_files, tmp_path):
    """SIGINT to the whole process group, as a terminal's Ctrl-C: the workers ignore it, the client stops
    the cluster and says how to resume."""
    out = tmp_path / "ds"
    environ = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    process = subprocess.Popen([sys.executable, "-m", "jetstore", "convert", *sample_files, "--schema", "cms_ak4",
                                "-o", str(out), "--workers", "2", "--jets-per-shard", "4", "--no-progress"],
                               cwd=REPO, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, preexec_fn=_default_sigint)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / paths.COMMITS).glob("*.json"))
                                         if (out / paths.COMMITS).exists() else []) < 3:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    lines = err.strip().splitlines()
    assert lines[0].startswith("dask local cluster tls://127.0.0.1:") and lines[1].startswith("converting ")
    assert lines[2:] == ["jetstore: interrupted; rerun the same command to resume"], err


def test_what_libraries_log_while_unwinding_ctrl_c_is_dropped(capsys):
    """A library logging as the interrupt unwinds it (distributed's callbacks racing a cluster's close) would
    break the one line: logging is off from the signal until the line is printed, and on again after it."""
    library = logging.getLogger("some.library")
    handler = logging.StreamHandler(sys.stderr)
    library.addHandler(handler)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (a background job's
    # shell, as CI's may be, starts Python with SIGINT ignored)

    def command(_) -> int:
        try:
            library.error("before the interrupt")
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
            return 0
        finally:
            library.error("Exception in callback: NameError")

    try:
        assert guarded(command, None, verbosity=0) == 130
        assert capsys.readouterr().err.splitlines() == ["before the interrupt",
                                                        "jetstore: interrupted; rerun the same command to resume"]
        library.error("after")
        assert capsys.readouterr().err == "after\n"
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        library.removeHandler(handler)
        signal.signal(signal.SIGINT, previous)


def test_debug_logs_never_show_the_keys(moto_server):
    moto_server.make_bucket("debuglogs")
    env = moto_server.environ()
    result = cli("-vv", "inspect", "s3://debuglogs/none", env=env, timeout=120)
    assert result.returncode == 4, result.stderr
    assert "Credential=***" in result.stderr  # botocore's debug log of the signed request, redacted
    assert moto_server.key not in result.stderr and moto_server.secret not in result.stderr
