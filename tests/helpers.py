"""Tiny models with hand-checkable numbers, shared by the tests."""
import torch
from torch import nn


def sign_conv() -> nn.Conv2d:
    """A 1x1 conv mapping x (B, 1, H, W) to the two channels [x, −x]."""
    conv = nn.Conv2d(1, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
    return conv


class TinyGAP(nn.Module):
    """x (B,1,H,W) → conv1x1 [x, −x] → ReLU → GAP → Linear: CAM and Grad-CAM computable by hand."""

    def __init__(self):
        super().__init__()
        self.conv = sign_conv()
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, -1.0]]))
            self.fc.bias.copy_(torch.tensor([0.5, 0.0]))

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


class SmallCNN(nn.Module):
    """A small conv net with BatchNorm, in-place ReLU and a GAP → Linear head."""

    def __init__(self, classes: int = 5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
            nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def small_cnn(classes: int = 5, seed: int = 0) -> SmallCNN:
    torch.manual_seed(seed)
    model = SmallCNN(classes)
    with torch.no_grad():  # non-trivial running statistics so that eval and train mode differ
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model


class ColorNet(nn.Module):
    """A fixed-weight CAM net for Shapes: hue detectors → class maps → GAP.

    Channel ``j`` responds to the chroma of color ``j`` (its projection on the hue direction
    ``h_j`` of the opponent plane ``a = R - (G + B) / 2``, ``b = √3 / 2 (G - B)``); class ``c``
    (color ``c // T``, texture ``c % T``) reads its color's channel, weighted
    ``1 + 0.01 · texture`` so the order of classes is deterministic.  It localizes colored
    pixels (objects and same-colored fragments): metrics land strictly between 0 and 100.
    """

    def __init__(self):
        super().__init__()
        from camkit.data.shapes import COLORS, TEXTURES

        hues = torch.tensor([COLORS[c] for c in COLORS], dtype=torch.float32).deg2rad()
        textures = len(TEXTURES)
        classes = len(hues) * textures
        cos, sin = hues.cos(), hues.sin()
        detectors = torch.stack([cos, -cos / 2 + 0.75 ** 0.5 * sin, -cos / 2 - 0.75 ** 0.5 * sin], 1)
        self.color = nn.Conv2d(3, len(hues), 1)
        self.pool = nn.AvgPool2d(4)
        self.classes = nn.Conv2d(len(hues), classes, 1)
        with torch.no_grad():
            self.color.weight.copy_(detectors[:, :, None, None])
            self.color.bias.fill_(-0.1)
            weight = torch.zeros(classes, len(hues))
            for c in range(classes):
                weight[c, c // textures] = 1 + 0.01 * (c % textures)
            self.classes.weight.copy_(weight[:, :, None, None])
            self.classes.bias.zero_()

    def forward(self, x):
        maps = self.classes(self.pool(torch.relu(self.color(x))))
        return maps.mean(dim=(2, 3))
