"""HiResCAM (Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of
convolutional neural networks", 2020) and pytorch-grad-cam's element-wise Grad-CAM."""
from __future__ import annotations

import torch

from camkit.methods import register
from camkit.methods.base import Session, needed
from camkit.methods.weighted import ElementwiseMethod


@register("hirescam")
class HiResCAM(ElementwiseMethod):
    r"""Gradient times activation, summed over channels (no spatial averaging).

    .. math:: M_c(x, y) = \mathrm{ReLU}\Big(\sum_k \frac{\partial S_c}{\partial A_k(x,y)}\, A_k(x,y)\Big)

    On a GAP→Linear head :math:`\partial S_c / \partial A_k = W_{ck} / (hw)`, so HiResCAM · (h·w)
    equals CAM, and HiResCAM equals Grad-CAM.

    >>> e = camkit.explain(model, images, method="hirescam")   # doctest: +SKIP
    """

    spatial_ranks = (1, 2, 3)

    def elementwise(self, activations: torch.Tensor, gradients: torch.Tensor | None, session: Session,
                    layer: str) -> torch.Tensor:
        """``∂S_c/∂A ⊙ A`` (B, K, C, *grid)."""
        return needed(gradients) * activations[:, None]

    def combine(self, activations: torch.Tensor, gradients: torch.Tensor | None, session: Session,
                layer: str) -> torch.Tensor:
        """``Σ_k ∂S_c/∂A_k ⊙ A_k`` without building the (B, K, C, *grid) product."""
        return torch.einsum("bkc...,bc...->bk...", needed(gradients), activations)


@register("gradcam-elementwise")
class GradCAMElementwise(ElementwiseMethod):
    r"""Rectified gradient-times-activation, summed over channels (pytorch-grad-cam's
    ``GradCAMElementWise``).

    .. math:: M_c(x, y) = \sum_k \mathrm{ReLU}\Big(\frac{\partial S_c}{\partial A_k(x,y)}\, A_k(x,y)\Big)

    With non-negative activations (after a ReLU) it equals LayerCAM.

    >>> e = camkit.explain(model, images, method="gradcam-elementwise")   # doctest: +SKIP
    """

    spatial_ranks = (1, 2, 3)

    def elementwise(self, activations: torch.Tensor, gradients: torch.Tensor | None, session: Session,
                    layer: str) -> torch.Tensor:
        """``ReLU(∂S_c/∂A ⊙ A)`` (B, K, C, *grid)."""
        return torch.relu(needed(gradients) * activations[:, None])
