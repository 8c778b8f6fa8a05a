"""Operators of Augmented Grad-CAM: golden values, adjoints (dot-product test), consistency."""
import math

import pytest
import torch
import torch.nn.functional as F

from camkit.augmented import (
    DOWNSAMPLINGS,
    PADDINGS,
    ForwardModel,
    ImageCopies,
    RotoTranslation,
    area_downsample,
    area_downsample_adjoint,
    area_weights,
    downsample_weights,
    gaussian_kernel,
    operators,
    sample_transforms,
    warp_coordinates,
)
from camkit.errors import InputError

f64 = torch.float64


def _dot_test(forward, adjoint, x, y):
    lhs = (forward(x) * y).sum()
    rhs = (x * adjoint(y)).sum()
    return abs(lhs - rhs) / max(abs(lhs), abs(rhs))


def test_rotation_by_quarter_turn_is_rot90_counter_clockwise():
    grid = torch.arange(16, dtype=f64).view(4, 4)
    op = RotoTranslation(torch.tensor([math.pi / 2], dtype=f64), torch.zeros(1, 2), (4, 4), dtype=f64)
    # Counter-clockwise as displayed: the top-right corner (value 3) moves to the top-left.
    expected = torch.tensor([[3, 7, 11, 15], [2, 6, 10, 14], [1, 5, 9, 13], [0, 4, 8, 12]], dtype=f64)
    torch.testing.assert_close(op(grid)[0], expected, atol=1e-12, rtol=0)


def test_translation_moves_right_and_down_with_zero_fill():
    grid = torch.arange(1, 17, dtype=f64).view(4, 4)
    op = RotoTranslation(torch.zeros(2, dtype=f64), torch.tensor([[1.0, 0.0], [0.0, -1.0]]), (4, 4), dtype=f64)
    right, up = op(grid)
    assert torch.equal(right[:, 0], torch.zeros(4, dtype=f64))
    assert torch.equal(right[:, 1:], grid[:, :-1])
    assert torch.equal(up[:-1], grid[1:])
    assert torch.equal(up[-1], torch.zeros(4, dtype=f64))
    half = RotoTranslation(torch.zeros(1, dtype=f64), torch.tensor([[0.5, 0.0]]), (4, 4), dtype=f64)
    torch.testing.assert_close(half(grid)[0, :, 1:], (grid[:, 1:] + grid[:, :-1]) / 2)


