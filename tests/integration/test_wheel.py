"""loopml packaged like a library: the wheel alone (no source checkout) trains and scores from an empty folder.

The wheel is built from a copy of the sources, installed (``--no-deps``) into a fresh venv that sees the lock's
packages through a ``.pth`` line (so nothing is downloaded and the versions are the lock's), and the installed
``loopml`` command runs TrainFlow and ScoreFlow from an empty temporary folder, with no PYTHONPATH, and so does
the Python API (``loopml.score``, ``loopml.status``). It fails
when the wheel lacks the flows, when the CLI finds them only beside a source tree, or when a command needs the
current folder to be the repo.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from tests.support import REPO
from tests.support.data import small_spec, write_spec

pytestmark = pytest.mark.integration

SOURCES = ("pyproject.toml", "setup.py", "README.md", "loopml", "handlers", "flows")


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), str(src)], src,
         dict(os.environ))
    (built,) = dist.glob("loopml-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> Path:
    """A fresh venv with only the wheel installed; the lock's packages come from this interpreter's site-packages."""
    root = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    py = root / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--quiet", "--no-deps", "--no-index",
          str(wheel)], root, {k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    # then a plain path line: the lock's packages, after the venv's own (no .pth of theirs runs, so an editable
    # loopml installed there stays out of sight). Written after the install, or pip would see that loopml.
    Path(purelib, "_the_lock.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root


def _clean_env(home: Path) -> dict[str, str]:
    """No PYTHONPATH (the source tree must not be importable), no Metaflow/AWS settings from other tests."""
    env = {k: v for k, v in os.environ.items()
           if k != "PYTHONPATH" and not k.startswith(("METAFLOW_", "LOOPML_", "AWS_"))}
    env.update(METAFLOW_USER="wheel-test", HOME=str(home))
    return env


def test_the_wheel_carries_the_flows_and_the_handlers(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    flows = sorted(p.name for p in (REPO / "flows").glob("*.py"))
    assert flows and all(f"loopml/flows/{f}" in names for f in flows), sorted(n for n in names if "flows" in n)
    assert {"loopml/__init__.py", "loopml/cli/main.py", "handlers/api.py", "handlers/scheduled.py"} <= names
    assert not any(n.startswith(("tests/", "flows/", "bench/")) for n in names)


def test_installed_loopml_trains_and_scores_from_an_empty_folder(venv: Path, tmp_path: Path, car_loan_full) -> None:
    train, new, _ = car_loan_full
    project = tmp_path / "project"
    project.mkdir()
    train.iloc[:: len(train) // 3000].to_parquet(project / "train.parquet", index=False)
    when = pd.to_datetime(new["timestamp"])
    first = when.min().normalize()
    new[when < first + pd.Timedelta(days=1)].to_parquet(project / "new.parquet", index=False)  # one day
    day = first.date().isoformat()
    # data paths relative to project.yaml; one cheap candidate, no latency or fairness gate
    spec = small_spec({"train": "train.parquet", "new": "new.parquet"}, threshold=0.5,
                      candidates=[{"family": "linear", "n_iter": 1}], constraints={})
    spec_path = write_spec(project / "project.yaml", spec)
    work = tmp_path / "empty"
    work.mkdir()
    env = _clean_env(tmp_path)
    loopml = str(venv / "bin" / "loopml")

    where = _run([str(venv / "bin" / "python"), "-c", "import loopml, loopml.runtime.flowrun as f; print(loopml.__file__); "
                  "print(f.FLOWS)"], work, env).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where  # the installed package, not the checkout

    store = tmp_path / "store"
    trained = _run([loopml, "train", "--spec", spec_path, "--store", str(store)], work, env)
    assert "registered version 1" in trained.stdout, trained.stdout
    scored = _run([loopml, "score", "--spec", spec_path, "--store", str(store), "--start", day], work, env)
    assert "with version 1" in scored.stdout, scored.stdout
    assert (store / "registry").is_dir() and any((store / "predictions").rglob("*.parquet"))
    # the Python API of the installed package: the same flows, the same store
    api = ("import json, loopml; r = loopml.score({spec!r}, {day!r}, store={store!r}); "
           "s = loopml.status(store={store!r}); print(json.dumps([r.version, r.rows, s['champion']['version']]))")
    out = _run([str(venv / "bin" / "python"), "-c", api.format(spec=spec_path, day=day, store=str(store))], work, env)
    version, rows, champion = json.loads(out.stdout.strip().splitlines()[-1])
    assert (version, champion) == (1, 1) and rows > 0
    # Metaflow kept its runs in the folder the command ran from; the flows ran from inside the venv
    assert (work / ".metaflow" / "TrainFlow").is_dir() and (work / ".metaflow" / "ScoreFlow").is_dir()
