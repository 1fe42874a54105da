"""The training loop: BPR mini-batches with vectorised negatives, Adam, early stopping.

:func:`fit` knows nothing about files: it trains a built model on a dataset and calls back
after every epoch with a :class:`TrainState` that holds everything needed to resume (the numpy
generator, torch's RNG, the optimiser, the history). :func:`befa_viz.train.train` wraps it with
a run directory, checkpoints and provenance.
"""

from __future__ import annotations

import copy
import inspect
import logging
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from befa_viz.data.types import RecDataset
from befa_viz.distributed.context import active as _ddp_active
from befa_viz.errors import ConfigError, DataError
from befa_viz.train.config import TrainConfig
from befa_viz.train.evaluate import evaluate
from befa_viz.train.memory import retain_freed_memory
from befa_viz.train.sampling import NegativeSampler

if TYPE_CHECKING:
    from befa_viz.models.base import Recommender

__all__ = [
    "TrainState",
    "FitResult",
    "build_model",
    "check_dataset",
    "fit",
    "feature_drift",
    "gate_note",
    "gate_summary",
    "representation_summary",
]

log = logging.getLogger(__name__)

GATE_QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
#: Mean pairwise cosine of the final item representations above which a run is warned about
#: as collapsed (items pointing one way, so the ranking is left mostly to their norms). On
#: MovieLens-100k every BPR-trained backbone stays at ≤ 0.16 and BM3 reaches 0.83–0.85.
COLLAPSE_COSINE = 0.8
#: Quantiles of the per-item cosine between a fine-tuned feature table and the encoder output.
DRIFT_QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
#: A tail holding at least this share of the gate values makes the gate "bimodal".
BIMODAL_SHARE = 0.005
_GATE_HISTORY_KEYS = ("mean", "std", "frac_below_0.1", "frac_above_0.9")
#: Devices with a fused Adam kernel in torch ≥ 2.4 (elsewhere the per-step implementation).
_FUSED_ADAM_DEVICES = ("cpu", "cuda")


@dataclass
class TrainState:
    """Everything :func:`fit` needs to continue exactly where it stopped.

    Attributes:
        epoch: Epochs completed.
        rng_state: ``numpy.random.Generator.bit_generator.state`` after ``epoch``.
        torch_rng: ``torch.get_rng_state()`` after ``epoch`` (dropout, ...).
        optimizer: ``torch.optim.Adam.state_dict()`` after ``epoch``.
        history: One record per epoch (loss, seconds, validation metrics when evaluated).
        best_epoch: Epoch of the best validation metric so far (0: none yet).
        best_value: Best validation metric so far.
        best_valid: All validation metrics at ``best_epoch``.
        bad_evals: Evaluations since the last improvement.
        stopped_early: Whether patience ran out.
    """

    epoch: int = 0
    rng_state: dict[str, Any] | None = None
    torch_rng: torch.Tensor | None = None
    optimizer: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_value: float = float("-inf")
    best_valid: dict[str, float] = field(default_factory=dict)
    bad_evals: int = 0
    stopped_early: bool = False


@dataclass
class FitResult:
    """What :func:`fit` returns; the model holds the best weights when it returns."""

    state: TrainState
    best_weights: dict[str, torch.Tensor]
    test: dict[str, float]
    gate: dict[str, dict[str, float]]
    train_seconds: float
    eval_seconds: float
    representations: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Per modality, cos(fine-tuned table, encoder output) per item (``train_features`` only).
    feature_cosine: dict[str, np.ndarray] = field(default_factory=dict)
    #: Test metrics of the most-popular baseline on the same split.
    most_popular: dict[str, float] = field(default_factory=dict)
    #: One line per problem found at the end of training (also issued as warnings).
    warnings: list[str] = field(default_factory=list)


def check_dataset(dataset: RecDataset) -> None:
    """Refuse datasets that cannot be trained and evaluated the MMRec way."""
    split = dataset.interactions.split
    for code, name in ((0, "training"), (1, "validation"), (2, "test")):
        if not (split == code).any():
            raise DataError(
                f"Dataset {dataset.name!r} has an empty {name} split (no interaction with split "
                f"label {code}); split it first, e.g. 'befa-viz data split'."
            )


def _check_device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"Config 'device' {device!r} is not a torch device ({e}).") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"Config 'device' is {device!r} but CUDA is not available; use 'cpu'.")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"Config 'device' is {device!r} but MPS is not available; use 'cpu'.")
    return dev


