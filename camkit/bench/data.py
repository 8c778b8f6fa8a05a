"""What the benchmark reads: items checked one by one (an unreadable image is counted, never a
crash), each with a digest of its content, cut into chunks of whole batches, batched by
:func:`camkit.data.collate`.

An item's digest (:meth:`GuardedDataset.digest`) is what a resumed run compares before it reuses
a chunk: the data set's own ``item_fingerprint(index)`` when it has one (``WSOLDataset`` hashes
the image file's bytes and its metadata lines without decoding), else a SHA-1 of the decoded
item: image tensor (dtype, shape, bytes), label, boxes, mask, ignore mask and image id.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from camkit.data import collate
from camkit.errors import InputError

__all__ = ["GuardedDataset", "Chunk", "plan_chunks", "plan_batches", "loader", "chunk_digests"]

#: ``(chunk number, first index, one past the last index)``
Chunk = tuple[int, int, int]


class GuardedDataset(torch.utils.data.Dataset):
    """Wrap a data set so that an item that cannot be read becomes ``{"index", "ok": False,
    "error"}`` instead of an exception (a DataLoader worker would otherwise end the run).

    Items may be dicts (``image``, ``label``, ``boxes`` (N, 4), optional ``mask``/``ignore``,
    ``image_id``, ``ok``, ``error``) or tuples ``(image, label, boxes[, mask])``."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            item = self._checked(self.dataset[index])
        except Exception as error:  # an unreadable image is counted, never a crash
            return {"index": int(index), "ok": False, "error": f"{type(error).__name__}: {error}"}
        if not item.get("ok", True):  # a reader that reports failures itself (WSOLDataset)
            return {"index": int(index), "ok": False, "error": str(item.get("error") or "unreadable")}
        item["index"], item["ok"] = int(index), True
        return item

    def digest(self, index: int, item: dict[str, Any] | None = None) -> str:
        """The digest of item ``index`` (``item``: its guarded value when already read)."""
        explicit = _item_fingerprint(self.dataset, index)
        if explicit is not None:
            return explicit
        if item is None:
            item = self[index]
        digest = hashlib.sha1()
        if not item["ok"]:
            digest.update(f"unreadable:{item['error']}".encode())
            return digest.hexdigest()
        for key in ("image", "label", "boxes", "mask", "ignore", "image_id"):
            value = item.get(key)
            digest.update(key.encode())
            if isinstance(value, torch.Tensor):
                array = value.detach().cpu().contiguous().numpy()
                digest.update(f"{array.dtype}{array.shape}".encode())
                digest.update(array.tobytes())
            elif isinstance(value, np.ndarray):
                digest.update(f"{value.dtype}{value.shape}".encode())
                digest.update(np.ascontiguousarray(value).tobytes())
            else:
                digest.update(repr(value).encode())
        return digest.hexdigest()

    @staticmethod
    def _checked(item: Any) -> dict[str, Any]:
        item = dict(zip(("image", "label", "boxes", "mask"), item, strict=False)) \
            if isinstance(item, (tuple, list)) else dict(item)
        if not item.get("ok", True):
            return item
        image = item["image"]
        if not isinstance(image, torch.Tensor) or image.dim() != 3:
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise InputError(f"item image must be a (C, H, W) tensor, got {shape}")
        item["label"] = int(item["label"])
        boxes = item.get("boxes")
        item["boxes"] = (torch.zeros(0, 4, dtype=torch.int64) if boxes is None
                         else torch.as_tensor(boxes).reshape(-1, 4).long())
        return item


def _item_fingerprint(dataset: Any, index: int) -> str | None:
    """``dataset.item_fingerprint(index)`` (through ``Subset`` wrappers), or ``None``."""
    while isinstance(dataset, torch.utils.data.Subset):
        dataset, index = dataset.dataset, int(dataset.indices[index])
    method = getattr(dataset, "item_fingerprint", None)
    return None if method is None else str(method(index))


class _Digests(torch.utils.data.Dataset):
    def __init__(self, guarded: GuardedDataset, indices: Sequence[int]):
        self.guarded, self.indices = guarded, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> str:
        return self.guarded.digest(self.indices[position])


def chunk_digests(dataset: Any, chunk: Chunk, workers: int = 0) -> list[str]:
    """The digests of a chunk's items, in index order (read by ``workers`` processes when > 0)."""
    view = _Digests(GuardedDataset(dataset), range(chunk[1], chunk[2]))
    if workers == 0:
        return [view[i] for i in range(len(view))]
    reader = torch.utils.data.DataLoader(view, batch_size=None, num_workers=workers)
    return list(reader)


def plan_chunks(length: int, chunk_size: int) -> list[Chunk]:
    """``[(chunk, start, stop)]`` covering ``range(length)`` with consecutive chunks."""
    return [(c, start, min(start + chunk_size, length))
            for c, start in enumerate(range(0, length, chunk_size))]


def plan_batches(chunks: Sequence[Chunk], batch_size: int) -> list[tuple[Chunk, list[int]]]:
    """Each chunk cut into batches of consecutive indices: ``[(chunk, indices)]``."""
    return [(chunk, list(range(start, min(start + batch_size, chunk[2]))))
            for chunk in chunks for start in range(chunk[1], chunk[2], batch_size)]


class _DigestedDataset(GuardedDataset):
    """Guarded items that carry their digest (computed where they are read: in the workers)."""

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = super().__getitem__(index)
        item["digest"] = self.digest(index, item)
        return item


def _collate_with_digests(items: list[dict]) -> dict[str, Any]:
    """:func:`camkit.data.collate`, plus ``digests``: ``{index: digest}`` of every item."""
    batch = collate(items)
    batch["digests"] = {int(item["index"]): item["digest"] for item in items}
    return batch


def loader(dataset: Any, batches: Sequence[tuple[Chunk, list[int]]], workers: int,
           device: torch.device) -> torch.utils.data.DataLoader:
    """A DataLoader yielding the planned batches in order, items guarded, digested and collated."""
    return torch.utils.data.DataLoader(
        _DigestedDataset(dataset), batch_sampler=[indices for _, indices in batches],
        num_workers=workers, collate_fn=_collate_with_digests, pin_memory=device.type == "cuda")
