"""camkit.maps: min-max normalisation and resizing of 1-D, 2-D and 3-D maps, with hand values."""
import pytest
import torch
import torch.nn.functional as F

from camkit.errors import InputError
from camkit.maps import normalize_maps, resize_maps


def test_normalize_golden_values_and_constant_maps():
    maps = torch.tensor([[[1.0, 3.0], [2.0, 5.0]], [[4.0, 4.0], [4.0, 4.0]]])  # (2, h, w)
    out = normalize_maps(maps)
    torch.testing.assert_close(out[0], torch.tensor([[0.0, 0.5], [0.25, 1.0]]))
    assert out[1].abs().max() == 0 and not torch.isnan(out).any()  # constant → zeros, never NaN
    assert out.shape == maps.shape


def test_normalize_over_the_whole_grid_of_its_rank():
    clip = torch.tensor([[[0.0, 1.0]], [[2.0, 4.0]]])[None]  # (1, T=2, h=1, w=2)
    torch.testing.assert_close(normalize_maps(clip, 3), clip / 4)  # one min and max for the clip
    per_frame = normalize_maps(clip, 2)
    torch.testing.assert_close(per_frame[0, 0], torch.tensor([[0.0, 1.0]]))
    torch.testing.assert_close(per_frame[0, 1], torch.tensor([[0.0, 1.0]]))
    signal = torch.tensor([[2.0, 4.0, 3.0], [-1.0, -1.0, 1.0]])
    torch.testing.assert_close(normalize_maps(signal, 1), torch.tensor([[0.0, 1.0, 0.5], [0.0, 0.0, 1.0]]))
    with pytest.raises(InputError, match="spatial_dims"):
        normalize_maps(signal, 3)


def test_linear_resize_golden_values_every_rank():
    # align_corners=False: output i samples the input at (i + ½)·(n/N) − ½, clamped at the borders
    ramp = torch.tensor([0.0, 1.0])
    expected = torch.tensor([0.0, 0.25, 0.75, 1.0])
    torch.testing.assert_close(resize_maps(ramp.view(1, 1, 2), (4,)), expected.view(1, 1, 4))
    image = resize_maps(ramp.view(1, 2) * torch.ones(2, 1), (3, 4))  # (h, w) → (H, W), constant along rows
    torch.testing.assert_close(image, expected.expand(3, 4))
    clip = resize_maps(torch.stack([torch.zeros(2, 2), torch.ones(2, 2)])[None], (4, 2, 2))  # (1, T, h, w)
    torch.testing.assert_close(clip[0, :, 0, 0], expected)
    # the same interpolation as F.interpolate for each rank
    maps = torch.rand(2, 3, 4, 5, 6)
    torch.testing.assert_close(resize_maps(maps, (7, 8, 9)),
                               F.interpolate(maps, size=(7, 8, 9), mode="trilinear", align_corners=False))


def test_resize_keeps_leading_dims_same_size_and_integer_maps():
    maps = torch.rand(2, 3, 4, 4)
    assert resize_maps(maps, (4, 4)) is maps
    ints = torch.tensor([[0, 2], [4, 6]])
    out = resize_maps(ints, (2, 2))
    assert out.dtype == torch.float32 and out.tolist() == [[0.0, 2.0], [4.0, 6.0]]
    assert resize_maps(torch.rand(2, 3, 5, 4, 4), (8, 8)).shape == (2, 3, 5, 8, 8)  # 2-D maps, 3 leading dims
    nearest = resize_maps(torch.tensor([[1.0, 2.0]]), (1, 4), mode="nearest")
    assert nearest.tolist() == [[1.0, 1.0, 2.0, 2.0]]
    corners = resize_maps(torch.tensor([0.0, 3.0]).view(1, 1, 2), (4,), align_corners=True)
    torch.testing.assert_close(corners, torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 1, 4))


def test_extent_crops_the_part_of_the_grid_the_input_covers():
    signal = torch.tensor([0.0, 4.0, 8.0, 12.0]).view(1, 1, 4)
    # the input covers the first half of the grid: resize the grid to 8, keep the first 4
    covered = resize_maps(signal, (4,), extent=(0.5,))
    torch.testing.assert_close(covered, torch.tensor([0.0, 1.0, 3.0, 5.0]).view(1, 1, 4))
    grid = torch.rand(1, 2, 16, 16)
    torch.testing.assert_close(resize_maps(grid, (11, 13), extent=(11 / 16, 13 / 16)), grid[..., :11, :13])
    torch.testing.assert_close(resize_maps(grid, (16, 16), extent=(1.0, 1.0)), grid)


def test_resize_errors_are_named():
    with pytest.raises(InputError, match="bicubic"):
        resize_maps(torch.rand(1, 2, 3, 4), (4, 6, 8), mode="bicubic")
    with pytest.raises(InputError, match="1 to 3 grid axes"):
        resize_maps(torch.rand(2, 2, 2, 2, 2), (2, 2, 2, 2))
