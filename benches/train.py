"""Training and evaluation speed at Amazon-Baby scale, every backbone, with and without BeFA.

Synthetic data of the real shape: 19,445 users, 7,050 items, 160,792 interactions drawn from
power-law user activity and item popularity (split 80/10/10 per user), random features of the
real widths (4,096-d image, 384-d text). Each (backbone, adapter) pair runs in its own
subprocess, so the peak RSS (``resource.getrusage``) is that pair's alone; it includes the
synthetic data (``base RSS MB``: after imports and data, before the model). One torch thread
unless ``--threads`` says otherwise (MMRec's figures do not record theirs; torch's default on
a 2-core machine is 2).

The timed code is the library's own: :func:`befa_viz.train.fit` for ``--epochs`` epochs with
one validation pass at the end, then a test pass. ``epoch s`` is the mean training time per
epoch (sampling, forward, backward, Adam), ``eval s`` one full-ranking validation pass over all
users (batches of 2,048 users), ``build s`` model construction (graphs, kNN). ``fit`` runs
fused Adam and keeps freed tensor memory for reuse (glibc; ``BEFA_VIZ_RETAIN_FREED_MEMORY=0``
in the environment measures without it, see :mod:`befa_viz.train.memory`).

``--train-features`` fine-tunes the raw feature tables where the backbone's reference
implementation does (FREEDOM, BM3, MGCN, LATTICE, lightgcn_knn; the others run as they are),
which is what MMRec times; the table then gets MMRec's s/epoch on a 2-core machine at the
same Baby-scale data (``MMREC_S_PER_EPOCH``) and our ratio to it.

Usage::

    python benches/train.py                       # every registered backbone
    python benches/train.py --models vbpr,freedom --epochs 2 --out bench.json
    python benches/train.py --models freedom,bm3,vbpr,lightgcn,mgcn --adapters none \
        --train-features
    git worktree add /tmp/base 739ac7d          # paired against an older commit:
    python benches/train.py --models lightgcn,freedom --adapters none --train-features \
        --baseline /tmp/base --repeats 2

On a machine shared with other work the seconds move with the load; ``--baseline`` runs the
other checkout's bench (its own library first on ``PYTHONPATH``) and this one back to back,
in alternating order, and reports the ratio of their mean epoch times.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

#: MMRec's seconds per training epoch on Amazon-Baby, measured on a 2-core machine (issue 12).
MMREC_S_PER_EPOCH = {"freedom": 19.5, "bm3": 18.6, "vbpr": 5.2, "lightgcn": 2.4, "mgcn": 27.0}


def synthetic(n_users: int, n_items: int, n_inter: int, seed: int):
    """Power-law interactions, unique (user, item) pairs, per-user 80/10/10 split."""
    from befa_viz.data.types import Catalog, Interactions, RecDataset

    rng = np.random.default_rng(seed)
    user_w = rng.pareto(1.5, n_users) + 1.0  # heavy-tailed activity
    item_w = 1.0 / np.arange(1, n_items + 1) ** 0.8  # Zipf-like popularity
    item_w = item_w[rng.permutation(n_items)]
    keys = np.empty(0, dtype=np.int64)
    while len(keys) < n_inter:
        m = int((n_inter - len(keys)) * 1.3) + 1000
        u = rng.choice(n_users, m, p=user_w / user_w.sum())
        i = rng.choice(n_items, m, p=item_w / item_w.sum())
        keys = np.unique(np.concatenate([keys, u.astype(np.int64) * n_items + i]))
    keys = rng.choice(keys, n_inter, replace=False)
    users, items = keys // n_items, keys % n_items
    # split: position of each interaction in a random order within its user
    order = np.lexsort((rng.random(n_inter), users))
    deg = np.bincount(users, minlength=n_users)
    start = np.concatenate([[0], np.cumsum(deg)[:-1]])
    pos = np.empty(n_inter, dtype=np.int64)
    pos[order] = np.arange(n_inter) - start[users[order]]
    frac = pos / np.maximum(deg[users], 1)
    split = np.where(frac < 0.8, 0, np.where(frac < 0.9, 1, 2)).astype(np.int8)
    ids = [str(i) for i in range(n_items)]
    cat = Catalog(ids, [""] * n_items, [""] * n_items)
    return RecDataset("baby-scale", cat, Interactions(users, items, split, n_users, n_items))


def run_one(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from befa_viz.models import MODELS
    from befa_viz.train import TrainConfig, build_model, fit

    t0 = time.perf_counter()
    ds = synthetic(args.users, args.items, args.interactions, args.seed)
    rng = np.random.default_rng(1)
    feats = {"image": rng.standard_normal((args.items, args.image_dim), dtype=np.float32),
             "text": rng.standard_normal((args.items, args.text_dim), dtype=np.float32)}
    data_s = time.perf_counter() - t0
    data_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    trainable = args.train_features and MODELS.get(args.single[0]).supports_train_features
    cfg = TrainConfig(model=args.single[0], adapter=args.single[1], epochs=args.epochs,
                      eval_every=args.epochs + 1, patience=10**6, seed=args.seed,
                      train_features=trainable)
    t0 = time.perf_counter()
    model = build_model(cfg, ds, feats)
    build_s = time.perf_counter() - t0
    res = fit(model, ds, cfg)
    epochs = [h["seconds"] for h in res.state.history]
    return {
        "model": cfg.model, "adapter": cfg.adapter, "train_features": trainable,
        "epochs": len(epochs),
        "epoch_s": float(np.mean(epochs)), "eval_s": res.state.history[-1]["eval_seconds"],
        "build_s": build_s, "data_s": data_s, "data_mb": data_mb,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "loss": res.state.history[-1]["loss"], "valid_recall20": res.state.best_valid["Recall@20"],
        "n_train": int((ds.interactions.split == 0).sum()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default=None, help="Comma-separated backbones (default: all).")
    p.add_argument("--adapters", default="none,befa")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--users", type=int, default=19445)
    p.add_argument("--items", type=int, default=7050)
    p.add_argument("--interactions", type=int, default=160792)
    p.add_argument("--image-dim", type=int, default=4096)
    p.add_argument("--text-dim", type=int, default=384)
    p.add_argument("--seed", type=int, default=999)
    p.add_argument("--threads", type=int, default=1, help="torch / OpenMP / MKL threads.")
    p.add_argument("--out", type=Path, default=None, help="Write the rows as JSON here.")
    p.add_argument("--train-features", action="store_true",
                   help="Fine-tune the feature tables where the reference implementation does.")
    p.add_argument("--baseline", type=Path, default=None,
                   help="Another checkout (e.g. 'git worktree add /tmp/base <commit>'): run its "
                        "benches/train.py and this one back to back and report the ratio.")
    p.add_argument("--repeats", type=int, default=2,
                   help="Runs per side with --baseline; the order alternates (ABBA).")
    p.add_argument("--single", nargs=2, metavar=("MODEL", "ADAPTER"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.single:
        print(json.dumps(run_one(args)))
        return

    from befa_viz.models import MODELS

    models = args.models.split(",") if args.models else MODELS.names()
    if args.baseline is not None and not (args.baseline / "benches" / "train.py").is_file():
        p.error(f"--baseline {args.baseline} has no benches/train.py; give a checkout of this "
                "repository, e.g. 'git worktree add /tmp/base <commit>'.")
    here = Path(__file__).resolve().parents[1]
    rows, paired = [], []
    for name in models:
        for adapter in args.adapters.split(","):
            if adapter != "none" and not MODELS.get(name).multimodal:
                continue
            if args.baseline is None:
                row = _run_single(here, name, adapter, args)
                if row is not None:
                    rows.append(row)
                continue
            runs: dict[str, list[float]] = {"baseline": [], "this": []}
            for rep in range(args.repeats):  # alternate the order: ABBA...
                sides = ["baseline", "this"] if rep % 2 == 0 else ["this", "baseline"]
                for side in sides:
                    row = _run_single(args.baseline if side == "baseline" else here, name,
                                      adapter, args, label=side)
                    if row is not None:
                        runs[side].append(row["epoch_s"])
                        if side == "this" and rep == 0:
                            rows.append(row)
            if runs["baseline"] and runs["this"]:
                paired.append((name, adapter, runs))
    print(f"\n{args.users} users, {args.items} items, {args.interactions} interactions "
          f"({rows[0]['n_train'] if rows else '?'} train), features {args.image_dim}-d image + "
          f"{args.text_dim}-d text, {args.threads} torch thread(s), {args.epochs} epoch(s)\n")
    print("| model | adapter | trained features | s / epoch | MMRec s / epoch | ratio "
          "| s / full eval | build s | peak RSS MB | base RSS MB |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    baby = (args.users, args.items, args.interactions) == (19445, 7050, 160792)
    for r in rows:  # MMRec's figures are for the Baby-scale defaults only
        mmrec = MMREC_S_PER_EPOCH.get(r["model"]) if baby else None
        ratio = f"{r['epoch_s'] / mmrec:.2f}×" if mmrec else "-"
        print(f"| {r['model']} | {r['adapter']} | {'yes' if r['train_features'] else 'no'} | "
              f"{r['epoch_s']:.2f} | {mmrec or '-'} | {ratio} | {r['eval_s']:.2f} | "
              f"{r['build_s']:.2f} | {r['peak_mb']:.0f} | {r['data_mb']:.0f} |")
    if paired:
        print(f"\nPaired with {args.baseline} (runs back to back, order alternating; the "
              "ratio is what a shared machine's load cancels out of):\n")
        print("| model | adapter | baseline s / epoch | this s / epoch | baseline ÷ this |")
        print("|---|---|---|---|---:|")
        for name, adapter, runs in paired:
            ratio = float(np.mean(runs["baseline"]) / np.mean(runs["this"]))
            print(f"| {name} | {adapter} | {', '.join(f'{v:.2f}' for v in runs['baseline'])} | "
                  f"{', '.join(f'{v:.2f}' for v in runs['this'])} | {ratio:.2f}× |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


def _run_single(tree: Path, name: str, adapter: str, args: argparse.Namespace,
                label: str = "") -> dict | None:
    """One (backbone, adapter) pair in a fresh process, with ``tree``'s bench and library."""
    cmd = [sys.executable, str(tree / "benches" / "train.py"), "--single", name, adapter,
           "--epochs", str(args.epochs), "--users", str(args.users), "--items", str(args.items),
           "--interactions", str(args.interactions), "--image-dim", str(args.image_dim),
           "--text-dim", str(args.text_dim), "--seed", str(args.seed),
           *(["--threads", str(args.threads)] if args.threads != 1 else []),
           *(["--train-features"] if args.train_features else [])]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree)
    if out.returncode != 0:
        print(f"{name}/{adapter} {label} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    row = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{name:9} {adapter:5} {label:8} epoch {row['epoch_s']:7.2f} s  eval "
          f"{row['eval_s']:6.2f} s  build {row['build_s']:6.2f} s  peak {row['peak_mb']:7.0f} MB",
          flush=True)
    return dict(row)


if __name__ == "__main__":
    main()
