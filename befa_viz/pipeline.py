"""The verbs every frontend (CLI, explorer, notebooks) calls.

Each verb takes plain arguments plus a :class:`~befa_viz.workspace.Workspace`, does one job,
and returns a result object or paths. Frontends never reach below this module and ``viz``.
"""

from __future__ import annotations

from befa_viz.workspace import Workspace

__all__ = ["Workspace"]

# ---- data verbs (import, validate, stats, export, synth) ---------------------------------

# ---- encode verbs ------------------------------------------------------------------------

# ---- train / evaluate / compare / sweep verbs --------------------------------------------

# ---- attribution / heatmap / report verbs ------------------------------------------------

# ---- demo / benchmark verbs --------------------------------------------------------------
