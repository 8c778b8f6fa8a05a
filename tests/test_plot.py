"""camkit.plot: the tests look at pixels (of `blend`, of images with boxes drawn in, and of
rendered Agg canvases), at the accepted input kinds and at the errors for bad ones."""
import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from camkit import plot
from camkit.errors import InputError
from camkit.models import IMAGENET_MEAN, IMAGENET_STD

JET_AT_0 = np.array([0.0, 0.0, 0.5])   # jet's ends are dark blue and dark red
JET_AT_1 = np.array([0.5, 0.0, 0.0])
RED = np.array([1.0, 0.0, 0.0])
LIME = np.array([0.0, 1.0, 0.0])
ONE_LEVEL = 1 / 255


def corner_peak(size=16, sigma=2.0):
    """A map in [0, 1] peaked at pixel (0, 0), below 1e-6 at the far corner."""
    yy, xx = np.mgrid[:size, :size]
    return np.exp(-(xx ** 2 + yy ** 2) / (2 * sigma ** 2)).astype(np.float32)


def random_uint8(*shape):
    return np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)


def rendered_pixel(rgba, ax, x, y):
    """RGB in [0, 1] of the rendered canvas at data point (x, y) of ``ax`` (after a draw)."""
    display_x, display_y = ax.transData.transform((x, y))
    row = int(rgba.shape[0] - display_y)
    return rgba[row, int(display_x), :3] / 255.0


class FakeExplanation:
    """Duck-typed stand-in for camkit's Explanation (maps, classes, scores, boxes)."""

    def __init__(self, maps, classes=None, scores=None, boxes=None):
        self.maps = maps
        self.classes = classes
        self.scores = scores
        self._boxes = boxes
        self.thresholds_asked = []

    def boxes(self, threshold=0.2):
        self.thresholds_asked.append(threshold)
        return self._boxes


# ------------------------------------------------------------------ blend and overlays


def test_blend_golden_values_at_colormap_ends():
    grey = np.full((4, 4, 3), 0.5, dtype=np.float32)
    hot = plot.blend(grey, np.ones((4, 4)), alpha=0.5, cmap="jet")
    cold = plot.blend(grey, np.zeros((4, 4)), alpha=0.25, cmap="jet")
    np.testing.assert_allclose(hot, np.broadcast_to(0.5 * 0.5 + 0.5 * JET_AT_1, hot.shape), atol=1e-6)
    np.testing.assert_allclose(cold, np.broadcast_to(0.75 * 0.5 + 0.25 * JET_AT_0, cold.shape), atol=1e-6)
    np.testing.assert_allclose(plot.blend(grey, np.ones((4, 4)), alpha=0.0), grey, atol=0)


def test_blend_of_a_corner_peak_changes_that_corner_and_masks_the_opposite_one():
    image = random_uint8(16, 16, 3).astype(np.float32) / 255
    peak = corner_peak()
    blended = plot.blend(image, peak, alpha=0.6, mask_below=0.05)
    assert np.abs(blended[0, 0] - image[0, 0]).max() > 0.1
    np.testing.assert_allclose(blended[0, 0], 0.4 * image[0, 0] + 0.6 * JET_AT_1, atol=1e-6)
    np.testing.assert_array_equal(blended[-4:, -4:], image[-4:, -4:])
    # masking keeps exactly the pixels below the threshold, blends all others
    below = peak < 0.05
    np.testing.assert_array_equal(blended[below], image[below])
    assert np.all(np.abs(blended[~below] - image[~below]).max(axis=-1) > 0)


