"""Representation collapse over training: validation Recall@20 and item spread per epoch.

Trains each backbone on MovieLens-100k posters (the workspace that
``benches/movielens_quality.py`` builds) for a fixed number of epochs without early stopping,
and plots, per epoch, validation Recall@20 next to the mean pairwise cosine and effective rank
of the final item representations (recorded by the trainer at every evaluation). BM3's
negative-free objective lets items drift onto one direction on this data; BPR-trained
backbones keep them spread. The figure is written outside the repository (it is derived from
MovieLens, whose licence forbids redistribution).

Usage::

    python benches/collapse.py                                  # bm3, bm3+befa, lightgcn
    python benches/collapse.py --runs bm3:none:model_params.cl_weight=0.1 --epochs 100
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens-100k-posters"
DEFAULT_RUNS = ("bm3:none", "bm3:none:model_params.cl_weight=0.1", "bm3:befa", "lightgcn:none",
                "vbpr:none:model_params.reg_weight=1.0")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--workspace", type=Path, default=Path("/tmp/befa-movielens-quality"))
    p.add_argument("--runs", nargs="+", default=list(DEFAULT_RUNS),
                   help="model:adapter[:key=value,...] per curve (lr 1e-3, seed 999).")
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--out", type=Path, default=Path("/tmp/befa-collapse.png"))
    args = p.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    torch.set_num_threads(1)
    from befa_viz.pipeline import Workspace, encode_dataset, import_dataset, train_model

    if not args.data.is_dir():
        raise SystemExit(f"MovieLens posters not found at {args.data}")
    ws = Workspace(args.workspace)
    import_dataset("movielens", args.data, workspace=ws, name="movielens")
    encode_dataset(ws, "movielens", progress=False)

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
    print("| run | best valid R@20 (epoch) | test R@20 at best | item cosine at best / at end "
          "| effective rank at best / at end | s |")
    print("|---|---:|---:|---:|---:|---:|")
    for spec in args.runs:
        model, adapter, *rest = spec.split(":")
        overrides = [kv for part in rest for kv in part.split(",") if kv]
        t0 = time.perf_counter()
        run = train_model(ws, model=model, adapter=adapter, dataset="movielens",
                          epochs=args.epochs, seed=999, resume=True,
                          overrides=["lr=0.001", f"patience={args.epochs}", *overrides])
        hist = [h for h in run.history if "valid" in h and "item_mean_cosine" in h]
        if not hist:
            raise SystemExit(f"{run.name} has no per-epoch spread (trained by an older version); "
                             "delete it and rerun.")
        ep = [h["epoch"] for h in hist]
        label = spec.replace("model_params.", "")
        axes[0].plot(ep, [h["valid"]["Recall@20"] for h in hist], label=label)
        axes[1].plot(ep, [h["item_mean_cosine"] for h in hist], label=label)
        axes[2].plot(ep, [h["item_effective_rank"] for h in hist], label=label)
        best = next(h for h in hist if h["epoch"] == run.metrics["best_epoch"])
        print(f"| {label} | {best['valid']['Recall@20']:.4f} ({best['epoch']}) | "
              f"{run.test_metrics['Recall@20']:.4f} | {best['item_mean_cosine']:.2f} / "
              f"{hist[-1]['item_mean_cosine']:.2f} | {best['item_effective_rank']:.1f} / "
              f"{hist[-1]['item_effective_rank']:.1f} | {time.perf_counter() - t0:.0f} |",
              flush=True)
    for ax, title in zip(axes, ("valid Recall@20", "mean pairwise cosine of items",
                                "effective rank of items"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("MovieLens-100k posters, lr 1e-3, seed 999, no early stopping")
    fig.savefig(args.out, dpi=110)
    print(f"figure: {args.out}")


if __name__ == "__main__":
    main()
