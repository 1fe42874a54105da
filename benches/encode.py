"""Encoding throughput: full pipeline vs pure model forward (MobileNetV2 posters, MiniLM texts).

Reads N MovieLens-100k items straight from ``../shared/data/movielens-100k-posters`` (posters and
``items.csv`` overviews; nothing is copied) and, for 1 and 2 torch threads, measures

* **pipeline**: ``encode_catalog`` end to end (JPEG decode, resize, normalise / tokenise,
  forward, chunk files and the final ``.npy`` + manifest in a temporary folder), for each batch
  loader (``thread``: decoding in a background thread, ``dataloader``: a torch DataLoader worker
  process, ``sync``: no overlap);
* **forward**: the model alone on the same batches, prepared beforehand;

and prints items/s and pipeline / forward, both in wall time and in CPU time of the process
(robust when other jobs share the cores). Forward and pipeline runs alternate; figures are
medians over ``--repeats`` rounds (the DataLoader variant runs once).

    .venv/bin/python benches/encode.py [--n 256] [--threads 1 2] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from befa_viz.data.types import Catalog  # noqa: E402
from befa_viz.encoders import create_encoder  # noqa: E402
from befa_viz.encoders.store import _chunks, _plan_jobs, encode_catalog  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "movielens-100k-posters"


def movielens_catalog(n: int) -> Catalog:
    """First ``n`` MovieLens items that have both a poster and an overview."""
    if not DATA.is_dir():
        sys.exit(f"shared data not found at {DATA}")
    items = pd.read_csv(DATA / "items.csv").drop_duplicates("movie_id")
    items = items[items["overview"].fillna("").str.strip() != ""]
    items = items[[(DATA / "posters" / f"{m}.jpg").is_file() for m in items["movie_id"]]]
    items = items.head(n)
    return Catalog([str(m) for m in items["movie_id"]], items["title"].tolist(),
                   items["overview"].astype(str).tolist(),
                   [str(DATA / "posters" / f"{m}.jpg") for m in items["movie_id"]])


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``fn()``."""
    c, t = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def pure_forward(enc, batches: list[dict[str, torch.Tensor]]) -> None:
    """The model alone on prepared batches."""
    with torch.inference_mode():
        for b in batches:
            if "pixels" in b:
                enc(b["pixels"])
            else:
                enc(b["input_ids"], b["attention_mask"])


def pipeline(cat: Catalog, enc, batch_size: int, loader: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        encode_catalog(cat, enc, dataset_fingerprint="bench", out_dir=d, batch_size=batch_size,
                       loader=loader)  # type: ignore[arg-type]  # a valid literal


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--loaders", nargs="+", default=["thread", "dataloader", "sync"])
    args = ap.parse_args()

    cat = movielens_catalog(args.n)
    n = len(cat)
    print(f"{n} MovieLens items, batch {args.batch_size}, median of {args.repeats}; "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, load average "
          f"{os.getloadavg()[0]:.1f} at start")
    encoders = {"MobileNetV2": create_encoder("torchvision:mobilenet_v2"),
                "MiniLM": create_encoder("hf:minilm")}
    # the very batches encode_catalog forms (texts grouped by length within a chunk)
    ranges = _chunks(n, 512)
    todo = list(range(len(ranges)))
    img_jobs = _plan_jobs(ranges, todo, args.batch_size, None)
    txt_jobs = _plan_jobs(ranges, todo, args.batch_size, list(cat.texts))
    prepared = {
        "MobileNetV2": [{"pixels": encoders["MobileNetV2"].load_pixels([cat.image(i) for i in b])}
                        for _, b in img_jobs],
        "MiniLM": [encoders["MiniLM"].tokenize([cat.texts[i] for i in b]) for _, b in txt_jobs],
    }
    for enc in encoders.values():
        enc.fingerprint()  # weights digest computed once, outside the timings

    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, enc in encoders.items():
            pure_forward(enc, prepared[name][:1])  # warm-up
            runs: dict[str, list[tuple[float, float, float, float]]] = {}
            for r in range(args.repeats):
                # forward and pipelines back to back, so each ratio compares runs that saw
                # about the same load on a shared machine
                fw, fc = _timed(lambda enc=enc, name=name: pure_forward(enc, prepared[name]))
                for loader in args.loaders:
                    if loader == "dataloader" and r > 0:
                        continue  # one run is enough to see it is the slowest here
                    pw, pc = _timed(lambda enc=enc, loader=loader: pipeline(
                        cat, enc, args.batch_size, loader))
                    runs.setdefault(loader, []).append((fw, fc, pw, pc))
            for loader, rs in runs.items():
                a = np.array(rs)  # [repeats, (fwd wall, fwd cpu, pipe wall, pipe cpu)]
                med = np.median(a, axis=0)
                wall_ratio = float(np.median(a[:, 0] / a[:, 2]))
                cpu_ratio = float(np.median(a[:, 1] / a[:, 3]))
                row = (threads, name, loader, n / med[2], n / med[0], wall_ratio,
                       n / med[3], n / med[1], cpu_ratio, len(rs))
                rows.append(row)
                print(f"  threads={threads} {name:11s} {loader:10s} wall: pipeline "
                      f"{row[3]:6.1f}/s forward {row[4]:6.1f}/s ratio {wall_ratio:5.0%} | "
                      f"CPU: pipeline {row[6]:6.1f}/s forward {row[7]:6.1f}/s ratio "
                      f"{cpu_ratio:5.0%} (runs {len(rs)})", flush=True)

    print("\n| threads | encoder | loader | wall pipeline/s | wall forward/s | wall ratio "
          "| CPU pipeline/s | CPU forward/s | CPU ratio | runs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for t, name, loader, p, f, r, pc, fc, rc, k in rows:
        print(f"| {t} | {name} | {loader} | {p:.1f} | {f:.1f} | {r:.0%} | {pc:.1f} | {fc:.1f} "
              f"| {rc:.0%} | {k} |")
    print("\nCPU figures are items per CPU-second of this process (all its threads); a "
          "DataLoader worker's CPU time is not included, so its CPU ratio is flattering.")
    print(f"\nload average at end {os.getloadavg()[0]:.1f} (the machine may be shared)")


if __name__ == "__main__":
    main()
