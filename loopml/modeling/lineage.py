"""Lineage a version records: the data must be readable back unchanged, and the code's git sha."""

from __future__ import annotations

import subprocess
from pathlib import Path

from loopml.modeling.windows import TrainingData, load_training_data
from loopml.spec import ProblemSpec


def check_traceable(spec: ProblemSpec, data: TrainingData) -> None:
    """A version must point at data someone can get back: re-read the location and compare the
    fingerprint. Data that moved, vanished or changed during training is refused."""
    if not data.fingerprint or not data.uri:
        raise ValueError("refusing to register: the training data has no recorded location or fingerprint")
    try:
        again = load_training_data(spec, uri=data.uri, until=data.until).fingerprint
    except Exception as err:
        raise ValueError(f"refusing to register: the training data at {data.uri} cannot be read back ({err})") from None
    if again != data.fingerprint:
        raise ValueError(f"refusing to register: the training data at {data.uri} changed during the run "
                         f"(fingerprint {data.fingerprint[:12]} at load, {again[:12]} now)")


def code_version() -> str | None:
    """The git sha of the code that trained, marked ``-dirty`` with uncommitted changes."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=here)

    try:
        sha = git("rev-parse", "--verify", "HEAD")
        if sha.returncode != 0:
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None
