"""Stage 4, the registry: numbered versions, aliases and a ledger of alias moves, all in the store.

* A version exists only once its ``version.json`` is written, and that is written last: a reader
  never sees half a model.
* A version registered with a ``run_key`` (the Metaflow run that trained it) is registered once: a
  retried step gets the version its first attempt made. ``registry/runs/<hash>.json`` claims the run
  with a create-if-absent write; a claim whose writer died is taken over after ``claim_grace`` seconds,
  and a writer commits only if its claim is still its own.
* An alias is one object moved by compare-and-swap (:meth:`Store.put_if`): of two concurrent moves
  exactly one wins. It carries its move number, the ledger entry of that move and the champion
  history, so it alone says where it points and how it got there.
* The ledger entry of move *m* (``registry/ledger/<alias>/<m>.json``) is written after the alias
  moved, so the ledger records only moves that happened. A kill between the two writes leaves the
  entry inside the alias: the next move, every read of the ledger and ``loopml doctor --repair``
  fill it in. A corrupt or missing alias is rebuilt from the ledger, so it never blocks a move.
* Artifacts are checked against their SHA-256 before anyone gets their bytes, and before a version
  becomes champion; so are its gates. ``--force`` overrides both, and the ledger says so.

pandas is imported only where a DataFrame is asked for, so serving can use this module without it.
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from loopml import faults
from loopml.registry.records import VersionRecord
from loopml.storage import CorruptObject, KeyNotFound, Store
from loopml.storage.base import encode_json
from loopml.storage.layout import ALIASES, LEDGER, VERSIONS, alias_key, ledger_key, run_key_path, version_dir

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Registry", "RegistryError", "ConcurrentMove", "MissingVersion", "IntegrityError", "ModelVersion", "VersionRecord", "AliasState",
           "CHAMPION", "CHALLENGER", "sha256"]

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
CLAIM_GRACE_SECONDS = 120.0  # longer than any registration takes; shorter than Metaflow's retry delay plus a run


class RegistryError(LookupError):
    """A version or alias that does not exist, or an alias change that makes no sense."""


class MissingVersion(RegistryError):
    """No version.json under that number (yet, or any more): not a verdict on the version itself."""


class ConcurrentMove(RegistryError):
    """Another writer moved the alias between this command's read and its write: nothing changed."""


