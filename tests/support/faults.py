"""Network faults for the fault tests (the kills at named points are :func:`tests.support.cli.kill_at`).

* :class:`StallProxy`: a TCP proxy in front of a server (e.g. a moto ``ThreadedMotoServer``) that
  passes traffic, stalls it (accepts, reads, never answers) or refuses it (accepts and resets), and
  can be switched between modes while a test runs.
* :func:`moto_behind_proxy`: a moto server, a bucket, and a proxy in front of it, with the env that
  points boto3 at the proxy.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tests.support.moto import CREDENTIALS, client, running_moto

PASS, STALL, REFUSE = "pass", "stall", "refuse"


# a stalling TCP proxy ---------------------------------------------------------------------------
class StallProxy:
    """Listens on 127.0.0.1:<port> and forwards to ``target`` according to ``mode``:

    * ``pass``: forward both ways;
    * ``stall``: accept and read the request, never answer (until the mode changes or it stops);
    * ``refuse``: accept and reset the connection at once (what a dead endpoint looks like to a client
      that already resolved it; a closed port cannot be reopened reliably for ``pass`` afterwards).

    In ``pass`` mode, :meth:`target_requests` picks out requests containing some bytes (e.g.
    ``b"PUT /bucket/root/registry/aliases/champion.json"``) for the next ``times`` matches: ``stall``
    never forwards them (the write does not happen), ``mute`` forwards them and withholds the reply
    (the write lands, the client times out and retries: the case of a slow S3 reply).
    """

    def __init__(self, target: tuple[str, int], mode: str = PASS) -> None:
        self.target, self.mode = target, mode
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stalled = 0  # connections held without an answer, for tests to assert on
        self.matched = 0  # requests a target_requests rule applied to
        self._rule: tuple[bytes, str, int] | None = None
        self._rule_lock = threading.Lock()
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StallProxy:
        self._thread.start()
        return self

    def target_requests(self, match: bytes, action: str, times: int = 1) -> None:
        assert action in (STALL, "mute")
        with self._rule_lock:
            self._rule = (match, action, times)

    def reset(self) -> None:
        """Back to plain pass-through."""
        with self._rule_lock:
            self._rule = None
        self.mode, self.matched, self.stalled = PASS, 0, 0

    def _apply_rule(self, chunk: bytes) -> str | None:
        with self._rule_lock:
            if self._rule is None or self._rule[0] not in chunk:
                return None
            match, action, times = self._rule
            self._rule = (match, action, times - 1) if times > 1 else None
            self.matched += 1
            return action

    def stop(self) -> None:
        self._stop.set()
        self.listener.close()
        for c in list(self._conns):
            _close(c)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self._conns.append(client)
            threading.Thread(target=self._serve, args=(client, self.mode), daemon=True).start()

    def _serve(self, client: socket.socket, mode: str) -> None:
        if mode == REFUSE:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
            _close(client)
            return
        if mode == STALL:
            self.stalled += 1
            client.settimeout(0.2)
            while not self._stop.is_set() and self.mode == STALL:
                try:
                    if not client.recv(65536):
                        break
                except TimeoutError:
                    continue
                except OSError:
                    break
            _close(client)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            _close(client)
            return
        self._conns.append(upstream)
        state = {"muted": False}
        threading.Thread(target=self._replies, args=(upstream, client, state), daemon=True).start()
        self._requests(client, upstream, state)

    def _requests(self, client: socket.socket, upstream: socket.socket, state: dict[str, bool]) -> None:
        stalled = False
        try:
            while data := client.recv(65536):
                action = None if stalled else self._apply_rule(data)
                if action == STALL:
                    stalled = True
                    self.stalled += 1
                if stalled:
                    continue  # swallowed: never forwarded, never answered
                if action == "mute":
                    state["muted"] = True
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            _close(client)
            _close(upstream)

    @staticmethod
    def _replies(upstream: socket.socket, client: socket.socket, state: dict[str, bool]) -> None:
        try:
            while data := upstream.recv(65536):
                if not state["muted"]:
                    client.sendall(data)
        except OSError:
            pass
        finally:
            _close(upstream)
            _close(client)


def _close(s: socket.socket) -> None:
    try:
        s.close()
    except OSError:
        pass


@dataclass
class MotoBehindProxy:
    """A moto server, the proxy in front of it, and the bucket the tests use."""

    endpoint: str  # the moto server itself
    proxy: StallProxy
    bucket: str

    def env(self, **extra: str) -> dict[str, str]:
        """boto3 (and awswrangler) to the proxy, with test credentials."""
        return {"AWS_ENDPOINT_URL": self.proxy.url, **CREDENTIALS, **extra}

    def client(self) -> Any:
        """An S3 client of the server itself, past the proxy."""
        return client("s3", {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint})


@contextmanager
def moto_behind_proxy(bucket: str = "loopml-faults") -> Iterator[MotoBehindProxy]:
    """A ThreadedMotoServer of its own, a bucket, and a proxy in front."""
    with running_moto() as port:
        proxy = StallProxy(("127.0.0.1", port)).start()
        env = MotoBehindProxy(f"http://127.0.0.1:{port}", proxy, bucket)
        try:
            env.client().create_bucket(Bucket=bucket)
            yield env
        finally:
            proxy.stop()
