"""CAM (Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016)."""
from __future__ import annotations

import torch

from camkit.methods import register
from camkit.methods.base import LayerMaps, Method, Session, per_channel


@register("cam")
class CAM(Method):
    r"""Class activation map: the classifier's weights applied at every position.

    .. math:: M_c(p) = \sum_k w^c_k \, f_k(p) \; [+\, b_c]

    at every position p, where :math:`f_k` is channel k of the tapped layer and :math:`w^c` the row of the Linear (or
    1x1 conv) classifier applied after global pooling, found automatically.  Needs no backward.
    ``bias=True`` adds the class bias at every position (off by default, as in the paper).

    >>> e = camkit.explain(model, images, method="cam")   # doctest: +SKIP
    """

    needs_gradients = False
    spatial_ranks = (1, 2, 3)

    def __init__(self, bias: bool = False):
        self.bias = bias

    def combine(self, activations: torch.Tensor, gradients: torch.Tensor | None, session: Session,
                layer: str) -> torch.Tensor:
        """``Σ_k W_ck act(A)_k`` with the classifier head found for ``layer``."""
        return session.head(layer).class_maps(activations, session.classes.clamp_min(0), bias=self.bias)

    def weighted_maps(self, session: Session) -> LayerMaps:
        """``{layer: W_ck act(A)_k}`` (B, K, C, *grid), whose channel sum is the CAM (without bias)."""
        result = session.forward(gradients=False)
        stacks = {}
        for name, activations in result.activations.items():
            head = session.head(name)
            features = head.features(activations)
            weights = head.class_weights(session.classes.clamp_min(0), features.shape[1], features)
            stacks[name] = per_channel(weights, session.rank) * features[:, None]
        return stacks

    def __repr__(self) -> str:
        return f"CAM(bias={self.bias})"
