"""Stopping the CLI stops the flow it started, and a flow's own error is one line. Real `loopml`
processes and real Metaflow flows (local datastore, a folder store): the deadline, SIGTERM and SIGKILL
each leave no flow process behind and nothing registered.

A flow process is recognised by the LOOPML_FLOW_PARENT=<cli pid> in its environment (run_flow sets it;
the runtime and every task inherit it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.support import REPO

pytestmark = pytest.mark.integration


def flow_processes(cli_pid: int) -> list[int]:
    marker = f"LOOPML_FLOW_PARENT={cli_pid}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:  # gone, or a zombie
            continue
    return found


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def slow_project(tmp_path: Path, car_loan_full):
    """A training that takes minutes (many large forests), so it is surely running when stopped."""
    from loopml.demo.data import car_loan_spec

    train = car_loan_full[0]
    train.sample(3000, random_state=0).sort_values("timestamp").to_parquet(tmp_path / "train.parquet", index=False)
    raw = car_loan_spec(".")
    raw["data"] = {"train": "train.parquet"}
    raw["constraints"] = {}
    raw["candidates"] = [{"family": "random_forest", "n_iter": 40,
                          "space": {"n_estimators": list(range(400, 440)), "max_depth": [None], "min_samples_leaf": [1]}}]
    (tmp_path / "project.yaml").write_text(yaml.safe_dump(raw))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METAFLOW_", "AWS_", "LOOPML_"))}
    env.update({"PYTHONPATH": str(REPO), "METAFLOW_DEFAULT_DATASTORE": "local", "METAFLOW_DEFAULT_METADATA": "local",
                "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(tmp_path), "METAFLOW_USER": "test",
                "NANNYML_DISABLE_USAGE_LOGGING": "1"})
    return {"dir": tmp_path, "spec": str(tmp_path / "project.yaml"), "store": tmp_path / "store", "env": env}


def start_train(p: dict, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "loopml.cli.main", "train", "--spec", p["spec"], "--store", str(p["store"]),
                             *extra], cwd=p["dir"], env=p["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def registered(p: dict) -> list[Path]:
    return sorted(p["store"].glob("registry/versions/*/version.json"))


def assert_nothing_left(p: dict, cli_pid: int) -> None:
    wait_until(lambda: not flow_processes(cli_pid), 15, "the flow's processes to end")
    time.sleep(3)  # had anything survived, it would be writing now
    assert not flow_processes(cli_pid)
    assert registered(p) == []
    assert list((p["dir"] / ".metaflow" / "TrainFlow").glob("*")), "the flow had started (else the test proves nothing)"


def test_the_deadline_stops_the_flow_and_exits_124(slow_project):
    p = slow_project
    started = time.monotonic()
    cli = start_train(p, "--deadline", "25")
    out, err = cli.communicate(timeout=240)
    assert cli.returncode == 124, err
    assert err.strip().splitlines()[-1] == ("loopml train: the deadline of 25 s passed; stopped (a flow it started "
                                            "was stopped too)")
    assert "Traceback" not in err
    assert time.monotonic() - started < 25 + 30  # the deadline plus the stop's grace, not the training's length
    assert_nothing_left(p, cli.pid)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_stopping_the_cli_stops_its_flow(slow_project, sig):
    p = slow_project
    cli = start_train(p)
    # the runtime and at least one task: the flow is running
    wait_until(lambda: len(flow_processes(cli.pid)) >= 2 or cli.poll() is not None, 180, "the flow to start")
    assert cli.poll() is None, cli.communicate()
    os.kill(cli.pid, sig)
    out, err = cli.communicate(timeout=60)
    if sig == signal.SIGKILL:
        assert cli.returncode == -signal.SIGKILL  # no chance to clean up: the flow must die on its own
    else:
        assert cli.returncode == 128 + sig, err
        assert err.strip().splitlines()[-1] == (f"loopml train: stopped by {signal.Signals(sig).name}; stopped (a flow it "
                                                "started was stopped too)")
    assert_nothing_left(p, cli.pid)


def test_an_error_inside_a_flow_is_one_line(slow_project):
    """Data that passes the CLI's checks (readable, right columns) but fails validation in the flow's
    first step: the step and the reason, one line, exit 2; the traceback only with --debug."""
    p = slow_project
    import pandas as pd

    df = pd.read_parquet(p["dir"] / "train.parquet")
    df["repaid"] = 1.0  # one class only
    df.to_parquet(p["dir"] / "train.parquet", index=False)
    cli = start_train(p)
    out, err = cli.communicate(timeout=300)
    assert cli.returncode == 2, err
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("loopml train: train_flow step start: ")
    assert "target 'repaid' has fewer than 2 classes" in lines[0]
    assert registered(p) == []

    debug = start_train(p, "--debug")
    out, err = debug.communicate(timeout=300)
    assert debug.returncode == 2 and "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1] == lines[0]
