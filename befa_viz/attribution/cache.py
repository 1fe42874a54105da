"""The attribution cache: one :class:`Attribution` per entry, through :class:`befa_viz.cache.Cache`.

An entry (``<cache>/attribution/<key>/``) holds ``attribution.npz`` (:meth:`Attribution.save`)
and a readable ``manifest.json``. The key hashes everything that decides the map:

* fingerprints: the run's trained weights, the dataset, the encoder key and its weights/
  preprocessing fingerprint, the feature file the run was trained on;
* parameters: item id, modality, target and its parameters (e.g. the user), method and its
  options, whether the model has the adapter, the seed, and the method's version once it has
  been bumped (:data:`METHOD_VERSIONS`: the same options giving other maps after a change).

Options that only change *how* the map is computed, not the map (``internal_batch_size``,
``device``, ``progress``), are left out of the key. Any other changed input gives another key,
so a retrained or resumed run (new weights), re-encoded features or a changed dataset never
get a stale map; on read the manifest's fingerprints are compared again.

Scores computed from a map (faithfulness curves, drift/omission) are stored beside it by
:class:`ScoreCache` (``<cache>/attribution_scores/<key>/``, a ``scores.json`` plus manifest).
Their key is the map's :class:`AttributionKey` plus the **content digests** of the arrays the
scores were computed from (the map itself, :func:`array_digest`; the relevance map for
drift/omission) plus the scoring parameters and a scoring version. So a recomputed map that
differs, another relevance map (ground truth edited, the no-adapter run retrained), another
``q`` or number of curve points, or a changed metric definition all give another key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from befa_viz.attribution.result import Attribution
from befa_viz.cache import Cache, atomic_write_bytes

__all__ = ["ATTRIBUTION_KIND", "IGNORED_OPTIONS", "METHOD_VERSIONS", "SCORES_KIND",
           "AttributionCache", "AttributionKey", "ScoreCache", "array_digest",
           "attribution_digest"]

log = logging.getLogger(__name__)

#: Cache kind (sub-folder) of attribution entries.
ATTRIBUTION_KIND = "attribution"
#: Method options that do not change the result and are therefore not part of the key.
IGNORED_OPTIONS = frozenset({"internal_batch_size", "device", "progress"})
#: Version of a method's maps, bumped when the same options start giving other maps; a method
#: not listed is version 1 and its key has no version (so its existing entries stay valid).
#: ig_expected 2: its baseline draws and path points follow the request's ``seed`` (NumPy's
#: global RNG, which Captum's GradientShap draws from, was unseeded before, and ``explain``
#: passed the seed to ig_smooth only).
METHOD_VERSIONS: dict[str, int] = {"ig_expected": 2}
_FILE = "attribution.npz"
#: Cache kind (sub-folder) of score entries (:class:`ScoreCache`).
SCORES_KIND = "attribution_scores"
_SCORES_FILE = "scores.json"


@dataclass(frozen=True)
class AttributionKey:
    """Everything that decides one attribution map (see the module docstring).

    Attributes:
        run: Fingerprint of the run's trained weights (``Run.fingerprint``); ``""`` for
            model-free targets.
        dataset: Dataset fingerprint.
        encoder: Encoder key (``backend:model[:weights]``).
        encoder_fingerprint: The encoder's weights + preprocessing fingerprint.
        features: Fingerprint of the feature file the run was trained on (``""`` if none).
        item_id: Raw item id.
        modality: ``"image"`` or ``"text"``.
        target: Target name.
        method: Method name.
        adapter: Whether the explained model has the adapter.
        target_params: Target parameters (e.g. ``{"user": "u3"}``).
        method_params: Method options; :data:`IGNORED_OPTIONS` are dropped.
        seed: Seed of random targets / noisy methods.

    Example:
        >>> k = AttributionKey("w1", "d1", "tiny:cnn", "e1", "f1", "i3", "image",
        ...                    "content_score", "ig", False, method_params={"n_steps": 8,
        ...                    "internal_batch_size": 4})
        >>> k.params()["method_params"]
        {'n_steps': 8}
    """

    run: str
    dataset: str
    encoder: str
    encoder_fingerprint: str
    features: str
    item_id: str
    modality: str
    target: str
    method: str
    adapter: bool
    target_params: Mapping[str, Any] = field(default_factory=dict)
    method_params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0

    def fingerprints(self) -> dict[str, str]:
        """The input fingerprints part of the key."""
        return {"run": self.run, "dataset": self.dataset, "encoder": self.encoder,
                "encoder_fingerprint": self.encoder_fingerprint, "features": self.features}

    def params(self) -> dict[str, Any]:
        """The parameter part of the key (ignored options removed)."""
        out = {
            "item_id": str(self.item_id), "modality": self.modality, "target": self.target,
            "target_params": dict(self.target_params), "method": self.method,
            "method_params": {k: v for k, v in self.method_params.items()
                              if k not in IGNORED_OPTIONS},
            "adapter": bool(self.adapter), "seed": int(self.seed),
        }
        if METHOD_VERSIONS.get(self.method, 1) != 1:
            out["method_version"] = METHOD_VERSIONS[self.method]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "target_params": dict(self.target_params),
                "method_params": dict(self.method_params)}


class AttributionCache:
    """Attribution maps on disk, keyed by :class:`AttributionKey`.

    Args:
        cache: The workspace cache (``Workspace.cache()``).

    Example:
        >>> import tempfile
        >>> from befa_viz.testing import synthetic_attribution
        >>> ac = AttributionCache(Cache(tempfile.mkdtemp()))
        >>> k = AttributionKey("w", "d", "tiny:cnn", "e", "f", "i0", "image", "t", "ig", True)
        >>> ac.get(k) is None
        True
        >>> _ = ac.put(k, synthetic_attribution(0))
        >>> ac.get(k).values.shape
        (32, 32)
    """

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def key(self, k: AttributionKey) -> str:
        """The entry key (a hash of ``k``'s fingerprints and parameters)."""
        return self.cache.key(ATTRIBUTION_KIND, fingerprints=k.fingerprints(), params=k.params())

    def path(self, k: AttributionKey) -> Path:
        """Folder of ``k``'s entry (which may not exist)."""
        return self.cache.path(ATTRIBUTION_KIND, self.key(k))

    def get(self, k: AttributionKey) -> Attribution | None:
        """The cached attribution, or ``None`` when there is no valid entry.

        An entry whose manifest records other fingerprints, or whose file cannot be read, is
        not served (a warning says so) and will be replaced by the next :meth:`put`.
        """
        key = self.key(k)
        entry = self.cache.get(ATTRIBUTION_KIND, key)
        if entry is None:
            return None
        try:
            manifest = self.cache.manifest(ATTRIBUTION_KIND, key)
            if manifest.get("fingerprints") != k.fingerprints():
                warnings.warn(f"Attribution cache entry {entry} records other inputs than its "
                              "key; recomputing it.", stacklevel=2)
                return None
            return Attribution.load(entry / _FILE)
        except (OSError, ValueError, KeyError) as e:
            warnings.warn(f"Attribution cache entry {entry} cannot be read ({e}); recomputing "
                          "it.", stacklevel=2)
            return None

    def put(self, k: AttributionKey, attribution: Attribution) -> Path:
        """Store ``attribution`` under ``k`` (atomically); returns the entry folder."""
        manifest = {"fingerprints": k.fingerprints(), "params": k.params(),
                    "request": k.to_dict(), "file": _FILE,
                    "result": {"item_id": attribution.item_id, "method": attribution.method,
                               "target": attribution.target, "modality": attribution.modality,
                               "shape": list(attribution.values.shape),
                               "delta": attribution.delta}}
        return self.cache.put(ATTRIBUTION_KIND, self.key(k),
                              lambda d: attribution.save(d / _FILE), manifest)

    def get_or_compute(
        self,
        keys: Sequence[AttributionKey],
        compute: Callable[[list[int]], Sequence[Attribution]],
        *,
        use_cache: bool = True,
    ) -> tuple[list[Attribution], list[bool]]:
        """Serve what is cached and compute the rest in **one** call.

        Args:
            keys: One key per requested map.
            compute: Gets the positions (in ``keys``) of the missing maps and returns their
                attributions, in that order (so misses are batched together).
            use_cache: ``False`` computes everything and stores nothing.

        Returns:
            The attributions in the order of ``keys`` and, per key, whether it came from the
            cache.
        """
        found: list[Attribution | None] = [self.get(k) if use_cache else None for k in keys]
        missing = [i for i, a in enumerate(found) if a is None]
        if missing:
            fresh = list(compute(missing))
            if len(fresh) != len(missing):
                raise RuntimeError(f"compute returned {len(fresh)} maps for {len(missing)} "
                                   "requests")  # an internal bug, not a user error
            for i, a in zip(missing, fresh, strict=True):
                found[i] = a
                if use_cache:
                    self.put(keys[i], a)
        log.debug("attribution cache: %d hit(s), %d computed", len(keys) - len(missing),
                  len(missing))
        hits = [i not in set(missing) for i in range(len(keys))]
        return [a for a in found if a is not None], hits


def array_digest(*arrays: Any) -> str:
    """Content digest of arrays (dtype, shape and bytes; ``None`` entries allowed).

    Example:
        >>> import numpy as np
        >>> array_digest(np.zeros(3)) == array_digest(np.zeros(3)) != array_digest(np.ones(3))
        True
    """
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none;")
            continue
        arr = np.ascontiguousarray(np.asarray(a))
        h.update(f"{arr.dtype.str}{arr.shape};".encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:20]


def attribution_digest(attribution: Attribution) -> str:
    """Digest of what scores read from an attribution: its map and per-token values."""
    return array_digest(attribution.values, attribution.extras.get("token_values"))


class ScoreCache:
    """Scores of attribution maps on disk (JSON), keyed by the map's key and contents.

    ``part`` names a group of scores computed together (e.g. ``"faithfulness"`` or
    ``"regions"``), so that changing a parameter of one group (``q``) leaves the other's entry
    (the costly faithfulness curves) valid.

    Args:
        cache: The workspace cache (``Workspace.cache()``).

    Example:
        >>> import tempfile
        >>> sc = ScoreCache(Cache(tempfile.mkdtemp()))
        >>> k = AttributionKey("w", "d", "tiny:cnn", "e", "f", "i0", "image", "t", "ig", True)
        >>> sc.get(k, "regions", {"map": "m1"}, {"q": 0.5}) is None
        True
        >>> _ = sc.put(k, "regions", {"map": "m1"}, {"q": 0.5}, {"drift": 0.25})
        >>> sc.get(k, "regions", {"map": "m1"}, {"q": 0.5})
        {'drift': 0.25}
        >>> sc.get(k, "regions", {"map": "m1"}, {"q": 0.4}) is None
        True
    """

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    @staticmethod
    def _fingerprints(k: AttributionKey, inputs: Mapping[str, str]) -> dict[str, str]:
        return {**k.fingerprints(), **{f"input:{n}": str(v) for n, v in inputs.items()}}

    @staticmethod
    def _params(k: AttributionKey, part: str, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"map": k.params(), "part": part, "scoring": dict(params)}

    def key(self, k: AttributionKey, part: str, inputs: Mapping[str, str],
            params: Mapping[str, Any]) -> str:
        """The entry key.

        Args:
            k: Key of the map the scores are computed from.
            part: Score group name.
            inputs: Content digests of every array the scores read (the map, the relevance
                map, ...), by name.
            params: Scoring parameters (including a version of the scoring code).
        """
        return self.cache.key(SCORES_KIND, fingerprints=self._fingerprints(k, inputs),
                              params=self._params(k, part, params))

    def get(self, k: AttributionKey, part: str, inputs: Mapping[str, str],
            params: Mapping[str, Any]) -> dict[str, Any] | None:
        """The cached scores, or ``None`` (an unreadable or mismatching entry warns)."""
        key = self.key(k, part, inputs, params)
        entry = self.cache.get(SCORES_KIND, key)
        if entry is None:
            return None
        try:
            manifest = self.cache.manifest(SCORES_KIND, key)
            if manifest.get("fingerprints") != self._fingerprints(k, inputs):
                warnings.warn(f"Score cache entry {entry} records other inputs than its key; "
                              "recomputing it.", stacklevel=2)
                return None
            scores = json.loads((entry / _SCORES_FILE).read_text())
            if not isinstance(scores, dict):
                raise ValueError("scores.json does not hold an object")
            return scores
        except (OSError, ValueError, KeyError) as e:
            warnings.warn(f"Score cache entry {entry} cannot be read ({e}); recomputing it.",
                          stacklevel=2)
            return None

    def put(self, k: AttributionKey, part: str, inputs: Mapping[str, str],
            params: Mapping[str, Any], scores: Mapping[str, Any]) -> Path:
        """Store JSON-able ``scores`` (atomically); returns the entry folder."""
        blob = json.dumps(dict(scores), indent=1, allow_nan=True).encode()
        manifest = {"fingerprints": self._fingerprints(k, inputs),
                    "params": self._params(k, part, params), "request": k.to_dict(),
                    "file": _SCORES_FILE}
        return self.cache.put(SCORES_KIND, self.key(k, part, inputs, params),
                              lambda d: atomic_write_bytes(d / _SCORES_FILE, blob), manifest)
