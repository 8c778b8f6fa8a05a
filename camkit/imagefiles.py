"""Image files as the user gave them: found in folders and globs, decoded to RGB in [0, 1] at their
own size whatever they hold, refused when too large to decode safely; and names for the files
written about them that never land on an input.

Decoding (:func:`read_image`) applies the EXIF orientation (a phone photo comes out the way it was
taken) and converts every mode Pillow opens:

* 16-bit grayscale (``I;16``, and ``I`` with values up to 65535) is divided by 65535 (Pillow's own
  conversion to RGB clips it to 255: a white image); 16-bit RGB(A) PNGs Pillow reduces to 8 bits;
* palette, 1-bit, CMYK, YCbCr … go through Pillow's conversion to RGB;
* an alpha channel (RGBA, LA, a palette or an RGB/L image with a transparent color) is composited
  over ``background`` (white by default): ``rgb · α + background · (1 − α)``;
* an image of more than ``max_pixels`` pixels (default: Pillow's own limit,
  89 478 485 pixels) is refused before it is decoded (a "decompression bomb": a small file that
  decodes to gigabytes).

    >>> from camkit.imagefiles import find_images, read_image
    >>> paths = find_images(["photos/", "extra/*.jpg"])      # doctest: +SKIP
    >>> image = read_image(paths[0])                          # (3, H, W) float32 in [0, 1]  # doctest: +SKIP
"""
from __future__ import annotations

import glob
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from camkit.errors import ImageFileError, InputError

__all__ = ["IMAGE_SUFFIXES", "MAX_PIXELS", "find_images", "read_image", "image_size", "output_names",
           "check_spares_inputs"]

#: File name endings a folder or a glob is searched for (case does not matter).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                            ".pgm", ".pbm", ".pnm"})
#: Pillow's own limit on the pixels of an image, past which it warns of a decompression bomb.
MAX_PIXELS = 89_478_485
_EXIF_ORIENTATION = 0x0112
_SWAPS_SIDES = {5, 6, 7, 8}  # EXIF orientations that transpose the image
_GLOB_CHARACTERS = frozenset("*?[")


def find_images(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """The image files ``inputs`` name, in order, each once: a file as given, a folder's image
    files (recursively, sorted; hidden ones left out), a glob's matches (``**`` recurses).

    Raises :class:`InputError` for a path that does not exist, a folder or a glob without images."""
    found: list[Path] = []
    for given in inputs:
        text = os.fspath(given)
        path = Path(text)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if _is_image_name(p) and p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not files:
                raise InputError(f"no image files in folder {text} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
            found.extend(files)
        elif _GLOB_CHARACTERS & set(text):
            files = sorted(Path(p) for p in glob.glob(text, recursive=True))
            files = [p for p in files if _is_image_name(p) and p.is_file()]
            if not files:
                raise InputError(f"no image files match {text}")
            found.extend(files)
        else:
            raise InputError(f"image not found: {text}")
    unique: dict[str, Path] = {}
    for path in found:
        unique.setdefault(os.path.realpath(path), path)
    return list(unique.values())


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _open(path: str | os.PathLike, max_pixels: int) -> Image.Image:
    """Open ``path`` lazily (nothing decoded yet), refusing images of more than ``max_pixels``."""
    if not Path(path).is_file():
        raise ImageFileError(f"image not found: {os.fspath(path)}")
    try:
        with warnings.catch_warnings():
            # Pillow warns past its limit and raises past twice it; camkit's own limit decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError as error:
        raise ImageFileError(f"refusing {os.fspath(path)}: {error}") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ImageFileError(f"cannot read image {os.fspath(path)}: {error}") from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageFileError(f"refusing {os.fspath(path)}: {width}×{height} = {width * height:,} pixels is more "
                         f"than the {max_pixels:,} allowed (a decompression bomb?); raise the limit "
                         "(--max-pixels) only for a file you trust")
    return image


def image_size(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """``(H, W)`` of the image :func:`read_image` returns for ``path`` (EXIF orientation applied),
    read from the file's header without decoding its pixels."""
    with _open(path, max_pixels) as image:
        width, height = image.size
        try:
            orientation = image.getexif().get(_EXIF_ORIENTATION)
        except Exception:  # a broken EXIF block: exif_transpose will ignore it too
            orientation = None
    return (width, height) if orientation in _SWAPS_SIDES else (height, width)


def read_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS,
               background: Sequence[float] = (1.0, 1.0, 1.0)) -> torch.Tensor:
    """Decode an image file to ``(3, H, W)`` float32 RGB in [0, 1] at its own size (see the module
    docstring for orientation, 16-bit, palette and alpha); :class:`~camkit.errors.ImageFileError` (an
    :class:`InputError`) names the file when it cannot be read or is larger than ``max_pixels``."""
    try:
        with _open(path, max_pixels) as image:
            oriented = ImageOps.exif_transpose(image)
            rgb = _rgb(oriented, np.asarray(background, dtype=np.float32).reshape(-1)[:3], os.fspath(path))
    except (OSError, ValueError, SyntaxError) as error:
        if isinstance(error, InputError):  # ImageFileError from _open or _rgb
            raise
        raise ImageFileError(f"cannot read image {os.fspath(path)}: {error}") from None
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))