def build_model(
    config: TrainConfig, dataset: RecDataset, features: Mapping[str, np.ndarray]
) -> Recommender:
    """Create the backbone of ``config`` for ``dataset`` (seeded, on ``config.device``).

    Args:
        config: Training configuration (model, adapter, dim, model_params, seed, device).
        dataset: Provides the counts and the training graph.
        features: Raw content features per modality (ignored by behaviour-only backbones).

    Raises:
        UnknownNameError: If the model is not registered.
        ConfigError: If a model parameter is unknown, a required modality is missing, or the
            adapter is asked of a behaviour-only backbone (raised by the model).
    """
    from befa_viz.models import MODELS

    cls = MODELS.get(config.model)
    device = _check_device(config.device)
    sig = inspect.signature(cls)
    own = [n for n, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY or
           p.kind is p.POSITIONAL_OR_KEYWORD]
    reserved = {"n_users", "n_items", "features", "adapter", "adapter_kwargs", "dim",
                "train_graph", "train_features"}
    for k in config.model_params:
        if k in reserved:
            raise ConfigError(
                f"model_params.{k} is set by the trainer; use the top-level config key instead "
                f"({'adapter_*' if k.startswith('adapter') else k})."
            )
        if k not in own:
            from befa_viz.registry import closest

            near = closest(k, [n for n in own if n not in reserved])
            hint = f" Did you mean {near[0]!r}?" if near else ""
            valid = ", ".join(n for n in own if n not in reserved) or "none"
            raise ConfigError(
                f"Unknown model_params key {k!r} for {config.model!r}.{hint} Its parameters: "
                f"{valid}."
            )
    torch.manual_seed(config.seed)
    model = MODELS.create(
        config.model,
        n_users=dataset.n_users,
        n_items=dataset.n_items,
        features=dict(features),
        adapter=None if config.adapter == "none" else config.adapter,
        adapter_kwargs=config.adapter_kwargs(),
        dim=config.dim,
        train_graph=dataset.interactions.train().csr(),
        **({"train_features": True} if config.train_features else {}),
        **config.model_params,
    )
    return model.to(device)


@torch.no_grad()
def gate_summary(model: torch.nn.Module) -> dict[str, dict[str, float]]:
    """Distribution of the adapter gate over all items and dimensions, per modality.

    Empty without an adapter. A gate pinned near 1 means the adapter passes the behaviour
    embedding through unchanged (a finding worth reporting, see DESIGN.md).
    """
    adapters = getattr(model, "adapters", None)
    if not adapters:
        return {}
    was_training = model.training
    model.eval()
    out: dict[str, dict[str, float]] = {}
    try:
        rec = cast("Recommender", model)  # a model with adapters is a Recommender
        for m in rec.modalities:
            gate = rec.gate(m, rec.raw_features(m)).float()  # [I, d]
            g = gate.flatten()
            q = torch.quantile(g.cpu(), torch.tensor(GATE_QUANTILES))
            out[m] = {
                "mean": float(g.mean()), "std": float(g.std()),
                **{f"q{int(p * 100):02d}": float(v)
                   for p, v in zip(GATE_QUANTILES, q, strict=True)},
                "frac_above_0.9": float((g > 0.9).float().mean()),
                "frac_below_0.1": float((g < 0.1).float().mean()),
                # items with at least one (nearly) closed dimension
                "items_any_below_0.1": float((gate < 0.1).any(dim=1).float().mean()),
            }
    finally:
        model.train(was_training)
    return out


def gate_note(stats: Mapping[str, float]) -> str:
    """One line describing a gate distribution from :func:`gate_summary`.

    Says "bimodal" when both tails (< 0.1 and > 0.9) hold at least ``BIMODAL_SHARE`` of the
    gate values, "pinned near 1" when the 5th percentile is above 0.95.

    Example:
        >>> gate_note({"mean": 0.95, "q05": 0.2, "frac_below_0.1": 0.016,
        ...            "frac_above_0.9": 0.9, "items_any_below_0.1": 0.3})
        'bimodal: 1.6 % of gate values < 0.1 (on 30.0 % of items), 90.0 % > 0.9; mean 0.950'
    """
    low, high = stats["frac_below_0.1"], stats["frac_above_0.9"]
    mean = f"mean {stats['mean']:.3f}"
    if low >= BIMODAL_SHARE and high >= BIMODAL_SHARE:
        items = stats.get("items_any_below_0.1")
        on = f" (on {100 * items:.1f} % of items)" if items is not None else ""
        return (f"bimodal: {100 * low:.1f} % of gate values < 0.1{on}, {100 * high:.1f} % > 0.9;"
                f" {mean}")
    if stats["q05"] > 0.95:
        return f"pinned near 1: 5th percentile {stats['q05']:.3f}; {mean}"
    return f"unimodal: {100 * low:.1f} % < 0.1, {100 * high:.1f} % > 0.9; {mean}"


