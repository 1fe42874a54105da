"""Item switch in the explorer: ``pipeline.explain_item`` on a warm attribution cache.

Builds (or reuses) a small workspace: the synthetic shop (``--items`` products, ``--users``
users, 10–20 interactions each), encoded with ``torchvision:mobilenet_v2`` (real ImageNet
weights, see ``make weights``) and ``hf:minilm``, and two VBPR runs without / with the BeFA
adapter (``--epochs`` epochs, same seed, so they pair up). ``--toy`` uses
``befa_viz.testing.toy_workspace()`` instead (random tiny encoders; seconds to build).

Then, for ``--explain`` items with training users (the explorer's defaults: target
``content_score``, ``ig`` with ``--steps`` steps, blur baseline, with/without pair):

* **cold**: the first request per item (maps, relevance map and scores computed and cached);
* **warm, fresh state**: the same items again after ``pipeline.clear_memos()`` (an explorer
  that has just started: disk cache warm, nothing in memory), per item;
* **warm, memo**: the same items again with the in-process memos (encoders, runs) kept, i.e.
  the item switch of an explorer that has been open a while.

Each figure is the median of ``--repeats`` calls (cold: one call per item). The attribution
cache is the workspace's, emptied first unless ``--keep-cache``. One torch thread.

    .venv/bin/python benches/item_switch.py [--workspace DIR] [--toy] [--items 60]
        [--users 60] [--epochs 2] [--explain 3] [--steps 16] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from befa_viz import pipeline  # noqa: E402
from befa_viz.workspace import Workspace  # noqa: E402


def build_workspace(root: Path, n_items: int, n_users: int, epochs: int) -> Workspace:
    """The shop workspace (each step is a no-op when its output is already there)."""
    ws = Workspace(root)
    t = time.perf_counter()
    pipeline.synth_dataset(ws, n_items=n_items, n_users=n_users,
                           interactions_per_user=(10, 20))
    pipeline.encode_dataset(ws, "shop", image_encoder="torchvision:mobilenet_v2",
                            text_encoder="hf:minilm")
    have = {json.loads((p / "run.json").read_text()).get("adapter") for p in ws.run_dirs()}
    for adapter in ("none", "befa"):
        if adapter not in have:
            pipeline.train_model(ws, model="vbpr", adapter=adapter, dataset="shop",
                                 epochs=epochs, seed=999)
    print(f"workspace {root} ready in {time.perf_counter() - t:.1f} s")
    return ws


def pick_items(ws: Workspace, n: int) -> list[str]:
    """``n`` items with training users, evenly spaced over the catalog."""
    run = pipeline.load_run(ws, ws.run_dirs()[0])
    ds = run.dataset
    users = np.bincount(ds.interactions.train().item_idx, minlength=ds.n_items)
    pool = [i for i in range(ds.n_items) if users[i] > 0 and ds.catalog.has_image(i)]
    pick = np.linspace(0, len(pool) - 1, n).round().astype(int)
    return [ds.catalog.item_ids[pool[j]] for j in pick]


def clear_memos() -> None:
    clear = getattr(pipeline, "clear_memos", None)  # absent before the memos existed
    if clear is not None:
        clear()


def timed(ws: Workspace, item: str, steps: int) -> tuple[float, pipeline.ItemExplanation]:
    t = time.perf_counter()
    e = pipeline.explain_item(item, workspace=ws, n_steps=steps)
    return time.perf_counter() - t, e


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workspace", type=Path,
                    default=Path(tempfile.gettempdir()) / "befa-bench-item-switch")
    ap.add_argument("--toy", action="store_true", help="toy workspace (tiny random encoders)")
    ap.add_argument("--items", type=int, default=60)
    ap.add_argument("--users", type=int, default=60)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--explain", type=int, default=3, help="items explained")
    ap.add_argument("--steps", type=int, default=16, help="IG steps (the explorer's default)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep-cache", action="store_true", help="do not empty the cache first")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # IG completeness / AUC warnings: not what is timed here

    if args.toy:
        from befa_viz.testing import toy_workspace

        ws = toy_workspace(args.workspace / "toy")
    else:
        ws = build_workspace(args.workspace, args.items, args.users, args.epochs)
    if not args.keep_cache:
        shutil.rmtree(ws.cache().root / "attribution", ignore_errors=True)
        shutil.rmtree(ws.cache().root / "attribution_scores", ignore_errors=True)
    items = pick_items(ws, args.explain)
    clear_memos()

    out: dict[str, dict[str, float]] = {"cold": {}, "warm_fresh": {}, "warm_memo": {}}
    for item in items:
        out["cold"][item], e = timed(ws, item, args.steps)
        print(f"cold  {item}: {out['cold'][item]:6.2f} s  cached={e.cached}  "
              f"deletion_auc={[e.scores[v].get('deletion_auc') for v in e.variants]}")
    for item in items:
        fresh, memo = [], []
        for _ in range(args.repeats):
            clear_memos()
            dt, e = timed(ws, item, args.steps)
            fresh.append(dt)
            assert all(e.cached.values()), e.cached
        for _ in range(args.repeats):
            dt, _ = timed(ws, item, args.steps)
            memo.append(dt)
        out["warm_fresh"][item] = statistics.median(fresh)
        out["warm_memo"][item] = statistics.median(memo)
        print(f"warm  {item}: fresh state {out['warm_fresh'][item]:6.3f} s   "
              f"memo {out['warm_memo'][item]:6.3f} s   (median of {args.repeats})")
    summary = {k: statistics.median(v.values()) for k, v in out.items()}
    print("median over items: " + ", ".join(f"{k} {v:.3f} s" for k, v in summary.items()))
    if args.json:
        args.json.write_text(json.dumps({"per_item": out, "median": summary,
                                         "workspace": str(ws.root), "steps": args.steps,
                                         "toy": args.toy}, indent=2))


if __name__ == "__main__":
    main()
