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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from loopml import faults
from loopml.registry.records import AliasRecord, LedgerEntry, RunClaim, TrainingRecord, VersionClaim, VersionRecord
from loopml.storage import CorruptObject, KeyNotFound, Store, records
from loopml.storage.layout import (
    ALIASES_PREFIX,
    VERSION_CLAIM,
    VERSION_JSON,
    VERSIONS_PREFIX,
    alias_key,
    artifact_key,
    ledger_key,
    ledger_prefix,
    parse_alias_key,
    parse_ledger_key,
    parse_version_key,
    reference_key,
    run_key_path,
    version_claim_key,
    version_json,
)

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
    """The hex SHA-256 of ``data``: what artifacts are recorded and checked with."""
    return hashlib.sha256(data).hexdigest()


def current_user() -> str:
    """Who a ledger entry names when the caller does not say: ``LOOPML_USER``, ``METAFLOW_USER``, the login."""
    return os.environ.get("LOOPML_USER") or os.environ.get("METAFLOW_USER") or _login()


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers, Lambda)
        return "unknown"


@dataclass(frozen=True)
class ModelVersion:
    """A registered version: its number and its typed ``version.json``."""

    number: int
    record: VersionRecord

    @functools.cached_property
    def meta(self) -> dict[str, Any]:
        """``version.json`` as written, for readers of the JSON itself (the API's handlers, tests)."""
        return self.record.as_written()

    @property
    def has_onnx(self) -> bool:
        """True when the version has an ONNX artifact (served without pickle)."""
        return self.record.has_onnx


@dataclass(frozen=True)
class AliasState:
    """An alias as one move sees it: where it points, how many moves it has had, the champion
    history, the entry of its last move, and the token its next compare-and-swap must match."""

    name: str
    version: int | None
    move: int
    history: tuple[int, ...]
    entry: LedgerEntry | None
    token: str | None
    rebuilt: str | None = None  # why the state came from the ledger instead (alias missing or corrupt)

    def as_record(self) -> AliasRecord:
        """The alias object that stores this state."""
        return AliasRecord(version=self.version, since=self.entry.when if self.entry else None, move=self.move,
                           entry=self.entry, history=list(self.history))


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


