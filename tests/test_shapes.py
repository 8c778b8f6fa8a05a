"""The synthetic shapes data set: determinism, exact ground truth, splits."""
import numpy as np
import pytest
import torch
from scipy import ndimage

import camkit
from camkit.data import Shapes
from camkit.data.shapes import COLORS, TEXTURES, render, texture_pattern
from camkit.errors import InputError


def test_same_index_gives_same_pixels_box_and_mask():
    a, b = Shapes("val", size=48, length=40, seed=3), Shapes("val", size=48, length=40, seed=3)
    for index in (0, 7, 39):
        first, again, fresh = a[index], a[index], b[index]
        for other in (again, fresh):
            assert torch.equal(first["image"], other["image"])
            assert torch.equal(first["boxes"], other["boxes"])
            assert torch.equal(first["mask"], other["mask"])
            assert first["label"] == other["label"]
    assert not torch.equal(a[1]["image"], a[2]["image"])


def test_splits_and_seeds_draw_different_images():
    index = 5
    train, val = Shapes("train", size=48, length=10)[index], Shapes("val", size=48, length=10)[index]
    reseeded = Shapes("val", size=48, length=10, seed=1)[index]
    assert train["label"] == val["label"] == reseeded["label"]
    assert not torch.equal(train["image"], val["image"])
    assert not torch.equal(val["image"], reseeded["image"])


def test_items_have_documented_types_and_ranges():
    data = Shapes("train", size=40, length=24)
    assert len(data.classes) == len(TEXTURES) * len(COLORS) >= 8
    item = data[3]
    assert item["image"].shape == (3, 40, 40) and item["image"].dtype == torch.float32
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert item["boxes"].shape == (1, 4) and item["boxes"].dtype == torch.long
    assert item["mask"].shape == (40, 40) and item["mask"].dtype == torch.bool
    assert sorted(data[i]["label"] for i in range(24)) == sorted(list(range(12)) * 2)
    assert data[-1]["label"] == data[23]["label"]
    with pytest.raises(IndexError):
        data[24]


@pytest.mark.parametrize("label", range(len(TEXTURES) * len(COLORS)))
def test_mask_is_exactly_the_painted_object_and_box_its_bounds(label):
    size = 56
    shapes_seen = set()
    for draw_seed in range(6):
        rng = np.random.default_rng([draw_seed, label])
        image, mask, box = render(rng, size, label, noise=(0.0, 0.0))
        pixels = image.reshape(3, -1).T
        object_colors = np.unique(pixels[mask.ravel()], axis=0)
        textured = TEXTURES[label % len(TEXTURES)] != "solid"
        assert len(object_colors) == 1 + textured, "a color, plus its dark shade when textured"
        if textured:
            np.testing.assert_allclose(object_colors.min(0), 0.4 * object_colors.max(0), rtol=1e-5)
        # Fragments have random colors, so the pixels of the object's exact colors are the mask.
        painted = (pixels[:, None, :] == object_colors[None]).all(-1).any(-1).reshape(size, size)
        np.testing.assert_array_equal(painted, mask)
        _, components = ndimage.label(mask)
        assert components == 1
        ys, xs = np.nonzero(mask)
        np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max(), ys.max()])
        assert 0 <= box[0] <= box[2] < size and 0 <= box[1] <= box[3] < size
        side = max(box[2] - box[0], box[3] - box[1]) + 1
        assert 0.25 * size <= side <= 0.95 * size, "objects are large relative to the image"
        shapes_seen.add(round(mask.sum() / ((box[2] - box[0] + 1) * (box[3] - box[1] + 1)), 1))
    assert len(shapes_seen) > 1, "shapes vary within a class"


def test_texture_patterns_golden_values():
    x = np.arange(8.0)
    np.testing.assert_array_equal(texture_pattern("striped", x, 0 * x, 4.0), [0, 0, 1, 1, 0, 0, 1, 1])
    np.testing.assert_array_equal(texture_pattern("checked", x[:4], np.array([0.0, 0, 2, 2]), 2.0),
                                  [0, 0, 0, 0])
    np.testing.assert_array_equal(texture_pattern("checked", x[:4], np.zeros(4), 2.0), [0, 0, 1, 1])
    np.testing.assert_array_equal(texture_pattern("dotted", np.array([2.0, 0.0]), np.array([2.0, 0.0]), 4.0),
                                  [1, 0])
    assert not texture_pattern("solid", x, x, 3.0).any()
    with pytest.raises(InputError, match="texture"):
        texture_pattern("plaid", x, x, 3.0)


def test_dataset_boxes_are_mask_bounds():
    data = Shapes("test", size=64, length=30)
    for i in range(30):
        item = data[i]
        ys, xs = torch.nonzero(item["mask"], as_tuple=True)
        assert item["boxes"][0].tolist() == [xs.min().item(), ys.min().item(), xs.max().item(), ys.max().item()]


def test_color_alone_does_not_give_the_class_away():
    """Fragments of every object color appear in images of other colors."""
    data = Shapes("train", size=64, length=120)
    hits = 0
    for i in range(120):
        item = data[i]
        if data.classes[item["label"]].startswith("red"):
            continue
        rgb = item["image"][:, ~item["mask"]]
        reddish = (rgb[0] > 0.5) & (rgb[1] < 0.25) & (rgb[2] < 0.25)
        hits += bool(reddish.sum() >= 3)
    assert hits >= 10


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(InputError, match="split"):
        Shapes("validation")
    with pytest.raises(InputError, match="size"):
        Shapes("train", size=8)
    with pytest.raises(InputError, match="unknown"):
        Shapes("train", shapes=("hexagon",))
    with pytest.raises(InputError, match="unknown"):
        Shapes("train", textures=("plaid",))


def test_package_exposes_shapes_and_lazily_the_wsol_reader():
    assert camkit.data.Shapes is Shapes
    assert {"WSOLDataset", "export_wsol"} <= set(dir(camkit.data))
    pytest.importorskip("camkit.data.wsol")
    assert callable(camkit.data.WSOLDataset) and callable(camkit.data.export_wsol)


def test_shapes_round_trip_through_the_wsolevaluation_layout(tmp_path):
    pytest.importorskip("camkit.data.wsol")
    data = Shapes("val", size=32, length=6)
    metadata = camkit.data.export_wsol(data, tmp_path, "val")
    again = camkit.data.WSOLDataset(metadata, tmp_path / "images", size=None)
    assert len(again) == 6
    for i in range(6):
        original, read = data[i], again[i]
        assert read["ok"] and read["label"] == original["label"]
        assert torch.equal(read["boxes"], original["boxes"])
        # PNG stores 8 bits per channel.
        torch.testing.assert_close(read["image"], original["image"], atol=1 / 255, rtol=0)
