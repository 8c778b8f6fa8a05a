"""Inputs a model cannot take and models that compute NaN: one-line InputErrors naming the problem
instead of torch's errors or silently all-zero maps (issue 12)."""
import pytest
import torch
from torch import nn

import camkit
from camkit.errors import InputError
from helpers import small_cnn


@pytest.mark.parametrize("method", ["gradcam", "cam", "scorecam"])
def test_wrong_channel_count_and_dtype_are_named(method):
    model = small_cnn()
    with pytest.raises(InputError, match=r"1 channel\(s\) but the model's first convolution 'features.0' expects 3"):
        camkit.explain(model, torch.rand(2, 1, 16, 16), method=method)
    with pytest.raises(InputError, match="images are torch.float64 but the model's parameters are torch.float32"):
        camkit.explain(model, torch.rand(2, 3, 16, 16, dtype=torch.float64), method=method, layer="features")
    with pytest.raises(InputError, match="torch.float16"):
        camkit.explain(model, torch.rand(2, 3, 16, 16).half(), method=method, layer="features")


def test_other_model_errors_pass_through_unchanged():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return self.conv(x).view(7, -1)  # a bug of the model, not of the input

    with pytest.raises(RuntimeError, match="shape"):
        camkit.explain(Broken(), torch.rand(2, 3, 4, 4), layer="conv")


def test_nan_weight_is_named_instead_of_all_zero_maps():
    model = small_cnn()
    with torch.no_grad():
        model.features[3].weight[0, 0, 0, 0] = float("nan")
    for method in ("gradcam", "cam", "scorecam", "eigencam"):
        with pytest.raises(InputError, match="NaN or Inf .*parameter 'features.3.weight'"):
            camkit.explain(model, torch.rand(2, 3, 16, 16), method=method)
    model = small_cnn()
    with torch.no_grad():
        model.features[1].running_var[2] = float("nan")
    with pytest.raises(InputError, match="buffer 'features.1.running_var'"):
        camkit.explain(model, torch.rand(2, 3, 16, 16))


class Log(nn.Module):
    def forward(self, x):
        return torch.log(x - 0.5)  # NaN wherever x < 0.5: a non-finite activation from finite weights


def test_non_finite_activation_is_named_with_its_module():
    model = small_cnn()
    model.features.append(Log())
    with pytest.raises(InputError, match=r"on input 0, module 'features.8' \(Log\) outputs NaN or Inf"):
        camkit.explain(model, torch.full((1, 3, 16, 16), 0.1), layer="features.5")
    with pytest.raises(InputError, match="NaN or Inf in the explained score and layer 'features'"):
        camkit.explain(model, torch.full((1, 3, 16, 16), 0.1), layer="features")


def test_non_finite_scores_of_perturbed_copies_are_named():
    class NaNWhenMasked(nn.Module):  # finite on the image, NaN on masked copies (every mask has a zero)
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)

        def forward(self, x):
            a = self.conv(x)
            return torch.stack([a.mean((1, 2, 3)), torch.sqrt(x.amin((1, 2, 3)) - 1e-3)], 1)

    images = torch.rand(1, 3, 4, 4) + 0.5
    with pytest.raises(InputError, match="perturbed copy"):
        camkit.explain(NaNWhenMasked(), images, method="scorecam", layer="conv", targets=1)


def test_all_finite_is_exact_where_the_sum_overflows_or_cancels():
    from camkit.errors import all_finite

    big = torch.tensor([3e38, 3e38], dtype=torch.float32)                    # finite, but the sum overflows
    assert all_finite(big) and all_finite(torch.tensor([6e4, 6e4], dtype=torch.float16))
    assert all_finite(torch.empty(0)) and all_finite(torch.arange(5)) and all_finite(torch.ones(3, requires_grad=True))
    for bad in (float("nan"), float("inf"), -float("inf")):
        values = torch.zeros(2, 3, 8, 8)
        values[1, 2, 7, 7] = bad
        assert not all_finite(values), bad
    assert not all_finite(torch.tensor([float("inf"), -float("inf")]))      # the sum is NaN, not Inf
