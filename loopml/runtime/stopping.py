"""Stopping a command on time: SIGTERM, SIGINT and a deadline become one exception in the main thread.

A scheduler stops a job with SIGTERM, a person with Ctrl-C, and ``--deadline`` bounds a command that
waits on something that never answers. Each raises :class:`Stopped` wherever the main thread waits, and
:func:`loopml.runtime.flowrun.run_flow` stops the flow it started on the way up.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

DEADLINE_EXIT = 124  # like timeout(1)


class Stopped(BaseException):
    """The command was stopped (a signal, its deadline). A BaseException, like KeyboardInterrupt, so no
    ``except Exception`` on the way up swallows it; run_flow stops the flow it started on the way."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _stop_on(signum: int, _frame: Any) -> None:
    raise Stopped(f"stopped by {signal.Signals(signum).name}", 128 + signum)


@contextmanager
def stop_conditions(deadline: float | None) -> Iterator[None]:
    """SIGTERM, SIGINT and the deadline raise :class:`Stopped` in the main thread, wherever it waits."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _deadline(_signum: int, _frame: Any) -> None:
        raise Stopped(f"the deadline of {deadline:g} s passed", DEADLINE_EXIT)

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM)}
    signal.signal(signal.SIGTERM, _stop_on)
    signal.signal(signal.SIGINT, _stop_on)
    if deadline:
        signal.signal(signal.SIGALRM, _deadline)
        signal.setitimer(signal.ITIMER_REAL, deadline)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in saved.items():
            signal.signal(sig, handler)
