"""Recommender base class: ID embeddings, per-modality content projections, optional adapter.

Every backbone reads item content only through :meth:`Recommender.item_content`, which
projects the raw features and, when the model was built with ``adapter="befa"``, applies the
:class:`~befa_viz.models.adapter.BehaviorAdapter` with the item's ID embedding. The same
computation is exposed for arbitrary feature tensors as :meth:`Recommender.content_pathway`, so
attribution can differentiate from an encoder's output through the model.

With ``train_features=True`` (backbones whose MMRec / official versions fine-tune the raw
feature tables: ``supports_train_features``) the tables are parameters initialised with the
encoder output, which is kept beside them (:meth:`Recommender.encoder_features`). Attribution
still explains the encoder-output path (``content_pathway`` of E(x)); how far the table the
model scored with moved from E(x) is :meth:`Recommender.feature_cosine`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from befa_viz.errors import ConfigError
from befa_viz.models.adapter import ADAPTERS, GatedAdapter
from befa_viz.registry import Registry

__all__ = ["MODELS", "Recommender"]

MODELS: Registry[Recommender] = Registry("model")


class Recommender(nn.Module):
    """Base of all backbones.

    Args:
        n_users: Number of users.
        n_items: Number of items.
        features: Raw content features per modality, ``[n_items, D_m]`` each: the encoder
            output (kept frozen unless ``train_features``).
        adapter: ``None``/``"none"`` for the plain backbone, or a name in ``ADAPTERS``.
        adapter_kwargs: Keyword arguments for the adapter (``n_layers``, ``dropout``, ...).
        dim: Embedding size d.
        train_graph: Binary user × item training matrix (``scipy.sparse``), for graph models.
        train_features: Fine-tune the raw feature tables as MMRec (FREEDOM, BM3, MGCN,
            LATTICE: ``nn.Embedding.from_pretrained(freeze=False)``) and the official BeFA code
            do. Only for backbones with ``supports_train_features``. The fine-tuned tables are
            saved with the weights; graphs built from the features at construction (kNN) use
            the encoder output, as in MMRec.
    """

    #: Whether the backbone uses content features (False for BPR-MF and LightGCN).
    multimodal: ClassVar[bool] = True
    #: Modalities the backbone requires (empty: any number ≥ 1).
    required_modalities: ClassVar[tuple[str, ...]] = ()
    #: Whether the backbone's reference implementation fine-tunes the raw feature tables.
    supports_train_features: ClassVar[bool] = False

    def __init__(
        self,
        n_users: int,
        n_items: int,
        *,
        features: Mapping[str, torch.Tensor | np.ndarray] | None = None,
        adapter: str | None = None,
        adapter_kwargs: Mapping[str, Any] | None = None,
        dim: int = 64,
        train_graph: Any = None,
        train_features: bool = False,
    ) -> None:
        super().__init__()
        self.n_users, self.n_items, self.dim = int(n_users), int(n_items), int(dim)
        features = dict(features or {})
        adapter = None if adapter in (None, "", "none") else adapter
        name = type(self).__name__
        if not self.multimodal:
            if adapter is not None:
                raise ConfigError(
                    f"{name} is a behaviour-only backbone: it has no content pathway for the "
                    f"adapter {adapter!r}. Use adapter='none' or a multimodal backbone."
                )
            features = {}
        elif not features:
            raise ConfigError(f"{name} needs at least one content modality; got no features.")
        for m in self.required_modalities:
            if m not in features:
                raise ConfigError(
                    f"{name} needs the {m!r} modality; features given: {sorted(features)}."
                )
        if train_features and not (self.multimodal and self.supports_train_features):
            able = ", ".join(c.__name__ for c in _subclasses(Recommender)
                             if c.supports_train_features) or "none"
            raise ConfigError(
                f"{name} does not train its feature tables (its reference implementation keeps "
                f"them fixed); train_features=True is for: {able}. Use train_features=False."
            )
        self.train_features = bool(train_features)
        self.modalities: list[str] = sorted(features)
        for m, f in features.items():
            t = torch.as_tensor(np.asarray(f) if not isinstance(f, torch.Tensor) else f).float()
            if t.ndim != 2 or t.shape[0] != self.n_items:
                raise ConfigError(
                    f"Features for {m!r} have shape {tuple(t.shape)}; expected "
                    f"[{self.n_items}, D] (one row per item)."
                )
            if not torch.isfinite(t).all():
                raise ConfigError(f"Features for {m!r} contain NaN or inf values.")
            if self.train_features:  # fine-tuned copy (saved with the weights) + the original
                self.register_parameter(f"feat_{m}", nn.Parameter(t.clone()))
                self.register_buffer(f"encoder_feat_{m}", t, persistent=False)
            else:
                self.register_buffer(f"feat_{m}", t, persistent=False)
        self.adapter_name = adapter
        self.adapter_kwargs = dict(adapter_kwargs or {})
        self.projections = nn.ModuleDict(
            {m: nn.Linear(self.raw_features(m).shape[1], self.dim) for m in self.modalities}
        )
        self.adapters = nn.ModuleDict(
            {m: ADAPTERS.create(adapter, dim=self.dim, **self.adapter_kwargs)
             for m in self.modalities} if adapter else {}
        )
        self.train_graph = train_graph
        self._eval_cache: tuple[Any, tuple[torch.Tensor, torch.Tensor]] | None = None

    # -- content pathway -----------------------------------------------------------------
    def raw_features(self, modality: str) -> torch.Tensor:
        """The raw feature table ``[n_items, D_m]`` the model scores with.

        The encoder output (a buffer), or with ``train_features`` its fine-tuned copy (a
        parameter).
        """
        if modality not in self.modalities:
            raise ConfigError(
                f"{type(self).__name__} has no modality {modality!r}; it was built with "
                f"{self.modalities or 'no content features'}."
            )
        return cast(torch.Tensor, getattr(self, f"feat_{modality}"))

    def feature_rows(self, modality: str, item_idx: torch.Tensor) -> torch.Tensor:
        """Rows ``item_idx`` of :meth:`raw_features`, ``[B, D_m]``.

        An embedding lookup: with ``train_features`` its backward adds the batch's gradient
        rows into the table's gradient with one ``index_add_`` (advanced indexing's backward
        takes a slower accumulating ``index_put_`` to the same sums).
        """
        return F.embedding(item_idx, self.raw_features(modality))

    def encoder_features(self, modality: str) -> torch.Tensor:
        """The encoder output ``[n_items, D_m]`` the model was built with (never trained)."""
        table = self.raw_features(modality)
        if not self.train_features:
            return table
        return cast(torch.Tensor, getattr(self, f"encoder_feat_{modality}"))

    @torch.no_grad()
    def feature_cosine(self, modality: str) -> torch.Tensor:
        """Per item, cos(fine-tuned table row, encoder output row), ``[n_items]``.

        All ones when the features are frozen. An all-zero row on either side counts as
        cosine 1 if both rows are zero and 0 otherwise.
        """
        table, enc = self.raw_features(modality).float(), self.encoder_features(modality).float()
        if table is enc:
            return torch.ones(self.n_items, device=table.device)
        cos = torch.nn.functional.cosine_similarity(table, enc, dim=1, eps=1e-12)
        both_zero = (table.abs().sum(1) == 0) & (enc.abs().sum(1) == 0)
        return torch.where(both_zero, torch.ones_like(cos), cos)

    def behaviour_embedding(self, item_idx: torch.Tensor) -> torch.Tensor:
        """Behavioural (ID) embedding e_i used by the adapter, ``[B, d]``.

        Subclasses with a differently named item embedding override this.
        """
        return cast(nn.Module, self.item_emb)(item_idx)  # set by subclasses

    def content_pathway(
        self, modality: str, content: torch.Tensor, item_idx: torch.Tensor
    ) -> torch.Tensor:
        """Map raw content ``[B, D_m]`` of items ``item_idx`` to the representation the score
        uses, ``[B, d]``: ċ without the adapter, g(ċ) ⊙ e with it."""
        self.raw_features(modality)  # validates the modality name
        projected = self.projections[modality](content)
        if not self.adapters:
            return projected
        return self.adapters[modality](projected, self.behaviour_embedding(item_idx))

    def batch_content(self, modality: str, item_idx: torch.Tensor) -> torch.Tensor:
        """``content_pathway`` of the items' own feature rows, ``[B, d]``, projecting each
        distinct item of ``item_idx`` once.

        A training batch repeats popular items: the projection (the D_m → d product and, with
        ``train_features``, the feature table's gradient) runs over the distinct items and its
        rows are repeated; the adapter still sees every row, as ``content_pathway`` does.
        """
        uniq, inverse = torch.unique(item_idx, return_inverse=True)
        projected = self.projections[modality](self.feature_rows(modality, uniq))[inverse]
        if not self.adapters:
            return projected
        return self.adapters[modality](projected, self.behaviour_embedding(item_idx))

    def gate(self, modality: str, content: torch.Tensor) -> torch.Tensor:
        """The adapter's gate for raw content ``[B, D_m]`` (only with an adapter)."""
        if not self.adapters:
            raise ConfigError("This model was trained without an adapter; it has no gate.")
        self.raw_features(modality)  # validates the modality name
        adapter = cast(GatedAdapter, self.adapters[modality])
        return adapter.gate(self.projections[modality](content))

    def item_content(self, modality: str) -> torch.Tensor:
        """Content representation of every item, ``[n_items, d]``."""
        idx = torch.arange(self.n_items, device=self.raw_features(modality).device)
        return self.content_pathway(modality, self.raw_features(modality), idx)

    def content_user_vectors(self, modality: str) -> torch.Tensor:
        """User-side vectors ``[n_users, d]`` that the content representation is scored
        against (exactly for VBPR-like models, a documented approximation for graph models)."""
        self.raw_features(modality)  # behaviour-only models: a ConfigError naming the problem
        raise NotImplementedError(f"{type(self).__name__} does not define content_user_vectors.")

    def gate_penalty(self, item_idx: torch.Tensor) -> torch.Tensor:
        """Σ_m of the adapters' gate penalties on the items ``item_idx`` (0 without one).

        The adapter's ``gate_reg`` (0 by default, as in the paper) weights an L1 penalty on the
        mean gate, or with ``gate_target`` a budget (mean gate − target)²; it pushes the gate
        away from the all-ones no-op that a plain BPR objective settles in.
        """
        total = torch.zeros((), device=item_idx.device)
        for m, adapter in self.adapters.items():
            if float(getattr(adapter, "gate_reg", 0.0)) > 0:
                g = self.gate(m, self.feature_rows(m, item_idx))
                total = total + cast(GatedAdapter, adapter).penalty(g)
        return total

    # -- training / scoring -----------------------------------------------------------------
    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """Training loss for a batch of (user, positive item, negative item) triples.

        The backbone's own objective (:meth:`backbone_loss`: BPR, auxiliary losses and
        regularisation) plus the adapter's optional gate penalty.
        """
        loss = self.backbone_loss(users, pos, neg)
        if self.adapters:
            loss = loss + self.gate_penalty(torch.cat([pos, neg]))
        return loss

    def backbone_loss(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
    ) -> torch.Tensor:
        """The backbone's objective for a batch of triples (implemented by subclasses)."""
        raise NotImplementedError

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user and item representations, ``[n_users, d']`` and ``[n_items, d']``.

        Scores are their inner products. In eval mode under ``torch.no_grad()`` the result is
        cached (see :meth:`prepare_eval`); otherwise it is recomputed on every call.
        """
        if self.training or torch.is_grad_enabled():  # gradients wanted: never serve the cache
            return self.compute_embeddings()
        if self._eval_cache is None or not self._cache_valid():
            self.prepare_eval()
        assert self._eval_cache is not None
        return self._eval_cache[1]

    def compute_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute the final user and item representations (implemented by subclasses)."""
        raise NotImplementedError

    @torch.no_grad()
    def prepare_eval(self) -> None:
        """Compute the final embeddings once per evaluation and cache them (eval mode only).

        The cache is keyed on every parameter's and buffer's storage and version counter, so
        an optimiser step, ``load_state_dict`` or ``.to(device)`` invalidates it; switching to
        training mode drops it. Backbones without :meth:`compute_embeddings` make this a no-op.
        """
        if self.training or type(self).compute_embeddings is Recommender.compute_embeddings:
            self._eval_cache = None
            return
        self._eval_cache = (self._state_key(), self.compute_embeddings())

    def _state_key(self) -> tuple[tuple[int, int], ...]:
        # Sparse buffers (graphs) are derived data with no storage pointer; they only change
        # with .to(), which moves the parameters too.
        return tuple(
            (t.data_ptr(), t._version)
            for t in (*self.parameters(), *self.buffers())
            if t.layout == torch.strided
        )

    def _cache_valid(self) -> bool:
        return self._eval_cache is not None and self._eval_cache[0] == self._state_key()

    # -- copying and pickling ---------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """The module's state with its CSR graph buffers as COO (``copy.deepcopy`` and pickle
        cannot copy sparse CSR tensors); :meth:`__setstate__` turns them back into CSR."""
        state = self.__dict__.copy()
        buffers = dict(state["_buffers"])
        csr = [k for k, v in buffers.items()
               if isinstance(v, torch.Tensor) and v.layout == torch.sparse_csr]
        for k in csr:
            buffers[k] = buffers[k].to_sparse_coo()
        state["_buffers"], state["_csr_buffers"] = buffers, csr
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        csr = state.pop("_csr_buffers", [])
        super().__setstate__(state)
        with warnings.catch_warnings():  # CSR is "beta" in torch; we only multiply with it
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            for k in csr:
                self._buffers[k] = cast(torch.Tensor, self._buffers[k]).to_sparse_csr()

    def train(self, mode: bool = True) -> Recommender:
        if mode:  # training invalidates the cache; eval() keeps it (it is keyed on the weights)
            self._eval_cache = None
        return super().train(mode)

    def on_epoch_start(self) -> None:
        """Hook the trainer calls before every training epoch (no-op by default).

        FREEDOM resamples its pruned user-item graph here and LATTICE rebuilds its learned
        item graph (with gradients on the first batch), as MMRec's ``pre_epoch_processing``.
        """

    def score_users(self, user_idx: torch.Tensor) -> torch.Tensor:
        """Scores of every item for the given users, ``[B, n_items]``."""
        users, items = self.final_embeddings()
        return users[user_idx] @ items.T  # [B, I]

    def user_embeddings(self) -> torch.Tensor:
        """Final user representations ``[n_users, d']``."""
        return self.final_embeddings()[0]

    def item_embeddings(self) -> torch.Tensor:
        """Final item representations ``[n_items, d']``."""
        return self.final_embeddings()[1]


def _subclasses(cls: type[Recommender]) -> list[type[Recommender]]:
    """Every (indirect) subclass of ``cls``, sorted by name."""
    out, todo = set(), list(cls.__subclasses__())
    while todo:
        c = todo.pop()
        out.add(c)
        todo.extend(c.__subclasses__())
    return sorted(out, key=lambda c: c.__name__)
