"""A super-resolution problem with a known answer, made by a forward model independent of camkit's.

The truth is an ``N×M`` map holding a rectangle (height 1), an ellipse (0.7) and a Gaussian blob
(peak 0.8, σ = N/16).  View ``l`` is ``scipy.ndimage.affine_transform`` of the truth (bilinear,
zero outside) under the roto-translation ``A_l`` of :func:`~camkit.augmented.sample_transforms`,
averaged over ``N/h × M/w`` blocks, plus Gaussian noise: ``g_l = blocks(A_l h) + σ ε``.  None of
camkit's operators is used, so a solver that recovers the truth from these views is checked
against an outside model, not against itself.

    >>> problem = known_truth(L=16, size=(64, 64), map_size=(8, 8))
    >>> problem.cams.shape, problem.truth.shape
    (torch.Size([1, 16, 8, 8]), torch.Size([1, 64, 64]))
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from camkit.augmented.operators import _size2, sample_transforms
from camkit.errors import InputError

__all__ = ["KnownTruth", "known_truth", "truth_map", "psnr"]


@dataclass
class KnownTruth:
    """``truth (1, N, M)``, ``cams (1, L, h, w)`` (float64), ``angles (L,)``, ``shifts (L, 2)``."""

    truth: torch.Tensor
    cams: torch.Tensor
    angles: torch.Tensor
    shifts: torch.Tensor

    @property
    def size(self) -> tuple[int, int]:
        """``(N, M)`` of the truth."""
        return tuple(self.truth.shape[-2:])  # type: ignore[return-value]


def truth_map(size=(224, 224)) -> torch.Tensor:
    """``(N, M)`` float64: a rectangle (1.0), an ellipse (0.7) and a Gaussian blob (0.8), scaled with the size."""
    n, m = _size2(size)
    y, x = np.mgrid[0:n, 0:m].astype(np.float64)
    y, x = y / n, x / m                                       # relative coordinates in [0, 1)
    truth = np.zeros((n, m))
    truth[(y >= 0.18) & (y < 0.45) & (x >= 0.14) & (x < 0.48)] = 1.0
    ellipse = ((x - 0.68) / 0.17) ** 2 + ((y - 0.64) / 0.24) ** 2 <= 1
    truth = np.maximum(truth, 0.7 * ellipse)
    blob = 0.8 * np.exp(-((x - 0.3) ** 2 + (y - 0.75) ** 2) / (2 * (1 / 16) ** 2))
    return torch.from_numpy(np.maximum(truth, blob))


def _scipy_views(truth: np.ndarray, angles: np.ndarray, shifts: np.ndarray, map_size) -> np.ndarray:
    from scipy import ndimage

    n, m = truth.shape
    h, w = map_size
    centre = np.array([(n - 1) / 2, (m - 1) / 2])              # (row, col)
    views = np.empty((len(angles), h, w))
    for copy, (theta, (dx, dy)) in enumerate(zip(angles, shifts, strict=True)):
        # Output (row, col) = o samples the input at c + M (o - c - t) with t = (dy, dx): the
        # inverse rotation written in (row, col) order.
        cos, sin = np.cos(theta), np.sin(theta)
        matrix = np.array([[cos, sin], [-sin, cos]])
        offset = centre - matrix @ (centre + np.array([dy, dx]))
        warped = ndimage.affine_transform(truth, matrix, offset=offset, order=1, mode="constant", cval=0.0)
        views[copy] = warped.reshape(h, n // h, w, m // w).mean(axis=(1, 3))
    return views


def known_truth(L: int = 64, size=(224, 224), map_size=(14, 14), noise: float = 0.01, seed: int = 0,
                truth: torch.Tensor | None = None) -> KnownTruth:
    """The problem of ``L`` views (transforms ``sample_transforms(L, size, seed=seed)``; the first
    the identity) of ``truth`` (default :func:`truth_map`) at ``map_size``, noise ``σ = noise``.
    ``size`` must be a multiple of ``map_size``."""
    n, m = _size2(size)
    h, w = _size2(map_size, "map size")
    if n % h or m % w:
        raise InputError(f"size {(n, m)} must be a multiple of map_size {(h, w)}")
    angles, shifts = sample_transforms(L, (n, m), seed=seed)
    base = truth_map((n, m)) if truth is None else torch.as_tensor(truth, dtype=torch.float64).reshape(n, m)
    views = _scipy_views(base.numpy(), angles.numpy(), shifts.numpy(), (h, w))
    rng = np.random.default_rng(seed + 1)
    views = views + noise * rng.standard_normal(views.shape)
    return KnownTruth(base[None], torch.from_numpy(views)[None], angles, shifts)


def psnr(estimate: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """``(B,)`` PSNR in dB of maps ``(B, N, M)`` against ``truth`` (peak 1): ``10 log10(1 / MSE)``."""
    error = (estimate.double().cpu() - truth.double().cpu()).square().mean((-2, -1))
    return 10 * torch.log10(1.0 / error)
