"""IG heatmap cost vs the floor of the same forward+backward passes (MovieLens posters).

For each encoder (default MobileNetV2 with its ImageNet weights and open_clip ViT-B-32 with
random weights — timing only), reads MovieLens-100k posters straight from
``../shared/data/movielens-100k-posters/posters`` (92×138, upsampled to the encoder's 224 px;
nothing is copied), builds a randomly initialised VBPR (``dim=64``) over those items and
attributes its ``behaviour_alignment`` target (projection + cosine with the item's ID
embedding) with ``ig`` and a black baseline. It measures

* **seconds per heatmap**: one item per call, at each ``--steps`` (median of ``--repeats``);
* **items/min** for a batch of ``--items`` items in one call at ``--batch-steps``;
* the **floor** for each: the same number of forward+backward passes through encoder and
  target, in the same batch shapes (``internal_batch_size`` examples at most), measured in the
  same run, interleaved with the IG runs so machine load hits both alike;
* **ratio** IG / floor, and the process's **peak RSS** after each encoder;
* with ``--variants``, the same for each IG variant (:mod:`befa_viz.attribution.ig`,
  ``layer_ig``, ``ig_smooth``) at a fixed step count: its floor is the number of
  forward+backward passes the variant needs (``ig_blur_path``: segments × steps;
  ``ig_smooth``: samples × steps; the others: steps), so the ratio is its overhead;
  ``occlusion`` (window S/8, stride S/16) is timed against the same number of *forward*
  passes (one per occluded copy), since it needs no gradient. Each variant runs
  ``--repeats`` times interleaved with its floor (median reported).

    .venv/bin/python benches/attribution.py [--encoders torchvision:mobilenet_v2 clip:ViT-B-32:random]
        [--items 50] [--steps 32 64] [--batch-steps 32] [--internal-batch-size 32]
        [--threads 1] [--repeats 3] [--json out.json]
        [--variants layer_ig ig_similarity ig_region ig_expected ig_blur_path ig_smooth
                    occlusion] [--variant-steps 16] [--variant-items 4] [--variants-only] [--blur]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from befa_viz.attribution import BehaviourAlignmentTarget, attribute  # noqa: E402
from befa_viz.encoders import create_encoder  # noqa: E402
from befa_viz.models import MODELS  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "movielens-100k-posters"


def posters(n: int) -> list:
    """The first ``n`` posters by movie id, as PIL images."""
    from PIL import Image

    folder = DATA / "posters"
    if not folder.is_dir():
        sys.exit(f"shared data not found at {folder}")
    files = sorted(folder.glob("*.jpg"), key=lambda p: int(p.stem))[:n]
    return [Image.open(p).convert("RGB") for p in files]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def floor_seconds(enc, target, pixels: torch.Tensor, n_steps: int, ibs: int) -> float:
    """Forward+backward passes in the batch shapes IG uses (items ≤ ibs per chunk; within a
    chunk of b items, ibs // b steps per pass)."""
    t0 = time.perf_counter()
    n = pixels.shape[0]
    for start in range(0, n, ibs):
        x = pixels[start: start + ibs]
        b = x.shape[0]
        rows = torch.arange(start, start + b)
        per = max(1, ibs // b)
        done = 0
        while done < n_steps:
            k = min(per, n_steps - done)
            xs = x.repeat(k, 1, 1, 1).requires_grad_(True)
            out = target(enc(xs), rows.repeat(k))
            torch.autograd.grad(out.sum(), xs)
            done += k
    return time.perf_counter() - t0


def ig_seconds(enc, target, pixels: torch.Tensor, n_steps: int, ibs: int) -> float:
    t0 = time.perf_counter()
    attribute("ig", enc, target, pixels, n_steps=n_steps, internal_batch_size=ibs,
              baseline="black")
    return time.perf_counter() - t0


def forward_floor_seconds(enc, target, pixels: torch.Tensor, n_passes: int, ibs: int) -> float:
    """Forward passes only (no gradient), ``n_passes`` per item in batches of ``ibs``: the
    floor of occlusion, which only evaluates occluded copies."""
    t0 = time.perf_counter()
    n = pixels.shape[0]
    with torch.no_grad():
        for i in range(n):
            rows = torch.full((ibs,), i)
            done = 0
            while done < n_passes:
                k = min(ibs, n_passes - done)
                target(enc(pixels[i: i + 1].expand(k, -1, -1, -1)), rows[:k])
                done += k
    return time.perf_counter() - t0


def occlusion_windows(size: int, window: int, stride: int) -> int:
    """Occluded copies Captum's Occlusion evaluates per image (plus the unoccluded one)."""
    per_axis = (size - window) // stride + 1
    return per_axis * per_axis + 1


#: Options of each variant at ``steps`` steps, and its passes per item (forward+backward;
#: occlusion: forward only).
def variant_plan(method: str, steps: int, size: int = 224) -> tuple[dict, int]:
    if method == "ig_blur_path":
        return {"n_segments": 4, "n_steps": steps}, 4 * steps
    if method == "ig_smooth":
        return {"n_samples": 4, "n_steps": steps, "baseline": "blur"}, 4 * steps
    if method == "ig_expected":
        return {"n_steps": steps}, steps
    if method == "occlusion":  # the method's defaults: window S/8, stride S/16
        win, st = max(1, size // 8), max(1, size // 16)
        return {"baseline": "blur", "window": win, "stride": st}, occlusion_windows(size, win, st)
    return {"n_steps": steps, "baseline": "blur"}, steps


def bench_variants(enc, model, pixels: torch.Tensor, args: argparse.Namespace) -> dict:
    """Seconds per map and items/min of each variant vs its forward+backward floor."""
    import warnings

    out = {}
    n, ibs, steps = pixels.shape[0], args.internal_batch_size, args.variant_steps
    t_all = BehaviourAlignmentTarget(model, "image", list(range(n)))
    for m in args.variants:
        opts, passes = variant_plan(m, steps, pixels.shape[-1])
        floor = forward_floor_seconds if m == "occlusion" else floor_seconds
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            attribute(m, enc, BehaviourAlignmentTarget(model, "image", [0]), pixels[:1],
                      internal_batch_size=ibs, **opts)  # warm-up
            secs, floors = [], []
            for _ in range(args.repeats):  # interleaved: machine load hits both alike
                floors.append(floor(enc, t_all, pixels, passes, ibs))
                t0 = time.perf_counter()
                attribute(m, enc, t_all, pixels, internal_batch_size=ibs, **opts)
                secs.append(time.perf_counter() - t0)
        sec, fl = statistics.median(secs), statistics.median(floors)
        kind = "forward" if m == "occlusion" else "forward+backward"
        out[m] = {"options": opts, "passes_per_item": passes, "pass_kind": kind,
                  "s_per_map": round(sec / n, 3), "floor_s_per_map": round(fl / n, 3),
                  "ratio": round(sec / fl, 3), "ratios": [round(a / b, 3) for a, b in
                                                          zip(secs, floors, strict=True)],
                  "items_per_min": round(60 * n / sec, 1), "peak_rss_mb": round(peak_rss_mb(), 1)}
        print(f"  {enc.key}: {m} ({passes} {kind} passes/item): {sec / n:.2f} s/map, floor "
              f"{fl / n:.2f} s, ratio {sec / fl:.2f} (runs {out[m]['ratios']}), "
              f"{60 * n / sec:.1f} items/min, peak RSS {peak_rss_mb():.0f} MB", flush=True)
    return out


def bench_blur(size: int, n: int = 4, repeats: int = 3) -> dict:
    """The blur sets the variants build (``n`` images of ``size`` px), torchvision's 2-D
    Gaussian (what ``_blur`` called before) vs the separable one, interleaved, median."""
    import numpy as np
    from torchvision.transforms.functional import gaussian_blur as tv_blur

    from befa_viz.attribution._blur import blur_kernel_size, gaussian_blur

    def full_2d(x: torch.Tensor, s: float) -> torch.Tensor:
        k = blur_kernel_size(s, x.shape[-2], x.shape[-1])
        return tv_blur(x, kernel_size=[k, k], sigma=[s, s])

    x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    sets = {"ig_expected references (8 sigma, S/64..S/4)":
            [float(v) for v in np.geomspace(size / 64, size / 4, 8)],
            "ig_blur_path levels (4 segments, sigma <= S/8)":
            [size / 8 * (1 - j / 4) for j in range(4)],
            "blur baseline (sigma S/16)": [size / 16]}
    out = {}
    for name, sig in sets.items():
        t2d, tsep = [], []
        for _ in range(repeats):
            for fn, acc in ((full_2d, t2d), (gaussian_blur, tsep)):
                t0 = time.perf_counter()
                for s in sig:
                    fn(x, s)
                acc.append(time.perf_counter() - t0)
        a, b = statistics.median(t2d) / n, statistics.median(tsep) / n
        out[name] = {"full_2d_s_per_item": round(a, 4), "separable_s_per_item": round(b, 4),
                     "speedup": round(a / b, 1)}
        print(f"  blur: {name}: 2-D {a:.3f} s/item, separable {b:.4f} s/item ({a / b:.0f}x)",
              flush=True)
    return out


def bench_encoder(key: str, args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    enc = create_encoder(key, modality="image")
    load_s = time.perf_counter() - t0
    images = posters(args.items)
    pixels = enc.load_pixels(images)  # [N, 3, S, S] in [0, 1]
    n = pixels.shape[0]
    torch.manual_seed(0)
    model = MODELS.create("vbpr", n_users=4, n_items=n,
                          features={"image": torch.randn(n, enc.dim)}, dim=64).eval()
    ibs = args.internal_batch_size
    res: dict = {"encoder": enc.key, "dim": enc.dim, "image_size": enc.image_size,
                 "encoder_load_s": round(load_s, 1), "items": n, "internal_batch_size": ibs}

    if args.variants_only:
        res["variants"] = bench_variants(enc, model, pixels[: args.variant_items], args)
        res["peak_rss_mb"] = round(peak_rss_mb(), 1)
        return res

    # Warm-up (allocator, captum import, first-call overheads).
    t1 = BehaviourAlignmentTarget(model, "image", [0])
    ig_seconds(enc, t1, pixels[:1], 4, ibs)
    floor_seconds(enc, t1, pixels[:1], 4, ibs)

    single = {}
    for steps in args.steps:
        igs, floors = [], []
        for r in range(args.repeats):
            i = r % n
            t = BehaviourAlignmentTarget(model, "image", [i])
            floors.append(floor_seconds(enc, t, pixels[i: i + 1], steps, ibs))
            igs.append(ig_seconds(enc, t, pixels[i: i + 1], steps, ibs))
        ig_m, fl_m = statistics.median(igs), statistics.median(floors)
        single[steps] = {"ig_s": round(ig_m, 3), "floor_s": round(fl_m, 3),
                         "ratio": round(ig_m / fl_m, 3), "ig_all_s": [round(v, 3) for v in igs],
                         "floor_all_s": [round(v, 3) for v in floors]}
        print(f"  {enc.key}: 1 heatmap, {steps} steps: IG {ig_m:.2f} s, floor {fl_m:.2f} s, "
              f"ratio {ig_m / fl_m:.2f}", flush=True)
    res["single"] = single

    steps = args.batch_steps
    t_all = BehaviourAlignmentTarget(model, "image", list(range(n)))
    fl = floor_seconds(enc, t_all, pixels, steps, ibs)
    ig = ig_seconds(enc, t_all, pixels, steps, ibs)
    res["batch"] = {"steps": steps, "ig_s": round(ig, 2), "floor_s": round(fl, 2),
                    "ratio": round(ig / fl, 3), "items_per_min": round(60 * n / ig, 1),
                    "floor_items_per_min": round(60 * n / fl, 1),
                    "passes": n * steps}
    print(f"  {enc.key}: batch of {n} at {steps} steps: IG {ig:.1f} s "
          f"({60 * n / ig:.1f} items/min), floor {fl:.1f} s, ratio {ig / fl:.2f}", flush=True)
    if args.variants:
        res["variants"] = bench_variants(enc, model, pixels[: args.variant_items], args)
    res["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(f"  peak RSS so far {res['peak_rss_mb']:.0f} MB", flush=True)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--encoders", nargs="*",
                   default=["torchvision:mobilenet_v2", "clip:ViT-B-32:random"])
    p.add_argument("--items", type=int, default=50)
    p.add_argument("--steps", type=int, nargs="+", default=[32, 64])
    p.add_argument("--batch-steps", type=int, default=32)
    p.add_argument("--internal-batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--variants", nargs="*", default=[],
                   help="IG variants to time next to their floor (see variant_plan).")
    p.add_argument("--variant-steps", type=int, default=16)
    p.add_argument("--variant-items", type=int, default=4)
    p.add_argument("--blur", action="store_true",
                   help="Also time the variants' blur sets: torchvision 2-D vs separable.")
    p.add_argument("--variants-only", action="store_true",
                   help="Time only --variants (skip the single-map and batch IG runs).")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    info = {"threads": args.threads, "torch": torch.__version__, "cpus": os.cpu_count(),
            "loadavg_start": os.getloadavg()}
    print(f"threads={args.threads} load average at start {info['loadavg_start']}", flush=True)
    results = []
    if args.blur:
        info["blur"] = bench_blur(224, repeats=args.repeats)
    for key in args.encoders:
        results.append(bench_encoder(key, args))
    info["loadavg_end"] = os.getloadavg()
    out = {"info": info, "results": results}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    if any(math.isnan(r["batch"]["ratio"]) for r in results if "batch" in r):
        sys.exit(1)


if __name__ == "__main__":
    main()
