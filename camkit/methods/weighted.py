"""Shared shapes of CAM methods: channel weights, element-wise weights, and the first principal component.

Every method in this family writes its map as a sum over channels of *weighted activations*
``W_k(p) = w_k(p) · A_k(p)``: :class:`ChannelWeightMethod` (one weight per channel,
Grad-CAM++, XGrad-CAM, Score-CAM …) and :class:`ElementwiseMethod` (a weight per position,
HiResCAM, LayerCAM …).  ``weighted_maps(session)`` exposes the (B, K, C, *grid) stack so that
principal-component ("eigen") smoothing applies to any of them.  Both work on any grid rank.
"""
from __future__ import annotations

import math

import torch

from camkit.errors import InputError
from camkit.methods.base import LayerMaps, Method, Pass, Session, per_channel, weighted_sum

__all__ = ["ChannelWeightMethod", "ElementwiseMethod", "first_component", "weighted_maps_of"]


class ChannelWeightMethod(Method):
    r"""A method whose map is :math:`M_c = \sum_k w^c_k A_k`: override ``weights``.

    ``weights(activations (B, C, *grid), gradients (B, K, C, *grid) | None, session, layer)`` →
    (B, K, C).  Methods that need other passes (noise, masks) may override ``channel_weights``.
    """

    def weights(self, activations: torch.Tensor, gradients: torch.Tensor | None, session: Session,
                layer: str) -> torch.Tensor:
        """Channel weights (B, K, C) of the explained scores."""
        raise NotImplementedError(f"{type(self).__name__} must override weights or channel_weights")

    def channel_weights(self, session: Session) -> tuple[Pass, dict[str, torch.Tensor]]:
        """One pass and ``{layer: weights (B, K, C)}``."""
        result = session.forward(gradients=self.needs_gradients)
        weights = {
            name: self.weights(acts, None if result.gradients is None else result.gradients[name], session, name)
            for name, acts in result.activations.items()
        }
        return result, weights

    def __call__(self, session: Session) -> LayerMaps:
        """``Σ_k w_k A_k`` per layer from ``channel_weights``."""
        result, weights = self.channel_weights(session)
        return {name: weighted_sum(weights[name], result.activations[name]) for name in weights}

    def weighted_maps(self, session: Session) -> LayerMaps:
        """``{layer: w_k A_k}`` (B, K, C, *grid); their sum over C is the method's map."""
        result, weights = self.channel_weights(session)
        return {name: per_channel(weights[name], session.rank) * result.activations[name][:, None]
                for name in weights}


class ElementwiseMethod(Method):
    r"""A method whose map is :math:`M_c = \sum_k W^c_k(x, y)`: override ``elementwise``.

    ``elementwise(activations (B, C, *grid), gradients (B, K, C, *grid), session, layer)`` →
    weighted activations (B, K, C, *grid).
    """

    def elementwise(self, activations: torch.Tensor, gradients: torch.Tensor | None, session: Session,
                    layer: str) -> torch.Tensor:
        """Weighted activations (B, K, C, *grid) whose channel sum is the map."""
        raise NotImplementedError(f"{type(self).__name__} must override elementwise")

    def combine(self, activations: torch.Tensor, gradients: torch.Tensor | None, session: Session,
                layer: str) -> torch.Tensor:
        """The channel sum of ``elementwise``."""
        return self.elementwise(activations, gradients, session, layer).sum(2)

    def weighted_maps(self, session: Session) -> LayerMaps:
        """``{layer: elementwise(A, G)}`` (B, K, C, *grid)."""
        result = session.forward(gradients=self.needs_gradients)
        return {
            name: self.elementwise(acts, None if result.gradients is None else result.gradients[name], session, name)
            for name, acts in result.activations.items()
        }


def weighted_maps_of(method: Method, session: Session) -> LayerMaps:
    """``{layer: (B, K, C, *grid)}`` weighted activations of ``method``, whose channel sum is its map.

    Every method that overrides ``Method.weighted_maps`` qualifies: this family, CAM and Grad-CAM.
    """
    if type(method).weighted_maps is not Method.weighted_maps:
        return method.weighted_maps(session)
    raise InputError(
        f"eigen smoothing needs a method whose map is a sum over channels of weighted activations; "
        f"{method.name or type(method).__name__!r} does not expose them"
    )


def first_component(weighted: torch.Tensor, rank: int = 2) -> torch.Tensor:
    r"""Projection on the first principal component over channels: (..., C, *grid) → (..., *grid).

    ``rank``: the number of grid axes.  Each map's positions are the samples and its C channels
    the features: :math:`X \in \mathbb{R}^{|P| \times C}`, centred over positions, :math:`X = U S V^\top`,
    :math:`M = X v_1 = s_1 u_1` (pytorch-grad-cam's ``get_2d_projection``).  The SVD's sign is
    arbitrary: camkit flips it so that ``M`` correlates positively with the channel sum
    :math:`\sum_k X_k` (the unsmoothed map); pytorch-grad-cam leaves it as LAPACK returns it.
    """
    lead, c, grid = weighted.shape[:-rank - 1], weighted.shape[-rank - 1], weighted.shape[-rank:]
    x = torch.nan_to_num(weighted.float()).reshape(-1, c, math.prod(grid)).transpose(1, 2)  # (N, |P|, C)
    centred = x - x.mean(1, keepdim=True)
    u, s, _ = torch.linalg.svd(centred, full_matrices=False)
    projection = u[..., 0] * s[..., :1]  # (N, hw)
    reference = centred.sum(2)
    sign = torch.where((projection * reference).sum(1, keepdim=True) < 0, -1.0, 1.0)
    return (projection * sign).reshape(*lead, *grid)


def chunk_size(batch: int, image: torch.Tensor, batch_size: int, memory_budget: int | None) -> int:
    """How many variants of the whole batch of ``batch`` images one forward takes (at least 1).

    ``batch_size`` caps the images per forward; ``memory_budget`` (bytes) caps the masked inputs
    built at once (``n · B · C · *S · itemsize``).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
    n = max(1, batch_size // batch)
    if memory_budget is not None:
        if memory_budget <= 0:
            raise InputError(f"memory_budget must be a positive number of bytes, got {memory_budget!r}")
        per_variant = batch * image[0].numel() * image.element_size()
        n = min(n, max(1, int(memory_budget // per_variant)))
    return n
