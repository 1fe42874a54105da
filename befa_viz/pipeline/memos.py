"""In-process memos of the attribution verbs (encoders, runs, ground truth, weight digests)."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["ENCODER_MEMO_SIZE", "RUN_MEMO_SIZE", "clear_memos"]


# Rebuilding an encoder costs ~0.5 s (MobileNetV2) to ~1 s (MiniLM) and opening a run (YAML,
# dataset, features, model) tens of ms to seconds, on every request. These memos keep the most
# recently used ones, bounded (LRU, sizes below), keyed so that they never serve a stale object:
#
# * encoders: (encoder key, modality, the fingerprint the run's features recorded, device).
#   Only an encoder whose weights hash equalled that fingerprint when it was built is stored,
#   and every hit is checked again, so a hit is exactly the encoder that made the features
#   (replaced weights on disk are noticed, and refused, after clear_memos()).
# * runs: (run folder, device), used only while the stat (mtime, size) of the run's files
#   (run.json, config.yaml, metrics.json, model.safetensors), its feature files and manifests
#   and its dataset files is unchanged: new weights (a resumed run, a replaced file) or changed
#   features reload the run, which re-checks their fingerprints.
# * the config identity of candidate runs (find_paired_run), the synthetic shop's ground truth
#   and the "mean" baseline's pixel, by the stat of the files they were read from.
#
# Memoised runs and encoders are shared objects: callers treat them as read-only. Computations
# that run them (maps, faithfulness curves, sanity controls) hold _COMPUTE_LOCK, since methods
# hook into modules and the explorer serves its sessions from threads. clear_memos() empties
# them all (the disk cache is untouched).
ENCODER_MEMO_SIZE = 4
RUN_MEMO_SIZE = 8
_COMPUTE_LOCK = threading.RLock()


class _Memo:
    """A small thread-safe LRU dict: at most ``size`` entries, the least recently used go."""

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Any, value: Any) -> Any:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


_ENCODERS = _Memo(ENCODER_MEMO_SIZE)
_RUNS = _Memo(RUN_MEMO_SIZE)
_RUN_IDENTITIES = _Memo(256)
_GROUND_TRUTHS = _Memo(2)
_MEAN_PIXELS = _Memo(16)


def clear_memos() -> None:
    """Forget the memoised encoders, runs, ground truth and weight digests of this process.

    The next request rebuilds them (checking every fingerprint again); the disk cache is
    untouched. Memos already drop stale runs by themselves; call this after replacing an
    encoder's weights in place, or to free memory.

    Example:
        >>> clear_memos()
    """
    for memo in (_ENCODERS, _RUNS, _RUN_IDENTITIES, _GROUND_TRUTHS, _MEAN_PIXELS):
        memo.clear()
    _WEIGHT_DIGESTS.clear()


def _file_stamp(path: Path) -> tuple[Any, ...]:
    try:
        st = path.stat()
    except OSError:
        return (str(path),)
    return (str(path), st.st_mtime_ns, st.st_size)


def _dir_stamp(folder: Path) -> tuple[Any, ...]:
    """Stamps of a folder's files (not recursive)."""
    try:
        files = sorted(p for p in Path(folder).iterdir() if p.is_file())
    except OSError:
        return (str(folder),)
    return tuple(_file_stamp(p) for p in files)


_RUN_FILES = ("run.json", "config.yaml", "metrics.json", "model.safetensors")


def _run_stamp(run: Any) -> tuple[Any, ...]:
    """What a memoised run depends on: its files, its feature files and its dataset's files."""
    parts: list[Any] = [_file_stamp(run.path / n) for n in _RUN_FILES]
    for _, feat in sorted(run.features.items()):
        parts += [_file_stamp(Path(feat.path)), _file_stamp(Path(feat.path).parent
                                                            / "manifest.json")]
    if run.dataset.path is not None:
        parts.append(_dir_stamp(Path(run.dataset.path)))
    return tuple(parts)


def _open_run(path: Path, device: str | None = None) -> Any:  # -> Run
    """``Run.load`` through the run memo, with dataset and features loaded (and checked)."""
    from befa_viz.train import Run

    key = (str(Path(path).resolve()), device)
    hit = _RUNS.get(key)
    if hit is not None:
        run, stamp = hit
        if _run_stamp(run) == stamp:
            return run
        log.debug("Run %s changed on disk; reloading it", run.name)
    run = Run.load(path, device=device)
    _ = run.dataset, run.features  # fingerprint checks happen here, and the stamp covers them
    _RUNS.put(key, (run, _run_stamp(run)))
    return run


def _run_identity(path: Path) -> dict[str, Any]:
    """A run folder's config identity (memoised by the stat of its config and run.json)."""
    from befa_viz.train import Run

    key = (str(Path(path).resolve()), _file_stamp(path / "config.yaml"),
           _file_stamp(path / "run.json"))
    hit = _RUN_IDENTITIES.get(key)
    if hit is None:
        hit = _RUN_IDENTITIES.put(key, Run.load(path).config.identity())
    return dict(hit)


_WEIGHT_DIGESTS: dict[tuple[str, int, int], str] = {}


def _weights_digest(run: Any) -> str:
    """Digest of the run's ``model.safetensors`` as it is on disk now (memoised by mtime/size).

    The cache key uses this rather than the digest recorded at training time, so weights
    changed in place (a resumed run, a replaced file) never get an old map.
    """
    import hashlib

    from befa_viz.errors import DataError

    path = run.path / "model.safetensors"
    if not path.is_file():
        raise DataError(f"Run {run.name} has no model.safetensors (status {run.status!r}); "
                        "resume or retrain it.")
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _WEIGHT_DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _WEIGHT_DIGESTS[key] = h.hexdigest()[:16]
    return _WEIGHT_DIGESTS[key]
