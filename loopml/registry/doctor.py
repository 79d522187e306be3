"""`loopml doctor`: check the registry (aliases, ledger, versions, artifacts) and repair what is safe.

Every finding names the object it is about. A repair never invents history: it writes down what the
alias already records, rebuilds a corrupt alias from the ledger, sets aside (never deletes) unreadable
ledger entries, and removes only leftovers older than a grace period, so a
registration or a write still in progress is never touched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loopml.registry.records import LedgerEntry, RunClaim, VersionClaim
from loopml.registry.registry import CHALLENGER, CHAMPION, AliasState, Registry, RegistryError
from loopml.storage import CorruptObject, KeyNotFound, LocalStore, Store, records
from loopml.storage.layout import (
    RUNS_PREFIX,
    VERSION_JSON,
    VERSIONS_PREFIX,
    alias_key,
    artifact_key,
    ledger_key,
    ledger_prefix,
    ledger_void_key,
    parse_version_key,
    version_claim_key,
    version_dir,
    version_json,
)

__all__ = ["Finding", "examine", "DoctorFound", "DEFAULT_GRACE_SECONDS"]

DEFAULT_GRACE_SECONDS = 3600.0  # far longer than any registration or write: younger leftovers may be live


class DoctorFound(RegistryError):
    """Problems remain that need a person (or ``--repair``)."""


@dataclass
class Finding:
    """One problem: the object it is about, what is wrong, and the safe repair if there is one."""

    where: str  # the object's URL or the file's path
    problem: str
    repair: Callable[[], str] | None = None  # does the repair, returns what it did; None: needs a person
    repaired: str | None = None

    def line(self) -> str:
        """The finding as `loopml doctor` prints it."""
        status = f"repaired: {self.repaired}" if self.repaired else ("repairable with --repair" if self.repair
                                                                      else "needs a person")
        return f"{self.where}: {self.problem} [{status}]"


def examine(store: Store, repair: bool = False, grace_seconds: float = DEFAULT_GRACE_SECONDS,
            clock: Callable[[], float] = time.time, scratch_dir: str | None = "") -> list[Finding]:
    """Every problem found, each repaired when ``repair`` is set and a safe repair exists.
    ``scratch_dir``: where runs on this machine spill (default: the temp folder; None: not looked at)."""
    registry = Registry(store)
    findings = [*_aliases(registry), *_ledger(registry), *_versions(registry, clock() - grace_seconds),
                *_temporaries(store, grace_seconds)]
    if scratch_dir is not None:
        findings += _scratch(clock() - grace_seconds, scratch_dir or None)
    if repair:
        for f in findings:
            if f.repair is not None:
                f.repaired = f.repair()
    return findings


# aliases -----------------------------------------------------------------------------------
def _aliases(registry: Registry) -> list[Finding]:
    found = []
    for name in registry.alias_names():
        state = registry.read_alias(name)
        where = registry.store.url(alias_key(name))
        if state.rebuilt is not None:
            found.append(Finding(where, f"unreadable ({state.rebuilt}); the ledger says version {state.version}",
                                 _rewrite_alias(registry, state)))
        if state.version is not None:
            found.extend(_served_version(registry, name, state.version, where))
    champion, challenger = registry.alias(CHAMPION), registry.read_alias(CHALLENGER)
    if challenger.version is not None and challenger.version == champion:
        found.append(Finding(registry.store.url(alias_key(CHALLENGER)),
                             f"still names version {champion}, which is now the champion",
                             lambda: _clear_challenger(registry, challenger, champion)))
    return found


def _served_version(registry: Registry, name: str, number: int, where: str) -> list[Finding]:
    try:
        version = registry.get(number)
    except RegistryError:
        return [Finding(where, f"points to version {number}, which does not exist")]
    except CorruptObject:
        return []  # named with the versions
    problems = [p for p in registry.problems(version) if "gates" not in p]
    return [Finding(where, f"{name} version {number}: {p}; roll back or re-register") for p in problems]


def _rewrite_alias(registry: Registry, state: AliasState) -> Callable[[], str]:
    def run() -> str:
        if not records.write_if(registry.store, alias_key(state.name), state.as_record(), state.token):
            return "not rewritten: the alias moved meanwhile (run doctor again)"
        return f"rewritten: version {state.version}, move {state.move}, history {list(state.history)}"

    return run


def _clear_challenger(registry: Registry, state: AliasState, champion: int) -> str:
    from loopml.registry.registry import ConcurrentMove

    try:
        registry._move(state, None, f"doctor: version {champion} is the champion", "clear", "loopml-doctor")
    except ConcurrentMove:
        return "not cleared: the challenger moved meanwhile"
    return "challenger cleared (ledger entry written)"


# the ledger --------------------------------------------------------------------------------
def _ledger(registry: Registry) -> list[Finding]:
    store, found = registry.store, []
    for key in store.list(ledger_prefix()):
        try:
            records.read(store, key, LedgerEntry)
        except CorruptObject as err:
            found.append(Finding(store.url(key), _what(store, key, err), _set_aside(store, key, "unreadable")))
    for name in registry.alias_names():
        state = registry.read_alias(name)
        if state.rebuilt is None and state.entry and state.move:
            key = ledger_key(name, state.move)
            if not store.exists(key):
                found.append(Finding(store.url(key), f"missing: the alias records its move {state.move} "
                                     f"({state.entry.from_} -> {state.entry.to})",
                                     _write_entry(store, key, state.entry)))
    return found


def _what(store: Store, key: str, err: CorruptObject) -> str:
    """What is wrong with the object at ``key``, without its URL (the finding names it already)."""
    return str(err).removeprefix(f"{store.url(key)} is ")


def _set_aside(store: Store, key: str, why: str) -> Callable[[], str]:
    def run() -> str:
        target = ledger_void_key(key)
        store.put(target, store.get(key))
        store.delete(key)
        return f"moved to {target} ({why})"

    return run


def _write_entry(store: Store, key: str, entry: LedgerEntry) -> Callable[[], str]:
    return lambda: "written from the alias" if records.write_new(store, key, entry) else "already there"


# versions ----------------------------------------------------------------------------------
def _versions(registry: Registry, cutoff: float) -> list[Finding]:
    store, found = registry.store, []
    dirs: dict[int, set[str]] = {}
    for key in store.list(VERSIONS_PREFIX):
        if (parsed := parse_version_key(key)) is not None:
            dirs.setdefault(parsed[0], set()).add(parsed[1])
    complete = {n: f for n, f in dirs.items() if VERSION_JSON in f}
    for n in sorted(complete):
        found.extend(_version(registry, n))
    for n in sorted(set(dirs) - set(complete)):
        found.extend(_abandoned(registry, n, dirs[n], complete, cutoff))
    found.extend(_stale_runs(registry, cutoff))
    return found


def _version(registry: Registry, n: int) -> list[Finding]:
    try:
        version = registry.get(n)
    except CorruptObject as err:
        return [Finding(registry.store.url(version_json(n)), _what(registry.store, version_json(n), err))]
    out = []
    for name, info in version.record.artifacts.items():
        try:
            registry.artifact(version, name)
        except KeyNotFound:
            out.append(Finding(registry.store.url(info.key), f"missing (an artifact of version {n})"))
        except Exception as err:  # IntegrityError: named with the file it is about
            out.append(Finding(registry.store.url(info.key), f"{err}"))
    ref = version.record.reference
    if ref and not registry.store.exists(ref):
        out.append(Finding(registry.store.url(ref), f"missing (the reference set of version {n})"))
    return out


def _claimed_at(registry: Registry, n: int, complete: dict[int, set[str]]) -> float | None:
    """When number ``n`` was claimed; for a claim that does not say (or is unreadable), no later than
    the creation of any higher version (numbers are claimed in order)."""
    try:
        claim = records.read(registry.store, version_claim_key(n), VersionClaim)
        if claim.claimed_at is not None:
            return claim.claimed_at.timestamp()
    except (KeyNotFound, CorruptObject):
        pass
    stamps = [registry.get(m).record.created_at.timestamp() for m in sorted(complete) if m > n]
    return min(stamps) if stamps else None


def _abandoned(registry: Registry, n: int, files: set[str], complete: dict[int, set[str]], cutoff: float
               ) -> list[Finding]:
    where = registry.store.url(version_dir(n) + "/")
    claimed = _claimed_at(registry, n, complete)
    if claimed is None or claimed > cutoff:
        return []  # possibly a registration in progress: leave it
    keys = [artifact_key(n, f) for f in sorted(files)]

    def run() -> str:
        for key in keys:
            if key != version_claim_key(n):
                registry.store.delete(key)
        # the claim goes last and stays if version.json appeared meanwhile: never delete a version
        if registry.store.exists(version_json(n)):
            return "kept: it was completed meanwhile"
        registry.store.delete(version_claim_key(n))
        return f"removed {len(keys)} object(s)"

    return [Finding(where, f"number {n} was claimed but never completed ({len(keys)} object(s), no version.json)",
                    run)]


def _stale_runs(registry: Registry, cutoff: float) -> list[Finding]:
    """Run claims (register(run_key=...)) whose version never completed: a retry takes them over
    anyway; removing them saves it the wait."""
    out = []
    for key in registry.store.list(RUNS_PREFIX):
        try:
            claim = records.read(registry.store, key, RunClaim)
        except CorruptObject as err:
            out.append(Finding(registry.store.url(key), _what(registry.store, key, err), _delete(registry.store, key)))
            continue
        if registry.store.exists(version_json(claim.version)):
            continue
        if claim.claimed_at.timestamp() < cutoff:
            out.append(Finding(registry.store.url(key), f"run {claim.run_key!r} claimed version {claim.version}, "
                               "which was never completed", _delete(registry.store, key)))
    return out


def _delete(store: Store, key: str) -> Callable[[], str]:
    def run() -> str:
        store.delete(key)
        return "removed"

    return run


# leftovers of killed writes ----------------------------------------------------------------
def _temporaries(store: Store, grace_seconds: float) -> list[Finding]:
    if not isinstance(store, LocalStore):
        return []  # S3 writes are single PUTs: a kill leaves no partial object

    def remover(path: Any) -> Callable[[], str]:
        def run() -> str:
            path.unlink(missing_ok=True)
            return "removed"

        return run

    return [Finding(str(p), "a temporary file a killed write left behind", remover(p))
            for p in store.temporaries(grace_seconds)]


SCRATCH_PREFIXES = ("loopml-score-",)  # local folders a run spills to (tempfile), removed when it ends


def _scratch(cutoff: float, folder: str | None = None) -> list[Finding]:
    """Scratch folders of runs killed on this machine (nothing else removes them)."""
    import shutil
    import tempfile
    from pathlib import Path

    root = Path(folder or tempfile.gettempdir())
    stale = [p for prefix in SCRATCH_PREFIXES for p in root.glob(f"{prefix}*")
             if p.is_dir() and p.stat().st_mtime < cutoff]

    def remover(path: Path) -> Callable[[], str]:
        def run() -> str:
            shutil.rmtree(path, ignore_errors=True)
            return "removed"

        return run

    return [Finding(str(p), "the scratch folder of a killed run", remover(p)) for p in sorted(stale)]
