"""Figures of maps over time or along a signal: a frame strip for clips, a line plot for signals.

``frame_strip`` draws a clip's frames side by side with the map of each frame blended over it (the
maps of a clip share one colour scale: the clip's max is 1); ``signal_plot`` draws each signal's
channels as lines over a colour band of its map.  Both return a ``matplotlib`` ``Figure`` on its
own Agg canvas, as every figure of :mod:`camkit.plot` (``save=path`` writes a PNG).

    >>> e = camkit.explain(video_model, clips)                      # clips (B, 3, T, H, W)  # doctest: +SKIP
    >>> camkit.plot.frame_strip(clips, e, save="strip.png")                                   # doctest: +SKIP
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from camkit.errors import InputError
from camkit.plot.boxes import draw_boxes
from camkit.plot.figures import new_figure, save
from camkit.plot.inputs import to_rgb
from camkit.plot.pixels import blend

__all__ = ["frame_strip", "signal_plot"]


def _maps_of(maps_or_explanation: Any, rank: int, batch: int, k: int) -> np.ndarray:
    """Maps (B, *grid) of column ``k`` from (B, K, *grid), (B, *grid) or an Explanation, as floats in [0, 1]."""
    maps = getattr(maps_or_explanation, "maps", maps_or_explanation)
    array = maps.detach().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
    if array.ndim == rank + 2:
        if not 0 <= k < array.shape[1]:
            raise InputError(f"map index k={k} out of range: the maps have K = {array.shape[1]}")
        array = array[:, k]
    if array.ndim != rank + 1 or array.shape[0] != batch:
        raise InputError(f"maps must be (B, K, *grid) or (B, *grid) with B = {batch} and {rank} grid axes, "
                         f"got shape {array.shape}")
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
        raise InputError("maps must be finite and in [0, 1] (an Explanation's maps are)")
    return array.astype(np.float32)


def frame_strip(clips: Any, maps_or_explanation: Any, k: int = 0, frames: Sequence[int] | None = None,
                alpha: float = 0.5, cmap: str = "jet", mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None, boxes: bool = False, box_threshold: float = 0.2,
                panel_size: float = 1.6, dpi: float = 100.0, save: str | os.PathLike | None = None) -> Figure:
    """One row per clip, one column per frame: the map of that frame blended over it.

    ``clips``: (B, C, T, H, W) or (C, T, H, W) tensor (C = 3, or 1 repeated).  ``maps_or_explanation``:
    (B, K, T, H, W) / (B, T, H, W) maps in [0, 1] or an ``Explanation``; map ``k`` is drawn, resized
    to the frames.  ``frames``: the frame indices shown (default: at most 8, evenly spaced).
    ``mean``/``std``: a normalisation to undo.  ``boxes=True`` draws the Explanation's per-frame boxes
    (``.boxes(box_threshold)``, (B, K, T, 4)).
    """
    clips = torch.as_tensor(clips).detach().cpu()
    if clips.dim() == 4:
        clips = clips[None]
    if clips.dim() != 5:
        raise InputError(f"clips must be (B, C, T, H, W) or (C, T, H, W), got shape {tuple(clips.shape)}")
    batch, _, length = clips.shape[:3]
    maps = _maps_of(maps_or_explanation, 3, batch, k)
    default = sorted({int(i) for i in np.linspace(0, length - 1, min(length, 8))})
    shown = default if frames is None else [int(t) for t in frames]
    if not shown or min(shown) < 0 or max(shown) >= length:
        raise InputError(f"frames must be indices in 0 … {length - 1}, got {shown}")
    frame_boxes = None
    if boxes:
        if not hasattr(maps_or_explanation, "boxes"):
            raise InputError("boxes=True needs an Explanation (something with .boxes(threshold))")
        frame_boxes = maps_or_explanation.boxes(threshold=box_threshold)[:, k]  # (B, T, 4)
    figure = new_figure((panel_size * len(shown), panel_size * batch), dpi)
    axes = np.atleast_2d(figure.subplots(batch, len(shown), squeeze=False))
    for b in range(batch):
        rgbs = to_rgb(clips[b].transpose(0, 1), mean, std)  # T images (C, H, W)
        for column, t in enumerate(shown):
            ax = axes[b, column]
            ax.imshow(blend(rgbs[t], maps[b, t], alpha, cmap))
            if frame_boxes is not None:
                draw_boxes(ax, frame_boxes[b, t])
            ax.set_xticks([])
            ax.set_yticks([])
            if b == 0:
                ax.set_title(f"t = {t}", fontsize=8)
    figure.tight_layout(pad=0.2)
    return _saved(figure, save)


def signal_plot(signals: Any, maps_or_explanation: Any, k: int = 0, cmap: str = "jet", alpha: float = 0.6,
                channel_names: Sequence[str] | None = None, panel_size: tuple[float, float] = (6.0, 1.6),
                dpi: float = 100.0, save: str | os.PathLike | None = None) -> Figure:
    """One row per signal: its channels as lines over a colour band of the map (time on the x axis).

    ``signals``: (B, C, L), (B, L) or (L,).  ``maps_or_explanation``: (B, K, L) / (B, L) maps in [0, 1]
    or an ``Explanation``; map ``k`` is drawn (resized to L when it differs).
    """
    values = torch.as_tensor(signals).detach().cpu().float()
    if values.dim() == 1:
        values = values[None, None]
    elif values.dim() == 2:
        values = values[:, None]
    if values.dim() != 3:
        raise InputError(f"signals must be (B, C, L), (B, L) or (L,), got shape {tuple(values.shape)}")
    batch, channels, length = values.shape
    maps = _maps_of(maps_or_explanation, 1, batch, k)
    if maps.shape[-1] != length:
        maps = np.stack([np.interp(np.linspace(0, m.size - 1, length), np.arange(m.size), m) for m in maps])
    figure = new_figure((panel_size[0], panel_size[1] * batch), dpi)
    axes = figure.subplots(batch, 1, squeeze=False)[:, 0]
    for b, ax in enumerate(axes):
        low, high = float(values[b].min()), float(values[b].max())
        pad = 0.05 * (high - low or 1.0)
        ax.imshow(maps[b][None], aspect="auto", cmap=cmap, alpha=alpha, vmin=0, vmax=1,
                  extent=(-0.5, length - 0.5, low - pad, high + pad), interpolation="nearest")
        for c in range(channels):
            name = channel_names[c] if channel_names is not None and c < len(channel_names) else None
            ax.plot(np.arange(length), values[b, c].numpy(), color="black" if channels == 1 else None,
                    linewidth=1.0, label=name)
        ax.set_xlim(-0.5, length - 0.5)
        ax.set_ylim(low - pad, high + pad)
        if channel_names is not None:
            ax.legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("position")
    figure.tight_layout(pad=0.3)
    return _saved(figure, save)


def _saved(figure: Figure, path: str | os.PathLike | None) -> Figure:
    if path is not None:
        save(figure, path)
    return figure
