"""Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017)."""
from __future__ import annotations

import torch

from camkit.methods import register
from camkit.methods.base import LayerMaps, Method, Session, needed, per_channel, spatial_mean, weighted_sum


@register("gradcam")
class GradCAM(Method):
    r"""Channels weighted by their spatially averaged gradient.

    .. math:: \alpha^c_k = \frac{1}{|P|} \sum_{p \in P} \frac{\partial S_c}{\partial A_k(p)},
              \qquad M_c = \mathrm{ReLU}\Big(\sum_k \alpha^c_k A_k\Big)

    with :math:`S_c` the raw logit (not the softmax) of class c and :math:`P` the grid's positions
    (h·w for images, T·h·w for clips, l for signals).  On a GAP→Linear network Grad-CAM equals
    CAM / |P| exactly.

    >>> e = camkit.explain(model, images, method="gradcam")   # doctest: +SKIP
    """

    spatial_ranks = (1, 2, 3)

    def combine(self, activations: torch.Tensor, gradients: torch.Tensor | None, session: Session,
                layer: str) -> torch.Tensor:
        """``Σ_k mean_p(∂S_c/∂A_k) A_k``."""
        return weighted_sum(spatial_mean(needed(gradients), 3), activations)

    def weighted_maps(self, session: Session) -> LayerMaps:
        """``{layer: α_k A_k}`` (B, K, C, *grid), whose channel sum is the Grad-CAM before ReLU."""
        result = session.forward(gradients=True)
        gradients = needed(result.gradients)
        return {
            name: per_channel(spatial_mean(gradients[name], 3), session.rank) * activations[:, None]
            for name, activations in result.activations.items()
        }
