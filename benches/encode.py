"""Encoding throughput: full pipeline vs pure model forward (MobileNetV2 posters, MiniLM texts).

Reads N MovieLens-100k items straight from ``../shared/data/movielens-100k-posters`` (posters and
``items.csv`` overviews; nothing is copied) and, for 1 and 2 torch threads, measures

* **pipeline**: ``encode_catalog`` end to end (JPEG decode, resize, normalise / tokenise,
  forward, chunk files and the final ``.npy`` + manifest in a temporary folder), for each batch
  loader (``thread``: decoding in a background thread, ``dataloader``: a torch DataLoader worker
  process, ``sync``: no overlap);
* **forward**: the model alone on the same batches, prepared beforehand;

and prints items/s and pipeline / forward. Each figure is the best of ``--repeats`` runs.

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


def pure_forward(enc, batches: list[dict[str, torch.Tensor]]) -> float:
    """Seconds for the model alone on prepared batches."""
    t = time.perf_counter()
    with torch.inference_mode():
        for b in batches:
            if "pixels" in b:
                enc(b["pixels"])
            else:
                enc(b["input_ids"], b["attention_mask"])
    return time.perf_counter() - t


def pipeline(cat: Catalog, enc, batch_size: int, loader: str) -> float:
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        encode_catalog(cat, enc, dataset_fingerprint="bench", out_dir=d, batch_size=batch_size,
                       loader=loader)  # type: ignore[arg-type]  # a valid literal
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--loaders", nargs="+", default=["thread", "dataloader", "sync"])
    args = ap.parse_args()

    cat = movielens_catalog(args.n)
    n = len(cat)
    print(f"{n} MovieLens items, batch {args.batch_size}, best of {args.repeats}; "
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
            fwd = min(pure_forward(enc, prepared[name]) for _ in range(args.repeats))
            for loader in args.loaders:
                reps = args.repeats if loader == "thread" else 1
                pipe = min(pipeline(cat, enc, args.batch_size, loader) for _ in range(reps))
                rows.append((threads, name, loader, n / pipe, n / fwd, fwd / pipe))
                print(f"  threads={threads} {name:11s} {loader:10s} pipeline {n / pipe:7.1f}/s"
                      f"  forward {n / fwd:7.1f}/s  ratio {fwd / pipe:5.1%}", flush=True)

    print("\n| threads | encoder | loader | pipeline items/s | forward items/s | ratio |")
    print("|---|---|---|---|---|---|")
    for threads, name, loader, p, f, r in rows:
        print(f"| {threads} | {name} | {loader} | {p:.1f} | {f:.1f} | {r:.0%} |")
    print(f"\nload average at end {os.getloadavg()[0]:.1f} (the machine may be shared)")


if __name__ == "__main__":
    main()