class Registry:
    """The registry in a store: register versions, read them (checked), move aliases, read the ledger.

    ``claim_grace`` is how long a run's claim holds off a retry of the same run; ``clock`` and
    ``sleep`` are seams for tests."""

    def __init__(self, store: Store, claim_grace: float = CLAIM_GRACE_SECONDS,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self.store = store
        self.claim_grace, self.clock, self.sleep = claim_grace, clock, sleep

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # versions ----------------------------------------------------------------------------------
    def _version_files(self, name: str) -> list[int]:
        """The numbers whose folder holds ``name`` (``version.json``, ``claim.json``)."""
        return [parsed[0] for key in self.store.list(VERSIONS_PREFIX)
                if (parsed := parse_version_key(key)) and parsed[1] == name]

    def _claim(self) -> int:
        """Reserve the next number with a create-if-absent write: two writers never share one. The
        claim says when, so `doctor` can tell an abandoned number from a registration in progress."""
        n = max(self._version_files(VERSION_CLAIM), default=0) + 1
        claim = VersionClaim(claimed_at=self._now(), owner=uuid.uuid4().hex)
        while not records.write_new(self.store, version_claim_key(n), claim):
            n += 1
        return n

    def register(self, artifacts: dict[str, bytes], meta: TrainingRecord | Mapping[str, Any],
                 reference: pd.DataFrame | None = None, run_key: str | None = None) -> ModelVersion:
        """Store a new version: ``meta`` is what training knows about it, the registry adds the rest.
        With ``run_key``, a run that already registered a version (a retried step) gets that version
        back instead of a second one."""
        if not artifacts:
            raise RegistryError("a version needs at least one artifact")
        training = meta if isinstance(meta, TrainingRecord) else TrainingRecord.model_validate(meta)
        if run_key is None:
            n = self._claim()
            return self._commit(n, training, self._write_artifacts(n, artifacts, reference), None)
        return self._register_once(run_key, artifacts, training, reference)

    def _register_once(self, run_key: str, artifacts: dict[str, bytes], training: TrainingRecord,
                       reference: pd.DataFrame | None) -> ModelVersion:
        key = run_key_path(run_key)
        while True:
            claim, token = self._read_run_claim(key)
            if claim is not None:
                done = self._complete(claim.version)
                if done is not None:
                    return done
                left = self.claim_grace - (self.clock() - claim.claimed_at.timestamp())
                if left > 0:  # another attempt is registering this run right now: wait for it
                    self.sleep(min(left, 1.0))
                    continue
            n = self._claim()
            mine = RunClaim(run_key=run_key, version=n, claimed_at=self._now(), owner=uuid.uuid4().hex)
            if not records.write_if(self.store, key, mine, token):
                continue  # another attempt claimed the run first: look again
            faults.point("register.claimed")
            written = self._write_artifacts(n, artifacts, reference)
            if not self._renew(key, mine):
                continue  # our claim went stale and another attempt took the run over: its version stands
            return self._commit(n, training, written, run_key)

    def _read_run_claim(self, key: str) -> tuple[RunClaim | None, str | None]:
        """The run's claim and its token; a corrupt claim reads as none (and is taken over)."""
        try:
            raw, token = self.store.get_versioned(key)
        except KeyNotFound:
            return None, None
        try:
            return records.parse(self.store, key, raw, RunClaim), token
        except CorruptObject as err:
            log.warning("%s: taking the run over", err)
            return None, token

    def _complete(self, number: int) -> ModelVersion | None:
        if not self.store.exists(version_json(number)):
            return None
        return self.get(number)

    def _renew(self, key: str, mine: RunClaim) -> bool:
        """Still our claim? Then refresh it (a compare-and-swap): nobody can take it over for another
        grace period, which covers the one write left (version.json)."""
        claim, token = self._read_run_claim(key)
        if claim is None or claim.owner != mine.owner:
            return False
        return records.write_if(self.store, key, mine.model_copy(update={"claimed_at": self._now()}), token)

    def _write_artifacts(self, n: int, artifacts: dict[str, bytes], reference: pd.DataFrame | None
                         ) -> dict[str, Any]:
        recorded: dict[str, dict[str, Any]] = {}
        for name, data in artifacts.items():
            self.store.put(artifact_key(n, name), data)
            recorded[name] = {"key": artifact_key(n, name), "sha256": sha256(data), "bytes": len(data)}
        if reference is not None:
            self.store.write_parquet(reference_key(n), reference)
        return {"artifacts": recorded, "reference": reference_key(n) if reference is not None else None}

    def _commit(self, n: int, training: TrainingRecord, written: dict[str, Any], run_key: str | None
                ) -> ModelVersion:
        faults.point("register.before-commit")
        fields = {**training.as_written(), "version": n, "created_at": self._now(), **written}
        if run_key is not None:
            fields["run_key"] = run_key
        record = VersionRecord.model_validate(fields)
        records.write(self.store, version_json(n), record)  # last: the version now exists
        return ModelVersion(n, record)

    def versions(self) -> list[int]:
        """The registered (complete) version numbers, in order."""
        return sorted(self._version_files(VERSION_JSON))

    def get(self, number: int) -> ModelVersion:
        """The version, its record checked: a version.json that is not one names its file."""
        try:
            return ModelVersion(number, records.read(self.store, version_json(number), VersionRecord))
        except KeyNotFound:
            raise MissingVersion(f"no version {number} in the registry at {self.store.uri}") from None

    def artifact(self, version: ModelVersion, name: str) -> bytes:
        """The artifact's bytes, refused unless they match the recorded SHA-256."""
        info = version.record.artifacts.get(name)
        if info is None:
            raise RegistryError(f"version {version.number} has no artifact {name!r}")
        data = self.store.get(info.key)
        if sha256(data) != info.sha256:
            raise IntegrityError(
                f"version {version.number}: {name} does not match its recorded SHA-256; refusing to load it")
        return data

    def reference(self, version: ModelVersion) -> pd.DataFrame:
        """The version's reference set (test-period features, predictions, targets)."""
        if not version.record.reference:
            raise RegistryError(f"version {version.number} has no reference set")
        return self.store.read_parquet(version.record.reference)

    def problems(self, version: ModelVersion) -> list[str]:
        """Why this version should not serve: artifacts missing or failing their SHA-256, failed gates."""
        found = []
        for name, info in version.record.artifacts.items():
            try:
                self.artifact(version, name)
            except IntegrityError:
                found.append(f"{self.store.url(info.key)} does not match its recorded SHA-256")
            except KeyNotFound:
                found.append(f"{self.store.url(info.key)} is missing")
        gates = version.record.gates
        if gates is not None and not gates.passes:
            found.append("it failed its gates (" + "; ".join(gates.reasons or ["no reason recorded"]) + ")")
        return found

    # aliases and the ledger --------------------------------------------------------------------
    def alias(self, name: str = CHAMPION) -> int | None:
        """The version the alias names; None when it names none."""
        return self.read_alias(name).version

    def resolve(self, name: str = CHAMPION) -> ModelVersion:
        """The version the alias names; :class:`RegistryError` when it names none."""
        n = self.alias(name)
        if n is None:
            raise RegistryError(f"no {name} in the registry at {self.store.uri}")
        return self.get(n)

    def read_alias(self, name: str) -> AliasState:
        """The alias as stored; rebuilt from the ledger when the object is missing or corrupt, so a
        damaged alias never blocks the moves (and the repair) that would fix it."""
        key = alias_key(name)
        try:
            raw, token = self.store.get_versioned(key)
        except KeyNotFound:
            return self._from_ledger(name, None, "missing")
        try:
            doc = records.parse(self.store, key, raw, AliasRecord)
        except CorruptObject as err:
            log.warning("%s; using the ledger's account of %r", err, name)
            return self._from_ledger(name, token, str(err))
        return AliasState(name, doc.version, doc.move, tuple(doc.history), doc.entry, token)

    def _from_ledger(self, name: str, token: str | None, why: str) -> AliasState:
        """The alias as its ledger entries tell it (an unreadable entry is skipped)."""
        entries = self._stored_entries(name, strict=False)
        if not entries:
            return AliasState(name, None, 0, (), None, token, why if token is not None else None)
        history: tuple[int, ...] = ()
        for e in entries:
            history = next_history(history, e.action, e.to)
        return AliasState(name, entries[-1].to, entries[-1].move, history, entries[-1], token, why)

    def set_alias(self, name: str, number: int | None, why: str, action: str = "set", who: str | None = None
                  ) -> dict[str, Any]:
        """Point ``name`` at version ``number`` (None clears it); returns the move's ledger entry."""
        if number is not None:
            self.get(number)  # refuse an alias to a version that does not exist
        return self._move(self.read_alias(name), number, why, action, who)

    def _move(self, state: AliasState, to: int | None, why: str, action: str, who: str | None,
              overrode: list[str] | None = None) -> dict[str, Any]:
        """Move an alias from ``state`` (as read) to ``to``: one compare-and-swap, then the ledger."""
        self._record(state)  # the previous move's entry, if a kill skipped it
        entry = LedgerEntry(when=self._now(), who=who or current_user(), alias=state.name, from_=state.version, to=to,
                            action=action, why=why, move=state.move + 1, forced=bool(overrode),
                            overrode=overrode or [], id=uuid.uuid4().hex)
        moved = AliasState(state.name, to, entry.move, next_history(state.history, action, to), entry, None)
        faults.point("alias.before-swap")
        if not records.write_if(self.store, alias_key(state.name), moved.as_record(), state.token):
            now = self.read_alias(state.name)
            by = f" by {now.entry.who} ({now.entry.action})" if now.entry else ""
            raise ConcurrentMove(f"{state.name} was moved while this command ran (now version {now.version}{by}); "
                                 "nothing was changed: check `loopml ledger` and run the command again if still wanted")
        faults.point("alias.after-swap")
        self._record(moved)
        return entry.as_written()

    def _record(self, state: AliasState) -> None:
        """Write the ledger entry of the alias's last move unless it is there (create-if-absent: a
        repeat writes nothing)."""
        if state.entry and state.move and state.rebuilt is None:
            records.write_new(self.store, ledger_key(state.name, state.move), state.entry)

    def _vet(self, number: int, force: bool, how: str) -> list[str]:
        """Refuse a version that fails its SHA-256 check or its gates, unless forced: then say what was
        overridden, for the ledger."""
        found = self.problems(self.get(number))
        if found and not force:
            raise RegistryError(f"refusing to make version {number} the champion: {'; '.join(found)}. "
                                f"To do it anyway: {how} (the ledger records it as forced)")
        return found

    def promote(self, number: int, why: str, who: str | None = None, force: bool = False) -> dict[str, Any]:
        """Make version ``number`` the champion (vetted unless ``force``); returns the ledger entry."""
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
        """Every alias that exists or has ledger entries."""
        names = {name for key in self.store.list(ALIASES_PREFIX) if (name := parse_alias_key(key))}
        names |= {parsed[0] for key in self.store.list(ledger_prefix()) if (parsed := parse_ledger_key(key))}
        return sorted(names)

    def _stored_entries(self, alias: str | None, strict: bool = True) -> list[LedgerEntry]:
        """The ledger entries as stored (of one alias, or all), each alias's in move order. Not
        ``strict``: an unreadable entry is skipped (doctor names it)."""
        entries = []
        for key in self.store.list(ledger_prefix(alias)):
            if parse_ledger_key(key) is None:
                continue
            try:
                entries.append(records.read(self.store, key, LedgerEntry))
            except CorruptObject:
                if strict:
                    raise
                log.warning("skipping the corrupt ledger entry %s", self.store.url(key))
        return entries

    def ledger(self, alias: str | None = None) -> list[dict[str, Any]]:
        """Every alias move, oldest first, including a last move whose entry a kill kept out of the
        ledger (it is in the alias). Each entry as its JSON reads (``entry["from"]``)."""
        entries = self._stored_entries(alias)
        for name in [alias] if alias else self.alias_names():
            last = self.read_alias(name).entry
            if last and not any(e.id == last.id for e in entries):
                entries.append(last)
        return [e.as_written() for e in sorted(entries, key=lambda e: (e.when.isoformat(), e.move))]
