"""Ablation-CAM (Desai & Ramaswamy, "Ablation-CAM: Visual Explanations for Deep Convolutional Network
via Gradient-free Localization", WACV 2020)."""
from __future__ import annotations

import torch
from torch import nn

from camkit.errors import InputError
from camkit.methods import register
from camkit.methods.base import Session
from camkit.methods.weighted import ChannelWeightMethod, chunk_size


@register("ablationcam")
class AblationCAM(ChannelWeightMethod):
    r"""Channels weighted by the relative drop of the score when the channel is zeroed.

    .. math:: w^c_k = \frac{S_c - S_c^{(k)}}{S_c}, \qquad M_c = \mathrm{ReLU}\Big(\sum_k w^c_k A_k\Big)

    where :math:`S_c^{(k)}` is the logit with channel k of the tapped layer set to ``value``
    (0, as in the paper).  A forward hook replaces the layer's output; each forward ablates
    ``batch_size // B`` channels for the whole batch (at most ``memory_budget`` bytes of inputs).
    Costs one forward per channel and image.  A zero score is replaced by ``1e-7`` in the division.

    >>> e = camkit.explain(model, images, method="ablationcam", batch_size=64)   # doctest: +SKIP
    """

    needs_gradients = False
    spatial_ranks = (1, 2, 3)

    def __init__(self, batch_size: int = 32, memory_budget: int | None = None, value: float = 0.0):
        chunk_size(1, torch.zeros(1, 1), batch_size, memory_budget)  # validates both
        self.batch_size, self.memory_budget, self.value = batch_size, memory_budget, float(value)

    def weights(self, activations: torch.Tensor, gradients: torch.Tensor | None, session: Session,
                layer: str) -> torch.Tensor:
        """``w_k = (S − S^(k)) / S`` (B, K, C), one forward per ablated channel."""
        images = session.images
        b, c = activations.shape[:2]
        module = session.layers[layer]
        layout = session.layouts[layer]
        n = chunk_size(b, images, self.batch_size, self.memory_budget)
        ablated: list[int] = []

        def ablate(module: nn.Module, inputs: tuple, output: object) -> torch.Tensor:
            if not isinstance(output, torch.Tensor) or output.shape[0] != len(ablated) * b:
                raise InputError(f"ablation-CAM: layer {layer!r} output does not follow the input batch")
            output = output.clone()
            maps = layout.to_maps(output)  # (n·B, C, *grid), a view for built-in layouts (tokens: patches only)
            if maps.untyped_storage().data_ptr() != output.untyped_storage().data_ptr():
                raise InputError("ablation-CAM needs reshape= to return a view of the layer output (slicing, "
                                 "reshape, permute), so that zeroing a channel of the map zeroes it in the model")
            view = maps.unflatten(0, (len(ablated), b))
            for j, channel in enumerate(ablated):
                view[j, :, channel] = self.value
            return output

        handle = module.register_forward_hook(ablate)
        scores = []
        try:
            for start in range(0, c, n):
                ablated[:] = range(start, min(start + n, c))
                inputs = images[None].expand(len(ablated), *images.shape)
                scores.append(session.scores_of(inputs))
        finally:
            handle.remove()
        ablated_scores = torch.cat(scores).permute(1, 2, 0)  # (B, K, C)
        original = session.first.scores[..., None]
        original = torch.where(original == 0, torch.full_like(original, 1e-7), original)
        return (original - ablated_scores) / original

    def __repr__(self) -> str:
        return f"AblationCAM(batch_size={self.batch_size}, memory_budget={self.memory_budget}, value={self.value})"
