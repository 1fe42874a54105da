"""Aspect-preserving pad vs squash (and crop) on real portrait packshots (the H&M sample).

Reads the first ``--items`` photos (by article id) of ``../shared/data/hm-fashion-sample/images``
(360×540 JPEGs; nothing is copied or written beside the checkout) and measures, with one torch
thread:

* **cost** — ``ImageEncoder.load_pixels`` per image for each resize mode (``squash``, ``pad``
  with the edge-colour and the mean fill, ``crop``) on already-decoded images, median of
  ``--repeats`` passes, next to the JPEG decode and the MobileNetV2 forward pass of the same
  images (what encoding costs anyway);
* **features** — MobileNetV2 (ImageNet weights) pooled features of each mode: per-item cosine
  between modes, and how many of each item's 10 nearest neighbours (cosine, among the
  ``--items`` photos) stay the same (overlap@10), i.e. whether a recommender would see other
  content similarities;
* **the pad fill** — where attributions of the padded photo fall: the share of Grad-CAM mass
  (last conv block, ``content_focus`` target) and of blur-baseline IG mass (``--ig-items``
  photos, ``--ig-steps`` steps) inside the pad, and inside the two 8-px bands straddling the
  seams between photo and pad, for the edge-colour and the mean fill. A pad that draws mass is
  one the CNN responds to.

    .venv/bin/python benches/pad.py [--items 64] [--ig-items 12] [--ig-steps 16]
        [--repeats 3] [--json /tmp/pad.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from befa_viz.attribution import explain  # noqa: E402
from befa_viz.encoders import create_encoder  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hm-fashion-sample"
MODES = {"squash": ("squash", "edge"), "pad_edge": ("pad", "edge"),
         "pad_mean": ("pad", "mean"), "crop": ("crop", "edge")}


def photo_files(n: int) -> list[Path]:
    folder = DATA / "images"
    if not folder.is_dir():
        sys.exit(f"shared data not found at {folder}")
    return sorted(folder.glob("*.jpg"))[:n]


def decode(files: list[Path]) -> tuple[list, float]:
    """Decoded RGB images and the decode time per image (ms)."""
    from PIL import Image

    t0 = time.perf_counter()
    images = []
    for p in files:
        with Image.open(p) as im:
            images.append(im.convert("RGB"))
    return images, 1000 * (time.perf_counter() - t0) / len(files)


def cost(enc, images: list, repeats: int, batch: int = 32) -> float:
    """Median ms per image of load_pixels over all images in batches."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for s in range(0, len(images), batch):
            enc.load_pixels(images[s: s + batch])
        times.append(1000 * (time.perf_counter() - t0) / len(images))
    return statistics.median(times)


@torch.no_grad()
def features(enc, images: list, batch: int = 32) -> tuple[np.ndarray, float]:
    t0, out = 0.0, []
    for s in range(0, len(images), batch):
        x = enc.load_pixels(images[s: s + batch])
        t1 = time.perf_counter()
        out.append(enc(x).numpy())
        t0 += time.perf_counter() - t1
    return np.concatenate(out), 1000 * t0 / len(images)


def _unit(f: np.ndarray) -> np.ndarray:
    return f / np.linalg.norm(f, axis=1, keepdims=True)


def compare(a: np.ndarray, b: np.ndarray, k: int = 10) -> dict:
    ua, ub = _unit(a), _unit(b)
    cos = (ua * ub).sum(axis=1)
    na, nb = ua @ ua.T, ub @ ub.T
    np.fill_diagonal(na, -np.inf)
    np.fill_diagonal(nb, -np.inf)
    ta, tb = np.argsort(-na, axis=1)[:, :k], np.argsort(-nb, axis=1)[:, :k]
    overlap = [len(set(x) & set(y)) / k for x, y in zip(ta, tb, strict=True)]
    return {"cos_mean": float(cos.mean()), "cos_median": float(np.median(cos)),
            "cos_p5": float(np.percentile(cos, 5)), "cos_min": float(cos.min()),
            f"overlap@{k}": float(np.mean(overlap))}


