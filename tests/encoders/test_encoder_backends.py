"""Encoder backends (torchvision, open_clip, transformers) with random or tiny weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from befa_viz.encoders import ENCODERS, create_encoder
from befa_viz.errors import ConfigError, MissingWeightsError, UnknownNameError


def _check_frozen_and_differentiable(enc, x: torch.Tensor) -> None:
    assert not enc.training
    assert all(not p.requires_grad for p in enc.parameters())
    x = x.clone().requires_grad_(True)
    enc(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def _feature_layer_matches_map(enc, x: torch.Tensor) -> None:
    """The hooked feature_layer output, through layer_to_map, is features(x); it has gradient."""
    got: list[torch.Tensor] = []

    def keep(module, inputs, output) -> None:
        output.retain_grad()
        got.append(output)

    h = enc.feature_layer.register_forward_hook(keep)
    try:
        x = x.clone().requires_grad_(True)
        enc(x).sum().backward()
    finally:
        h.remove()
    fmap = enc.features(x.detach())
    assert torch.allclose(enc.layer_to_map(got[0].detach()), fmap, atol=1e-6)
    assert got[0].grad is not None and got[0].grad.abs().sum() > 0  # usable for Grad-CAM
    assert not enc.feature_layer._forward_hooks  # features() removed its hook


def test_registry_lists_backends():
    assert {"clip", "hf", "torchvision", "tiny"} <= set(ENCODERS.names())


# ---- torchvision --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_mobilenet():
    return create_encoder("torchvision:mobilenet_v2:random")


def test_torchvision_random_mobilenet(random_mobilenet):
    enc = random_mobilenet
    assert enc.key == "torchvision:mobilenet_v2:random" and not enc.pretrained
    assert (enc.dim, enc.image_size, enc.interpolation) == (1280, 224, "bilinear")
    assert enc.mean == pytest.approx((0.485, 0.456, 0.406))
    x = torch.rand(2, 3, 96, 96)
    emb, fmap = enc(x), enc.features(x)
    assert emb.shape == (2, 1280) and fmap.shape == (2, 1280, 3, 3)
    # pooled penultimate feature = global average of the last conv block
    assert torch.allclose(fmap.mean((2, 3)), emb, atol=1e-5)
    _check_frozen_and_differentiable(enc, x)
    _feature_layer_matches_map(enc, x)
    again = create_encoder("torchvision:mobilenet_v2:random")
    assert enc.fingerprint() == again.fingerprint()
    assert enc.fingerprint() != create_encoder("torchvision:mobilenet_v2:random-1").fingerprint()


def test_torchvision_missing_weights_never_downloads(tmp_path, monkeypatch):
    import torch.hub

    def no_download(*a, **k):  # pragma: no cover - must not be reached
        raise AssertionError("tried to download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(MissingWeightsError, match="make setup"):
        create_encoder("torchvision:mobilenet_v2")
    with pytest.raises(MissingWeightsError, match=r"resnet18-.*\.pth"):
        create_encoder("torchvision:resnet18:IMAGENET1K_V1")


def test_torchvision_bad_names():
    with pytest.raises(UnknownNameError, match="mobilenet_v2"):
        create_encoder("torchvision:mobilenet_v9")
    with pytest.raises(UnknownNameError, match="IMAGENET1K_V1"):
        create_encoder("torchvision:mobilenet_v2:IMAGENET9")
    with pytest.raises(ConfigError):
        create_encoder("torchvision:mobilenet_v2:random", modality="text")


# ---- open_clip ----------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["vit", "rn"])
def test_clip_image_tower(tiny_clip_models, which):
    name = tiny_clip_models[0] if which == "vit" else tiny_clip_models[1]
    enc = create_encoder(f"clip:{name}:random", modality="image")
    assert enc.key == f"clip:{name}:random" and not enc.pretrained
    assert enc.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))  # open_clip's cfg
    s = enc.image_size
    x = torch.rand(2, 3, s, s)
    assert enc(x).shape == (2, 16)
    fmap = enc.features(x)
    assert fmap.shape == ((2, 32, 4, 4) if which == "vit" else (2, 256, 2, 2))
    _check_frozen_and_differentiable(enc, x)
    _feature_layer_matches_map(enc, x)
    # seeded: the same key gives the same weights
    assert enc.fingerprint() == create_encoder(f"clip:{name}", modality="image").fingerprint()


def test_clip_text_tower_matches_open_clip(tiny_clip_models):
    from befa_viz.encoders.clip import load_open_clip

    name = tiny_clip_models[0]
    enc = create_encoder(f"clip:{name}:random", modality="text")
    model, _ = load_open_clip(name, "random")
    texts = ["a red shoe!", "a much longer description of a blue hat for sale, great value", ""]
    tok = enc.tokenize(texts)
    assert tok["input_ids"].shape[1] < 77  # trailing padding trimmed
    ours = enc(tok["input_ids"], tok["attention_mask"])
    with torch.no_grad():
        ref = model.encode_text(enc.tokenizer(texts))
    assert torch.allclose(ours, ref, atol=1e-5)
    # forward from embeddings (for LayerIntegratedGradients) is the same path
    emb = enc.embedding_layer(tok["input_ids"])
    assert torch.allclose(enc.forward_embeddings(emb, tok["attention_mask"]), ours)
    words = enc.tokens(tok["input_ids"])
    assert words[0][:6] == ["<start_of_text>", "a", "red", "shoe", "!", "<end_of_text>"]
    assert words[0][-1] == "<pad>" and enc.pad_token_id == 0
    e = emb.clone().requires_grad_(True)
    enc.forward_embeddings(e, tok["attention_mask"]).sum().backward()
    assert e.grad.abs().sum() > 0 and all(not p.requires_grad for p in enc.parameters())


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_clip_checkpoint_roundtrip(tiny_clip_models, tmp_path, suffix):
    from safetensors.torch import save_file

    from befa_viz.encoders.clip import load_open_clip

    name = tiny_clip_models[0]
    model, _ = load_open_clip(name, "random-7")
    path = tmp_path / f"ckpt{suffix}"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    img = create_encoder(f"clip:{name}:{path}", modality="image")
    txt = create_encoder(f"clip:{name}:{path}", modality="text")
    assert img.key == f"clip:{name}:{path.resolve()}" and img.pretrained
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(img(x), model.encode_image(img.normalize(x)))
        tok = txt.tokenize(["red shoe"])
        assert torch.allclose(txt(tok["input_ids"], tok["attention_mask"]),
                              model.encode_text(txt.tokenizer(["red shoe"])), atol=1e-6)
    assert img.fingerprint() != create_encoder(f"clip:{name}:random", "image").fingerprint()


def test_clip_errors(tiny_clip_models, tmp_path):
    with pytest.raises(MissingWeightsError, match="never downloads"):
        create_encoder("clip:ViT-B-32:openai")
    with pytest.raises(UnknownNameError, match="laion2b"):
        create_encoder("clip:ViT-B-32:laion2b_s34b_b79")
    with pytest.raises(MissingWeightsError, match="does not exist"):
        create_encoder(f"clip:{tiny_clip_models[0]}:{tmp_path}/nope.safetensors")
    with pytest.raises(UnknownNameError, match="ViT-B-32"):
        create_encoder("clip:ViT-B-31:random")
    from safetensors.torch import save_file

    bad = tmp_path / "bad.safetensors"
    save_file({"visual.proj": torch.zeros(2, 2)}, bad)
    with pytest.raises(ConfigError, match="does not fit"):
        create_encoder(f"clip:{tiny_clip_models[0]}:{bad}")


# ---- transformers / sentence-transformers -----------------------------------------------------


def test_hf_tiny_matches_sentence_transformers(tiny_bert_dir):
    from sentence_transformers import SentenceTransformer

    enc = create_encoder(f"hf:{tiny_bert_dir}")
    assert enc.key == f"hf:{tiny_bert_dir.resolve()}"
    assert (enc.dim, enc.pooling, enc.normalize, enc.max_length) == (16, "mean", True, 32)
    texts = ["a red shoe for sale", "the movie about love , great value . " * 5, "hat"]
    ours = enc.encode_texts(texts)
    ref = SentenceTransformer(str(tiny_bert_dir), device="cpu").encode(texts)
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)
    tok = enc.tokenize(texts)
    assert enc.tokens(tok["input_ids"])[0][:4] == ["[CLS]", "a", "red", "shoe"]
    assert enc.pad_token_id == 0 and enc.embedding_layer is enc.net.embeddings.word_embeddings
    emb = enc.embedding_layer(tok["input_ids"]).requires_grad_(True)
    out = enc.forward_embeddings(emb, tok["attention_mask"])
    np.testing.assert_allclose(out.detach().numpy(), ours, atol=1e-6)
    out[:, 0].sum().backward()
    assert emb.grad.abs().sum() > 0 and all(not p.requires_grad for p in enc.parameters())


def test_hf_random_and_errors(tiny_bert_dir, tmp_path):
    rnd = create_encoder(f"hf:{tiny_bert_dir}:random")
    assert rnd.key.endswith(":random") and not rnd.pretrained
    assert rnd.fingerprint() != create_encoder(f"hf:{tiny_bert_dir}").fingerprint()
    with pytest.raises(MissingWeightsError, match="hf:minilm"):
        create_encoder("hf:someone/not-a-cached-model")
    with pytest.raises(MissingWeightsError, match="does not exist"):
        create_encoder(f"hf:{tmp_path}/missing-folder")
    with pytest.raises(ConfigError):
        create_encoder(f"hf:{tiny_bert_dir}:v2")


# ---- real weights ----------------------------------------------------------------------------


@pytest.mark.weights
def test_real_mobilenet_v2(random_mobilenet):
    from befa_viz.testing import toy_images

    enc = create_encoder("torchvision:mobilenet_v2")
    assert enc.key == "torchvision:mobilenet_v2:IMAGENET1K_V1" and enc.pretrained
    images, _ = toy_images(3, size=64)
    a, b = enc.encode_images(images), enc.encode_images(images)
    assert a.shape == (3, 1280) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)  # deterministic
    assert (a >= 0).all()  # pooled ReLU6 activations
    r = random_mobilenet.encode_images(images)
    assert not np.allclose(a, r, atol=1e-3)
    # the ImageNet head on top of our features reproduces torchvision's full model
    import torchvision

    full = torchvision.models.mobilenet_v2(weights="IMAGENET1K_V1").eval()
    with torch.no_grad():
        x = enc.normalize(enc.load_pixels(images))
        logits = full.classifier[-1](torch.from_numpy(a))
        assert torch.allclose(logits, full(x), atol=1e-4)


@pytest.mark.weights
def test_real_minilm_matches_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    from befa_viz.weights import minilm_path

    enc = create_encoder("hf:minilm")
    assert enc.key == "hf:sentence-transformers/all-MiniLM-L6-v2" and enc.dim == 384
    texts = ["A toy story about a cowboy doll.", "Space battle " * 200, "x"]
    ours = enc.encode_texts(texts)
    ref = SentenceTransformer(str(minilm_path()), device="cpu").encode(texts)
    assert ours.shape == (3, 384)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
