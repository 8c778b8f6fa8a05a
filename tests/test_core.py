"""The core: golden values on a tiny model, CAM/Grad-CAM invariants, targets, outputs, errors."""
import collections

import pytest
import torch
from torch import nn

import camkit
from camkit.errors import HeadError, InputError, LayerError
from helpers import TinyGAP, sign_conv, small_cnn

X = torch.tensor([[1.0, 2.0], [3.0, -4.0]]).view(1, 1, 2, 2)


def test_cam_golden_values():
    # A = [relu(x), relu(-x)] = [[1,2],[3,0]], [[0,0],[0,4]]; logits = [4.0, 3.5]; CAM_0 = A0 + 2 A1
    e = camkit.explain(TinyGAP(), X, method="cam", layer="relu", top_k=2)
    assert e.classes.tolist() == [[0, 1]]
    torch.testing.assert_close(e.scores, torch.tensor([[4.0, 3.5]]))
    torch.testing.assert_close(e.raw[0, 0], torch.tensor([[1.0, 2.0], [3.0, 8.0]]))
    torch.testing.assert_close(e.raw[0, 1], torch.tensor([[3.0, 6.0], [9.0, 0.0]]))  # ReLU(3 A0 − A1)
    torch.testing.assert_close(e.maps[0, 0], torch.tensor([[0.0, 1 / 7], [2 / 7, 1.0]]))
    torch.testing.assert_close(e.probs, torch.tensor([[4.0, 3.5]]).softmax(1))


def test_cam_bias_option_adds_class_bias_everywhere():
    e = camkit.explain(TinyGAP(), X, method="cam", layer="relu", targets=0, bias=True)
    torch.testing.assert_close(e.raw[0, 0], torch.tensor([[1.5, 2.5], [3.5, 8.5]]))


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


