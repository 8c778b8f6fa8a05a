"""The "augmented-gradcam" method through camkit.explain / camkit.Explainer, on a tiny CNN."""
import pytest
import torch
from torch import nn

import camkit
from camkit.augmented import RotoTranslation, sample_transforms
from camkit.errors import InputError
from camkit.methods.augmented import AugmentedGradCAM


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5),
    ).eval()


def _images(batch=3):
    return torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))


OPTIONS = dict(L=7, iters=20, copies_per_batch=3)


def test_registered_and_maps_at_input_resolution():
    assert "augmented-gradcam" in camkit.methods.available()
    e = camkit.explain(_model(), _images(), method="augmented-gradcam", layer="7", top_k=2, **OPTIONS)
    assert e.method == "augmented-gradcam"
    assert e.maps.shape == (3, 2, 32, 32) and e.raw.shape == (3, 2, 32, 32)
    # min-max normalised: every map that is not constant peaks at 1 (a class whose CAMs are all 0 stays 0)
    varying = e.raw.amax(dim=(-2, -1)) > e.raw.amin(dim=(-2, -1))
    assert torch.isfinite(e.maps).all() and varying.float().mean() >= 0.5
    assert e.maps.amax(dim=(-2, -1))[varying].eq(1).all() and e.maps[~varying].eq(0).all()


def test_copies_are_batched_grad_cams_of_the_warped_images():
    model, images = _model(), _images()
    method = AugmentedGradCAM(**OPTIONS)
    with camkit.Explainer(model, method=method, layer="7"):
        classes = camkit.explain(model, images, layer="7").classes
        session = camkit.methods.Session(model, images, {"7": model[7]}, classes)
        first = {k: torch.relu(v) for k, v in method.base(session).items()}
        stack = method.copy_cams(session, first)["7"]                                  # (B, 1, L, 8, 8)
    angles, shifts = sample_transforms(7, (32, 32), seed=0)
    warped = RotoTranslation(angles, shifts, (32, 32), padding=method.padding)(images)  # (B, 3, L, 32, 32)
    for copy in (0, 2, 4, 6):
        direct = camkit.explain(model, warped[:, :, copy], layer="7", targets=classes[:, 0]).raw
        torch.testing.assert_close(stack[:, :, copy], direct, atol=1e-5, rtol=1e-4)


def test_single_baseline_equals_grad_cam():
    model, images = _model(), _images()
    single = camkit.explain(model, images, method="augmented-gradcam", layer="7", baseline="single", **OPTIONS)
    plain = camkit.explain(model, images, method="gradcam", layer="7")
    torch.testing.assert_close(single.maps, plain.maps, atol=1e-5, rtol=0)
    for kind in ("max", "avg"):
        e = camkit.explain(model, images, method="augmented-gradcam", layer="7", baseline=kind, **OPTIONS)
        assert not torch.allclose(e.maps, plain.maps, atol=1e-3)


@pytest.mark.parametrize("solver", ["accelerated", "subgradient", "primal-dual"])
def test_batch_independent_and_seeded(solver):
    model, images = _model(), _images()
    options = dict(OPTIONS, solver=solver)
    together = camkit.explain(model, images, method="augmented-gradcam", layer="7", **options).maps
    alone = camkit.explain(model, images[1:2], method="augmented-gradcam", layer="7", **options).maps
    # The network's CAMs of a batch of 3 and of 1 differ at float32 rounding; subgradient steps
    # (signs of differences) amplify that at a few pixels (≤ 2e-2, ~1e-4 on average), the other
    # solvers keep it below 1e-4 everywhere.
    if solver == "subgradient":
        assert (together[1:2] - alone).abs().mean() < 1e-3
        torch.testing.assert_close(together[1:2], alone, atol=5e-2, rtol=0)
    else:
        torch.testing.assert_close(together[1:2], alone, atol=1e-4, rtol=0)
    again = camkit.explain(model, images, method="augmented-gradcam", layer="7", **options).maps
    assert torch.equal(together, again)
    other = camkit.explain(model, images, method="augmented-gradcam", layer="7", seed=3, **options).maps
    assert not torch.allclose(together, other, atol=1e-3)


def test_micro_batch_size_does_not_change_the_map():
    model, images = _model(), _images(2)
    one = camkit.explain(model, images, method="augmented-gradcam", layer="7", L=7, iters=20, copies_per_batch=1)
    all_ = camkit.explain(model, images, method="augmented-gradcam", layer="7", L=7, iters=20, memory_budget=2**30)
    torch.testing.assert_close(one.maps, all_.maps, atol=1e-4, rtol=0)


def test_on_a_cpu_the_copies_go_in_passes_of_about_eight_images_unless_told():
    model, images = _model(), _images(2)
    sizes: list[int] = []
    hook = model[0].register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    try:
        camkit.explain(model, images, method="augmented-gradcam", layer="7", L=12, iters=2)
        passes = sizes.copy()
        sizes.clear()
        camkit.explain(model, images, method="augmented-gradcam", layer="7", L=12, iters=2, memory_budget=2**30)
    finally:
        hook.remove()
    # after the identity copy's pass(es) of 2 images: 11 copies of 2 images, 4 copies (8 images) a pass
    assert passes[-3:] == [8, 8, 6] and max(passes) == 8
    assert sizes[-1] == 22          # a budget given by the user decides alone: all 11 copies at once


