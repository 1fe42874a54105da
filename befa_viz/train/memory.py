"""Keep freed tensor memory in the process so that training batches reuse it.

Every training batch allocates and frees the same large temporaries (propagated embeddings,
gathered feature rows, the gradient of a fine-tuned feature table: up to 115 MB each at
Amazon-Baby scale). With glibc's default settings, allocations above its mmap threshold
(at most 32 MB) are returned to the operating system when freed and every page is faulted in
and zeroed again by the kernel on the next batch, and the top of the heap is trimmed the same
way: on two CPU cores that was half of LightGCN's batch time. :func:`retain_freed_memory` raises
glibc's mmap and trim thresholds (``mallopt``) so that freed blocks stay in the heap and are
reused, as jemalloc or tcmalloc (which PyTorch's CPU performance guide recommends) do by
design. The cost: the process keeps its peak heap until it exits instead of shrinking.

It changes no number a model computes. It is a no-op without glibc (macOS, Windows, musl),
and with ``BEFA_VIZ_RETAIN_FREED_MEMORY=0`` in the environment.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

__all__ = ["retain_freed_memory"]

log = logging.getLogger(__name__)

#: ``mallopt`` parameters (glibc's ``malloc.h``).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap and are reused; larger ones are still mmapped.
MMAP_THRESHOLD = 1 << 30
#: Free memory at the top of the heap kept before it is returned to the system.
TRIM_THRESHOLD = 1 << 30
_ENV = "BEFA_VIZ_RETAIN_FREED_MEMORY"
_applied: bool | None = None


def retain_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once); ``True`` if applied.

    Called by :func:`befa_viz.train.fit`. Returns ``False`` (and changes nothing) without
    glibc or when ``BEFA_VIZ_RETAIN_FREED_MEMORY=0``.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(_ENV, "1").strip() == "0":
        log.info("%s=0: glibc's malloc settings left as they are.", _ENV)
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        mallopt = None
    if mallopt is None or not hasattr(libc, "gnu_get_libc_version"):
        log.debug("No glibc mallopt in this process: freed memory handling left as it is.")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    _applied = ok
    log.info("glibc malloc: freed blocks up to %d MB are kept for reuse (%s).",
             MMAP_THRESHOLD >> 20, "applied" if ok else "mallopt refused")
    return ok
