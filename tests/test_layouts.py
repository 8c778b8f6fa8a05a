"""Token and channel-last outputs (ViT, Swin) read as (B, C, *grid) maps from the input's size alone:
hand-computed goldens on tiny models, the layout rules, the default layer, and an independent
Grad-CAM reference with pytorch-grad-cam's documented reshape transforms."""
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import camkit
from camkit.errors import InputError, LayerError
from camkit.layouts import Layout, find_layout, fits
from helpers import sign_conv

X = torch.tensor([[1.0, 2.0, -1.0, 0.0], [3.0, -4.0, 0.5, 2.0]]).view(1, 1, 2, 4)  # a non-square input
XX = X[0, 0]


class Tokens(nn.Module):
    """Maps (B, C, h, w) → tokens (B, prefix + h·w, C): the patches row-major after ``prefix`` constant tokens."""

    def __init__(self, prefix: int, channels: int = 2):
        super().__init__()
        self.prefix = nn.Parameter(torch.arange(1.0, 1.0 + prefix * channels).view(1, prefix, channels))

    def forward(self, maps):
        patches = maps.flatten(2).transpose(1, 2)
        return torch.cat([self.prefix.expand(maps.shape[0], -1, -1), patches], 1)


class TinyTokenNet(nn.Module):
    """x (B, 1, 2, 4) → patches t_p = (x_p, −x_p) after ``prefix`` tokens (class + registers) →
    S0 = Σ_p t_p0² + 5 · cls_0,  S1 = 3 Σ_p t_p1 + Σ_j reg_j1: the prefix reaches the scores too."""

    def __init__(self, prefix: int = 3):
        super().__init__()
        self.embed = sign_conv()
        self.tokens = Tokens(prefix)

    def forward(self, x):
        t = self.tokens(self.embed(x))
        prefix = self.tokens.prefix.shape[1]
        patches = t[:, prefix:]
        s0 = (patches[..., 0] ** 2).sum(1) + 5 * t[:, 0, 0]
        s1 = 3 * patches[..., 1].sum(1) + t[:, 1:prefix, 1].sum(1)
        return torch.stack([s0, s1], 1)


class TinyChannelLast(nn.Module):
    """x (B, 1, H, W) → A = (x, −x) kept channel-last (B, H, W, 2) → S0 = Σ A0², S1 = 3 Σ A1."""

    def __init__(self):
        super().__init__()
        self.embed = sign_conv()
        self.hwc = torchvision.ops.Permute([0, 2, 3, 1])

    def forward(self, x):
        a = self.hwc(self.embed(x))
        return torch.stack([(a[..., 0] ** 2).sum((1, 2)), 3 * a[..., 1].sum((1, 2))], 1)


def hand_gradcam_class0_and_1(xx):
    # ∂S0/∂A = (2x, 0) → α0 = (2 mean x, 0), map0 = 2 mean(x) · x;  ∂S1/∂A = (0, 3) → map1 = 3 · (−x)
    return torch.stack([torch.relu(2 * xx.mean() * xx), torch.relu(-3 * xx)])


@pytest.mark.parametrize("prefix", [1, 2, 3, 5])
def test_token_golden_values_drop_prefix_tokens(prefix):
    e = camkit.explain(TinyTokenNet(prefix), X, method="gradcam", layer="tokens", targets=[[0, 1]])
    torch.testing.assert_close(e.raw[0], hand_gradcam_class0_and_1(XX))
    assert e.maps.shape == (1, 2, 2, 4)
    hires = camkit.explain(TinyTokenNet(prefix), X, method="hirescam", layer="tokens", targets=[[0, 1]])
    torch.testing.assert_close(hires.raw[0], torch.stack([torch.relu(2 * XX * XX), torch.relu(3 * -XX)]))


