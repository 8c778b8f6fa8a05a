"""Hooks and model state (camkit.hooks): the recorded activation is the layer's output, and
modes, hooks and flags come back."""
import pytest
import torch
from torch import nn

import camkit
from helpers import small_cnn


def test_inplace_relu_after_tapped_layer_does_not_change_recorded_activation():
    model = small_cnn()
    images = torch.rand(2, 3, 16, 16)
    model.eval()
    activations = model.features[:7](images)  # the conv output, before the in-place ReLU
    e = camkit.explain(model, images, method="cam", layer="features.6", head="fc", targets=1)
    assert (activations < 0).any()  # the conv output has negatives the in-place ReLU would erase
    expected = torch.relu(torch.einsum("c,bchw->bhw", model.fc.weight[1], activations))
    torch.testing.assert_close(e.raw[:, 0], expected, rtol=1e-5, atol=1e-6)


def _state(model):
    return (
        [m.training for m in model.modules()],
        [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        torch.is_grad_enabled(),
    )


class Exploding(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom mid-forward")


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_state_restored_after_success_and_after_exception(method):
    model = small_cnn().train()
    model.features[1].eval()  # a mixed state must come back as it was
    model.fc.weight.requires_grad_(False)
    user_calls = []
    model.features.register_forward_hook(lambda m, i, o: user_calls.append(1))
    before = _state(model)
    camkit.explain(model, torch.rand(2, 3, 16, 16), method=method, top_k=2)
    assert _state(model) == before
    assert all(p.grad is None for p in model.parameters())
    assert user_calls  # the user's hook stayed attached and ran
    model.fc = nn.Sequential(Exploding())
    model.fc.train()
    before = _state(model)
    with pytest.raises(RuntimeError, match="boom"):
        camkit.explain(model, torch.rand(2, 3, 16, 16), method=method, layer="features")
    assert _state(model) == before
