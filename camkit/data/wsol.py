"""The wsolevaluation metadata layout (Choe et al., CVPR 2020): reader, data set and writer.

One folder per split holds text files whose first field is the image path (relative to the
image root), which doubles as the image id::

    image_ids.txt     path                       one image per line
    class_labels.txt  path,label
    image_sizes.txt   path,width,height           (absent for OpenImages)
    localization.txt  path,x0,y0,x1,y1            one line per box (CUB, ILSVRC), or
                      path,mask_path,ignore_path  one line per instance mask (OpenImages; the
                                                  ignore path only on the image's first line)

Boxes are ``x0, y0, x1, y1`` inclusive in original pixels; like the reference, the data set
rescales them to the resized image with ``int(x * new_w / w)`` (truncation).  Masks are resized
with nearest neighbour and thresholded at 0.5 (any non-zero PNG value is foreground).

    >>> import tempfile
    >>> from camkit.data import Shapes
    >>> from camkit.data.wsol import WSOLDataset, export_wsol
    >>> scratch = tempfile.TemporaryDirectory()
    >>> out = scratch.name + "/shapes_wsol"
    >>> meta = export_wsol(Shapes("val", length=4), out, "val")
    >>> ds = WSOLDataset(meta, out + "/images", size=224)
    >>> item = ds[0]   # image (3, 224, 224), label, boxes (N, 4), image_id, ok, error
    >>> item["image"].shape, item["ok"]
    (torch.Size([3, 224, 224]), True)
    >>> scratch.cleanup()
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from camkit.errors import InputError
from camkit.io import atomic_path, write_text

__all__ = ["WSOLMetadata", "read_metadata", "WSOLDataset", "export_wsol", "resize_box"]

_FILES = ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt")


@dataclass
class WSOLMetadata:
    """Parsed metadata of one split.  ``sizes[id] = (width, height)``; ``boxes[id]`` lists
    ``(x0, y0, x1, y1)``; ``mask_paths[id]`` lists instance mask paths and ``ignore_paths[id]``
    the ignore mask path ('' when none)."""

    image_ids: list[str]
    labels: dict[str, int]
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    boxes: dict[str, list[tuple[int, int, int, int]]] = field(default_factory=dict)
    mask_paths: dict[str, list[str]] = field(default_factory=dict)
    ignore_paths: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """``"boxes"``, ``"masks"`` or ``"none"`` (no localization.txt)."""
        return "masks" if self.mask_paths else "boxes" if self.boxes else "none"


def _lines(path: Path) -> Iterable[tuple[int, list[str]]]:
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if line.strip():
                yield number, line.split(",")


def read_metadata(metadata_dir) -> WSOLMetadata:
    """Read one split folder.  Malformed lines, duplicate ids in ``image_ids.txt``, and lines of the
    other files whose image id is not in ``image_ids.txt`` (a typo would silently drop that image's
    ground truth) raise :class:`InputError` naming file and line."""
    root = Path(metadata_dir)
    ids_file = root / "image_ids.txt"
    if not ids_file.is_file():
        raise InputError(f"{ids_file} not found: not a wsolevaluation metadata folder")
    image_ids: list[str] = []
    known: set[str] = set()
    for number, fields in _lines(ids_file):
        if fields[0] in known:
            raise InputError(f"{ids_file} line {number}: image id {fields[0]!r} is listed twice")
        known.add(fields[0])
        image_ids.append(fields[0])
    labels: dict[str, int] = {}
    for number, fields in _lines(root / "class_labels.txt"):
        if len(fields) != 2:
            raise InputError(f"class_labels.txt line {number}: expected 'path,label'")
        _known_id(fields[0], known, root / "class_labels.txt", number)
        labels[fields[0]] = _int(fields[1], "class_labels.txt", number)
    missing = [i for i in image_ids if i not in labels]
    if missing:
        raise InputError(f"class_labels.txt has no label for {len(missing)} images, e.g. {missing[0]!r}")
    metadata = WSOLMetadata(image_ids=image_ids, labels=labels)
    if (root / "image_sizes.txt").is_file():
        for number, fields in _lines(root / "image_sizes.txt"):
            if len(fields) != 3:
                raise InputError(f"image_sizes.txt line {number}: expected 'path,width,height'")
            _known_id(fields[0], known, root / "image_sizes.txt", number)
            metadata.sizes[fields[0]] = (_int(fields[1], "image_sizes.txt", number),
                                         _int(fields[2], "image_sizes.txt", number))
    if (root / "localization.txt").is_file():
        for number, fields in _lines(root / "localization.txt"):
            if len(fields) in (3, 5):
                _known_id(fields[0], known, root / "localization.txt", number)
            if len(fields) == 5:
                x0, y0, x1, y1 = (_int(v, "localization.txt", number) for v in fields[1:])
                box = (x0, y0, x1, y1)
                if box[2] < box[0] or box[3] < box[1] or min(box) < 0:
                    raise InputError(f"localization.txt line {number}: box {box} is not x0<=x1, y0<=y1")
                metadata.boxes.setdefault(fields[0], []).append(box)
            elif len(fields) == 3:
                metadata.mask_paths.setdefault(fields[0], []).append(fields[1])
                if fields[0] not in metadata.ignore_paths or fields[2]:
                    metadata.ignore_paths[fields[0]] = fields[2]
            else:
                raise InputError(f"localization.txt line {number}: expected 'path,x0,y0,x1,y1' "
                                 "or 'path,mask_path,ignore_path'")
        if metadata.boxes and metadata.mask_paths:
            raise InputError("localization.txt mixes box lines and mask lines")
    return metadata


def _known_id(image_id: str, known: set[str], file: Path, number: int) -> None:
    if image_id not in known:
        raise InputError(f"{file} line {number}: image id {image_id!r} is not in image_ids.txt")


def _int(text: str, name: str, number: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{name} line {number}: {text!r} is not an integer") from None


def resize_box(box, image_size, new_size) -> tuple[int, int, int, int]:
    """Rescale ``(x0, y0, x1, y1)`` from ``image_size`` ``(w, h)`` to ``new_size`` ``(w, h)`` the
    way wsolevaluation does: ``int(x * new_w / w)`` for every coordinate (truncation)."""
    (w, h), (new_w, new_h) = map(float, image_size), map(float, new_size)
    x0, y0, x1, y1 = map(float, box)
    return int(x0 * new_w / w), int(y0 * new_h / h), int(x1 * new_w / w), int(y1 * new_h / h)


class WSOLDataset(torch.utils.data.Dataset):
    """Images and localization ground truth of one split in the wsolevaluation layout.

    Items: ``{"image": (3, S, S) float32 in [0, 1], "label": int, "boxes": (N, 4) int64 rescaled
    to S x S, "image_id": str, "index": int, "ok": bool, "error": str}`` and, for mask metadata,
    ``"mask"`` and ``"ignore"`` ``(S, S)`` bool.  ``size=None`` keeps each image's own size.
    An image that cannot be read never raises: its item has ``ok=False``, the reason in
    ``error`` and a black image, so a benchmark can count and skip it.  Use
    :func:`camkit.data.collate` in a DataLoader (box counts vary per image; it sets unreadable
    items aside).
    """

    def __init__(self, metadata_dir, image_root, size: int | None = 224, mask_root=None):
        self.metadata = read_metadata(metadata_dir)
        self.image_root = Path(image_root)
        self.mask_root = Path(mask_root) if mask_root is not None else self.image_root
        if size is not None and int(size) < 1:
            raise InputError(f"size must be positive, got {size}")
        self.size = None if size is None else int(size)

    def __len__(self) -> int:
        return len(self.metadata.image_ids)

    def __getitem__(self, index: int) -> dict:
        image_id = self.metadata.image_ids[index]
        item = {"label": self.metadata.labels[image_id], "image_id": image_id,
                "index": int(index), "ok": True, "error": ""}
        try:
            with Image.open(self.image_root / image_id) as opened:
                image = opened.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError) as error:
            return self._failed(item, image_id, f"{type(error).__name__}: {error}")
        original = image.size
        if self.size is not None:
            image = image.resize((self.size, self.size), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32) / 255.0
        item["image"] = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))
        target = image.size
        source = self.metadata.sizes.get(image_id, original)
        boxes = [resize_box(b, source, target) for b in self.metadata.boxes.get(image_id, [])]
        item["boxes"] = torch.tensor(boxes, dtype=torch.int64).reshape(-1, 4)
        if self.metadata.kind == "masks":
            try:
                item["mask"], item["ignore"] = self._masks(image_id, target)
            except (OSError, UnidentifiedImageError, ValueError) as error:
                return self._failed(item, image_id, f"mask: {type(error).__name__}: {error}")
        return item

    def item_fingerprint(self, index: int) -> str:
        """SHA-1 of what item ``index`` is made of, without decoding it: the resize ``size``, its
        image id, label, recorded size and boxes, and the bytes of its image and mask files (a file
        that cannot be read contributes its error).  ``camkit bench`` compares it before reusing work."""
        image_id = self.metadata.image_ids[index]
        digest = hashlib.sha1(repr((self.size, image_id, self.metadata.labels[image_id],
                                    self.metadata.sizes.get(image_id), self.metadata.boxes.get(image_id, []),
                                    self.metadata.mask_paths.get(image_id, []),
                                    self.metadata.ignore_paths.get(image_id, ""))).encode())
        files = [self.image_root / image_id] + [self.mask_root / p for p in self.metadata.mask_paths.get(image_id, [])]
        if self.metadata.ignore_paths.get(image_id):
            files.append(self.mask_root / self.metadata.ignore_paths[image_id])
        for file in files:
            try:
                digest.update(file.read_bytes())
            except OSError as error:
                digest.update(f"unreadable: {type(error).__name__}: {error}".encode())
        return digest.hexdigest()

    def _failed(self, item: dict, image_id: str, reason: str) -> dict:
        side = self.size or 1
        item.update(image=torch.zeros(3, side, side), boxes=torch.zeros(0, 4, dtype=torch.int64),
                    ok=False, error=f"{image_id}: {reason}")
        if self.metadata.kind == "masks":
            item["mask"] = torch.zeros(side, side, dtype=torch.bool)
            item["ignore"] = torch.zeros(side, side, dtype=torch.bool)
        return item

    def _masks(self, image_id: str, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        def load(relative: str) -> np.ndarray:
            with Image.open(self.mask_root / relative) as opened:
                gray = opened.convert("L").resize(size, Image.Resampling.NEAREST)
            return np.asarray(gray, dtype=np.float32) > 0.5

        mask = np.zeros(size[::-1], bool)
        for relative in self.metadata.mask_paths.get(image_id, []):
            mask |= load(relative)
        ignore_path = self.metadata.ignore_paths.get(image_id, "")
        ignore = load(ignore_path) & ~mask if ignore_path else np.zeros_like(mask)
        return torch.from_numpy(mask), torch.from_numpy(ignore)


def _to_uint8_image(image) -> np.ndarray:
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim != 3 or array.shape[0] not in (1, 3):
        raise InputError(f"item image must be (3, H, W) or (1, H, W), got {array.shape}")
    array = np.clip(array.transpose(1, 2, 0), 0.0, 1.0)
    array = np.rint(array * 255).astype(np.uint8)
    return array[..., 0] if array.shape[2] == 1 else array


def _save_png(image: Image.Image, path: Path) -> None:
    with atomic_path(path) as temporary:
        image.save(temporary, format="PNG")


def export_wsol(dataset, root, split: str, localization: str = "boxes") -> Path:
    """Write ``dataset`` (items: ``image`` (3, H, W) in [0, 1], ``label``, ``boxes`` (N, 4) and/or
    ``mask`` (H, W)) to the wsolevaluation layout under ``root`` and return the metadata folder.

    Images go to ``root/images/<split>/<index>.png`` (image ids ``<split>/<index>.png``), masks
    to ``root/images/<split>/<index>_mask.png`` (plus an empty ``_ignore.png``), metadata to
    ``root/metadata/<split>/``.  ``localization``: ``"boxes"`` (``path,x0,y0,x1,y1`` lines) or
    ``"masks"`` (``path,mask_path,ignore_path`` lines).
    """
    if localization not in ("boxes", "masks"):
        raise InputError(f"localization must be 'boxes' or 'masks', got {localization!r}")
    root = Path(root)
    image_dir = root / "images" / split
    meta_dir = root / "metadata" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    meta_dir.mkdir(parents=True, exist_ok=True)
    digits = max(6, len(str(max(len(dataset) - 1, 0))))
    ids, labels, sizes, locations = [], [], [], []
    for index in range(len(dataset)):
        item = dataset[index]
        image_id = f"{split}/{index:0{digits}d}.png"
        pixels = _to_uint8_image(item["image"])
        _save_png(Image.fromarray(pixels), root / "images" / image_id)
        height, width = pixels.shape[:2]
        ids.append(image_id)
        labels.append(f"{image_id},{int(item['label'])}")
        sizes.append(f"{image_id},{width},{height}")
        if localization == "boxes":
            boxes = item.get("boxes")
            if boxes is None:
                raise InputError(f"item {index} has no 'boxes' to export")
            for box in np.asarray(boxes.cpu() if isinstance(boxes, torch.Tensor) else boxes,
                                  np.int64).reshape(-1, 4):
                locations.append(f"{image_id}," + ",".join(str(int(v)) for v in box))
        else:
            mask = item.get("mask")
            if mask is None:
                raise InputError(f"item {index} has no 'mask' to export")
            mask = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask) > 0.5
            stem = f"{split}/{index:0{digits}d}"
            _save_png(Image.fromarray(mask.astype(np.uint8) * 255), root / "images" / f"{stem}_mask.png")
            _save_png(Image.fromarray(np.zeros_like(mask, np.uint8)), root / "images" / f"{stem}_ignore.png")
            locations.append(f"{image_id},{stem}_mask.png,{stem}_ignore.png")
    for name, lines in (("image_ids.txt", ids), ("class_labels.txt", labels), ("image_sizes.txt", sizes),
                        ("localization.txt", locations)):
        write_text(meta_dir / name, "".join(line + "\n" for line in lines))
    return meta_dir