def test_channel_last_golden_values_and_not_read_as_channels_first():
    e = camkit.explain(TinyChannelLast(), X, method="gradcam", layer="hwc", targets=[[0, 1]])
    torch.testing.assert_close(e.raw[0], hand_gradcam_class0_and_1(XX))
    square = torch.randn(2, 1, 4, 4)  # 4×4 with 2 channels: only the channel-last reading fits
    e = camkit.explain(TinyChannelLast(), square, method="gradcam", layer="hwc", targets=[[0, 1]] * 2)
    for b in range(2):
        torch.testing.assert_close(e.raw[b], hand_gradcam_class0_and_1(square[b, 0]))


def test_token_ablation_cam_zeroes_patch_channels_only():
    # S0 = Σ x² + 5·cls0 (cls0 = 1): zeroing patch channel 0 leaves 5, channel 1 changes nothing
    e = camkit.explain(TinyTokenNet(3), X, method="ablationcam", layer="tokens", targets=0)
    s0 = (XX**2).sum() + 5
    torch.testing.assert_close(e.raw[0, 0], torch.relu((s0 - 5) / s0 * XX))


def test_find_layout_rules():
    assert find_layout(torch.zeros(2, 197, 768), (224, 224)) == Layout("tokens", (14, 14), 1)  # ViT-B/16
    assert find_layout(torch.zeros(2, 198, 768), (224, 224)) == Layout("tokens", (14, 14), 2)  # DeiT distilled
    assert find_layout(torch.zeros(2, 1 + 4 + 256, 384), (224, 224)) == Layout("tokens", (16, 16), 5)  # DINOv2 + 4 reg
    assert find_layout(torch.zeros(1, 1 + 14 * 20, 64), (224, 320)) == Layout("tokens", (14, 20), 1)  # non-square
    assert find_layout(torch.zeros(1, 7, 10, 768), (224, 320)) == Layout("channels-last", (7, 10))  # Swin
    assert find_layout(torch.zeros(1, 768, 7, 10), (224, 320)) == Layout("channels-first", (7, 10))
    assert find_layout(torch.zeros(1, 64, 56, 56), (224, 224)) == Layout("channels-first", (56, 56))
    # a tie (C equals the grid side, Swin-T's first stage at 384²) keeps PyTorch's channels-first convention
    assert find_layout(torch.zeros(1, 96, 96, 96), (384, 384)).kind == "channels-first"
    assert find_layout(torch.zeros(1, 4, 7, 7, 768), (8, 224, 224)) == Layout("channels-last", (4, 7, 7))  # Swin3D
    assert find_layout(torch.zeros(1, 512, 1, 7, 7), (8, 112, 112)) == Layout("channels-first", (1, 7, 7))
    assert find_layout(torch.zeros(1, 64, 30), (120,)) == Layout("channels-first", (30,))
    # clip tokens: 4·7·7 or 1·14·14 patches are both possible → not guessed
    assert find_layout(torch.zeros(1, 197, 96), (8, 112, 112)) is None
    assert find_layout(torch.zeros(1, 10), (224, 224)) is None
    # tokens need a whole patch stride: (2, 5) does not tile a 2×4 input, (2, 4) after 3 prefix tokens does
    assert not fits((2, 5), (2, 4), patches=True) and fits((2, 4), (2, 4), patches=True)
    assert find_layout(torch.zeros(1, 11, 2), (2, 4)) == Layout("tokens", (2, 4), 3)
    maps = Layout("tokens", (2, 3), 1).to_maps(torch.arange(14.0).view(1, 7, 2))
    torch.testing.assert_close(maps[0, 1], torch.tensor([[3.0, 5.0, 7.0], [9.0, 11.0, 13.0]]))


