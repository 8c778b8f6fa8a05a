"""Explain images of any size at their own geometry, and bring maps and boxes back to their pixels.

Each image is resized, aspect kept, so that its **shorter side** is the model's size (a NiN or a
ResNet with global pooling takes any aspect); the network runs on that; its maps are upsampled
from the layer's resolution straight to the image's own grid and min-max normalised there (as
:class:`camkit.Explanation` does at the input size), and boxes are found on that grid: they are in
the original image's pixel coordinates.  For huge images the grid maps and overlays are returned
on may be capped (``max_side``): boxes are then mapped back to the original pixels.

Images of different sizes cannot share a tensor: images are grouped by their resized shape, and
each group runs in batches of up to ``batch_size`` (``batch_size=1`` runs them one by one).

    >>> import tempfile, camkit
    >>> from PIL import Image
    >>> from camkit.photos import explain_photos
    >>> scratch = tempfile.TemporaryDirectory(); folder = scratch.name
    >>> Image.new("RGB", (90, 60), "red").save(folder + "/wide.png")
    >>> Image.new("RGB", (300, 120), "yellow").save(folder + "/panorama.png")
    >>> model = camkit.models.pretrained("nin-shapes")
    >>> results = explain_photos(model, [folder + "/wide.png", folder + "/panorama.png"], size=64, top_k=3)
    >>> results[1].boxes.shape    # (3, 4) x0, y0, x1, y1 inclusive, in panorama.png's own pixels
    torch.Size([3, 4])
    >>> scratch.cleanup()
"""
from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from camkit.errors import CamkitError, ImageFileError, InputError, one_line
from camkit.explainer import Explainer
from camkit.imagefiles import MAX_PIXELS, image_size, read_image
from camkit.layers import LayerSpec
from camkit.localize import EMPTY_BOX
from camkit.localize import boxes as map_boxes
from camkit.maps import normalize_maps, resize_maps
from camkit.models.standardize import Standardize
from camkit.models.zoo import DEFAULT_SIZE, training_size

__all__ = ["Geometry", "Photo", "shorter_side", "display_size", "resize_image", "scale_boxes", "iter_photos",
           "explain_photos"]

#: An image given by path, or as a ``(3, H, W)`` tensor in [0, 1].
ImageInput = str | os.PathLike | torch.Tensor


