"""The little networking loopml does itself: a free loopback port for a server it starts (the demo's API,
the tests' servers) and one small JSON-over-HTTP client (the demo, the release smoke test).

The standard library only: the client must work in the slim deployment images and from CI runners.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any


class Unreachable(OSError):
    """The request got no HTTP answer at all (refused, timed out, no such host); the message names it."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on at ``host`` right now (the OS picks it; the caller binds it next)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def request_json(method: str, url: str, body: Any = None, *, key: str | None = None,
                 timeout: float = 30.0) -> tuple[int, Any]:
    """Send ``body`` as JSON (with ``key`` as ``x-api-key``) and return the status and the decoded answer.

    An HTTP error status is an answer, returned like any other; an answer that is not JSON comes back as
    its first 200 characters, so a caller can show what a proxy said instead."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"accept": "application/json"}
    if data is not None:
        headers["content-type"] = "application/json"
    if key:
        headers["x-api-key"] = key
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (the operator's URL)
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        raise Unreachable(f"{method} {url}: {getattr(err, 'reason', err)}") from None
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw[:200].decode(errors="replace")
