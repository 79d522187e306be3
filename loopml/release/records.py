"""Release records: every promote and rollback is appended to ``releases/<NNNNNNNN>.json`` in the store
(create-if-absent, numbered, like the ledger): environment, who, model from → to, and the function's live
version from → to, so "what was live, and who said so" is one read."""

from __future__ import annotations

from typing import Any

from loopml.storage import Store
from loopml.storage.layout import RELEASES, release_key
from loopml.storage.records import Record, read, write_new

__all__ = ["RELEASES", "ReleaseError", "ReleaseRecord", "releases"]


class ReleaseError(RuntimeError):
    """A release step that cannot go ahead; the message says why and what to do."""


class ReleaseRecord(Record):
    """One promote or rollback: when, what, where, who and why, and what moved (the model alias and the
    function's live alias, each ``{from, to}`` or None); a rollback adds the errors of what did not."""

    when: str
    action: str
    env: str
    who: str
    why: str
    model: dict[str, Any] | None
    function: dict[str, Any] | None


# the release record ------------------------------------------------------------------------------
def _record(store: Store, entry: dict[str, Any]) -> dict[str, Any]:
    record = ReleaseRecord.model_validate(entry)
    n = len(store.list(RELEASES + "/")) + 1
    while not write_new(store, release_key(n), record):
        n += 1  # another writer took this number: the next one
    return entry


def releases(store: Store) -> list[dict[str, Any]]:
    """Every promote and rollback recorded by this module, oldest first, as plain data."""
    return [read(store, k, ReleaseRecord).to_plain() for k in store.list(RELEASES + "/")]
