"""Network in Network (Lin, Chen, Yan, ICLR 2014), sized for CAM on small images.

An mlpconv block is a k×k convolution followed by two 1×1 convolutions, each followed by a ReLU
(and, optionally, batch norm before it).  Max pooling and dropout sit between blocks; the last
block outputs one channel per class and global pooling turns each channel into its logit:

    logit_c = pool_{x,y} A_c(x, y),      pool = mean (GAP) or max (GMP)

so the CAM of class ``c`` *is* channel ``c`` of the last block, ``model.features`` output.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from camkit.errors import InputError
from camkit.models.standardize import Standardize

__all__ = ["NiN", "GlobalPool", "mlpconv"]


class GlobalPool(nn.Module):
    """``(B, C, h, w) -> (B, C)``: the spatial mean (``"avg"``, GAP) or maximum (``"max"``, GMP)."""

    def __init__(self, mode: str = "avg"):
        super().__init__()
        if mode not in ("avg", "max"):
            raise InputError(f"pool must be 'avg' or 'max', got {mode!r}")
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w) -> (B, C)``."""
        return x.mean(dim=(2, 3)) if self.mode == "avg" else x.amax(dim=(2, 3))

    def extra_repr(self) -> str:
        """The pooling mode, shown in the module's repr."""
        return f"mode={self.mode!r}"


def mlpconv(in_channels: int, width: int, out_channels: int, kernel_size: int, *, batch_norm: bool = True,
            last_relu: bool = True) -> nn.Sequential:
    """k×k conv (``in -> width``), 1×1 conv (``width -> width``), 1×1 conv (``width -> out``), each + ReLU.

    ``batch_norm`` inserts BatchNorm2d before each ReLU; ``last_relu=False`` leaves the last 1×1
    conv linear (used for the class maps).
    """
    layers: list[nn.Module] = []
    channels = [in_channels, width, width, out_channels]
    for i in range(3):
        k = kernel_size if i == 0 else 1
        last = i == 2
        layers.append(nn.Conv2d(channels[i], channels[i + 1], k, padding=k // 2, bias=not (batch_norm and not last)))
        if last and not last_relu:
            break
        if batch_norm and not last:
            layers.append(nn.BatchNorm2d(channels[i + 1]))
        layers.append(nn.ReLU(inplace=False))
    return nn.Sequential(*layers)


def checked_blocks(num_classes: int, widths: Sequence[int],
                   kernel_sizes: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``widths`` and ``kernel_sizes`` as tuples of ints, one per block: an :class:`InputError` unless
    there is at least one block, both have its length and ``num_classes >= 1``."""
    widths, kernel_sizes = tuple(int(w) for w in widths), tuple(int(k) for k in kernel_sizes)
    if num_classes < 1:
        raise InputError(f"num_classes must be >= 1, got {num_classes}")
    if len(widths) != len(kernel_sizes) or not widths:
        raise InputError(f"widths {widths} and kernel_sizes {kernel_sizes} must be non-empty and of equal length")
    return widths, kernel_sizes


class NiN(nn.Module):
    """NiN classifier whose last block gives the class maps ``(B, num_classes, h, w)``.

    ``widths[i]`` and ``kernel_sizes[i]`` set block ``i``; a 2×2 max pool and dropout follow each of
    the first ``downsample`` blocks (map side = input side / 2**downsample).  ``pool`` is ``"avg"``
    (GAP, the CAM network) or ``"max"`` (GMP, its comparison).  ``class_relu`` ends the last block
    with a ReLU (the original NiN), so the maps are non-negative.

    Modules: ``standardize`` (``(x - mean) / std``) → ``features`` (``block1``, ``pool1``, ``drop1``, …, ``block{n}``) →
    ``pool``.  ``forward`` returns logits ``(B, num_classes)`` = ``pool(features(x))``.
    """

    def __init__(self, num_classes: int = 12, widths: Sequence[int] = (24, 48, 96),
                 kernel_sizes: Sequence[int] = (5, 3, 3), *, downsample: int = 2, pool: str = "avg",
                 dropout: float = 0.1, batch_norm: bool = True, class_relu: bool = False,
                 mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.25, 0.25, 0.25)):
        super().__init__()
        widths, kernel_sizes = checked_blocks(num_classes, widths, kernel_sizes)
        if not 0 <= downsample < len(widths):
            raise InputError(f"downsample must be in [0, {len(widths) - 1}] for {len(widths)} blocks, got {downsample}")
        self.config: dict[str, Any] = dict(
            num_classes=int(num_classes), widths=list(widths), kernel_sizes=list(kernel_sizes),
            downsample=int(downsample), pool=pool, dropout=float(dropout), batch_norm=bool(batch_norm),
            class_relu=bool(class_relu), mean=[float(m) for m in mean], std=[float(s) for s in std])
        self.standardize = Standardize(mean, std)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        in_channels = len(mean)
        for i, (width, k) in enumerate(zip(widths, kernel_sizes, strict=True), start=1):
            last = i == len(widths)
            out = num_classes if last else width
            layers[f"block{i}"] = mlpconv(in_channels, width, out, k, batch_norm=batch_norm,
                                          last_relu=not last or class_relu)
            if i <= downsample:
                layers[f"pool{i}"] = nn.MaxPool2d(2)
                if dropout > 0:
                    layers[f"drop{i}"] = nn.Dropout(dropout)
            in_channels = out
        self.features = nn.Sequential(layers)
        self.pool = GlobalPool(pool)
        self.class_names: list[str] | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes (channels of the last block)."""
        return self.config["num_classes"]

    def class_maps(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) -> (B, num_classes, H / 2**downsample, W / 2**downsample)``: the CAMs, unnormalised."""
        if images.dim() != 4:
            raise InputError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
        return self.features(self.standardize(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` = ``pool(class_maps(images))``."""
        return self.pool(self.class_maps(images))
