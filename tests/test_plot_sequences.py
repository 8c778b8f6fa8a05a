"""Frame strips for clips and line plots for signals: what each panel shows, and named errors."""
import matplotlib
import numpy as np
import pytest
import torch

import camkit
import camkit.plot.sequences as ps
from camkit.errors import InputError
from camkit.explainer import Explanation

matplotlib.use("Agg")


def _explanation(maps):
    b, k = maps.shape[:2]
    zeros = torch.zeros(b, k)
    return Explanation(maps, maps, zeros.long(), zeros, zeros)


def test_frame_strip_blends_each_frame_with_its_own_map(tmp_path):
    clips = torch.rand(2, 3, 5, 8, 10)
    maps = torch.rand(2, 1, 5, 8, 10)
    maps[0, 0, 2] = 0  # frame 2 of clip 0 has nothing: the plain colour map's 0 over the frame
    figure = ps.frame_strip(clips, _explanation(maps), frames=[0, 2, 4], alpha=0.4, save=tmp_path / "strip.png")
    axes = np.array(figure.axes).reshape(2, 3)
    for b in range(2):
        for column, t in enumerate([0, 2, 4]):
            shown = axes[b, column].images[0].get_array()
            frame = clips[b, :, t].permute(1, 2, 0).numpy()
            np.testing.assert_allclose(shown, camkit.plot.blend(frame, maps[b, 0, t], 0.4, "jet"), atol=1e-6)
    assert [ax.get_title() for ax in axes[0]] == ["t = 0", "t = 2", "t = 4"]
    assert (tmp_path / "strip.png").stat().st_size > 0
    default = ps.frame_strip(clips[0], maps[:1, 0])  # one clip, (B, T, H, W) maps: every frame (≤ 8)
    assert len(default.axes) == 5


def test_frame_strip_boxes_come_from_the_explanation():
    maps = torch.zeros(1, 1, 2, 6, 6)
    maps[0, 0, 0, 1:3, 2:5] = 1.0
    figure = ps.frame_strip(torch.rand(1, 3, 2, 6, 6), _explanation(maps), boxes=True)
    first, second = figure.axes
    assert len(first.patches) == 1 and len(second.patches) == 0  # frame 1 has the empty box
    rectangle = first.patches[0]
    assert (rectangle.get_x(), rectangle.get_y(), rectangle.get_width(), rectangle.get_height()) == (1.5, 0.5, 3, 2)


def test_signal_plot_draws_channels_over_the_map_band():
    signals = torch.tensor([[[0.0, 1.0, 4.0, 9.0], [1.0, 1.0, 1.0, 1.0]]])  # (1, 2, 4)
    maps = torch.tensor([[[0.0, 0.5, 1.0, 0.25]]])
    figure = ps.signal_plot(signals, _explanation(maps), channel_names=["a", "b"])
    (ax,) = figure.axes
    np.testing.assert_allclose(ax.images[0].get_array()[0], maps[0, 0].numpy())
    np.testing.assert_allclose(ax.lines[0].get_ydata(), signals[0, 0].numpy())
    assert [line.get_label() for line in ax.lines] == ["a", "b"]
    coarse = ps.signal_plot(signals[0, 0], torch.tensor([[0.0, 1.0]]))  # a map at layer resolution, resized to L
    np.testing.assert_allclose(coarse.axes[0].images[0].get_array()[0], [0.0, 1 / 3, 2 / 3, 1.0])


def test_plot_errors_are_named():
    with pytest.raises(InputError, match=r"\(B, C, T, H, W\)"):
        ps.frame_strip(torch.rand(3, 8, 8), torch.rand(1, 8, 8))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        ps.frame_strip(torch.rand(1, 3, 2, 4, 4), torch.rand(1, 2, 4, 4) * 3)
    with pytest.raises(InputError, match="frames"):
        ps.frame_strip(torch.rand(1, 3, 2, 4, 4), torch.rand(1, 2, 4, 4), frames=[5])
    with pytest.raises(InputError, match="k=3"):
        ps.signal_plot(torch.rand(1, 6), torch.rand(1, 2, 6), k=3)
    with pytest.raises(InputError, match="Explanation"):
        ps.frame_strip(torch.rand(1, 3, 2, 4, 4), torch.rand(1, 2, 4, 4), boxes=True)
