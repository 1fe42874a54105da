"""Gaussian blur of pixel batches, separable (two 1-D torchvision passes instead of one 2-D).

torchvision's ``gaussian_blur`` convolves with the full k×k kernel: at σ = S/4 on a 224 px
image (k = 223) that took 2.6 s per image on one CPU thread (4 images: 10.4 s), which
dominated ``ig_expected`` (8 blur levels per item up to S/4) and ``ig_blur_path``. A
Gaussian kernel is the outer product of two 1-D kernels and reflect padding acts per axis,
so blurring along x with a ``[k, 1]`` kernel and then along y with ``[1, k]`` (two calls of
the same torchvision function) gives the same image, float rounding apart (≤ 1e-5 for
pixels in [0, 1]), in 1/60 of the time at k = 223 (4 images: 0.17 s).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from befa_viz.errors import ConfigError

__all__ = ["blur_kernel_size", "gaussian_blur", "gaussian_blur_levels"]


def blur_kernel_size(sigma: float, height: int, width: int) -> int:
    """Odd kernel side covering ±3σ, no larger than the image (reflect padding needs that)."""
    k = int(2 * math.ceil(3 * sigma) + 1)
    return min(k, 2 * ((min(height, width) - 1) // 2) + 1)


def gaussian_blur(pixels: torch.Tensor, sigma: float | None) -> torch.Tensor:
    """Blur ``[..., C, H, W]`` with a Gaussian of ``sigma`` pixels (default ``W / 16``).

    Example:
        >>> x = torch.zeros(1, 3, 9, 9); x[..., 4, 4] = 1.0
        >>> y = gaussian_blur(x, 1.0)
        >>> round(y.sum().item(), 4), bool(y[0, 0, 4, 4] < 1)
        (3.0, True)
    """
    from torchvision.transforms.functional import gaussian_blur as tv_blur

    s = float(sigma) if sigma is not None else pixels.shape[-1] / 16.0
    if s <= 0:
        raise ConfigError(f"blur_sigma must be > 0; got {sigma}.")
    k = blur_kernel_size(s, pixels.shape[-2], pixels.shape[-1])
    along_x = tv_blur(pixels, kernel_size=[k, 1], sigma=[s, s])
    return tv_blur(along_x, kernel_size=[1, k], sigma=[s, s])


def gaussian_blur_levels(pixels: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    """Each image at each σ: ``[B, 3, S, S]`` → ``[B, L, 3, S, S]`` (σ = 0 keeps the image).

    One batched blur per level over all images.
    """
    levels = [gaussian_blur(pixels, float(s)) if s > 0 else pixels for s in sigmas]
    return torch.stack(levels, 1)
