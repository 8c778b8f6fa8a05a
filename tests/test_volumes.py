"""Video (Conv3d, (B, C, T, H, W)) and signal (Conv1d, (B, C, L)) networks: maps (B, K, T, H, W) and
(B, K, L), hand goldens, the GAP identity Grad-CAM = CAM/(T·h·w), torchvision's video networks,
resizing and normalisation over the whole clip, boxes per frame and segments of signals."""
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import camkit
from camkit.errors import InputError
from camkit.explainer import Explanation
from camkit.maps import normalize_maps

CLIP = torch.tensor([[[1.0, 2.0], [3.0, -4.0]], [[0.5, -1.0], [2.0, 0.0]]]).view(1, 1, 2, 2, 2)  # (B, C, T, H, W)
SIGNAL = torch.tensor([1.0, 2.0, -1.0, 0.0, 3.0, -4.0, 0.5, 2.0]).view(1, 1, 8)  # (B, C, L)
W = torch.tensor([[1.0, 2.0], [3.0, -1.0]])


class TinyGAPNd(nn.Module):
    """x → 1×…×1 conv (x, −x) → ReLU → global average pool → Linear W (bias 0.5, 0): any rank."""

    def __init__(self, rank: int):
        super().__init__()
        conv = {1: nn.Conv1d, 3: nn.Conv3d}[rank]
        self.conv = conv(1, 2, 1, bias=False)
        self.relu = nn.ReLU()
        self.pool = {1: nn.AdaptiveAvgPool1d, 3: nn.AdaptiveAvgPool3d}[rank](1)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, *[1] * rank))
            self.fc.weight.copy_(W)
            self.fc.bias.copy_(torch.tensor([0.5, 0.0]))

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


class PolynomialNd(nn.Module):
    """A = conv(x) = (x, −x) → S0 = Σ A0², S1 = 3 Σ A1: gradients that vary over positions, any rank."""

    def __init__(self, rank: int):
        super().__init__()
        self.conv = TinyGAPNd(rank).conv

    def forward(self, x):
        a = self.conv(x).flatten(2)
        return torch.stack([(a[:, 0] ** 2).sum(1), 3 * a[:, 1].sum(1)], 1)


@pytest.mark.parametrize("signal", [CLIP, SIGNAL], ids=["conv3d", "conv1d"])
def test_cam_and_gradcam_golden_values_and_gap_identity(signal):
    x = signal[0, 0]
    a0, a1 = torch.relu(x), torch.relu(-x)
    positions = x.numel()  # T·h·w for the clip, L for the signal
    cam = camkit.explain(TinyGAPNd(signal.dim() - 2), signal, method="cam", layer="relu", targets=[[0, 1]])
    torch.testing.assert_close(cam.raw[0, 0], a0 + 2 * a1)
    torch.testing.assert_close(cam.raw[0, 1], torch.relu(3 * a0 - a1))
    grad = camkit.explain(TinyGAPNd(signal.dim() - 2), signal, method="gradcam", layer="relu", targets=[[0, 1]])
    torch.testing.assert_close(grad.raw, cam.raw / positions)  # Grad-CAM = CAM / (T·h·w) on a GAP network
    torch.testing.assert_close(grad.maps, cam.maps)
    assert grad.maps.shape == (1, 2, *signal.shape[2:])


@pytest.mark.parametrize("signal", [CLIP, SIGNAL], ids=["conv3d", "conv1d"])
def test_gradcam_hirescam_golden_values_nonlinear_head(signal):
    x = signal[0, 0]
    model = PolynomialNd(signal.dim() - 2)
    grad = camkit.explain(model, signal, method="gradcam", layer="conv", targets=[[0, 1]])
    torch.testing.assert_close(grad.raw[0, 0], torch.relu(2 * x.mean() * x))  # α0 = mean(2x) on channel x
    torch.testing.assert_close(grad.raw[0, 1], torch.relu(-3 * x))  # α1 = 3 on channel −x
    hires = camkit.explain(model, signal, method="hirescam", layer="conv", targets=[[0, 1]])
    torch.testing.assert_close(hires.raw[0, 0], 2 * x * x)


def test_scorecam_golden_values_on_a_clip():
    x = CLIP[0, 0]
    a = torch.stack([torch.relu(x), torch.relu(-x)])
    masks = (a - a.flatten(1).amin(1).view(2, 1, 1, 1)) / (a.flatten(1).amax(1) - a.flatten(1).amin(1)).view(2, 1, 1, 1)
    masked = x * masks  # (channel, T, h, w): the clip times each channel's mask
    pooled = torch.stack([torch.relu(masked).flatten(1).mean(1), torch.relu(-masked).flatten(1).mean(1)], 1)
    logits = pooled @ W.T + torch.tensor([0.5, 0.0])  # (channel, class)
    e = camkit.explain(TinyGAPNd(3), CLIP, method="scorecam", layer="relu", targets=[[0, 1]])
    for c in range(2):
        w = logits[:, c].softmax(0)
        torch.testing.assert_close(e.raw[0, c], torch.relu(w[0] * a[0] + w[1] * a[1]))


