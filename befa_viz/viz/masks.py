"""Contact sheets of masks over photos, so anyone can check ground-truth masks by eye."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["mask_contact_sheet"]


def _outline(mask: np.ndarray, width: int = 2) -> np.ndarray:
    from scipy import ndimage as ndi

    return mask & ~ndi.binary_erosion(mask, iterations=width, border_value=0)


def mask_contact_sheet(
    images: Sequence[Any],
    masks: Sequence[np.ndarray],
    *,
    labels: Sequence[str] | None = None,
    usable: Sequence[bool] | None = None,
    n_cols: int = 12,
    tile_width: int = 120,
    tint: tuple[int, int, int] = (40, 60, 255),
) -> np.ndarray:
    """Tile photos with their masks: background tinted, mask outlined, unusable ones framed.

    Args:
        images: RGB photos (PIL images or ``uint8 [H, W, 3]``), any size.
        masks: ``bool [h, w]`` per photo (resized nearest to the photo when they differ).
        labels: A caption per tile (e.g. the item id and the mask's reason).
        usable: Per tile; unusable masks get a red frame and caption.
        n_cols: Tiles per row.
        tile_width: Width of a tile in pixels (its height keeps the first photo's aspect).
        tint: Colour blended over the background (everything outside the mask).

    Returns:
        ``uint8 [rows·h, n_cols·w, 3]``.

    Example:
        >>> img = np.full((30, 20, 3), 240, np.uint8); m = np.zeros((30, 20), bool)
        >>> m[10:20, 5:15] = True
        >>> mask_contact_sheet([img, img], [m, m], n_cols=2, tile_width=20).shape
        (30, 40, 3)
    """
    from PIL import Image, ImageDraw

    if len(images) != len(masks):
        raise ValueError(f"{len(images)} images but {len(masks)} masks; give one per image.")
    if not len(images):
        raise ValueError("mask_contact_sheet needs at least one image.")
    first = np.asarray(images[0])
    tile_h = max(1, round(tile_width * first.shape[0] / first.shape[1]))
    n_cols = max(1, min(int(n_cols), len(images)))
    n_rows = -(-len(images) // n_cols)
    sheet = Image.new("RGB", (n_cols * tile_width, n_rows * tile_h), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (img, mask) in enumerate(zip(images, masks, strict=True)):
        a = np.asarray(img.convert("RGB") if hasattr(img, "convert") else img, dtype=np.float32)
        m = np.asarray(mask, dtype=bool)
        if m.shape != a.shape[:2]:
            m = np.asarray(Image.fromarray(m).resize((a.shape[1], a.shape[0]), Image.Resampling.NEAREST))
        out = a.copy()
        out[~m] = 0.4 * out[~m] + 0.6 * np.asarray(tint, np.float32)
        out[_outline(m, max(1, a.shape[1] // 180))] = (255, 40, 40)
        tile = Image.fromarray(out.astype(np.uint8)).resize((tile_width, tile_h),
                                                              Image.Resampling.BILINEAR)
        x, y = (k % n_cols) * tile_width, (k // n_cols) * tile_h
        sheet.paste(tile, (x, y))
        ok = True if usable is None else bool(usable[k])
        if not ok:
            draw.rectangle([x, y, x + tile_width - 1, y + tile_h - 1], outline=(255, 0, 0),
                           width=3)
        if labels is not None:
            text = str(labels[k])
            draw.rectangle([x, y, x + min(tile_width, 6 * len(text) + 4), y + 11],
                           fill=(0, 0, 0))
            draw.text((x + 2, y), text, fill=(255, 255, 0) if ok else (255, 80, 80))
    return np.asarray(sheet)
