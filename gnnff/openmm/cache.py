"""On-disk caches of the template generator's ffxml templates: a folder, or one JSON file
in the layout of openmmforcefields' caches. Both can be shared by several processes.
Templates are keyed by a digest that includes :func:`model_fingerprint` of the model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    import fcntl
except ImportError:  # Windows: the JSON cache is not locked
    fcntl = None

from gnnff.errors import InputError, first_line
from gnnff.files import atomic_write_text

if TYPE_CHECKING:
    from gnnff.sources.models import ParameterSource

__all__ = ["model_fingerprint", "open_cache"]


def model_fingerprint(source: ParameterSource) -> str:
    """What identifies a parameter source for caching: the checkpoint's SHA-256 for a
    trained model, else its ``repr`` (name and options)."""
    path = getattr(source, "path", None)
    if path is not None and Path(path).is_file():
        return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return repr(source)


class _FolderCache:
    """One ffxml file per template, ``DIGEST.xml``, written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)

    def get(self, digest: str) -> str | None:
        path = self.path / f"{digest}.xml"
        return path.read_text(encoding="utf-8") if path.is_file() else None

    def put(self, digest: str, key: str, text: str) -> None:
        atomic_write_text(self.path / f"{digest}.xml", text)


class _JsonCache:
    """One JSON file in the TinyDB layout of openmmforcefields' caches (``cache="db.json"``):
    gnnff's templates in table ``gnnff``, other generators' tables kept as they are.
    Readers hold a shared and writers an exclusive ``flock`` on the file, so processes can
    share it (no locking where ``fcntl`` is missing)."""

    TABLE = "gnnff"

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked(exclusive=False) as handle:
            self._load(handle)  # a file that is not such a cache is refused now, not mid-createSystem

    @contextlib.contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[Any]:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        with os.fdopen(fd, "r+", encoding="utf-8") as handle:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield handle  # closing the file releases the lock

    def _load(self, handle: Any) -> dict:
        handle.seek(0)
        text = handle.read()
        try:
            data = json.loads(text) if text.strip() else {}
        except ValueError as err:
            data = err
        if not isinstance(data, dict) or not isinstance(data.get(self.TABLE, {}), dict):
            why = f" ({first_line(data)})" if isinstance(data, ValueError) else ""
            raise InputError(f"{self.path}: not a JSON template cache{why}; give a folder or a .json file for cache=, "
                             "or remove the file")
        return data

    def get(self, digest: str) -> str | None:
        with self._locked(exclusive=False) as handle:
            table = self._load(handle).get(self.TABLE, {})
        return next((e["ffxml"] for e in table.values() if e.get("key") == digest), None)

    def put(self, digest: str, key: str, text: str) -> None:
        with self._locked(exclusive=True) as handle:
            data = self._load(handle)
            table = data.setdefault(self.TABLE, {})
            if any(e.get("key") == digest for e in table.values()):
                return  # another process wrote it meanwhile
            table[str(max(map(int, table), default=0) + 1)] = {"key": digest, "smiles": key, "ffxml": text}
            handle.seek(0)
            handle.truncate()
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())


def open_cache(path: str | os.PathLike) -> _FolderCache | _JsonCache:
    """A folder (existing, or a new path without ``.json``) or a single JSON file.

    A new folder is decided without asking whether the path exists: another process may
    create it between two such checks (it then looked like an existing file)."""
    path = Path(path)
    if path.is_dir() or (path.suffix.lower() != ".json" and not path.is_file()):
        return _FolderCache(path)  # mkdir(exist_ok=True): safe when two processes make it
    return _JsonCache(path)
