"""DDP vs single-process training on a toy: metrics and seconds per epoch.

Trains the same config (VBPR + BeFA on ``toy_dataset(n_users, n_items)`` with ``tiny:cnn`` /
``tiny:text`` features) once in this process and once with ``--devices 2`` (gloo), for the
defaults (MMRec's EmbLoss ``reg_weight=1``, adapter dropout 0.1: not batch-decomposable, so
the runs differ) and for a decomposable objective (``reg_weight=0``, dropout 0: the runs
should agree to float precision). Everything is written under ``--out``.

    PYTHONPATH=. .venv/bin/python benches/ddp.py [--epochs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=60)
    p.add_argument("--items", type=int, default=40)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", type=Path, default=Path("/tmp/befa-ddp-bench"))
    args = p.parse_args()
    torch.set_num_threads(1)
    from befa_viz.pipeline import encode_dataset, train_model
    from befa_viz.testing import toy_dataset
    from befa_viz.workspace import Workspace

    report: dict = {"uptime": os.popen("uptime").read().strip()}
    for label, extra in (("defaults", []),
                         ("decomposable", ["model_params.reg_weight=0", "adapter_dropout=0"])):
        for devices in (1, 2):
            ws = Workspace(args.out / f"{label}-{devices}")
            if not (ws.dataset_dir("toy") / "dataset.json").is_file():
                toy_dataset(args.users, args.items, folder=ws.root / "img").save(
                    ws.dataset_dir("toy"))
            encode_dataset(ws, "toy", image_encoder="tiny:cnn", text_encoder="tiny:text")
            t = time.perf_counter()
            run = train_model(ws, model="vbpr", adapter="befa", dataset="toy",
                              epochs=args.epochs, overwrite=True, devices=devices,
                              overrides=[f"batch_size={args.batch_size}", "eval_every=1",
                                         "patience=1000", *extra])
            hist = run.metrics["history"]
            report[f"{label}/devices={devices}"] = {
                "wall_seconds": round(time.perf_counter() - t, 2),
                "train_seconds_per_epoch": round(
                    sum(h["seconds"] for h in hist) / len(hist), 4),
                "best_epoch": run.metrics["best_epoch"],
                "final_loss": hist[-1]["loss"],
                "test": {k: run.test_metrics[k] for k in ("Recall@20", "NDCG@20")},
            }
            print(label, devices, json.dumps(report[f"{label}/devices={devices}"]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ddp.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
