"""Figures of class activation maps: overlays, boxes, grids of methods, BoxAcc-vs-τ curves.

Everything is drawn on ``matplotlib.figure.Figure`` objects with an Agg canvas, never through
``pyplot``: figures work headless, leave the user's backend and pyplot's figure list untouched,
and are freed like any other object.  Functions return the ``Figure``; ``save=path`` writes a PNG.

Input kinds accepted wherever an image is expected:

- torch tensors ``(3, H, W)`` / ``(B, 3, H, W)`` (one channel is repeated), float in [0, 1] or uint8;
- NumPy arrays ``(H, W, 3)`` / ``(B, H, W, 3)`` (or ``(H, W)`` grey), float in [0, 1] or uint8;
- PIL images, or a list mixing any of the above (sizes may differ).

Maps are ``(B, K, h, w)``, ``(B, h, w)`` or ``(h, w)`` tensors/arrays in [0, 1], or an
``Explanation``-like object (anything with ``.maps`` ``(B, K, H, W)``; ``.classes``, ``.scores``
and ``.boxes(threshold)`` are used when present).  Maps are resized (bilinear) to their image.

    >>> fig = camkit.plot.overlay(images, camkit.explain(model, images), boxes=True,
    ...                           mean=camkit.plot.IMAGENET_MEAN, std=camkit.plot.IMAGENET_STD,
    ...                           save="overlay.png")        # doctest: +SKIP
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import matplotlib.cm
import matplotlib.colors
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from camkit.errors import InputError
from camkit.maps import normalize_maps, resize_maps

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "PRED_COLOR", "GT_COLOR",
    "to_rgb", "blend", "overlay_arrays", "draw_boxes",
    "overlay", "grid", "compare", "threshold_curve",
    "new_figure", "figure_to_array", "save",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRED_COLOR = "red"      # CAM paper: predicted boxes red, ground truth green
GT_COLOR = "lime"

# Float images may overshoot [0, 1] by rounding (e.g. after resizing) without being an error.
_RANGE_TOLERANCE = 1e-3


# --------------------------------------------------------------------------------------------
# Conversions
# --------------------------------------------------------------------------------------------

def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _is_pil(x: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(x, Image.Image)


def _channels(values: Any, name: str) -> np.ndarray | None:
    if values is None:
        return None
    array = np.asarray(_to_numpy(values), dtype=np.float32).reshape(-1)
    if array.size not in (1, 3) or not np.all(np.isfinite(array)):
        raise InputError(f"{name} must be 1 or 3 finite numbers (one per channel); got {values!r}")
    return array


def _single_rgb(image: Any, mean: np.ndarray | None, std: np.ndarray | None) -> np.ndarray:
    """One image of any accepted kind -> ``(H, W, 3)`` float32 in [0, 1]."""
    if _is_pil(image):
        array = np.asarray(image.convert("RGB"))
    elif isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            hint = " (channels-last? torch images are (3, H, W))" if image.ndim == 3 and image.shape[-1] == 3 else ""
            raise InputError(f"a torch image must be (3, H, W) or (1, H, W); got {tuple(image.shape)}{hint}")
        array = _to_numpy(image).transpose(1, 2, 0)
    elif isinstance(image, np.ndarray):
        array = image
        if array.ndim == 3 and array.shape[-1] not in (1, 3, 4):
            hint = (", which looks channels-first: use .transpose(1, 2, 0)"
                    if array.shape[0] in (1, 3) else "")
            raise InputError(f"a NumPy image must be (H, W, 3), (H, W, 4) or (H, W); "
                             f"got {array.shape}{hint}")
        if array.ndim not in (2, 3):
            raise InputError(f"a NumPy image must be (H, W, 3) or (H, W); got {array.shape}")
    else:
        raise InputError(f"cannot read an image from {type(image).__name__}: give a torch tensor, "
                         "a NumPy array, a PIL image or a list of them")
    if array.ndim == 2:
        array = array[..., None]
    array = array[..., :3]
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"image is empty: {array.shape}")

    if array.dtype == np.uint8:
        if mean is not None or std is not None:
            raise InputError("mean/std undo a normalisation of float images; "
                             "this image is uint8 (already in pixel units): drop mean/std")
        return array.astype(np.float32) / 255.0
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise InputError(f"image dtype must be uint8 or float; got {array.dtype}")
    rgb = array.astype(np.float32)
    if not np.all(np.isfinite(rgb)):
        raise InputError("image contains NaN or infinite values")
    if mean is not None or std is not None:
        rgb = rgb * (std if std is not None else 1.0) + (mean if mean is not None else 0.0)
        return np.clip(rgb, 0.0, 1.0)
    low, high = float(rgb.min()), float(rgb.max())
    if low < -_RANGE_TOLERANCE or high > 1.0 + _RANGE_TOLERANCE:
        raise InputError(f"float images must lie in [0, 1]; got values in [{low:.3g}, {high:.3g}]. "
                         "Pass mean=/std= to undo a normalisation (e.g. IMAGENET_MEAN/IMAGENET_STD), "
                         "or give uint8 pixels")
    return np.clip(rgb, 0.0, 1.0)


def to_rgb(images: Any, mean: Sequence[float] | None = None,
           std: Sequence[float] | None = None) -> list[np.ndarray]:
    """Images of any accepted kind -> list of ``(H, W, 3)`` float32 arrays in [0, 1].

    A normalisation ``x = (rgb - mean) / std`` is undone as ``rgb = x * std + mean`` (then clipped
    to [0, 1]).  uint8 pixels are divided by 255.  A batch ``(B, 3, H, W)`` / ``(B, H, W, 3)`` or a
    list gives one array per image.
    """
    mean_c, std_c = _channels(mean, "mean"), _channels(std, "std")
    if std_c is not None and np.any(std_c == 0):
        raise InputError(f"std must be non-zero; got {std!r}")
    if isinstance(images, (list, tuple)):
        if not images:
            raise InputError("no images given (empty list)")
        return [_single_rgb(image, mean_c, std_c) for image in images]
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return [_single_rgb(image, mean_c, std_c) for image in images]
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return [_single_rgb(image, mean_c, std_c) for image in images]
    if isinstance(images, (torch.Tensor, np.ndarray)) and images.ndim not in (2, 3):
        raise InputError(f"images must be one image (3, H, W) / (H, W, 3) or a batch "
                         f"(B, 3, H, W) / (B, H, W, 3); got shape {tuple(images.shape)}")
    return [_single_rgb(images, mean_c, std_c)]


class _Maps:
    """Maps ``(B, K, h, w)`` float32 plus what an Explanation tells about them."""

    def __init__(self, maps: np.ndarray, classes=None, scores=None, source=None):
        self.maps, self.classes, self.scores, self.source = maps, classes, scores, source

    @property
    def batch(self) -> int:
        return self.maps.shape[0]

    @property
    def k(self) -> int:
        return self.maps.shape[1]


def _is_explanation(obj: Any) -> bool:
    return hasattr(obj, "maps") and not isinstance(obj, (torch.Tensor, np.ndarray))


def _read_maps(maps_or_explanation: Any, n_images: int, normalize: bool = False) -> _Maps:
    """Maps or an Explanation -> ``_Maps`` whose batch matches ``n_images``."""
    source, classes, scores = None, None, None
    if _is_explanation(maps_or_explanation):
        source = maps_or_explanation
        raw = source.maps
        classes = getattr(source, "classes", None)
        scores = getattr(source, "scores", None)
        classes = None if classes is None else _to_numpy(classes).reshape(len(raw), -1)
        scores = None if scores is None else _to_numpy(scores).astype(np.float64).reshape(len(raw), -1)
    else:
        raw = maps_or_explanation
    if isinstance(raw, (list, tuple)):
        try:
            raw = np.stack([_to_numpy(m) for m in raw])
        except ValueError as error:
            raise InputError(f"a list of maps must hold maps of one shape: {error}") from None
    if not isinstance(raw, (torch.Tensor, np.ndarray)):
        raise InputError(f"maps must be a tensor, an array or an Explanation; got {type(raw).__name__}")
    array = _to_numpy(raw)
    if array.dtype == np.bool_:
        array = array.astype(np.float32)
    if not np.issubdtype(array.dtype, np.number):
        raise InputError(f"maps must be numeric; got dtype {array.dtype}")
    array = array.astype(np.float32)
    if array.ndim == 2:
        array = array[None, None]
    elif array.ndim == 3:
        array = array[:, None]
    elif array.ndim != 4:
        raise InputError(f"maps must be (B, K, h, w), (B, h, w) or (h, w); got shape {array.shape}")
    if array.shape[0] != n_images:
        raise InputError(f"{array.shape[0]} map(s) for {n_images} image(s): maps (B, K, h, w) need one "
                         f"row per image; got maps shape {array.shape}. Several maps of one image "
                         "are (1, K, h, w)")
    if array.shape[1] == 0 or array.shape[2] == 0 or array.shape[3] == 0:
        raise InputError(f"maps are empty: shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InputError("maps contain NaN or infinite values")
    if normalize:
        array = normalize_maps(torch.from_numpy(array)).numpy()
    else:
        low, high = float(array.min()), float(array.max())
        if low < -_RANGE_TOLERANCE or high > 1.0 + _RANGE_TOLERANCE:
            raise InputError(f"maps must lie in [0, 1]; got values in [{low:.3g}, {high:.3g}]. "
                             "Pass normalize=True to min-max normalise each map")
        array = np.clip(array, 0.0, 1.0)
    if classes is not None and classes.shape[1] != array.shape[1]:
        classes = None
    if scores is not None and scores.shape[1] != array.shape[1]:
        scores = None
    return _Maps(array, classes, scores, source)


def _resized(map_hw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if map_hw.shape == tuple(size):
        return map_hw
    return resize_maps(torch.from_numpy(np.ascontiguousarray(map_hw)), size, mode="bilinear").numpy()


def _colormap(cmap: str | matplotlib.colors.Colormap) -> matplotlib.colors.Colormap:
    if isinstance(cmap, matplotlib.colors.Colormap):
        return cmap
    try:
        return matplotlib.colormaps[cmap]
    except KeyError:
        raise InputError(f"unknown colormap {cmap!r}; e.g. 'jet', 'inferno', 'viridis'") from None


# --------------------------------------------------------------------------------------------
# Pure-array operations
# --------------------------------------------------------------------------------------------

def blend(image: Any, map_hw: Any, alpha: float = 0.5, cmap: str | matplotlib.colors.Colormap = "jet",
          mask_below: float | None = None) -> np.ndarray:
    """Blend a colour-mapped map over an image: ``(1 - α)·image + α·cmap(map)``.

    ``image``: one image of any accepted kind (``(H, W, 3)`` float in [0, 1] is used as is).
    ``map_hw``: ``(h, w)`` in [0, 1], resized (bilinear) to ``(H, W)`` when it differs.  Pixels where
    ``map < mask_below`` show the image unchanged.  Returns ``(H, W, 3)`` float32 in [0, 1].
    """
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be in [0, 1]; got {alpha}")
    rgb = image if (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[-1] == 3
                    and image.dtype == np.float32) else to_rgb(image)[0]
    values = _to_numpy(map_hw)
    while values.ndim > 2 and values.shape[0] == 1:
        values = values[0]
    if values.ndim != 2:
        raise InputError(f"blend takes one map (h, w); got shape {values.shape}")
    values = _read_maps(values, 1).maps[0, 0]
    values = _resized(values, rgb.shape[:2])
    heat = _colormap(cmap)(values)[..., :3].astype(np.float32)
    blended = (1.0 - alpha) * rgb + alpha * heat
    if mask_below is not None:
        blended = np.where((values < mask_below)[..., None], rgb, blended)
    return np.clip(blended, 0.0, 1.0).astype(np.float32)


def overlay_arrays(images: Any, maps_or_explanation: Any, alpha: float = 0.5, cmap="jet",
                   mask_below: float | None = None, mean=None, std=None,
                   normalize: bool = False) -> list[np.ndarray]:
    """The pixels of :func:`overlay` without a figure: one ``(K, H, W, 3)`` float32 array per image."""
    rgbs = to_rgb(images, mean, std)
    maps = _read_maps(maps_or_explanation, len(rgbs), normalize)
    return [np.stack([blend(rgb, maps.maps[b, k], alpha, cmap, mask_below) for k in range(maps.k)])
            for b, rgb in enumerate(rgbs)]


def _parse_box_array(boxes: Any, what: str) -> np.ndarray:
    array = _to_numpy(boxes)
    if array.dtype == object:
        raise InputError(f"{what} must be numbers x0, y0, x1, y1; got ragged {boxes!r}")
    array = array.astype(np.float64)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[-1] != 4:
        raise InputError(f"{what} must be (4,) or (N, 4) as x0, y0, x1, y1; got shape {array.shape}")
    return array


def _is_box(array: np.ndarray) -> np.ndarray:
    """``(N, 4)`` -> ``(N,)`` False for NaN or x1 < x0 / y1 < y0 (e.g. 'no component' markers)."""
    return np.all(np.isfinite(array), axis=1) & (array[:, 2] >= array[:, 0]) & (array[:, 3] >= array[:, 1])


def _valid_boxes(array: np.ndarray) -> np.ndarray:
    return array[_is_box(array)]


def _labels_for(labels: Any, n: int) -> list[str | None]:
    if labels is None:
        return [None] * n
    if isinstance(labels, str):
        return [labels] * n
    labels = list(labels)
    if len(labels) != n:
        raise InputError(f"{len(labels)} label(s) for {n} box(es)")
    return [None if label is None else str(label) for label in labels]


def _draw_rect_into(rgb: np.ndarray, box: np.ndarray, color: np.ndarray, width: int) -> None:
    height, width_px = rgb.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    xa, xb = max(x0, 0), min(x1, width_px - 1)
    ya, yb = max(y0, 0), min(y1, height - 1)
    if xa > xb or ya > yb:
        return
    for t in range(width):  # each ring lies inside the box: pixel x0 .. x1 inclusive
        for x in (x0 + t, x1 - t):
            if xa <= x <= xb:
                rgb[ya:yb + 1, x] = color
        for y in (y0 + t, y1 - t):
            if ya <= y <= yb:
                rgb[y, xa:xb + 1] = color


def _draw_text_into(rgb: np.ndarray, text: str, x: int, y: int, color: np.ndarray) -> None:
    from PIL import Image, ImageDraw

    height, width = rgb.shape[:2]
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    draw.text((max(x, 0), max(y, 0)), text, fill=255)
    rgb[np.asarray(mask) > 127] = color


def draw_boxes(target: Axes | Any, boxes: Any, labels: Any = None, color: Any = PRED_COLOR,
               linewidth: float = 2.0, fontsize: float = 8.0) -> Axes | np.ndarray:
    """Draw boxes ``x0, y0, x1, y1`` (inclusive pixel coordinates) on an Axes or into an image.

    The rectangle covers pixels ``x0 .. x1`` and ``y0 .. y1`` inclusive: on an Axes showing the
    image with ``imshow`` its edges lie at ``x0 - 0.5`` and ``x1 + 0.5`` (``linewidth`` in points,
    centred on the edge); in an image the outline is ``linewidth`` pixels thick, inside the box.
    ``boxes``: ``(4,)`` or ``(N, 4)``; ``labels``: one string or ``N`` strings, written inside each
    box's top-left corner.  Boxes with ``x1 < x0``, ``y1 < y0`` or NaN are skipped.  Returns the Axes, or a new
    ``(H, W, 3)`` float32 array when ``target`` is an image (any accepted kind).
    """
    array = _parse_box_array(boxes, "boxes")
    names = _labels_for(labels, len(array))
    keep = _is_box(array)
    array, names = array[keep], [name for name, kept in zip(names, keep) if kept]
    try:
        rgba = matplotlib.colors.to_rgba(color)
    except ValueError:
        raise InputError(f"not a colour: {color!r}") from None

    if isinstance(target, Axes):
        for (x0, y0, x1, y1), name in zip(array, names):
            target.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False,
                                       edgecolor=rgba, linewidth=linewidth))
            if name:
                target.text(x0 - 0.5, y0 - 0.5, name, color="white", fontsize=fontsize,
                            va="top", ha="left", clip_on=True,
                            bbox=dict(facecolor=rgba, edgecolor="none", pad=1.0, alpha=0.8))
        return target

    images = to_rgb(target)
    if len(images) != 1:
        raise InputError(f"draw_boxes draws into one image; got a batch of {len(images)}")
    rgb = images[0].copy()
    thickness = max(int(round(linewidth)), 1)
    color_rgb = np.asarray(rgba[:3], dtype=np.float32)
    for box, name in zip(array, names):
        _draw_rect_into(rgb, box, color_rgb, thickness)
        if name:
            _draw_text_into(rgb, name, int(round(box[0])) + thickness + 1,
                            int(round(box[1])) + thickness + 1, color_rgb)
    return rgb


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------

def new_figure(figsize: tuple[float, float] = (4.0, 3.0), dpi: float = 100.0,
               layout: str | None = None) -> Figure:
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
    """Write ``figure`` as a PNG at ``path`` (parent folders created) and return the path."""
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    if not isinstance(figure.canvas, FigureCanvasAgg):
        FigureCanvasAgg(figure)
    figure.savefig(path, dpi=dpi, format="png", bbox_inches="tight", facecolor="white")
    return path


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


def _panel_boxes(boxes: Any, batch: int, k: int, per_panel_ok: bool, what: str) -> list[list[np.ndarray]]:
    """Boxes in any accepted layout -> ``[b][k]`` lists of ``(n, 4)`` arrays.

    Layouts: ``(4,)`` or ``(n, 4)`` for a single image; ``(B, 4)`` one per image;
    ``(B, K, 4)`` one per panel (predictions) or ``(B, n, 4)`` n per image; ``(B, K, n, 4)``;
    a list of ``B`` per-image entries, each ``(4,)``, ``(n, 4)`` or ``(K, n, 4)`` (for one image, a
    list of n boxes is also read as its ``(n, 4)``).
    """
    empty = np.zeros((0, 4))
    if boxes is None:
        return [[empty] * k for _ in range(batch)]

    def whole_image(entry) -> list[np.ndarray]:
        return [_valid_boxes(_parse_box_array(entry, what))] * k

    def per_image(entry) -> list[np.ndarray]:
        array = _to_numpy(entry)
        if array.ndim == 3:
            if not per_panel_ok or array.shape[0] != k:
                raise InputError(f"{what}: a per-image entry of shape {array.shape} needs one "
                                 f"(n, 4) group per map (K = {k})")
            return [_valid_boxes(_parse_box_array(group, what)) for group in array]
        return whole_image(array)

    if isinstance(boxes, (list, tuple)) and boxes and not np.isscalar(boxes[0]):
        if len(boxes) == batch:
            return [per_image(entry) for entry in boxes]
        if batch == 1:
            return [whole_image(boxes)]
        raise InputError(f"{what}: {len(boxes)} entries for {batch} image(s)")

    array = _to_numpy(boxes).astype(np.float64)
    if array.shape[-1:] != (4,):
        raise InputError(f"{what} must end in 4 coordinates x0, y0, x1, y1; got shape {array.shape}")
    if array.ndim == 1:
        if batch != 1:
            raise InputError(f"{what}: one box (4,) given for {batch} images; give (B, 4)")
        return [whole_image(array)]
    if array.ndim == 2:
        if batch == 1:
            return [whole_image(array)]
        if array.shape[0] != batch:
            raise InputError(f"{what}: shape {array.shape} does not match {batch} images; "
                             "give (B, 4), (B, n, 4) or a list of B (n, 4) arrays")
        return [whole_image(row) for row in array]
    if array.shape[0] != batch:
        raise InputError(f"{what}: shape {array.shape} does not start with the batch size {batch}")
    if array.ndim == 3:
        if per_panel_ok and array.shape[1] == k and k > 1:
            return [[_valid_boxes(box[None]) for box in row] for row in array]
        return [whole_image(row) for row in array]
    if array.ndim == 4 and per_panel_ok and array.shape[1] == k:
        return [[_valid_boxes(group) for group in row] for row in array]
    raise InputError(f"{what}: cannot read boxes of shape {array.shape}")


def _predicted_boxes(boxes: Any, maps: _Maps, box_threshold: float, what: str = "boxes"):
    if boxes is True:
        if maps.source is None or not callable(getattr(maps.source, "boxes", None)):
            raise InputError("boxes=True needs an Explanation (something with .boxes(threshold)); "
                             "pass the boxes themselves instead")
        boxes = maps.source.boxes(box_threshold)
    elif boxes is False:
        boxes = None
    return _panel_boxes(boxes, maps.batch, maps.k, per_panel_ok=True, what=what)


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
            titles: Sequence[str] | bool | None = None, normalize: bool = False,
            box_threshold: float = 0.2, colorbar: bool = False, panel_size: float = 3.0,
            dpi: float = 100.0, save: str | os.PathLike | None = None) -> Figure:
    """One panel per (image, map): the map blended over its image (see :func:`blend`).

    ``images``: any accepted kind, B images; ``maps_or_explanation``: ``(B, K, h, w)`` /
    ``(B, h, w)`` / ``(h, w)`` in [0, 1] (``normalize=True`` min-max normalises each map first) or an
    Explanation.  ``mean``/``std``: a normalisation to undo.  ``boxes``: predicted boxes (layouts of
    :func:`draw_boxes`, ``(B, K, 4)`` per panel) or ``True`` for ``explanation.boxes(box_threshold)``;
    ``gt_boxes``: ground truth per image.  ``labels``: class names (sequence or dict by index) for
    titles and box labels.  ``titles``: one string per panel, or ``False`` for none (default: the
    Explanation's class and score).  Panels run image by image; a row per image when ``K > 1``.
    """
    rgbs = to_rgb(images, mean, std)
    maps = _read_maps(maps_or_explanation, len(rgbs), normalize)
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
        if titles is None:
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
         row_labels: Sequence[str] | None = None, normalize: bool = False,
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
    all_maps = {name: _read_maps(explanations_by_method[name], batch, normalize) for name in methods}
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
            mean=None, std=None, show_image: bool = True, normalize: bool = False,
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
                boxes=boxes, gt_boxes=gt, normalize=normalize, box_threshold=box_threshold,
                panel_size=panel_size, dpi=dpi, save=save)


# --------------------------------------------------------------------------------------------
# BoxAcc-vs-τ curves
# --------------------------------------------------------------------------------------------

_THRESHOLD_KEYS = ("thresholds", "threshold", "taus", "tau", "cam_thresholds")
_ACCURACY_KEYS = ("box_acc", "boxacc", "box_accuracy", "curves", "curve", "accuracy", "acc")
_DELTA_KEYS = ("iou_thresholds", "deltas", "delta", "iou_threshold")


def _find_key(mapping: Mapping, keys: Sequence[str]):
    lowered = {str(key).lower(): key for key in mapping}
    for key in keys:
        if key in lowered:
            return mapping[lowered[key]]
    return None


def _is_result(value: Any) -> bool:
    return isinstance(value, Mapping) and _find_key(value, _THRESHOLD_KEYS) is not None


def _curve_lines(name: str, value: Any) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """One entry of ``threshold_curve`` -> ``(label, τ, BoxAcc)`` lines."""
    deltas = None
    if _is_result(value):
        thresholds = _find_key(value, _THRESHOLD_KEYS)
        accuracy = _find_key(value, _ACCURACY_KEYS)
        deltas = _find_key(value, _DELTA_KEYS)
        if accuracy is None:
            raise InputError(f"curve {name!r}: a result dict needs one of the keys {_ACCURACY_KEYS}")
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        thresholds, accuracy = value
    else:
        raise InputError(f"curve {name!r}: give (thresholds, box_acc) or a result dict with "
                         f"thresholds and box_acc; got {type(value).__name__}")
    tau = _to_numpy(thresholds).astype(np.float64).reshape(-1)

    if isinstance(accuracy, Mapping):
        series = [(f"δ={float(delta):g}" if _numeric(delta) else str(delta), values)
                  for delta, values in accuracy.items()]
    else:
        acc = _to_numpy(accuracy).astype(np.float64)
        if acc.ndim == 1:
            series = [(None, acc)]
        elif acc.ndim == 2:
            if acc.shape[1] != tau.size and acc.shape[0] == tau.size:
                acc = acc.T
            delta_values = (list(_to_numpy(deltas).reshape(-1)) if deltas is not None
                            else list(range(acc.shape[0])))
            if len(delta_values) != acc.shape[0]:
                raise InputError(f"curve {name!r}: {len(delta_values)} IoU threshold(s) for "
                                 f"{acc.shape[0]} curve(s)")
            series = [(f"δ={float(delta):g}", row) for delta, row in zip(delta_values, acc)]
        else:
            raise InputError(f"curve {name!r}: box accuracy must be 1-D (per τ) or 2-D (per δ, τ); "
                             f"got shape {acc.shape}")
    lines = []
    for suffix, values in series:
        acc = _to_numpy(values).astype(np.float64).reshape(-1)
        if acc.size != tau.size:
            raise InputError(f"curve {name!r}: {acc.size} accuracies for {tau.size} thresholds")
        label = " ".join(part for part in (name, suffix) if part)
        lines.append((label, tau, acc))
    return lines


def _numeric(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def threshold_curve(curves: Mapping[str, Any], ax: Axes | None = None, mark_max: bool = True,
                    title: str | None = "BoxAcc vs. CAM threshold", figsize=(5.0, 3.5),
                    dpi: float = 100.0, save: str | os.PathLike | None = None) -> Figure:
    """Plot BoxAcc(τ) curves, the maximum of each marked (MaxBoxAcc is that maximum at δ = 0.5).

    ``curves``: ``{name: (thresholds, box_acc)}`` with ``box_acc`` ``(T,)``, ``(D, T)`` or
    ``{δ: (T,)}``; or ``{name: result dict}`` / one result dict with a thresholds key
    (``thresholds``/``tau``) and an accuracy key (``box_acc``/``curves``/``accuracy``: one of the
    same forms, with ``iou_thresholds``/``deltas`` naming the rows of a 2-D array).  Accuracies
    are plotted as given (fractions or percent).  Draws on ``ax`` when given.
    """
    if _is_result(curves):
        curves = {"": curves}
    if not isinstance(curves, Mapping) or not curves:
        raise InputError("curves must be a non-empty dict {name: (thresholds, box_acc)} or a result dict")
    lines = [line for name, value in curves.items() for line in _curve_lines(str(name), value)]
    if ax is None:
        figure = new_figure(figsize, dpi=dpi, layout="constrained")
        ax = figure.add_subplot()
    else:
        figure = ax.figure
    percent = max(float(np.nanmax(acc)) if acc.size else 0.0 for _, _, acc in lines) > 1.0
    for label, tau, acc in lines:
        if mark_max and acc.size and np.any(np.isfinite(acc)):
            best = int(np.nanargmax(acc))
            label = f"{label} (max {acc[best]:.{1 if percent else 3}f} at τ={tau[best]:.2f})".strip()
            (line,) = ax.plot(tau, acc, label=label)
            ax.plot([tau[best]], [acc[best]], "o", color=line.get_color())
        else:
            ax.plot(tau, acc, label=label or None)
    ax.set_xlabel("CAM threshold τ")
    ax.set_ylabel("BoxAcc (%)" if percent else "BoxAcc")
    ax.set_ylim(0, 100 if percent else 1)
    ax.grid(True, alpha=0.3)
    if any(label for label, _, _ in lines) or mark_max:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return _finish(figure, save)
