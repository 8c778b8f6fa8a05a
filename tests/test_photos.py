"""camkit.photos: images keep their aspect, maps and boxes come back in each image's own pixels,
a known object pasted into a larger non-square canvas is found where it is, grouping images of
one shape into batches changes nothing."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import camkit
from camkit.errors import InputError
from camkit.localize import iou
from camkit.photos import Geometry, display_size, explain_photos, iter_photos, scale_boxes, shorter_side

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def nin():
    return camkit.models.pretrained("nin-shapes")


@pytest.fixture(scope="module")
def shapes():
    return camkit.data.Shapes("val", size=64, length=24, seed=0)


def test_shorter_side_keeps_the_aspect():
    assert shorter_side((40, 300), 64) == (64, 480)
    assert shorter_side((300, 40), 64) == (480, 64)
    assert shorter_side((1000, 1000), 224) == (224, 224)
    assert shorter_side((375, 500), 232) == (232, 309)           # round(500 · 232 / 375) = 309
    assert display_size((3000, 200), 1000) == (1000, 67) and display_size((30, 20), 1000) == (30, 20)
    with pytest.raises(InputError):
        shorter_side((0, 5), 64)


def test_scale_boxes_covers_the_same_pixels():
    boxes = torch.tensor([[0, 0, 63, 63], [10, 20, 10, 20], [0, 0, -1, -1]])
    # grid 64 x 64 -> 128 x 256: pixel x covers [4x, 4x + 3] horizontally, [2y, 2y + 1] vertically
    expected = torch.tensor([[0, 0, 255, 127], [40, 40, 43, 41], [0, 0, -1, -1]])
    assert torch.equal(scale_boxes(boxes, (64, 64), (128, 256)), expected)
    assert torch.equal(scale_boxes(expected[:2], (128, 256), (64, 64)), boxes[:2])
    assert torch.equal(scale_boxes(boxes, (64, 64), (64, 64)), boxes)
    # shrinking by 3: pixels 0..2 -> 0 ... a box never leaves the image
    assert scale_boxes(torch.tensor([[0, 0, 8, 8]]), (9, 9), (3, 3)).tolist() == [[0, 0, 2, 2]]
    geometry = Geometry.of((40, 300), 64, max_side=150)
    assert geometry.display == (20, 150) and geometry.capped
    assert geometry.to_json()["size"] == [300, 40] and geometry.to_json()["input_size"] == [480, 64]


def _canvas(item, height, width, y, x, scale=1):
    """``item``'s image (enlarged ``scale`` times, nearest) pasted at (x, y) into a noisy grey
    canvas, and its object's box in the canvas's pixels."""
    generator = torch.Generator().manual_seed(height * 7 + width)
    canvas = (0.5 + 0.03 * torch.randn(3, height, width, generator=generator)).clamp(0, 1)
    side = 64 * scale
    canvas[:, y:y + side, x:x + side] = F.interpolate(item["image"][None], scale_factor=scale, mode="nearest")[0]
    x0, y0, x1, y1 = item["boxes"][0].tolist()
    return canvas, torch.tensor([x0 * scale + x, y0 * scale + y, x1 * scale + scale - 1 + x,
                                 y1 * scale + scale - 1 + y])


@pytest.mark.parametrize("scale", [1, 3])
def test_a_known_object_in_a_wide_and_a_tall_canvas_is_boxed_in_the_original_pixels(nin, shapes, scale):
    """The shipped NiN sees the canvas at its 64-pixel shorter side: the object keeps its training
    scale, and its box, brought back to the canvas's own pixels, overlaps the true one."""
    for index in (4, 13, 17):
        item = shapes[index]
        wide, wide_truth = _canvas(item, 64 * scale, 200 * scale, 0, 120 * scale, scale)
        tall, tall_truth = _canvas(item, 200 * scale, 64 * scale, 100 * scale, 0, scale)
        photos = explain_photos(nin, [wide, tall], targets=[item["label"]] * 2)
        for photo, truth in zip(photos, (wide_truth, tall_truth), strict=True):
            assert photo.geometry.resized == tuple(s // scale for s in photo.geometry.original)
            assert iou(photo.boxes, truth[None])[0, 0] >= 0.5, (index, scale, photo.boxes, truth)


def test_wide_and_tall_images_get_maps_of_their_size_and_boxes_inside_them(nin, tmp_path):
    rng = np.random.default_rng(0)
    for name, (height, width) in {"wide": (40, 300), "tall": (300, 40), "odd": (51, 77)}.items():
        Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8)).save(tmp_path / f"{name}.png")
    paths = [tmp_path / "wide.png", tmp_path / "tall.png", tmp_path / "odd.png"]
    photos = explain_photos(nin, paths, top_k=3, batch_size=2)
    assert [p.index for p in photos] == [0, 1, 2] and photos[0].source == str(paths[0])
    for photo, size in zip(photos, [(40, 300), (300, 40), (51, 77)], strict=True):
        height, width = size
        assert photo.geometry.original == size and min(photo.geometry.resized) == 64
        assert photo.maps.shape == (3, height, width) and photo.image.shape == (3, height, width)
        assert photo.maps.amax(dim=(1, 2)).tolist() == [1.0, 1.0, 1.0]        # normalised on this grid
        x0, y0, x1, y1 = photo.boxes.unbind(-1)
        assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 < width).all() and (y1 < height).all()
        assert (x1 >= x0).all() and (y1 >= y0).all()
    capped = explain_photos(nin, [paths[0]], max_side=150)[0]
    assert capped.maps.shape[-2:] == (20, 150) and capped.image.shape[-2:] == (20, 150)
    assert capped.boxes[0, 2] < 300 and capped.boxes[0, 3] < 40


