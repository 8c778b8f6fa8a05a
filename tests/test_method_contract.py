"""The method contract, checked for every registered method (``camkit.methods.available()``): a newly
registered method is tested here without a line added.  On tiny models of every layout: batch
independence, the model left as found, finite maps in [0, 1], grids of every rank it declares
(and a one-line error for the others), and its weighted activations summing to its map."""
import pytest
import torch
from torch import nn

import camkit
from camkit.errors import InputError
from camkit.methods import Method
from camkit.methods.base import Session
from camkit.methods.weighted import first_component, weighted_maps_of
from helpers import small_cnn

# options that keep the slow methods quick on tiny models; any other method runs with its defaults
FAST = {
    "sscam": {"samples": 2}, "iscam": {"samples": 2}, "smoothgradcam++": {"samples": 2},
    "augmented-gradcam": {"L": 4, "iters": 10},
}
METHODS = camkit.methods.available()


def method(name):
    few_copies = {"L": 4} if name.startswith("augmented") else {}  # Augmented Grad-CAM's baselines: 4 copies
    return camkit.methods.get(name, **FAST.get(name, few_copies))


class TokenGAP(nn.Module):
    """A patch transformer in miniature: 4×4 patches → tokens (B, 1 + h·w, 8) after a class token →
    a per-token MLP (``block``) → mean of the patch tokens → Linear: CAM can read its head too."""

    def __init__(self, classes=4):
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.block = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
        self.head = nn.Linear(8, classes)

    def forward(self, x):
        patches = self.embed(x).flatten(2).transpose(1, 2)
        tokens = self.block(torch.cat([self.cls.expand(x.shape[0], -1, -1), patches], 1))
        return self.head(tokens[:, 1:].mean(1))


def gap_net(rank):
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[rank]
    pool = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}[rank]
    return nn.Sequential(conv(3, 6, 3, padding=1), nn.BatchNorm1d(6) if rank == 1 else nn.Identity(), nn.ReLU(),
                         pool(1), nn.Flatten(), nn.Linear(6, 4))


CASES = {  # name → (model, layer, inputs (B, C, *S))
    "cnn": lambda: (small_cnn(), "features", torch.rand(3, 3, 16, 16)),
    "tokens": lambda: (TokenGAP(), "block", torch.rand(3, 3, 16, 20)),
    "signal": lambda: (gap_net(1), "2", torch.rand(3, 3, 12)),
    "clip": lambda: (gap_net(3), "2", torch.rand(3, 3, 3, 6, 8)),
}


def _state(model):
    return ([m.training for m in model.modules()],
            [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()],
            [p.requires_grad for p in model.parameters()], torch.is_grad_enabled())


@pytest.mark.parametrize("name", METHODS)
def test_declares_the_contract(name):
    instance = method(name)
    assert isinstance(instance, Method) and instance.name == name
    assert isinstance(instance.needs_gradients, bool)
    assert 2 in instance.spatial_ranks and set(instance.spatial_ranks) <= {1, 2, 3}
    overrides = {p for p in ("__call__", "combine") if getattr(type(instance), p) is not getattr(Method, p)}
    assert overrides, f"{name} overrides neither __call__ nor combine"


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", METHODS)
def test_every_layout_batch_independence_state_and_range(name, case):
    torch.manual_seed(0)
    model, layer, images = CASES[case]()
    model.train()
    model.get_submodule(layer).requires_grad_(False)
    rank = images.dim() - 2
    before = _state(model)
    if rank not in method(name).spatial_ranks:
        with pytest.raises(InputError, match=f"needs .* {rank}-D maps"):
            camkit.explain(model, images, method=method(name), layer=layer, top_k=2)
        assert _state(model) == before
        return
    batch = camkit.explain(model, images, method=method(name), layer=layer, top_k=2)
    assert _state(model) == before and all(p.grad is None for p in model.parameters())
    assert batch.maps.shape == (3, 2, *images.shape[2:])
    assert torch.isfinite(batch.maps).all() and batch.maps.min() >= 0 and batch.maps.max() <= 1
    peaks = batch.maps.flatten(2).amax(-1)
    assert ((peaks == 1) | (peaks == 0)).all() and (peaks == 1).any()
    for i in (0, 2):
        alone = camkit.explain(model, images[i:i + 1], method=method(name), layer=layer, top_k=2)
        assert alone.classes[0].tolist() == batch.classes[i].tolist()
        torch.testing.assert_close(alone.raw[0], batch.raw[i], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", METHODS)
def test_weighted_activations_sum_to_the_map(name):
    instance = method(name)
    if type(instance).weighted_maps is Method.weighted_maps:
        with pytest.raises(InputError, match="eigen smoothing"):
            camkit.explain(small_cnn(), torch.rand(1, 3, 16, 16), method=instance, smooth="eigen")
        return
    model, layer, images = CASES["cnn"]()
    model.eval()
    layers = {layer: model.get_submodule(layer)}
    maps = instance(Session(model, images, layers, None, 2))
    weighted = weighted_maps_of(instance, Session(model, images, layers, None, 2))
    summed = {k: first_component(w, 2) if name.startswith("eigen") else w.sum(2) for k, w in weighted.items()}
    torch.testing.assert_close(summed[layer], maps[layer], rtol=1e-4, atol=1e-6)
