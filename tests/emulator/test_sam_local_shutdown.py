"""No answered prediction is lost when Lambda retires a container: under ``sam local start-api`` (the
built python3.13 package in the Lambda-like image, the real Runtime Interface Client and SAM's Runtime
Interface Emulator), predictions are answered while the log holds them in its buffer (nothing is due
for an hour), then the emulator is stopped, which retires the container as Lambda does (SIGTERM to the
runtime, SIGKILL after a short deadline). Every answered id must be in the store's prediction log."""

from __future__ import annotations

import json
import os
import subprocess
import time

import httpx
import pytest

from loopml.storage import LocalStore
from tests.support.emulator import API_KEY_SHA256, KEY, SAM_ENV, package_containers, removing_containers, sam_api
from tests.support.podman import podman_service


def logged_ids(root) -> list[str]:
    store = LocalStore(root)
    return [json.loads(line)["id"] for key in store.list("prediction-log/") for line in store.get(key).splitlines()]


@pytest.fixture
def store_root(tmp_path, linear_trained):
    root = tmp_path / "store"
    linear_trained.register(LocalStore(root))
    os.chmod(root, 0o777)  # the container writes the prediction log here
    return root


def test_stopping_the_emulator_loses_no_answered_prediction(built_package, store_root, tmp_path):
    work = tmp_path / "sam"
    work.mkdir()
    function_env = {"LOOPML_STORE": "/mnt/store", "LOOPML_ROOT_PATH": "", "LOOPML_LOG_FLUSH_SECONDS": "3600"}
    answered: list[str] = []
    with podman_service(work, volumes=(f"{store_root}:/mnt/store:rw",)) as podman:
        env = {**os.environ, **podman, **SAM_ENV}
        package = built_package / "ApiFunction"
        with removing_containers(env, package):
            with sam_api(built_package / "template.yaml", work, env, function_env, {"ApiKeySha256": API_KEY_SHA256},
                         shutdown=True) as url:
                with httpx.Client(base_url=url, timeout=60) as http:
                    doc = http.get("/openapi.json").json()
                    row = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["examples"][
                        "one row"]["value"]["row"]
                    for n in range(30):
                        body = {"row": row} if n % 3 else {"rows": [row] * 5}
                        r = http.post("/predict", json=body, headers=KEY)
                        assert r.status_code == 200, r.text
                        answered += [p["id"] for p in r.json()["predictions"]]
                assert len(answered) == 20 + 10 * 5
                assert logged_ids(store_root) == []  # all still buffered in the warm container
            # sam stopped: its warm container was retired; give podman the deadline to finish
            deadline = time.monotonic() + 60
            while any(_running(env, c) for c in package_containers(env, package)) and time.monotonic() < deadline:
                time.sleep(0.5)
    assert sorted(logged_ids(store_root)) == sorted(answered)
    assert "flush at shutdown failed" not in (work / "sam.log").read_text()


def _running(env: dict[str, str], container: str) -> bool:
    state = subprocess.run(["podman", "inspect", container, "--format", "{{.State.Running}}"], env=env,
                           capture_output=True, text=True).stdout.strip()
    return state == "true"
