"""Release records: every promote and rollback is appended to ``releases/<NNNNNNNN>.json`` in the store
(create-if-absent, numbered, like the ledger): environment, who, model from → to, and the function's live
version from → to, so "what was live, and who said so" is one read."""

from __future__ import annotations

from typing import Any

from loopml.storage import Store

RELEASES = "releases"


class ReleaseError(RuntimeError):
    """A release step that cannot go ahead; the message says why and what to do."""


# the release record ------------------------------------------------------------------------------
def _record(store: Store, entry: dict[str, Any]) -> dict[str, Any]:
    n = len(store.list(RELEASES + "/")) + 1
    while not store.put_new_json(f"{RELEASES}/{n:08d}.json", entry):
        n += 1  # another writer took this number: the next one
    return entry


def releases(store: Store) -> list[dict[str, Any]]:
    """Every promote and rollback recorded by this module, oldest first."""
    return [store.get_json(k) for k in store.list(RELEASES + "/")]
