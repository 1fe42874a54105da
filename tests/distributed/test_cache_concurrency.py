"""Cache entries landed by many writers at once (Ray workers) stay complete and readable."""

from __future__ import annotations

import threading

import numpy as np

from befa_viz.cache import Cache


def test_concurrent_writers_of_one_key_leave_one_complete_entry(tmp_path):
    cache = Cache(tmp_path)
    key = cache.key("demo", fingerprints={"x": "1"})
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(k: int) -> None:
        try:
            start.wait()
            for _ in range(25):
                cache.put("demo", key, lambda d: np.save(d / "x.npy", np.arange(4)), {"w": k})
        except BaseException as e:  # collected: the assertion below names it
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    entry = cache.get("demo", key)
    assert entry is not None
    np.testing.assert_array_equal(np.load(entry / "x.npy"), np.arange(4))
    leftovers = [p.name for p in (tmp_path / "demo").iterdir() if p.name != key]
    assert leftovers == []  # no temporary or old folders left behind
