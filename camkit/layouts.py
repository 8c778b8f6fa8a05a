"""How a tapped layer's output lies over the input, and how to turn it into channels-first maps.

camkit's methods read every tapped output as maps ``(B, C, *grid)`` whose grid has the rank of the
input's spatial size ``S`` (``(L,)`` for signals ``(B, C, L)``, ``(H, W)`` for images, ``(T, H, W)``
for clips).  :func:`find_layout` recognises, from the input's size alone, three layouts:

* ``"channels-first"`` ``(B, C, *grid)``: convolutional networks (Conv1d, Conv2d, Conv3d);
* ``"channels-last"`` ``(B, *grid, C)``: Swin and other models that keep channels last;
* ``"tokens"`` ``(B, prefix + prod(grid), C)``: Vision Transformers, whose patch tokens follow
  ``prefix`` class, distillation or register tokens (dropped from the map).

A grid *fits* the input when one stride ``s`` (any positive real: it may also be an upsampling)
maps the input onto it up to rounding, ``g_i ∈ {⌊S_i/s⌋, ⌈S_i/s⌉}`` along height and width (a
clip's time axis has its own stride: it is only checked not to grow).  A 4-D output read both
ways fits either reading only when ``C`` equals a grid side; PyTorch's channels-first convention
then wins.  Token grids take the fewest prefix tokens that leave a grid fitting with a whole
stride of at least one pixel (a patch size).  ``reshape=`` (a callable
``(B, ...) → (B, C, *grid)``, as the peers' ``reshape_transform``) replaces the detection.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

__all__ = ["Layout", "find_layout", "custom_layout", "fits", "MAX_PREFIX_TOKENS"]

#: The most prefix tokens a token layout may carry: class + distillation + 16 registers, with room.
MAX_PREFIX_TOKENS = 32

Reshape = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Layout:
    """Where channels and positions sit in a tapped output (see the module docstring).

    ``kind``: ``"channels-first"``, ``"channels-last"``, ``"tokens"`` or ``"custom"`` (a user's
    ``reshape``).  ``grid``: the map's spatial size.  ``prefix``: tokens before the patch grid.
    """

    kind: str
    grid: tuple[int, ...]
    prefix: int = 0
    reshape: Reshape | None = field(default=None, compare=False)

    def to_maps(self, output: torch.Tensor) -> torch.Tensor:
        """The tapped output (or its gradient), batch first, as maps ``(B, C, *grid)``.

        A view of ``output`` for the three built-in layouts, so writing into it writes the output.
        """
        if self.kind == "channels-first":
            return output
        if self.kind == "channels-last":
            return output.movedim(-1, 1)
        if self.kind == "tokens":
            return output[:, self.prefix:].unflatten(1, self.grid).movedim(-1, 1)
        if self.reshape is None:
            raise ValueError("a custom layout needs its reshape callable")
        return self.reshape(output)

    def describe(self) -> str:
        """A short phrase for messages, e.g. ``tokens (1 prefix + 14×14 grid)``."""
        grid = "×".join(map(str, self.grid))
        if self.kind == "tokens":
            return f"tokens ({self.prefix} prefix + {grid} grid)"
        return f"{self.kind} ({grid} grid)"


def custom_layout(reshape: Reshape, output: torch.Tensor) -> Layout:
    """The layout given by a user's ``reshape`` callable, checked on one output."""
    maps = reshape(output)
    if not isinstance(maps, torch.Tensor) or maps.dim() < 3 or maps.shape[0] != output.shape[0]:
        shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise ValueError(f"reshape must return maps (B, C, *grid) with B = {output.shape[0]}, got {shape}")
    return Layout("custom", tuple(maps.shape[2:]), reshape=reshape)


