"""A VGG-style GAP network with coarse maps: the regime Augmented Grad-CAM was made for.

The CAM papers' networks map 224² images to 14×14 (stride 16) or 7×7 (stride 32) before global
average pooling.  ``CoarseNet`` reaches that stride cheaply: a *patch stem* (a ``p×p``
convolution with stride ``p``, as in ViT and ConvNeXt) followed by VGG blocks (``k×k`` convolution,
batch norm, ReLU), a 2×2 max pool between blocks:

    A = features(x)  (B, C, H/s, W/s),  s = p · 2^(blocks-1);   logits = W · mean_{x,y} A + b,
    CAM_c = Σ_k W_ck A_k

Small kernels keep the receptive field of a map cell near its own ``s×s`` block (the maps do not
spill far past the object), which is what the area-averaging forward model of
:mod:`camkit.augmented` assumes.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from camkit.errors import InputError
from camkit.models.nin import GlobalPool, checked_blocks
from camkit.models.standardize import Standardize

__all__ = ["CoarseNet"]


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    padding = 0 if stride > 1 else kernel_size // 2
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=False))


class CoarseNet(nn.Module):
    """Patch stem + VGG blocks + GAP + Linear; maps ``(B, 3, H, W) → (B, widths[-1], H/s, W/s)``.

    ``patch``: side and stride of the stem convolution (``stem_width`` channels).  ``widths[i]``,
    ``kernel_sizes[i]``: block ``i`` (conv, BN, ReLU); a 2×2 max pool follows every block but the
    last, so the stride is ``s = patch · 2**(len(widths) - 1)`` (8 · 2² = 32: 7×7 maps at 224²; the
    defaults are the shipped ``coarsenet-shapes``, whose receptive field is 48 px).
    ``pool``: ``"avg"`` (GAP, the CAM network) or ``"max"`` (GMP).

    Modules: ``standardize`` (``(x - mean) / std``) → ``features`` (``stem``, ``block1``, ``pool1``, …, ``block{n}``) →
    ``pool`` → ``dropout`` → ``fc``.  The CAM layer is ``features``.
    """

    def __init__(self, num_classes: int = 12, widths: Sequence[int] = (48, 96, 128),
                 kernel_sizes: Sequence[int] = (3, 1, 1), *, patch: int = 8, stem_width: int = 32,
                 pool: str = "avg", dropout: float = 0.0,
                 mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.25, 0.25, 0.25)):
        super().__init__()
        widths, kernel_sizes = checked_blocks(num_classes, widths, kernel_sizes)
        if patch < 1 or stem_width < 1 or min(widths) < 1 or min(kernel_sizes) < 1:
            raise InputError("patch, stem_width, widths and kernel_sizes must be positive")
        if not 0 <= dropout < 1:
            raise InputError(f"dropout must be in [0, 1), got {dropout}")
        self.config: dict[str, Any] = dict(
            num_classes=int(num_classes), widths=list(widths), kernel_sizes=list(kernel_sizes), patch=int(patch),
            stem_width=int(stem_width), pool=pool, dropout=float(dropout), mean=[float(m) for m in mean],
            std=[float(s) for s in std])
        self.standardize = Standardize(mean, std)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["stem"] = _conv_bn_relu(len(mean), stem_width, patch, stride=patch)
        in_channels = stem_width
        for i, (width, k) in enumerate(zip(widths, kernel_sizes, strict=True), start=1):
            layers[f"block{i}"] = _conv_bn_relu(in_channels, width, k)
            if i < len(widths):
                layers[f"pool{i}"] = nn.MaxPool2d(2)
            in_channels = width
        self.features = nn.Sequential(layers)
        self.pool = GlobalPool(pool)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)
        self.class_names: list[str] | None = None

    @property
    def num_classes(self) -> int:
        """Classes of the last layer."""
        return self.config["num_classes"]

    @property
    def stride(self) -> int:
        """Input pixels per map cell: ``patch · 2**(blocks - 1)``."""
        return self.config["patch"] * 2 ** (len(self.config["widths"]) - 1)

    def class_maps(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) → (B, num_classes, H/s, W/s)``: the CAMs ``Σ_k W_ck A_k``, unnormalised, no bias."""
        if images.dim() != 4:
            raise InputError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
        return torch.einsum("bkhw,ck->bchw", self.features(self.standardize(images)), self.fc.weight)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) → (B, num_classes)`` logits."""
        return self.fc(self.dropout(self.pool(self.features(self.standardize(images)))))
