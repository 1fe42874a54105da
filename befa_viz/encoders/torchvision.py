"""torchvision ImageNet CNNs as frozen image encoders (``torchvision:<model>[:<weights>]``).

The model is built with torchvision's own API (``torchvision.models.get_model``) and its
classification layer is replaced by the identity, so the encoder returns the pooled
penultimate features (1280-d for MobileNetV2, 2048-d for ResNet-50). The spatial feature map is
the output of the last conv block (``features[-1]``, ``layer4`` or ``trunk_output``).

Weights are a torchvision weights name (default ``IMAGENET1K_V1``) loaded from torch hub's local
checkpoint cache; the expected file is checked *before* torchvision is called, so a missing file
raises :class:`~befa_viz.errors.MissingWeightsError` instead of a download attempt.
``weights="random"`` (or ``"random-<seed>"``) gives a seeded random initialisation, and the key
says so. Mean, std, input size and interpolation come from the weights' metadata
(``weights.transforms()``); images become the square input by the resize mode of
:mod:`befa_viz.encoders.base` (default: aspect-preserving resize + pad, nothing cropped).
"""

from __future__ import annotations

import os
from typing import Any, cast

import torch
from torch import nn

from befa_viz.encoders.base import ENCODERS, ImageEncoder
from befa_viz.errors import ConfigError, MissingWeightsError, UnknownNameError
from befa_viz.registry import closest

__all__ = ["TorchvisionEncoder", "DEFAULT_WEIGHTS"]

DEFAULT_WEIGHTS = "IMAGENET1K_V1"


def _parse_random(weights: str | None) -> int | None:
    """Seed for ``random`` / ``random-<seed>`` weights, else ``None``."""
    if weights is None:
        return None
    w = str(weights).lower()
    if w == "random":
        return 0
    if w.startswith("random-") and w[7:].isdigit():
        return int(w[7:])
    return None


def _check_hub_file(model: str, weights_enum: Any) -> None:
    """Raise MissingWeightsError unless the weights' file is in torch hub's cache."""
    from befa_viz.weights import MOBILENET_V2_FILE, check_mobilenet_v2, torch_hub_checkpoint

    filename = os.path.basename(weights_enum.url)
    if filename == MOBILENET_V2_FILE:
        check_mobilenet_v2()  # names the project's own installation step
        return
    path = torch_hub_checkpoint(filename)
    if not path.is_file():
        raise MissingWeightsError(
            f"Weights {weights_enum} for torchvision model {model!r} are not in torch hub's "
            f"cache ({path}); befa-viz never downloads at run time. Copy {filename} there "
            f"(from {weights_enum.url}, on a machine with network), or use "
            f"'torchvision:{model}:random' for a randomly initialised network."
        )


def _strip_head(model: nn.Module, name: str) -> tuple[nn.Module, int]:
    """Replace the final Linear by the identity; return (feature layer, pooled dim)."""
    fc = getattr(model, "fc", None)
    classifier = getattr(model, "classifier", None)
    if isinstance(fc, nn.Linear):  # ResNet, ResNeXt, Wide-ResNet, RegNet
        dim = fc.in_features
        model.fc = nn.Identity()
        for attr in ("layer4", "trunk_output"):
            if hasattr(model, attr):
                return getattr(model, attr), dim
    elif isinstance(classifier, nn.Sequential) and isinstance(classifier[-1], nn.Linear):
        # MobileNet v2/v3, EfficientNet, ConvNeXt, VGG: features → pool → classifier
        dim = classifier[-1].in_features
        classifier[-1] = nn.Identity()
        feats = getattr(model, "features", None)
        if isinstance(feats, nn.Sequential):
            return feats[-1], dim
    elif isinstance(classifier, nn.Linear) and isinstance(getattr(model, "features", None),
                                                          nn.Module):  # DenseNet
        dim = classifier.in_features
        model.classifier = nn.Identity()
        return cast(nn.Module, model.features), dim  # checked by the isinstance above
    raise ConfigError(
        f"torchvision model {name!r} is not a supported CNN family: befa-viz needs a conv "
        "body and a final Linear head (ResNet/ResNeXt/RegNet 'fc', or MobileNet/EfficientNet/"
        "ConvNeXt/VGG/DenseNet 'features' + 'classifier')."
    )


