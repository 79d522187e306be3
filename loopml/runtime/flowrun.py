"""Run the Metaflow flows in ``flows/`` from Python (the CLI, the demo and the tests use this), and make
sure a flow never outlives the process that started it.

* A failed flow raises :class:`FlowFailed` with one line: the failing step and its exception's message
  (the task's traceback is kept on the exception for ``--debug``).
* The flow runs in its own process group (it makes itself a group leader, see :func:`follow_parent`), so
  stopping it (an exception here: a deadline, SIGTERM, Ctrl-C) stops its runtime and every task at once.
* If the starting process dies without a chance to stop it (SIGKILL), every flow process dies with it:
  each one asks the kernel for a death signal when its parent goes (``PR_SET_PDEATHSIG``; elsewhere a
  thread watches the parent). A scheduler that kills and restarts the CLI never gets two writers.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def flows_dir() -> Path:
    """The folder that holds the flow files. An installed wheel carries the repo's top-level ``flows/`` as the
    package ``loopml.flows`` (setup.py maps it), so it is a folder inside this package; in a source checkout
    (tests, ``pip install -e .``) ``flows/`` sits beside the package and goes with the code being imported."""
    package = Path(__file__).resolve().parents[1]  # loopml/
    packaged = package / "flows"
    return packaged if (packaged / "flowbase.py").is_file() else package.parent / "flows"


FLOWS = flows_dir()
PARENT_ENV = "LOOPML_FLOW_PARENT"  # pid of the process that started the flow; set only by run_flow
STOP_GRACE_SECONDS = 5.0
PR_SET_PDEATHSIG = 1
# what a person wants to see of a flow's own output when nothing goes wrong (everything with --debug)
PROGRESS_MARKERS = ("Workflow starting", "Task is starting", "Task finished successfully", "Done!")


class FlowFailed(RuntimeError):
    """A flow run failed. ``user_error``: it failed on its input (spec, data, store, registry), not on a
    bug; ``traceback``: the failing task's traceback, shown only with ``--debug``."""

    def __init__(self, message: str, user_error: bool = True, traceback: str | None = None) -> None:
        super().__init__(message)
        self.user_error = user_error
        self.traceback = traceback


def ensure_user() -> None:
    """Metaflow refuses to run (or read runs) without a user name, which CI and containers lack."""
    if not any(os.environ.get(v) for v in ("METAFLOW_USER", "USER", "USERNAME", "LOGNAME")):
        os.environ["METAFLOW_USER"] = "loopml"


# ------------------------------------------------------------------------------ the flow's side
def follow_parent() -> None:
    """Called when a flow file is imported (flows/flowbase.py): in the runtime and in every task.

    Only flows started by :func:`run_flow` (``LOOPML_FLOW_PARENT`` set) are tied to their parent; a flow
    started by hand or by a scheduler is left alone."""
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return
    if os.getppid() == int(parent):  # the runtime itself: lead a group that its tasks inherit
        try:
            os.setpgid(0, 0)
        except OSError:
            pass
    die_with_parent()


def flow_run_key(current: Any) -> str:
    """The run a step belongs to, e.g. ``TrainFlow/1712345``: the original run when resumed, the same for
    every attempt of a step, so a side effect keyed by it happens once (Metaflow's ``current``)."""
    return f"{current.flow_name}/{current.origin_run_id or current.run_id}"


def die_with_parent() -> None:
    """Ask the kernel to kill this process when its parent goes (elsewhere, a thread watches the parent)."""
    expected = os.getppid()
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    else:
        threading.Thread(target=_watch_parent, args=(expected,), daemon=True, name="loopml-watch-parent").start()
    # the parent was already gone before the signal was armed (reparented to init), unless the parent
    # that started the flow is itself PID 1: `loopml` as a container's entry point
    if os.getppid() != expected or (expected == 1 and os.environ.get(PARENT_ENV) != "1"):
        os._exit(1)


def _watch_parent(expected: int) -> None:
    while os.getppid() == expected:
        time.sleep(0.5)
    os._exit(1)


