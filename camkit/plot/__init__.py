"""Figures of class activation maps: overlays, boxes, grids of methods, BoxAcc-vs-τ curves.

Everything is drawn on ``matplotlib.figure.Figure`` objects with an Agg canvas, never through
``pyplot``: figures work headless, leave the user's backend and pyplot's figure list untouched,
and are freed like any other object.  Functions return the ``Figure``; ``save=path`` writes a PNG
(atomically, :mod:`camkit.io`).

Input kinds accepted wherever an image is expected:

- torch tensors ``(3, H, W)`` / ``(B, 3, H, W)`` (one channel is repeated), float in [0, 1] or uint8;
- NumPy arrays ``(H, W, 3)`` / ``(B, H, W, 3)`` (or ``(H, W)`` grey), float in [0, 1] or uint8;
- PIL images, or a list mixing any of the above (sizes may differ).

Standardised images ``(rgb - mean) / std`` are shown with ``mean=``, ``std=`` (e.g.
:data:`camkit.models.IMAGENET_MEAN`, :data:`camkit.models.IMAGENET_STD`).  Maps are
``(B, K, h, w)``, ``(B, h, w)`` or ``(h, w)`` tensors/arrays in [0, 1] (``min_max=True`` min-max
normalises raw ones), or an ``Explanation``-like object (anything with ``.maps`` ``(B, K, H, W)``;
``.classes``, ``.scores`` and ``.boxes(threshold)`` are used when present).  Maps are resized
(bilinear) to their image.

    >>> fig = camkit.plot.overlay(images, camkit.explain(model, images), boxes=True,
    ...                           mean=camkit.models.IMAGENET_MEAN, std=camkit.models.IMAGENET_STD,
    ...                           save="overlay.png")        # doctest: +SKIP

One job per module: :mod:`~camkit.plot.inputs` (reading images and maps),
:mod:`~camkit.plot.pixels` (blending and drawing into arrays), :mod:`~camkit.plot.boxes` (boxes
on axes and images), :mod:`~camkit.plot.figures` (overlay, grid, compare, saving),
:mod:`~camkit.plot.curves` (BoxAcc-vs-τ curves) and :mod:`~camkit.plot.sequences` (frame strips
for clips, line plots for signals).
"""
from camkit.plot.boxes import GT_COLOR, PRED_COLOR, draw_boxes
from camkit.plot.curves import threshold_curve
from camkit.plot.figures import compare, figure_to_array, grid, new_figure, overlay, save
from camkit.plot.inputs import to_rgb
from camkit.plot.pixels import blend, overlay_arrays
from camkit.plot.sequences import frame_strip, signal_plot

__all__ = [
    "PRED_COLOR", "GT_COLOR",
    "to_rgb", "blend", "overlay_arrays", "draw_boxes",
    "overlay", "grid", "compare", "threshold_curve",
    "new_figure", "figure_to_array", "save",
    "frame_strip", "signal_plot",
]
