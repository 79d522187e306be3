"""The key the emulator's API is deployed with (its SHA-256 goes in as the template parameter), and
`sam local start-api` run for a test: started, waited for, stopped, its containers removed."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from loopml.runtime.net import free_port
from tests.support.podman import SAM

API_KEY = "emulator-key-0123456789"
API_KEY_SHA256 = hashlib.sha256(API_KEY.encode()).hexdigest()
KEY = {"x-api-key": API_KEY}

# what the SAM CLI itself runs with (it calls no AWS endpoint; the functions get these credentials)
SAM_ENV = {"SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def stop(proc: subprocess.Popen) -> None:
    """SIGINT first: sam stops its warm containers on it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def package_containers(env: dict[str, str], package: Path) -> set[str]:
    """The containers (running or not) that mount this built package: those sam local made for it."""
    out = subprocess.run(["podman", "ps", "-a", "--format", "{{.ID}} {{.Mounts}}"], env={**os.environ, **env},
                         capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if str(package) in line}


@contextmanager
def removing_containers(env: dict[str, str], package: Path) -> Iterator[None]:
    """Remove, afterwards, the package's containers made meanwhile (a slow or failed start can leave one)."""
    before = package_containers(env, package)
    try:
        yield
    finally:
        left = package_containers(env, package) - before
        if left:
            subprocess.run(["podman", "rm", "-f", *left], env={**os.environ, **env}, capture_output=True)


@contextmanager
def sam_api(template: Path, work: Path, env: dict[str, str], function_env: dict[str, str],
            parameters: dict[str, str], warm: str = "LAZY", shutdown: bool = False) -> Iterator[str]:
    """``sam local start-api`` on a free port of 127.0.0.1; yields its URL once GET /health answers.

    LAZY warm containers: EAGER would also start the PreTraffic hook, whose inline code sam local cannot
    mount; the first request starts the API's container, later ones reuse it. ``function_env`` overrides
    the ApiFunction's environment (only variables the template declares: SAM's --env-vars rule); ``env`` is
    the SAM CLI's whole environment. ``shutdown``: sam stops the warm container as Lambda retires one (SIGTERM
    to the runtime, then SIGKILL) instead of removing it outright."""
    env_vars = work / "env.json"
    env_vars.write_text(json.dumps({"ApiFunction": function_env}))
    port = free_port()
    overrides = " ".join(f"{k}={v}" for k, v in parameters.items())
    with open(work / "sam.log", "w") as log:
        sam = subprocess.Popen([str(SAM), "local", "start-api", "--template", str(template), "--host", "127.0.0.1",
                                "--port", str(port), "--warm-containers", warm, "--skip-pull-image",
                                "--env-vars", str(env_vars), "--parameter-overrides", overrides,
                                *(["--shutdown"] if shutdown else [])],
                               cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 600  # a loaded machine makes podman slow to create the first container
        while True:
            if sam.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sam local start-api did not come up:\n{(work / 'sam.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=30).status_code in (200, 503):
                    break
            except httpx.HTTPError:
                time.sleep(1)
        yield url
    finally:
        stop(sam)
