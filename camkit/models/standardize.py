"""Input standardisation, ``(x - mean) / std`` per channel: the one place camkit applies it.

Images enter camkit in [0, 1].  A network trained on standardised inputs (every torchvision
ImageNet model) gets them through :class:`Standardize`, as a module of its own
(:class:`camkit.models.NiN` starts with one) or wrapped around the network
(:class:`Standardized`, what ``camkit bench`` does for ``torchvision:`` models).
:func:`camkit.plot.to_rgb` undoes it for display (``mean=``, ``std=``).

    >>> model = Standardized(torchvision.models.resnet18(), IMAGENET_MEAN, IMAGENET_STD)  # doctest: +SKIP
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from camkit.errors import InputError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Standardize", "Standardized"]

#: Per-channel mean and standard deviation of ImageNet's RGB images in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Standardize(nn.Module):
    """``(x - mean) / std`` per channel: images ``(B, C, H, W)`` in [0, 1] -> the model's input scale."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` of ``x`` ``(B, C, H, W)``; ``C`` must be the number of channels of
        ``mean`` (one mean serves any ``C``): a grey image given to an RGB model is an error, not
        a silent broadcast."""
        channels = self.mean.shape[1]
        if channels != 1 and (x.dim() < 2 or x.shape[1] != channels):
            got = x.shape[1] if x.dim() >= 2 else "no"
            raise InputError(f"images have {got} channel(s) but the model standardises {channels} "
                             f"(shape {tuple(x.shape)}); give (B, {channels}, H, W) images")
        return (x - self.mean) / self.std


class Standardized(nn.Module):
    """``model(standardize(x))``: feeds images in [0, 1] to a model trained on standardised inputs.

    Its modules are ``standardize`` and ``model`` (layer names gain the prefix ``model.``).
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.standardize = Standardize(mean, std)
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``model(standardize(x))``."""
        return self.model(self.standardize(x))
