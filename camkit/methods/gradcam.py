"""Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017)."""
from __future__ import annotations

import torch

from camkit.methods import register
from camkit.methods.base import Method, Session


@register("gradcam")
class GradCAM(Method):
    r"""Channels weighted by their spatially averaged gradient.

    .. math:: \alpha^c_k = \frac{1}{hw} \sum_{x,y} \frac{\partial S_c}{\partial A_k(x,y)},
              \qquad M_c = \mathrm{ReLU}\Big(\sum_k \alpha^c_k A_k\Big)

    with :math:`S_c` the raw logit (not the softmax) of class c.  On a GAP→Linear network
    Grad-CAM equals CAM / (h·w) exactly.

    >>> e = camkit.explain(model, images, method="gradcam")   # doctest: +SKIP
    """

    def combine(self, activations: torch.Tensor, gradients: torch.Tensor, session: Session, layer: str) -> torch.Tensor:
        weights = gradients.mean(dim=(3, 4))  # (B, K, C)
        return torch.einsum("bkc,bchw->bkhw", weights, activations)

    def weighted_maps(self, session: Session) -> dict[str, torch.Tensor]:
        """``{layer: α_k A_k}`` (B, K, C, h, w), whose channel sum is the Grad-CAM before ReLU."""
        result = session.forward(gradients=True)
        return {
            name: result.gradients[name].mean((3, 4))[..., None, None] * activations[:, None]
            for name, activations in result.activations.items()
        }
