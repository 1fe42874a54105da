"""Fixtures for encoder tests: tiny open_clip architectures and a tiny BERT folder (random)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TINY_VIT = "befa-tiny-vit"
TINY_RN = "befa-tiny-rn"

_TEXT_CFG = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}
_CONFIGS = {
    TINY_VIT: {"embed_dim": 16, "text_cfg": _TEXT_CFG,
               "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8,
                              "head_width": 16}},
    TINY_RN: {"embed_dim": 16, "text_cfg": _TEXT_CFG,
              "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8,
                             "patch_size": None, "head_width": 16}},
}


@pytest.fixture(scope="session")
def tiny_clip_models(tmp_path_factory) -> tuple[str, str]:
    """Register two tiny open_clip architectures (ViT and ModifiedResNet) by config file."""
    import open_clip

    folder = tmp_path_factory.mktemp("open_clip_configs")
    for name, cfg in _CONFIGS.items():
        (folder / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(folder)
    return TINY_VIT, TINY_RN


_WORDS = ["a", "red", "blue", "green", "shoe", "hat", "box", "for", "sale", "great", "value",
          "the", "movie", "about", "love", ",", "."]


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A random 1-layer BERT saved as a sentence-transformers folder (mean pooling + normalize)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny_bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_WORDS]
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    tok.save_pretrained(folder)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(folder)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"},
    ]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 16, "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False}))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 32, "do_lower_case": False}))
    return folder
