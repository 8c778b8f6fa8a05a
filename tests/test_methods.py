"""The CAM methods beyond CAM/Grad-CAM: golden values on tiny hand-set models, exact relations
between methods, batch independence, smoothing and multi-layer fusion."""
import pytest
import torch
from torch import nn

import camkit
from camkit.errors import InputError
from camkit.explainer import fuse_layer_maps
from camkit.methods.smoothing import TTASmoothed, smoothed
from helpers import TinyGAP, sign_conv, small_cnn

X = torch.tensor([[1.0, 2.0], [3.0, -4.0]]).view(1, 1, 2, 2)
XX = X[0, 0]
NEW_METHODS = [
    "gradcam++", "xgradcam", "layercam", "hirescam", "gradcam-elementwise", "scorecam", "sscam", "iscam",
    "ablationcam", "eigencam", "eigengradcam", "smoothgradcam++",
]
FAST = {"sscam": {"samples": 2}, "iscam": {"samples": 2}, "smoothgradcam++": {"samples": 2}}


class Polynomial(nn.Module):
    """A = conv(x) = [x, −x]; logits = [Σ A0², 3 Σ A1, Σ A0 + Σ A1²]: gradients vary over positions.

    ∂S0/∂A = (2 A0, 0), ∂S1/∂A = (0, 3), ∂S2/∂A = (1, 2 A1).
    """

    def __init__(self):
        super().__init__()
        self.conv = sign_conv()

    def forward(self, x):
        a = self.conv(x)
        a0, a1 = a[:, 0], a[:, 1]
        return torch.stack([(a0**2).sum((1, 2)), 3 * a1.sum((1, 2)), a0.sum((1, 2)) + (a1**2).sum((1, 2))], 1)


A = torch.stack([XX, -XX])  # the activations of Polynomial on X, (C, h, w)
GRADS = {  # hand gradients ∂S_c/∂A, (C, h, w)
    0: torch.stack([2 * XX, torch.zeros(2, 2)]),
    1: torch.stack([torch.zeros(2, 2), torch.full((2, 2), 3.0)]),
    2: torch.stack([torch.ones(2, 2), -2 * XX]),
}


def raw(method, model=None, images=X, layer="conv", targets=(0, 1, 2), **options):
    model = Polynomial() if model is None else model
    targets = [list(targets)] * images.shape[0]
    return camkit.explain(model, images, method=method, layer=layer, targets=targets, **options).raw


def test_gradcampp_golden_values():
    # class 0: g = 2x, ΣA0 = 2, α = g²/(2g² + 2g³) = 1/(2(1 + g)) at g ≠ 0
    alpha = 1 / (2 * (1 + 2 * XX))
    w0 = (alpha * torch.relu(2 * XX)).sum()
    assert w0.item() == pytest.approx(1 / 3 + 2 / 5 + 3 / 7)
    # class 1: g = 3, ΣA1 = −2, α = 9 / (18 − 54) = −1/4, w1 = 4 · (−1/4) · 3 = −3 (a negative α, as the formula gives)
    # class 2: channel 0 (g = 1, ΣA0 = 2): α = 1/4, w = 1; channel 1 (g = −2x): only g > 0 counts: x = −4, g = 8
    w2_1 = 64 / (2 * 64 + (-2) * 512) * 8
    expected = torch.stack([w0 * A[0], -3 * A[1], A[0] + w2_1 * A[1]])
    torch.testing.assert_close(raw("gradcam++")[0], torch.relu(expected), rtol=1e-5, atol=1e-5)


def test_xgradcam_golden_values():
    # w_k = Σ A_k g_k / Σ A_k;  ΣA0 = 2, ΣA1 = −2
    w = {c: (GRADS[c] * A).sum((1, 2)) / A.sum((1, 2)) for c in GRADS}
    assert w[0].tolist() == [30.0, 0.0]
    expected = torch.stack([torch.einsum("k,khw->hw", w[c], A) for c in range(3)])
    torch.testing.assert_close(raw("xgradcam")[0], torch.relu(expected), rtol=1e-5, atol=1e-4)


