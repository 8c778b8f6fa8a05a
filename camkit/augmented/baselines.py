"""Baselines beside the super-resolved map (Morbidelli et al., ICASSP 2020): *single*, *max* and *avg*.

Every CAM ``g_l (h, w)`` is upsampled to ``(N, M)`` (bilinear, ``align_corners=False``), the
roto-translation of its copy is undone (``A_l⁻¹``, bilinear, zero outside) and the ``L`` maps are
combined pixel-wise: ``max_l`` or ``mean_l``.  *single* is the upsampled CAM of the first copy
(the identity when transforms come from :func:`sample_transforms`).
"""
from __future__ import annotations

import torch

from camkit.augmented.operators import RotoTranslation, _check_transforms, _size2
from camkit.errors import InputError
from camkit.maps import resize_maps

__all__ = ["BASELINES", "baseline", "aligned_cams"]

BASELINES = ("single", "max", "avg")


def aligned_cams(cams: torch.Tensor, angles, shifts, size) -> torch.Tensor:
    """``(B, L, h, w) → (B, L, N, M)``: ``A_l⁻¹ upsample(g_l)``, every CAM back in the input's frame."""
    angles, shifts = _check_transforms(angles, shifts)
    if cams.ndim != 4 or cams.shape[1] != angles.shape[0]:
        raise InputError(f"cams must be (B, L={angles.shape[0]}, h, w), got {tuple(cams.shape)}")
    size = _size2(size)
    dtype = cams.dtype if cams.is_floating_point() else torch.float32
    undo = RotoTranslation(angles, shifts, size, inverse=True, device=cams.device, dtype=dtype)
    return undo.each(resize_maps(cams.to(dtype), size))


def baseline(cams: torch.Tensor, angles, shifts, size, kind: str = "avg") -> torch.Tensor:
    """``(B, L, h, w) → (B, N, M)``: ``"single"`` (upsampled ``g_1``), ``"max"`` or ``"avg"``
    (``max_l`` / ``mean_l`` of ``A_l⁻¹ upsample(g_l)``)."""
    if kind not in BASELINES:
        raise InputError(f"unknown baseline {kind!r}; choose one of {BASELINES}")
    if cams.ndim != 4:
        raise InputError(f"cams must be (B, L, h, w), got {tuple(cams.shape)}")
    if kind == "single":
        return resize_maps(cams[:, 0], _size2(size))
    aligned = aligned_cams(cams, angles, shifts, size)
    return aligned.amax(dim=1) if kind == "max" else aligned.mean(dim=1)
