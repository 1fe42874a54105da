"""Garment masks of packshots: the foreground against a light, near-uniform background.

Product photos such as H&M's packshots show the garment on a light, nearly uniform
background. :func:`garment_mask` separates them without any learned model:

1. the image goes to CIE Lab (a perceptual space: distances are ΔE76 colour differences);
2. the background colour is a smooth surface (quadratic in x and y per Lab channel, which
   follows the uneven lighting of a packshot) fitted to a thin border strip; a border that
   is not light
   (L* < ``min_background_l``) or not uniform (more than ``max_border_outliers`` of it far from
   the median) makes the mask **unusable** (reason given) instead of guessing;
3. a pixel is *background-like* when it is within ``colour_tol`` ΔE of the background colour
   **and** not on an edge (Sobel magnitude of a slightly smoothed L* below ``edge_tol``):
   the edge cue is what stops the flood at the outline and soft shadow of a white garment on
   a white background, whose colour alone is indistinguishable from the background;
4. the background is the set of background-like pixels **connected to the border** (a flood
   fill from the border, :func:`scipy.ndimage.label`); the rest is foreground, minus the
   background-coloured halo the edge cue leaves around an outline, cleaned with a binary
   opening, small components dropped (< ``min_part`` of the largest), holes filled;
5. the result is flagged: ``usable`` False with a reason when the foreground is implausibly
   small or large. A usable mask whose inside is mostly background-coloured (a white garment
   found by its edges and shadow) is kept but marked ``low_contrast`` — its outline is right,
   yet a garment cut open by a gap in its outline would have been lost, so the share of such
   masks is worth reporting.

On a garment worn by a model the foreground is the model *and* the garment (skin and hair are
foreground too): the mask says "not background", which is what drift is measured against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["GarmentMask", "MaskParams", "garment_mask", "rgb_to_lab"]

# sRGB (D65) → XYZ, and the D65 white point (CIE 1931 2°).
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
_WHITE = np.array([0.95047, 1.0, 1.08883])
_V = np.arange(256) / 255.0
_SRGB_LUT = np.where(_V <= 0.04045, _V / 12.92, ((_V + 0.055) / 1.055) ** 2.4)  # uint8 → linear


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """Convert sRGB (uint8 or floats in [0, 1], ``[..., 3]``) to CIE Lab (D65).

    Example:
        >>> np.round(rgb_to_lab(np.array([[255, 255, 255], [0, 0, 0]], np.uint8)), 2) + 0.0
        array([[100.,   0.,   0.],
               [  0.,   0.,   0.]])
    """
    arr = np.asarray(rgb)
    if arr.dtype == np.uint8:
        lin = _SRGB_LUT[arr]  # a 256-entry table instead of a power per pixel
    else:
        x = arr.astype(np.float64)
        lin = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    m = _RGB_TO_XYZ / _WHITE[:, None]
    # elementwise instead of a matmul: BLAS threads fight each other on a loaded machine
    xyz = lin[..., 0:1] * m[:, 0] + lin[..., 1:2] * m[:, 1] + lin[..., 2:3] * m[:, 2]
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    lab = np.empty_like(f)
    lab[..., 0] = 116 * f[..., 1] - 16
    lab[..., 1] = 500 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200 * (f[..., 1] - f[..., 2])
    return lab


@dataclass(frozen=True)
class MaskParams:
    """Knobs of :func:`garment_mask` (defaults tuned by eye on H&M packshots).

    Attributes:
        inset: Pixels of the frame ignored (background in the mask): JPEG packshots often
            have a darker one-pixel line at the edge.
        border: Width in pixels of the border strip that estimates the background.
        colour_tol: ΔE76 distance to the background colour under which a pixel may be
            background.
        edge_tol: Sobel magnitude of L* (after a Gaussian of ``smooth`` px) under which a pixel
            may be background.
        smooth: Gaussian sigma before the edge cue (JPEG noise is not an edge).
        min_background_l: A darker background (L*) is not a packshot background.
        max_border_outliers: Largest share of the border strip allowed to differ from the
            background colour (a garment or model touching the frame).
        open_px: Radius of the binary opening that removes specks and thin edge lines.
        min_part: Foreground components smaller than this share of the largest are dropped.
        min_area: Smallest plausible foreground share of the image.
        max_area: Largest plausible foreground share of the image.
        low_contrast: A mask whose share of background-coloured pixels exceeds this is
            flagged ``low_contrast`` (white on white: found by its edges and shadow).
    """

    inset: int = 2
    border: int = 3
    colour_tol: float = 6.0
    edge_tol: float = 6.0
    smooth: float = 1.0
    min_background_l: float = 60.0
    max_border_outliers: float = 0.35
    open_px: int = 2
    min_part: float = 0.1
    min_area: float = 0.03
    max_area: float = 0.9
    low_contrast: float = 0.5


@dataclass
class GarmentMask:
    """One item's mask and the facts behind its flag.

    Attributes:
        mask: ``bool [H, W]`` foreground (garment) pixels, at the photo's own size.
        usable: Whether the mask may be used as ground truth.
        reason: ``"ok"``, ``"low_contrast"`` (usable, white on white) or why it is unusable.
        stats: Area share, background colour, border outlier share, background-coloured
            share inside the mask.
    """

    mask: np.ndarray
    usable: bool
    reason: str
    stats: dict[str, float] = field(default_factory=dict)


def _background_surface(lab: np.ndarray, strip: np.ndarray, tol: float) -> np.ndarray:
    """Background colour at every pixel: a quadratic surface in (x, y) per Lab channel,
    fitted to the border strip (twice: the second fit leaves out border pixels more than
    ``tol`` from the first, i.e. a garment touching the frame). Packshot backgrounds are lit
    unevenly (a lighter centre, darker corners), which one median colour would miss."""
    h, w = lab.shape[:2]

    def terms(x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
        return [np.ones_like(x * y), x, y, x * x, x * y, y * y]

    yy, xx = np.nonzero(strip)
    xs, ys = xx / max(w - 1, 1) - 0.5, yy / max(h - 1, 1) - 0.5
    design = np.stack(terms(xs, ys), axis=1)  # [n_strip, 6]
    values = lab[yy, xx]  # [n_strip, 3]
    rows = np.arange(len(values))
    for _ in range(2):
        d = design[rows]  # least squares by the 6×6 normal equations (tiny, well scaled)
        coef = np.linalg.solve(d.T @ d + 1e-9 * np.eye(6), d.T @ values[rows])  # [6, 3]
        resid = np.linalg.norm(values - design @ coef, axis=1)
        inliers = np.flatnonzero(resid <= tol)
        if len(inliers) < 0.5 * len(values):
            break  # mostly not background: keep the fit, the outlier check will refuse it
        rows = inliers
    gx = (np.arange(w) / max(w - 1, 1) - 0.5)[None, :]  # [1, W]
    gy = (np.arange(h) / max(h - 1, 1) - 0.5)[:, None]  # [H, 1]
    out = np.empty((h, w, 3))
    for c in range(3):  # c0 + c1·x + c2·y + c3·x² + c4·x·y + c5·y², separably
        k = coef[:, c]
        out[..., c] = (k[0] + k[2] * gy + k[5] * gy**2) + (k[1] + k[4] * gy) * gx + k[3] * gx**2
    return out


def garment_mask(image: Any, params: MaskParams | None = None) -> GarmentMask:
    """Segment a packshot's foreground from its light, near-uniform background.

    Args:
        image: RGB image (PIL image or ``uint8 [H, W, 3]``).
        params: Knobs; default :class:`MaskParams()`.

    Returns:
        The mask with its ``usable`` flag and reason (see the module doc).

    Example:
        >>> img = np.full((60, 40, 3), 240, np.uint8); img[20:40, 10:30] = (200, 30, 30)
        >>> m = garment_mask(img)
        >>> m.usable, int(m.mask.sum()), m.reason
        (True, 400, 'ok')
    """
    from scipy import ndimage as ndi

    p = params or MaskParams()
    rgb = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"garment_mask needs an RGB image [H, W, 3]; got shape {rgb.shape}.")
    full_h, full_w = rgb.shape[:2]
    inset = max(0, min(p.inset, (full_h - 4) // 4, (full_w - 4) // 4))
    lab = rgb_to_lab(rgb[inset:full_h - inset, inset:full_w - inset])
    h, w = lab.shape[:2]
    b = max(1, min(p.border, h // 4, w // 4))
    strip = np.zeros((h, w), dtype=bool)
    strip[:b], strip[-b:], strip[:, :b], strip[:, -b:] = True, True, True, True
    bg = _background_surface(lab, strip, p.colour_tol)  # [H, W, 3]
    de = np.linalg.norm(lab - bg, axis=-1)  # [H, W] ΔE76 to the background colour
    outliers = float((de[strip] > p.colour_tol).mean())
    bg = np.median(bg[strip], axis=0)  # [3], for the checks and the report
    stats = {"background_l": float(bg[0]), "border_outliers": outliers}
    empty = np.zeros((full_h, full_w), dtype=bool)

    def full(m: np.ndarray) -> np.ndarray:
        out = np.zeros((full_h, full_w), dtype=bool)
        out[inset:inset + h, inset:inset + w] = m
        return out

    if bg[0] < p.min_background_l:
        return GarmentMask(empty, False, f"background not light (L* {bg[0]:.0f} < "
                                         f"{p.min_background_l:g})", stats)
    if outliers > p.max_border_outliers:
        return GarmentMask(empty, False, f"background not uniform ({outliers:.0%} of the "
                                         "border differs from its median colour)", stats)

    lum = ndi.gaussian_filter(lab[..., 0], p.smooth)
    edge = np.hypot(ndi.sobel(lum, axis=0), ndi.sobel(lum, axis=1)) / 8.0  # ΔL* per pixel
    like = (de < p.colour_tol) & (edge < p.edge_tol)
    labels, _ = ndi.label(like)
    touching = np.unique(labels[strip & like])
    background = np.isin(labels, touching[touching > 0])
    fg = ~background
    # the edge cue marks a band of ~2·smooth px on the background side of every outline as
    # "not background"; peel background-coloured pixels next to the background off again
    # (a white garment keeps its outline, which is not background-coloured)
    band = int(np.ceil(2 * p.smooth)) + 1
    like_colour = de < p.colour_tol
    halo = ndi.binary_dilation(background, iterations=band, mask=like_colour) & like_colour
    fg &= ~halo
    if p.open_px > 0:
        fg = ndi.binary_opening(fg, structure=np.ones((2 * p.open_px + 1,) * 2, bool))
    parts, n = ndi.label(fg)
    if n:
        sizes = np.bincount(parts.ravel())[1:]
        keep = np.flatnonzero(sizes >= p.min_part * sizes.max()) + 1
        fg = np.isin(parts, keep)
    fg = ndi.binary_fill_holes(fg)
    area = float(fg.mean())
    stats["area"] = area
    stats["background_coloured"] = float((de[fg] < p.colour_tol).mean()) if fg.any() else 1.0
    if area < p.min_area:
        why = ("no foreground found" if area == 0 else
               f"foreground too small ({area:.1%} of the image)")
        if stats["background_coloured"] > p.low_contrast or area == 0:
            why += ": garment as light as the background (white on white?)"
        return GarmentMask(full(fg), False, why, stats)
    if area > p.max_area:
        return GarmentMask(full(fg), False, f"foreground too large ({area:.0%} of the image): "
                                      "the background was not separated", stats)
    reason = "low_contrast" if stats["background_coloured"] > p.low_contrast else "ok"
    return GarmentMask(full(fg), True, reason, stats)