def test_small_map_is_resized_bilinearly_to_the_image():
    image = np.full((16, 16, 3), 0.5, dtype=np.float32)
    small = np.zeros((4, 4), dtype=np.float32)
    small[0, 0] = 1.0
    upsampled = F.interpolate(torch.from_numpy(small)[None, None], size=(16, 16), mode="bilinear",
                              align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(plot.blend(image, small), plot.blend(image, upsampled), atol=1e-6)
    # the heat stays in the top-left corner
    blended = plot.blend(image, small, mask_below=0.01)
    assert np.abs(blended[0, 0] - 0.5).max() > 0.2
    np.testing.assert_array_equal(blended[8:, 8:], image[8:, 8:])


def test_rendered_overlay_changes_the_peaked_corner_only():
    image = random_uint8(16, 16, 3)
    figure = plot.overlay(image, corner_peak(), alpha=0.6, mask_below=0.05, panel_size=2.0)
    rgba = plot.figure_to_array(figure)
    ax = figure.axes[0]
    original = image / 255.0
    expected_corner = 0.4 * original[0, 0] + 0.6 * JET_AT_1
    np.testing.assert_allclose(rendered_pixel(rgba, ax, 0, 0), expected_corner, atol=2 * ONE_LEVEL)
    assert np.abs(rendered_pixel(rgba, ax, 0, 0) - original[0, 0]).max() > 0.1
    for y, x in [(15, 15), (15, 12), (12, 15)]:
        np.testing.assert_allclose(rendered_pixel(rgba, ax, x, y), original[y, x], atol=2 * ONE_LEVEL)


def test_min_max_option_normalises_raw_maps():
    image = np.full((8, 8, 3), 0.5, dtype=np.float32)
    raw = np.linspace(3.0, 11.0, 64, dtype=np.float32).reshape(8, 8)
    expected = plot.overlay_arrays(image, (raw - 3.0) / 8.0)[0]
    np.testing.assert_allclose(plot.overlay_arrays(image, raw, min_max=True)[0], expected, atol=1e-6)
    with pytest.raises(InputError, match="min_max=True"):
        plot.overlay_arrays(image, raw)


# ------------------------------------------------------------------ input kinds


@pytest.fixture
def batch_kinds():
    """The same two 12x12 images as every accepted kind."""
    pixels = random_uint8(2, 12, 12, 3)
    floats = pixels.astype(np.float32) / 255
    tensor = torch.from_numpy(floats).permute(0, 3, 1, 2)
    return {
        "tensor (B,3,H,W)": tensor,
        "list of tensors (3,H,W)": list(tensor),
        "uint8 (B,H,W,3)": pixels,
        "float (B,H,W,3)": floats,
        "list of uint8 (H,W,3)": list(pixels),
        "list of PIL": [Image.fromarray(p) for p in pixels],
        "uint8 tensor": torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(),
    }


def test_every_image_kind_gives_identical_pixels(batch_kinds):
    maps = torch.rand(2, 3, 6, 6)
    reference = plot.overlay_arrays(batch_kinds["tensor (B,3,H,W)"], maps)
    for kind, images in batch_kinds.items():
        result = plot.overlay_arrays(images, maps)
        for got, want in zip(result, reference, strict=True):
            np.testing.assert_array_equal(got, want, err_msg=kind)


def test_every_map_kind_gives_an_identical_rendered_figure(batch_kinds):
    images = batch_kinds["uint8 (B,H,W,3)"]
    maps = torch.rand(2, 2, 6, 6)
    explanation = FakeExplanation(maps, classes=torch.tensor([[3, 1], [0, 2]]), scores=torch.randn(2, 2))
    kinds = {"tensor": maps, "numpy": maps.numpy(), "explanation": explanation}
    rendered = {kind: plot.figure_to_array(plot.overlay(images, value, titles=False, panel_size=1.0))
                for kind, value in kinds.items()}
    for kind, rgba in rendered.items():
        np.testing.assert_array_equal(rgba, rendered["tensor"], err_msg=kind)
    # (B, H, W) and (H, W) maps are one map per image
    single = plot.overlay_arrays(images[:1], maps[0, 0])
    np.testing.assert_array_equal(single[0], plot.overlay_arrays(images[:1], maps[:1, :1])[0])
    per_image = plot.overlay_arrays(images, maps[:, 0])
    np.testing.assert_array_equal(per_image[1], plot.overlay_arrays(images, maps[:, :1])[1])


def test_explanation_titles_name_class_and_score():
    maps = torch.rand(1, 2, 6, 6)
    explanation = FakeExplanation(maps, classes=torch.tensor([[7, 2]]), scores=torch.tensor([[3.25, -1.5]]))
    figure = plot.overlay(np.zeros((6, 6, 3), np.uint8), explanation, labels={7: "cat"}, panel_size=1.0)
    assert [ax.get_title() for ax in figure.axes] == ["cat (3.25)", "class 2 (-1.50)"]


def test_grey_images_are_repeated_over_channels():
    grey = random_uint8(8, 8)
    rgb = plot.to_rgb(grey)[0]
    np.testing.assert_array_equal(rgb, np.repeat(grey[..., None] / np.float32(255), 3, axis=-1))
    np.testing.assert_array_equal(plot.to_rgb(Image.fromarray(grey))[0], rgb)


def test_mean_std_normalisation_is_undone():
    rgb = torch.rand(2, 3, 5, 7)
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    normalised = (rgb - mean[:, None, None]) / std[:, None, None]
    restored = plot.to_rgb(normalised, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    for got, want in zip(restored, rgb.permute(0, 2, 3, 1).numpy(), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
    # a normalised zero is the mean color
    zeros = plot.to_rgb(torch.zeros(3, 2, 2), mean=IMAGENET_MEAN, std=IMAGENET_STD)[0]
    np.testing.assert_allclose(zeros, np.broadcast_to(IMAGENET_MEAN, (2, 2, 3)), atol=1e-7)
    # and an overlay of the normalised batch is the overlay of the original one
    maps = torch.rand(2, 1, 5, 7)
    for got, want in zip(plot.overlay_arrays(normalised, maps, mean=mean, std=std),
                         plot.overlay_arrays(rgb, maps), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("call, message", [
    (lambda: plot.to_rgb(torch.rand(2, 4, 8, 8)), r"\(3, H, W\).*\(4, 8, 8\)"),
    (lambda: plot.to_rgb(torch.rand(8, 8, 3)), "channels-last"),
    (lambda: plot.to_rgb(np.random.rand(3, 8, 8)), "channels-first"),
    (lambda: plot.to_rgb(np.random.rand(1, 2, 8, 8, 3)), r"got shape \(1, 2, 8, 8, 3\)"),
    (lambda: plot.to_rgb("photo.jpg"), "cannot read an image from str"),
    (lambda: plot.to_rgb([]), "no images"),
    (lambda: plot.to_rgb(np.random.rand(8, 8, 3) * 255), r"\[0, 1\].*mean="),
    (lambda: plot.to_rgb(np.zeros((8, 8, 3), np.uint8), mean=IMAGENET_MEAN), "uint8"),
    (lambda: plot.to_rgb(torch.rand(3, 8, 8), mean=(0.5, 0.5)), "mean must be 1 or 3"),
    (lambda: plot.to_rgb(np.full((4, 4, 3), np.nan)), "NaN"),
    (lambda: plot.overlay_arrays(torch.rand(2, 3, 8, 8), torch.rand(5, 8, 8)), r"5 map\(s\) for 2 image"),
    (lambda: plot.overlay_arrays(torch.rand(1, 3, 8, 8), torch.rand(1, 1, 1, 8, 8)), r"\(B, K, h, w\)"),
    (lambda: plot.overlay_arrays(torch.rand(3, 8, 8), torch.rand(8, 8) * 4), "min_max=True"),
    (lambda: plot.overlay_arrays(torch.rand(3, 8, 8), torch.rand(8, 8), cmap="no-such-map"), "colormap"),
    (lambda: plot.blend(np.zeros((4, 4, 3), np.float32), np.zeros((2, 4, 4))), r"one map \(h, w\)"),
    (lambda: plot.blend(np.zeros((4, 4, 3), np.float32), np.zeros((4, 4)), alpha=2), "alpha"),
    (lambda: plot.draw_boxes(np.zeros((4, 4, 3)), [1, 2, 3]), r"\(N, 4\)"),
    (lambda: plot.draw_boxes(np.zeros((4, 4, 3)), [[0, 0, 1, 1]], labels=["a", "b"]), r"2 label\(s\) for 1"),
    (lambda: plot.overlay(torch.rand(2, 3, 8, 8), torch.rand(2, 8, 8), boxes=np.zeros((3, 4))), "2 images"),
    (lambda: plot.overlay(torch.rand(3, 8, 8), torch.rand(8, 8), boxes=True), r"\.boxes\(threshold\)"),
    (lambda: plot.grid(torch.rand(3, 8, 8), {}), "non-empty dict"),
    (lambda: plot.compare(torch.rand(3, 8, 8), {"single": torch.rand(2, 8, 8)}), "one map"),
    (lambda: plot.threshold_curve({"cam": (np.arange(5), np.arange(4))}), "4 accuracies for 5"),
])
def test_bad_input_is_rejected_with_a_clear_error(call, message):
    with pytest.raises(InputError, match=message):
        call()
    assert issubclass(InputError, ValueError)


# ------------------------------------------------------------------ boxes


def test_box_drawn_into_an_array_covers_x0_to_x1_inclusive():
    image = np.zeros((20, 20, 3), dtype=np.float32)
    x0, y0, x1, y1 = 2, 3, 10, 12
    drawn = plot.draw_boxes(image, [x0, y0, x1, y1], color="red", linewidth=1)
    expected = np.zeros((20, 20), dtype=bool)
    expected[y0:y1 + 1, [x0, x1]] = True
    expected[[y0, y1], x0:x1 + 1] = True
    np.testing.assert_array_equal(np.all(drawn == RED, axis=-1), expected)
    np.testing.assert_array_equal(drawn[~expected], 0)
    # a thicker outline grows inwards and never leaves the box
    thick = plot.draw_boxes(image, [x0, y0, x1, y1], linewidth=3)
    painted = np.any(thick != 0, axis=-1)
    assert painted[y0:y1 + 1, x0:x1 + 1].sum() == painted.sum()
    assert painted[y0 + 2, x0:x0 + 3].all() and not painted[y0 + 3:y1 - 2, x0 + 3:x1 - 2].any()


def test_box_label_is_written_inside_the_box_and_bad_boxes_are_skipped():
    image = np.zeros((40, 60, 3), dtype=np.uint8)
    drawn = plot.draw_boxes(image, [[5, 5, 50, 35], [30, 30, 10, 10]], labels=["dog", "none"], linewidth=1)
    text = np.all(drawn == RED, axis=-1)
    text[5, :] = text[35, :] = text[:, 5] = text[:, 50] = False
    assert text[6:35, 6:50].any() and text.sum() == text[6:35, 6:50].sum()


def test_box_on_axes_has_edges_at_x0_minus_half_and_x1_plus_half():
    scale = 20                     # screen pixels per image pixel
    figure = Figure(figsize=(2, 2), dpi=100)
    ax = figure.add_axes((0, 0, 1, 1))
    ax.imshow(np.zeros((10, 10, 3)), interpolation="nearest")
    ax.set_axis_off()
    x0, y0, x1, y1 = 2, 3, 6, 7
    plot.draw_boxes(ax, [x0, y0, x1, y1], color="red", linewidth=4 * 72 / 100)  # 4 screen pixels
    rgba = plot.figure_to_array(figure)

    def red_run_centres(line):
        red = np.flatnonzero((line[:, 0] > 200) & (line[:, 1] < 60))
        runs = np.split(red, np.flatnonzero(np.diff(red) > 1) + 1)
        return [run.mean() + 0.5 for run in runs]   # + 0.5: centre of a pixel column

    middle_row = rgba[int((y0 + y1) / 2 * scale + scale / 2)]
    middle_column = rgba[:, int((x0 + x1) / 2 * scale + scale / 2)]
    np.testing.assert_allclose(red_run_centres(middle_row), [x0 * scale, (x1 + 1) * scale], atol=1)
    np.testing.assert_allclose(red_run_centres(middle_column), [y0 * scale, (y1 + 1) * scale], atol=1)


def test_overlay_draws_predicted_and_ground_truth_boxes_where_they_belong():
    image = np.full((16, 16, 3), 128, dtype=np.uint8)
    explanation = FakeExplanation(torch.zeros(1, 1, 16, 16), classes=torch.tensor([[0]]),
                                  boxes=torch.tensor([[[2, 2, 6, 6]]]))
    figure = plot.overlay(image, explanation, boxes=True, gt_boxes=[[9, 9, 13, 13]], box_threshold=0.3,
                          alpha=0.0, panel_size=2.0)
    assert explanation.thresholds_asked == [0.3]
    ax = figure.axes[0]
    rgba = plot.figure_to_array(figure)
    for (x0, y0, x1, y1), color in [((2, 2, 6, 6), RED), ((9, 9, 13, 13), LIME)]:
        middle = (y0 + y1) / 2
        np.testing.assert_allclose(rendered_pixel(rgba, ax, x0 - 0.5, middle), color, atol=0.1)
        np.testing.assert_allclose(rendered_pixel(rgba, ax, x1 + 0.5, middle), color, atol=0.1)
        np.testing.assert_allclose(rendered_pixel(rgba, ax, (x0 + x1) / 2, middle), 128 / 255, atol=ONE_LEVEL)
    rectangles = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert sorted((r.get_x(), r.get_width()) for r in rectangles) == [(1.5, 5), (8.5, 5)]


def test_box_layouts_reach_the_right_panels():
    images = torch.rand(2, 3, 8, 8)
    maps = torch.rand(2, 2, 8, 8)

    def boxes_per_panel(figure):
        return [sorted(r.get_x() + 0.5 for r in ax.patches) for ax in figure.axes]

    per_panel = torch.tensor([[[0, 0, 1, 1], [1, 1, 2, 2]], [[2, 2, 3, 3], [3, 3, 4, 4]]])
    assert boxes_per_panel(plot.overlay(images, maps, boxes=per_panel, panel_size=1)) == [[0], [1], [2], [3]]
    ragged = [np.array([[0, 0, 1, 1], [5, 5, 6, 6]]), np.array([4, 4, 5, 5])]
    assert boxes_per_panel(plot.overlay(images, maps, gt_boxes=ragged, panel_size=1)) == [[0, 5], [0, 5], [4], [4]]
    invalid = torch.tensor([[[0, 0, 1, 1], [-1, -1, -2, -2]], [[2, 2, 3, 3], [3, 3, 4, 4]]])
    assert boxes_per_panel(plot.overlay(images, maps, boxes=invalid, panel_size=1)) == [[0], [], [2], [3]]


# ------------------------------------------------------------------ grid, compare, curves


def test_grid_puts_each_method_in_its_column():
    images = np.full((2, 12, 12, 3), 0.5, dtype=np.float32)
    top_left = np.broadcast_to(corner_peak(12), (2, 12, 12))
    bottom_right = top_left[:, ::-1, ::-1]
    explanation = FakeExplanation(torch.from_numpy(top_left.copy())[:, None], classes=torch.tensor([[4], [1]]))
    figure = plot.grid(images, {"cam": explanation, "flipped": bottom_right.copy()}, mask_below=0.05,
                       labels=["a", "b", "c", "d", "e"], panel_size=1.5)
    axes = np.array(figure.axes).reshape(2, 3)
    assert [ax.get_title() for ax in axes[0]] == ["image", "cam", "flipped"]
    assert [row[0].get_ylabel() for row in axes] == ["e", "b"]
    rgba = plot.figure_to_array(figure)
    for row in axes:
        image_panel, cam_panel, flipped_panel = row
        np.testing.assert_allclose(rendered_pixel(rgba, image_panel, 0, 0), 0.5, atol=ONE_LEVEL)
        assert np.abs(rendered_pixel(rgba, cam_panel, 0, 0) - 0.5).max() > 0.1
        np.testing.assert_allclose(rendered_pixel(rgba, cam_panel, 11, 11), 0.5, atol=ONE_LEVEL)
        np.testing.assert_allclose(rendered_pixel(rgba, flipped_panel, 0, 0), 0.5, atol=ONE_LEVEL)
        assert np.abs(rendered_pixel(rgba, flipped_panel, 11, 11) - 0.5).max() > 0.1


def test_compare_row_shows_each_method_with_its_own_box():
    image = torch.full((3, 16, 16), 0.5)
    maps = {name: torch.rand(4, 4) for name in ("single", "max", "avg", "augmented")}
    boxes = {"single": [1, 1, 4, 4], "augmented": [[2, 2, 9, 9], [10, 10, 12, 12]]}
    figure = plot.compare(image, maps, boxes=boxes, gt_boxes=[3, 3, 8, 8], panel_size=1.5)
    assert [ax.get_title() for ax in figure.axes] == ["image", "single", "max", "avg", "augmented"]
    red_boxes = [sorted(r.get_x() + 0.5 for r in ax.patches if np.allclose(r.get_edgecolor()[:3], RED))
                 for ax in figure.axes]
    assert red_boxes == [[], [1], [], [], [2, 10]]
    green_boxes = [[r.get_x() + 0.5 for r in ax.patches if np.allclose(r.get_edgecolor()[:3], LIME)]
                   for ax in figure.axes]
    assert green_boxes == [[3]] * 5


def test_threshold_curve_reads_every_accepted_layout():
    tau = np.arange(0, 1, 0.01)
    acc = {d: 100 * np.exp(-((tau - c) ** 2) / 0.02) * (1 - d) for d, c in [(0.3, 0.2), (0.5, 0.3), (0.7, 0.4)]}
    layouts = {
        "pair": {"cam": (tau, acc[0.5])},
        "delta dict": {"cam": (tau, acc)},
        "result with rows": {"cam": {"thresholds": tau, "box_acc": np.stack(list(acc.values())),
                                     "iou_thresholds": [0.3, 0.5, 0.7], "max_box_acc_v2": 35.0}},
        "bare result": {"tau": torch.from_numpy(tau), "curves": {str(d): a for d, a in acc.items()}},
    }
    for layout, curves in layouts.items():
        figure = plot.threshold_curve(curves)
        ax = figure.axes[0]
        curves_drawn = [line for line in ax.lines if len(line.get_xdata()) > 1]
        want = [acc[0.5]] if layout == "pair" else list(acc.values())
        assert len(curves_drawn) == len(want), layout
        for line, values in zip(curves_drawn, want, strict=True):
            np.testing.assert_allclose(line.get_xdata(), tau)
            np.testing.assert_allclose(line.get_ydata(), values)
        best = int(np.argmax(want[0]))
        marker = next(line for line in ax.lines if len(line.get_xdata()) == 1)
        assert (marker.get_xdata()[0], marker.get_ydata()[0]) == (tau[best], want[0][best])
        assert ax.get_ylabel() == "BoxAcc (%)"
        if layout != "pair":
            assert "δ=0.5" in curves_drawn[1].get_label()
    fractions = plot.threshold_curve({"cam": (tau, acc[0.5] / 100)})
    assert fractions.axes[0].get_ylabel() == "BoxAcc" and fractions.axes[0].get_ylim() == (0, 1)


# ------------------------------------------------------------------ headless use and saving


def test_figures_leave_pyplot_and_the_backend_alone():
    import matplotlib.pyplot as plt

    backend, open_figures = matplotlib.get_backend(), plt.get_fignums()
    images, maps = torch.rand(2, 3, 8, 8), torch.rand(2, 8, 8)
    figures = [plot.overlay(images, maps, panel_size=1), plot.grid(images, {"m": maps}, panel_size=1),
               plot.compare(images[0], {"m": maps[0]}, panel_size=1),
               plot.threshold_curve({"m": (np.linspace(0, 1, 5), np.linspace(0, 1, 5))})]
    assert all(isinstance(figure, Figure) for figure in figures)
    assert plt.get_fignums() == open_figures and matplotlib.get_backend() == backend


def test_save_writes_a_png_of_the_figure(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    path = tmp_path / "nested" / "overlay.png"
    figure = plot.overlay(image, np.ones((8, 8)), alpha=1.0, panel_size=1, save=path)
    with Image.open(path) as saved:
        assert saved.format == "PNG"
        pixels = np.asarray(saved.convert("RGB")) / 255.0
    # the panel is jet(1) everywhere: the saved picture is mostly that color
    share = np.mean(np.all(np.abs(pixels - JET_AT_1) < 0.02, axis=-1))
    assert share > 0.5
    again = plot.save(figure, tmp_path / "again.png")
    with Image.open(again) as saved:
        assert saved.size == Image.open(path).size


def test_a_real_explanation_is_drawn_with_its_classes():
    explainer = pytest.importorskip("camkit.explainer")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))
    images = torch.rand(2, 3, 12, 12)
    explanation = explainer.explain(model, images, method="gradcam", top_k=2)
    names = ["zero", "one", "two"]
    figure = plot.overlay(images, explanation, labels=names, panel_size=1.0)
    classes, scores = explanation.classes.tolist(), explanation.scores.tolist()
    assert [ax.get_title() for ax in figure.axes] == [
        f"{names[c]} ({s:.2f})"
        for row_c, row_s in zip(classes, scores, strict=True) for c, s in zip(row_c, row_s, strict=True)]
    from_explanation = plot.overlay_arrays(images, explanation)
    for got, want in zip(from_explanation, plot.overlay_arrays(images, explanation.maps), strict=True):
        np.testing.assert_array_equal(got, want)


def test_callable_targets_class_minus_one_is_not_read_as_the_last_label():
    explanation = FakeExplanation(torch.rand(1, 1, 6, 6), classes=torch.tensor([[-1]]), scores=torch.tensor([[0.5]]))
    figure = plot.overlay(np.zeros((6, 6, 3), np.uint8), explanation, labels=["a", "b"], panel_size=1.0)
    assert figure.axes[0].get_title() == "target (0.50)"
