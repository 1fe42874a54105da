"""Quality check on real data: every backbone, with and without BeFA, on MovieLens-100k posters.

Imports ``../shared/data/movielens-100k-posters`` into a scratch workspace (outside the repo:
the data's licence forbids redistribution), encodes posters with MobileNetV2 (ImageNet weights)
and overviews with all-MiniLM-L6-v2, trains every registered backbone with the MMRec protocol
(full ranking, train items masked, early stopping on valid Recall@20, test at the best epoch)
and prints test Recall@20 / NDCG@20 next to a most-popular baseline and LightGCN.

Usage::

    python benches/movielens_quality.py                      # all backbones, both variants
    python benches/movielens_quality.py --models vbpr,freedom --epochs 100 --out ml.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens-100k-posters"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--workspace", type=Path, default=Path("/tmp/befa-movielens-quality"))
    p.add_argument("--models", default=None, help="Comma-separated backbones (default: all).")
    p.add_argument("--adapters", default="none,befa")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--patience", type=int, default=20)
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   help="Extra key=value config overrides for every run.")
    p.add_argument("--image-encoder", default="torchvision:mobilenet_v2")
    p.add_argument("--text-encoder", default="hf:minilm")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()

    import torch

    torch.set_num_threads(1)
    from befa_viz.metrics import MostPopular
    from befa_viz.models import MODELS
    from befa_viz.pipeline import Workspace, encode_dataset, import_dataset, train_model
    from befa_viz.train import evaluate

    if not args.data.is_dir():
        raise SystemExit(f"MovieLens posters not found at {args.data}")
    ws = Workspace(args.workspace)
    t0 = time.perf_counter()
    import_dataset("movielens", args.data, workspace=ws, name="movielens")
    ds = ws.load_dataset("movielens")
    enc = encode_dataset(ws, "movielens", image_encoder=args.image_encoder,
                         text_encoder=args.text_encoder, progress=False)
    print(f"dataset: {ds.n_users} users, {ds.n_items} items, {ds.interactions.n_interactions} "
          f"interactions; features "
          + ", ".join(f"{m} {t.encoder_key} {t.dim}-d" for m, t in enc.tables.items())
          + f" ({time.perf_counter() - t0:.0f} s to import + encode)", flush=True)

    pop = evaluate(MostPopular(ds.interactions.train().csr()), ds, "test")
    rows = [{"model": "most-popular", "adapter": "-", "Recall@20": pop["Recall@20"],
             "NDCG@20": pop["NDCG@20"], "valid Recall@20": None, "best_epoch": None,
             "seconds": 0.0, "gate_mean": None}]
    models = args.models.split(",") if args.models else MODELS.names()
    for name in models:
        for adapter in args.adapters.split(","):
            if adapter != "none" and not MODELS.get(name).multimodal:
                continue
            t1 = time.perf_counter()
            run = train_model(ws, model=name, adapter=adapter, dataset="movielens",
                              epochs=args.epochs,
                              overrides=[f"patience={args.patience}", *args.overrides],
                              resume=True)
            gate = [g["mean"] for g in run.gate.values()]
            rows.append({"model": name, "adapter": adapter,
                         "Recall@20": run.test_metrics["Recall@20"],
                         "NDCG@20": run.test_metrics["NDCG@20"],
                         "valid Recall@20": run.valid_metrics["Recall@20"],
                         "best_epoch": run.metrics.get("best_epoch"),
                         "epochs_run": run.metrics.get("epochs_run"),
                         "seconds": time.perf_counter() - t1,
                         "gate_mean": sum(gate) / len(gate) if gate else None,
                         "run": run.name})
            r = rows[-1]
            print(f"{name:9} {adapter:5} test R@20 {r['Recall@20']:.4f} N@20 {r['NDCG@20']:.4f} "
                  f"(best epoch {r['best_epoch']}/{r['epochs_run']}, {r['seconds']:.0f} s)",
                  flush=True)

    lgcn = next((r for r in rows if r["model"] == "lightgcn"), None)
    print("\n| model | adapter | test Recall@20 | test NDCG@20 | valid Recall@20 | best epoch "
          "| gate mean | vs most-pop | vs LightGCN |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        vs_pop = f"{r['Recall@20'] / pop['Recall@20']:.2f}×"
        vs_lg = f"{r['Recall@20'] / lgcn['Recall@20']:.2f}×" if lgcn else "n/a"
        valid = f"{r['valid Recall@20']:.4f}" if r["valid Recall@20"] is not None else "-"
        gate = f"{r['gate_mean']:.3f}" if r["gate_mean"] is not None else "-"
        print(f"| {r['model']} | {r['adapter']} | {r['Recall@20']:.4f} | {r['NDCG@20']:.4f} | "
              f"{valid} | {r['best_epoch'] or '-'} | {gate} | {vs_pop} | {vs_lg} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