@torch.no_grad()
def feature_drift(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """Per modality, cos(fine-tuned feature row, encoder output row) per item.

    Empty unless the model fine-tunes its feature tables (``train_features``). The
    attribution maps explain the encoder output; this says how far the table the model
    actually scored with has moved from it.
    """
    from befa_viz.models.base import Recommender

    if not isinstance(model, Recommender) or not model.train_features:
        return {}
    return {m: model.feature_cosine(m).cpu().numpy().astype(np.float32)
            for m in model.modalities}


def drift_summary(cosine: np.ndarray) -> dict[str, float]:
    """Mean, min and quantiles of a per-item cosine array."""
    q = np.quantile(cosine, DRIFT_QUANTILES)
    return {"mean": float(cosine.mean()),
            **{f"q{round(p * 100):02d}": float(v) for p, v in zip(DRIFT_QUANTILES, q, strict=True)},
            "min": float(cosine.min())}


def _spread(x: torch.Tensor) -> dict[str, float]:
    """Mean pairwise cosine (self-pairs excluded) and effective rank of the rows of ``x``."""
    x = x.detach().float().cpu()
    n, d = x.shape
    xn = torch.nn.functional.normalize(x, dim=1)
    s = xn.sum(0)  # Σ_ij cos(x_i, x_j) = ‖Σ_i x̂_i‖², in O(n·d) instead of O(n²·d)
    mean_cos = float((s @ s - n) / max(n * (n - 1), 1))
    sv = torch.linalg.svdvals(x - x.mean(0))
    p = sv / sv.sum().clamp_min(1e-12)
    erank = float(torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum()))
    return {"mean_cosine": mean_cos, "effective_rank": erank, "dim": float(d)}