class TorchvisionEncoder(ImageEncoder):
    """A frozen torchvision ImageNet CNN giving pooled penultimate features.

    Args:
        model: torchvision model name, e.g. ``mobilenet_v2`` or ``resnet50``.
        weights: torchvision weights name (``IMAGENET1K_V1``), or ``random`` /
            ``random-<seed>`` for a seeded random initialisation.
        channels_last: Run convolutions in channels-last memory format (faster on most CPUs).

    Raises:
        UnknownNameError: If the model or weights name is unknown to torchvision.
        MissingWeightsError: If the pretrained file is not in torch hub's cache.

    Example:
        >>> enc = TorchvisionEncoder("mobilenet_v2", weights="random")
        >>> enc.key, enc.dim, enc(torch.rand(1, 3, 64, 64)).shape
        ('torchvision:mobilenet_v2:random', 1280, torch.Size([1, 1280]))
    """

    def __init__(self, model: str = "mobilenet_v2", weights: str | None = DEFAULT_WEIGHTS,
                 channels_last: bool = True) -> None:
        super().__init__()
        import torchvision.models as tvm

        known = tvm.list_models(module=tvm)
        if model not in known:
            near = closest(model, known)
            hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
            raise UnknownNameError(
                f"Unknown torchvision model {model!r}.{hint} See torchvision.models.list_models()."
            )
        weights_enum_cls = tvm.get_model_weights(model)
        seed = _parse_random(weights)
        weights_name = DEFAULT_WEIGHTS if weights is None else str(weights)
        meta_name = DEFAULT_WEIGHTS if seed is not None else weights_name
        try:
            weights_enum = weights_enum_cls[meta_name]
        except KeyError:
            names = [w.name for w in weights_enum_cls]
            raise UnknownNameError(
                f"Unknown weights {weights_name!r} for torchvision model {model!r}; accepted: "
                f"{', '.join(names)}, 'random' or 'random-<seed>'."
            ) from None

        if seed is None:
            _check_hub_file(model, weights_enum)
            net = tvm.get_model(model, weights=weights_enum)
            self.key = f"torchvision:{model}:{weights_enum.name}"
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                net = tvm.get_model(model, weights=None)
            self.key = f"torchvision:{model}:random" + (f"-{seed}" if seed else "")
        self.model_name = model
        self.pretrained = seed is None
        layer, self.dim = _strip_head(net, model)
        self.net = net
        self._feature_layer = layer

        # Preprocessing metadata of the weights (random nets keep the ImageNet statistics).
        t = weights_enum.transforms()
        self.image_size = int(t.crop_size[0])
        self.mean = tuple(float(v) for v in t.mean)  # type: ignore[assignment]  # 3 floats
        self.std = tuple(float(v) for v in t.std)  # type: ignore[assignment]  # 3 floats
        self.interpolation = str(getattr(t.interpolation, "value", t.interpolation))
        self.channels_last = channels_last
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.eval()
        self.requires_grad_(False)

    @property
    def feature_layer(self) -> nn.Module:
        return self._feature_layer

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised pixels ``[B, 3, S, S]`` → pooled penultimate features ``[B, dim]``."""
        return self.net(self._prep(x))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised pixels → last conv block output ``[B, C, h, w]`` (captured by a hook)."""
        out: list[torch.Tensor] = []
        handle = self._feature_layer.register_forward_hook(lambda m, i, o: out.append(o))
        try:
            self.net(self._prep(x))
        finally:
            handle.remove()
        return out[0].contiguous()


@ENCODERS.register("torchvision")
def _create_torchvision(model: str = "mobilenet_v2", weights: str | None = None,
                        modality: str | None = None, **kwargs: Any) -> TorchvisionEncoder:
    """``torchvision:<model>[:<weights>]`` (weights default ``IMAGENET1K_V1``)."""
    if modality not in (None, "image"):
        raise ConfigError(f"torchvision:{model} is an image encoder; modality {modality!r} "
                          "is not available.")
    return TorchvisionEncoder(model=model, weights=weights if weights else DEFAULT_WEIGHTS,
                              **kwargs)
