"""Figures: ``overlay`` (a panel per image and map), ``grid`` (images × methods), ``compare``
(one image, several maps), and the Figure plumbing (``new_figure``, ``figure_to_array``, ``save``)."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import matplotlib
import matplotlib.cm
import matplotlib.colors
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from camkit.errors import InputError
from camkit.io import atomic_path
from camkit.plot.boxes import GT_COLOR, PRED_COLOR, _panel_boxes, _predicted_boxes, draw_boxes
from camkit.plot.inputs import _colormap, _is_explanation, _Maps, _read_maps, _to_numpy, to_rgb
from camkit.plot.pixels import blend

__all__ = ["overlay", "grid", "compare", "new_figure", "figure_to_array", "save"]

def new_figure(figsize: tuple[float, float] = (4.0, 3.0), dpi: float = 100.0,
               layout: Literal["constrained", "compressed", "tight"] | None = None) -> Figure:
    """A Figure on its own Agg canvas: headless, and outside pyplot's figure list."""
    figure = Figure(figsize=figsize, dpi=dpi, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def figure_to_array(figure: Figure) -> np.ndarray:
    """Render ``figure`` and return its pixels ``(H, W, 4)`` uint8 RGBA (row 0 at the top)."""
    canvas = figure.canvas if isinstance(figure.canvas, FigureCanvasAgg) else FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def save(figure: Figure, path: str | os.PathLike, dpi: float | None = None) -> str:
    """Write ``figure`` as a PNG at ``path`` (atomically; parent folders created) and return the path."""
    if not isinstance(figure.canvas, FigureCanvasAgg):
        FigureCanvasAgg(figure)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=dpi, format="png", bbox_inches="tight", facecolor="white")
    return os.fspath(path)


def _finish(figure: Figure, save_path) -> Figure:
    if save_path is not None:
        save(figure, save_path)
    return figure


