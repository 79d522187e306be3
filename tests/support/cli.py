"""The ``loopml`` command as tests run it: in process (``main``'s exit code), or in a fresh interpreter,
optionally SIGKILLed at a named point (``LOOPML_FAULT=<point>``, read by :func:`loopml.faults.point`, inert
otherwise). A kill -9 at a chosen line, not an exception: no ``finally`` runs, as in production.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.support import REPO


def run_main(*argv: str) -> int:
    """``loopml <argv>`` in this process; its exit code (argparse's errors exit through SystemExit)."""
    from loopml.cli.main import main

    try:
        return main(list(argv))
    except SystemExit as exit_:
        return int(exit_.code or 0)


def cli_env(extra: dict[str, str] | None = None, fault: str | None = None) -> dict[str, str]:
    """This process's env for a ``loopml`` subprocess: the repo importable, ``fault`` armed (or none), ``extra``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("LOOPML_FAULT", None)
    if fault:
        env["LOOPML_FAULT"] = fault
    env.update(extra or {})
    return env


def run_cli(*argv: str, env: dict[str, str] | None = None, fault: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``loopml <argv>`` in a fresh interpreter; ``fault`` names the point where it is killed."""
    return subprocess.run([sys.executable, "-m", "loopml.cli.main", *argv], env=cli_env(env, fault), text=True,
                          capture_output=True, timeout=timeout)


def kill_at(point: str, *argv: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the command and check that it really died at ``point`` (SIGKILL), not earlier or later."""
    done = run_cli(*argv, env=env, fault=point, timeout=timeout)
    assert done.returncode == -signal.SIGKILL, (
        f"expected a kill at {point!r}, got exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}")
    return done
