"""Grad-CAM++ (Chattopadhay et al., "Grad-CAM++: Generalized Gradient-based Visual Explanations for
Deep Convolutional Networks", WACV 2018) and Smooth Grad-CAM++ (Omeiza et al., "Smooth Grad-CAM++:
An Enhanced Inference Level Visualization Technique for Deep Convolutional Neural Network Models",
2019)."""
from __future__ import annotations

import torch

from camkit.errors import InputError
from camkit.methods import register
from camkit.methods.base import Pass, Session, needed, per_channel
from camkit.methods.weighted import ChannelWeightMethod


def gradcampp_weights(activations: torch.Tensor, g1: torch.Tensor, g2: torch.Tensor, g3: torch.Tensor,
                      eps: float = 1e-6) -> torch.Tensor:
    r"""Grad-CAM++ channel weights (B, K, C) from activations (B, C, *grid) and gradient powers (B, K, C, *grid).

    .. math:: \alpha^c_k(i,j) = \frac{g^2_{ij}}{2 g^2_{ij} + \sum_{a,b} A_k(a,b)\, g^3_{ij}},
              \qquad w^c_k = \sum_{i,j} \alpha^c_k(i,j)\, \mathrm{ReLU}(g_{ij})

    with :math:`\alpha = 0` where :math:`g^2 = 0`.
    """
    total = per_channel(activations.flatten(2).sum(-1), activations.dim() - 2)[:, None]  # (B, 1, C, 1, …)
    alpha = g2 / (2 * g2 + total * g3 + eps)
    alpha = torch.where(g2 != 0, alpha, torch.zeros_like(alpha))
    return (alpha * torch.relu(g1)).flatten(3).sum(-1)


@register("gradcam++")
class GradCAMPlusPlus(ChannelWeightMethod):
    r"""Grad-CAM++: channel weights from positive gradients, each position weighted by :math:`\alpha`.

    .. math:: \alpha^c_k(i,j) = \frac{(\partial_{ij} S_c)^2}{2 (\partial_{ij} S_c)^2
              + \sum_{a,b} A_k(a,b)\, (\partial_{ij} S_c)^3},
              \qquad w^c_k = \sum_{i,j} \alpha^c_k(i,j)\, \mathrm{ReLU}(\partial_{ij} S_c),
              \qquad M_c = \mathrm{ReLU}\Big(\sum_k w^c_k A_k\Big)

    with :math:`\partial_{ij} S_c = \partial S_c / \partial A_k(i, j)` of the raw logit.  The powers
    of the first derivative stand for the second and third derivatives of :math:`\exp(S_c)` (the
    paper's Eq. 19), as in the paper's code and pytorch-grad-cam.

    >>> e = camkit.explain(model, images, method="gradcam++")   # doctest: +SKIP
    """

    spatial_ranks = (1, 2, 3)

    def weights(self, activations: torch.Tensor, gradients: torch.Tensor | None, session: Session,
                layer: str) -> torch.Tensor:
        """Grad-CAM++ weights from the gradient and its powers."""
        g = needed(gradients)
        return gradcampp_weights(activations, g, g.pow(2), g.pow(3))


@register("smoothgradcam++")
class SmoothGradCAMPlusPlus(ChannelWeightMethod):
    r"""Smooth Grad-CAM++: Grad-CAM++ with gradient powers averaged over noisy copies of the input.

    .. math:: x_n = x + \varepsilon_n,\ \varepsilon_n \sim \mathcal{N}(0, \sigma^2),\qquad
              \bar g^p = \frac{1}{N} \sum_{n=1}^N \big(\partial S_c(x_n) / \partial A_k\big)^p,

    .. math:: \alpha^c_k(i,j) = \frac{\bar g^2_{ij}}{2 \bar g^2_{ij} + \sum_{a,b} A_k(a,b)\, \bar g^3_{ij}},
              \qquad w^c_k = \sum_{i,j} \alpha^c_k(i,j)\, \mathrm{ReLU}(\bar g^1_{ij}),
              \qquad M_c = \mathrm{ReLU}\Big(\sum_k w^c_k A_k\Big)

    with :math:`A` the activations of the clean image.  ``samples`` noisy passes of the whole batch
    (default 4, standard deviation ``std=0.3`` in input units, torchcam's defaults); the n-th noise
    field is the same for every image of the batch (so a map does not depend on the batch), drawn
    from a generator seeded with ``seed`` (``None``: a fresh seed).  torchcam differs in two
    places (see docs/methods.md).

    >>> e = camkit.explain(model, images, method="smoothgradcam++", samples=8)   # doctest: +SKIP
    """

    spatial_ranks = (1, 2, 3)

    def __init__(self, samples: int = 4, std: float = 0.3, seed: int | None = 0):
        if not isinstance(samples, int) or samples < 1:
            raise InputError(f"samples must be a positive int, got {samples!r}")
        if std < 0:
            raise InputError(f"std must be >= 0, got {std!r}")
        self.samples, self.std, self.seed = samples, float(std), seed

    def channel_weights(self, session: Session) -> tuple[Pass, dict[str, torch.Tensor]]:
        """The clean pass and Grad-CAM++ weights from gradient powers averaged over noisy passes."""
        clean = session.forward(gradients=False)
        images = session.images
        generator = torch.Generator()
        if self.seed is None:
            generator.seed()
        else:
            generator.manual_seed(self.seed)
        sums: dict[str, list[torch.Tensor]] = {}
        for _ in range(self.samples):
            # one noise field shared by every image: an image's map does not depend on its batch
            noise = torch.randn((1, *images.shape[1:]), generator=generator).to(images)
            noisy = session.forward(images=images + self.std * noise, gradients=True)
            for name, g in needed(noisy.gradients).items():
                powers = [g, g * g, g * g * g]
                sums[name] = powers if name not in sums else [s + p for s, p in zip(sums[name], powers, strict=True)]
        weights = {}
        for name in clean.activations:
            g1, g2, g3 = (s / self.samples for s in sums[name])
            weights[name] = gradcampp_weights(clean.activations[name], g1, g2, g3)
        return clean, weights

    def __repr__(self) -> str:
        return f"SmoothGradCAMPlusPlus(samples={self.samples}, std={self.std}, seed={self.seed})"