def test_layercam_hirescam_elementwise_golden_values():
    layer = torch.stack([(torch.relu(GRADS[c]) * A).sum(0) for c in range(3)])
    hires = torch.stack([(GRADS[c] * A).sum(0) for c in range(3)])
    elementwise = torch.stack([torch.relu(GRADS[c] * A).sum(0) for c in range(3)])
    torch.testing.assert_close(layer[0], torch.tensor([[2.0, 8.0], [18.0, 0.0]]))
    torch.testing.assert_close(hires[2], torch.tensor([[3.0, 10.0], [21.0, 28.0]]))  # x + 2x²
    torch.testing.assert_close(elementwise[2], torch.tensor([[3.0, 10.0], [21.0, 32.0]]))  # relu(x) + 2x²
    torch.testing.assert_close(raw("layercam")[0], torch.relu(layer))
    torch.testing.assert_close(raw("hirescam")[0], torch.relu(hires))
    torch.testing.assert_close(raw("gradcam-elementwise")[0], elementwise)


def test_scorecam_golden_values_tiny_gap():
    # TinyGAP, layer relu: A0 = [[1,2],[3,0]], A1 = [[0,0],[0,4]]; masks = min-max of each channel
    # x ⊙ H0 = [[1/3, 4/3],[3, 0]] → GAP (7/6, 0) → logits (7/6 + .5, 3.5);  x ⊙ H1 → GAP (0, 1) → (2.5, −1)
    a0, a1 = torch.tensor([[1.0, 2.0], [3.0, 0.0]]), torch.tensor([[0.0, 0.0], [0.0, 4.0]])
    logits = torch.tensor([[7 / 6 + 0.5, 2.5], [3.5, -1.0]])  # (class, channel)
    e = camkit.explain(TinyGAP(), X, method="scorecam", layer="relu", top_k=2)
    for k, c in enumerate(e.classes[0].tolist()):
        w = logits[c].softmax(0)
        torch.testing.assert_close(e.raw[0, k], torch.relu(w[0] * a0 + w[1] * a1))
    probs = torch.stack([logits[:, 0], logits[:, 1]]).softmax(1)  # (channel, class): the paper's probabilities
    e = camkit.explain(TinyGAP(), X, method="scorecam", layer="relu", targets=0, weighting="probability")
    torch.testing.assert_close(e.raw[0, 0], probs[0, 0] * a0 + probs[1, 0] * a1)


def test_iscam_golden_values_and_sscam_without_noise_is_scorecam():
    # TinyGAP is positively homogeneous but for the fc bias: S(βx) = β (S(x) − b) + b.
    # samples = 3: β = 1/3, 1, 2 → mean β = 10/9
    a0, a1 = torch.tensor([[1.0, 2.0], [3.0, 0.0]]), torch.tensor([[0.0, 0.0], [0.0, 4.0]])
    logits0 = torch.tensor([7 / 6 + 0.5, 2.5])
    w = ((10 / 9) * (logits0 - 0.5) + 0.5).softmax(0)
    e = camkit.explain(TinyGAP(), X, method="iscam", layer="relu", targets=0, samples=3)
    torch.testing.assert_close(e.raw[0, 0], w[0] * a0 + w[1] * a1)
    model, images = small_cnn(), torch.rand(2, 3, 16, 16)
    score = camkit.explain(model, images, method="scorecam", top_k=2)
    quiet = camkit.explain(model, images, method="sscam", top_k=2, samples=2, std=0.0)
    torch.testing.assert_close(quiet.raw, score.raw)
    noisy = [camkit.explain(model, images, method="sscam", top_k=2, samples=2, seed=s).raw for s in (0, 0, 1)]
    torch.testing.assert_close(noisy[0], noisy[1])
    assert not torch.allclose(noisy[0], noisy[2])


def test_ablationcam_golden_values():
    # logits0 = mean A0 + 2 mean A1 + .5 = 4;  zeroing A0 → 2.5,  zeroing A1 → 2;  w = (4 − S^(k)) / 4
    e = camkit.explain(TinyGAP(), X, method="ablationcam", layer="relu", targets=0)
    torch.testing.assert_close(e.raw[0, 0], 0.375 * torch.tensor([[1.0, 2.0], [3.0, 0.0]])
                               + 0.5 * torch.tensor([[0.0, 0.0], [0.0, 4.0]]))