def test_roto_translation_matches_grid_sample():
    angles, shifts = sample_transforms(6, (20, 24), seed=3)
    images = torch.randn(2, 3, 20, 24, dtype=f64)
    warped = RotoTranslation(angles, shifts, (20, 24), dtype=f64)(images)           # (2, 3, 6, 20, 24)
    src_x, src_y = warp_coordinates(angles, shifts, (20, 24))
    grid = torch.stack([(2 * src_x + 1) / 24 - 1, (2 * src_y + 1) / 20 - 1], dim=-1)  # (6, 20, 24, 2)
    for copy in range(6):
        expected = F.grid_sample(images, grid[copy:copy + 1].expand(2, -1, -1, -1), mode="bilinear",
                                 padding_mode="zeros", align_corners=False)
        torch.testing.assert_close(warped[:, :, copy], expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("dtype", [torch.float32, f64])
@pytest.mark.parametrize("gather", [True, False])
def test_image_copies_are_the_images_under_each_transform_in_grid_sample_points(padding, dtype, gather):
    angles, shifts = sample_transforms(6, (20, 24), seed=3)
    images = torch.randn(2, 3, 20, 24, dtype=dtype, generator=torch.Generator().manual_seed(0))
    copies = ImageCopies(angles, shifts, images, padding=padding, gather=gather)
    src_x, src_y = warp_coordinates(angles, shifts, (20, 24))
    grid = torch.stack([(2 * src_x + 1) / 24 - 1, (2 * src_y + 1) / 20 - 1], dim=-1).to(dtype)
    made = copies(2, 5)                                                               # (2, 3 copies, 3, 20, 24)
    assert made.shape == (2, 3, 3, 20, 24) and made.dtype == dtype and made.is_contiguous()
    for offset, copy in enumerate(range(2, 5)):
        expected = F.grid_sample(images, grid[copy:copy + 1].expand(2, -1, -1, -1), mode="bilinear",
                                 padding_mode=padding, align_corners=False)
        torch.testing.assert_close(made[:, offset], expected, atol=1e-5 if dtype == torch.float32 else 1e-12, rtol=0)
    with pytest.raises(InputError, match="images"):
        ImageCopies(angles, shifts, images[0])


def test_image_copies_too_large_to_cache_are_warped_a_few_transforms_at_a_time(monkeypatch):
    angles, shifts = sample_transforms(6, (20, 24), seed=3)
    images = torch.randn(2, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    cached = ImageCopies(angles, shifts, images, padding="border")
    monkeypatch.setattr(operators, "WARP_CACHE_BYTES", 6 * 20 * 24 * 4 * 8 - 1)
    built = ImageCopies(angles, shifts, images, padding="border")
    assert cached.warp is not None and built.warp is None
    for start, stop in ((1, 3), (3, 6)):
        assert torch.equal(built(start, stop), cached(start, stop))


def test_warp_and_inverse_warp_are_exact_on_a_linear_ramp():
    # Bilinear interpolation reproduces affine functions exactly away from the border.
    angles, shifts = sample_transforms(4, (32, 32), max_shift=3, seed=4)
    yy, xx = torch.meshgrid(torch.arange(32, dtype=f64), torch.arange(32, dtype=f64), indexing="ij")
    ramp = 0.3 * xx - 0.7 * yy + 2.0
    warped = RotoTranslation(angles, shifts, (32, 32), dtype=f64)(ramp)
    src_x, src_y = warp_coordinates(angles, shifts, (32, 32))
    inner = (slice(None), slice(8, 24), slice(8, 24))
    torch.testing.assert_close(warped[inner], (0.3 * src_x - 0.7 * src_y + 2.0)[inner], atol=1e-10, rtol=0)
    back = RotoTranslation(angles, shifts, (32, 32), inverse=True, dtype=f64)
    restored = torch.stack([back(warped[copy])[copy] for copy in range(4)])
    torch.testing.assert_close(restored[inner], ramp.expand(4, -1, -1)[inner], atol=1e-10, rtol=0)


@pytest.mark.parametrize("inverse", [False, True])
def test_roto_translation_adjoint(inverse):
    angles, shifts = sample_transforms(5, (20, 24), seed=1)
    op = RotoTranslation(angles, shifts, (20, 24), inverse=inverse, dtype=f64)
    x = torch.randn(3, 20, 24, dtype=f64)
    y = torch.randn(3, 5, 20, 24, dtype=f64)
    assert _dot_test(op, op.adjoint, x, y) < 1e-12


def test_area_downsample_golden_and_adjoint():
    grid = torch.arange(16, dtype=f64).view(4, 4)
    expected = torch.tensor([[(0 + 1 + 4 + 5) / 4, (2 + 3 + 6 + 7) / 4],
                             [(8 + 9 + 12 + 13) / 4, (10 + 11 + 14 + 15) / 4]],
                            dtype=f64)
    torch.testing.assert_close(area_downsample(grid, (2, 2)), expected)
    torch.testing.assert_close(area_downsample_adjoint(torch.ones(2, 2, dtype=f64), (4, 4)),
                               torch.full((4, 4), 0.25, dtype=f64))
    for size, low in (((32, 32), (8, 8)), ((30, 26), (7, 5)), ((299, 299), (9, 9))):
        x = torch.randn(2, *size, dtype=f64)
        y = torch.randn(2, *low, dtype=f64)
        assert _dot_test(lambda v, low=low: area_downsample(v, low),
                         lambda v, size=size: area_downsample_adjoint(v, size), x, y) < 1e-12


def test_area_weights_non_divisible_golden():
    # 3 pixels into 2 cells of 1.5 px: the middle pixel is shared half and half.
    expected = torch.tensor([[2 / 3, 1 / 3, 0.0], [0.0, 1 / 3, 2 / 3]], dtype=f64)
    torch.testing.assert_close(area_weights(3, 2), expected)
    torch.testing.assert_close(area_downsample(torch.ones(1, 299, 299, dtype=f64), (7, 7)),
                               torch.ones(1, 7, 7, dtype=f64))


@pytest.mark.parametrize("size, low", [((32, 32), (8, 8)), ((30, 26), (7, 5)), ((48, 40), (6, 5))])
def test_forward_model_equals_downsampled_warp_and_is_adjoint(size, low):
    angles, shifts = sample_transforms(7, size, seed=2)
    model = ForwardModel(angles, shifts, size, low, dtype=f64)
    warp = RotoTranslation(angles, shifts, size, dtype=f64)
    maps = torch.randn(3, *size, dtype=f64)
    views = model.forward(maps.reshape(3, -1).t()).t().reshape(3, 7, *low)
    torch.testing.assert_close(views, area_downsample(warp(maps), low), atol=1e-13, rtol=0)
    residual = torch.randn(3, 7, *low, dtype=f64)
    back = model.adjoint(residual.reshape(3, -1).t()).t().reshape(3, *size)
    torch.testing.assert_close(back, warp.adjoint(area_downsample_adjoint(residual, size)), atol=1e-13, rtol=0)
    assert _dot_test(model.forward, model.adjoint, maps.reshape(3, -1).t(), residual.reshape(3, -1).t()) < 1e-5
    # Schur's bound is an upper bound of the largest singular value squared (power iteration).
    v = torch.randn(maps[0].numel(), 1, dtype=f64)
    for _ in range(50):
        v = model.adjoint(model.forward(v))
        v /= v.norm()
    assert (model.forward(v).norm() ** 2).item() <= model.norm_bound() * (1 + 1e-9)


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_squared_norm_is_the_top_eigenvalue_of_the_weighted_normal_operator(padding):
    size, low, count = (24, 24), (4, 4), 6
    angles, shifts = sample_transforms(count, size, seed=2)
    model = ForwardModel(angles, shifts, size, low, padding=padding, blur=1.5, dtype=f64)
    weights = (torch.rand(count * 16, 2, generator=torch.Generator().manual_seed(0), dtype=f64) > 0.3).to(f64)
    dense = model.forward(torch.eye(24 * 24, dtype=f64))                               # P, (L·h·w, N·M)
    for column in (None, 0, 1):
        w = torch.ones(count * 16, dtype=f64) if column is None else weights[:, column]
        exact = torch.linalg.eigvalsh(dense.t() @ (w[:, None] * dense))[-1].item()
        if column is None:
            assert model.squared_norm() == pytest.approx(exact, rel=1e-3)
    exact = max(torch.linalg.eigvalsh(dense.t() @ (weights[:, c, None] * dense))[-1].item() for c in (0, 1))
    estimate = model.squared_norm(weights)
    assert exact * (1 - 1e-3) <= estimate <= exact * (1 + 1e-9)     # from below, and close
    if padding == "border":
        # the frame's edge pixels feed every padded pixel: Schur's bound is loose there
        assert model.norm_bound() > 2 * model.squared_norm()


def test_sample_transforms_seeded_and_first_identity():
    angles, shifts = sample_transforms(16, (224, 224), seed=7)
    again, again_shifts = sample_transforms(16, (224, 224), generator=torch.Generator().manual_seed(7))
    assert torch.equal(angles, again) and torch.equal(shifts, again_shifts)
    assert angles[0] == 0 and torch.equal(shifts[0], torch.zeros(2, dtype=f64))
    assert angles.abs().max() <= 0.5 and shifts.abs().max() <= 30
    assert shifts.abs().max() > 15  # ranges are used, not collapsed
    _, small = sample_transforms(64, (112, 56), seed=0)
    assert small[:, 0].abs().max() <= 7.5 and small[:, 1].abs().max() <= 15


def test_bad_transforms_are_rejected():
    with pytest.raises(InputError, match="shifts"):
        RotoTranslation(torch.zeros(3), torch.zeros(2, 2), (8, 8))
    with pytest.raises(InputError, match="map size"):
        ForwardModel(torch.zeros(1), torch.zeros(1, 2), (8, 8), (16, 16))
    with pytest.raises(InputError, match="L must"):
        sample_transforms(0, (8, 8))


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("downsample", DOWNSAMPLINGS)
@pytest.mark.parametrize("size, low, max_shift", [((40, 48), (5, 6), None), ((32, 32), (4, 4), 40.0)])
def test_forward_model_options_match_grid_sample_and_are_adjoint(padding, downsample, size, low, max_shift):
    # Every padding and downsampling equals F.grid_sample (that padding) then average pooling or
    # F.interpolate, also for copies shifted out of the frame (max_shift 40 px on a 32² grid).
    angles, shifts = sample_transforms(6, size, max_shift=max_shift, seed=3)
    maps = torch.randn(2, *size, dtype=f64)
    model = ForwardModel(angles, shifts, size, low, padding=padding, downsample=downsample, dtype=f64)
    views = model.forward(maps.reshape(2, -1).t()).t().reshape(2, 6, *low)
    src_x, src_y = warp_coordinates(angles, shifts, size)
    grid = torch.stack([(2 * src_x + 1) / size[1] - 1, (2 * src_y + 1) / size[0] - 1], dim=-1)
    for copy in range(6):
        warped = F.grid_sample(maps[:, None], grid[copy:copy + 1].expand(2, -1, -1, -1), mode="bilinear",
                               padding_mode=padding, align_corners=False)
        expected = (F.interpolate(warped, size=low, mode="bilinear", align_corners=False) if downsample == "bilinear"
                    else F.avg_pool2d(warped, size[0] // low[0]))
        torch.testing.assert_close(views[:, copy], expected[:, 0], atol=1e-12, rtol=0)
    residual = torch.randn(6 * low[0] * low[1], 2, dtype=f64)
    assert _dot_test(model.forward, model.adjoint, maps.reshape(2, -1).t(), residual) < 1e-12
    warp = RotoTranslation(angles, shifts, size, padding=padding, dtype=f64)(maps)       # copies padded alike
    for copy in range(6):
        expected = F.grid_sample(maps[:, None], grid[copy:copy + 1].expand(2, -1, -1, -1), mode="bilinear",
                                 padding_mode=padding, align_corners=False)[:, 0]
        torch.testing.assert_close(warp[:, copy], expected, atol=1e-12, rtol=0)


def test_coverage_is_the_share_of_each_cell_inside_the_frame():
    angles, shifts = sample_transforms(8, (32, 32), max_shift=12, seed=1)
    for padding in PADDINGS:
        model = ForwardModel(angles, shifts, (32, 32), (4, 4), padding=padding, dtype=f64)
        zeros = ForwardModel(angles, shifts, (32, 32), (4, 4), dtype=f64)
        ones = zeros.forward(torch.ones(32 * 32, 1, dtype=f64)).view(8, 4, 4)
        torch.testing.assert_close(model.coverage, ones, atol=1e-12, rtol=0)
    assert torch.equal(model.coverage[0], torch.ones(4, 4, dtype=f64))           # the identity copy
    assert (model.coverage < 1).any() and (model.coverage >= 0).all()


def test_blur_is_a_symmetric_gaussian_before_the_warp():
    angles, shifts = sample_transforms(5, (32, 32), seed=2)
    model = ForwardModel(angles, shifts, (32, 32), (8, 8), blur=2.0, dtype=f64)
    plain = ForwardModel(angles, shifts, (32, 32), (8, 8), dtype=f64)
    maps = torch.randn(2, 32, 32, dtype=f64)
    kernel = gaussian_kernel(2.0)
    assert kernel.sum().item() == pytest.approx(1.0) and kernel.numel() == 13
    blurred = F.conv2d(F.pad(maps[:, None], (6, 6, 6, 6)), (kernel[:, None] * kernel[None, :])[None, None])[:, 0]
    torch.testing.assert_close(model.forward(maps.reshape(2, -1).t()), plain.forward(blurred.reshape(2, -1).t()))
    residual = torch.randn(5 * 64, 2, dtype=f64)
    assert _dot_test(model.forward, model.adjoint, maps.reshape(2, -1).t(), residual) < 1e-12


def test_bilinear_downsample_weights_are_torch_interpolate():
    x = torch.randn(3, 224, dtype=f64)
    expected = F.interpolate(x[:, None], size=7, mode="linear", align_corners=False)[:, 0]
    torch.testing.assert_close(x @ downsample_weights(224, 7, "bilinear").t(), expected)
    assert (downsample_weights(224, 7, "bilinear") > 0).sum(1).eq(2).all()      # 2 pixels per cell centre
    with pytest.raises(InputError, match="downsample"):
        downsample_weights(8, 2, "nearest")
    with pytest.raises(InputError, match="padding"):
        RotoTranslation(torch.zeros(1), torch.zeros(1, 2), (8, 8), padding="wrap")
    with pytest.raises(InputError, match="blur"):
        ForwardModel(torch.zeros(1), torch.zeros(1, 2), (8, 8), (2, 2), blur=float("nan"))
