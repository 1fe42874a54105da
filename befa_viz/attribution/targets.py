"""Attribution targets: *what* is explained.

A target is a scalar function of an encoder's output embeddings, ``[B, D] -> [B]``. The
attribution engine composes it with the frozen encoder, so every method sees a function of the
raw input (pixels or token embeddings). Targets that depend on the item (its behaviour
embedding, its users) hold one row of parameters per item they were built for and take a
``rows`` index tensor telling which item each embedding belongs to; Captum repeats that index
along with the inputs, so one call can batch items and integration steps together.

Every target is written as ``score(embed(E), reference)``:

* ``embed`` maps an encoder embedding into the space the target lives in (identity, the
  model's projection ċ, or the model's whole content pathway, adapter included);
* ``reference`` is the per-item vector it is compared with;
* ``score`` is a dot product or a cosine.

The similarity method uses the same two pieces per feature-map location.

Targets (registered in :data:`TARGETS`):

======================  ===================================================================
``content_focus``       ⟨E(x), E(x₀)/‖E(x₀)‖⟩ — how the pretrained feature itself is built.
``behaviour_alignment`` cos(ċ(E(x)), e_i) — projection only, never the adapter.
``content_score``       (1/|U_i|) Σ_{u∈U_i} ⟨u_m, pathway(E(x))⟩ over the item's training
                        users, with the model's content pathway (adapter or not).
``adapted_alignment``   ``content_score`` on a model that has the adapter (refuses others).
``user_score``          ⟨u_m, pathway(E(x))⟩ + const — s(u, i) as a function of the input.
``random``              ⟨E(x), r⟩ for a random unit direction r — the sanity control.
======================  ===================================================================
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from befa_viz.errors import ConfigError, DataError
from befa_viz.registry import Registry

if TYPE_CHECKING:
    from befa_viz.models.base import Recommender

__all__ = [
    "TARGETS",
    "AttributionTarget",
    "BehaviourAlignmentTarget",
    "ContentFocusTarget",
    "ContentScoreTarget",
    "RandomDirectionTarget",
    "UserScoreTarget",
    "create_target",
]

TARGETS: Registry[AttributionTarget] = Registry("target")


class AttributionTarget(nn.Module):
    """A scalar function of encoder output embeddings, ``[B, D] -> [B]``.

    Subclasses implement :meth:`embed` and :meth:`reference` (and may change :meth:`score`).

    Attributes:
        name: Short description used in :attr:`Attribution.target`.
        n_items: Number of items with their own parameters (rows); ``None`` if the target is
            the same for every item.
        cosine: Whether :meth:`score` is a cosine (else a dot product).
    """

    name: str = "target"
    cosine: bool = False

    def __init__(self, n_items: int | None = None) -> None:
        super().__init__()
        self.n_items = n_items

    def rows(self, rows: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        """Resolve ``rows`` (``None`` means item b for embedding b) into an index tensor."""
        if rows is None:
            if self.n_items is not None and batch != self.n_items:
                raise ValueError(
                    f"Target {self.name!r} was built for {self.n_items} items but got a batch of "
                    f"{batch} embeddings without `rows`; pass rows=<item position per embedding>."
                )
            return torch.arange(batch, device=device)
        return rows.to(device=device, dtype=torch.long)

    def embed(self, embeddings: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Map encoder embeddings ``[B, D]`` into the target space ``[B, k]``."""
        return embeddings

    def reference(self, rows: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Reference vectors ``[B, k]`` of the items ``rows``."""
        raise NotImplementedError

    def score(self, z: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Scalar per row from the embedded input and the reference."""
        if self.cosine:
            return F.cosine_similarity(z, ref, dim=-1, eps=1e-8)
        return (z * ref).sum(-1)

    def forward(self, embeddings: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Target value per embedding, ``[B]``.

        Args:
            embeddings: Encoder outputs ``[B, D]``.
            rows: Position (in the items this target was built for) of each embedding;
                ``None`` means embedding ``b`` belongs to item ``b``.
        """
        r = self.rows(rows, embeddings.shape[0], embeddings.device)
        return self.score(self.embed(embeddings, r), self.reference(r))

    def describe(self) -> dict[str, Any]:
        """JSON-able parameters recorded in :attr:`Attribution.params`."""
        return {"target": self.name}


@contextlib.contextmanager
def _eval_mode(*modules: nn.Module | None) -> Iterator[None]:
    """Put modules in eval mode for the block and restore each submodule's flag afterwards
    (dropout in the adapter must not make attribution random)."""
    mods = [m for m in modules if m is not None]
    saved = [(m, m.training) for mod in mods for m in mod.modules()]
    for mod in mods:
        mod.eval()
    try:
        yield
    finally:
        for m, flag in saved:
            m.training = flag


def _as_index(values: int | Sequence[int] | np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(values), dtype=torch.long).reshape(-1)
    if t.numel() == 0:
        raise ConfigError(f"{name} is empty; give at least one item index.")
    return t


def _check_model(model: Any, modality: str, target: str) -> None:
    if model is None:
        raise ConfigError(
            f"Target {target!r} needs a trained recommender; pass model=... (or use "
            f"'content_focus' / 'random', which need none)."
        )
    if not getattr(model, "multimodal", True) or modality not in getattr(model, "projections", {}):
        have = sorted(getattr(model, "projections", {}))
        raise ConfigError(
            f"Target {target!r} needs the model's {modality!r} content pathway, but "
            f"{type(model).__name__} has content modalities {have}. Use a multimodal backbone "
            f"trained with {modality!r} features, or target 'content_focus'."
        )


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


class ContentFocusTarget(AttributionTarget):
    """⟨E(x), E(x₀)/‖E(x₀)‖⟩: how much of the item's own (unperturbed) feature an input keeps.

    Args:
        reference: The items' original embeddings E(x₀), ``[n_items, D]``.

    Example:
        >>> t = ContentFocusTarget(torch.tensor([[3.0, 4.0]]))
        >>> t(torch.tensor([[3.0, 4.0]])).tolist()
        [5.0]
    """

    name = "content_focus"
    ref: torch.Tensor  # buffer: unit-normalised E(x₀), [n_items, D]

    def __init__(self, reference: torch.Tensor) -> None:
        ref = torch.as_tensor(reference).detach().float()
        if ref.ndim != 2:
            raise ValueError(f"reference must be [n_items, D]; got shape {tuple(ref.shape)}.")
        super().__init__(ref.shape[0])
        self.register_buffer("ref", F.normalize(ref, dim=-1))

    def reference(self, rows: torch.Tensor) -> torch.Tensor:
        return self.ref[rows]


class BehaviourAlignmentTarget(AttributionTarget):
    """cos(ċ(E(x)), e_i): agreement of the projected content with the item's behaviour embedding.

    Uses the model's projection ċ = W₁c + b₁ only — never the adapter, even if the model has
    one (cos(g ⊙ e_i, e_i) is close to 1 for any fairly uniform gate; use
    :class:`ContentScoreTarget` to compare with and without the adapter).

    Args:
        model: A multimodal :class:`~befa_viz.models.Recommender`.
        modality: Content modality of the model (``"image"``, ``"text"``).
        item_idx: Item index (in the model) of each attributed item.
    """

    name = "behaviour_alignment"
    cosine = True
    # Buffers: item index and behaviour embedding e_i of each attributed item.
    item_idx: torch.Tensor
    behaviour: torch.Tensor

    def __init__(self, model: Recommender, modality: str, item_idx: Sequence[int] | torch.Tensor
                 ) -> None:
        _check_model(model, modality, self.name)
        idx = _as_index(item_idx, "item_idx")
        super().__init__(idx.numel())
        self.model = model
        self.modality = modality
        with torch.no_grad():
            e = model.behaviour_embedding(idx.to(_model_device(model)))
        self.register_buffer("item_idx", idx)
        self.register_buffer("behaviour", e.detach().float())

    def embed(self, embeddings: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return self.model.projections[self.modality](embeddings)

    def reference(self, rows: torch.Tensor) -> torch.Tensor:
        return self.behaviour[rows]

    def describe(self) -> dict[str, Any]:
        return {"target": self.name, "modality": self.modality, "adapter": False,
                "item_idx": self.item_idx.tolist()}


def _users_of(users: Any, idx: torch.Tensor, n_users: int) -> list[np.ndarray]:
    """Normalise the ``users`` argument into one array of user indices per item."""
    if users is None:
        raise ConfigError("internal: users must be resolved before _users_of")
    if hasattr(users, "csr") and hasattr(users, "user_idx"):  # Interactions
        users = users.csr()
    if hasattr(users, "tocsc"):  # scipy.sparse user x item
        csc = users.tocsc()
        return [csc.indices[csc.indptr[i]: csc.indptr[i + 1]].astype(np.int64)
                for i in idx.tolist()]
    lists = list(users)
    if len(lists) != idx.numel():
        raise ConfigError(
            f"users has {len(lists)} entries but {idx.numel()} items are attributed; give one "
            f"list of user indices per item, a user x item matrix, or an Interactions object."
        )
    out = [np.asarray(u, dtype=np.int64).reshape(-1) for u in lists]
    for u in out:
        if u.size and (u.min() < 0 or u.max() >= n_users):
            raise ConfigError(f"User index out of range [0, {n_users}) in users: {u.tolist()}.")
    return out


def _content_user_vectors(model: Recommender, modality: str, target: str) -> torch.Tensor:
    try:
        with torch.no_grad(), _eval_mode(model):
            vecs = model.content_user_vectors(modality)
    except NotImplementedError:
        raise ConfigError(
            f"{type(model).__name__} does not implement content_user_vectors(), which target "
            f"{target!r} needs. Use 'behaviour_alignment' or 'content_focus'."
        ) from None
    return vecs.detach().float()


class ContentScoreTarget(AttributionTarget):
    """(1/|U_i|) Σ_{u∈U_i} ⟨u_m, pathway(E(x))⟩: the content pathway's score for the item's users.

    "What in the input makes the content pathway recommend this item to the users who actually
    chose it". ``pathway`` is the model's :meth:`~befa_viz.models.Recommender.content_pathway`:
    ċ without the adapter, g(ċ) ⊙ e_i with it, so the same target is comparable across a run
    and its paired run without the adapter. u_m are the model's
    :meth:`~befa_viz.models.Recommender.content_user_vectors`. Because the score is linear in
    u_m, the mean over users is folded into one reference vector per item.

    Args:
        model: A multimodal recommender implementing ``content_user_vectors``.
        modality: Content modality.
        item_idx: Item index of each attributed item.
        users: The users U_i of each item: a user × item ``scipy.sparse`` matrix, an
            :class:`~befa_viz.data.Interactions` (pass the training split), or one sequence of
            user indices per item. ``None`` reads ``model.train_graph``.
    """

    name = "content_score"
    # Buffers: item index and mean user vector of each attributed item.
    item_idx: torch.Tensor
    ref: torch.Tensor

    def __init__(self, model: Recommender, modality: str, item_idx: Sequence[int] | torch.Tensor,
                 users: Any = None) -> None:
        _check_model(model, modality, self.name)
        idx = _as_index(item_idx, "item_idx")
        super().__init__(idx.numel())
        if users is None:
            users = getattr(model, "train_graph", None)
            if users is None:
                raise ConfigError(
                    f"Target {self.name!r} needs the items' training users; the model has no "
                    f"train_graph. Pass users=dataset.interactions.train()."
                )
        uv = _content_user_vectors(model, modality, self.name)  # [U, d]
        per_item = _users_of(users, idx, uv.shape[0])
        refs, counts = [], []
        for i, u in zip(idx.tolist(), per_item, strict=True):
            if u.size == 0:
                raise DataError(
                    f"Item index {i} has no training users, so {self.name!r} is undefined for it. "
                    f"Use target 'user_score' with a chosen user, or 'behaviour_alignment'."
                )
            refs.append(uv[torch.from_numpy(u).to(uv.device)].mean(0))
            counts.append(int(u.size))
        self.model = model
        self.modality = modality
        self.adapter = bool(getattr(model, "adapters", None))
        self.register_buffer("item_idx", idx)
        self.register_buffer("ref", torch.stack(refs))
        self.n_users_per_item = counts

    def embed(self, embeddings: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        items = self.item_idx.to(embeddings.device)[rows]
        return self.model.content_pathway(self.modality, embeddings, items)

    def reference(self, rows: torch.Tensor) -> torch.Tensor:
        return self.ref[rows]

    def describe(self) -> dict[str, Any]:
        return {"target": self.name, "modality": self.modality, "adapter": self.adapter,
                "item_idx": self.item_idx.tolist(), "n_users": self.n_users_per_item}


class UserScoreTarget(AttributionTarget):
    """s(u, i) as a function of item i's input: ⟨u_m, pathway(E(x))⟩ + const.

    This is a *local approximation* for backbones whose score is not a plain sum of an ID term
    and per-modality content terms (graph models propagate content through the item graph, so
    changing one item's feature also moves its neighbours): only item i's own content term
    varies with x, all other terms are frozen at their trained values. The constant is
    ``s(u, i) − ⟨u_m, pathway(c_i)⟩`` with the stored feature c_i, so the target equals the
    model's actual score at the stored feature (exact for VBPR-like models). It shifts the value
    but never the gradients.

    Args:
        model: A multimodal recommender implementing ``content_user_vectors`` and
            ``score_users``.
        modality: Content modality.
        item_idx: Item index of each attributed item.
        user_idx: The user of each item (one int for all, or one per item).
    """

    name = "user_score"
    # Buffers: item and user index, user vector u_m and score offset of each attributed item.
    item_idx: torch.Tensor
    user_idx: torch.Tensor
    ref: torch.Tensor
    const: torch.Tensor

    def __init__(self, model: Recommender, modality: str, item_idx: Sequence[int] | torch.Tensor,
                 user_idx: int | Sequence[int] | torch.Tensor) -> None:
        _check_model(model, modality, self.name)
        idx = _as_index(item_idx, "item_idx")
        users = _as_index(user_idx, "user_idx")
        if users.numel() == 1:
            users = users.expand(idx.numel()).clone()
        if users.numel() != idx.numel():
            raise ConfigError(
                f"user_idx has {users.numel()} entries for {idx.numel()} items; give one user "
                f"or one per item."
            )
        super().__init__(idx.numel())
        uv = _content_user_vectors(model, modality, self.name)
        if users.max() >= uv.shape[0] or users.min() < 0:
            raise ConfigError(f"user_idx {users.tolist()} out of range [0, {uv.shape[0]}).")
        dev = uv.device
        with torch.no_grad(), _eval_mode(model):
            try:
                full = model.score_users(users.to(dev))  # [B, n_items]
            except NotImplementedError:
                raise ConfigError(
                    f"{type(model).__name__} does not implement score_users(), which "
                    f"'user_score' needs."
                ) from None
            s = full[torch.arange(idx.numel(), device=dev), idx.to(dev)]
            content = model.item_content(modality)[idx.to(dev)]  # [B, d]
            const = s - (uv[users.to(dev)] * content).sum(-1)
        self.model = model
        self.modality = modality
        self.adapter = bool(getattr(model, "adapters", None))
        self.register_buffer("item_idx", idx)
        self.register_buffer("user_idx", users)
        self.register_buffer("ref", uv[users.to(dev)].clone())
        self.register_buffer("const", const.detach().float())

    def embed(self, embeddings: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        items = self.item_idx.to(embeddings.device)[rows]
        return self.model.content_pathway(self.modality, embeddings, items)

    def reference(self, rows: torch.Tensor) -> torch.Tensor:
        return self.ref[rows]

    def score(self, z: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return (z * ref).sum(-1)

    def forward(self, embeddings: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        r = self.rows(rows, embeddings.shape[0], embeddings.device)
        return self.score(self.embed(embeddings, r), self.reference(r)) + self.const[r]

    def describe(self) -> dict[str, Any]:
        return {"target": self.name, "modality": self.modality, "adapter": self.adapter,
                "item_idx": self.item_idx.tolist(), "user_idx": self.user_idx.tolist(),
                "approximation": "local: other items' content frozen"}


class RandomDirectionTarget(AttributionTarget):
    """⟨E(x), r⟩ for seeded random unit directions r: the target-randomisation control.

    Args:
        dim: Encoder output size D.
        seed: Seed of the directions.
        n_directions: Number of directions; embedding b uses direction ``rows[b] % n``.

    Example:
        >>> t = RandomDirectionTarget(4, seed=1)
        >>> t(torch.zeros(2, 4)).tolist()
        [0.0, 0.0]
    """

    name = "random"
    directions: torch.Tensor  # buffer: unit directions r, [n_directions, D]

    def __init__(self, dim: int, seed: int = 0, n_directions: int = 1) -> None:
        super().__init__(None)
        g = torch.Generator().manual_seed(int(seed))
        self.seed = int(seed)
        self.register_buffer("directions",
                             F.normalize(torch.randn(n_directions, dim, generator=g), dim=-1))

    def rows(self, rows: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        r = torch.arange(batch, device=device) if rows is None else rows.to(device).long()
        return r % self.directions.shape[0]

    def reference(self, rows: torch.Tensor) -> torch.Tensor:
        return self.directions[rows]

    def describe(self) -> dict[str, Any]:
        return {"target": self.name, "seed": self.seed,
                "n_directions": int(self.directions.shape[0])}


# -- registry: uniform factories --------------------------------------------------------------
# Every factory takes the same keyword context, so the CLI/app can build any target by name.
_Factory = Callable[..., AttributionTarget]


@TARGETS.register("content_focus")
def _content_focus(*, reference: torch.Tensor | None = None, **_: Any) -> AttributionTarget:
    if reference is None:
        raise ConfigError("Target 'content_focus' needs the items' embeddings E(x₀) (reference=).")
    return ContentFocusTarget(reference)


@TARGETS.register("behaviour_alignment")
def _behaviour_alignment(*, model: Any = None, modality: str = "image",
                         item_idx: Any = None, **_: Any) -> AttributionTarget:
    return BehaviourAlignmentTarget(model, modality, item_idx)


@TARGETS.register("content_score")
def _content_score(*, model: Any = None, modality: str = "image", item_idx: Any = None,
                   users: Any = None, **_: Any) -> AttributionTarget:
    return ContentScoreTarget(model, modality, item_idx, users=users)


@TARGETS.register("adapted_alignment")
def _adapted_alignment(*, model: Any = None, modality: str = "image", item_idx: Any = None,
                       users: Any = None, **_: Any) -> AttributionTarget:
    _check_model(model, modality, "adapted_alignment")
    if not getattr(model, "adapters", None):
        raise ConfigError(
            f"Target 'adapted_alignment' needs a model trained with the adapter; "
            f"{type(model).__name__} has none. Use 'content_score' (the same target without "
            f"the adapter) or 'behaviour_alignment'."
        )
    t = ContentScoreTarget(model, modality, item_idx, users=users)
    t.name = "adapted_alignment"
    return t


@TARGETS.register("user_score")
def _user_score(*, model: Any = None, modality: str = "image", item_idx: Any = None,
                user_idx: Any = None, **_: Any) -> AttributionTarget:
    if user_idx is None:
        raise ConfigError("Target 'user_score' needs a user (user_idx=, or --user in the CLI).")
    return UserScoreTarget(model, modality, item_idx, user_idx)


@TARGETS.register("random")
def _random(*, dim: int | None = None, seed: int = 0, item_idx: Any = None,
            **_: Any) -> AttributionTarget:
    if dim is None:
        raise ConfigError("Target 'random' needs the encoder's output size (dim=).")
    n = 1 if item_idx is None else int(_as_index(item_idx, "item_idx").numel())
    return RandomDirectionTarget(dim, seed=seed, n_directions=n)


def create_target(
    name: str,
    *,
    model: nn.Module | None = None,
    modality: str = "image",
    item_idx: Sequence[int] | torch.Tensor | None = None,
    reference: torch.Tensor | None = None,
    users: Any = None,
    user_idx: int | Sequence[int] | None = None,
    dim: int | None = None,
    seed: int = 0,
) -> AttributionTarget:
    """Build a registered target from the attribution context.

    Args:
        name: Name in :data:`TARGETS`.
        model: Trained recommender (all targets but ``content_focus`` and ``random``).
        modality: The model's content modality the encoder feeds.
        item_idx: Item index (in the model) of each attributed item.
        reference: Original embeddings E(x₀) ``[n, D]`` (``content_focus``).
        users: Training users per item (``content_score``/``adapted_alignment``).
        user_idx: User(s) for ``user_score``.
        dim: Encoder output size (``random``).
        seed: Seed (``random``: one direction per item, drawn from this seed).

    Returns:
        The target, with one row of parameters per item.

    Raises:
        UnknownNameError: If ``name`` is not registered.
        ConfigError: If the context lacks what the target needs.

    Example:
        >>> create_target("random", dim=8, item_idx=[0, 1]).directions.shape
        torch.Size([2, 8])
    """
    factory = TARGETS.get(name)
    if item_idx is None and name not in ("content_focus", "random"):
        raise ConfigError(f"Target {name!r} needs item_idx (the items' indices in the model).")
    return factory(model=model, modality=modality, item_idx=item_idx, reference=reference,
                   users=users, user_idx=user_idx, dim=dim, seed=seed)
