"""Named points where a fault test may kill this process (``LOOPML_FAULT=<point>``).

Inert unless that variable names the point: the only cost is one environment lookup. The fault
suite (tests/faults) sets it on a subprocess to prove that a kill at that moment leaves the store
consistent and that a re-run converges. SIGKILL, not an exception: nothing (no ``finally``, no
atexit) gets to tidy up, exactly as with a real kill -9 or an OOM kill.
"""

from __future__ import annotations

import os
import signal

ENV = "LOOPML_FAULT"


def point(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