def shorter_side(size: tuple[int, int], side: int) -> tuple[int, int]:
    """``(h, w)`` of an image of ``size`` ``(H, W)`` resized so that its shorter side is ``side``,
    aspect kept: ``h = round(H · side / min(H, W))`` (at least 1), likewise ``w``."""
    height, width = size
    if side < 1 or height < 1 or width < 1:
        raise InputError(f"sizes must be positive, got image {size} and side {side}")
    scale = side / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def display_size(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """``size`` ``(H, W)`` itself, or scaled down (aspect kept) so that its longer side is ``max_side``."""
    height, width = size
    if max_side is None or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``(C, H, W)`` or ``(B, C, H, W)`` images in [0, 1] to ``size`` ``(h, w)``: bilinear,
    antialiased when shrinking (as Pillow and torchvision's ``Resize`` do), clipped to [0, 1]."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    batch = images if images.dim() == 4 else images[None]
    resized = F.interpolate(batch, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    resized = resized.clamp_(0.0, 1.0)
    return resized if images.dim() == 4 else resized[0]


def scale_boxes(boxes: torch.Tensor, source: tuple[int, int], target: tuple[int, int]) -> torch.Tensor:
    """Boxes ``(..., 4)`` ``x0, y0, x1, y1`` inclusive on a ``source`` ``(h, w)`` pixel grid -> the
    pixels of a ``target`` ``(H, W)`` grid they cover: ``x0' = ⌊x0 · W/w⌋``,
    ``x1' = ⌈(x1 + 1) · W/w⌉ − 1`` (clipped to the image); empty boxes stay empty."""
    if tuple(source) == tuple(target):
        return boxes.clone()
    (h, w), (height, width) = source, target
    values = boxes.double()
    sx, sy = width / w, height / h
    out = torch.stack([
        torch.floor(values[..., 0] * sx), torch.floor(values[..., 1] * sy),
        torch.ceil((values[..., 2] + 1) * sx) - 1, torch.ceil((values[..., 3] + 1) * sy) - 1,
    ], dim=-1)
    out[..., 0::2] = out[..., 0::2].clamp(0, width - 1)
    out[..., 1::2] = out[..., 1::2].clamp(0, height - 1)
    empty = (boxes[..., 2] < boxes[..., 0]) | (boxes[..., 3] < boxes[..., 1])
    out[empty] = torch.tensor(EMPTY_BOX, dtype=out.dtype)
    return out.to(boxes.dtype)


@dataclass(frozen=True)
class Geometry:
    """Where an image's pixels went.  ``original``: ``(H, W)`` as read (EXIF orientation applied);
    ``resized``: ``(h, w)`` the network's input (shorter side = the model's size);
    ``display``: ``(H', W')`` the grid maps and overlays are returned on (``original`` unless capped)."""

    original: tuple[int, int]
    resized: tuple[int, int]
    display: tuple[int, int]

    @classmethod
    def of(cls, original: tuple[int, int], side: int, max_side: int | None = None, square: bool = False) -> Geometry:
        """The geometry of an image of ``original`` size run at shorter side ``side`` (at
        ``side × side`` with ``square``: for models that take one input size)."""
        resized = (side, side) if square else shorter_side(original, side)
        return cls(tuple(original), resized, display_size(original, max_side))  # type: ignore[arg-type]

    @property
    def capped(self) -> bool:
        """True when maps are returned on a grid smaller than the original."""
        return self.display != self.original

    def to_json(self) -> dict:
        """Sizes as ``[width, height]`` lists (image convention), and the display scale."""
        return {"size": [self.original[1], self.original[0]], "input_size": [self.resized[1], self.resized[0]],
                "overlay_size": [self.display[1], self.display[0]],
                "overlay_scale": self.display[1] / self.original[1], "capped": self.capped}


@dataclass
class Photo:
    """One image explained at its own geometry.

    ``index``: its position among the inputs; ``source``: its path (``None`` for a tensor);
    ``image``: ``(3, H', W')`` in [0, 1] on the display grid; ``maps``: ``(K, H', W')`` in [0, 1] on
    the display grid; ``boxes``: ``(K, 4)`` ``x0, y0, x1, y1`` inclusive **in the original image's
    pixels** (largest component above ``threshold · max``); ``classes``, ``scores`` (logits),
    ``probs``: ``(K,)``; ``layers``: the tapped layers."""

    index: int
    source: str | None
    geometry: Geometry
    image: torch.Tensor
    maps: torch.Tensor
    boxes: torch.Tensor
    classes: torch.Tensor
    scores: torch.Tensor
    probs: torch.Tensor
    layers: tuple[str, ...] = ()


def _original_size(image: ImageInput, max_pixels: int) -> tuple[int, int]:
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise InputError(f"an image tensor must be (3, H, W) in [0, 1], got {tuple(image.shape)}")
        return int(image.shape[1]), int(image.shape[2])
    return image_size(image, max_pixels)


def _decoded(image: ImageInput, max_pixels: int) -> torch.Tensor:
    return image.float() if isinstance(image, torch.Tensor) else read_image(image, max_pixels)


def _target_list(targets: int | Sequence[int] | torch.Tensor | None, count: int) -> list[int | None]:
    if targets is None or isinstance(targets, int):
        return [targets] * count
    values = [int(t) for t in torch.as_tensor(targets).reshape(-1).tolist()]
    if len(values) != count:
        raise InputError(f"{len(values)} targets for {count} images: give one class per image, or one int")
    return list(values)


def _unless_unreadable(skipped: list[tuple[int, str]] | None, index: int, image: ImageInput, read, max_pixels: int):
    """``read(image, max_pixels)``; ``None`` with ``(index, message)`` appended to ``skipped`` when
    a file cannot be read and ``skipped`` is a list."""
    try:
        return read(image, max_pixels)
    except ImageFileError as error:
        if skipped is None:
            raise
        skipped.append((index, str(error)))
        return None


def _plan(sizes: dict[int, Geometry], batch_size: int) -> list[list[int]]:
    """Batches of image indices sharing one resized shape, groups in order of first appearance."""
    groups: dict[tuple[int, int], list[int]] = {}
    for index, geometry in sizes.items():
        groups.setdefault(geometry.resized, []).append(index)
    return [members[start:start + batch_size] for members in groups.values()
            for start in range(0, len(members), batch_size)]


def iter_photos(model: nn.Module, images: Sequence[ImageInput], *, size: int | None = None,
                method: str = "gradcam", layer: LayerSpec = None, targets: int | Sequence[int] | None = None,
                top_k: int | None = None, threshold: float = 0.2, mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None, batch_size: int = 8, max_side: int | None = None,
                max_pixels: int = MAX_PIXELS, device: str | torch.device | None = None, progress: bool = False,
                square: bool = False, skipped: list[tuple[int, str]] | None = None,
                method_options: dict | None = None, **options) -> Iterator[Photo]:
    """Explain ``images`` (paths, or ``(3, H, W)`` tensors in [0, 1], of any sizes) at their own
    geometry; yield a :class:`Photo` per image as its batch finishes (batches of one resized shape:
    sort by ``photo.index`` for input order).  Only one batch of decoded images is held at a time.

    ``size``: the shorter side the network sees (default: the model's recorded training size,
    :func:`camkit.models.training_size`, else 224).  ``mean`` / ``std``: standardise
    ``(x - mean) / std`` before the model (e.g. ImageNet's for torchvision weights).  ``targets``,
    ``top_k``, ``method``, ``layer`` and ``options`` are :func:`camkit.explain`'s;
    ``method_options`` (a dict) adds options whose names this function takes itself (e.g.
    Augmented Grad-CAM's ``size``, the solve grid).  ``max_side``:
    cap on the longer side of the grid maps are returned on (``None``: the original size).
    ``square``: run every image at ``size × size`` (its aspect not kept) for a model that takes one
    input size (ViT); maps and boxes still come back in each image's own pixels.  A model that
    fails on an image's own aspect raises :class:`InputError` saying so.
    Every file's header is read before any work, so a missing or oversized image fails at once.
    ``skipped``: a list; a file that cannot be read (missing, not an image, broken, more than
    ``max_pixels``) is then appended to it as ``(index, message)`` and left out, instead of raising
    :class:`~camkit.errors.ImageFileError` (the others are explained as usual; if none can be read,
    it raises :class:`InputError`).
    """
    options = {**options, **(method_options or {})}
    side = size if size is not None else (training_size(model) or DEFAULT_SIZE)
    if not isinstance(side, int) or side < 1:
        raise InputError(f"size must be a positive number of pixels, got {size!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
    if max_side is not None and max_side < 1:
        raise InputError(f"max_side must be a positive number of pixels, got {max_side}")
    if not (math.isfinite(threshold) and 0 <= threshold < 1):
        raise InputError(f"threshold must lie in [0, 1), got {threshold}")
    images = list(images)
    if not images:
        raise InputError("no images given")
    geometries = {}
    for index, image in enumerate(images):
        original_size = _unless_unreadable(skipped, index, image, _original_size, max_pixels)
        if original_size is not None:
            geometries[index] = Geometry.of(original_size, side, max_side, square)
    if not geometries:
        raise InputError(_none_readable(images, skipped))
    wanted = _target_list(targets, len(images))
    chosen = torch.device(device) if device is not None else next(
        (p.device for p in model.parameters()), torch.device("cpu"))
    standardize = Standardize(mean, std).to(chosen) if mean is not None and std is not None else None
    explainer = Explainer(model, method=method, layer=layer, **options)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(geometries), unit="img", desc="explain", file=sys.stderr)
    explained = 0
    try:
        with explainer:
            for planned in _plan(geometries, batch_size):
                batch, network, shown = [], [], []
                for i in planned:  # one decoded original in memory at a time (a photo may be 80 MP)
                    original = _unless_unreadable(skipped, i, images[i], _decoded, max_pixels)
                    if original is None:
                        continue
                    batch.append(i)
                    network.append(resize_image(original, geometries[i].resized))
                    shown.append(resize_image(original, geometries[i].display))
                    del original
                if bar is not None:
                    bar.update(len(planned) - len(batch))
                if not batch:
                    continue
                inputs = torch.stack(network).to(chosen)
                if standardize is not None:
                    inputs = standardize(inputs)
                batch_targets = [wanted[i] for i in batch]
                spec = None if batch_targets[0] is None else [int(t) for t in batch_targets if t is not None]
                try:
                    explanation = explainer(inputs, targets=spec, top_k=top_k).cpu()
                except CamkitError:
                    raise
                except (RuntimeError, AssertionError, ValueError) as error:
                    height, width = inputs.shape[-2:]
                    if square or height == width:
                        raise
                    raise InputError(f"the model failed on a {height}×{width} input ({one_line(error)}); "
                                     "if it takes only square inputs of one size, pass square=True "
                                     "(--square)") from error
                if explained == 0 and layer is None:  # the layer found on the first shape serves every shape
                    names = list(explanation.layers)
                    explainer = Explainer(model, method=method, layer=names[0] if len(names) == 1 else names,
                                          **options)
                for j, (index, image) in enumerate(zip(batch, shown, strict=True)):
                    yield _photo(index, images[index], geometries[index], image, explanation, j, threshold)
                explained += len(batch)
                if bar is not None:
                    bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    if explained == 0:
        raise InputError(_none_readable(images, skipped))


def _none_readable(images: list, skipped: list[tuple[int, str]] | None) -> str:
    first = skipped[0][1] if skipped else "?"
    return f"none of the {len(images)} images can be read (the first: {first})"


def _photo(index: int, source: ImageInput, geometry: Geometry, shown: torch.Tensor, explanation, j: int,
           threshold: float) -> Photo:
    maps = normalize_maps(resize_maps(explanation.raw[j], geometry.display))       # (K, H', W')
    display_boxes = map_boxes(maps[None], threshold=threshold)[0]                   # (K, 4)
    return Photo(
        index=index, source=None if isinstance(source, torch.Tensor) else os.fspath(source), geometry=geometry,
        image=shown, maps=maps,
        boxes=scale_boxes(display_boxes, geometry.display, geometry.original),
        classes=explanation.classes[j], scores=explanation.scores[j], probs=explanation.probs[j],
        layers=tuple(explanation.layers))


def explain_photos(model: nn.Module, images: Sequence[ImageInput], **options) -> list[Photo]:
    """:func:`iter_photos` in input order: a list of :class:`Photo`, one per image."""
    return sorted(iter_photos(model, images, **options), key=lambda photo: photo.index)
