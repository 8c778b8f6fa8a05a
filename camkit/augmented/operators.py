"""Linear operators of Augmented Grad-CAM and their exact adjoints.

* ``A_l`` — roto-translation of an ``N×M`` grid: rotation by ``θ_l`` radians counter-clockwise *as
  displayed* (x to the right, y down) about the image centre ``c = ((M-1)/2, (N-1)/2)``, then a
  translation by ``t_l = (dx, dy)`` pixels.  A pixel ``p`` of the output samples the input at
  ``c + R_θᵀ (p - c - t)`` with ``R_θ = [[cos θ, sin θ], [-sin θ, cos θ]]`` acting on ``(x, y)``,
  bilinearly, zero outside (``F.grid_sample(mode="bilinear", padding_mode="zeros",
  align_corners=False)`` samples the same points).
* ``D`` — area averaging from ``N×M`` to ``h×w``: low-resolution pixel ``(a, b)`` is the mean of the
  input over the rectangle ``[a N/h, (a+1) N/h) × [b M/w, (b+1) M/w)``, pixels cut by its border
  counted by their overlap.  When ``N, M`` are multiples of ``h, w`` this is a reshape and a mean,
  and it models a CNN whose stride-``N/h`` feature map cell summarises its block of pixels (the
  cell centres ``(a + ½) N/h - ½`` are the block centres).  ``D`` is separable: ``D h = W_y h W_xᵀ``.
* ``G`` — a Gaussian blur (:class:`GaussianBlur`, by FFT), its own adjoint.

The stacked forward model ``P = [D A_1; …; D A_L] G`` is :mod:`camkit.augmented.forward`.

All operators are checked by the dot-product test ``⟨K x, y⟩ = ⟨x, Kᵀ y⟩`` in the tests.
"""
from __future__ import annotations

import math
import warnings
from collections import OrderedDict

import numpy as np
import torch
from numba import njit

from camkit.errors import InputError

__all__ = [
    "sample_transforms", "warp_coordinates", "RotoTranslation", "area_weights", "downsample_weights",
    "area_downsample", "area_downsample_adjoint", "gaussian_kernel", "GaussianBlur", "PADDINGS",
    "DOWNSAMPLINGS", "ImageCopies", "image_warp",
]

_SNAP = 1e-9  # sampling coordinates this close to an integer are snapped to it (exact identity)


def _size2(size, name: str = "size") -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    try:
        n, m = (int(s) for s in size)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be an int or a pair (N, M) of ints, got {size!r}") from None
    if n < 1 or m < 1:
        raise InputError(f"{name} must be positive, got {(n, m)}")
    return n, m


