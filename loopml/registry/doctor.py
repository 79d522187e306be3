"""`loopml doctor`: check the registry (aliases, ledger, versions, artifacts) and repair what is safe.

Every finding names the object it is about. A repair never invents history: it writes down what the
alias already records, rebuilds a corrupt alias from the ledger, sets aside (never deletes) ledger
entries for moves that never happened, and removes only leftovers older than a grace period, so a
registration or a write still in progress is never touched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from loopml.registry.registry import CHALLENGER, CHAMPION, AliasState, Registry, RegistryError, real_moves
from loopml.storage import CorruptObject, KeyNotFound, LocalStore, Store
from loopml.storage.layout import LEDGER, LEDGER_VOID, RUNS, VERSIONS, alias_key, ledger_key, version_dir

__all__ = ["Finding", "examine", "DoctorFound", "DEFAULT_GRACE_SECONDS"]

DEFAULT_GRACE_SECONDS = 3600.0  # far longer than any registration or write: younger leftovers may be live


class DoctorFound(RegistryError):
    """Problems remain that need a person (or ``--repair``)."""


@dataclass
class Finding:
    where: str  # the object's URL or the file's path
    problem: str
    repair: Callable[[], str] | None = None  # does the repair, returns what it did; None: needs a person
    repaired: str | None = None

    def line(self) -> str:
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
        doc = {"version": state.version, "since": (state.entry or {}).get("when"), "move": state.move,
               "entry": state.entry, "history": list(state.history)}
        if not registry.store.put_if(alias_key(state.name), _json(doc), state.token):
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
    keys = store.list(LEDGER + "/")
    for key in keys:
        try:
            store.get_json(key)
        except CorruptObject as err:
            found.append(Finding(store.url(key), f"not valid JSON ({str(err).split('(', 1)[-1].rstrip(')')})",
                                 _set_aside(store, key, "unreadable")))
    for name in registry.alias_names():
        state = registry.read_alias(name)
        if state.rebuilt is None and state.entry and "move" in state.entry and state.move:
            key = ledger_key(name, state.move)
            if not store.exists(key):
                found.append(Finding(store.url(key), f"missing: the alias records its move {state.move} "
                                     f"({state.entry.get('from')} -> {state.entry.get('to')})",
                                     _write_entry(store, key, state.entry)))
        found.extend(_phantoms(registry, name, state))
    return found


def _phantoms(registry: Registry, name: str, state: AliasState) -> list[Finding]:
    """Old-format entries that are not on the chain of moves that led to the alias: written before a
    move that a kill or a timeout then stopped (the old code wrote the ledger first)."""
    store = registry.store
    flat = [k for k in store.list(LEDGER + "/") if k.count("/") == 2]
    entries = []
    for key in flat:
        try:
            e = store.get_json(key)
        except CorruptObject:
            continue
        if isinstance(e, dict) and e.get("alias") == name:
            entries.append((key, e))
    if not entries:
        return []
    anchor = _legacy_anchor(registry, name, state)
    real = {id(e) for e in real_moves([e for _, e in entries], anchor)}
    return [Finding(store.url(k), f"records {name} {e.get('from')} -> {e.get('to')}, a move that never happened",
                    _set_aside(store, k, "never happened"))
            for k, e in entries if id(e) not in real]


def _legacy_anchor(registry: Registry, name: str, state: AliasState) -> int | None:
    """Where the old-format chain ended: the ``from`` of the first new-format move, or the alias."""
    nested = registry.store.list(f"{LEDGER}/{name}/")
    if nested:
        try:
            return registry.store.get_json(nested[0]).get("from")
        except CorruptObject:
            return state.version
    return state.version


def _set_aside(store: Store, key: str, why: str) -> Callable[[], str]:
    def run() -> str:
        target = f"{LEDGER_VOID}/{key[len(LEDGER) + 1:]}"
        store.put(target, store.get(key))
        store.delete(key)
        return f"moved to {target} ({why})"

    return run


def _write_entry(store: Store, key: str, entry: dict[str, Any]) -> Callable[[], str]:
    return lambda: "written from the alias" if store.put_new_json(key, entry) else "already there"


# versions ----------------------------------------------------------------------------------
def _versions(registry: Registry, cutoff: float) -> list[Finding]:
    store, found = registry.store, []
    dirs: dict[int, set[str]] = {}
    for key in store.list(VERSIONS + "/"):
        parts = key.split("/")
        if len(parts) >= 4 and parts[2].isdigit():
            dirs.setdefault(int(parts[2]), set()).add("/".join(parts[3:]))
    complete = {n: f for n, f in dirs.items() if "version.json" in f}
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
        return [Finding(registry.store.url(f"{version_dir(n)}/version.json"), str(err).split(" is ", 1)[-1])]
    out = []
    for name, info in version.artifacts.items():
        try:
            registry.artifact(version, name)
        except KeyNotFound:
            out.append(Finding(registry.store.url(info["key"]), f"missing (an artifact of version {n})"))
        except Exception as err:  # IntegrityError: named with the file it is about
            out.append(Finding(registry.store.url(info["key"]), f"{err}"))
    ref = version.meta.get("reference")
    if ref and not registry.store.exists(ref):
        out.append(Finding(registry.store.url(ref), f"missing (the reference set of version {n})"))
    return out


def _claimed_at(registry: Registry, n: int, complete: dict[int, set[str]]) -> float | None:
    """When number ``n`` was claimed; for claims that predate timestamps, no later than the creation
    of any higher version (numbers are claimed in order)."""
    try:
        claim = registry.store.get_json(f"{version_dir(n)}/claim.json")
        when = claim.get("claimed_at") if isinstance(claim, dict) else None
        if when:
            return datetime.fromisoformat(when).timestamp()
    except (KeyNotFound, CorruptObject, ValueError):
        pass
    later = [registry.get(m).meta.get("created_at") for m in sorted(complete) if m > n]
    stamps = [datetime.fromisoformat(str(c)).timestamp() for c in later if c]
    return min(stamps) if stamps else None


def _abandoned(registry: Registry, n: int, files: set[str], complete: dict[int, set[str]], cutoff: float
               ) -> list[Finding]:
    where = registry.store.url(version_dir(n) + "/")
    claimed = _claimed_at(registry, n, complete)
    if claimed is None or claimed > cutoff:
        return []  # possibly a registration in progress: leave it
    keys = [f"{version_dir(n)}/{f}" for f in sorted(files)]

    def run() -> str:
        for key in keys:
            if key.endswith("/claim.json"):
                continue
            registry.store.delete(key)
        # the claim goes last and stays if version.json appeared meanwhile: never delete a version
        if registry.store.exists(f"{version_dir(n)}/version.json"):
            return "kept: it was completed meanwhile"
        registry.store.delete(f"{version_dir(n)}/claim.json")
        return f"removed {len(keys)} object(s)"

    return [Finding(where, f"number {n} was claimed but never completed ({len(keys)} object(s), no version.json)",
                    run)]


def _stale_runs(registry: Registry, cutoff: float) -> list[Finding]:
    """Run claims (register(run_key=...)) whose version never completed: a retry takes them over
    anyway; removing them saves it the wait."""
    out = []
    for key in registry.store.list(RUNS + "/"):
        try:
            claim = registry.store.get_json(key)
        except CorruptObject:
            out.append(Finding(registry.store.url(key), "not valid JSON (a run claim)", _delete(registry.store, key)))
            continue
        number = claim.get("version") if isinstance(claim, dict) else None
        if isinstance(number, int) and registry.store.exists(f"{version_dir(number)}/version.json"):
            continue
        try:
            when = datetime.fromisoformat(str(claim.get("claimed_at"))).timestamp()
        except ValueError:
            when = 0.0
        if when < cutoff:
            out.append(Finding(registry.store.url(key), f"run {claim.get('run_key')!r} claimed version {number}, "
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


def _json(obj: Any) -> bytes:
    from loopml.storage.base import encode_json

    return encode_json(obj)