class ClipTokens(nn.Module):
    """A video transformer's tokens: (B, 1, 8, 112, 112) → 2×16×16 tubelets (B, 1 + 4·7·7, 8) with a class
    token → S = Σ tokens².  4·7·7 and 1·14·14 grids are both possible: camkit does not guess."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Conv3d(1, 8, (2, 16, 16), stride=(2, 16, 16))
        self.tokens = Tokens(1, channels=8)

    def forward(self, x):
        t = self.tokens(self.embed(x))
        return (t[:, 1:] ** 2).sum((1, 2))[:, None]


class SignalTokens(nn.Module):
    """x (B, 1, L) → A = (x, −x) channel-last (B, L, 2) → S0 = Σ A0², S1 = 3 Σ A1.  A 1-D grid fits any
    length, so (B, L, 2) reads as channels-first: reshape= says otherwise."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Conv1d(1, 2, 1, bias=False)
        self.lc = torchvision.ops.Permute([0, 2, 1])
        with torch.no_grad():
            self.embed.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1))

    def forward(self, x):
        a = self.lc(self.embed(x))
        return torch.stack([(a[..., 0] ** 2).sum(1), 3 * a[..., 1].sum(1)], 1)


def test_reshape_option_overrides_detection():
    torch.manual_seed(0)
    model, clip = ClipTokens(), torch.rand(1, 1, 8, 112, 112)
    with pytest.raises(LayerError, match="reshape="):
        camkit.explain(model, clip, layer="tokens", targets=0)
    tubelets = lambda t: t[:, 1:].unflatten(1, (4, 7, 7)).movedim(-1, 1)  # noqa: E731
    e = camkit.explain(model, clip, layer="tokens", targets=0, method="hirescam", reshape=tubelets)
    acts = tubelets(model.tokens(model.embed(clip)).detach())
    torch.testing.assert_close(e.raw[0, 0], torch.relu((2 * acts * acts).sum(1))[0])  # g ⊙ A with g = 2A
    assert e.maps.shape == (1, 1, 8, 112, 112)
    signal = XX.reshape(1, 1, 8)
    e = camkit.explain(SignalTokens(), signal, layer="lc", targets=[[0, 1]], reshape=lambda t: t.transpose(1, 2))
    torch.testing.assert_close(e.raw[0], hand_gradcam_class0_and_1(signal[0, 0]))
    # a reshape also overrides a layout camkit would have found
    swapped = camkit.explain(TinyChannelLast(), X, layer="hwc", targets=0, reshape=lambda t: t.permute(0, 3, 1, 2))
    torch.testing.assert_close(swapped.raw[0, 0], hand_gradcam_class0_and_1(XX)[0])
    with pytest.raises(InputError, match="grid"):
        camkit.explain(TinyChannelLast(), X, layer="hwc", targets=0, reshape=lambda t: t.flatten(2))
    with pytest.raises(InputError, match="callable"):
        camkit.explain(TinyChannelLast(), X, layer="hwc", targets=0, reshape="tokens")


def small_vit(image_size=32, classes=5):
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(image_size=image_size, patch_size=8, num_layers=2, num_heads=2,
                                                 hidden_dim=16, mlp_dim=32, num_classes=classes).eval()
    nn.init.normal_(model.heads.head.weight, std=0.5)  # torchvision zero-initialises it: every map would be 0
    return model


def test_vit_default_layer_is_the_last_one_patch_tokens_reach():
    model = small_vit()
    images = torch.rand(2, 3, 32, 32)
    e = camkit.explain(model, images, top_k=2)
    assert e.layers == ("encoder.layers.encoder_layer_1.ln_1",)
    assert e.raw.shape == (2, 2, 4, 4) and e.raw.amax() > 0
    # why: after the last block's attention, patch tokens reach the head only through the class token,
    # so every map of the encoder's output is zero (before and after ReLU)
    last = camkit.explain(model, images, layer="encoder", method="hirescam", top_k=2)
    assert last.raw.abs().max() == 0 and torch.isfinite(last.maps).all()
    acts = {}
    model.encoder.ln.register_forward_hook(lambda m, i, o: acts.update(out=o))
    logits = model(images)
    grad = torch.autograd.grad(logits[:, 0].sum(), acts["out"])[0]
    assert grad[:, 1:].abs().max() == 0 and grad[:, 0].abs().max() > 0
    zero_head = small_vit()
    nn.init.zeros_(zero_head.heads.head.weight)  # no gradient anywhere: the head's input stands for it
    assert camkit.explain(zero_head, images).layers == e.layers


