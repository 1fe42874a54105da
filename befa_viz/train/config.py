"""The training configuration and how it is resolved from defaults, YAML files and overrides.

Precedence is defaults < the backbone's YAML (``befa_viz/configs/<model>.yaml``) < the user's
config file < command-line overrides (``key=value``). Mapping fields (``model_params``,
``adapter_params``, ``features``) merge across sources, and dotted keys address one entry:
``model_params.reg_weight=1e-3``. A ``sweep:`` section is only accepted by the sweep loader.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from befa_viz.cache import hash_key
from befa_viz.config import config_to_dict, load_config, parse_override, read_yaml
from befa_viz.errors import ConfigError

__all__ = [
    "CONFIGS_DIR",
    "TrainConfig",
    "load_train_config",
    "model_config_path",
    "merge_sources",
    "parse_overrides",
]

CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"
_MAPPING_FIELDS = ("model_params", "adapter_params", "features")
# Fields that may change between an interrupted run and its resumption without changing what
# is being trained (more epochs, another device, another evaluation batch size).
RESUMABLE_FIELDS = ("epochs", "device", "eval_batch_size")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (written to the run as ``config.yaml``).

    Example:
        >>> cfg = load_config(TrainConfig, {"model": "vbpr", "adapter": "befa", "lr": 5e-4})
        >>> cfg.adapter_kwargs()["n_layers"], cfg.seed, cfg.batch_size
        (1, 999, 2048)
    """

    model: str = "bprmf"  # backbone name in MODELS
    adapter: Literal["none", "befa"] = "none"  # the one switch: BeFA adapter on/off
    adapter_layers: int = 1  # BeFA L: hidden width multiplier (grid 1, 2, 4, 8)
    adapter_dropout: float = 0.1  # BeFA dropout (grid 0.1, 0.3, 0.5, 0.7)
    adapter_layout: Literal["befa", "befa-viz-v1"] = "befa"  # filter MLP order (befa: official)
    adapter_gate_bias: float | None = None  # initial gate logit bias (None: PyTorch's, as official)
    adapter_temperature: float = 1.0  # gate sigmoid temperature (< 1 sharpens)
    adapter_params: dict[str, Any] = field(default_factory=dict)  # further adapter kwargs
    train_features: bool = False  # fine-tune the raw feature tables (MMRec / official BeFA)
    dim: int = 64  # embedding size d
    lr: float = 1e-3  # Adam learning rate (BeFA grid 1e-4, 5e-4, 1e-3, 5e-3)
    lr_decay: float = 1.0  # lr × lr_decay^((epoch-1)/lr_decay_epochs) (MMRec scheduler [γ, n])
    lr_decay_epochs: int = 50  # the n of MMRec's learning_rate_scheduler
    weight_decay: float = 0.0  # Adam weight decay (the backbones' own reg is in model_params)
    batch_size: int = 2048  # training triples per step
    epochs: int = 1000  # maximum epochs (MMRec: 1000, with early stopping)
    patience: int = 20  # evaluations without improvement before stopping (MMRec stopping_step)
    eval_every: int = 1  # validate every n epochs
    eval_batch_size: int = 2048  # users scored at once during evaluation
    metric: str = "Recall@20"  # validation metric for early stopping and model selection
    topk: tuple[int, ...] = (5, 10, 20, 50)  # reported cut-offs
    mask_valid_in_test: bool = False  # also mask validation items at test (MMRec: no)
    seed: int = 999  # seeds model init, shuffling, negatives and dropout
    device: str = "cpu"  # torch device, e.g. "cpu" or "cuda"
    modalities: tuple[str, ...] | None = None  # content modalities to use (None: all given)
    model_params: dict[str, Any] = field(default_factory=dict)  # backbone keyword arguments
    features: dict[str, str] = field(default_factory=dict)  # modality → feature folder/.npy
    dataset: str | None = None  # workspace dataset name (None: the latest)

    def __post_init__(self) -> None:
        checks = [
            (self.dim >= 1, "dim", ">= 1"),
            (self.lr > 0, "lr", "> 0"),
            (self.weight_decay >= 0, "weight_decay", ">= 0"),
            (0 < self.lr_decay <= 1, "lr_decay", "in (0, 1]"),
            (self.lr_decay_epochs >= 1, "lr_decay_epochs", ">= 1"),
            (self.batch_size >= 1, "batch_size", ">= 1"),
            (self.epochs >= 0, "epochs", ">= 0"),
            (self.patience >= 1, "patience", ">= 1"),
            (self.eval_every >= 1, "eval_every", ">= 1"),
            (self.eval_batch_size >= 1, "eval_batch_size", ">= 1"),
            (self.adapter_layers >= 1, "adapter_layers", ">= 1"),
            (0 <= self.adapter_dropout < 1, "adapter_dropout", "in [0, 1)"),
            (self.adapter_temperature > 0, "adapter_temperature", "> 0"),
            (len(self.topk) > 0 and all(int(k) >= 1 for k in self.topk), "topk",
             "a non-empty list of positive integers"),
        ]
        for ok, name, rule in checks:
            if not ok:
                raise ConfigError(f"Config '{name}' must be {rule}; got {getattr(self, name)!r}.")
        name, _, k = self.metric.partition("@")
        if name not in ("Recall", "NDCG", "Precision", "MAP") or not k.isdigit():
            raise ConfigError(
                f"Config 'metric' must look like 'Recall@20' (Recall, NDCG, Precision or MAP at "
                f"a cut-off); got {self.metric!r}."
            )
        if int(k) not in self.topk:
            raise ConfigError(
                f"Config 'metric' {self.metric!r} uses k={k}, which is not in topk "
                f"{list(self.topk)}."
            )

    def adapter_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the adapter (empty without one)."""
        if self.adapter == "none":
            return {}
        return {"n_layers": self.adapter_layers, "dropout": self.adapter_dropout,
                "layout": self.adapter_layout, "gate_bias": self.adapter_gate_bias,
                "temperature": self.adapter_temperature,
                **self.adapter_params}

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-able dict (tuples as lists)."""
        return config_to_dict(self)

    def identity(self) -> dict[str, Any]:
        """The fields that define what is trained (all but epochs, device, eval batch size)."""
        d = self.to_dict()
        for k in RESUMABLE_FIELDS:
            d.pop(k)
        d.pop("features")  # paths: the feature fingerprints identify the features instead
        d.pop("dataset")  # name: the dataset fingerprint identifies it instead
        if not d["train_features"]:  # added later: frozen-feature runs keep their hash
            d.pop("train_features")
        return d

    def short_hash(self) -> str:
        return hash_key(self.identity(), length=8)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def model_config_path(model: str) -> Path | None:
    """The packaged YAML of a backbone, if there is one."""
    p = CONFIGS_DIR / f"{model}.yaml"
    return p if p.is_file() else None


