"""The adaptive step schedule shared by every path method (see :mod:`befa_viz.attribution.ig`).

A path method's step count is chosen per item by its completeness error: start at
:data:`DEFAULT_N_STEPS`, double while |delta| > ``tol`` · |f(x) − f(b)|, stop at ``max_steps``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch

from befa_viz.attribution.result import Attribution
from befa_viz.errors import ConfigError

__all__ = ["DEFAULT_N_STEPS", "MAX_STEPS", "STEP_TOL", "StepRun", "adaptive_steps", "check_schedule",
           "completeness_scale", "finish_steps", "relative_delta"]

#: First step count of the adaptive schedule (and the one default step count everywhere).
DEFAULT_N_STEPS = 16
#: Cap of the adaptive schedule.
MAX_STEPS = 128
#: Adaptive schedule stops once |delta| ≤ STEP_TOL · |f(x) − f(b)|.
STEP_TOL = 0.05

# One item's run: (attr [k, ...], delta [k], f(x) [k], f(b) [k]) for item positions ``idx``.
StepRun = Callable[[torch.Tensor, int], tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]]


def completeness_scale(fx: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """The size |f(x) − f(b)| a completeness error is compared with (floored, never 0)."""
    fx, fb = np.asarray(fx, dtype=np.float64), np.asarray(fb, dtype=np.float64)
    return np.maximum(np.abs(fx - fb), np.maximum(1e-3 * np.maximum(np.abs(fx), np.abs(fb)),
                                                  1e-6))


def relative_delta(delta: float | None, fx: float | None, fb: float | None) -> float | None:
    """|delta| / |f(x) − f(b)| of one map (``None`` when a value is missing).

    Example:
        >>> relative_delta(0.1, 2.0, 1.0)
        0.1
    """
    if delta is None or fx is None or fb is None:
        return None
    return float(abs(delta) / completeness_scale(np.array([fx]), np.array([fb]))[0])


def check_schedule(n_steps: int | None, max_steps: int, tol: float) -> None:
    if n_steps is not None and int(n_steps) < 1:
        raise ConfigError(f"n_steps must be >= 1 or None (adaptive); got {n_steps}.")
    if int(max_steps) < DEFAULT_N_STEPS:
        raise ConfigError(f"max_steps must be >= {DEFAULT_N_STEPS}; got {max_steps}.")
    if not tol > 0:
        raise ConfigError(f"tol must be > 0; got {tol}.")


def adaptive_steps(run: StepRun, n: int, n_steps: int | None, max_steps: int, tol: float,
              device: torch.device
              ) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Run ``run`` per item with the fewest doubled step counts meeting the tolerance.

    Returns attributions, delta, f(x), f(b) and the step count used, per item.
    """
    steps = int(n_steps) if n_steps is not None else DEFAULT_N_STEPS
    cap = steps if n_steps is not None else int(max_steps)
    pending = np.arange(n)
    out_a: dict[int, torch.Tensor] = {}
    delta, fx, fb = np.zeros(n), np.zeros(n), np.zeros(n)
    used = np.zeros(n, dtype=np.int64)
    while pending.size:
        a, d, x1, b1 = run(torch.as_tensor(pending, device=device), steps)
        rel = np.abs(d) / completeness_scale(x1, b1)
        for j, i in enumerate(pending.tolist()):
            out_a[i], delta[i], fx[i], fb[i], used[i] = a[j], d[j], x1[j], b1[j], steps
        if steps >= cap:
            break
        pending = pending[rel > tol]
        steps = min(2 * steps, cap)
    return torch.stack([out_a[i] for i in range(n)]), delta, fx, fb, used


def finish_steps(res: list[Attribution], used: np.ndarray, delta: np.ndarray, fx: np.ndarray,
            fb: np.ndarray, tol: float, adaptive: bool, name: str) -> list[Attribution]:
    rel = np.abs(delta) / completeness_scale(fx, fb)
    for r, s, e in zip(res, used.tolist(), rel.tolist(), strict=True):
        r.params.update(n_steps=int(s), relative_delta=float(e), adaptive_steps=adaptive,
                        step_tol=float(tol), converged=bool(e <= tol))
    bad = [r.item_id for r, e in zip(res, rel.tolist(), strict=True) if e > tol]
    if bad:
        warnings.warn(
            f"{name}: completeness error above {tol:.0%} of |f(x) - f(baseline)| for "
            f"{len(bad)} of {len(res)} items (first {bad[0]!r}, "
            f"{float(rel.max()):.0%}) at {int(used.max())} steps; raise max_steps, or treat "
            f"those maps as approximate.", stacklevel=_stacklevel())
    return res


def _stacklevel() -> int:
    from befa_viz.attribution._base import _outside_stacklevel

    return _outside_stacklevel()
