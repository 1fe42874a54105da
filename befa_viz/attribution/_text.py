"""Text inputs of the attribution methods: token setup, the pad baseline, word merging, results."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

from befa_viz.attribution._base import _ids
from befa_viz.attribution.result import Attribution
from befa_viz.attribution.targets import AttributionTarget
from befa_viz.errors import ConfigError

if TYPE_CHECKING:  # encoders are duck-typed nn.Modules here; casts name what a branch needs
    from befa_viz.encoders.base import TextEncoder

__all__ = ["merge_tokens", "special_token_ids"]


# -- text -------------------------------------------------------------------------------------
def special_token_ids(encoder: nn.Module) -> set[int]:
    """Token ids kept as they are in the pad baseline (CLS/SEP, start/end of text)."""
    ids = getattr(encoder, "special_token_ids", None)
    if ids is None:
        tok = getattr(encoder, "tokenizer", None)
        ids = getattr(tok, "all_special_ids", None) or []
    pad = int(getattr(encoder, "pad_token_id", 0))
    return {int(i) for i in ids} - {pad}


def _text_inputs(encoder: nn.Module, inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(inputs, Mapping) or "input_ids" not in inputs:
        raise ConfigError(
            "Text methods take the mapping returned by encoder.tokenize(texts) (input_ids and "
            f"attention_mask); got {type(inputs).__name__}."
        )
    dev = getattr(encoder, "device", torch.device("cpu"))
    ids = inputs["input_ids"].to(dev).long()
    mask = inputs.get("attention_mask")
    mask = torch.ones_like(ids) if mask is None else mask.to(dev)
    return ids, mask


def _text_baseline_ids(encoder: nn.Module, ids: torch.Tensor, baseline: Any) -> torch.Tensor:
    if isinstance(baseline, torch.Tensor):
        return baseline.to(ids).expand_as(ids).clone()
    if baseline not in ("pad", "black"):
        raise ConfigError(
            f"Unknown text baseline {baseline!r}; accepted: 'pad' (pad-token embeddings, special "
            f"tokens kept) or a tensor of token ids shaped like input_ids."
        )
    pad = int(getattr(encoder, "pad_token_id", 0))
    keep = torch.zeros_like(ids, dtype=torch.bool)
    for s in special_token_ids(encoder):
        keep |= ids == s
    return torch.where(keep, ids, torch.full_like(ids, pad))


def _text_setup(encoder: nn.Module, inputs: Any, item_ids: Sequence[str] | None, baseline: Any
                ) -> tuple[torch.Tensor, torch.Tensor, list[str], torch.Tensor]:
    """Token ids, attention mask, item ids and baseline token ids for a text method."""
    ids, mask = _text_inputs(encoder, inputs)
    names = _ids(item_ids, ids.shape[0])
    return ids, mask, names, _text_baseline_ids(encoder, ids, baseline)


def _special_mask(encoder: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    keep = torch.zeros_like(ids, dtype=torch.bool)
    for s in special_token_ids(encoder):
        keep |= ids == s
    return keep


def _text_forward_embeds(encoder: nn.Module, target: AttributionTarget
                         ) -> Callable[..., torch.Tensor]:
    def f(embeds: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return target(cast("TextEncoder", encoder).forward_embeddings(embeds, mask), rows)

    return f


def _text_forward_ids(encoder: nn.Module, target: AttributionTarget
                      ) -> Callable[..., torch.Tensor]:
    def f(ids: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return target(encoder(ids, mask), rows)

    return f


def merge_tokens(tokens: Sequence[str], values: np.ndarray | Sequence[float],
                 special: Sequence[bool] | None = None) -> tuple[list[str], np.ndarray, list[bool]]:
    """Merge sub-word tokens into words, summing their scores.

    Rules (detected per sequence): if any token ends with ``</w>`` (open_clip/CLIP BPE), a word
    runs up to and including the next token ending with ``</w>``, which is stripped; else if any
    token starts with ``▁`` or ``Ġ`` (SentencePiece/byte-level BPE), such a token starts a new
    word and the others continue the current one; else (WordPiece) a token starting with ``##``
    continues the current word and any other token starts one. Special tokens always stand
    alone. Scores are summed, so the total is unchanged.

    Args:
        tokens: Token strings of one sequence (padding already removed).
        values: One score per token.
        special: Whether each token is special (CLS/SEP, start/end of text).

    Returns:
        Words, their summed scores and whether each word is a special token.

    Example:
        >>> merge_tokens(["[CLS]", "play", "##ful", "cat", "[SEP]"], [0, 1, 2, 3, 0],
        ...              [True, False, False, False, True])[:2]
        (['[CLS]', 'playful', 'cat', '[SEP]'], array([0., 3., 3., 0.]))
        >>> merge_tokens(["play", "ful</w>", "cat</w>"], [1, 2, 3])[:2]
        (['playful', 'cat'], array([3., 3.]))
    """
    vals = np.asarray(values, dtype=np.float64)
    spec = list(special) if special is not None else [False] * len(tokens)
    if not (len(tokens) == len(vals) == len(spec)):
        raise ValueError(f"{len(tokens)} tokens, {len(vals)} values, {len(spec)} special flags.")
    bpe_end = any(t.endswith("</w>") for t in tokens)
    sp_start = not bpe_end and any(t[:1] in ("▁", "Ġ") for t in tokens)
    words: list[str] = []
    scores: list[float] = []
    flags: list[bool] = []
    open_word = False  # the last word can still grow
    for tok, v, s in zip(tokens, vals, spec, strict=True):
        if s:
            words.append(tok)
            scores.append(float(v))
            flags.append(True)
            open_word = False
            continue
        if bpe_end:
            piece, ends = (tok[:-4], True) if tok.endswith("</w>") else (tok, False)
            cont = open_word
        elif sp_start:
            starts = tok[:1] in ("▁", "Ġ")
            piece, ends = (tok[1:] if starts else tok), False
            cont = open_word and not starts
        else:
            starts = not tok.startswith("##")
            piece, ends = (tok if starts else tok[2:]), False
            cont = open_word and not starts
        if cont:
            words[-1] += piece
            scores[-1] += float(v)
        else:
            words.append(piece)
            scores.append(float(v))
            flags.append(False)
        open_word = not ends
    return words, np.asarray(scores, dtype=np.float64), flags


def _token_strings(encoder: nn.Module, ids: torch.Tensor) -> list[list[str]]:
    """Token strings with their sub-word markers, for :func:`merge_tokens`.

    ``encoder.tokens`` gives readable tokens; open_clip's BPE tokenizer marks word ends with
    ``</w>``, which readable tokens drop, so for it the raw vocabulary entries are decoded here.
    """
    tok = getattr(encoder, "tokenizer", None)
    readable = cast("TextEncoder", encoder).tokens(ids)
    if tok is None or not (hasattr(tok, "decoder") and hasattr(tok, "byte_decoder")):
        return readable
    out = []
    for row, read in zip(ids.tolist(), readable, strict=True):
        words = []
        for t, r in zip(row, read, strict=True):
            raw = tok.decoder.get(t)
            if raw is None:
                words.append(r)
                continue
            text = bytearray([tok.byte_decoder.get(c, 63) for c in raw]).decode(
                "utf-8", errors="replace")
            words.append(text)
        out.append(words)
    return out


def _text_results(encoder: nn.Module, target: AttributionTarget, ids: torch.Tensor,
                  mask: torch.Tensor, token_values: torch.Tensor, item_ids: list[str],
                  method: str, params: dict[str, Any], *, delta: np.ndarray | None = None,
                  fx: np.ndarray | None = None, fb: np.ndarray | None = None
                  ) -> list[Attribution]:
    toks = _token_strings(encoder, ids.cpu())
    special = _special_mask(encoder, ids).cpu().numpy()
    tv = token_values.detach().double().cpu().numpy()
    m = mask.bool().cpu().numpy()
    tparams = target.describe()
    out = []
    for b, iid in enumerate(item_ids):
        keep = np.flatnonzero(m[b])
        raw = [toks[b][j] for j in keep]
        words, scores, flags = merge_tokens(raw, tv[b, keep], special[b, keep].tolist())
        p = {**params, **tparams, "raw_tokens": raw, "special": flags}
        for k in ("item_idx", "user_idx", "n_users"):
            if isinstance(p.get(k), list):
                p[k] = p[k][b]
        if fx is not None and fb is not None:
            p["target_value"], p["baseline_value"] = float(fx[b]), float(fb[b])
        out.append(Attribution(
            item_id=iid, modality="text", method=method, target=target.name,
            values=scores.astype(np.float32), tokens=words,
            delta=None if delta is None else float(delta[b]), params=p,
            extras={"token_values": tv[b, keep].astype(np.float32)},
        ))
    return out
