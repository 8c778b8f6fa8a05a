"""Operations on stacks of maps: min-max normalisation and resizing, for 1-D, 2-D and 3-D maps.

Every function takes maps shaped ``(..., *grid)`` — any leading dimensions, e.g. ``(B, K, h, w)``,
and a grid of ``spatial_dims`` axes (``(l,)`` signals, ``(h, w)`` images, ``(t, h, w)`` clips) —
and returns the same leading dimensions.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from camkit.errors import InputError

__all__ = ["normalize_maps", "resize_maps"]

# F.interpolate's linear mode for each number of spatial axes
_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


def normalize_maps(maps: torch.Tensor, spatial_dims: int = 2) -> torch.Tensor:
    """Min-max normalise each map to [0, 1]: ``(m - min m) / (max m - min m)``.

    A constant map becomes all zeros (never NaN).  ``maps``: ``(..., *grid)`` with ``spatial_dims``
    grid axes: the min and max are taken over the whole grid (a clip is one map, not T frames).
    """
    if not 1 <= spatial_dims <= maps.dim():
        raise InputError(f"spatial_dims must be between 1 and {maps.dim()} for maps of shape {tuple(maps.shape)}")
    flat = maps.flatten(-spatial_dims)
    low = flat.amin(dim=-1, keepdim=True)
    span = flat.amax(dim=-1, keepdim=True) - low
    safe_span = torch.where(span > 0, span, torch.ones_like(span))
    normalized = torch.where(span > 0, (flat - low) / safe_span, torch.zeros_like(flat))
    return normalized.view(maps.shape)


def resize_maps(
    maps: torch.Tensor,
    size: Sequence[int],
    mode: str = "bilinear",
    *,
    align_corners: bool = False,
    extent: Sequence[float] | None = None,
) -> torch.Tensor:
    """Resize ``(..., *grid)`` maps to ``(..., *size)``; the grid has ``len(size)`` axes.

    ``mode="bilinear"`` is the linear interpolation of the grid's rank (``"linear"`` for signals,
    ``"trilinear"`` for clips; ``F.interpolate(align_corners=False)``, equal to OpenCV's
    ``INTER_LINEAR`` on images); ``"bicubic"`` (images only) is the wsolevaluation protocol's
    resize; ``"nearest"`` any rank.  Integer maps are resized in float32.

    ``extent``: the fraction of each grid axis that the input covers, from the grid's start (a
    detector that pads its resized batch at the bottom and right): the maps are resized to
    ``size / extent`` and cropped to ``size``.
    """
    size = tuple(int(s) for s in size)
    rank = len(size)
    if rank not in _LINEAR or maps.dim() < rank:
        raise InputError(f"cannot resize maps of shape {tuple(maps.shape)} to {size}: 1 to 3 grid axes are supported")
    if extent is not None and any(e < 1 for e in extent):
        full = tuple(math.ceil(s / e - 1e-6) for s, e in zip(size, extent, strict=True))
        resized = resize_maps(maps, full, mode, align_corners=align_corners)
        for axis, s in enumerate(size, start=resized.dim() - rank):
            resized = resized.narrow(axis, 0, s)
        return resized
    if tuple(maps.shape[-rank:]) == size:
        return maps if maps.is_floating_point() else maps.float()
    if mode in ("bilinear", "linear", "trilinear"):
        mode = _LINEAR[rank]
    elif mode == "bicubic" and rank != 2:
        raise InputError(f"bicubic resizing needs 2-D maps, got {rank}-D")
    lead = maps.shape[:-rank]
    planes = maps.reshape(-1, 1, *maps.shape[-rank:])
    if not planes.is_floating_point():
        planes = planes.float()
    align = {"align_corners": align_corners} if mode != "nearest" else {}
    resized = F.interpolate(planes, size=size, mode=mode, **align)
    return resized.reshape(*lead, *size)
