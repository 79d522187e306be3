"""The registry under faults: `loopml promote`/`rollback` and registration killed (SIGKILL) at every
point of a move, on a folder and on S3 (moto behind a proxy); S3 stalls, lost replies and refused
connections. After each fault the store is consistent, the ledger agrees with the alias, and a
re-run converges."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from loopml.registry.doctor import examine
from loopml.registry.registry import CHALLENGER, CHAMPION, Registry, next_history
from loopml.storage import LocalStore, Store
from loopml.storage.layout import version_dir
from tests.support.cli import kill_at, run_cli
from tests.support.faults import REFUSE, STALL, MotoBehindProxy

MOVE_POINTS = ["alias.before-swap", "alias.after-swap"]
PROMOTE_POINTS = [*MOVE_POINTS, "promote.before-challenger-clear"]


class Target:
    """A store, and the environment and --store argument a CLI subprocess needs to reach it."""

    def __init__(self, store: Store, uri: str, env: dict[str, str]) -> None:
        self.store, self.uri, self.env = store, uri, env

    def cli(self, *argv: str, fault: str | None = None):
        args = (*argv, "--store", self.uri)
        return kill_at(fault, *args, env=self.env) if fault else run_cli(*args, env=self.env)


@pytest.fixture(params=["folder", "s3"])
def target(request, tmp_path) -> Iterator[Target]:
    if request.param == "folder":
        yield Target(LocalStore(tmp_path / "store"), str(tmp_path / "store"), {})
        return
    moto: MotoBehindProxy = request.getfixturevalue("proxy")
    from loopml.storage.s3 import S3Store

    uri = f"s3://{moto.bucket}/{request.node.name.replace('[', '-').rstrip(']')}"
    yield Target(S3Store(uri, client=moto.client()), uri, moto.env())


def _seed(store: Store, champions: list[int], versions: int = 4) -> Registry:
    reg = Registry(store)
    for i in range(versions):
        reg.register({"model.joblib": f"model-{i}".encode()}, {"name": "t", "gates": {"passes": True, "reasons": []}})
    for n in champions:
        reg.promote(n, why=f"seed v{n}")
    return reg


def assert_consistent(store: Store) -> list[dict[str, Any]]:
    """The alias is readable, the ledger is an unbroken chain that ends where the alias points, the
    history agrees with it, and after `doctor --repair` nothing is left to find."""
    reg = Registry(store)
    state = reg.read_alias(CHAMPION)
    assert state.rebuilt is None
    ledger = reg.ledger(CHAMPION)
    assert [e["from"] for e in ledger] == [None, *(e["to"] for e in ledger[:-1])], ledger
    assert (ledger[-1]["to"] if ledger else None) == state.version
    history: tuple[int, ...] = ()
    for e in ledger:
        history = next_history(history, e["action"], e["to"])
    assert history == state.history
    examine(store, repair=True, grace_seconds=0, scratch_dir=None)  # never other runs' live scratch folders
    assert [f.line() for f in examine(store, grace_seconds=0, scratch_dir=None)] == []
    assert reg.ledger(CHAMPION) == ledger  # the repair wrote down what was there, nothing else
    return ledger


@pytest.mark.parametrize("point", PROMOTE_POINTS)
def test_promote_killed_at_every_point_converges(target, point):
    reg = _seed(target.store, [1])
    reg.set_alias(CHALLENGER, 2, why="shadow", action="challenger")
    target.cli("promote", "2", "--why", "challenger won", fault=point)
    moved = reg.alias(CHAMPION)
    assert moved == (1 if point == "alias.before-swap" else 2)
    assert_consistent(target.store)
    again = target.cli("promote", "2", "--why", "challenger won")
    assert again.returncode == (0 if moved == 1 else 2), again.stderr
    ledger = assert_consistent(target.store)
    assert reg.alias(CHAMPION) == 2 and reg.alias(CHALLENGER) is None
    assert [(e["from"], e["to"]) for e in ledger] == [(None, 1), (1, 2)]


@pytest.mark.parametrize("point", MOVE_POINTS)
def test_rollback_to_killed_at_every_point_converges(target, point):
    reg = _seed(target.store, [1, 2, 3])
    target.cli("rollback", "--to", "2", "--why", "3 regressed", fault=point)
    assert_consistent(target.store)
    target.cli("rollback", "--to", "2", "--why", "3 regressed")
    ledger = assert_consistent(target.store)
    assert reg.alias(CHAMPION) == 2 and list(reg.read_alias(CHAMPION).history) == [1, 2]
    assert [e["to"] for e in ledger] == [1, 2, 3, 2]
    done = target.cli("rollback", "--why", "2 too")  # a plain rollback goes back, never forward to 3
    assert done.returncode == 0 and reg.alias(CHAMPION) == 1


def test_a_plain_rollback_killed_after_the_swap_is_not_repeated_by_the_ledger(target):
    reg = _seed(target.store, [1, 2, 3])
    target.cli("rollback", "--why", "3 regressed", fault="alias.after-swap")
    assert reg.alias(CHAMPION) == 2
    ledger = assert_consistent(target.store)
    assert [e["to"] for e in ledger] == [1, 2, 3, 2] and list(reg.read_alias(CHAMPION).history) == [1, 2]


_REGISTER = """
import sys
from loopml.registry.registry import Registry
from loopml.storage import from_uri
v = Registry(from_uri(sys.argv[1]), claim_grace=2.0).register({"model.joblib": b"m"}, {"name": "t"}, run_key="TrainFlow/42")
print(v.number)
"""


@pytest.mark.parametrize("point", ["register.claimed", "register.before-commit"])
def test_registration_killed_then_retried_gives_one_version(target, point):
    import subprocess
    import sys

    from tests.support.cli import cli_env

    def register(fault: str | None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", _REGISTER, target.uri], env=cli_env(target.env, fault),
                              capture_output=True, text=True, timeout=120)

    assert register(point).returncode == -9
    reg = Registry(target.store)
    assert reg.versions() == []  # nothing half-registered is visible
    started = time.monotonic()
    retry = register(None)
    assert retry.returncode == 0, retry.stderr
    assert time.monotonic() - started < 60
    number = int(retry.stdout)
    assert reg.versions() == [number] and reg.get(number).meta["run_key"] == "TrainFlow/42"
    assert int(register(None).stdout) == number  # and once more: still the same version
    findings = examine(target.store, repair=True, grace_seconds=0, scratch_dir=None)
    assert any("claimed but never completed" in f.problem for f in findings)
    assert examine(target.store, grace_seconds=0, scratch_dir=None) == [] and reg.versions() == [number]


# S3 stalls, lost replies, refused connections ------------------------------------------------
def _s3(proxy: MotoBehindProxy, name: str, timeout: float = 1, attempts: int = 2) -> Target:
    """Short deadlines, so that a stalled call fails fast; a test that needs the healthy calls to
    succeed on a loaded machine gives them more room."""
    from loopml.storage.s3 import S3Store

    uri = f"s3://{proxy.bucket}/{name}"
    return Target(S3Store(uri, client=proxy.client()), uri, proxy.env(
        LOOPML_S3_TIMEOUT_SECONDS=str(timeout), LOOPML_S3_MAX_ATTEMPTS=str(attempts), LOOPML_S3_STALL_LOG_SECONDS="0.5"))


@pytest.mark.parametrize("mode", [STALL, REFUSE])
def test_status_against_a_dead_endpoint_ends_in_bounded_time_naming_it(proxy, mode):
    t = _s3(proxy, f"status-{mode}")
    _seed(t.store, [1])
    proxy.proxy.mode = mode
    started = time.monotonic()
    done = t.cli("status")
    elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    assert elapsed < 60, elapsed  # 2 attempts x 1 s, plus the interpreter's start
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("loopml status: ") and proxy.proxy.url in last and "Traceback" not in done.stderr
    if mode == STALL:
        assert "still waiting for S3" in done.stderr and proxy.proxy.url in done.stderr


def test_a_stalled_alias_write_moves_nothing_and_records_nothing(proxy):
    t = _s3(proxy, "stalled-alias", timeout=2, attempts=3)
    reg = _seed(t.store, [1])
    proxy.proxy.target_requests(f"PUT /{proxy.bucket}/stalled-alias/registry/aliases/champion.json".encode(),
                                STALL, times=10)
    done = t.cli("promote", "2", "--why", "x")
    assert done.returncode == 2
    assert "registry/aliases/champion.json" in done.stderr.strip().splitlines()[-1]
    assert reg.alias(CHAMPION) == 1 and [e["to"] for e in reg.ledger(CHAMPION)] == [1]  # no phantom entry
    proxy.proxy.reset()
    assert t.cli("promote", "2", "--why", "x").returncode == 0
    assert [e["to"] for e in assert_consistent(t.store)] == [1, 2]


def test_a_lost_reply_to_the_alias_write_is_recognised_as_a_win(proxy):
    """The PUT lands but its reply never comes: botocore retries, the retry fails its If-Match (the
    first attempt changed the ETag), and the store sees its own bytes in place: one move, one entry."""
    t = _s3(proxy, "lost-reply", timeout=3, attempts=4)
    reg = _seed(t.store, [1])
    proxy.proxy.target_requests(f"PUT /{proxy.bucket}/lost-reply/registry/aliases/champion.json".encode(),
                                "mute", times=1)
    done = t.cli("promote", "2", "--why", "x")
    assert done.returncode == 0, done.stderr
    assert proxy.proxy.matched == 1
    assert [e["to"] for e in assert_consistent(t.store)] == [1, 2] and reg.alias(CHAMPION) == 2


def test_every_reply_to_the_alias_write_lost_still_leaves_a_consistent_store(proxy):
    t = _s3(proxy, "all-lost", timeout=2, attempts=3)
    reg = _seed(t.store, [1])
    proxy.proxy.target_requests(f"PUT /{proxy.bucket}/all-lost/registry/aliases/champion.json".encode(),
                                "mute", times=10)
    done = t.cli("promote", "2", "--why", "x")
    assert done.returncode == 2 and "champion.json" in done.stderr.strip().splitlines()[-1]
    proxy.proxy.reset()
    assert reg.alias(CHAMPION) == 2  # the first attempt landed, although the command could not know it
    assert [e["to"] for e in assert_consistent(t.store)] == [1, 2]
    assert t.cli("promote", "2", "--why", "x").returncode == 2  # a re-run: already the champion
    assert [e["to"] for e in assert_consistent(t.store)] == [1, 2]


def test_a_version_folder_missing_on_s3_names_the_key(proxy):
    t = _s3(proxy, "no-version")
    _seed(t.store, [1])
    t.store.put(f"{version_dir(3)}/version.json", b"{not json")
    done = t.cli("promote", "3", "--why", "x")
    assert done.returncode == 2
    assert done.stderr == (f"loopml promote: s3://{proxy.bucket}/no-version/registry/versions/0003/version.json "
                           "is not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 "
                           "(char 1))\n")
