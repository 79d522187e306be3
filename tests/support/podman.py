"""Shared by tests/container and tests/emulator: what `sam local` needs from podman on these machines.

- :func:`podman_service`: a podman system service of the caller's own (the SAM CLI talks to it as DOCKER_HOST), on a
  socket in a folder of the caller's, stopped by its pid afterwards: a shared socket could be stopped by another
  run on the same machine.
- :func:`moto_on_bridge`: the session's moto server as a container on podman's default bridge network reaches it.
  `sam local` puts every function container on that bridge (its ``--docker-network host`` connects nothing: the
  container stays on the bridge, see aws/aws-sam-cli#4236), where the host's 127.0.0.1, on which the moto server
  listens, is out of reach.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.moto import running_moto

TOOLS = Path(os.environ.get("LOOPML_TOOLS_DIR", "/opt/loopml-tools"))
CONTAINERS_CONF = TOOLS / "containers" / "containers.conf"  # written by `infra/containers.sh setup`
SAM = TOOLS / "sam-venv" / "bin" / "sam"


def conf_text(volumes: tuple[str, ...] = ()) -> str:
    """containers.conf as infra/containers.sh writes it (runc; no default ulimits), with extra volumes."""
    lines = ["[containers]", "default_ulimits = []"]
    if volumes:
        lines.append("volumes = [" + ", ".join(f'"{v}"' for v in volumes) + "]")
    return "\n".join([*lines, "[engine]", 'runtime = "runc"', ""])


@contextmanager
def podman_service(work: Path, volumes: tuple[str, ...] = ()) -> Iterator[dict[str, str]]:
    """A podman system service on ``work``/podman.sock; yields the env for the SAM CLI (DOCKER_HOST,
    CONTAINERS_CONF). ``volumes`` go into every container it starts (SAM mounts only the code)."""
    sock, conf = work / "podman.sock", work / "containers.conf"
    conf.write_text(conf_text(volumes))
    env = {"CONTAINERS_CONF": str(conf), "DOCKER_HOST": f"unix://{sock}"}
    with open(work / "podman.log", "w") as log:
        service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"],
                                   env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            if service.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"podman system service did not start:\n{(work / 'podman.log').read_text()}")
            time.sleep(0.1)
        yield env
    finally:
        service.terminate()
        try:
            service.wait(30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait(10)


def bridge_gateway() -> str:
    """The host's address on podman's default network (its gateway), as the containers on it see the host."""
    out = subprocess.run(["podman", "network", "inspect", "podman", "--format", "{{range .Subnets}}{{.Gateway}}{{end}}"],
                         env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}, capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip()
    if not out:
        raise RuntimeError("podman's default network has no gateway")
    return out


@contextmanager
def moto_on_bridge() -> Iterator[str]:
    """A second listener of this process's moto, on all interfaces; yields its URL by the bridge's gateway IP.

    Both listeners serve one state: moto's backends are process-wide, so what the tests wrote through the
    127.0.0.1 server is what the containers read here. By IP, not by host.containers.internal: moto takes the
    first label of a dotted host name for a bucket (virtual-hosted S3), and the name has dots."""
    gateway = bridge_gateway()
    with running_moto("0.0.0.0") as port:
        yield f"http://{gateway}:{port}"