def test_grouping_by_shape_is_the_same_as_one_by_one(nin, shapes):
    images = [shapes[0]["image"], torch.rand(3, 40, 90), shapes[1]["image"], torch.rand(3, 90, 40),
              shapes[2]["image"]]
    grouped = list(iter_photos(nin, images, batch_size=8))
    assert [p.index for p in grouped] == [0, 2, 4, 1, 3]     # the three 64x64 images share a batch
    alone = explain_photos(nin, images, batch_size=1)
    for a, b in zip(sorted(grouped, key=lambda p: p.index), alone, strict=True):
        torch.testing.assert_close(a.maps, b.maps, atol=1e-5, rtol=0)
        assert torch.equal(a.boxes, b.boxes) and torch.equal(a.classes, b.classes)
    # a square image at the model's size: exactly camkit.explain
    e = camkit.explain(nin, shapes[0]["image"][None])
    torch.testing.assert_close(alone[0].maps, e.maps[0], atol=1e-6, rtol=0)
    assert torch.equal(alone[0].boxes, e.boxes()[0])


def test_standardisation_and_targets(shapes):
    torch.manual_seed(0)
    model = camkit.models.NiN(12, widths=(8, 12), kernel_sizes=(3, 3), downsample=1).eval()
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    image = shapes[0]["image"]
    photo = explain_photos(model, [image], size=64, mean=mean, std=std, targets=[5])[0]
    standardized = (image - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    e = camkit.explain(model, standardized[None], targets=[5])
    assert photo.classes.tolist() == [5] and torch.allclose(photo.scores, e.scores[0])


def test_bad_arguments_are_input_errors(nin):
    with pytest.raises(InputError, match="no images"):
        explain_photos(nin, [])
    with pytest.raises(InputError, match=r"\(3, H, W\)"):
        explain_photos(nin, [torch.rand(1, 3, 8, 8)])
    with pytest.raises(InputError, match="threshold"):
        explain_photos(nin, [torch.rand(3, 8, 8)], threshold=float("nan"))
    with pytest.raises(InputError, match="2 targets for 1 images"):
        explain_photos(nin, [torch.rand(3, 8, 8)], targets=[1, 2])
    with pytest.raises(InputError, match="size"):
        explain_photos(nin, [torch.rand(3, 8, 8)], size=0)


class SquareOnly(torch.nn.Module):
    """A GAP net that, like torchvision's ViT, refuses any input but 32 × 32."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU())
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        torch._assert(x.shape[-2:] == (32, 32), f"Wrong image size {tuple(x.shape[-2:])}")
        return self.fc(self.features(x).mean((2, 3)))


def test_a_model_of_one_input_size_is_named_and_runs_square():
    model = SquareOnly().eval()
    wide = torch.rand(3, 20, 50)
    with pytest.raises(InputError, match=r"failed on a 32×80 input \(Wrong image size \(32, 80\)\).*--square"):
        explain_photos(model, [wide], size=32)
    photo = explain_photos(model, [wide], size=32, square=True)[0]
    assert photo.geometry.resized == (32, 32) and photo.maps.shape[-2:] == (20, 50)
    x0, y0, x1, y1 = photo.boxes[0].tolist()
    assert 0 <= x0 <= x1 < 50 and 0 <= y0 <= y1 < 20
    e = camkit.explain(model, F.interpolate(wide[None], size=(32, 32), mode="bilinear", antialias=True,
                                            align_corners=False).clamp(0, 1))
    torch.testing.assert_close(photo.maps, camkit.maps.normalize_maps(
        camkit.maps.resize_maps(e.raw[0], (20, 50))), atol=1e-6, rtol=0)


def _broken_files(folder):
    """Two readable PNGs of noise, a file that is not an image and a JPEG cut in half (its header
    reads, its pixels do not), in the order readable, text, cut JPEG, readable."""
    rng = np.random.default_rng(3)
    for name in ("a", "b"):
        Image.fromarray((rng.random((48, 56, 3)) * 255).astype(np.uint8)).save(folder / f"{name}.png")
    (folder / "not-an-image.png").write_bytes(b"plain text, no pixels")
    Image.fromarray((rng.random((48, 56, 3)) * 255).astype(np.uint8)).save(folder / "cut.jpg", quality=90)
    data = (folder / "cut.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(data[:len(data) // 2])
    return [folder / "a.png", folder / "not-an-image.png", folder / "cut.jpg", folder / "b.png"]


def test_unreadable_files_raise_or_are_skipped_and_named(nin, tmp_path):
    from camkit.errors import ImageFileError

    paths = _broken_files(tmp_path)
    with pytest.raises(ImageFileError, match="not-an-image.png"):    # the header pass: before any work
        explain_photos(nin, paths)
    with pytest.raises(ImageFileError, match="cut.jpg"):             # the header reads; decoding fails
        explain_photos(nin, [paths[0], paths[2]])
    skipped: list = []
    photos = explain_photos(nin, paths, skipped=skipped, batch_size=8)
    assert [p.index for p in photos] == [0, 3]
    assert [index for index, _ in sorted(skipped)] == [1, 2]
    assert all(str(paths[index]) in message for index, message in skipped)
    # the readable images come out exactly as when explained alone (the cut one shared their batch)
    alone = explain_photos(nin, [paths[0], paths[3]], batch_size=8)
    for a, b in zip(photos, alone, strict=True):
        assert torch.equal(a.maps, b.maps) and torch.equal(a.boxes, b.boxes) and torch.equal(a.classes, b.classes)
    with pytest.raises(InputError, match="none of the 2 images can be read"):
        explain_photos(nin, paths[1:3], skipped=[])
    with pytest.raises(InputError, match=r"\(3, H, W\)"):             # a tensor's error is never skipped
        explain_photos(nin, [torch.rand(1, 3, 8, 8), paths[0]], skipped=[])