@pytest.mark.parametrize("name", ["r3d_18", "mc3_18", "r2plus1d_18"])
def test_torchvision_video_networks(name, one_thread):
    torch.manual_seed(0)
    model = getattr(torchvision.models.video, name)(weights=None, num_classes=6).eval()
    clips = torch.rand(2, 3, 4, 32, 48)  # (B, 3, T, H, W): four small non-square frames
    grad = camkit.explain(model, clips, method="gradcam", top_k=2)
    assert grad.layers == ("layer4",) and grad.maps.shape == (2, 2, 4, 32, 48)
    cam = camkit.explain(model, clips, method="cam", top_k=2)
    positions = grad.raw[0, 0].numel()
    torch.testing.assert_close(grad.raw, cam.raw / positions, rtol=1e-4, atol=1e-7)
    alone = camkit.explain(model, clips[1:], method="gradcam", top_k=2)
    torch.testing.assert_close(alone.raw[0], grad.raw[1], rtol=1e-4, atol=1e-7)
    with torch.no_grad():
        torch.testing.assert_close(grad.scores, model(clips).topk(2).values, rtol=1e-4, atol=1e-5)


def test_clip_maps_are_upsampled_trilinearly_and_normalised_over_the_whole_clip():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1),
                          nn.Flatten(), nn.Linear(4, 3))
    clips = torch.rand(2, 3, 6, 16, 20)
    e = camkit.explain(model, clips, layer="1", method="cam", top_k=2)
    assert e.raw.shape == (2, 2, 3, 8, 10)
    up = F.interpolate(e.raw.flatten(0, 1)[:, None], size=(6, 16, 20), mode="trilinear", align_corners=False)
    torch.testing.assert_close(e.maps, normalize_maps(up.view(2, 2, 6, 16, 20), 3))
    assert torch.allclose(e.maps.flatten(2).amax(-1), torch.ones(2, 2))
    assert (e.maps.amax((3, 4)) < 1).any()  # one clip max, not one per frame


def explanation_of(maps):
    b, k = maps.shape[:2]
    zeros = torch.zeros(b, k)
    return Explanation(maps, maps, zeros.long(), zeros, zeros)


def test_boxes_of_clips_per_frame_and_segments_of_signals():
    clip = torch.zeros(1, 1, 3, 5, 6)
    clip[0, 0, 0, 1:3, 2:5] = 1.0  # frame 0: a blob at rows 1–2, columns 2–4
    clip[0, 0, 1] = 0.1  # frame 1: everywhere below 0.2 · the clip's max
    clip[0, 0, 2, 4, 0] = 0.5  # frame 2: one pixel
    boxes = explanation_of(clip).boxes(threshold=0.2)
    assert boxes.tolist() == [[[[2, 1, 4, 2], [0, 0, -1, -1], [0, 4, 0, 4]]]]
    signal = torch.tensor([0.0, 0.5, 0.9, 0.1, 0.0, 0.6, 0.7, 0.8]).view(1, 1, 8)
    assert explanation_of(signal).boxes(threshold=0.2).tolist() == [[[5, 7]]]
    assert explanation_of(torch.zeros(1, 1, 8)).boxes().tolist() == [[[0, -1]]]
    with pytest.raises(InputError, match="threshold and connectivity"):
        explanation_of(signal).boxes(all_components=True)


def test_methods_that_need_images_say_so():
    with pytest.raises(InputError, match=r"needs \(B, C, H, W\) images.*3-D maps"):
        camkit.explain(TinyGAPNd(3), CLIP, method="augmented-gradcam", layer="relu")
    with pytest.raises(InputError, match=r"needs \(B, C, H, W\) images.*1-D maps"):
        camkit.explain(TinyGAPNd(1), SIGNAL, method="gradcam", layer="relu", smooth="tta")
    eigen = camkit.explain(TinyGAPNd(1), SIGNAL, method="gradcam", layer="relu", smooth="eigen")
    assert eigen.maps.shape == (1, 1, 8)


def test_input_rank_must_match_the_first_convolution():
    with pytest.raises(InputError, match=r"5-D \(B, C, T, H, W\).*Conv3d.*images\[None\]"):
        camkit.explain(TinyGAPNd(3), CLIP[0], layer="relu")
    with pytest.raises(InputError, match=r"3-D \(B, C, L\).*Conv1d"):
        camkit.explain(TinyGAPNd(1), SIGNAL[..., None], layer="relu")