def gradcam_reference(model, images, layer, classes, reshape):
    """Grad-CAM by hand, as pytorch-grad-cam computes it, for classes (B, K): reshape activations and
    gradients, mean the gradients over the grid, ReLU, min-max (+1e-7), bilinear resize, min-max again."""
    found = {}
    handle = layer.register_forward_hook(lambda m, i, o: found.update(a=o))
    try:
        with torch.enable_grad():
            logits = model(images)
            grads = [torch.autograd.grad(logits.gather(1, classes[:, k:k + 1]).sum(), found["a"], retain_graph=True)[0]
                     for k in range(classes.shape[1])]
    finally:
        handle.remove()
    acts = reshape(found["a"].detach())
    cams = []
    for grad in grads:
        g = reshape(grad)
        cam = torch.relu((g.mean((2, 3))[..., None, None] * acts).sum(1))
        cam = cam - cam.amin((1, 2), keepdim=True)
        cam = cam / (1e-7 + cam.amax((1, 2), keepdim=True))
        cam = F.interpolate(cam[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        cam = cam - cam.amin((1, 2), keepdim=True)
        cams.append(cam / (1e-7 + cam.amax((1, 2), keepdim=True)))
    return torch.stack(cams, 1)


def vit_reshape(tensor, height=14, width=14):  # pytorch-grad-cam's documented ViT reshape_transform
    result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


def swin_reshape(tensor, height=7, width=7):  # pytorch-grad-cam's documented Swin reshape_transform
    result = tensor.reshape(tensor.size(0), height, width, tensor.size(-1))
    return result.transpose(2, 3).transpose(1, 2)


def test_vit_b16_gradcam_matches_the_peer_reshape_reference(one_thread):
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(weights=None).eval()
    nn.init.normal_(model.heads.head.weight, std=0.02)
    images = torch.rand(1, 3, 224, 224)
    e = camkit.explain(model, images, top_k=3)  # no layer, no reshape code
    assert e.layers == ("encoder.layers.encoder_layer_11.ln_1",)
    reference = gradcam_reference(model, images, model.encoder.layers[-1].ln_1, e.classes, vit_reshape)
    assert (e.maps - reference).abs().max() <= 1e-4
    assert reference.amax() > 0.99  # maps with content, not a vacuous zero (a random head can make one all negative)


def test_swin_t_gradcam_matches_the_peer_reshape_reference_and_cam(one_thread):
    torch.manual_seed(0)
    model = torchvision.models.swin_t(weights=None).eval()
    images = torch.rand(1, 3, 224, 224)
    for layer in ("features.7.1.norm2", "norm"):  # pytorch-grad-cam's documented layer (last norm2), and the final norm
        e = camkit.explain(model, images, layer=layer, top_k=2)
        reference = gradcam_reference(model, images, dict(model.named_modules())[layer], e.classes, swin_reshape)
        assert reference.amax((2, 3)).min() > 0.99
        assert (e.maps - reference).abs().max() <= 1e-4
    # tapping the channel-last norm or the channels-first permute after it is the same map, and CAM
    # finds the GAP → Linear head through the layout: Grad-CAM = CAM / (h·w)
    permuted = camkit.explain(model, images, layer="permute", top_k=2)
    torch.testing.assert_close(permuted.raw, e.raw)
    cam = camkit.explain(model, images, layer="norm", method="cam", top_k=2)
    torch.testing.assert_close(e.raw, cam.raw / 49, rtol=1e-4, atol=1e-7)


def test_swin_on_a_non_square_input_uses_its_own_grid():
    torch.manual_seed(0)
    model = torchvision.models.swin_t(weights=None).eval()
    images = torch.rand(2, 3, 64, 96)
    e = camkit.explain(model, images, layer="norm")
    assert e.raw.shape == (2, 1, 2, 3) and e.maps.shape == (2, 1, 64, 96)
    alone = camkit.explain(model, images[1:], layer="norm")
    torch.testing.assert_close(alone.raw[0], e.raw[1], rtol=1e-4, atol=1e-7)
