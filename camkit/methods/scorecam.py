"""Score-CAM and its smoothed variants: channel weights from the scores of masked copies of the input.

* Score-CAM: Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural
  Networks", CVPR Workshops 2020.
* SS-CAM: Wang et al., "SS-CAM: Smoothed Score-CAM for Sharper Visual Feature Localization", 2020.
* IS-CAM: Naidu et al., "IS-CAM: Integrated Score-CAM for axiomatic-based explanations", 2020.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from camkit.errors import InputError
from camkit.maps import normalize_maps, resize_maps
from camkit.methods import register
from camkit.methods.base import Session
from camkit.methods.weighted import ChannelWeightMethod, chunk_size

__all__ = ["ScoreCAM", "SSCAM", "ISCAM", "channel_masks"]


def channel_masks(activations: torch.Tensor, size: Sequence[int], normalize: str = "input",
                  align_corners: bool = False, extent: Sequence[float] | None = None) -> torch.Tensor:
    """Masks (B, C, *S) in [0, 1] from activations (B, C, *grid): (bi/tri)linear upsampling and
    per-channel min-max.

    ``normalize="input"``: upsample, then min-max (the paper, pytorch-grad-cam); ``"layer"``: min-max at
    layer resolution, then upsample (torchcam).  A constant channel gives an all-zero mask.
    ``extent``: the part of the grid the input covers (see :func:`camkit.maps.resize_maps`).
    """
    rank = len(size)
    if normalize == "layer":
        activations = normalize_maps(activations, rank)
    elif normalize != "input":
        raise InputError(f"normalize must be 'input' or 'layer', got {normalize!r}")
    masks = resize_maps(activations, size, align_corners=align_corners, extent=extent)
    return normalize_maps(masks, rank) if normalize == "input" else masks


class _MaskedScoreMethod(ChannelWeightMethod):
    """Channel weights from scores of ``images ⊙ mask_k`` for every channel k, chunked."""

    needs_gradients = False

    def __init__(self, batch_size: int = 32, memory_budget: int | None = None, weighting: str = "softmax",
                 normalize: str = "input", align_corners: bool = False, max_channels: int | None = None):
        if weighting not in ("softmax", "probability"):
            raise InputError(f"weighting must be 'softmax' or 'probability', got {weighting!r}")
        if normalize not in ("input", "layer"):
            raise InputError(f"normalize must be 'input' or 'layer', got {normalize!r}")
        if max_channels is not None and (not isinstance(max_channels, int) or max_channels < 1):
            raise InputError(f"max_channels must be a positive int or None, got {max_channels!r}")
        chunk_size(1, torch.zeros(1, 1), batch_size, memory_budget)  # validates both
        self.batch_size, self.memory_budget = batch_size, memory_budget
        self.weighting, self.normalize, self.align_corners = weighting, normalize, align_corners
        self.max_channels = max_channels

    spatial_ranks = (1, 2, 3)

    def mask_scores(self, session: Session, masks: torch.Tensor, first: int) -> torch.Tensor:
        """Scores (n, B, K) for masks (n, B, 1, *S) of channels ``first … first + n − 1``."""
        raise NotImplementedError

    def _score(self, session: Session, masks: torch.Tensor) -> torch.Tensor:
        return session.scores_of(masks * session.images[None], self.weighting == "probability")

    def weights(self, activations: torch.Tensor, gradients: torch.Tensor | None, session: Session,
                layer: str) -> torch.Tensor:
        images = session.images
        b, c = activations.shape[:2]
        chosen = None
        if self.max_channels is not None and self.max_channels < c:
            chosen = activations.flatten(2).mean(-1).topk(self.max_channels, dim=1).indices  # (B, C')
            index = chosen.view(*chosen.shape, *[1] * session.rank).expand(-1, -1, *activations.shape[2:])
            activations = activations.gather(1, index)
        n = chunk_size(b, images, self.batch_size, self.memory_budget)
        chunks = []
        for start in range(0, activations.shape[1], n):
            chunk = activations[:, start:start + n]
            masks = channel_masks(chunk, images.shape[2:], self.normalize, self.align_corners, session.extent)
            masks = masks.to(images.dtype).transpose(0, 1)[:, :, None]  # (n, B, 1, *S)
            chunks.append(self.mask_scores(session, masks, start))
        scores = torch.cat(chunks).permute(1, 2, 0)  # (B, K, C')
        weights = scores.softmax(-1) if self.weighting == "softmax" else scores
        if chosen is None:
            return weights
        full = weights.new_zeros(b, weights.shape[1], c)
        return full.scatter(2, chosen[:, None].expand(-1, weights.shape[1], -1), weights)

    def _options(self) -> str:
        return (f"batch_size={self.batch_size}, memory_budget={self.memory_budget}, weighting={self.weighting!r}, "
                f"normalize={self.normalize!r}, align_corners={self.align_corners}, max_channels={self.max_channels}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._options()})"


@register("scorecam")
class ScoreCAM(_MaskedScoreMethod):
    r"""Channels weighted by the score the model gives the input masked by each channel.

    .. math:: H_k = \frac{U(A_k) - \min U(A_k)}{\max U(A_k) - \min U(A_k)}, \qquad
              w^c_k = \operatorname{softmax}_k\big(S_c(x \odot H_k)\big), \qquad
              M_c = \mathrm{ReLU}\Big(\sum_k w^c_k A_k\Big)

    with :math:`U` bilinear upsampling to the input size and :math:`S_c` the raw logit, as
    pytorch-grad-cam and torchcam compute it.  The paper subtracts a baseline score
    :math:`S_c(x_b)`, which a softmax over channels cancels.  ``weighting="probability"`` uses
    :math:`w^c_k = \operatorname{softmax}_c(f(x \odot H_k))` instead (the paper's reference code).
    ``normalize="layer"`` min-maxes before upsampling (torchcam); ``align_corners=True`` upsamples as
    pytorch-grad-cam's ``UpsamplingBilinear2d``.

    Costs one forward per channel and image, run ``batch_size`` masked images at a time (and at most
    ``memory_budget`` bytes of masked inputs, if given).  ``max_channels=m`` scores only each
    image's m channels of largest mean activation (the others get weight 0): an approximation for
    wide layers (ResNet-50's 2048 channels).

    >>> e = camkit.explain(model, images, method="scorecam", batch_size=64)   # doctest: +SKIP
    """

    def mask_scores(self, session: Session, masks: torch.Tensor, first: int) -> torch.Tensor:
        """Scores of the input masked by each channel."""
        return self._score(session, masks)


@register("sscam")
class SSCAM(_MaskedScoreMethod):
    r"""Smoothed Score-CAM: Score-CAM scores averaged over noisy masks.

    .. math:: w^c_k = \operatorname{softmax}_k\Big(\frac{1}{N}\sum_{n=1}^N S_c\big(x \odot (H_k + \delta_n)\big)\Big),
              \quad \delta_n \sim \mathcal{N}(0, \sigma^2)

    (noise on the normalised masks, the variant torchcam implements; defaults ``samples=35``,
    ``std=2.0`` as torchcam).  The noise of channel k comes from a generator seeded with
    ``(seed, k)`` and is shared by the images of the batch, so maps are reproducible and do not
    depend on the batch or the chunking.  Costs ``samples`` × Score-CAM.

    >>> e = camkit.explain(model, images, method="sscam", samples=8)   # doctest: +SKIP
    """

    def __init__(self, samples: int = 35, std: float = 2.0, seed: int = 0, **options):
        super().__init__(**options)
        if not isinstance(samples, int) or samples < 1:
            raise InputError(f"samples must be a positive int, got {samples!r}")
        self.samples, self.std, self.seed = samples, float(std), seed

    def mask_scores(self, session: Session, masks: torch.Tensor, first: int) -> torch.Tensor:
        """Scores averaged over ``samples`` noisy copies of each mask."""
        # noise of channel k, sample n: drawn from a generator seeded by (seed, k), shared by the batch
        generator = torch.Generator()
        fields = []
        for k in range(first, first + masks.shape[0]):
            generator.manual_seed(self.seed * 1_000_003 + k)
            fields.append(torch.randn((self.samples, 1, *masks.shape[3:]), generator=generator))
        noise = torch.stack(fields, 1).to(masks)  # (samples, n, 1, *S), broadcast over the batch
        total = torch.zeros(())
        for n in range(self.samples):
            total = total + self._score(session, masks + self.std * noise[n][:, None])
        return total / self.samples

    def __repr__(self) -> str:
        return f"SSCAM(samples={self.samples}, std={self.std}, seed={self.seed}, {self._options()})"


@register("iscam")
class ISCAM(_MaskedScoreMethod):
    r"""Integrated Score-CAM: Score-CAM scores averaged along a path of growing masks.

    .. math:: \beta_n = \sum_{j=1}^{n} \frac{j}{N}, \qquad
              w^c_k = \operatorname{softmax}_k\Big(\frac{1}{N}\sum_{n=1}^N S_c\big(x \odot \beta_n H_k\big)\Big)

    The cumulative coefficients :math:`\beta_n` follow torchcam (the only peer implementing it;
    they exceed 1 for n > 1).  Default ``samples=10``.  Costs ``samples`` × Score-CAM.

    >>> e = camkit.explain(model, images, method="iscam")   # doctest: +SKIP
    """

    def __init__(self, samples: int = 10, **options):
        super().__init__(**options)
        if not isinstance(samples, int) or samples < 1:
            raise InputError(f"samples must be a positive int, got {samples!r}")
        self.samples = samples

    def mask_scores(self, session: Session, masks: torch.Tensor, first: int) -> torch.Tensor:
        """Scores averaged over the masks scaled by β_1 … β_N."""
        total, coefficient = torch.zeros(()), 0.0
        for n in range(1, self.samples + 1):
            coefficient += n / self.samples
            total = total + self._score(session, coefficient * masks)
        return total / self.samples

    def __repr__(self) -> str:
        return f"ISCAM(samples={self.samples}, {self._options()})"