# ---------------------------------------------------------------------------- the caller's side
def _signal(pid: int, sig: int) -> None:
    """``sig`` to the flow's process group (its runtime and tasks) and to the runtime itself, in case
    it had not made its group yet; a process already gone is not an error."""
    for send in (os.killpg, os.kill):
        try:
            send(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def stop_process_group(proc: Any, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM to the flow's group, then SIGKILL to what is left after ``grace`` seconds."""
    _signal(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except Exception:  # still running after the grace period (TimeoutExpired)
        pass
    _signal(proc.pid, signal.SIGKILL)  # tasks that ignored SIGTERM; the group outlives its leader
    try:
        proc.wait(timeout=grace)
    except Exception:
        pass


class _Lines:
    """Stands in for sys.stdout while Metaflow streams a flow's output: each line goes to ``sink``."""

    def __init__(self, sink: Callable[[str], None]) -> None:
        self.sink = sink

    def write(self, text: str) -> int:
        """Hand each complete line of ``text`` to the sink."""
        for line in text.splitlines():
            self.sink(line)
        return len(text)

    def flush(self) -> None:
        """Nothing is buffered."""
        pass


def progress_only(echo: Callable[[str], None]) -> Callable[[str], None]:
    """A sink that shows Metaflow's progress lines and drops the rest (tracebacks included)."""
    return lambda line: echo(line) if any(m in line for m in PROGRESS_MARKERS) else None


def failure(name: str, run: Any, output: str) -> FlowFailed:
    """One line for a failed run: the failing step and its exception (from Metaflow's client)."""
    for step in run:
        for task in step:
            if not task.successful:  # a failed task is not "finished" in Metaflow's terms
                exc = task.exception
                if exc is not None:
                    return FlowFailed(f"{name} step {step.id}: {_message(exc)}", _is_user_error(exc.type),
                                      getattr(exc, "stacktrace", None))
    return FlowFailed(f"{name} failed: {last_line(output)}", True, output)


def _message(exc: Any) -> str:
    text = " ".join(str(exc.exception).split())
    return text or exc.type


def _is_user_error(type_name: str) -> bool:
    """Whether the exception class a task raised is one the CLI reports as a user error."""
    import importlib

    module, _, name = type_name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except Exception:
        return module.startswith(("botocore", "boto3", "awswrangler"))
    from loopml.registry.registry import RegistryError
    from loopml.storage import KeyNotFound

    return issubclass(cls, ValueError | OSError | RegistryError | KeyNotFound) or module.startswith(("botocore", "boto3"))


def last_line(output: str) -> str:
    """The last non-blank line of a flow's output (most often the error), or "no output"."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def run_flow(name: str, show_output: bool = True, output: Callable[[str], None] | None = None, **params: Any) -> Any:
    """Run ``flows/<name>.py`` to completion and return its Metaflow ``Run``; raise :class:`FlowFailed` if
    it failed. ``output`` receives the flow's output line by line (else ``show_output`` prints it as is).
    Whatever interrupts the wait (an exception, a signal turned into one) stops the flow first."""
    ensure_user()
    from metaflow import Runner

    path = FLOWS / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"flow file {path} not found: this loopml install lacks its flows (reinstall the wheel)")
    clean = {k: str(v) for k, v in params.items() if v is not None and v != ""}
    if "spec" in clean and "spec_dir" not in clean:  # relative data paths resolve against the spec's folder
        clean["spec_dir"] = str(Path(clean["spec"]).resolve().parent)
    main_thread = threading.current_thread() is threading.main_thread()
    sigint = signal.getsignal(signal.SIGINT) if main_thread else None
    with Runner(str(path), show_output=show_output or output is not None, quiet=True,
                env={PARENT_ENV: str(os.getpid())}) as runner:
        if main_thread:  # Metaflow installs its own Ctrl-C handler; ours (the CLI's) must stay in charge
            signal.signal(signal.SIGINT, sigint)
        stdout = sys.stdout
        try:
            if output is not None:
                sys.stdout = _Lines(output)
            running = runner.run(**clean)
        except BaseException as err:
            for command in list(runner.spm.commands.values()):
                if command.process is not None:
                    stop_process_group(command.process)
            if isinstance(err, RuntimeError):  # the flow exited before its run started (Metaflow's message)
                raise FlowFailed(f"{name} did not start: {last_line(str(err))}", True, str(err)) from None
            raise
        finally:
            sys.stdout = stdout
        if running.status != "successful":
            raise failure(name, running.run, running.stdout + "\n" + running.stderr)
        return running.run