class IntegrityError(RuntimeError):
    """An artifact's bytes do not match the SHA-256 recorded at registration."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def current_user() -> str:
    return os.environ.get("LOOPML_USER") or os.environ.get("METAFLOW_USER") or _login()


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers, Lambda)
        return "unknown"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _epoch(iso: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(iso)).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class ModelVersion:
    """A registered version: ``record`` is its typed ``version.json``; ``meta`` the same as written."""

    number: int
    meta: dict[str, Any]

    @functools.cached_property
    def record(self) -> VersionRecord:
        return VersionRecord.model_validate(self.meta)

    @property
    def artifacts(self) -> dict[str, dict[str, Any]]:
        return self.meta["artifacts"]

    @property
    def has_onnx(self) -> bool:
        return "model.onnx" in self.artifacts


@dataclass(frozen=True)
class AliasState:
    """An alias as one move sees it: where it points, how many moves it has had, the champion
    history, the entry of its last move, and the token its next compare-and-swap must match."""

    name: str
    version: int | None
    move: int
    history: tuple[int, ...]
    entry: dict[str, Any] | None
    token: str | None
    rebuilt: str | None = None  # why the state came from the ledger instead (alias missing or corrupt)


def next_history(history: tuple[int, ...], action: str, to: int | None) -> tuple[int, ...]:
    """The champion history after a move. A promotion pushes. A rollback goes back to the target's
    last time as champion, dropping everything after it, so a later plain rollback can only go
    further back, never forward. A rollback to a version that was never champion replaces the top."""
    if to is None:
        return ()
    if action == "rollback" and to in history:
        return history[: len(history) - history[::-1].index(to)]
    if action == "rollback":
        return (*history[:-1], to)
    return (*history, to)


def real_moves(entries: list[dict[str, Any]], anchor: int | None) -> list[dict[str, Any]]:
    """The entries that form an unbroken chain of moves ending at ``anchor`` (where the alias points).
    Walking back from the alias drops what the old intent-first ledger could leave: an entry for a
    move that never happened (``to`` is not where the alias went) and the same move written twice."""
    chain: list[dict[str, Any]] = []
    expected = anchor
    for e in reversed(entries):
        if e.get("to") == expected:
            chain.append(e)
            expected = e.get("from")
    return chain[::-1]


class Registry:
    def __init__(self, store: Store, claim_grace: float = CLAIM_GRACE_SECONDS,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self.store = store
        self.claim_grace, self.clock, self.sleep = claim_grace, clock, sleep

    # versions ----------------------------------------------------------------------------------
    def _claim(self) -> int:
        """Reserve the next number with a create-if-absent write: two writers never share one. The
        claim says when, so `doctor` can tell an abandoned number from a registration in progress."""
        claimed = [int(k.split("/")[2]) for k in self.store.list(VERSIONS + "/") if k.endswith("/claim.json")]
        n = max(claimed, default=0) + 1
        claim = {"claimed_at": _iso(self.clock()), "owner": uuid.uuid4().hex}
        while not self.store.put_new_json(f"{version_dir(n)}/claim.json", claim):
            n += 1
        return n

    def register(self, artifacts: dict[str, bytes], meta: dict[str, Any], reference: pd.DataFrame | None = None,
                 run_key: str | None = None) -> ModelVersion:
        """Store a new version. With ``run_key``, a run that already registered a version (a retried
        step) gets that version back instead of a second one."""
        if not artifacts:
            raise RegistryError("a version needs at least one artifact")
        if run_key is None:
            n = self._claim()
            return self._commit(n, meta, self._write_artifacts(n, artifacts, reference), None)
        return self._register_once(run_key, artifacts, meta, reference)

    def _register_once(self, run_key: str, artifacts: dict[str, bytes], meta: dict[str, Any],
                       reference: pd.DataFrame | None) -> ModelVersion:
        key = run_key_path(run_key)
        while True:
            claim, token = self._read_run_claim(key)
            if claim is not None:
                done = self._complete(claim.get("version"))
                if done is not None:
                    return done
                left = self._grace_left(claim)
                if left > 0:  # another attempt is registering this run right now: wait for it
                    self.sleep(min(left, 1.0))
                    continue
            n = self._claim()
            mine = {"run_key": run_key, "version": n, "claimed_at": _iso(self.clock()), "owner": uuid.uuid4().hex}
            if not self.store.put_if(key, encode_json(mine), token):
                continue  # another attempt claimed the run first: look again
            faults.point("register.claimed")
            written = self._write_artifacts(n, artifacts, reference)
            if not self._renew(key, mine):
                continue  # our claim went stale and another attempt took the run over: its version stands
            return self._commit(n, {**meta, "run_key": run_key}, written, run_key)

    def _read_run_claim(self, key: str) -> tuple[dict[str, Any] | None, str | None]:
        try:
            raw, token = self.store.get_versioned(key)
        except KeyNotFound:
            return None, None
        try:
            claim = self.store.parse_json(key, raw)
        except CorruptObject as err:
            log.warning("%s: taking the run over", err)
            return {}, token
        return (claim if isinstance(claim, dict) else {}), token

    def _complete(self, number: Any) -> ModelVersion | None:
        if not isinstance(number, int) or not self.store.exists(f"{version_dir(number)}/version.json"):
            return None
        return self.get(number)

    def _grace_left(self, claim: dict[str, Any]) -> float:
        claimed = _epoch(claim.get("claimed_at"))
        return 0.0 if claimed is None else self.claim_grace - (self.clock() - claimed)

    def _renew(self, key: str, mine: dict[str, Any]) -> bool:
        """Still our claim? Then refresh it (a compare-and-swap): nobody can take it over for another
        grace period, which covers the one write left (version.json)."""
        claim, token = self._read_run_claim(key)
        if claim is None or claim.get("owner") != mine["owner"]:
            return False
        return self.store.put_if(key, encode_json({**mine, "claimed_at": _iso(self.clock())}), token)

    def _write_artifacts(self, n: int, artifacts: dict[str, bytes], reference: pd.DataFrame | None
                         ) -> dict[str, Any]:
        base = version_dir(n)
        recorded: dict[str, dict[str, Any]] = {}
        for name, data in artifacts.items():
            self.store.put(f"{base}/{name}", data)
            recorded[name] = {"key": f"{base}/{name}", "sha256": sha256(data), "bytes": len(data)}
        if reference is not None:
            self.store.write_parquet(f"{base}/reference.parquet", reference)
        return {"artifacts": recorded, "reference": f"{base}/reference.parquet" if reference is not None else None}

    def _commit(self, n: int, meta: dict[str, Any], written: dict[str, Any], run_key: str | None) -> ModelVersion:
        faults.point("register.before-commit")
        full = {**meta, "version": n, "created_at": _iso(self.clock()), **written}
        self.store.put_json(f"{version_dir(n)}/version.json", full)  # last: the version now exists
        return ModelVersion(n, full)

    def versions(self) -> list[int]:
        return sorted(int(k.split("/")[2]) for k in self.store.list(VERSIONS + "/") if k.endswith("/version.json"))

    def get(self, number: int) -> ModelVersion:
        """The version, its record checked: a version.json that is not one names its file."""
        from pydantic import ValidationError

        key = f"{version_dir(number)}/version.json"
        try:
            version = ModelVersion(number, self.store.get_json(key))
            version.record  # noqa: B018  (validated here, once, so every reader can trust it)
        except KeyNotFound:
            raise MissingVersion(f"no version {number} in the registry at {self.store.uri}") from None
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "the record"
            raise CorruptObject(f"{self.store.url(key)} is not a valid version record ({where}: {first['msg']})"
                                ) from None
        return version

    def artifact(self, version: ModelVersion, name: str) -> bytes:
        """The artifact's bytes, refused unless they match the recorded SHA-256."""
        info = version.artifacts.get(name)
        if info is None:
            raise RegistryError(f"version {version.number} has no artifact {name!r}")
        data = self.store.get(info["key"])
        if sha256(data) != info["sha256"]:
            raise IntegrityError(
                f"version {version.number}: {name} does not match its recorded SHA-256; refusing to load it")
        return data

    def reference(self, version: ModelVersion) -> pd.DataFrame:
        if not version.record.reference:
            raise RegistryError(f"version {version.number} has no reference set")
        return self.store.read_parquet(version.record.reference)

    def problems(self, version: ModelVersion) -> list[str]:
        """Why this version should not serve: artifacts missing or failing their SHA-256, failed gates."""
        found = []
        for name, info in version.artifacts.items():
            try:
                self.artifact(version, name)
            except IntegrityError:
                found.append(f"{self.store.url(info['key'])} does not match its recorded SHA-256")
            except KeyNotFound:
                found.append(f"{self.store.url(info['key'])} is missing")
        gates = version.record.gates
        if gates is not None and not gates.passes:
            found.append("it failed its gates (" + "; ".join(gates.reasons or ["no reason recorded"]) + ")")
        return found

    # aliases and the ledger --------------------------------------------------------------------
    def alias(self, name: str = CHAMPION) -> int | None:
        return self.read_alias(name, history=False).version

    def resolve(self, name: str = CHAMPION) -> ModelVersion:
        n = self.alias(name)
        if n is None:
            raise RegistryError(f"no {name} in the registry at {self.store.uri}")
        return self.get(n)

    def read_alias(self, name: str, history: bool = True) -> AliasState:
        """The alias as stored; rebuilt from the ledger when the object is missing or corrupt, so a
        damaged alias never blocks the moves (and the repair) that would fix it."""
        key = alias_key(name)
        try:
            raw, token = self.store.get_versioned(key)
        except KeyNotFound:
            return self._from_ledger(name, None, "missing")
        try:
            doc = self.store.parse_json(key, raw)
            if not isinstance(doc, dict) or not _is_version(doc.get("version")):
                raise CorruptObject(f"{self.store.url(key)} has no valid 'version'")
        except CorruptObject as err:
            log.warning("%s; using the ledger's account of %r", err, name)
            return self._from_ledger(name, token, str(err))
        if "move" not in doc:  # written before moves were numbered: derive the rest from the ledger
            chain = real_moves(self._stored_entries(name, strict=False), doc["version"]) if history else []
            return AliasState(name, doc["version"], len(chain), _fold(chain), chain[-1] if chain else None, token)
        return AliasState(name, doc["version"], int(doc["move"]), tuple(doc.get("history") or ()),
                          doc.get("entry"), token)

    def _from_ledger(self, name: str, token: str | None, why: str) -> AliasState:
        entries = self._stored_entries(name, strict=False)
        if not entries:
            return AliasState(name, None, 0, (), None, token, why if token is not None else None)
        chain = real_moves(entries, entries[-1].get("to"))
        move = max([len(chain), *(e.get("move", 0) for e in entries if isinstance(e.get("move"), int))])
        return AliasState(name, chain[-1].get("to"), move, _fold(chain), chain[-1], token, why)

    def set_alias(self, name: str, number: int | None, why: str, action: str = "set", who: str | None = None
                  ) -> dict[str, Any]:
        if number is not None:
            self.get(number)  # refuse an alias to a version that does not exist
        return self._move(self.read_alias(name), number, why, action, who)

    def _move(self, state: AliasState, to: int | None, why: str, action: str, who: str | None,
              overrode: list[str] | None = None) -> dict[str, Any]:
        """Move an alias from ``state`` (as read) to ``to``: one compare-and-swap, then the ledger."""
        self._record(state)  # the previous move's entry, if a kill skipped it
        when = _iso(self.clock())
        entry = {"when": when, "who": who or current_user(), "alias": state.name, "from": state.version, "to": to,
                 "action": action, "why": why, "move": state.move + 1, "forced": bool(overrode),
                 "overrode": overrode or [], "id": uuid.uuid4().hex}
        doc = {"version": to, "since": when, "move": entry["move"], "entry": entry,
               "history": list(next_history(state.history, action, to))}
        faults.point("alias.before-swap")
        if not self.store.put_if(alias_key(state.name), encode_json(doc), state.token):
            now = self.read_alias(state.name, history=False)
            by = f" by {now.entry['who']} ({now.entry['action']})" if now.entry else ""
            raise ConcurrentMove(f"{state.name} was moved while this command ran (now version {now.version}{by}); "
                                 "nothing was changed: check `loopml ledger` and run the command again if still wanted")
        faults.point("alias.after-swap")
        self._record(AliasState(state.name, to, entry["move"], (), entry, None))
        return entry

    def _record(self, state: AliasState) -> None:
        """Write the ledger entry of the alias's last move unless it is there (create-if-absent: a
        repeat writes nothing)."""
        if state.entry and state.move and state.rebuilt is None and "move" in state.entry:
            self.store.put_new_json(ledger_key(state.name, state.move), state.entry)

    def _vet(self, number: int, force: bool, how: str) -> list[str]:
        """Refuse a version that fails its SHA-256 check or its gates, unless forced: then say what was
        overridden, for the ledger."""
        found = self.problems(self.get(number))
        if found and not force:
            raise RegistryError(f"refusing to make version {number} the champion: {'; '.join(found)}. "
                                f"To do it anyway: {how} (the ledger records it as forced)")
        return found

    def promote(self, number: int, why: str, who: str | None = None, force: bool = False) -> dict[str, Any]:
        state = self.read_alias(CHAMPION)
        if state.version == number:
            self._clear_challenger(number, who)  # a re-run after a kill finishes what the first run began
            raise RegistryError(f"version {number} is already the champion")
        overrode = self._vet(number, force, f"loopml promote {number} --force --why ...")
        entry = self._move(state, number, why, "promote", who, overrode)
        faults.point("promote.before-challenger-clear")
        self._clear_challenger(number, who)
        return entry

    def _clear_challenger(self, promoted: int, who: str | None) -> None:
        """A challenger that has just become champion is no longer challenging anything."""
        state = self.read_alias(CHALLENGER)
        if state.version != promoted:
            return
        try:
            self._move(state, None, f"version {promoted} was promoted to champion", "clear", who)
        except ConcurrentMove:
            pass  # someone set a new challenger meanwhile: theirs stands

    def champion_history(self) -> list[int]:
        """The champions in order, as rollbacks left them: a plain rollback goes to the one before last."""
        return list(self.read_alias(CHAMPION).history)

    def rollback(self, why: str, to: int | None = None, who: str | None = None, force: bool = False
                 ) -> dict[str, Any]:
        """Put back the champion that the current one replaced (``to=None``), or set it to ``to``."""
        state = self.read_alias(CHAMPION)
        if state.version is None:
            raise RegistryError("nothing to roll back: there is no champion")
        if to is None:
            if len(state.history) < 2:
                raise RegistryError(f"nothing to roll back to: version {state.version} is the first champion "
                                    "in its history (use `loopml rollback --to N` to pick one)")
            to = state.history[-2]
        if to == state.version:
            raise RegistryError(f"version {to} is already the champion")
        overrode = self._vet(to, force, f"loopml rollback --to {to} --force --why ...")
        return self._move(state, to, why, "rollback", who, overrode)

    def alias_names(self) -> list[str]:
        names = {k.split("/")[-1].removesuffix(".json") for k in self.store.list(ALIASES + "/")}
        names |= {k.split("/")[2] for k in self.store.list(LEDGER + "/") if k.count("/") == 3}
        return sorted(names)

    def _stored_entries(self, alias: str | None, strict: bool = True) -> list[dict[str, Any]]:
        """Entries as stored, oldest first: the old flat ledger (one numbered file per change, all
        aliases) and then one folder per alias, numbered by move."""
        flat = [k for k in self.store.list(LEDGER + "/") if k.count("/") == 2]
        nested = self.store.list(f"{LEDGER}/{alias}/") if alias else [
            k for k in self.store.list(LEDGER + "/") if k.count("/") == 3]
        entries = []
        for key in flat + nested:
            try:
                e = self.store.get_json(key)
            except CorruptObject:
                if strict:
                    raise
                log.warning("skipping the corrupt ledger entry %s", self.store.url(key))
                continue
            if isinstance(e, dict) and (alias is None or e.get("alias") == alias):
                entries.append(e)
        return entries

    def ledger(self, alias: str | None = None) -> list[dict[str, Any]]:
        """Every alias move, oldest first, including a last move whose entry a kill kept out of the
        ledger (it is in the alias)."""
        entries = self._stored_entries(alias)
        for name in [alias] if alias else self.alias_names():
            last = self.read_alias(name, history=False).entry
            if last and "move" in last and not any(e.get("id") == last.get("id") for e in entries):
                entries.append(last)
        legacy = [e for e in entries if "move" not in e]
        return legacy + sorted((e for e in entries if "move" in e), key=lambda e: (str(e["when"]), e["move"]))


def _is_version(v: Any) -> bool:
    return v is None or (isinstance(v, int) and not isinstance(v, bool))


def _fold(chain: list[dict[str, Any]]) -> tuple[int, ...]:
    history: tuple[int, ...] = ()
    for e in chain:
        history = next_history(history, str(e.get("action")), e.get("to"))
    return history
