"""The only disk cache: content-addressed entries with a readable manifest, written atomically.

An entry lives in ``<root>/<kind>/<key>/`` and holds the data files plus ``manifest.json``.
The key hashes the kind, the cache-format version, the input fingerprints and the parameters,
so any changed input yields a different key and a stale entry is never served.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["Cache", "CACHE_FORMAT_VERSION", "hash_key", "atomic_write_bytes", "atomic_dir"]

CACHE_FORMAT_VERSION = 1


def _canonical(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float):
        return repr(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _canonical(obj.item())
    return obj


def hash_key(*parts: Any, length: int = 20) -> str:
    """Hash JSON-able parts into a short hex key, independent of dict ordering.

    Example:
        >>> hash_key({"a": 1, "b": 2}) == hash_key({"b": 2, "a": 1})
        True
    """
    blob = json.dumps(_canonical(list(parts)), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give normal file permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class atomic_dir:  # noqa: N801 - used as a context manager, reads like a function
    """Build a directory under a temporary name and move it into place on success.

    On any exception the temporary directory is removed and ``target`` is untouched.
    An existing ``target`` is replaced only when ``overwrite`` is true.
    """

    def __init__(self, target: Path, overwrite: bool = True) -> None:
        self.target = Path(target)
        self.overwrite = overwrite
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(dir=self.target.parent, prefix=f".{self.target.name}."))
        os.chmod(self.tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        return self.tmp

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self.tmp is not None
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return None
        # Several processes (Ray workers) or threads may land the same entry at once. A
        # directory cannot replace a non-empty one in one rename, so a concurrent writer can
        # move the target away or put its own in place between our steps: retry, and when
        # another writer keeps winning, keep its entry (entries are content-addressed: a key
        # holds the same result whoever computed it).
        for _ in range(_LAND_TRIES):
            if self.target.exists():
                if not self.overwrite:
                    break
                old = Path(tempfile.mkdtemp(dir=self.target.parent,
                                            prefix=f".{self.target.name}.old."))
                try:
                    os.replace(self.target, old)  # the empty placeholder is replaced
                except FileNotFoundError:  # another writer moved it away first
                    old.rmdir()
                    continue
                except OSError as e:
                    old.rmdir()
                    if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                        continue
                    raise
                landed = _try_rename(self.tmp, self.target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                landed = _try_rename(self.tmp, self.target)
            if landed:
                return None
        shutil.rmtree(self.tmp, ignore_errors=True)
        return None


_LAND_TRIES = 8


def _try_rename(src: Path, dst: Path) -> bool:
    """``os.replace(src, dst)``; ``False`` if another writer put a non-empty ``dst`` there."""
    try:
        os.replace(src, dst)
    except OSError as e:
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise
    return True


class Cache:
    """A directory of content-addressed entries.

    Example:
        >>> import tempfile, numpy as np
        >>> c = Cache(tempfile.mkdtemp())
        >>> k = c.key("demo", fingerprints={"data": "abc"}, params={"n": 1})
        >>> c.get("demo", k) is None
        True
        >>> p = c.put("demo", k, lambda d: np.save(d / "x.npy", np.arange(3)), {"note": "toy"})
        >>> c.get("demo", k) == p and c.manifest("demo", k)["note"]
        'toy'
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def key(
        self,
        kind: str,
        *,
        fingerprints: Mapping[str, Any],
        params: Mapping[str, Any] | None = None,
    ) -> str:
        """Key for an entry of ``kind`` computed from input fingerprints and parameters."""
        return hash_key(kind, CACHE_FORMAT_VERSION, dict(fingerprints), dict(params or {}))

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def get(self, kind: str, key: str) -> Path | None:
        """Directory of a complete entry, or ``None`` (entries are complete once visible)."""
        p = self.path(kind, key)
        return p if (p / "manifest.json").is_file() else None

    def manifest(self, kind: str, key: str) -> dict[str, Any]:
        p = self.path(kind, key) / "manifest.json"
        return json.loads(p.read_text())

    def put(
        self,
        kind: str,
        key: str,
        write: Callable[[Path], object],
        manifest: Mapping[str, Any],
    ) -> Path:
        """Create an entry: ``write(tmpdir)`` fills the data files, then it is moved into place."""
        target = self.path(kind, key)
        with atomic_dir(target) as tmp:
            write(tmp)
            full = {"kind": kind, "key": key, "format": CACHE_FORMAT_VERSION,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **dict(manifest)}
            (tmp / "manifest.json").write_text(json.dumps(_canonical(full), indent=2, default=str))
        return target

    def entries(self, kind: str) -> list[Path]:
        d = self.root / kind
        if not d.is_dir():
            return []
        return sorted(p for p in d.iterdir() if (p / "manifest.json").is_file())

    def clear(self, kind: str | None = None) -> None:
        shutil.rmtree(self.root / kind if kind else self.root, ignore_errors=True)