def _check_transforms(angles: torch.Tensor, shifts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    angles = torch.as_tensor(angles)
    shifts = torch.as_tensor(shifts)
    if angles.ndim != 1:
        raise InputError(f"angles must have shape (L,), got {tuple(angles.shape)}")
    if shifts.shape != (angles.shape[0], 2):
        raise InputError(f"shifts must have shape (L, 2) = ({angles.shape[0]}, 2), got {tuple(shifts.shape)}")
    if not (torch.isfinite(angles).all() and torch.isfinite(shifts).all()):
        raise InputError("angles and shifts must be finite")
    return angles, shifts


def sample_transforms(
    L: int,
    size,
    max_angle: float = 0.5,
    max_shift: float | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``L`` roto-translations, the first one the identity.

    ``angles ~ U(-max_angle, max_angle)`` radians, ``shifts ~ U(-max_shift, max_shift)`` pixels
    for ``(dx, dy)``; ``max_shift`` defaults to ``30/224`` of the image size per axis (the paper's
    ±30 px at 224²).  Pass a ``generator`` or a ``seed`` (neither: seed 0) so that draws repeat.
    Returns ``angles (L,)`` and ``shifts (L, 2)`` in float64 on the CPU.
    """
    if int(L) != L or L < 1:
        raise InputError(f"L must be a positive int, got {L!r}")
    L = int(L)
    n, m = _size2(size)
    if max_angle < 0 or (max_shift is not None and max_shift < 0):
        raise InputError("max_angle and max_shift must be non-negative")
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
    elif seed is not None:
        raise InputError("pass either generator or seed, not both")
    scale = (torch.tensor([m, n], dtype=torch.float64) * (30.0 / 224.0) if max_shift is None
             else torch.full((2,), float(max_shift), dtype=torch.float64))
    angles = (torch.rand(L, generator=generator, dtype=torch.float64) * 2 - 1) * max_angle
    shifts = (torch.rand(L, 2, generator=generator, dtype=torch.float64) * 2 - 1) * scale
    angles[0] = 0.0
    shifts[0] = 0.0
    return angles, shifts


def warp_coordinates(angles, shifts, size, rows=None, cols=None, inverse: bool = False
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Source coordinates sampled by each output pixel: ``(src_x, src_y)``, each ``(L, N, M)`` float64.

    ``inverse=False``: the output is ``A_l x`` and samples ``c + R_θᵀ (p - c - t)``.
    ``inverse=True``: the output is ``A_l⁻¹ x`` (undo the roto-translation) and samples
    ``c + R_θ (p - c) + t``.  ``rows``/``cols`` (float64, same shape ``S``) pick the output pixels
    (default: the whole grid, ``S = (N, M)``); the result is then ``(L, *S)``.
    """
    angles, shifts = _check_transforms(angles, shifts)
    n, m = _size2(size)
    angles = angles.detach().to("cpu", torch.float64)
    shifts = shifts.detach().to("cpu", torch.float64)
    cx, cy = (m - 1) / 2.0, (n - 1) / 2.0
    if rows is None:
        y, x = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(m, dtype=torch.float64),
                              indexing="ij")
    else:
        y, x = rows.double(), cols.double()
    expand = (slice(None),) + (None,) * y.ndim
    cos = angles.cos()[expand]
    sin = angles.sin()[expand]
    dx = shifts[:, 0][expand]
    dy = shifts[:, 1][expand]
    if inverse:
        u, v = x - cx, y - cy
        src_x = cx + cos * u + sin * v + dx
        src_y = cy - sin * u + cos * v + dy
    else:
        u, v = x - cx - dx, y - cy - dy
        src_x = cx + cos * u - sin * v
        src_y = cy + sin * u + cos * v
    return _snap(src_x), _snap(src_y)


def _snap(coords: torch.Tensor) -> torch.Tensor:
    nearest = coords.round()
    return torch.where((coords - nearest).abs() < _SNAP, nearest, coords)


PADDINGS = ("zeros", "border", "reflection")
DOWNSAMPLINGS = ("area", "bilinear")


def _check_choice(value: str, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise InputError(f"unknown {name} {value!r}; choose one of {choices}")
    return value


def _pad_index(index: torch.Tensor, n: int, padding: str) -> torch.Tensor:
    """Integer tap coordinates outside ``[0, n-1]`` mapped inside: ``"border"`` clamps, ``"reflection"``
    mirrors about ``-½`` and ``n-½`` (``F.grid_sample(align_corners=False)``'s reflection), ``"zeros"``
    clamps too (those taps then carry weight 0)."""
    if padding == "reflection":
        index = index.remainder(2 * n)
        index = torch.where(index >= n, 2 * n - 1 - index, index)
    return index.clamp(0, n - 1)


def _taps_1d(src: torch.Tensor, n: int, padding: str, dtype) -> tuple[list[torch.Tensor], list[torch.Tensor],
                                                                     list[torch.Tensor]]:
    """The 2 linear-interpolation taps of each sample along one axis: ``(index, weight, inside)`` per
    tap, ``index`` in ``[0, n-1]`` after padding, ``inside`` the weight the tap has with zero padding."""
    low = src.floor()
    frac = (src - low).to(dtype)
    weights = [1 - frac, frac]
    indices, inside = [], []
    for d in (0, 1):
        tap = low + d
        in_frame = ((tap >= 0) & (tap <= n - 1)).to(dtype)
        inside.append(weights[d] * in_frame)
        indices.append(_pad_index(tap, n, padding))
    if padding == "zeros":
        weights = inside
    return indices, weights, inside


def _bilinear_taps(src_x: torch.Tensor, src_y: torch.Tensor, size, dtype=torch.float64, padding: str = "zeros"
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The 4 bilinear taps of every sample: flat source index ``row·M + col`` (int32 when it fits)
    and weight, each ``(..., 4)``; with ``padding="zeros"`` taps outside the grid get weight 0."""
    n, m = size
    cols, weight_x, _ = _taps_1d(src_x, m, padding, dtype)
    rows, weight_y, _ = _taps_1d(src_y, n, padding, dtype)
    index_dtype = torch.int32 if n * m < 2**31 else torch.long
    index = torch.stack([(rows[dy] * m + cols[dx]).to(index_dtype) for dy in (0, 1) for dx in (0, 1)], dim=-1)
    weights = torch.stack([weight_y[dy] * weight_x[dx] for dy in (0, 1) for dx in (0, 1)], dim=-1)
    return index, weights


def _csr(crow, col, val, shape) -> torch.Tensor:
    index_dtype = torch.int32 if max(shape) < 2**31 and val.numel() < 2**31 else torch.int64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow.to(index_dtype), col.to(index_dtype), val, size=shape)


def _transpose_csr(matrix: torch.Tensor) -> torch.Tensor:
    """An explicit CSR copy of ``matrixᵀ`` (sparse-matrix products with a CSC view are slow)."""
    rows, cols = matrix.shape
    crow = matrix.crow_indices().long()
    col = matrix.col_indices().long()
    row = torch.repeat_interleave(torch.arange(rows, device=col.device), crow.diff())
    order = torch.argsort(col, stable=True)
    counts = torch.bincount(col, minlength=cols)
    t_crow = torch.zeros(cols + 1, dtype=torch.long, device=col.device)
    t_crow[1:] = counts.cumsum(0)
    return _csr(t_crow, row[order], matrix.values()[order], (cols, rows))


def _spmm(matrix: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    return torch.sparse.mm(matrix, dense)


class Recent:
    """The last ``size`` objects built, by key: operators of one transform set are built once."""

    def __init__(self, size: int = 2):
        self.size = size
        self._items: OrderedDict = OrderedDict()

    def get(self, key, build):
        """The object stored under ``key``, or ``build()`` stored there (the oldest one dropped)."""
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        item = self._items[key] = build()
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return item

    def clear(self) -> None:
        self._items.clear()


def transform_key(angles, shifts) -> tuple[bytes, bytes]:
    """A hashable key of the transforms ``angles (L,)``, ``shifts (L, 2)`` (their float64 bytes)."""
    angles, shifts = _check_transforms(angles, shifts)
    return (angles.detach().to("cpu", torch.float64).numpy().tobytes(),
            shifts.detach().to("cpu", torch.float64).numpy().tobytes())


class RotoTranslation:
    """The ``L`` roto-translations ``A_l`` of an ``N×M`` grid as one sparse matrix ``(L·N·M, N·M)``.

    ``op(x)`` maps ``(..., N, M) → (..., L, N, M)`` (every copy of every map or image channel);
    ``op.adjoint(y)`` maps ``(..., L, N, M) → (..., N, M)`` computing ``Σ_l A_lᵀ y_l`` exactly.
    ``inverse=True`` builds the inverse warps ``A_l⁻¹`` (used by the max/avg baselines).
    ``padding``: what a copy shows where it left the frame: ``"zeros"`` (the paper), ``"border"``
    (the nearest edge pixel) or ``"reflection"`` (the mirror image), as ``F.grid_sample`` pads.
    """

    def __init__(self, angles, shifts, size, *, inverse: bool = False, padding: str = "zeros", device=None,
                 dtype=torch.float32):
        angles, shifts = _check_transforms(angles, shifts)
        self.size = _size2(size)
        self.padding = _check_choice(padding, PADDINGS, "padding")
        self.num_transforms = angles.shape[0]
        n, m = self.size
        src_x, src_y = warp_coordinates(angles, shifts, self.size, inverse=inverse)
        index, weights = _bilinear_taps(src_x, src_y, self.size, dtype, padding)
        count = self.num_transforms * n * m
        crow = torch.arange(0, 4 * count + 1, 4, dtype=torch.int32 if 4 * count < 2**31 else torch.long)
        self.matrix = _csr(crow, index.view(-1), weights.view(-1), (count, n * m)).to(device)
        self._transposed: torch.Tensor | None = None
        self._block_diagonal: torch.Tensor | None = None

    @property
    def transposed(self) -> torch.Tensor:
        """``Aᵀ`` as an explicit CSR matrix (built on first use)."""
        if self._transposed is None:
            self._transposed = _transpose_csr(self.matrix)
        return self._transposed

    def each(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., L, N, M) → (..., L, N, M)``: ``y_l = A_l x_l`` (copy ``l`` gets transform ``l``)."""
        n, m = self.size
        if tuple(x.shape[-3:]) != (self.num_transforms, n, m):
            raise InputError(f"expected (..., {self.num_transforms}, {n}, {m}) input, got {tuple(x.shape)}")
        if self._block_diagonal is None:
            crow = self.matrix.crow_indices()
            col = self.matrix.col_indices().view(self.num_transforms, -1).long()
            col = (col + torch.arange(self.num_transforms, device=col.device)[:, None] * (n * m)).view(-1)
            count = self.num_transforms * n * m
            self._block_diagonal = _csr(crow, col, self.matrix.values(), (count, count))
        columns = x.reshape(-1, self.num_transforms * n * m).t().to(self.matrix.dtype).contiguous()
        return _spmm(self._block_diagonal, columns).t().reshape(x.shape).to(x.dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., N, M) → (..., L, N, M)``: ``y_l = A_l x``."""
        n, m = self.size
        if tuple(x.shape[-2:]) != self.size:
            raise InputError(f"expected (..., {n}, {m}) input, got {tuple(x.shape)}")
        columns = x.reshape(-1, n * m).t().to(self.matrix.dtype).contiguous()
        result = _spmm(self.matrix, columns).t()
        return result.reshape(*x.shape[:-2], self.num_transforms, n, m).to(x.dtype)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``(..., L, N, M) → (..., N, M)``: ``Σ_l A_lᵀ y_l``."""
        n, m = self.size
        if tuple(y.shape[-3:]) != (self.num_transforms, n, m):
            raise InputError(f"expected (..., {self.num_transforms}, {n}, {m}) input, got {tuple(y.shape)}")
        columns = y.reshape(-1, self.num_transforms * n * m).t().to(self.matrix.dtype).contiguous()
        result = _spmm(self.transposed, columns).t()
        return result.reshape(*y.shape[:-3], n, m).to(y.dtype)


_IMAGE_WARPS = Recent(2)
#: The largest warp of all L copies kept between calls (its taps: 4 indices and 4 weights per
#: pixel of every copy; 160 MB for L = 100 at 224²); larger ones are built a micro-batch at a time.
WARP_CACHE_BYTES = 2**28


def image_warp(angles, shifts, size, *, padding: str = "zeros", device=None, dtype=torch.float32) -> RotoTranslation:
    """:class:`RotoTranslation` of the images' copies, cached (the last two transform sets)."""
    key = (transform_key(angles, shifts), _size2(size), padding, str(torch.device(device or "cpu")), dtype)
    return _IMAGE_WARPS.get(key, lambda: RotoTranslation(angles, shifts, size, padding=padding, device=device,
                                                         dtype=dtype))


#: Output pixels gathered into a small buffer before they are written out channel by channel.
_GATHER_TILE = 256


@njit(cache=True, nogil=True)
def _gather_taps(pixels, index, weights, out):  # pragma: no cover - compiled
    """``out[b, l, c, p] = Σ_k weights[r, k] · pixels[index[r, k], b·C + c]`` with ``r = l·N·M + p``:
    ``pixels (N·M, B·C)``, ``index``/``weights`` ``(count·N·M, 4)``, ``out (B, count, C, N·M)``.  A
    tile of output pixels is computed with the B·C channels innermost (contiguous reads), then
    written to each channel's plane as a contiguous run."""
    batch, count, channels, area = out.shape
    tile = np.empty((_GATHER_TILE, pixels.shape[1]), pixels.dtype)
    for copy in range(count):
        for first in range(0, area, _GATHER_TILE):
            size = min(_GATHER_TILE, area - first)
            for t in range(size):
                r = copy * area + first + t
                i0, i1, i2, i3 = index[r, 0], index[r, 1], index[r, 2], index[r, 3]
                w0, w1, w2, w3 = weights[r, 0], weights[r, 1], weights[r, 2], weights[r, 3]
                for q in range(pixels.shape[1]):
                    tile[t, q] = w0 * pixels[i0, q] + w1 * pixels[i1, q] + w2 * pixels[i2, q] + w3 * pixels[i3, q]
            for b in range(batch):
                for c in range(channels):
                    q = b * channels + c
                    for t in range(size):
                        out[b, copy, c, first + t] = tile[t, q]


class ImageCopies:
    """The copies ``A_l x`` of a batch of images, a few transforms at a time.

    ``ImageCopies(angles (L,), shifts (L, 2), images (B, C, N, M), padding=...)(start, stop)`` →
    ``(B, stop − start, C, N, M)``: every channel of every image under ``A_start … A_{stop−1}``
    (no graph back to the images: the copies are inputs).  The warp of all L transforms is built
    once and cached (:func:`image_warp`) when its taps fit in :data:`WARP_CACHE_BYTES`, else each
    call builds its transforms' warp.  The images are laid out once as ``(N·M, B·C)`` pixels; on a
    CPU each output pixel then reads its 4 bilinear taps with the B·C channels innermost, a tile at
    a time (5–7× faster than the sparse product, which writes one channel at a time and leaves the
    copies to be transposed); elsewhere (or with ``gather=False``) the sparse product of those
    transforms' rows does the same sums.
    """

    def __init__(self, angles, shifts, images: torch.Tensor, *, padding: str = "zeros", gather: bool | None = None):
        self.angles, self.shifts = _check_transforms(angles, shifts)
        if images.ndim != 4:
            raise InputError(f"expected (B, C, N, M) images, got {tuple(images.shape)}")
        self.shape, self.padding = images.shape, _check_choice(padding, PADDINGS, "padding")
        dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
        n, m = images.shape[-2:]
        taps = self.angles.shape[0] * n * m * 4 * (4 + dtype.itemsize)
        self.warp = (image_warp(self.angles, self.shifts, (n, m), padding=padding, device=images.device, dtype=dtype)
                     if taps <= WARP_CACHE_BYTES else None)
        self.pixels = images.detach().to(dtype).permute(2, 3, 0, 1).reshape(n * m, -1).contiguous()
        self.gather = self.pixels.device.type == "cpu" if gather is None else bool(gather)

    def _taps(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Source indices and weights ``(count·N·M·4,)`` of transforms ``start … stop − 1``."""
        n, m = self.shape[-2:]
        if self.warp is not None:
            rows = slice(4 * start * n * m, 4 * stop * n * m)
            return self.warp.matrix.col_indices()[rows], self.warp.matrix.values()[rows]
        part = RotoTranslation(self.angles[start:stop], self.shifts[start:stop], (n, m), padding=self.padding,
                               device=self.pixels.device, dtype=self.pixels.dtype)
        return part.matrix.col_indices(), part.matrix.values()

    def __call__(self, start: int, stop: int) -> torch.Tensor:
        """``(B, stop − start, C, N, M)``: the copies under transforms ``start … stop − 1``."""
        batch, channels, n, m = self.shape
        count = stop - start
        index, weights = self._taps(start, stop)
        if self.gather:
            out = np.empty((batch, count, channels, n * m), dtype=self.pixels.numpy().dtype)
            _gather_taps(self.pixels.numpy(), index.view(-1, 4).numpy(), weights.view(-1, 4).numpy(), out)
            return torch.from_numpy(out).view(batch, count, channels, n, m)
        crow = torch.arange(0, index.numel() + 1, 4, device=index.device)
        copies = _spmm(_csr(crow, index, weights, (count * n * m, n * m)), self.pixels)
        return copies.view(count, n, m, batch, channels).permute(3, 0, 4, 1, 2).contiguous()


def area_weights(n_in: int, n_out: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """1-D area-averaging matrix ``(n_out, n_in)``: row ``a`` averages ``[a·n_in/n_out, (a+1)·n_in/n_out)``,
    each input pixel ``[i, i+1)`` weighted by its overlap; rows sum to 1."""
    scale = n_in / n_out
    start = torch.arange(n_out, dtype=torch.float64)[:, None] * scale
    left = torch.arange(n_in, dtype=torch.float64)[None, :]
    overlap = (torch.minimum(start + scale, left + 1) - torch.maximum(start, left)).clamp(min=0)
    return (overlap / scale).to(device=device, dtype=dtype)


def area_downsample(x: torch.Tensor, size) -> torch.Tensor:
    """``D``: ``(..., N, M) → (..., h, w)`` by area averaging (reshape + mean when divisible)."""
    h, w = _size2(size)
    n, m = x.shape[-2:]
    if n % h == 0 and m % w == 0:
        return x.reshape(*x.shape[:-2], h, n // h, w, m // w).mean(dim=(-3, -1))
    wy = area_weights(n, h, x.dtype, x.device)
    wx = area_weights(m, w, x.dtype, x.device)
    return wy @ x @ wx.t()


def area_downsample_adjoint(y: torch.Tensor, size) -> torch.Tensor:
    """``Dᵀ``: ``(..., h, w) → (..., N, M)``; each block receives ``value / (block area)``."""
    n, m = _size2(size)
    h, w = y.shape[-2:]
    if n % h == 0 and m % w == 0:
        fy, fx = n // h, m // w
        up = y[..., :, None, :, None].expand(*y.shape[:-2], h, fy, w, fx) / (fy * fx)
        return up.reshape(*y.shape[:-2], n, m)
    wy = area_weights(n, h, y.dtype, y.device)
    wx = area_weights(m, w, y.dtype, y.device)
    return wy.t() @ y @ wx


def downsample_weights(n_in: int, n_out: int, kind: str = "area", dtype=torch.float64, device=None) -> torch.Tensor:
    """1-D downsampling matrix ``(n_out, n_in)``, rows summing to 1: ``"area"`` (:func:`area_weights`)
    or ``"bilinear"``, the points ``F.interpolate(mode="bilinear", align_corners=False)`` samples
    without antialiasing (cell ``a`` reads ``(a + ½)·n_in/n_out − ½``; at factor 16 only the 2 pixels
    nearest each cell centre count): the public reference code's ``tf.image.resize``."""
    _check_choice(kind, DOWNSAMPLINGS, "downsample")
    if kind == "area":
        return area_weights(n_in, n_out, dtype, device)
    eye = torch.eye(n_in, dtype=torch.float64)[:, None]                          # (n_in, 1, n_in)
    sampled = torch.nn.functional.interpolate(eye, size=n_out, mode="linear", align_corners=False)
    return sampled[:, 0].t().contiguous().to(device=device, dtype=dtype)       # (n_out, n_in)


class GaussianBlur:
    """``G``: each column of ``(N·M, B)`` maps convolved with the 2-D Gaussian of σ pixels
    (:func:`gaussian_kernel` along rows and columns), zero outside the frame.

    Computed by FFT on a grid of at least ``(N + r) × (M + r)`` (``r`` the kernel's radius), so no
    wrap-around reaches the frame: 1.1–7× faster than the two 1-D convolutions on the CPU (224², σ
    = 8 px: 2.5×).  The kernel is symmetric about the origin, so its spectrum is real and only
    its real part is kept: ``G`` is a symmetric matrix, its own adjoint.
    """

    def __init__(self, sigma: float, size: tuple[int, int], dtype=torch.float32, device=None):
        from scipy.fft import next_fast_len

        kernel = gaussian_kernel(sigma)
        radius = (kernel.numel() - 1) // 2
        self.size = _size2(size)
        self.grid = tuple(next_fast_len(side + radius, real=True) for side in self.size)
        taps = torch.arange(-radius, radius + 1)
        spectra = []
        for side, transform in zip(self.grid, (torch.fft.fft, torch.fft.rfft), strict=True):
            centred = torch.zeros(side, dtype=torch.float64)
            centred.index_add_(0, taps % side, kernel)
            spectra.append(transform(centred).real)
        self.spectrum = (spectra[0][:, None] * spectra[1][None, :]).to(device=device, dtype=dtype)

    def __call__(self, columns: torch.Tensor) -> torch.Tensor:
        """``(N·M, B) → (N·M, B)``."""
        n, m = self.size
        maps = columns.t().reshape(-1, n, m)
        blurred = torch.fft.irfft2(torch.fft.rfft2(maps, s=self.grid) * self.spectrum, s=self.grid)
        return blurred[:, :n, :m].reshape(-1, n * m).t().contiguous()


def gaussian_kernel(sigma: float, dtype=torch.float64) -> torch.Tensor:
    """``(2⌈3σ⌉ + 1,)`` samples of a Gaussian of standard deviation ``sigma`` pixels, summing to 1."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).to(dtype)