def test_cam_base_and_options_are_checked():
    model, images = _model(), _images(2)
    e = camkit.explain(model, images, method="augmented-gradcam", layer="7", base="cam", **OPTIONS)
    assert e.maps.shape == (2, 1, 32, 32)
    with pytest.raises(InputError, match="solver"):
        camkit.explain(model, images, method="augmented-gradcam", solver="adam")
    with pytest.raises(InputError, match="baseline"):
        camkit.explain(model, images, method="augmented-gradcam", baseline="median")
    with pytest.raises(InputError, match="L must"):
        camkit.explain(model, images, method="augmented-gradcam", L=0)


def test_divide_by_max_is_the_option_that_scales_each_view():
    model, images = _model(), _images(2)
    scaled = camkit.explain(model, images, method="augmented-gradcam", layer="7", **OPTIONS)
    raw = camkit.explain(model, images, method="augmented-gradcam", layer="7", divide_by_max=False, **OPTIONS)
    assert not torch.allclose(scaled.raw, raw.raw, atol=1e-3)
    with pytest.raises(InputError, match="normalize"):
        camkit.explain(model, images, method="augmented-gradcam", normalize=True)


@pytest.mark.parametrize("option, value", [
    ("lam_tv", float("nan")), ("mu", float("inf")), ("blur", -1.0), ("gamma", 0.0), ("iters", -1),
    ("L", 2.5), ("max_shift", float("nan")), ("max_angle", float("inf")), ("step", 0.0), ("tol", float("nan")),
    ("copies_per_batch", 0), ("frame", "edges"), ("padding", "wrap"), ("downsample", "nearest"), ("inner", 0),
])
def test_bad_options_are_one_line_input_errors(option, value):
    with pytest.raises(InputError, match=option) as error:
        camkit.explain(_model(), _images(1), method="augmented-gradcam", layer="7", **{option: value})
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name, kind", [("augmented-avg", "avg"), ("augmented-max", "max")])
def test_the_papers_baselines_have_their_own_names(name, kind):
    model, images = _model(), _images(2)
    named = camkit.explain(model, images, method=name, layer="7", **OPTIONS)
    option = camkit.explain(model, images, method="augmented-gradcam", layer="7", baseline=kind, **OPTIONS)
    assert torch.equal(named.raw, option.raw)


def test_forward_model_options_reach_the_solver():
    model, images = _model(), _images(2)
    default = camkit.explain(model, images, method="augmented-gradcam", layer="7", **OPTIONS).raw
    for change in ({"frame": "all"}, {"padding": "zeros"}, {"downsample": "bilinear"}, {"blur": 2.0},
                   {"gamma": 1.0}, {"lam_tv": 0.1}):
        other = camkit.explain(model, images, method="augmented-gradcam", layer="7", **OPTIONS, **change).raw
        assert not torch.allclose(default, other, atol=1e-4), change


def test_default_grid_is_eight_pixels_per_map_cell_at_most_the_input():
    torch.manual_seed(0)
    stride16 = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5),
    ).eval()
    images = torch.rand(2, 3, 64, 48, generator=torch.Generator().manual_seed(1))   # 4×3 maps
    auto = camkit.explain(stride16, images, method="augmented-gradcam", layer="5", **OPTIONS)
    assert auto.raw.shape == (2, 1, 32, 24) and auto.maps.shape == (2, 1, 64, 48)
    full = camkit.explain(stride16, images, method="augmented-gradcam", layer="5", size="input", **OPTIONS)
    assert full.raw.shape == (2, 1, 64, 48)
    avg = camkit.explain(stride16, images, method="augmented-avg", layer="5", **OPTIONS)
    assert avg.raw.shape == (2, 1, 64, 48)  # the baselines stay on the input grid
    with pytest.raises(InputError, match="size"):
        camkit.explain(stride16, images, method="augmented-gradcam", layer="5", size="half")


def test_lambda_and_mu_are_per_input_pixel_so_a_coarser_grid_solves_the_same_problem():
    # 4×4 views of a 64² known truth: the default grid is 32²; solved there and upsampled, the map
    # must match the input-grid solution, which it does only with λ/s and μ/s² on the coarser grid.
    truth = camkit.augmented.known_truth(L=16, size=(64, 64), map_size=(4, 4), seed=0)
    options = dict(L=16, gamma=1.0, divide_by_max=False, blur=0.0, frame="all", padding="zeros", lam_tv=0.01, mu=0.001)
    full = AugmentedGradCAM(size="input", **options).merge_copies(truth.cams, (64, 64))
    coarse = AugmentedGradCAM(**options).merge_copies(truth.cams, (64, 64))
    assert coarse.shape == (1, 32, 32)
    unscaled = AugmentedGradCAM(**{**options, "lam_tv": 0.01 / 2, "mu": 0.001 / 4}).merge_copies(truth.cams, (64, 64))

    def error(maps):
        upsampled = torch.nn.functional.interpolate(maps[:, None], (64, 64), mode="bilinear", align_corners=False)
        return float((upsampled[:, 0] - full).abs().mean())

    assert error(coarse) < 0.02 and error(coarse) < 0.5 * error(unscaled)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    # on CUDA the copies come from the sparse product, on a CPU from the pixel gather
    model, images = _model(), _images(2)
    cpu = camkit.explain(model, images, method="augmented-gradcam", layer="7", **OPTIONS)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        gpu = camkit.explain(model.cuda(), images.cuda(), method="augmented-gradcam", layer="7", **OPTIONS)
    assert gpu.raw.device.type == "cuda"
    torch.testing.assert_close(gpu.raw.cpu(), cpu.raw, atol=2e-3, rtol=0)
