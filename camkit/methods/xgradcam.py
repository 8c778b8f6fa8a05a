"""XGrad-CAM (Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of
CNNs", BMVC 2020)."""
from __future__ import annotations

import torch

from camkit.methods import register
from camkit.methods.base import Session, needed
from camkit.methods.weighted import ChannelWeightMethod


@register("xgradcam")
class XGradCAM(ChannelWeightMethod):
    r"""Gradients averaged with the channel's own activations as weights.

    .. math:: w^c_k = \sum_{i,j} \frac{A_k(i,j)}{\sum_{a,b} A_k(a,b) + \epsilon}\,
              \frac{\partial S_c}{\partial A_k(i,j)}, \qquad
              M_c = \mathrm{ReLU}\Big(\sum_k w^c_k A_k\Big)

    (:math:`\epsilon = 10^{-7}`, as pytorch-grad-cam).  Where the gradient is constant over
    positions (a GAP→Linear head) XGrad-CAM equals Grad-CAM.

    >>> e = camkit.explain(model, images, method="xgradcam")   # doctest: +SKIP
    """

    eps = 1e-7
    spatial_ranks = (1, 2, 3)

    def weights(self, activations: torch.Tensor, gradients: torch.Tensor | None, session: Session,
                layer: str) -> torch.Tensor:
        """``w_k = Σ_p A_k(p) ∂S_c/∂A_k(p) / Σ_p A_k(p)``."""
        total = activations.flatten(2).sum(-1)[:, None]  # (B, 1, C)
        return (needed(gradients) * activations[:, None]).flatten(3).sum(-1) / (total + self.eps)
