"""The :class:`Attribution` result: what ``viz`` and ``metrics`` consume."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

__all__ = ["Attribution"]


@dataclass(frozen=True, eq=False)
class Attribution:
    """One attribution map of one item's raw input for one target and method.

    Attributes:
        item_id: Raw item id as in the catalog.
        modality: ``"image"`` or ``"text"``.
        method: Name registered in ``ATTRIBUTIONS`` (e.g. ``"ig"``).
        target: Description of the attributed scalar (e.g. ``"behaviour_alignment"``).
        values: Signed attribution. Images: ``[H, W]`` (summed over channels) at the size of
            ``image``; text: ``[T]`` one score per entry of ``tokens``.
        image: The input image as ``uint8 [H, W, 3]`` (images only).
        tokens: The input tokens, word-merged (text only).
        delta: IG completeness error |Σ attr − (f(x) − f(baseline))|, ``None`` if not a path method.
        params: Method and target parameters (steps, baseline, layer, adapter, run, ...).
            Image maps also record where the photo lies in the map: ``content_box``
            ``[top, left, height, width]`` in map pixels (a ``"pad"`` encoder's pad is outside
            it; scores read only the box and figures crop to it), ``source_size``
            ``[height, width]`` of the original photo and ``resize`` (the encoder's mode).
        extras: Named extra arrays (e.g. per-channel maps, raw layer maps).
    """

    item_id: str
    modality: str
    method: str
    target: str
    values: np.ndarray
    image: np.ndarray | None = None
    tokens: list[str] | None = None
    delta: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def content_box(self) -> tuple[int, int, int, int] | None:
        """``(top, left, height, width)`` of the photo in the map; ``None`` when not recorded
        (text, or pixels given without sizes: then the whole map is the photo).

        Example:
            >>> from befa_viz.testing import synthetic_attribution
            >>> a = synthetic_attribution(0)
            >>> a.content_box is None
            True
            >>> a.params["content_box"] = [0, 5, 32, 21]
            >>> a.content_box
            (0, 5, 32, 21)
        """
        box = self.params.get("content_box") if self.modality == "image" else None
        if box is None:
            return None
        top, left, h, w = (int(v) for v in box)
        return top, left, h, w

    def magnitude(self) -> np.ndarray:
        """Non-negative map |values| normalised to sum 1 (all zeros stays zeros)."""
        a = np.abs(np.asarray(self.values, dtype=np.float64))
        s = a.sum()
        return a / s if s > 0 else a

    def save(self, path: str | Path) -> Path:
        """Write to an ``.npz`` (arrays) with the metadata as JSON inside."""
        import io

        from befa_viz.cache import atomic_write_bytes

        meta = {k: v for k, v in asdict(self).items()
                if k not in ("values", "image", "extras")}
        arrays: dict[str, np.ndarray] = {"values": np.asarray(self.values)}
        if self.image is not None:
            arrays["image"] = np.asarray(self.image)
        for k, v in self.extras.items():
            arrays[f"extra__{k}"] = np.asarray(v)
        arrays["meta_json"] = np.frombuffer(json.dumps(meta, default=str).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        # numpy's stubs type **kwds like its `allow_pickle: bool`; no key here can be that.
        np.savez_compressed(buf, **cast("dict[str, Any]", arrays))
        path = Path(path)
        atomic_write_bytes(path, buf.getvalue())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Attribution:
        with np.load(Path(path), allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta_json"]).decode())
            extras = {k[len("extra__"):]: z[k] for k in z.files if k.startswith("extra__")}
            return cls(
                values=z["values"],
                image=z["image"] if "image" in z.files else None,
                extras=extras,
                **meta,
            )
