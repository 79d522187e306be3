"""The base of every typed record loopml stores as JSON, and the one way records are read and written.

Every JSON object in the store has a record type, built by its writer and validated here on read: an
object that does not match its type is a :class:`~loopml.storage.base.CorruptObject` naming the key, never
a ``KeyError`` deep inside a caller. The record types live with their owners (``loopml.registry.records``,
``loopml.cycle.records``, ``loopml.release.records``); the keys they are stored under are built by
:mod:`loopml.storage.layout` only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from loopml.storage.base import CorruptObject, encode_json

if TYPE_CHECKING:
    from loopml.storage.base import Store

__all__ = ["Record", "parse", "read", "read_lines", "read_versioned", "write", "write_new", "write_if"]


class Record(BaseModel):
    """A stored JSON object. The fields its readers need are typed; anything else a writer added is kept
    (``extra="allow"``), so reading and re-writing a record (``loopml publish``) loses nothing."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    # how errors name the record ("not a valid version record"); the class name when empty
    record_name: ClassVar[str] = ""

    def to_json(self) -> bytes:
        """Strict JSON (NaN and infinities as null), the same encoding as every other stored object."""
        return encode_json(self.to_plain())

    def to_plain(self) -> dict[str, Any]:
        """The record as plain JSON-ready data, as it is stored (a flow artifact, an API answer)."""
        return self.model_dump(mode="json", by_alias=True, fallback=_scalar)

    def as_written(self) -> dict[str, Any]:
        """The record as a JSON object with the stored names (``"from"``, ``"schema"``), leaving out the
        fields its writer did not set: what callers that speak JSON (the CLI, the API) are given."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True, fallback=_scalar)


def _scalar(value: object) -> object:
    """What pydantic cannot serialise in extra fields: numpy scalars (a challenger's scores, a count)
    become Python numbers, anything else its text, as :func:`encode_json` writes them."""
    item = getattr(value, "item", None)
    return item() if type(value).__module__ == "numpy" and callable(item) else str(value)


R = TypeVar("R", bound=Record)


def parse(store: Store, key: str, data: bytes, cls: type[R]) -> R:
    """The record in ``data`` (the object at ``key``), or :class:`CorruptObject` saying what is wrong."""
    try:
        return cls.model_validate(store.parse_json(key, data))
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the object"
        name = cls.record_name or cls.__name__
        raise CorruptObject(f"{store.url(key)} is not a valid {name} record ({where}: {first['msg']})") from None


def read(store: Store, key: str, cls: type[R]) -> R:
    """Read and validate one record; raises ``KeyNotFound`` or ``CorruptObject``."""
    return parse(store, key, store.get(key), cls)


def read_versioned(store: Store, key: str, cls: type[R]) -> tuple[R, str]:
    """The record and the token :meth:`Store.put_if` compares."""
    data, token = store.get_versioned(key)
    return parse(store, key, data, cls), token


def write(store: Store, key: str, record: Record) -> None:
    """Create or replace (results, latest.json: objects one writer owns)."""
    store.put(key, record.to_json())


def write_new(store: Store, key: str, record: Record) -> bool:
    """Create-if-absent (append-only logs: ledger, alerts, decisions, claims); False if it exists."""
    return store.put_new(key, record.to_json())


def write_if(store: Store, key: str, record: Record, token: str | None) -> bool:
    """Compare-and-swap (aliases, manifests); False, with nothing written, when another writer won."""
    return store.put_if(key, record.to_json(), token)


def read_lines(store: Store, key: str, cls: type[R]) -> list[R]:
    """Read and validate a JSON-lines object (the prediction log): one record per line."""
    return [parse(store, key, line, cls) for line in store.get(key).splitlines() if line.strip()]
