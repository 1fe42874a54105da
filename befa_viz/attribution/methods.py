"""Attribution methods: *how* a target is explained, registered in :data:`ATTRIBUTIONS`.

Every method has the same shape::

    method(encoder, target, inputs, *, item_ids=None, <method options>) -> list[Attribution]

* ``encoder`` — an :class:`~befa_viz.encoders.ImageEncoder` or
  :class:`~befa_viz.encoders.TextEncoder` (frozen; put in eval mode for the call);
* ``target`` — an :class:`~befa_viz.attribution.targets.AttributionTarget` built for exactly
  these items (row ``b`` of the target belongs to input ``b``);
* ``inputs`` — images: pixels ``[B, 3, S, S]`` in ``[0, 1]`` as given by
  ``encoder.load_pixels``; text: the mapping returned by ``encoder.tokenize`` (``input_ids`` and
  ``attention_mask``, ``[B, T]``);
* the result — one :class:`Attribution` per input, in order. Image maps are ``[S, S]``, signed,
  summed over colour channels (magnitude normalisation is left to the consumer). Text maps hold
  one signed score per *word* (see :func:`merge_tokens`); the per-token scores are in
  ``extras["token_values"]`` and the tokens in ``params["raw_tokens"]``.

Methods (``I`` = image, ``T`` = text):

==============  ====  ========================================================================
``ig``          I T   Captum IntegratedGradients over pixels (text: over token embeddings,
                      through ``encoder.forward_embeddings``). Completeness error in ``delta``.
``ig_smooth``   I T   Captum NoiseTunnel (SmoothGrad) averaging IG over noisy copies.
``layer_ig``    I T   Captum LayerIntegratedGradients at ``encoder.feature_layer`` (image; the
                      layer map is upsampled bilinearly, raw in ``extras["layer_map"]``) or at
                      ``encoder.embedding_layer`` (text; equals ``ig`` up to quadrature).
``gradcam``     I     Captum LayerGradCam at ``encoder.feature_layer``, upsampled.
``occlusion``   I T   Captum Occlusion with the chosen baseline in the window (text: each
                      token replaced by the pad token in turn).
``similarity``  I     Paper-style map: per feature-map location, cosine of the location's
                      feature (through the target's content pathway when the feature map lives
                      in the encoder's output space) with the target's reference vector.
``input_x_blur`` I T  Model-free control: |x − blur(x)| summed over channels (text: the
                      distance ‖e_t − e_pad‖ of each token embedding to the pad embedding).
==============  ====  ========================================================================

IG variants in :mod:`befa_viz.attribution.ig` (images): ``ig_expected`` (GradientShap /
expected gradients over a distribution of baselines), ``ig_blur_path`` (Blur IG along the
scale space), ``ig_region`` (IG summed over SLIC superpixels) and ``ig_similarity``
(LayerIntegratedGradients of the per-location similarity target). They and ``layer_ig`` take
``n_steps=None`` to choose the step count per item by the completeness error
(:mod:`befa_viz.attribution._steps`). Feature vectors without raw media (e.g. MMRec audio):
:mod:`befa_viz.attribution.features`.

Baselines (path methods and occlusion): ``"black"`` (zeros), ``"white"`` (ones), ``"blur"``
(Gaussian blur of the input, σ = ``blur_sigma`` pixels, default S/16), ``"mean"`` (the dataset
mean pixel, ``mean_pixel=(r, g, b)`` in ``[0, 1]``) or an explicit tensor shaped like the
inputs. Text uses ``"pad"``: every attended token's embedding replaced by the pad token's,
special tokens (CLS/SEP, start/end of text) kept as they are, so they get zero attribution.

Batching: items and integration steps are evaluated together; ``internal_batch_size`` bounds
the number of examples in one forward/backward pass (items are split into chunks of at most
``internal_batch_size`` and each chunk's steps are batched up to that bound).

Where the code is: the registry, :func:`attribute` and the shared helpers in
:mod:`befa_viz.attribution._base`, text inputs in :mod:`befa_viz.attribution._text`, and one
module per method family: :mod:`~befa_viz.attribution.ig_family` (``ig``, ``ig_smooth``,
``layer_ig``), :mod:`~befa_viz.attribution.gradcam`, :mod:`~befa_viz.attribution.occlusion`,
:mod:`~befa_viz.attribution.similarity` and :mod:`~befa_viz.attribution.controls`
(``input_x_blur``). This module imports them all, so importing it registers every method.
"""

from __future__ import annotations

from befa_viz.attribution._base import (
    ATTRIBUTIONS,
    DELTA_WARN_RATIO,
    AttributionMethod,
    attribute,
    make_baseline,
    method_modalities,
    method_options,
)
from befa_viz.attribution._text import merge_tokens, special_token_ids
from befa_viz.attribution.controls import input_minus_blur
from befa_viz.attribution.gradcam import grad_cam
from befa_viz.attribution.ig_family import (
    integrated_gradients,
    layer_integrated_gradients,
    smooth_integrated_gradients,
)
from befa_viz.attribution.occlusion import occlusion
from befa_viz.attribution.similarity import similarity_map

__all__ = [
    "ATTRIBUTIONS",
    "DELTA_WARN_RATIO",
    "AttributionMethod",
    "attribute",
    "grad_cam",
    "input_minus_blur",
    "integrated_gradients",
    "layer_integrated_gradients",
    "make_baseline",
    "merge_tokens",
    "method_modalities",
    "method_options",
    "occlusion",
    "similarity_map",
    "smooth_integrated_gradients",
    "special_token_ids",
]