def test_gradcam_equals_cam_over_hw_on_gap_network():
    model = small_cnn()
    images = torch.rand(3, 3, 16, 16)
    grad = camkit.explain(model, images, method="gradcam", top_k=3)
    cam = camkit.explain(model, images, method="cam", top_k=3)
    h, w = cam.raw.shape[-2:]
    assert grad.layers == cam.layers == ("features",)
    torch.testing.assert_close(grad.raw, cam.raw / (h * w), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad.maps, cam.maps, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_batch_independence(method):
    model = small_cnn().train()
    images = torch.rand(4, 3, 16, 16)
    batch = camkit.explain(model, images, method=method, top_k=2)
    for i in range(4):
        alone = camkit.explain(model, images[i : i + 1], method=method, top_k=2)
        torch.testing.assert_close(alone.raw[0], batch.raw[i], rtol=1e-5, atol=1e-6)
        assert alone.classes[0].tolist() == batch.classes[i].tolist()


def test_top_k_maps_equal_single_class_calls():
    model = small_cnn()
    images = torch.rand(2, 3, 16, 16)
    top = camkit.explain(model, images, method="gradcam", top_k=3)
    for k in range(3):
        single = camkit.explain(model, images, method="gradcam", targets=top.classes[:, k])
        torch.testing.assert_close(single.raw[:, 0], top.raw[:, k], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(single.scores[:, 0], top.scores[:, k])
    assert (top.scores[:, :-1] >= top.scores[:, 1:]).all()


def test_targets_forms_agree():
    model = small_cnn()
    images = torch.rand(2, 3, 16, 16)
    as_int = camkit.explain(model, images, targets=3)
    as_list = camkit.explain(model, images, targets=[3, 3])
    as_tensor = camkit.explain(model, images, targets=torch.tensor([[3], [3]]))
    as_callable = camkit.explain(model, images, targets=lambda out: out[:, 3])
    for other in (as_list, as_tensor, as_callable):
        torch.testing.assert_close(other.raw, as_int.raw)
    assert as_callable.classes.tolist() == [[-1], [-1]]
    assert torch.isnan(as_callable.probs).all()
    torch.testing.assert_close(as_callable.scores, as_int.scores)


class Wrapped(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.net = small_cnn()
        self.kind = kind

    def forward(self, x):
        logits = self.net(x)
        if self.kind == "tuple":
            return logits, logits * 0
        if self.kind == "namedtuple":
            return collections.namedtuple("Out", "logits aux")(logits, logits * 0)
        if self.kind == "dict":
            return {"out": logits, "aux": logits * 0}
        return {"logits": logits}


@pytest.mark.parametrize("kind", ["tuple", "namedtuple", "dict", "custom"])
def test_output_kinds(kind):
    images = torch.rand(2, 3, 16, 16)
    reference = camkit.explain(small_cnn(), images, layer="features")
    options = {"output": lambda o: o["logits"]} if kind == "custom" else {}
    e = camkit.explain(Wrapped(kind), images, layer="net.features", **options)
    torch.testing.assert_close(e.raw, reference.raw)


def test_dict_output_without_out_key_names_the_keys():
    with pytest.raises(InputError, match="logits"):
        camkit.explain(Wrapped("custom"), torch.rand(1, 3, 16, 16), layer="net.features")


def test_layer_given_as_module_or_name_or_list():
    model = small_cnn()
    images = torch.rand(2, 3, 16, 16)
    by_name = camkit.explain(model, images, layer="features.7")
    by_module = camkit.explain(model, images, layer=model.features[7])
    torch.testing.assert_close(by_name.raw, by_module.raw)
    fused = camkit.explain(model, images, layer=["features.2", "features"])
    assert fused.layers == ("features.2", "features")
    assert fused.raw.shape[-2:] == (16, 16)  # fused at the finest layer resolution
    assert set(fused.layer_raw) == {"features.2", "features"}


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


def test_works_inside_no_grad_and_inference_mode():
    model = small_cnn()
    images = torch.rand(2, 3, 16, 16)
    reference = camkit.explain(model, images)
    with torch.no_grad():
        inside = camkit.explain(model, images)
        assert not torch.is_grad_enabled()
    torch.testing.assert_close(inside.raw, reference.raw)
    with torch.inference_mode():
        inference_images = images.clone()
        inside = camkit.explain(model, inference_images)
        assert torch.is_inference_mode_enabled()
    torch.testing.assert_close(inside.raw, reference.raw)


def test_images_with_requires_grad_get_no_grad():
    images = torch.rand(2, 3, 16, 16, requires_grad=True)
    camkit.explain(small_cnn(), images)
    assert images.grad is None


@pytest.mark.parametrize(
    "images, message",
    [
        ([[1.0]], "torch.Tensor"),
        (torch.rand(3, 16, 16), "4-D"),
        (torch.randint(0, 255, (1, 3, 16, 16)), "floating"),
        (torch.rand(0, 3, 16, 16), "empty batch"),
        (torch.full((1, 3, 16, 16), float("nan")), "NaN"),
        (torch.full((1, 3, 16, 16), float("inf")), "Inf"),
    ],
)
def test_bad_images_are_named(images, message):
    with pytest.raises(InputError, match=message):
        camkit.explain(small_cnn(), images)


def test_bad_targets_are_named():
    model, images = small_cnn(), torch.rand(2, 3, 16, 16)
    with pytest.raises(InputError, match="out of range"):
        camkit.explain(model, images, targets=5)
    with pytest.raises(InputError, match="out of range"):
        camkit.explain(model, images, targets=[0, -1])
    with pytest.raises(InputError, match="batch of 2"):
        camkit.explain(model, images, targets=[0, 1, 2])
    with pytest.raises(InputError, match="top_k"):
        camkit.explain(model, images, top_k=6)
    with pytest.raises(InputError, match="not both"):
        camkit.explain(model, images, targets=1, top_k=2)
    with pytest.raises(InputError, match=r"\(B,\)"):
        camkit.explain(model, images, targets=lambda out: out)


def test_bad_layers_are_named():
    model, images = small_cnn(), torch.rand(2, 3, 16, 16)
    with pytest.raises(LayerError, match="close candidates: features"):
        camkit.explain(model, images, layer="featurs")
    with pytest.raises(LayerError, match="not a \\(B, C, h, w\\)"):
        camkit.explain(model, images, layer="fc")
    model.unused = nn.Conv2d(3, 3, 1)
    with pytest.raises(LayerError, match="not reached"):
        camkit.explain(model, images, layer="unused")
    with pytest.raises(LayerError, match="no spatial layer"):
        camkit.explain(nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4)), images)
    with pytest.raises(InputError, match="unknown method 'gradcm'; did you mean gradcam"):
        camkit.explain(model, images, method="gradcm")
    with pytest.raises(InputError, match="Module"):
        camkit.explain("resnet", images)


def test_autocast_bfloat16_and_channels_last():
    model = small_cnn()
    images = torch.rand(2, 3, 16, 16)
    reference = camkit.explain(model, images, top_k=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = camkit.explain(model, images, top_k=2)
        low_cam = camkit.explain(model, images, method="cam", top_k=2)
    assert low.maps.dtype == torch.float32
    assert low.classes.tolist() == reference.classes.tolist()
    assert torch.corrcoef(torch.stack([low.maps.flatten(), reference.maps.flatten()]))[0, 1] > 0.98
    assert torch.corrcoef(torch.stack([low_cam.maps.flatten(), reference.maps.flatten()]))[0, 1] > 0.98
    last = model.to(memory_format=torch.channels_last)
    cl = camkit.explain(last, images.to(memory_format=torch.channels_last), top_k=2)
    torch.testing.assert_close(cl.raw, reference.raw, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    model = small_cnn()
    images = torch.rand(2, 3, 16, 16)
    cpu = camkit.explain(model, images, top_k=2)
    gpu = camkit.explain(model.cuda(), images.cuda(), top_k=2)
    assert gpu.maps.device.type == "cuda"
    torch.testing.assert_close(gpu.raw.cpu(), cpu.raw, rtol=1e-3, atol=1e-4)
