"""Method-agnostic smoothing: test-time augmentation ("tta") and principal-component ("eigen").

``smoothed(method, smooth)`` wraps any method; ``Explainer(..., smooth="tta" | "eigen" |
("eigen", "tta"))`` calls it.  The wrapper keeps the method's ``name`` and ``needs_gradients``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from camkit.errors import InputError
from camkit.methods.base import LayerMaps, Method, Session
from camkit.methods.weighted import first_component, weighted_maps_of
from camkit.targets import select_output

__all__ = ["smoothed", "EigenSmoothed", "TTASmoothed"]

_KINDS = ("tta", "eigen")


def smoothed(method: Method, smooth: str | Sequence[str]) -> Method:
    """Wrap ``method``: ``"eigen"`` replaces its channel sum by the first principal component,
    ``"tta"`` averages its maps over flips and scales; both apply eigen inside, TTA outside."""
    kinds = (smooth,) if isinstance(smooth, str) else tuple(smooth)
    unknown = [k for k in kinds if k not in _KINDS]
    if unknown or not kinds:
        raise InputError(f"smooth must be 'tta', 'eigen' or a tuple of them, got {smooth!r}")
    if "eigen" in kinds:
        method = EigenSmoothed(method)
    if "tta" in kinds:
        method = TTASmoothed(method)
    return method


class EigenSmoothed(Method):
    r"""Replace :math:`M_c = \sum_k W^c_k` by the projection of the weighted activations
    :math:`W^c` (B, K, C, h, w) on their first principal component (pytorch-grad-cam's
    ``eigen_smooth``; sign fixed to correlate with :math:`M_c`)."""

    def __init__(self, method: Method):
        self.method = method
        self.name = method.name
        self.needs_gradients = method.needs_gradients
        self.spatial_ranks = method.spatial_ranks

    def __call__(self, session: Session) -> LayerMaps:
        """The first principal component of the wrapped method's weighted activations, per layer."""
        return {name: first_component(w, session.rank) for name, w in weighted_maps_of(self.method, session).items()}

    def __repr__(self) -> str:
        return f"EigenSmoothed({self.method!r})"


def _transform(images: torch.Tensor, flip: bool, scale: float, intensity: float) -> torch.Tensor:
    if scale != 1.0:
        size = [max(1, round(s * scale)) for s in images.shape[-2:]]
        images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    if flip:
        images = images.flip(-1)
    return images * intensity if intensity != 1.0 else images


def _undo(maps: torch.Tensor, flip: bool, size: torch.Size) -> torch.Tensor:
    """A map of a transformed image back on the original grid: un-flip, resize to ``size``."""
    if flip:
        maps = maps.flip(-1)
    if tuple(maps.shape[-2:]) != tuple(size):
        maps = F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)
    return maps


class TTASmoothed(Method):
    r"""Average of the method's rectified maps over test-time augmentations, each mapped back.

    .. math:: M_c = \frac{1}{|T|} \sum_{t \in T} t^{-1}\big(\mathrm{ReLU}(M_c(t(x)))\big)

    ``T`` = {no flip, horizontal flip} × ``scales`` (the image resized by each factor; its map is
    resized back to the layer grid of the original) × ``intensities`` (pixel values multiplied;
    pytorch-grad-cam's ``aug_smooth`` is ``scales=(1,), intensities=(0.9, 1, 1.1)``).  The
    explained classes are those of the original image; a dense output (B, N, H, W) is mapped back
    before a callable target scores it, so ``Segmentation`` masks stay aligned.
    """

    def __init__(self, method: Method, flips: bool = True, scales: Sequence[float] = (1.0, 0.875, 1.125),
                 intensities: Sequence[float] = (1.0,)):
        if not scales or any(s <= 0 for s in scales) or not intensities:
            raise InputError(f"TTA needs positive scales and at least one intensity, got {scales!r}, {intensities!r}")
        self.method = method
        self.name = method.name
        self.needs_gradients = method.needs_gradients
        self.spatial_ranks = tuple(r for r in method.spatial_ranks if r == 2)  # flips and rescaling of images
        self.flips = (False, True) if flips else (False,)
        self.scales = tuple(float(s) for s in scales)
        self.intensities = tuple(float(i) for i in intensities)

    def __call__(self, session: Session) -> LayerMaps:
        """The mean of the rectified maps of every augmentation, each mapped back to the original grid."""
        base = self.method(session)  # fixes the explained classes on the original images
        if not isinstance(session.first.output, torch.Tensor):
            raise InputError("TTA smoothing does not apply to a detector's boxes: flips and rescaling move them")
        sizes = {name: maps.shape[-2:] for name, maps in base.items()}
        total = {name: torch.relu(maps.float()) for name, maps in base.items()}
        count = 1
        for flip in self.flips:
            for scale in self.scales:
                for intensity in self.intensities:
                    if not flip and scale == 1.0 and intensity == 1.0:
                        continue
                    maps = self.method(self._sub_session(session, flip, scale, intensity))
                    for name in total:
                        total[name] += _undo(torch.relu(maps[name].float()), flip, sizes[name])
                    count += 1
        return {name: t / count for name, t in total.items()}

    def _sub_session(self, session: Session, flip: bool, scale: float, intensity: float) -> Session:
        images = _transform(session.images, flip, scale, intensity)
        first_output = session.first.output
        assert isinstance(first_output, torch.Tensor)
        out_size = first_output.shape[-2:]
        user_select = session.output_fn

        def select(output: object) -> object:
            selected = select_output(output, user_select)
            if isinstance(selected, torch.Tensor) and selected.dim() == 4:  # dense: back to the original grid
                selected = _undo(selected, flip, out_size)
            return selected

        return session.derive(images, output_fn=select)

    def __repr__(self) -> str:
        return (f"TTASmoothed({self.method!r}, flips={len(self.flips) == 2}, scales={self.scales}, "
                f"intensities={self.intensities})")
