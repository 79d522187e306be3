"""Lambda's shutdown phase: write the buffered prediction log before the container is retired.

Lambda freezes a container between invocations and may retire it at any time without running more
code, so records still buffered (up to ``log_flush_seconds`` or ``log_flush_rows`` of them) would be
answered but never logged. Lambda sends the runtime SIGTERM before retiring a container only when an
extension is registered, so :func:`flush_on_shutdown` registers an *internal* extension (a thread of
this process, subscribed to no event: no cost per invocation) and flushes on that signal.

A plain ``signal.signal(SIGTERM, handler)`` is not enough: the Runtime Interface Client waits for the
next event in native code, so the main thread never returns to the interpreter to run a Python-level
handler (aws-lambda-python-runtime-interface-client issue 105; seen here under SAM's emulator too).
Python's C-level handler still writes the signal number to the wakeup fd at once, so a thread that
waits on that fd flushes, then ends the process: Lambda SIGKILLs a runtime that has not exited
within its deadline (a few hundred milliseconds), which a flush of one small object fits in.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("loopml.api")

EXTENSION_NAME = "loopml-prediction-log"
EXTENSIONS_API = "2020-01-01/extension"


def register_extension(runtime_api: str, name: str = EXTENSION_NAME, timeout: float = 2.0) -> str:
    """Register an internal extension subscribed to no event; returns its identifier. A registered
    extension is what makes Lambda send SIGTERM (and wait briefly) before it retires the container."""
    conn = http.client.HTTPConnection(runtime_api, timeout=timeout)
    try:
        conn.request("POST", f"/{EXTENSIONS_API}/register", body=json.dumps({"events": []}),
                     headers={"Lambda-Extension-Name": name, "Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        ident = resp.getheader("Lambda-Extension-Identifier")
        if resp.status != 200 or not ident:
            raise RuntimeError(f"the Lambda Extensions API refused the registration: HTTP {resp.status}")
        return ident
    finally:
        conn.close()


def _wait_for_events(runtime_api: str, ident: str) -> None:
    """Tell Lambda the extension is ready (init completes only once every extension asked for its next
    event). Subscribed to nothing, the call does not return while the container lives."""
    conn = http.client.HTTPConnection(runtime_api)
    try:
        conn.request("GET", f"/{EXTENSIONS_API}/event/next", headers={"Lambda-Extension-Identifier": ident})
        conn.getresponse().read()
    except OSError:
        pass  # the container is going away
    finally:
        conn.close()


def on_sigterm(action: Callable[[], Any], exit_code: int | None = 0) -> threading.Thread:
    """Run ``action`` in a thread of its own as soon as SIGTERM arrives, whatever the main thread is
    doing, then end the process with ``exit_code`` (None: leave the process running, for tests).

    Must be called from the main thread (Python installs signal handlers only there)."""
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    signal.signal(signal.SIGTERM, lambda *_: None)  # the C-level handler is what writes to the fd
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)

    def watch() -> None:
        while True:
            got = reader.recv(64)
            if not got or signal.SIGTERM in got:
                break
        try:
            action()
        except Exception:  # the process ends either way; say why the flush failed
            log.exception("flush at shutdown failed")
        if exit_code is not None:
            logging.shutdown()
            os._exit(exit_code)

    thread = threading.Thread(target=watch, name="loopml-shutdown", daemon=True)
    thread._loopml_fds = (reader, writer)  # type: ignore[attr-defined]  # keep both ends open
    thread.start()
    return thread


def flush_on_shutdown(flush: Callable[[], Any], runtime_api: str | None = None) -> bool:
    """Inside Lambda (``AWS_LAMBDA_RUNTIME_API`` set): register the extension and run ``flush`` on
    SIGTERM. Returns whether it is armed; outside Lambda it does nothing (``loopml serve`` flushes in
    the app's shutdown event)."""
    runtime_api = runtime_api or os.environ.get("AWS_LAMBDA_RUNTIME_API")
    if not runtime_api:
        return False
    try:
        ident = register_extension(runtime_api)
    except (OSError, RuntimeError) as err:  # serve anyway: the log still flushes when due
        log.warning("no flush at shutdown: could not register with the Extensions API (%s)", err)
        return False
    try:
        on_sigterm(flush)
    except ValueError as err:  # not the main thread: Python installs signal handlers only there
        log.warning("no flush at shutdown: %s", err)
        return False
    threading.Thread(target=_wait_for_events, args=(runtime_api, ident), name="loopml-extension",
                     daemon=True).start()
    return True