def _rgb(image: Image.Image, background: np.ndarray, name: str) -> np.ndarray:
    """``(H, W, 3)`` float32 in [0, 1] from any Pillow mode."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        gray = np.asarray(image).astype(np.float32)
        if gray.min(initial=0) < 0 or gray.max(initial=0) > 65535:
            raise ImageFileError(f"cannot read image {name}: 32-bit integer pixels (up to {gray.max():.0f}) "
                             "have no known white level; save it as 8- or 16-bit")
        return np.repeat((gray / 65535.0)[..., None], 3, axis=2)
    if mode == "F":
        gray = np.asarray(image).astype(np.float32)
        if not np.isfinite(gray).all() or gray.min(initial=0) < 0 or gray.max(initial=0) > 1:
            raise ImageFileError(f"cannot read image {name}: floating-point pixels must lie in [0, 1]")
        return np.repeat(gray[..., None], 3, axis=2)
    if "A" in mode or "a" in mode or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3:]
        return rgba[..., :3] * alpha + background * (1.0 - alpha)
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def output_names(paths: Sequence[str | os.PathLike], suffix: str = ".png") -> list[Path]:
    """A relative output name per input, unique: its path below the inputs' common folder with
    ``suffix`` for its own (``a/cat.jpg`` and ``b/cat.jpg`` give ``a/cat.png`` and ``b/cat.png``);
    inputs that would still share a name keep their own suffix too (``cat.jpg.png``, ``cat.png.png``)."""
    absolute = [Path(os.path.abspath(p)) for p in paths]
    if not absolute:
        return []
    root = Path(os.path.commonpath([str(p.parent) for p in absolute]))
    relative = [p.relative_to(root) for p in absolute]
    names = [r.with_name(r.stem + suffix) if r.suffix else r.with_name(r.name + suffix) for r in relative]
    seen: dict[str, int] = {}
    for name in names:
        key = str(name).lower()  # case-insensitive file systems would merge Cat.png and cat.png
        seen[key] = seen.get(key, 0) + 1
    return [r.with_name(r.name + suffix) if seen[str(n).lower()] > 1 else n
            for r, n in zip(relative, names, strict=True)]


def check_spares_inputs(outputs: Sequence[str | os.PathLike], inputs: Sequence[str | os.PathLike],
                        what: str = "--out") -> None:
    """Raise :class:`InputError` when any of ``outputs`` is one of ``inputs`` (the same file, by
    any path) or an existing folder: a run must never write over the user's images."""
    given = {os.path.realpath(p): os.fspath(p) for p in inputs}
    for output in outputs:
        real = os.path.realpath(output)
        if real in given:
            raise InputError(f"{what}: writing {os.fspath(output)} would overwrite the input {given[real]}; "
                             "choose another output folder")
        if os.path.isdir(output):
            raise InputError(f"{what}: {os.fspath(output)} is a folder, where an output file would go")