class RankOne(nn.Module):
    """A = conv(x) = u ⊗ x with u = (1, 2, −1) (rank one over channels) → GAP → Linear(3, 2)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 1, bias=False)
        self.fc = nn.Linear(3, 2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, 2.0, -1.0]).view(3, 1, 1, 1))
            self.fc.weight.copy_(torch.tensor([[1.0, -1.0, 2.0], [0.5, 1.0, 1.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


def test_eigencam_and_eigengradcam_golden_values_on_rank_one_activations():
    # rows of the (hw, C) matrix are x̃(p) u: the first component is ± |u| x̃, sign set by Σ_k = (Σu) x̃ = 2 x̃
    u = torch.tensor([1.0, 2.0, -1.0])
    centred = XX - XX.mean()
    e = camkit.explain(RankOne(), X, method="eigencam", layer="conv", top_k=2)
    for k in range(2):  # class-agnostic: one map for every class
        torch.testing.assert_close(e.raw[0, k], torch.relu(u.norm() * centred), rtol=1e-5, atol=1e-5)
    # Eigen-Grad-CAM: ∂S_c/∂A_k = W_ck / hw, so G ∘ A = (W_c ∘ u / 4) ⊗ x, sign of Σ (W_c ∘ u)
    fc = RankOne().fc.weight.detach()
    e = camkit.explain(RankOne(), X, method="eigengradcam", layer="conv", targets=[[0, 1]])
    for c in range(2):
        v = fc[c] * u / 4
        torch.testing.assert_close(e.raw[0, c], torch.relu(v.sum().sign() * v.norm() * centred), rtol=1e-5, atol=1e-5)


def test_smoothgradcampp_golden_values_and_zero_noise_is_gradcampp():
    # Polynomial: g(x + ε) of class 0 is 2(x + ε) on channel 0; α from the averaged powers, A of the clean image
    generator = torch.Generator()
    generator.manual_seed(5)
    noise = [torch.randn((1, 1, 2, 2), generator=generator)[0, 0] for _ in range(3)]
    g = [2 * (XX + 0.5 * n) for n in noise]
    g1, g2, g3 = (sum(gi**p for gi in g) / 3 for p in (1, 2, 3))
    alpha = torch.where(g2 != 0, g2 / (2 * g2 + XX.sum() * g3 + 1e-6), torch.zeros_like(g2))
    w0 = (alpha * torch.relu(g1)).sum()
    e = camkit.explain(Polynomial(), X, method="smoothgradcam++", layer="conv", targets=0, samples=3, std=0.5, seed=5)
    torch.testing.assert_close(e.raw[0, 0], torch.relu(w0 * XX), rtol=1e-5, atol=1e-5)
    model, images = small_cnn(), torch.rand(2, 3, 16, 16)
    quiet = camkit.explain(model, images, method="smoothgradcam++", layer="features.6", top_k=2, std=0.0)
    plain = camkit.explain(model, images, method="gradcam++", layer="features.6", top_k=2)
    torch.testing.assert_close(quiet.raw, plain.raw)


def test_exact_relations_on_a_gap_linear_network():
    # after GAP → Linear, ∂S_c/∂A_k = W_ck / (h·w) everywhere
    model, images = small_cnn(), torch.rand(3, 3, 16, 16)
    maps = {m: camkit.explain(model, images, method=m, top_k=3).raw for m in
            ("cam", "gradcam", "hirescam", "xgradcam", "layercam", "gradcam-elementwise", "gradcam++", "eigengradcam")}
    h, w = maps["cam"].shape[-2:]
    torch.testing.assert_close(maps["hirescam"] * (h * w), maps["cam"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(maps["hirescam"], maps["gradcam"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(maps["xgradcam"], maps["gradcam"], rtol=1e-4, atol=1e-6)
    # the tapped layer ends in a ReLU (A ≥ 0): relu(g·A) = relu(g)·A
    torch.testing.assert_close(maps["gradcam-elementwise"], maps["layercam"], rtol=1e-5, atol=1e-6)
    # Grad-CAM++ with a constant gradient g_k: α = 1 / (2 + g_k Σ A_k) per channel
    acts = model.eval().features(images)
    fc, classes = model.fc.weight.detach(), camkit.explain(model, images, top_k=3).classes
    g = fc[classes] / (h * w)  # (B, K, C)
    total = acts.sum((2, 3))[:, None]
    weights = torch.relu(g) * (h * w) * g**2 / (2 * g**2 + total * g**3 + 1e-6)  # 1e-6: the peers' ε
    torch.testing.assert_close(maps["gradcam++"], torch.relu(torch.einsum("bkc,bchw->bkhw", weights, acts)),
                               rtol=1e-4, atol=1e-6)
    eigen = camkit.explain(model, images, method="gradcam", top_k=3, smooth="eigen").raw
    torch.testing.assert_close(eigen, maps["eigengradcam"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", NEW_METHODS)
def test_batch_independence(method):
    model = small_cnn().train()
    images = torch.rand(3, 3, 16, 16)
    options = dict(FAST.get(method, {}))
    if method in ("scorecam", "ablationcam"):
        options["batch_size"] = 5  # chunks that split a batch's variants unevenly
    batch = camkit.explain(model, images, method=method, top_k=2, **options)
    for i in range(3):
        alone = camkit.explain(model, images[i : i + 1], method=method, top_k=2, **options)
        torch.testing.assert_close(alone.raw[0], batch.raw[i], rtol=1e-4, atol=1e-6)
    assert model.training


def test_chunking_and_memory_budget_do_not_change_perturbation_maps():
    model, images = small_cnn(), torch.rand(2, 3, 16, 16)
    for method in ("scorecam", "ablationcam"):
        reference = camkit.explain(model, images, method=method, top_k=2, batch_size=64).raw
        small = camkit.explain(model, images, method=method, top_k=2, batch_size=2, memory_budget=4000).raw
        torch.testing.assert_close(small, reference, rtol=1e-5, atol=1e-7)


def test_scorecam_max_channels_keeps_the_strongest_channels_only():
    model, images = small_cnn(), torch.rand(2, 3, 16, 16)
    full = camkit.explain(model, images, method="scorecam", targets=1).raw
    same = camkit.explain(model, images, method="scorecam", targets=1, max_channels=16).raw
    torch.testing.assert_close(same, full)
    few = camkit.explain(model, images, method="scorecam", targets=1, max_channels=1).raw
    acts = model.eval().features(images)
    strongest = acts.mean((2, 3)).argmax(1)
    torch.testing.assert_close(few[:, 0], torch.relu(acts[torch.arange(2), strongest]))  # softmax of one score = 1


def test_perturbation_methods_with_callable_targets_match_class_targets():
    model, images = small_cnn(), torch.rand(2, 3, 16, 16)
    for method in ("scorecam", "ablationcam"):
        by_class = camkit.explain(model, images, method=method, targets=3).raw
        by_callable = camkit.explain(model, images, method=method, targets=lambda out: out[:, 3], batch_size=4).raw
        torch.testing.assert_close(by_callable, by_class, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", ["layercam", "gradcam++", "scorecam", "eigencam"])
def test_multi_layer_fusion_with_new_methods(method):
    model, images = small_cnn(), torch.rand(2, 3, 16, 16)
    layers = ["features.2", "features"]
    for fuse in ("mean", "max"):
        fused = camkit.explain(model, images, method=method, layer=layers, top_k=2, fuse=fuse)
        single = {name: camkit.explain(model, images, method=method, layer=name, top_k=2).raw for name in layers}
        assert fused.raw.shape[-2:] == (16, 16)
        torch.testing.assert_close(fused.raw, fuse_layer_maps(single, fuse), rtol=1e-5, atol=1e-6)


def test_eigen_smoothing_golden_on_rank_one_and_keeps_identity():
    u = torch.tensor([1.0, 2.0, -1.0])
    fc = RankOne().fc.weight.detach()
    e = camkit.explain(RankOne(), X, method="gradcam", layer="conv", targets=0, smooth="eigen")
    v = fc[0] * u / 4  # Grad-CAM weights × u: weighted activations (v_k x)
    torch.testing.assert_close(e.raw[0, 0], torch.relu(v.sum().sign() * v.norm() * (XX - XX.mean())),
                               rtol=1e-5, atol=1e-5)
    for name in ("scorecam", "cam", "layercam", "smoothgradcam++"):
        method = smoothed(camkit.methods.get(name), ("eigen", "tta"))
        assert method.name == name
        assert method.needs_gradients == camkit.methods.get(name).needs_gradients
    assert camkit.explain(RankOne(), X, method="cam", layer="conv", smooth="eigen").method == "cam"


def test_tta_undoes_flips_and_intensities_exactly_on_an_equivariant_model():
    # TinyGAP's CAM is pointwise in x and positively homogeneous: CAM(flip x) = flip CAM(x), CAM(βx) = β CAM(x)
    model, images = TinyGAP(), torch.randn(2, 1, 6, 6)
    plain = camkit.explain(model, images, method="cam", layer="relu", top_k=2).raw
    tta = smoothed(camkit.methods.get("cam"), "tta")
    tta.scales, tta.intensities = (1.0,), (0.5, 1.0, 1.5)  # mean intensity 1
    smooth = camkit.explain(model, images, method=tta, layer="relu", top_k=2)
    torch.testing.assert_close(smooth.raw, plain, rtol=1e-5, atol=1e-6)
    plain = camkit.explain(model, images, method="cam", layer="relu", top_k=2)
    assert smooth.classes.tolist() == plain.classes.tolist()


def test_tta_with_scales_runs_any_method_and_stays_close():
    model, images = small_cnn(), torch.rand(2, 3, 16, 16)
    for method in ("gradcam++", "ablationcam"):
        plain = camkit.explain(model, images, method=method, targets=2)
        smooth = camkit.explain(model, images, method=method, targets=2, smooth="tta")
        assert smooth.raw.shape == plain.raw.shape and smooth.classes.tolist() == [[2], [2]]
        corr = torch.corrcoef(torch.stack([smooth.maps.flatten(), plain.maps.flatten()]))[0, 1]
        assert corr > 0.5


def test_tta_keeps_segmentation_masks_aligned():
    class Dense(nn.Module):  # a 1x1 conv "segmenter": its output is pointwise, flip-equivariant
        def __init__(self):
            super().__init__()
            self.conv = sign_conv()

        def forward(self, x):
            return self.conv(x)

    images = torch.randn(1, 1, 4, 4)
    mask = torch.zeros(4, 4)
    mask[:, :2] = 1  # the left half only: a flip that is not undone would score the right half
    target = camkit.targets.Segmentation(0, mask=mask)
    plain = camkit.explain(Dense(), images, method="hirescam", layer="conv", targets=target).raw
    flips_only = TTASmoothed(camkit.methods.get("hirescam"), scales=(1.0,))
    smooth = camkit.explain(Dense(), images, method=flips_only, layer="conv", targets=target)
    torch.testing.assert_close(smooth.raw, plain)
    assert plain[0, 0, :, 2:].abs().sum() == 0


def test_bad_options_are_named():
    model, images = small_cnn(), torch.rand(1, 3, 16, 16)
    with pytest.raises(InputError, match="smooth"):
        camkit.explain(model, images, smooth="blur")
    with pytest.raises(InputError, match="batch_size"):
        camkit.explain(model, images, method="scorecam", batch_size=0)
    with pytest.raises(InputError, match="weighting"):
        camkit.explain(model, images, method="scorecam", weighting="max")
    with pytest.raises(InputError, match="normalize"):
        camkit.explain(model, images, method="scorecam", normalize="both")
    with pytest.raises(InputError, match="samples"):
        camkit.explain(model, images, method="smoothgradcam++", samples=0)
    with pytest.raises(InputError, match="eigen smoothing"):
        camkit.explain(model, images, method=smoothed(_Opaque(), "eigen"))


class _Opaque(camkit.methods.Method):
    name = "opaque"
    needs_gradients = False

    def combine(self, activations, gradients, session, layer):
        return activations[:, :1] ** 2
