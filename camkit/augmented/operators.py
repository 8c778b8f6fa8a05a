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
* ``P = [D A_1; …; D A_L]`` — the stacked forward model, a sparse CSR matrix of shape
  ``(L·h·w, N·M)`` built once per set of transforms and shared by every map of a batch.

All operators are checked by the dot-product test ``⟨K x, y⟩ = ⟨x, Kᵀ y⟩`` in the tests.
"""
from __future__ import annotations

import warnings

import torch

from camkit.errors import InputError

__all__ = [
    "sample_transforms", "warp_coordinates", "RotoTranslation", "area_weights",
    "area_downsample", "area_downsample_adjoint", "ForwardModel",
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


def _bilinear_taps(src_x: torch.Tensor, src_y: torch.Tensor, size, dtype=torch.float64
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The 4 bilinear taps of every sample: flat source index ``row·M + col`` (int32 when it fits)
    and weight, each ``(..., 4)``; taps outside the grid get weight 0 and a clamped (valid) index."""
    n, m = size
    x0, y0 = src_x.floor(), src_y.floor()
    fx, fy = (src_x - x0).to(dtype), (src_y - y0).to(dtype)
    weight_x = ((1 - fx) * ((x0 >= 0) & (x0 <= m - 1)), fx * ((x0 >= -1) & (x0 <= m - 2)))
    weight_y = ((1 - fy) * ((y0 >= 0) & (y0 <= n - 1)), fy * ((y0 >= -1) & (y0 <= n - 2)))
    index_dtype = torch.int32 if n * m < 2**31 else torch.long
    cols = [(x0 + d).clamp_(0, m - 1).to(index_dtype) for d in (0, 1)]
    rows = [(y0 + d).clamp_(0, n - 1).to(index_dtype) * m for d in (0, 1)]
    index = torch.stack([rows[dy] + cols[dx] for dy in (0, 1) for dx in (0, 1)], dim=-1)
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


class RotoTranslation:
    """The ``L`` roto-translations ``A_l`` of an ``N×M`` grid as one sparse matrix ``(L·N·M, N·M)``.

    ``op(x)`` maps ``(..., N, M) → (..., L, N, M)`` (every copy of every map or image channel);
    ``op.adjoint(y)`` maps ``(..., L, N, M) → (..., N, M)`` computing ``Σ_l A_lᵀ y_l`` exactly.
    ``inverse=True`` builds the inverse warps ``A_l⁻¹`` (used by the max/avg baselines).
    """

    def __init__(self, angles, shifts, size, *, inverse: bool = False, device=None, dtype=torch.float32):
        angles, shifts = _check_transforms(angles, shifts)
        self.size = _size2(size)
        self.num_transforms = angles.shape[0]
        n, m = self.size
        src_x, src_y = warp_coordinates(angles, shifts, self.size, inverse=inverse)
        index, weights = _bilinear_taps(src_x, src_y, self.size, dtype)
        count = self.num_transforms * n * m
        crow = torch.arange(0, 4 * count + 1, 4, dtype=torch.int32 if 4 * count < 2**31 else torch.long)
        self.matrix = _csr(crow, index.view(-1), weights.view(-1), (count, n * m)).to(device)
        self._transposed = None
        self._block_diagonal = None

    @property
    def transposed(self) -> torch.Tensor:
        """The transposed matrix (built once, on first use)."""
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


