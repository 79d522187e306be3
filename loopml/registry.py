"""Stage 4, the registry: numbered versions, aliases and an append-only ledger, all in the store.

* A version exists only once its ``version.json`` is written, and that is written last: a reader
  never sees half a model.
* An alias is one small object replaced by one PUT: a reader sees the old champion or the new one.
* Every alias change is appended to the ledger (when, who, from, to, why) before the alias moves.
* Artifacts are checked against their SHA-256 before anyone gets their bytes.

pandas is imported only where a DataFrame is asked for, so serving can use this module without it.
"""

from __future__ import annotations

import getpass
import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loopml.storage import KeyNotFound, Store
from loopml.storage.layout import LEDGER, VERSIONS, alias_key, now_utc, version_dir

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Registry", "RegistryError", "IntegrityError", "ModelVersion", "CHAMPION", "CHALLENGER", "sha256"]

CHAMPION = "champion"
CHALLENGER = "challenger"


class RegistryError(LookupError):
    """A version or alias that does not exist, or an alias change that makes no sense."""


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


@dataclass(frozen=True)
class ModelVersion:
    number: int
    meta: dict[str, Any]

    @property
    def artifacts(self) -> dict[str, dict[str, Any]]:
        return self.meta["artifacts"]

    @property
    def has_onnx(self) -> bool:
        return "model.onnx" in self.artifacts


class Registry:
    def __init__(self, store: Store) -> None:
        self.store = store

    # versions ----------------------------------------------------------------------------------
    def _claim(self) -> int:
        """Reserve the next number with a create-if-absent write: two writers never share one."""
        claimed = [int(k.split("/")[2]) for k in self.store.list(VERSIONS + "/") if k.endswith("/claim.json")]
        n = max(claimed, default=0) + 1
        while not self.store.put_new(f"{version_dir(n)}/claim.json", b"{}"):
            n += 1
        return n

    def register(self, artifacts: dict[str, bytes], meta: dict[str, Any], reference: pd.DataFrame | None = None) -> ModelVersion:
        if not artifacts:
            raise RegistryError("a version needs at least one artifact")
        n = self._claim()
        base = version_dir(n)
        recorded: dict[str, dict[str, Any]] = {}
        for name, data in artifacts.items():
            self.store.put(f"{base}/{name}", data)
            recorded[name] = {"key": f"{base}/{name}", "sha256": sha256(data), "bytes": len(data)}
        if reference is not None:
            self.store.write_parquet(f"{base}/reference.parquet", reference)
        full = {**meta, "version": n, "created_at": now_utc().isoformat(), "artifacts": recorded,
                "reference": f"{base}/reference.parquet" if reference is not None else None}
        self.store.put_json(f"{base}/version.json", full)  # last: the version now exists
        return ModelVersion(n, full)

    def versions(self) -> list[int]:
        return sorted(int(k.split("/")[2]) for k in self.store.list(VERSIONS + "/") if k.endswith("/version.json"))

    def get(self, number: int) -> ModelVersion:
        try:
            return ModelVersion(number, self.store.get_json(f"{version_dir(number)}/version.json"))
        except KeyNotFound:
            raise RegistryError(f"no version {number} in the registry at {self.store.uri}") from None

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
        if not version.meta.get("reference"):
            raise RegistryError(f"version {version.number} has no reference set")
        return self.store.read_parquet(version.meta["reference"])

    # aliases and the ledger --------------------------------------------------------------------
    def alias(self, name: str = CHAMPION) -> int | None:
        try:
            return int(self.store.get_json(alias_key(name))["version"])
        except KeyNotFound:
            return None

    def resolve(self, name: str = CHAMPION) -> ModelVersion:
        n = self.alias(name)
        if n is None:
            raise RegistryError(f"no {name} in the registry at {self.store.uri}")
        return self.get(n)

    def set_alias(self, name: str, number: int | None, why: str, action: str = "set", who: str | None = None) -> dict[str, Any]:
        if number is not None:
            self.get(number)  # refuse an alias to a version that does not exist
        entry = {"when": now_utc().isoformat(), "who": who or current_user(), "alias": name,
                 "from": self.alias(name), "to": number, "action": action, "why": why}
        self._append_ledger(entry)  # intent first: the ledger never misses a change
        if number is None:
            self.store.delete(alias_key(name))
        else:
            self.store.put_json(alias_key(name), {"version": number, "since": entry["when"]})
        return entry

    def _append_ledger(self, entry: dict[str, Any]) -> None:
        """Entries are numbered, not timestamped: order is exact even within one clock tick, and two
        writers racing for a number are kept apart by the create-if-absent write."""
        n = len(self.store.list(LEDGER + "/")) + 1
        while not self.store.put_new_json(f"{LEDGER}/{n:08d}.json", entry):
            n += 1

    def promote(self, number: int, why: str, who: str | None = None) -> dict[str, Any]:
        if self.alias(CHAMPION) == number:
            raise RegistryError(f"version {number} is already the champion")
        return self.set_alias(CHAMPION, number, why, action="promote", who=who)

    def champion_history(self) -> list[int]:
        """The stack of champions: a promotion pushes, a rollback pops."""
        stack: list[int] = []
        for e in self.ledger(CHAMPION):
            if e["action"] == "rollback":
                if stack:
                    stack.pop()
            elif e["to"] is not None:
                stack.append(e["to"])
        return stack

    def rollback(self, why: str, to: int | None = None, who: str | None = None) -> dict[str, Any]:
        current = self.alias(CHAMPION)
        if current is None:
            raise RegistryError("nothing to roll back: there is no champion")
        if to is None:
            stack = self.champion_history()
            if len(stack) < 2:
                raise RegistryError(f"nothing to roll back to: version {current} is the first champion")
            to = stack[-2]
        if to == current:
            raise RegistryError(f"version {to} is already the champion")
        return self.set_alias(CHAMPION, to, why, action="rollback", who=who)

    def ledger(self, alias: str | None = None) -> list[dict[str, Any]]:
        entries = [self.store.get_json(k) for k in self.store.list(LEDGER + "/")]
        return [e for e in entries if alias is None or e["alias"] == alias]