@torch.no_grad()
def representation_summary(
    model: torch.nn.Module, sides: tuple[str, ...] = ("users", "items")
) -> dict[str, dict[str, float]]:
    """How spread out the final user and item representations are.

    ``mean_cosine`` is the mean cosine similarity over all pairs of distinct rows; close to 1
    means the representations have collapsed onto one direction (the ranking then mostly
    follows their norms, i.e. popularity). ``effective_rank`` is exp(entropy) of the centred
    matrix's normalised singular values (Roy & Vetterli, 2007): how many directions carry the
    variation, out of ``dim``. Self-supervised objectives without negatives (BM3) can collapse.
    ``sides`` picks which of ``"users"`` and ``"items"`` to summarise (the trainer tracks only
    the items at every evaluation).

    Example:
        >>> from befa_viz.testing import toy_dataset
        >>> ds = toy_dataset()
        >>> m = build_model(TrainConfig(model="bprmf", dim=4), ds, {})
        >>> sorted(representation_summary(m)["items"])
        ['dim', 'effective_rank', 'mean_cosine']
    """
    from befa_viz.models.base import Recommender

    if not isinstance(model, Recommender) or (
        type(model).compute_embeddings is Recommender.compute_embeddings
    ):  # a model that scores without user/item embeddings: nothing to summarise
        return {}
    was_training = model.training
    model.eval()
    try:
        users, items = model.final_embeddings()
    finally:
        model.train(was_training)
    final = {"users": users, "items": items}
    return {side: _spread(final[side]) for side in sides}


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def fit(
    model: Recommender,
    dataset: RecDataset,
    config: TrainConfig,
    *,
    state: TrainState | None = None,
    best_weights: Mapping[str, torch.Tensor] | None = None,
    progress: bool = False,
    on_epoch_end: Callable[[TrainState, torch.nn.Module, bool], None] | None = None,
) -> FitResult:
    """Train ``model`` on ``dataset``'s training split with BPR triples and early stopping.

    Every epoch shuffles the training pairs and draws one negative per pair from a numpy
    generator seeded with ``config.seed``; the model's own ``loss`` (BPR plus its auxiliary
    losses) is minimised with (fused) Adam. Every ``eval_every`` epochs the validation split is
    evaluated; the best epoch by ``config.metric`` is kept and training stops after
    ``patience`` evaluations without improvement. The test split is evaluated once, with
    the best weights. Training keeps freed tensor memory in the process for reuse
    (:func:`befa_viz.train.memory.retain_freed_memory`, glibc only).

    Args:
        model: A built recommender (see :func:`build_model`).
        dataset: The dataset, with train/valid/test splits.
        config: Training configuration.
        state: Resume from this state (the model must hold the weights of ``state.epoch``).
        best_weights: Weights of ``state.best_epoch`` when resuming.
        progress: Show a tqdm progress bar with the loss and validation metric.
        on_epoch_end: Called as ``on_epoch_end(state, model, improved)`` after each epoch
            (checkpointing); an exception raised there stops training.

    Returns:
        The final state, the best weights (also loaded into ``model``), the test metrics at
        the best epoch and the adapter gate distribution there.
    """
    check_dataset(dataset)
    retain_freed_memory()  # batches reuse freed tensor memory instead of faulting it in again
    inter = dataset.interactions
    train = inter.train()
    users, items = train.user_idx, train.item_idx
    sampler = NegativeSampler(users, items, inter.n_users, inter.n_items)
    device = next(iter(model.parameters())).device
    params = [p for p in model.parameters() if p.requires_grad]
    # Fused Adam: the same update in one pass per tensor instead of one per arithmetic step,
    # which matters for fine-tuned feature tables (millions of entries, updated every batch).
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay,
                                 fused=device.type in _FUSED_ADAM_DEVICES or None)
    ddp = _ddp_active()  # inside a befa_viz.distributed.train_ddp worker: its hooks
    if ddp is not None:
        state = ddp.start(model, state)
    rng = np.random.default_rng(config.seed)
    if state is None:
        state = TrainState()
        best = _weights(model)
    else:
        if state.rng_state is not None:
            rng.bit_generator.state = state.rng_state
        if state.torch_rng is not None:
            torch.set_rng_state(state.torch_rng)
        if state.optimizer is not None:
            optimizer.load_state_dict(state.optimizer)
        best = dict(best_weights) if best_weights is not None else _weights(model)
    eval_kw: dict[str, Any] = {"batch_size": config.eval_batch_size, "ks": config.topk}
    train_seconds = sum(h.get("seconds", 0.0) for h in state.history)
    eval_seconds = sum(h.get("eval_seconds", 0.0) for h in state.history)

    bar = None
    if progress and (ddp is None or ddp.is_main):
        from tqdm.auto import tqdm

        bar = tqdm(total=config.epochs, initial=state.epoch, desc=config.model, unit="epoch")
    try:
        epoch = state.epoch
        while epoch < config.epochs and not state.stopped_early:
            epoch += 1
            model.train()
            on_epoch_start = getattr(model, "on_epoch_start", None)
            if on_epoch_start is not None:  # e.g. FREEDOM resamples its pruned graph
                on_epoch_start()
            for group in optimizer.param_groups:  # MMRec's LambdaLR: γ^(epoch / n), 0-based
                group["lr"] = config.lr * config.lr_decay ** ((epoch - 1) / config.lr_decay_epochs)
            t0 = time.perf_counter()
            total, n_batches = 0.0, 0
            for u, p, n in sampler.epoch(users, items, config.batch_size, rng):
                w = 1.0
                if ddp is not None:  # this rank's share of the batch, weighted by its size
                    u, p, n, w = ddp.shard(u, p, n)
                loss = model.loss(torch.from_numpy(u).to(device), torch.from_numpy(p).to(device),
                                  torch.from_numpy(n).to(device))
                if not torch.isfinite(loss):
                    raise ConfigError(
                        f"The loss of {config.model!r} became {float(loss)} at epoch {epoch}, "
                        f"batch {n_batches + 1}; lower lr (now {config.lr}) or the "
                        "regularisation weights."
                    )
                optimizer.zero_grad(set_to_none=True)
                (loss * w).backward()
                if ddp is not None:
                    ddp.sync_grads(params)
                optimizer.step()
                total += float(loss.detach()) * w
                n_batches += 1
            if ddp is not None:
                total = ddp.reduce_sum(total)
            record: dict[str, Any] = {"epoch": epoch, "loss": total / max(n_batches, 1),
                                      "seconds": time.perf_counter() - t0}
            train_seconds += record["seconds"]
            improved = False
            if (epoch % config.eval_every == 0 or epoch == config.epochs) and \
                    (ddp is None or ddp.is_main):  # DDP: rank 0 evaluates and decides
                t1 = time.perf_counter()
                model.eval()  # stays in eval mode: the spread reuses evaluation's embeddings
                valid = evaluate(model, inter, "valid", **eval_kw)
                spread = representation_summary(model, ("items",))
                record["eval_seconds"] = time.perf_counter() - t1
                eval_seconds += record["eval_seconds"]
                record["valid"] = valid
                if spread:  # collapse shows up here long before it shows in the metric
                    record["item_mean_cosine"] = spread["items"]["mean_cosine"]
                    record["item_effective_rank"] = spread["items"]["effective_rank"]
                gate_now = gate_summary(model)
                if gate_now:  # saturation builds up over training: keep its trajectory
                    record["gate"] = {m: {k: g[k] for k in _GATE_HISTORY_KEYS}
                                      for m, g in gate_now.items()}
                drift_now = feature_drift(model)
                if drift_now:
                    record["feature_cosine"] = {m: float(c.mean()) for m, c in drift_now.items()}
                value = valid[config.metric]
                if value > state.best_value:
                    improved = True
                    state.best_value, state.best_epoch, state.best_valid = value, epoch, valid
                    state.bad_evals = 0
                    best = _weights(model)
                else:
                    state.bad_evals += 1
                    state.stopped_early = state.bad_evals >= config.patience
                log.info("epoch %d loss %.4f valid %s %.4f%s", epoch, record["loss"],
                         config.metric, value, " *" if improved else "")
            if ddp is not None:
                ddp.end_epoch(state)
            state.history.append(record)
            state.epoch = epoch
            # a dict at run time; numpy's stubs type the state as a Mapping
            state.rng_state = cast(dict[str, Any], copy.deepcopy(rng.bit_generator.state))
            state.torch_rng = torch.get_rng_state()
            state.optimizer = optimizer.state_dict()
            if bar is not None:
                post = {"loss": f"{record['loss']:.4f}"}
                if "valid" in record:
                    post[config.metric] = f"{record['valid'][config.metric]:.4f}"
                post["best"] = f"{state.best_value:.4f}@{state.best_epoch}"
                bar.set_postfix(post)
                bar.update(1)
            if on_epoch_end is not None and (ddp is None or ddp.is_main):
                on_epoch_end(state, model, improved)
    finally:
        if bar is not None:
            bar.close()
    if ddp is not None and not ddp.is_main:  # rank 0 alone tests, summarises and saves
        return FitResult(state, _weights(model), {}, {}, train_seconds, eval_seconds)

    if state.best_epoch == 0:  # nothing evaluated (epochs=0): the current weights are "best"
        t1 = time.perf_counter()
        state.best_valid = evaluate(model, inter, "valid", **eval_kw)
        eval_seconds += time.perf_counter() - t1
        state.best_value = state.best_valid[config.metric]
        state.best_epoch = state.epoch
        best = _weights(model)
    model.load_state_dict(best)
    t1 = time.perf_counter()
    test = evaluate(model, inter, "test", mask_valid=config.mask_valid_in_test, **eval_kw)
    eval_seconds += time.perf_counter() - t1
    from befa_viz.metrics import MostPopular

    pop = evaluate(MostPopular(inter.train().csr()), inter, "test",
                   mask_valid=config.mask_valid_in_test, **eval_kw)
    problems: list[str] = []
    if test[config.metric] <= pop[config.metric] < 1.0:  # at the ceiling nothing is below
        problems.append(
            f"{config.model!r} (adapter {config.adapter}) ends at test {config.metric} "
            f"{test[config.metric]:.4f}, at or below the most-popular baseline "
            f"({pop[config.metric]:.4f}): it learned nothing personal. Check lr and the "
            "regularisation weights (e.g. model_params.reg_weight) on validation.")
        warnings.warn(problems[-1], stacklevel=2)
    gate = gate_summary(model)
    for m, g in gate.items():
        log.info("BeFA gate (%s): %s", m, gate_note(g))
    pinned = [m for m, g in gate.items() if g["q05"] > 0.95]
    if pinned:
        warnings.warn(
            f"The BeFA gate of {config.model!r} is pinned near 1 for {', '.join(pinned)} (5th "
            f"percentile > 0.95): the adapter passes the behaviour embedding through almost "
            "unchanged. Consider adapter_gate_bias < 0, adapter_temperature, "
            "adapter_params.gate_reg or a lower lr.", stacklevel=2)
    cosine = feature_drift(model)
    reps = representation_summary(model)
    if reps and reps["items"]["mean_cosine"] > COLLAPSE_COSINE:
        warnings.warn(
            f"The item representations of {config.model!r} have collapsed at the best epoch "
            f"(mean pairwise cosine {reps['items']['mean_cosine']:.2f}, effective rank "
            f"{reps['items']['effective_rank']:.1f} of {reps['items']['dim']:.0f}): items differ "
            "mostly by norm, so the ranking is close to popularity. Negative-free objectives "
            "(BM3) do this; try a lower lr, a weaker auxiliary loss or another backbone.",
            stacklevel=2)
    return FitResult(state, best, test, gate, train_seconds, eval_seconds, reps,
                     feature_cosine=cosine, most_popular=pop, warnings=problems)
