"""A folder as the store: the embedded default."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from loopml.storage.base import KeyNotFound, Store


class LocalStore(Store):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if self.root not in p.parents and p != self.root:
            raise ValueError(f"key escapes the store root: {key!r}")
        return p

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyNotFound(key) from None

    def _tmp(self, target: Path, data: bytes) -> str:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def put(self, key: str, data: bytes) -> None:
        target = self._path(key)
        os.replace(self._tmp(target, data), target)  # rename is atomic on POSIX

    def put_new(self, key: str, data: bytes) -> bool:
        target = self._path(key)
        tmp = self._tmp(target, data)
        try:
            os.link(tmp, target)  # fails if the target exists: no lock needed
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def list(self, prefix: str = "") -> list[str]:
        base = self._path(prefix) if prefix else self.root
        # a prefix may end mid-name ("ledger/2026", or "b" matching "ba/..."): unless it names a folder
        # with a trailing "/", walk the folder that contains it and filter
        folder = base if base == self.root or (prefix.endswith("/") and base.is_dir()) else base.parent
        if not folder.is_dir():
            return []
        keys = []
        for dirpath, _, files in os.walk(folder):
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                key = str(Path(dirpath, name).relative_to(self.root)).replace(os.sep, "/")
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
