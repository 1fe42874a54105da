"""The default attribution method per encoder, as chosen by evidence (the shop benchmark).

The default of ``heatmap``, the explorer and the notebooks is not a matter of taste: it is
the method × target × baseline whose behaviour-driven map beat both controls (random target
direction, model-free |x − blur(x)|) by the largest margin on a planted-truth benchmark
(:func:`befa_viz.evidence.choose_defaults`). Two places record it:

* the package defaults, ``befa_viz/attribution/defaults.json``, with the benchmark that chose
  each entry (dataset, items, p-values, command) — what a fresh install uses;
* a workspace's ``defaults/attribution.json``, written by ``befa-viz benchmark`` — which wins
  for that workspace, so a user's own benchmark decides for their data.

:func:`default_method` is the one function every frontend calls.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from befa_viz.attribution._steps import DEFAULT_N_STEPS
from befa_viz.errors import DataError

if TYPE_CHECKING:
    from befa_viz.workspace import Workspace

__all__ = ["PACKAGE_DEFAULTS", "MethodDefault", "default_method", "read_defaults",
           "workspace_defaults_path", "write_defaults"]

#: Package defaults, committed with the benchmark evidence that chose them.
PACKAGE_DEFAULTS = Path(__file__).with_name("defaults.json")
_FALLBACK_KEY = "*"


@dataclass(frozen=True)
class MethodDefault:
    """A default attribution recipe and the evidence behind it.

    Attributes:
        method: Name in ``ATTRIBUTIONS``.
        target: Target name.
        baseline: Image baseline (``None`` for methods without one).
        n_steps: Step count (``None``: the adaptive schedule, see :mod:`befa_viz.attribution.ig`).
        passes: Whether the chosen entry passed its controls on the benchmark.
        source: Where it was read from (``"package"`` or the workspace file).
        evidence: The benchmark row(s) that chose it (margins, p-values, items, command).
        alternatives: Other IG-family entries one flag away (method → their evidence).
    """

    method: str
    target: str
    baseline: str | None = "blur"
    n_steps: int | None = DEFAULT_N_STEPS
    passes: bool = False
    source: str = "package"
    evidence: dict[str, Any] = field(default_factory=dict)
    alternatives: dict[str, Any] = field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        """Method options for ``explain``/``attribute`` (only the ones the entry sets)."""
        out: dict[str, Any] = {}
        if self.baseline is not None:
            out["baseline"] = self.baseline
        out["n_steps"] = self.n_steps
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def workspace_defaults_path(workspace: Workspace | str | os.PathLike[str]) -> Path:
    """``<workspace>/defaults/attribution.json``."""
    from befa_viz.workspace import Workspace

    return Workspace(workspace).root / "defaults" / "attribution.json"


def read_defaults(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a defaults file (``{"encoders": {key: entry}, ...}``).

    Raises:
        DataError: If the file is not valid JSON or lacks the ``encoders`` mapping.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"Cannot read attribution defaults {p}: {e}. Delete the file or re-run "
                        f"`befa-viz benchmark` to rewrite it.") from e
    if not isinstance(data, dict) or not isinstance(data.get("encoders"), dict):
        raise DataError(f"Attribution defaults {p} have no 'encoders' mapping; re-run "
                        f"`befa-viz benchmark` to rewrite it.")
    return data


def write_defaults(path: str | os.PathLike[str], entries: dict[str, MethodDefault],
                   **meta: Any) -> Path:
    """Write (atomically) or update a defaults file with one entry per encoder key."""
    from befa_viz.cache import atomic_write_bytes

    p = Path(path)
    data: dict[str, Any] = read_defaults(p) if p.exists() else {"encoders": {}}
    for key, e in entries.items():
        d = e.to_dict()
        d.pop("source", None)
        data["encoders"][key] = d
    data.update(meta)
    atomic_write_bytes(p, (json.dumps(data, indent=1, default=str) + "\n").encode())
    return p


def _entry(d: dict[str, Any], source: str) -> MethodDefault:
    known = set(MethodDefault.__dataclass_fields__)
    return MethodDefault(**{k: v for k, v in d.items() if k in known and k != "source"},
                         source=source)


def default_method(encoder_key: str | None = None, *,
                   workspace: Workspace | str | os.PathLike[str] | None = None
                   ) -> MethodDefault:
    """The evidence-chosen attribution recipe for an encoder.

    A workspace's ``defaults/attribution.json`` (written by ``befa-viz benchmark``) wins over
    the package defaults; an encoder without an entry gets the ``"*"`` entry.

    Args:
        encoder_key: Encoder key, e.g. ``"torchvision:mobilenet_v2"`` (``None``: the ``"*"``
            entry).
        workspace: Workspace (or folder) whose benchmark may override the package defaults.

    Returns:
        The recipe with its evidence.

    Example:
        >>> d = default_method("torchvision:mobilenet_v2")
        >>> d.method in ("gradcam", "layer_ig", "ig_similarity", "ig", "similarity")
        True
    """
    sources: list[tuple[Path, str]] = []
    if workspace is not None:
        wp = workspace_defaults_path(workspace)
        if wp.exists():
            sources.append((wp, str(wp)))
    sources.append((PACKAGE_DEFAULTS, "package"))
    for path, label in sources:
        enc = read_defaults(path)["encoders"]
        for key in (encoder_key, _FALLBACK_KEY):
            if key is not None and key in enc:
                return _entry(enc[key], label)
    raise DataError(f"No attribution default for encoder {encoder_key!r} and no '*' entry in "
                    f"{PACKAGE_DEFAULTS}; the package data is incomplete — reinstall befa-viz.")
