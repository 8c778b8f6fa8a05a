"""LayerCAM (Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for
Localization", IEEE TIP 2021)."""
from __future__ import annotations

import torch

from camkit.methods import register
from camkit.methods.base import Session, needed
from camkit.methods.weighted import ElementwiseMethod


@register("layercam")
class LayerCAM(ElementwiseMethod):
    r"""Each activation weighted by its own positive gradient.

    .. math:: M_c(x, y) = \mathrm{ReLU}\Big(\sum_k \mathrm{ReLU}\big(\tfrac{\partial S_c}{\partial A_k(x,y)}\big)\,
              A_k(x, y)\Big)

    Designed for shallow layers too: tap several (``layer=[...]``) to fuse them.

    >>> e = camkit.explain(model, images, method="layercam", layer=["layer3", "layer4"])   # doctest: +SKIP
    """

    spatial_ranks = (1, 2, 3)

    def elementwise(self, activations: torch.Tensor, gradients: torch.Tensor | None, session: Session,
                    layer: str) -> torch.Tensor:
        """``ReLU(∂S_c/∂A) ⊙ A`` (B, K, C, *grid)."""
        return torch.relu(needed(gradients)) * activations[:, None]
