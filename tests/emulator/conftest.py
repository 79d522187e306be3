"""The API as Lambda runs it: ``sam local start-api`` through podman (see infra/containers.sh), on
the built package (``sam build``: python3.13 wheels and bytecode), answering real HTTP requests.

Runs when LOOPML_EMULATOR=1 (``.ci/run`` sets it after ``bash infra/containers.sh all``); skipped
otherwise, since it needs podman, the Lambda-like image and a minute to start.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _emu import API_KEY_SHA256

from loopml.storage import LocalStore

ROOT = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("LOOPML_TOOLS_DIR", "/opt/loopml-tools"))
SAM = TOOLS / "sam-venv" / "bin" / "sam"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "emulator: the API under sam local start-api through podman")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("LOOPML_EMULATOR") == "1":
        return
    skip = pytest.mark.skip(reason="set LOOPML_EMULATOR=1 (after bash infra/containers.sh all) to run sam local")
    for item in items:
        if "tests/emulator/" in str(item.fspath):
            item.add_marker(skip)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="session")
def built_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `sam build` output: .aws-sam/build when make test's sam_check made it, else a fresh build."""
    existing = ROOT / ".aws-sam" / "build"
    if (existing / "ApiFunction" / "handlers" / "api.py").exists() and (existing / "template.yaml").exists():
        return existing
    out = tmp_path_factory.mktemp("sam-build")
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}
    subprocess.run([str(SAM), "build", "--template-file", str(ROOT / "template.yaml"), "--build-dir", str(out)],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=900)
    return out


@pytest.fixture(scope="session")
def emulator_store(tmp_path_factory: pytest.TempPathFactory, linear_trained) -> Path:
    root = tmp_path_factory.mktemp("emulator-store")
    linear_trained.register(LocalStore(root))
    os.chmod(root, 0o777)  # the container writes the prediction log and feedback here
    return root


@pytest.fixture(scope="session")
def api_url(built_package: Path, emulator_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A podman service of our own (its containers see the store at /mnt/store), then sam local.
    LAZY warm containers: EAGER would also start the PreTraffic hook, whose inline code sam local
    cannot mount; the first request starts the API's container, later ones reuse it."""
    work = tmp_path_factory.mktemp("sam-local")
    sock = work / "podman.sock"
    conf = work / "containers.conf"
    conf.write_text(f'[containers]\ndefault_ulimits = []\nvolumes = ["{emulator_store}:/mnt/store:rw"]\n'
                    '[engine]\nruntime = "runc"\n')
    env = {**os.environ, "CONTAINERS_CONF": str(conf), "DOCKER_HOST": f"unix://{sock}", "SAM_CLI_TELEMETRY": "0",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    def ours() -> set[str]:  # containers running our built package (sam's, from this session)
        out = subprocess.run(["podman", "ps", "-a", "--format", "{{.ID}} {{.Mounts}}"], env=env,
                             capture_output=True, text=True).stdout
        return {line.split()[0] for line in out.splitlines() if str(built_package / "ApiFunction") in line}

    before = ours()
    podman = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"], env=env,
                              stdout=subprocess.DEVNULL, stderr=open(work / "podman.log", "w"))
    sam = None
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.1)
        env_vars = work / "env.json"
        env_vars.write_text(json.dumps({"ApiFunction": {"LOOPML_STORE": "/mnt/store", "LOOPML_ROOT_PATH": "",
                                                        "LOOPML_LOG_FLUSH_SECONDS": "0"}}))
        port = _free_port()
        log = open(work / "sam.log", "w")
        sam = subprocess.Popen([str(SAM), "local", "start-api", "--template", str(built_package / "template.yaml"),
                                "--host", "127.0.0.1", "--port", str(port), "--warm-containers", "LAZY",
                                "--skip-pull-image", "--env-vars", str(env_vars),
                                "--parameter-overrides", f"ApiKeySha256={API_KEY_SHA256}"],
                               cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
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
        if sam is not None:
            _stop(sam)
        _stop(podman)  # sam stops its warm containers on SIGINT; the service goes after it
        left = ours() - before  # a slow or failed start can leave one behind: remove what we made
        if left:
            subprocess.run(["podman", "rm", "-f", *left], env=env, capture_output=True)