def parse_overrides(items: Sequence[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``["lr=1e-3", "model_params.reg_weight=0.1"]`` (or a mapping) as a dict."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    out: dict[str, Any] = {}
    for text in items:
        k, v = parse_override(text)
        out[k] = v
    return out


def _undot(src: Mapping[str, Any], label: str) -> dict[str, Any]:
    """Turn ``{"model_params.reg_weight": x}`` into ``{"model_params": {"reg_weight": x}}``."""
    out: dict[str, Any] = {}
    for k, v in src.items():
        head, dot, rest = str(k).partition(".")
        if dot:
            if head not in _MAPPING_FIELDS:
                raise ConfigError(
                    f"{label}: dotted key {k!r} can only address {', '.join(_MAPPING_FIELDS)}."
                )
            out.setdefault(head, {})
            if not isinstance(out[head], dict):
                raise ConfigError(f"{label}: {head!r} is given both whole and as {k!r}.")
            out[head][rest] = v
        else:
            if head in _MAPPING_FIELDS and v is not None and not isinstance(v, Mapping):
                raise ConfigError(f"{label}: {head!r} must be a mapping, got {v!r}.")
            if head in out and isinstance(out[head], dict) and isinstance(v, Mapping):
                out[head] = {**dict(v), **out[head]}
            else:
                out[head] = dict(v) if isinstance(v, Mapping) else v
    return out


def merge_sources(sources: Sequence[tuple[str, Mapping[str, Any]]],
                  model: str | None = None) -> dict[str, Any]:
    """Merge labelled raw mappings in order; mapping fields merge key by key.

    Each source is validated on its own first, so an unknown key names its file (and, when
    it is a keyword of ``model`` or of an adapter, the dotted key to use instead).
    """
    merged: dict[str, Any] = {}
    for label, raw in sources:
        src = _undot(raw, label)
        _validate_keys(src, label, model)
        for k, v in src.items():
            if k in _MAPPING_FIELDS and isinstance(merged.get(k), dict) and isinstance(v, dict):
                merged[k] = {**merged[k], **v}
            else:
                merged[k] = v
    return merged


def _nested_key(key: str, model: str | None) -> str | None:
    """``model_params.<key>`` / ``adapter_params.<key>`` when ``key`` is such a keyword."""
    import inspect

    from befa_viz.models import ADAPTERS, MODELS

    models = [model] if model is not None and model in MODELS else []
    models += [m for m in MODELS.names() if m not in models]
    for name in models:
        if key in inspect.signature(MODELS.get(name)).parameters:
            return f"model_params.{key}"
    for name in ADAPTERS.names():
        if key in inspect.signature(ADAPTERS.get(name)).parameters:
            return f"adapter_params.{key}"
    return None


def _validate_keys(src: Mapping[str, Any], label: str, model: str | None = None) -> None:
    from befa_viz.registry import closest

    names = [f.name for f in dataclasses.fields(TrainConfig)]
    for k in src:
        if k not in names:
            near = closest(k, names)
            hint = f" Did you mean {near[0]!r}?" if near else ""
            nested = _nested_key(str(k), model)
            if nested is not None:
                value = src[k]
                shown = str(value).lower() if isinstance(value, bool) else value
                hint = (f" It is a keyword of the {'backbone' if nested.startswith('model') else 'adapter'}"
                        f": use {nested!r} (--set {nested}={shown}).")
            extra = " A 'sweep:' section is read by 'befa-viz sweep' only." if k == "sweep" else ""
            raise ConfigError(
                f"{label}: unknown key {k!r}.{hint} Valid keys: {', '.join(sorted(names))}.{extra}"
            )


def load_train_config(
    config_file: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
    *,
    model: str | None = None,
) -> TrainConfig:
    """Resolve a :class:`TrainConfig`: defaults < backbone YAML < ``config_file`` < overrides.

    Args:
        config_file: A YAML file (or mapping) with any :class:`TrainConfig` keys.
        overrides: ``key=value`` strings (or a mapping), applied last.
        model: Backbone name; wins over the file, loses to an explicit ``model=`` override.

    Example:
        >>> load_train_config(None, ["lr=5e-4", "model_params.reg_weight=0.1"]).model_params
        {'reg_weight': 0.1}
    """
    user: dict[str, Any] = {}
    label = "config"
    if isinstance(config_file, Mapping):
        user = dict(config_file)
    elif config_file is not None:
        label = str(config_file)
        user = read_yaml(config_file)
    over = parse_overrides(overrides)
    name = over.get("model") or model or user.get("model") or TrainConfig.model
    if not isinstance(name, str):
        raise ConfigError(f"Config 'model' must be a backbone name, got {name!r}.")
    sources: list[tuple[str, Mapping[str, Any]]] = []
    packaged = model_config_path(name)
    if packaged is not None:
        sources.append((str(packaged), read_yaml(packaged)))
    sources.append((label, user))
    sources.append(("overrides", {**over, "model": name}))
    return load_config(TrainConfig, merge_sources(sources, model=name), where="config")
