"""Run the Metaflow flows in ``flows/`` from Python (the CLI, the demo and the tests use this)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def flows_dir() -> Path:
    """The folder that holds the flow files. An installed wheel carries the repo's top-level ``flows/`` as the
    package ``loopml.flows`` (setup.py maps it), so it is a folder inside this package; in a source checkout
    (tests, ``pip install -e .``) ``flows/`` sits beside the package and goes with the code being imported."""
    here = Path(__file__).resolve().parent
    packaged = here / "flows"
    return packaged if (packaged / "flowbase.py").is_file() else here.parent / "flows"


FLOWS = flows_dir()


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


def run_flow(name: str, show_output: bool = True, **params: Any) -> Any:
    """Run ``flows/<name>.py`` to completion and return its Metaflow ``Run``; raise if it failed."""
    ensure_user()
    from metaflow import Runner

    path = FLOWS / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"flow file {path} not found: this loopml install lacks its flows (reinstall the wheel)")
    clean = {k: str(v) for k, v in params.items() if v is not None and v != ""}
    if "spec" in clean and "spec_dir" not in clean:  # relative data paths resolve against the spec's folder
        clean["spec_dir"] = str(Path(clean["spec"]).resolve().parent)
    with Runner(str(path), show_output=show_output, quiet=True).run(**clean) as running:
        if running.status != "successful":
            # a task's traceback is in the run's stdout (Metaflow prefixes it with the task), the summary in stderr
            lines = [ln for ln in (running.stdout + "\n" + running.stderr).splitlines() if ln.strip()]
            tail = "\n".join(lines[-30:]) if not show_output else ""
            raise FlowFailed(f"{name} failed ({running.status}).\n{tail}".rstrip())
        return running.run
