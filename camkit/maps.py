"""Operations on stacks of 2-D maps: min-max normalisation and resizing.

Every function takes maps shaped ``(..., h, w)`` (any leading dimensions, e.g. ``(B, K, h, w)``)
and returns the same leading dimensions.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["normalize_maps", "resize_maps"]


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each map to [0, 1]: ``(m - min m) / (max m - min m)``.

    A constant map becomes all zeros (never NaN).  ``maps``: ``(..., h, w)``.
    """
    flat = maps.flatten(-2)
    low = flat.amin(dim=-1, keepdim=True)
    span = flat.amax(dim=-1, keepdim=True) - low
    safe_span = torch.where(span > 0, span, torch.ones_like(span))
    normalized = torch.where(span > 0, (flat - low) / safe_span, torch.zeros_like(flat))
    return normalized.view(maps.shape)


def resize_maps(maps: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Resize ``(..., h, w)`` maps to ``(..., H, W)`` with ``F.interpolate(align_corners=False)``.

    ``mode="bilinear"`` equals OpenCV's ``INTER_LINEAR``; ``"bicubic"`` is the wsolevaluation
    protocol's resize.  Integer maps are resized in float32.
    """
    size = (int(size[0]), int(size[1]))
    if tuple(maps.shape[-2:]) == size:
        return maps if maps.is_floating_point() else maps.float()
    lead = maps.shape[:-2]
    planes = maps.reshape(-1, 1, *maps.shape[-2:])
    if not planes.is_floating_point():
        planes = planes.float()
    align = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    resized = F.interpolate(planes, size=size, mode=mode, **align)
    return resized.reshape(*lead, *size)
