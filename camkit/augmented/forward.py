"""The stacked forward model of Augmented Grad-CAM, ``P = [D A_1; …; D A_L] G``, as one sparse matrix.

``P`` maps a high-resolution map ``h (N, M)`` to the ``L`` low-resolution views ``D A_l G h (h, w)``
the network's CAMs are compared with; the operators ``A_l``, ``D``, ``G`` and their options are in
:mod:`camkit.augmented.operators`.  Built once per set of transforms (and cached by
:func:`camkit.augmented.forward_model`), it serves every map of a batch: maps are the columns of
one dense ``(N·M, B)`` tensor.
"""
from __future__ import annotations

import math

import torch

from camkit.augmented.operators import (
    DOWNSAMPLINGS,
    PADDINGS,
    GaussianBlur,
    _check_choice,
    _check_transforms,
    _csr,
    _pad_index,
    _size2,
    _spmm,
    _taps_1d,
    _transpose_csr,
    downsample_weights,
    warp_coordinates,
)
from camkit.errors import InputError

__all__ = ["ForwardModel"]


def _pixel_cells(weights: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The low-resolution cells each input pixel feeds, from a 1-D ``(n_out, n_in)`` matrix whose
    columns have at most 2 non-zeros: ≤ 2 layers ``(cell (n_in,), weight (n_in,))`` (weight 0 where
    a pixel feeds no cell of that layer)."""
    n_out, n_in = weights.shape
    nonzero = weights > 0
    if int(nonzero.sum(0).max()) > 2:
        raise InputError("every input pixel may feed at most 2 low-resolution cells per axis")
    first = nonzero.int().argmax(0)
    last = n_out - 1 - nonzero.flip(0).int().argmax(0)
    pixels = torch.arange(n_in)
    layers = [(first, weights[first, pixels])]
    if (last != first).any():
        layers.append((last, torch.where(last != first, weights[last, pixels], torch.zeros(()))))
    return layers


def _footprints(cells: list[tuple[torch.Tensor, torch.Tensor]], n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last input pixel feeding each low-resolution cell, ``(n_out,)`` each."""
    first = torch.full((n_out,), 2**62, dtype=torch.long)
    last = torch.full((n_out,), -1, dtype=torch.long)
    for cell, weight in cells:
        pixels = torch.arange(len(cell))[weight > 0]
        first.scatter_reduce_(0, cell[weight > 0], pixels, "amin")
        last.scatter_reduce_(0, cell[weight > 0], pixels, "amax")
    return first, last


def _padded_range(low: torch.Tensor, high: torch.Tensor, n: int, padding: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Where integer taps in ``[low, high]`` land after padding (:func:`_pad_index`), as a range."""
    if padding != "reflection":
        return low.clamp(0, n - 1), high.clamp(0, n - 1)
    # Reflection is monotone between folds (every n taps): the extremes are at the ends or a fold.
    a, b = _pad_index(low, n, padding), _pad_index(high, n, padding)
    fold = _pad_index((low.div(n, rounding_mode="floor") + 1) * n, n, padding)
    spans = high.div(n, rounding_mode="floor") - low.div(n, rounding_mode="floor")
    lowest = torch.where(spans == 0, torch.minimum(a, b), torch.minimum(torch.minimum(a, b), fold))
    highest = torch.where(spans == 0, torch.maximum(a, b), torch.maximum(torch.maximum(a, b), fold))
    full = spans >= 2
    return torch.where(full, 0, lowest), torch.where(full, n - 1, highest)


class ForwardModel:
    """``P = [D A_1; …; D A_L] G``: high-resolution maps ``(N, M)`` to their ``L`` low-resolution
    views ``(L, h, w)``, as one CSR matrix ``(L·h·w, N·M)`` (and an explicit CSR copy of ``Pᵀ``),
    ``G`` an optional Gaussian blur.  With area ``D``, ``P`` has about ``L·N·M·(1 + h/N)(1 + w/M)``
    non-zeros, ~4× fewer than ``A`` alone.

    Options (each a hypothesis about what the network saw; see ``docs/augmented.md``):

    * ``padding``: what copy ``l`` holds where it left the frame (``"zeros"``, ``"border"``,
      ``"reflection"``; the copies given to the network must be padded the same way).
    * ``downsample``: ``D`` as ``"area"`` averaging (what a stride-``N/h`` cell integrates) or the
      reference code's ``"bilinear"`` resize (:func:`downsample_weights`).
    * ``blur``: σ in pixels of a Gaussian point-spread function ``G`` applied before the warp (the
      network's own blur; ``G`` commutes with rotations and translations away from the frame).

    ``coverage`` ``(L, h, w)``: the share of each view cell's footprint that lies inside the frame
    (``D A_l 1`` with zero padding; 1 for cells that saw only the image).

    ``model.forward(h)``: ``(N·M, B) → (L·h·w, B)``; ``model.adjoint(r)``: the reverse.  Columns
    are maps, so that one sparse product serves a whole batch.
    """

    def __init__(self, angles, shifts, size, map_size, *, padding: str = "zeros", downsample: str = "area",
                 blur: float = 0.0, device=None, dtype=torch.float32, max_chunk_elements: int = 2**23):
        angles, shifts = _check_transforms(angles, shifts)
        self.size = _size2(size)
        self.map_size = _size2(map_size, "map size")
        self.padding = _check_choice(padding, PADDINGS, "padding")
        self.downsample = _check_choice(downsample, DOWNSAMPLINGS, "downsample")
        if not (math.isfinite(float(blur)) and float(blur) >= 0):
            raise InputError(f"blur must be a finite σ >= 0 in pixels, got {blur!r}")
        self.blur = float(blur)
        self.num_transforms = L = angles.shape[0]
        n, m = self.size
        h, w = self.map_size
        if h > n or w > m:
            raise InputError(f"map size {self.map_size} must not exceed the image size {self.size}")
        self.angles = angles.detach().to("cpu", torch.float64)
        self.shifts = shifts.detach().to("cpu", torch.float64)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype
        self._cells_y = _pixel_cells(downsample_weights(n, h, downsample))
        self._cells_x = _pixel_cells(downsample_weights(m, w, downsample))
        # Each row (l, a, b) of P touches a small window of source pixels: the bilinear taps of
        # its cell's footprint.  Rows are accumulated in dense windows (origin: the smallest tap)
        # and the non-zeros read out row by row: a CSR matrix with sorted columns, no global sort.
        origin, window = self._windows(0, L)
        per_transform = max(h * w * window[0] * window[1], n * m)
        self._chunk = chunk = max(1, min(L, max_chunk_elements // per_transform))
        crows, cols, vals = [torch.zeros(1, dtype=torch.long)], [], []
        for start in range(0, L, chunk):
            stop = min(L, start + chunk)
            crow, col, val = self._rows(start, stop, origin[:, start:stop], window)
            crows.append(crow[1:] + crows[-1][-1])
            cols.append(col)
            vals.append(val)
        shape = (L * h * w, n * m)
        self.matrix = _csr(torch.cat(crows), torch.cat(cols), torch.cat(vals), shape).to(self.device)
        self.transposed = _transpose_csr(self.matrix)
        self._coverage: torch.Tensor | None = None
        self._squared_norms: dict[bytes, float] = {}
        self._blur = GaussianBlur(self.blur, self.size, dtype, self.device) if self.blur > 0 else None

    def _entries(self, count: int):
        """For every pixel of ``count`` copies: its (≤ 4) rows of ``P`` and the ``D`` weight of each."""
        h, w = self.map_size
        for cell_y, weight_y in self._cells_y:
            for cell_x, weight_x in self._cells_x:
                cell = cell_y[:, None] * w + cell_x[None, :]                                  # (N, M)
                weight = (weight_y[:, None] * weight_x[None, :]).to(self.dtype)
                yield torch.arange(count)[:, None, None] * (h * w) + cell, weight             # (l, N, M)

    def _rows(self, start, stop, origin, window):
        n, m = self.size
        h, w = self.map_size
        count = stop - start
        rows = count * h * w
        src_x, src_y = warp_coordinates(self.angles[start:stop], self.shifts[start:stop], self.size)
        cols_x, weights_x, _ = _taps_1d(src_x, m, self.padding, self.dtype)
        cols_y, weights_y, _ = _taps_1d(src_y, n, self.padding, self.dtype)
        origin_y, origin_x = (o.reshape(-1) for o in origin)
        wh, ww = window
        dense = torch.zeros(rows * wh * ww, dtype=self.dtype)
        for row, weight in self._entries(count):
            for dy in (0, 1):
                offset_y = (cols_y[dy].long() - origin_y[row]).clamp_(0, wh - 1)
                for dx in (0, 1):
                    offset_x = (cols_x[dx].long() - origin_x[row]).clamp_(0, ww - 1)
                    index = (row * wh + offset_y) * ww + offset_x
                    dense.index_add_(0, index.view(-1), (weights_y[dy] * weights_x[dx] * weight).view(-1))
        dense = dense.view(rows, wh * ww)
        nonzero = dense != 0
        crow = torch.zeros(rows + 1, dtype=torch.long)
        crow[1:] = nonzero.sum(1).cumsum(0)
        row_id, local = nonzero.nonzero(as_tuple=True)
        col = (origin_y[row_id] + local // ww) * m + origin_x[row_id] + local % ww
        return crow, col, dense[row_id, local]

    def _windows(self, start: int, stop: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """Window origins ``(2, count, h, w)`` (row, column) of the rows of copies ``start:stop`` and
        the common window size: the range of the taps of each cell's footprint (the warp is affine,
        so its corners bound it), mapped through the padding."""
        n, m = self.size
        first_y, last_y = _footprints(self._cells_y, self.map_size[0])
        first_x, last_x = _footprints(self._cells_x, self.map_size[1])
        corner_y = torch.stack([first_y, last_y])[:, None, :, None].expand(2, 2, -1, len(first_x))
        corner_x = torch.stack([first_x, last_x])[None, :, None, :].expand(2, 2, len(first_y), -1)
        src_x, src_y = warp_coordinates(self.angles[start:stop], self.shifts[start:stop], self.size,
                                        corner_y.double(), corner_x.double())
        low_y, high_y = _padded_range(src_y.amin((1, 2)).floor().long(), src_y.amax((1, 2)).floor().long() + 1,
                                      n, self.padding)
        low_x, high_x = _padded_range(src_x.amin((1, 2)).floor().long(), src_x.amax((1, 2)).floor().long() + 1,
                                      m, self.padding)
        origin = torch.stack([low_y, low_x])
        extent = torch.stack([high_y - low_y, high_x - low_x]) + 1
        return origin, (int(extent[0].max()), int(extent[1].max()))

    @property
    def coverage(self) -> torch.Tensor:
        """``(L, h, w)``: the share of each view cell's footprint inside the frame, ``D A_l 1`` with
        zero padding (1 where the copy saw only the image)."""
        if self._coverage is None:
            n, m = self.size
            h, w = self.map_size
            parts = []
            for start in range(0, self.num_transforms, self._chunk):
                stop = min(self.num_transforms, start + self._chunk)
                src_x, src_y = warp_coordinates(self.angles[start:stop], self.shifts[start:stop], self.size)
                inside = (sum(_taps_1d(src_y, n, "zeros", torch.float64)[2])
                          * sum(_taps_1d(src_x, m, "zeros", torch.float64)[2]))
                cover = torch.zeros((stop - start) * h * w, dtype=torch.float64)
                for row, weight in self._entries(stop - start):
                    cover.index_add_(0, row.reshape(-1), (inside * weight.double()).reshape(-1))
                parts.append(cover)
            self._coverage = torch.cat(parts).view(self.num_transforms, h, w).to(self.device, self.dtype)
        return self._coverage

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """``(N·M, B) → (L·h·w, B)``: the ``L`` low-resolution views ``D A_l G h`` of each column."""
        if self._blur is not None:
            maps = self._blur(maps)
        return _spmm(self.matrix, maps)

    def adjoint(self, views: torch.Tensor) -> torch.Tensor:
        """``(L·h·w, B) → (N·M, B)``: ``Σ_l Gᵀ A_lᵀ Dᵀ r_l`` for each column."""
        maps = _spmm(self.transposed, views)
        if self._blur is not None:
            maps = self._blur(maps)
        return maps

    def squared_norm(self, weights: torch.Tensor | None = None, iters: int = 30) -> float:
        """``‖W^½ P‖₂²`` (``W`` = diag(``weights``), ``(L·h·w, C)``: one weighting per column, or None),
        the largest over the columns, by power iteration on ``Pᵀ W P`` from a constant start (a
        non-negative operator: its top eigenvector is non-negative, so the start is never orthogonal
        to it), at most ``max(weights)·``:meth:`norm_bound`.  Power iteration approaches the norm from
        below; callers needing an upper bound add a margin.  Cached per weighting: it costs ``iters`` products.

        The Schur bound alone is loose by ~40× under ``padding="border"``: the frame's edge pixels
        feed every padded pixel of the copies, so their column sums are large while the image's
        directions that reach them carry little of the norm."""
        key = b"" if weights is None else weights.detach().to("cpu", torch.float64).numpy().tobytes()
        if key not in self._squared_norms:
            columns = 1 if weights is None else weights.shape[1]
            v = torch.ones(self.matrix.shape[1], columns, dtype=self.dtype, device=self.device)
            estimate = torch.zeros(columns, dtype=torch.float64)
            for _ in range(iters):
                v = v / v.norm(dim=0).clamp_min(torch.finfo(self.dtype).tiny)
                views = self.forward(v)
                weighted = views if weights is None else weights * views
                # Rayleigh quotient vᵀPᵀWPv of the unit v: a lower bound of the top eigenvalue
                estimate = torch.maximum(estimate, (views * weighted).sum(0).double().cpu())
                v = self.adjoint(weighted)
            top = 1.0 if weights is None else float(weights.max()) if weights.numel() else 0.0
            self._squared_norms[key] = min(float(estimate.max()), top * self.norm_bound())
        return self._squared_norms[key]

    def norm_bound(self) -> float:
        """An upper bound of ``‖P‖₂²``: ``max row sum · max column sum`` of ``|P|`` (Schur); the blur
        has norm ≤ 1 (a non-negative kernel summing to 1)."""
        values = self.matrix.values().abs().to(torch.float64)
        crow = self.matrix.crow_indices().long()
        row_sums = torch.zeros(self.matrix.shape[0], dtype=torch.float64, device=values.device)
        row_sums.index_add_(0, torch.repeat_interleave(torch.arange(len(crow) - 1, device=crow.device),
                                                       crow.diff()), values)
        col_sums = torch.zeros(self.matrix.shape[1], dtype=torch.float64, device=values.device)
        col_sums.index_add_(0, self.matrix.col_indices().long(), values)
        return float(row_sums.max() * col_sums.max()) if values.numel() else 0.0