def _block_layers(n_in: int, n_out: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The low-resolution cells each input pixel falls in, as ≤ 2 layers ``(cell (n_in,), weight (n_in,))``
    of the 1-D area matrix (a pixel cut by a cell border belongs to two cells)."""
    weights = area_weights(n_in, n_out)
    nonzero = weights > 0
    first = nonzero.int().argmax(0)
    last = n_out - 1 - nonzero.flip(0).int().argmax(0)
    pixels = torch.arange(n_in)
    layers = [(first, weights[first, pixels])]
    if (last != first).any():
        layers.append((last, torch.where(last != first, weights[last, pixels], torch.zeros(()))))
    return layers


def _cell_extent(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last input pixel of each low-resolution cell, ``(n_out,)`` each."""
    nonzero = area_weights(n_in, n_out) > 0
    first = nonzero.int().argmax(1)
    last = n_in - 1 - nonzero.flip(1).int().argmax(1)
    return first, last


class ForwardModel:
    """``P = [D A_1; …; D A_L]``: high-resolution maps ``(N, M)`` to their ``L`` low-resolution
    views ``(L, h, w)``, as one CSR matrix of shape ``(L·h·w, N·M)`` (and an explicit CSR copy of
    ``Pᵀ``).  ``P`` has about ``L·N·M·(1 + h/N)(1 + w/M)`` non-zeros, ~4× fewer than ``A`` alone.

    ``model.forward(h)``: ``(N·M, B) → (L·h·w, B)``; ``model.adjoint(r)``: the reverse.  Columns
    are maps, so that one sparse product serves a whole batch.
    """

    def __init__(self, angles, shifts, size, map_size, *, device=None, dtype=torch.float32,
                 max_chunk_elements: int = 2**23):
        angles, shifts = _check_transforms(angles, shifts)
        self.size = _size2(size)
        self.map_size = _size2(map_size, "map size")
        self.num_transforms = L = angles.shape[0]
        n, m = self.size
        h, w = self.map_size
        if h > n or w > m:
            raise InputError(f"map size {self.map_size} must not exceed the image size {self.size}")
        self.angles = angles.detach().to("cpu", torch.float64)
        self.shifts = shifts.detach().to("cpu", torch.float64)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype
        # Each row (l, a, b) of P touches a small window of source pixels: the bilinear taps of
        # the rotated cell.  Every row is accumulated in a dense window whose origin is the
        # smallest tap (found at a corner of the cell: the warp is affine), and the non-zeros
        # are read out row by row: a CSR matrix with sorted columns and no global sort.
        origin, window = self._windows()
        per_transform = max(h * w * window[0] * window[1], n * m)
        chunk = max(1, min(L, max_chunk_elements // per_transform))
        crows, cols, vals = [torch.zeros(1, dtype=torch.long, device=self.device)], [], []
        for start in range(0, L, chunk):
            stop = min(L, start + chunk)
            crow, col, val = self._rows(start, stop, origin[:, start:stop], window)
            crows.append(crow[1:] + crows[-1][-1])
            cols.append(col)
            vals.append(val)
        shape = (L * h * w, n * m)
        self.matrix = _csr(torch.cat(crows), torch.cat(cols), torch.cat(vals), shape)
        self.transposed = _transpose_csr(self.matrix)

    def _windows(self) -> tuple[torch.Tensor, tuple[int, int]]:
        """Window origins ``(2, L, h, w)`` (row, column) and the common window size ``(wh, ww)``."""
        n, m = self.size
        first_y, last_y = _cell_extent(n, self.map_size[0])
        first_x, last_x = _cell_extent(m, self.map_size[1])
        corner_y = torch.stack([first_y, last_y])[:, None, :, None].expand(2, 2, -1, len(first_x))
        corner_x = torch.stack([first_x, last_x])[None, :, None, :].expand(2, 2, len(first_y), -1)
        src_x, src_y = warp_coordinates(self.angles, self.shifts, self.size, corner_y.double(), corner_x.double())
        low = torch.stack([src_y.amin((1, 2)), src_x.amin((1, 2))]).floor().long()   # (2, L, h, w)
        high = torch.stack([src_y.amax((1, 2)), src_x.amax((1, 2))]).floor().long() + 1
        limit = torch.tensor([n - 1, m - 1]).view(2, 1, 1, 1)
        origin = torch.minimum(low.clamp(min=0), limit)
        extent = (torch.minimum(high, limit) - origin + 1).clamp(min=1)
        return origin, (int(extent[0].max()), int(extent[1].max()))

    def _rows(self, start, stop, origin, window):
        n, m = self.size
        h, w = self.map_size
        wh, ww = window
        count = stop - start
        src_x, src_y = warp_coordinates(self.angles[start:stop], self.shifts[start:stop], self.size)
        x0, y0 = src_x.floor(), src_y.floor()
        fx, fy = (src_x - x0).to(self.dtype), (src_y - y0).to(self.dtype)
        # 1-D tap weights, zero for taps outside the grid; those taps still need an in-bounds slot,
        # hence coordinates clamped to [-1, size] and a margin around the accumulation buffer.
        tap_x = ((1 - fx) * ((x0 >= 0) & (x0 <= m - 1)), fx * ((x0 >= -1) & (x0 <= m - 2)))
        tap_y = ((1 - fy) * ((y0 >= 0) & (y0 <= n - 1)), fy * ((y0 >= -1) & (y0 <= n - 2)))
        x0 = x0.clamp(-1, m).int()
        y0 = y0.clamp(-1, n).int()
        margin = (n + 2) * ww + m + 2
        rows = count * h * w
        dense = torch.zeros(rows * wh * ww + 2 * margin, dtype=self.dtype)
        origin_y, origin_x = origin[0].reshape(-1).int(), origin[1].reshape(-1).int()
        for cell_y, weight_y in _block_layers(n, h):
            for cell_x, weight_x in _block_layers(m, w):
                cell = (cell_y[:, None] * w + cell_x[None, :]).int()                        # (N, M)
                cell_weight = (weight_y[:, None] * weight_x[None, :]).to(self.dtype)
                row = torch.arange(count, dtype=torch.int32)[:, None, None] * (h * w) + cell  # (l, N, M)
                base = (row * wh + (y0 - origin_y[row])) * ww + (x0 - origin_x[row]) + margin
                for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
                    value = tap_y[dy] * tap_x[dx] * cell_weight
                    dense.index_add_(0, (base + (dy * ww + dx)).view(-1), value.view(-1))
        dense = dense[margin:margin + rows * wh * ww].view(rows, wh * ww)
        nonzero = dense != 0
        crow = torch.zeros(rows + 1, dtype=torch.long)
        crow[1:] = nonzero.sum(1).cumsum(0)
        row_id, local = nonzero.nonzero(as_tuple=True)
        col = (origin_y[row_id] + local // ww) * m + origin_x[row_id] + local % ww
        return crow.to(self.device), col.to(self.device), dense[row_id, local].to(self.device)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """``(N·M, B) → (L·h·w, B)``: the ``L`` low-resolution views ``D A_l h`` of each column."""
        return _spmm(self.matrix, maps)

    def adjoint(self, views: torch.Tensor) -> torch.Tensor:
        """``(L·h·w, B) → (N·M, B)``: ``Σ_l A_lᵀ Dᵀ r_l`` for each column."""
        return _spmm(self.transposed, views)

    def norm_bound(self) -> float:
        """An upper bound of ``‖P‖₂²``: ``max row sum · max column sum`` of ``|P|`` (Schur)."""
        values = self.matrix.values().abs().to(torch.float64)
        crow = self.matrix.crow_indices().long()
        row_sums = torch.zeros(self.matrix.shape[0], dtype=torch.float64, device=values.device)
        row_sums.index_add_(0, torch.repeat_interleave(torch.arange(len(crow) - 1, device=crow.device),
                                                       crow.diff()), values)
        col_sums = torch.zeros(self.matrix.shape[1], dtype=torch.float64, device=values.device)
        col_sums.index_add_(0, self.matrix.col_indices().long(), values)
        return float(row_sums.max() * col_sums.max()) if values.numel() else 0.0
