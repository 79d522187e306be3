"""loopml.runtime.net: the one small HTTP client (the demo, the release smoke test) and free ports."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from loopml.runtime.net import Unreachable, free_port, request_json


class _Echo(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        answer = json.dumps({"got": body, "key": self.headers.get("x-api-key")}).encode()
        self.send_response(401 if body.get("deny") else 200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(answer)

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(502)
        self.end_headers()
        self.wfile.write(b"<html>bad gateway</html>")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), _Echo)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_json_in_and_out_with_the_key_and_error_statuses_as_answers(server) -> None:
    assert request_json("POST", f"{server}/x", {"a": 1}, key="k") == (200, {"got": {"a": 1}, "key": "k"})
    assert request_json("POST", f"{server}/x", {"deny": True}) == (401, {"got": {"deny": True}, "key": None})
    assert request_json("GET", f"{server}/x") == (502, "<html>bad gateway</html>")


def test_no_answer_at_all_is_unreachable_naming_the_request() -> None:
    url = f"http://127.0.0.1:{free_port()}/health"
    with pytest.raises(Unreachable, match=f"GET {url}: "):
        request_json("GET", url, timeout=2)
