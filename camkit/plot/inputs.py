"""What the figures read: images of any accepted kind as RGB arrays, maps (or an Explanation)
as ``(B, K, h, w)`` arrays in [0, 1], colormaps."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib
import matplotlib.colors
import numpy as np
import torch

from camkit.errors import InputError
from camkit.maps import normalize_maps, resize_maps

__all__ = ["to_rgb"]

# Float images may overshoot [0, 1] by rounding (e.g. after resizing) without being an error.
_RANGE_TOLERANCE = 1e-3


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _is_pil(x: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(x, Image.Image)


def _channels(values: Any, name: str) -> np.ndarray | None:
    if values is None:
        return None
    array = np.asarray(_to_numpy(values), dtype=np.float32).reshape(-1)
    if array.size not in (1, 3) or not np.all(np.isfinite(array)):
        raise InputError(f"{name} must be 1 or 3 finite numbers (one per channel); got {values!r}")
    return array


def _single_rgb(image: Any, mean: np.ndarray | None, std: np.ndarray | None) -> np.ndarray:
    """One image of any accepted kind -> ``(H, W, 3)`` float32 in [0, 1]."""
    if _is_pil(image):
        array = np.asarray(image.convert("RGB"))
    elif isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            hint = " (channels-last? torch images are (3, H, W))" if image.ndim == 3 and image.shape[-1] == 3 else ""
            raise InputError(f"a torch image must be (3, H, W) or (1, H, W); got {tuple(image.shape)}{hint}")
        array = _to_numpy(image).transpose(1, 2, 0)
    elif isinstance(image, np.ndarray):
        array = image
        if array.ndim == 3 and array.shape[-1] not in (1, 3, 4):
            hint = (", which looks channels-first: use .transpose(1, 2, 0)"
                    if array.shape[0] in (1, 3) else "")
            raise InputError(f"a NumPy image must be (H, W, 3), (H, W, 4) or (H, W); "
                             f"got {array.shape}{hint}")
        if array.ndim not in (2, 3):
            raise InputError(f"a NumPy image must be (H, W, 3) or (H, W); got {array.shape}")
    else:
        raise InputError(f"cannot read an image from {type(image).__name__}: give a torch tensor, "
                         "a NumPy array, a PIL image or a list of them")
    if array.ndim == 2:
        array = array[..., None]
    array = array[..., :3]
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"image is empty: {array.shape}")

    if array.dtype == np.uint8:
        if mean is not None or std is not None:
            raise InputError("mean/std undo a standardisation of float images; "
                             "this image is uint8 (already in pixel units): drop mean/std")
        return array.astype(np.float32) / 255.0
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise InputError(f"image dtype must be uint8 or float; got {array.dtype}")
    rgb = array.astype(np.float32)
    if not np.all(np.isfinite(rgb)):
        raise InputError("image contains NaN or infinite values")
    if mean is not None or std is not None:
        restored = rgb * (std if std is not None else 1.0) + (mean if mean is not None else 0.0)
        return np.clip(restored, 0.0, 1.0).astype(np.float32)
    low, high = float(rgb.min()), float(rgb.max())
    if low < -_RANGE_TOLERANCE or high > 1.0 + _RANGE_TOLERANCE:
        raise InputError(f"float images must lie in [0, 1]; got values in [{low:.3g}, {high:.3g}]. "
                         "Pass mean=/std= to undo a standardisation (e.g. camkit.models.IMAGENET_MEAN and "
                         "IMAGENET_STD), "
                         "or give uint8 pixels")
    return np.clip(rgb, 0.0, 1.0)


def to_rgb(images: Any, mean: Sequence[float] | None = None,
           std: Sequence[float] | None = None) -> list[np.ndarray]:
    """Images of any accepted kind -> list of ``(H, W, 3)`` float32 arrays in [0, 1].

    A standardisation ``x = (rgb - mean) / std`` is undone as ``rgb = x * std + mean`` (then clipped
    to [0, 1]).  uint8 pixels are divided by 255.  A batch ``(B, 3, H, W)`` / ``(B, H, W, 3)`` or a
    list gives one array per image.
    """
    mean_c, std_c = _channels(mean, "mean"), _channels(std, "std")
    if std_c is not None and np.any(std_c == 0):
        raise InputError(f"std must be non-zero; got {std!r}")
    if isinstance(images, (list, tuple)):
        if not images:
            raise InputError("no images given (empty list)")
        return [_single_rgb(image, mean_c, std_c) for image in images]
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return [_single_rgb(image, mean_c, std_c) for image in images]
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return [_single_rgb(image, mean_c, std_c) for image in images]
    if isinstance(images, (torch.Tensor, np.ndarray)) and images.ndim not in (2, 3):
        raise InputError(f"images must be one image (3, H, W) / (H, W, 3) or a batch "
                         f"(B, 3, H, W) / (B, H, W, 3); got shape {tuple(images.shape)}")
    return [_single_rgb(images, mean_c, std_c)]


class _Maps:
    """Maps ``(B, K, h, w)`` float32 plus what an Explanation tells about them."""

    def __init__(self, maps: np.ndarray, classes=None, scores=None, source=None):
        self.maps, self.classes, self.scores, self.source = maps, classes, scores, source

    @property
    def batch(self) -> int:
        return self.maps.shape[0]

    @property
    def k(self) -> int:
        return self.maps.shape[1]


def _is_explanation(obj: Any) -> bool:
    return hasattr(obj, "maps") and not isinstance(obj, (torch.Tensor, np.ndarray))


def _read_maps(maps_or_explanation: Any, n_images: int, min_max: bool = False) -> _Maps:
    """Maps or an Explanation -> ``_Maps`` whose batch matches ``n_images``."""
    source, classes, scores = None, None, None
    if _is_explanation(maps_or_explanation):
        source = maps_or_explanation
        raw = source.maps
        classes = getattr(source, "classes", None)
        scores = getattr(source, "scores", None)
        classes = None if classes is None else _to_numpy(classes).reshape(len(raw), -1)
        scores = None if scores is None else _to_numpy(scores).astype(np.float64).reshape(len(raw), -1)
    else:
        raw = maps_or_explanation
    if isinstance(raw, (list, tuple)):
        try:
            raw = np.stack([_to_numpy(m) for m in raw])
        except ValueError as error:
            raise InputError(f"a list of maps must hold maps of one shape: {error}") from None
    if not isinstance(raw, (torch.Tensor, np.ndarray)):
        raise InputError(f"maps must be a tensor, an array or an Explanation; got {type(raw).__name__}")
    array = _to_numpy(raw)
    if array.dtype == np.bool_:
        array = array.astype(np.float32)
    if not np.issubdtype(array.dtype, np.number):
        raise InputError(f"maps must be numeric; got dtype {array.dtype}")
    array = array.astype(np.float32)
    if array.ndim == 2:
        array = array[None, None]
    elif array.ndim == 3:
        array = array[:, None]
    elif array.ndim != 4:
        raise InputError(f"maps must be (B, K, h, w), (B, h, w) or (h, w); got shape {array.shape}")
    if array.shape[0] != n_images:
        raise InputError(f"{array.shape[0]} map(s) for {n_images} image(s): maps (B, K, h, w) need one "
                         f"row per image; got maps shape {array.shape}. Several maps of one image "
                         "are (1, K, h, w)")
    if array.shape[1] == 0 or array.shape[2] == 0 or array.shape[3] == 0:
        raise InputError(f"maps are empty: shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InputError("maps contain NaN or infinite values")
    if min_max:
        array = normalize_maps(torch.from_numpy(array)).numpy()
    else:
        low, high = float(array.min()), float(array.max())
        if low < -_RANGE_TOLERANCE or high > 1.0 + _RANGE_TOLERANCE:
            raise InputError(f"maps must lie in [0, 1]; got values in [{low:.3g}, {high:.3g}]. "
                             "Pass min_max=True to min-max normalise each map")
        array = np.clip(array, 0.0, 1.0)
    if classes is not None and classes.shape[1] != array.shape[1]:
        classes = None
    if scores is not None and scores.shape[1] != array.shape[1]:
        scores = None
    return _Maps(array, classes, scores, source)


def _resized(map_hw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if map_hw.shape == tuple(size):
        return map_hw
    return resize_maps(torch.from_numpy(np.ascontiguousarray(map_hw)), size, mode="bilinear").numpy()


def _colormap(cmap: str | matplotlib.colors.Colormap) -> matplotlib.colors.Colormap:
    if isinstance(cmap, matplotlib.colors.Colormap):
        return cmap
    try:
        return matplotlib.colormaps[cmap]
    except KeyError:
        raise InputError(f"unknown colormap {cmap!r}; e.g. 'jet', 'inferno', 'viridis'") from None