def _plain_axes(ax: Axes) -> None:
    """No ticks or frame, but keep the axis labels visible (used for row names)."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _class_name(index: int, labels: Any) -> str:
    if int(index) < 0:  # the Explanation's marker for a callable target, not a class
        return "target"
    if labels is not None:
        try:
            return str(labels[int(index)])
        except (KeyError, IndexError, TypeError):
            pass
    return f"class {int(index)}"


def _panel_title(maps: _Maps, b: int, k: int, labels: Any) -> str | None:
    if maps.classes is None:
        return None
    title = _class_name(maps.classes[b, k], labels)
    if maps.scores is not None:
        title += f" ({maps.scores[b, k]:.2f})"
    return title


def _grid_figure(nrows: int, ncols: int, panel_size: float, dpi: float) -> tuple[Figure, np.ndarray]:
    figure = new_figure((panel_size * ncols, panel_size * nrows), dpi=dpi, layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        _plain_axes(ax)
    return figure, axes


def _add_colorbar(figure: Figure, axes, cmap) -> None:
    mappable = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0.0, 1.0), cmap=_colormap(cmap))
    figure.colorbar(mappable, ax=list(np.ravel(axes)), shrink=0.8)


def overlay(images: Any, maps_or_explanation: Any, alpha: float = 0.5, cmap="jet",
            mask_below: float | None = None, mean=None, std=None, boxes: Any = None,
            gt_boxes: Any = None, labels: Any = None, ncols: int | None = None,
            titles: Sequence[str] | bool | None = None, min_max: bool = False,
            box_threshold: float = 0.2, colorbar: bool = False, panel_size: float = 3.0,
            dpi: float = 100.0, save: str | os.PathLike | None = None) -> Figure:
    """One panel per (image, map): the map blended over its image (see :func:`blend`).

    ``images``: any accepted kind, B images; ``maps_or_explanation``: ``(B, K, h, w)`` /
    ``(B, h, w)`` / ``(h, w)`` in [0, 1] (``min_max=True`` min-max normalises each map first) or an
    Explanation.  ``mean``/``std``: a normalisation to undo.  ``boxes``: predicted boxes (layouts of
    :func:`draw_boxes`, ``(B, K, 4)`` per panel) or ``True`` for ``explanation.boxes(box_threshold)``;
    ``gt_boxes``: ground truth per image.  ``labels``: class names (sequence or dict by index) for
    titles and box labels.  ``titles``: one string per panel, or ``False`` for none (default: the
    Explanation's class and score).  Panels run image by image; a row per image when ``K > 1``.
    """
    rgbs = to_rgb(images, mean, std)
    maps = _read_maps(maps_or_explanation, len(rgbs), min_max)
    predicted = _predicted_boxes(boxes, maps, box_threshold)
    truth = _panel_boxes(gt_boxes, maps.batch, maps.k, per_panel_ok=False, what="gt_boxes")
    n_panels = maps.batch * maps.k
    if isinstance(titles, (list, tuple)) and len(titles) != n_panels:
        raise InputError(f"{len(titles)} title(s) for {n_panels} panel(s)")
    if ncols is None:
        ncols = maps.k if maps.k > 1 else min(maps.batch, 4)
    if int(ncols) < 1:
        raise InputError(f"ncols must be at least 1; got {ncols}")
    ncols = min(int(ncols), n_panels)
    nrows = -(-n_panels // ncols)
    figure, axes = _grid_figure(nrows, ncols, panel_size, dpi)
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    for index in range(n_panels):
        b, k = divmod(index, maps.k)
        ax = axes.flat[index]
        ax.imshow(blend(rgbs[b], maps.maps[b, k], alpha, cmap, mask_below), interpolation="nearest")
        if titles is None or titles is True:
            title = _panel_title(maps, b, k, labels)
        elif titles is False:
            title = None
        else:
            title = titles[index]
        if title:
            ax.set_title(title, fontsize=9)
        draw_boxes(ax, truth[b][k], color=GT_COLOR)
        box_label = None
        if maps.classes is not None and labels is not None:
            box_label = _class_name(maps.classes[b, k], labels)
        draw_boxes(ax, predicted[b][k], labels=box_label, color=PRED_COLOR)
    if colorbar:
        _add_colorbar(figure, axes, cmap)
    return _finish(figure, save)


def grid(images: Any, explanations_by_method: Mapping[str, Any], alpha: float = 0.5, cmap="jet",
         mask_below: float | None = None, mean=None, std=None, k: int = 0, show_image: bool = True,
         boxes: Mapping[str, Any] | bool | None = None, gt_boxes: Any = None, labels: Any = None,
         row_labels: Sequence[str] | None = None, min_max: bool = False,
         box_threshold: float = 0.2, colorbar: bool = False, panel_size: float = 2.5,
         dpi: float = 100.0, save: str | os.PathLike | None = None) -> Figure:
    """A grid of images (rows) × methods (columns), the input image first when ``show_image``.

    ``explanations_by_method``: ``{name: maps or Explanation}``, each with one row per image; map
    ``k`` of each (default 0, the top-1 class) is shown.  ``boxes``: ``{name: boxes}`` (layouts of
    :func:`overlay`), or ``True`` to ask each Explanation for ``.boxes(box_threshold)``.
    ``gt_boxes`` are drawn on every panel of their image.  Rows are named by ``row_labels`` or, when
    the first method is an Explanation, by the class it explains.
    """
    if not isinstance(explanations_by_method, Mapping) or not explanations_by_method:
        raise InputError("explanations_by_method must be a non-empty dict {method name: maps or Explanation}")
    rgbs = to_rgb(images, mean, std)
    batch = len(rgbs)
    methods = list(explanations_by_method)
    all_maps = {name: _read_maps(explanations_by_method[name], batch, min_max) for name in methods}
    for name, maps in all_maps.items():
        if not 0 <= k < maps.k and not -maps.k <= k < 0:
            raise InputError(f"k={k} but method {name!r} has {maps.k} map(s) per image")
    if boxes is not None and boxes is not True and boxes is not False and not isinstance(boxes, Mapping):
        raise InputError("grid boxes must be a dict {method name: boxes}, True or None")
    unknown = set(boxes) - set(methods) if isinstance(boxes, Mapping) else set()
    if unknown:
        raise InputError(f"boxes given for unknown method(s) {sorted(unknown)}; methods are {methods}")
    predicted = {}
    for name, maps in all_maps.items():
        entry = boxes.get(name) if isinstance(boxes, Mapping) else boxes
        predicted[name] = _predicted_boxes(entry, maps, box_threshold, what=f"boxes[{name!r}]")
    truth = _panel_boxes(gt_boxes, batch, 1, per_panel_ok=False, what="gt_boxes")
    if row_labels is not None and len(row_labels) != batch:
        raise InputError(f"{len(row_labels)} row label(s) for {batch} image(s)")

    ncols = len(methods) + int(show_image)
    figure, axes = _grid_figure(batch, ncols, panel_size, dpi)
    first = all_maps[methods[0]]
    for b, rgb in enumerate(rgbs):
        row = axes[b]
        if show_image:
            row[0].imshow(rgb, interpolation="nearest")
            draw_boxes(row[0], truth[b][0], color=GT_COLOR)
            if b == 0:
                row[0].set_title("image", fontsize=9)
        for column, name in enumerate(methods, start=int(show_image)):
            maps, ax = all_maps[name], row[column]
            ax.imshow(blend(rgb, maps.maps[b, k], alpha, cmap, mask_below), interpolation="nearest")
            draw_boxes(ax, truth[b][0], color=GT_COLOR)
            draw_boxes(ax, predicted[name][b][k], color=PRED_COLOR)
            if b == 0:
                ax.set_title(name, fontsize=9)
        if row_labels is not None:
            row[0].set_ylabel(str(row_labels[b]), fontsize=9)
        elif first.classes is not None:
            row[0].set_ylabel(_class_name(first.classes[b, k], labels), fontsize=9)
    if colorbar:
        _add_colorbar(figure, axes, cmap)
    return _finish(figure, save)


def compare(image: Any, maps: Mapping[str, Any], boxes: Mapping[str, Any] | bool | None = None,
            gt_boxes: Any = None, alpha: float = 0.5, cmap="jet", mask_below: float | None = None,
            mean=None, std=None, show_image: bool = True, min_max: bool = False,
            box_threshold: float = 0.15, panel_size: float = 2.5, dpi: float = 100.0,
            save: str | os.PathLike | None = None) -> Figure:
    """The paper-style row for one image: the image, then each method's map (e.g. single / max /
    avg / augmented, in dict order) with its predicted box(es) and the ground truth.

    ``maps``: ``{name: (h, w) map, (1, h, w), (1, K, h, w) or an Explanation of this image}``;
    ``boxes``: ``{name: (4,) or (n, 4)}`` or ``True`` (each Explanation's ``.boxes(box_threshold)``,
    15 % of the max as in the Grad-CAM paper); ``gt_boxes``: ``(4,)`` or ``(n, 4)``.
    """
    rgbs = to_rgb(image, mean, std)
    if len(rgbs) != 1:
        raise InputError(f"compare shows one image; got a batch of {len(rgbs)} (use grid for several)")
    if not isinstance(maps, Mapping) or not maps:
        raise InputError("maps must be a non-empty dict {method name: map}")
    single = {}
    for name, value in maps.items():
        if _is_explanation(value):
            single[name] = value
            continue
        array = _to_numpy(value)
        if array.ndim == 2:
            array = array[None]
        if array.ndim == 3 and array.shape[0] != 1:
            raise InputError(f"compare: map {name!r} has shape {array.shape}; give one map (h, w) "
                             "of this image")
        single[name] = array
    if isinstance(boxes, Mapping):
        boxes = {name: [value] for name, value in boxes.items()}
    gt = None if gt_boxes is None else [gt_boxes]
    return grid(rgbs, single, alpha=alpha, cmap=cmap, mask_below=mask_below, show_image=show_image,
                boxes=boxes, gt_boxes=gt, min_max=min_max, box_threshold=box_threshold,
                panel_size=panel_size, dpi=dpi, save=save)