def pad_shares(atts: list) -> dict:
    """Mean share of |map| in the pad, in the seam bands, and the pad's area share."""
    pad, seam, area = [], [], []
    for a in atts:
        v = np.abs(np.asarray(a.values, dtype=np.float64))
        top, left, h, w = a.params["content_box"]
        inside = np.zeros(v.shape, bool)
        inside[top: top + h, left: left + w] = True
        band = np.zeros(v.shape, bool)
        for c in (left, left + w):  # 8 px either side of each seam (portrait: vertical seams)
            band[:, max(0, c - 8): c + 8] = True
        s = v.sum()
        if s <= 0:
            continue
        pad.append(v[~inside].sum() / s)
        seam.append(v[band].sum() / s)
        area.append((~inside).mean())
    return {"pad_mass": float(np.mean(pad)), "pad_area": float(np.mean(area)),
            "seam_mass": float(np.mean(seam)),
            "seam_area": float(band.mean()), "n": len(pad), "per_item_pad": pad}


def sign_p(k: int, n: int) -> float:
    """Two-sided exact sign test of k successes in n."""
    from math import comb

    lo = min(k, n - k)
    return min(1.0, 2 * sum(comb(n, j) for j in range(lo + 1)) / 2.0**n)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--items", type=int, default=64)
    p.add_argument("--ig-items", type=int, default=12)
    p.add_argument("--ig-steps", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=str, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    files = photo_files(args.items)
    images, decode_ms = decode(files)
    sizes = sorted({im.size for im in images})
    print(f"{len(images)} H&M photos, sizes {sizes}; decode {decode_ms:.2f} ms/image", flush=True)
    encs = {name: create_encoder("torchvision:mobilenet_v2", resize=m, pad_fill=f)
            for name, (m, f) in MODES.items()}
    for e in encs.values():
        e.load_pixels(images[:2])  # warm-up
    res: dict = {"items": len(images), "sizes": [list(s) for s in sizes],
                 "decode_ms": decode_ms, "threads": args.threads, "cost_ms": {}}
    for name, e in encs.items():
        res["cost_ms"][name] = cost(e, images, args.repeats)
    feats, fwd = {}, {}
    for name, e in encs.items():
        feats[name], fwd[name] = features(e, images)
    res["forward_ms"] = fwd
    print("load_pixels ms/image: " + ", ".join(f"{k} {v:.2f}" for k, v in res["cost_ms"].items())
          + f"; MobileNetV2 forward {statistics.median(fwd.values()):.1f} ms/image", flush=True)

    res["features"] = {}
    for a, b in (("pad_edge", "squash"), ("pad_mean", "squash"), ("pad_edge", "pad_mean"),
                 ("crop", "squash"), ("pad_edge", "crop")):
        res["features"][f"{a}~{b}"] = c = compare(feats[a], feats[b])
        print(f"features {a} vs {b}: cos mean {c['cos_mean']:.3f} median {c['cos_median']:.3f} "
              f"p5 {c['cos_p5']:.3f} min {c['cos_min']:.3f}; overlap@10 {c['overlap@10']:.2f}",
              flush=True)

    res["fill"] = {}
    for name in ("pad_edge", "pad_mean"):
        e = encs[name]
        t0 = time.perf_counter()
        cams = explain(e, None, images, target="content_focus", method="gradcam")
        t_cam = time.perf_counter() - t0
        t0 = time.perf_counter()
        igs = explain(e, None, images[: args.ig_items], target="content_focus", method="ig",
                      baseline="blur", n_steps=args.ig_steps, internal_batch_size=16)
        t_ig = time.perf_counter() - t0
        res["fill"][name] = {"gradcam": pad_shares(cams), "ig_blur": pad_shares(igs),
                             "gradcam_s": t_cam, "ig_s": t_ig}
        g, i = res["fill"][name]["gradcam"], res["fill"][name]["ig_blur"]
        print(f"{name}: pad area {g['pad_area']:.3f}; Grad-CAM mass in pad {g['pad_mass']:.3f}, "
              f"in seam bands {g['seam_mass']:.3f} (area {g['seam_area']:.3f}); IG-blur "
              f"({i['n']} items) in pad {i['pad_mass']:.3f}, in seam bands {i['seam_mass']:.3f}",
              flush=True)
    for method in ("gradcam", "ig_blur"):
        e_pad = np.asarray(res["fill"]["pad_edge"][method]["per_item_pad"])
        m_pad = np.asarray(res["fill"]["pad_mean"][method]["per_item_pad"])
        wins = int((e_pad < m_pad).sum())
        res["fill"][f"{method}_edge_below_mean"] = [wins, len(e_pad)]
        print(f"{method}: edge fill puts less mass in the pad than mean fill on {wins} of "
              f"{len(e_pad)} photos (sign test p = {sign_p(wins, len(e_pad)):.2g})", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
