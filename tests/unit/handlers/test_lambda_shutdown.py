"""Lambda's shutdown phase (handlers/lifecycle.py): a process that registered with the Extensions API
writes its buffered prediction log when SIGTERM comes, although its main thread never returns to the
interpreter (as in the Runtime Interface Client), then exits.

The Extensions API is a real HTTP server on 127.0.0.1; the serving process is a real subprocess
holding a real PredictionLog on a folder store, killed with a real SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from handlers.lifecycle import EXTENSION_NAME, flush_on_shutdown
from loopml.storage import LocalStore
from tests.support import REPO


class ExtensionsApi(ThreadingHTTPServer):
    """What Lambda's Runtime API answers to an extension: registration, then a ``next`` that blocks."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.registered: list[tuple[str, dict]] = []
        self.waiting = threading.Event()
        self.release = threading.Event()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: ExtensionsApi

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.path == "/2020-01-01/extension/register"
        self.server.registered.append((self.headers["Lambda-Extension-Name"], body))
        self.send_response(200)
        self.send_header("Lambda-Extension-Identifier", "ext-1")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def do_GET(self) -> None:
        assert self.path == "/2020-01-01/extension/event/next"
        assert self.headers["Lambda-Extension-Identifier"] == "ext-1"
        self.server.waiting.set()
        self.server.release.wait(30)  # subscribed to no event: nothing comes while the container lives
        self.send_response(500)
        self.end_headers()


@pytest.fixture
def extensions_api():
    api = ExtensionsApi()
    threading.Thread(target=api.serve_forever, daemon=True).start()
    yield api
    api.release.set()
    api.shutdown()


SERVING = textwrap.dedent("""
    import sys, time
    from datetime import UTC, datetime
    from handlers.lifecycle import flush_on_shutdown
    from loopml.serving.prediction_log import PredictionLog
    from loopml.storage import LocalStore

    plog = PredictionLog(LocalStore(sys.argv[1]), flush_seconds=3600, flush_rows=10**6)  # nothing due for an hour
    armed = flush_on_shutdown(plog.flush)
    now = datetime.now(UTC)
    ids = plog.new_ids(int(sys.argv[2]), now)
    plog.add([{"id": i, "time": now.isoformat(), "version": 1, "features": {"x": n}, "prediction": 0}
              for n, i in enumerate(ids)])
    print(armed, *ids, flush=True)
    time.sleep(3600)  # the main thread stays away, as the runtime client's native loop does
""")


def logged_ids(store_root: Path) -> list[str]:
    store = LocalStore(store_root)
    return [json.loads(line)["id"] for key in store.list("prediction-log/") for line in store.get(key).splitlines()]


def test_sigterm_writes_every_buffered_prediction_then_exits(tmp_path, extensions_api):
    env = {**os.environ, "AWS_LAMBDA_RUNTIME_API": extensions_api.address, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", SERVING, str(tmp_path), "250"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    armed, *answered = proc.stdout.readline().split()
    assert armed == "True" and len(answered) == 250
    assert extensions_api.waiting.wait(10)  # the extension asked for its next event: init can complete
    assert extensions_api.registered == [(EXTENSION_NAME, {"events": []})]
    assert logged_ids(tmp_path) == []  # still buffered: nothing was due

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0, proc.stderr.read()
    assert sorted(logged_ids(tmp_path)) == sorted(answered)


def test_outside_lambda_nothing_is_armed(monkeypatch):
    monkeypatch.delenv("AWS_LAMBDA_RUNTIME_API", raising=False)
    assert flush_on_shutdown(lambda: None) is False
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_an_unreachable_extensions_api_leaves_the_api_serving(caplog):
    assert flush_on_shutdown(lambda: None, runtime_api="127.0.0.1:9") is False  # nothing listens on port 9
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert "could not register with the Extensions API" in caplog.text
