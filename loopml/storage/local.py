"""A folder as the store: the embedded default."""

from __future__ import annotations

import fcntl
import functools
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loopml.storage.base import KeyNotFound, Store, StoreError, content_token

TMP_PREFIX = ".tmp-"  # a write in progress (or one a kill interrupted): never listed
LOCK_PREFIX = ".lock-"  # the per-key lock file of put_if: never listed, harmless when left behind


@functools.cache
def _file_mode() -> int:
    """0644 under the usual umask: what open() would give. mkstemp's 0600 hid the store from the
    group and from a server running as another user. Read once: os.umask can only be read by setting it."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


class LocalStore(Store):
    """A folder: one file per object, written to a temporary file and renamed into place (atomic),
    created with a hard link (create-if-absent) and compared under a per-key flock (compare-and-swap)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if self.root not in p.parents and p != self.root:
            raise ValueError(f"key escapes the store root: {key!r}")
        return p

    def require_existing(self) -> None:
        """The root folder must exist (a mistyped path is not an empty registry)."""
        if not self.root.is_dir():
            raise StoreError(f"no such store: {self.root}")

    def get(self, key: str) -> bytes:
        """The file's bytes; :class:`KeyNotFound` when there is no such file."""
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyNotFound(key) from None
        except OSError as err:
            raise StoreError(f"cannot read {path}: {err.strerror}") from None

    def exists(self, key: str) -> bool:
        """A stat of the file: its bytes are not read."""
        return self._path(key).is_file()

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        """The bytes and their SHA-256 as the token."""
        data = self.get(key)
        return data, content_token(data)

    def _tmp(self, target: Path, data: bytes) -> str:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TMP_PREFIX)
        except OSError as err:
            raise StoreError(f"cannot write {target}: {err.strerror}") from None
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _file_mode())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def put(self, key: str, data: bytes) -> None:
        """Write a temporary file beside the target and rename it into place (atomic on POSIX)."""
        target = self._path(key)
        os.replace(self._tmp(target, data), target)

    def put_new(self, key: str, data: bytes) -> bool:
        """Hard-link a temporary file to the target: the link fails if the target exists, so no lock is needed."""
        target = self._path(key)
        tmp = self._tmp(target, data)
        try:
            os.link(tmp, target)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    @contextmanager
    def _locked(self, target: Path) -> Iterator[None]:
        """An exclusive flock on the key's lock file: held by one process (or thread) at a time
        across the machine, and released by the kernel if its holder is killed."""
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target.parent / f"{LOCK_PREFIX}{target.name}", os.O_RDWR | os.O_CREAT, _file_mode())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def put_if(self, key: str, data: bytes, token: str | None) -> bool:
        """Compare and replace under the key's flock, so writers on this machine take turns."""
        target = self._path(key)
        with self._locked(target):
            try:
                current: str | None = content_token(target.read_bytes())
            except FileNotFoundError:
                current = None
            if current != token:
                return False
            self.put(key, data)
            return True

    def list(self, prefix: str = "") -> list[str]:
        """Walk the folder holding the prefix; temporary and lock files are never listed."""
        base = self._path(prefix) if prefix else self.root
        # a prefix may end mid-name ("ledger/2026", or "b" matching "ba/..."): unless it names a folder
        # with a trailing "/", walk the folder that contains it and filter
        folder = base if base == self.root or (prefix.endswith("/") and base.is_dir()) else base.parent
        if not folder.is_dir():
            return []
        keys = []
        for dirpath, _, files in os.walk(folder):
            for name in files:
                if name.startswith((TMP_PREFIX, LOCK_PREFIX)):
                    continue
                key = str(Path(dirpath, name).relative_to(self.root)).replace(os.sep, "/")
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def temporaries(self, older_than: float) -> list[Path]:
        """``.tmp-`` files a killed writer left behind, older than ``older_than`` seconds (younger
        ones may belong to a write in progress)."""
        if not self.root.is_dir():
            return []
        cutoff = time.time() - older_than
        return sorted(p for p in self.root.rglob(f"{TMP_PREFIX}*") if p.is_file() and p.stat().st_mtime < cutoff)

    def delete(self, key: str) -> None:
        """Unlink the file; a missing one is not an error."""
        self._path(key).unlink(missing_ok=True)