def _stride_interval(size: int, cells: int) -> tuple[float, float]:
    """Strides ``s`` with ``cells ∈ {⌊size/s⌋, ⌈size/s⌉}``: the open interval (size/(g+1), size/(g−1))."""
    upper = math.inf if cells <= 1 else size / (cells - 1)
    return size / (cells + 1), upper


def fits(grid: tuple[int, ...], spatial: tuple[int, ...], patches: bool = False) -> bool:
    """Whether ``grid`` is ``spatial`` seen through one stride along height and width (see module doc).

    ``patches=True``: the stride is a whole number of pixels (patch embeddings), else any positive
    real (convolutions with padding, resizing).  Signals (one axis) fit any positive length; a
    clip's time axis only needs ``g_t ≤ T``.
    """
    if len(grid) != len(spatial) or min(grid) < 1:
        return False
    if len(grid) == 3 and grid[0] > spatial[0]:
        return False
    if len(grid) == 1:
        return True
    low, high = 0.0, math.inf
    for size, cells in list(zip(spatial, grid, strict=True))[-2:]:
        a, b = _stride_interval(size, cells)
        low, high = max(low, a), min(high, b)
    if patches:  # a whole stride s ≥ 1 strictly inside (low, high)
        return max(1, math.floor(low) + 1) <= (math.ceil(high) - 1 if high < math.inf else math.inf)
    return low < high


def _divisors(count: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(count) + 1) if count % d == 0]
    return sorted(set(small + [count // d for d in small]))


def _factorisations(count: int, rank: int) -> Iterator[tuple[int, ...]]:
    """Every ``rank``-tuple of positive ints whose product is ``count``."""
    if rank == 1:
        yield (count,)
        return
    for first in _divisors(count):
        for rest in _factorisations(count // first, rank - 1):
            yield (first, *rest)


def _stride_mismatch(grid: tuple[int, ...], spatial: tuple[int, ...]) -> float:
    strides = [math.log(size / cells) for size, cells in list(zip(spatial, grid, strict=True))[-2:]]
    return max(strides) - min(strides)


@functools.lru_cache(maxsize=512)
def _token_grid(tokens: int, spatial: tuple[int, ...]) -> tuple[int, tuple[int, ...]] | None:
    """``(prefix, grid)`` of a token sequence over an input of size ``spatial``, or None.

    The fewest prefix tokens that leave a fitting grid; among grids with that prefix, the one whose
    height and width strides agree best.  Clips: None unless one grid remains (the time stride is
    free, so 8·7·7 and 2·14·14 patches are both possible).
    """
    for prefix in range(0, min(MAX_PREFIX_TOKENS, tokens - 1) + 1):
        grids = [g for g in _factorisations(tokens - prefix, len(spatial)) if fits(g, spatial, patches=True)]
        if not grids:
            continue
        if len(spatial) > 2 and len(grids) > 1:
            return None
        return prefix, min(grids, key=lambda g: _stride_mismatch(g, spatial))
    return None


def find_layout(output: object, spatial: tuple[int, ...]) -> Layout | None:
    """The layout of a tapped ``output`` for inputs of spatial size ``spatial``, or None.

    ``(B, C, *grid)`` or ``(B, *grid, C)`` when ``output`` has ``len(spatial) + 2`` dimensions
    (channels-last only when the channels-first reading does not fit and this one does);
    ``(B, prefix + prod(grid), C)`` tokens when it has 3 dimensions over an image or a clip.
    """
    if not isinstance(output, torch.Tensor):
        return None
    spatial = tuple(int(s) for s in spatial)
    rank = len(spatial)
    shape = tuple(output.shape)
    if output.dim() == rank + 2:
        first, last = shape[2:], shape[1:-1]
        if fits(last, spatial) and not fits(first, spatial):
            return Layout("channels-last", last)
        return Layout("channels-first", first)
    if output.dim() == 3 and rank >= 2:
        found = _token_grid(shape[1], spatial)
        if found is not None:
            return Layout("tokens", found[1], prefix=found[0])
    return None
