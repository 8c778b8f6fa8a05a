"""Grad-CAM (camkit.methods.gradcam): golden values with a linear and a nonlinear head."""
import pytest
import torch
from torch import nn

import camkit
from camkit.errors import HeadError
from helpers import TinyGAP, sign_conv

X = torch.tensor([[1.0, 2.0], [3.0, -4.0]]).view(1, 1, 2, 2)


def test_gradcam_golden_values():
    # dS_0/dA_k = W_0k / 4 → α = [0.25, 0.5]; Grad-CAM_0 = 0.25 A0 + 0.5 A1
    e = camkit.explain(TinyGAP(), X, method="gradcam", layer="relu")
    torch.testing.assert_close(e.raw[0, 0], torch.tensor([[0.25, 0.5], [0.75, 2.0]]))


class SquareHead(nn.Module):
    """logits = [Σ A0², Σ A1] with A = conv(x) = [x, −x]: α_0 = [mean 2x, 0], α_1 = [0, 1]."""

    def __init__(self):
        super().__init__()
        self.conv = sign_conv()

    def forward(self, x):
        a = self.conv(x)
        return torch.stack([(a[:, 0] ** 2).sum((1, 2)), a[:, 1].sum((1, 2))], 1)


def test_gradcam_golden_values_nonlinear_head():
    e = camkit.explain(SquareHead(), X, method="gradcam", layer="conv", targets=[[0, 1]])
    torch.testing.assert_close(e.raw[0, 0], torch.tensor([[1.0, 2.0], [3.0, 0.0]]))  # ReLU(1.0 · x)
    torch.testing.assert_close(e.raw[0, 1], torch.tensor([[0.0, 0.0], [0.0, 4.0]]))  # ReLU(−x)
    with pytest.raises(HeadError, match="gradcam"):
        camkit.explain(SquareHead(), X, method="cam", layer="conv")
