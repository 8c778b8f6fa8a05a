"""CAM-ready conversions of torchvision classifiers (Zhou et al., CVPR 2016, §3).

The network is cut where its maps are still 14×14 at 224² input (VGG16 after conv5_3,
GoogLeNet after inception4e, ResNet after layer4 run at stride 1), then a 3×3 convolution with
1024 channels (+ ReLU), global average (or max) pooling and one Linear layer follow:

    logits = W · pool(ReLU(conv3x3(trunk(x)))) + b,      CAM_c = Σ_k W_ck A_k

so ``CamNet.features`` → ``conv`` gives ``A`` (B, 1024, 14, 14) and ``fc`` holds ``W``.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from camkit.errors import InputError
from camkit.models.nin import GlobalPool
from camkit.models.standardize import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["CamNet", "gap_head", "trunk"]


class _GoogLeNetInput(nn.Module):
    """torchvision GoogLeNet's ``transform_input``: ImageNet-standardised input -> the (x-0.5)/0.5
    scale its original weights expect, ``x_c · (std_c / 0.5) + (mean_c - 0.5) / 0.5``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) -> (B, 3, H, W)``."""
        return torch.cat([x[:, c:c + 1] * (std / 0.5) + (mean - 0.5) / 0.5
                          for c, (mean, std) in enumerate(zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))], 1)


class CamNet(nn.Module):
    """``trunk`` → 3×3 conv (``width`` channels) + ReLU → global pool → Linear.

    Modules: ``features`` (the trunk), ``conv``, ``pool``, ``fc``.  ``forward``: ``(B, 3, H, W) ->
    (B, num_classes)``.
    """

    def __init__(self, features: nn.Module, in_channels: int, num_classes: int, width: int = 1024,
                 pool: str = "avg"):
        super().__init__()
        self.features = features
        self.conv = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=False))
        self.pool = GlobalPool(pool)
        self.fc = nn.Linear(width, num_classes)
        self.num_classes = num_classes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of images ``(B, 3, H, W)``."""
        return self.fc(self.pool(self.conv(self.features(images))))


def trunk(backbone: nn.Module) -> tuple[nn.Sequential, int]:
    """The part of a torchvision VGG / GoogLeNet / ResNet kept by the CAM conversion, and its channels."""
    import torchvision.models as tvm

    if isinstance(backbone, tvm.VGG):
        convs = [i for i, m in enumerate(backbone.features) if isinstance(m, nn.Conv2d)]
        last = convs[-1]  # conv5_3; keep its ReLU, drop the last max pool
        layers = list(backbone.features.children())[:last + 2]
        return nn.Sequential(*layers), backbone.features[last].out_channels
    if isinstance(backbone, tvm.GoogLeNet):
        names = ["conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b",
                 "maxpool3", "inception4a", "inception4b", "inception4c", "inception4d", "inception4e"]
        modules = OrderedDict((n, getattr(backbone, n)) for n in names)
        if backbone.transform_input:
            modules = OrderedDict([("transform_input", _GoogLeNetInput()), *modules.items()])
        return nn.Sequential(modules), 832
    if isinstance(backbone, tvm.ResNet):
        layer4 = backbone.layer4
        first = layer4[0]
        # Stride 1 in layer4 keeps 14×14 maps at 224² (as in Choe et al.'s wsolevaluation).
        strided = first.conv2 if hasattr(first, "conv3") else first.conv1  # Bottleneck vs BasicBlock
        strided.stride = (1, 1)
        if first.downsample is not None:
            first.downsample[0].stride = (1, 1)
        names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
        channels = layer4[-1].conv3.out_channels if hasattr(layer4[-1], "conv3") else layer4[-1].conv2.out_channels
        return nn.Sequential(OrderedDict((n, getattr(backbone, n)) for n in names)), channels
    raise InputError(f"gap_head converts torchvision VGG, GoogLeNet and ResNet models, not {type(backbone).__name__}")


def gap_head(backbone: nn.Module, num_classes: int = 1000, *, pool: str = "avg", width: int = 1024) -> CamNet:
    """Convert a torchvision VGG / GoogLeNet / ResNet into a CAM-ready :class:`CamNet` (14×14 maps at 224²).

    ``pool="avg"`` gives the CAM paper's GAP network, ``"max"`` its GMP comparison.  The new
    conv and Linear layers are randomly initialised; the trunk keeps the backbone's weights
    (shared, not copied).
    """
    if num_classes < 1:
        raise InputError(f"num_classes must be >= 1, got {num_classes}")
    features, channels = trunk(backbone)
    return CamNet(features, channels, num_classes, width=width, pool=pool)
