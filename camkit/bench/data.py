"""What the benchmark reads: items checked one by one (an unreadable image is counted, never a
crash), cut into chunks of whole batches, batched by :func:`camkit.data.collate`."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from camkit.data import collate
from camkit.errors import InputError

__all__ = ["GuardedDataset", "Chunk", "plan_chunks", "plan_batches", "loader"]

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


def plan_chunks(length: int, chunk_size: int) -> list[Chunk]:
    """``[(chunk, start, stop)]`` covering ``range(length)`` with consecutive chunks."""
    return [(c, start, min(start + chunk_size, length))
            for c, start in enumerate(range(0, length, chunk_size))]


def plan_batches(chunks: Sequence[Chunk], batch_size: int) -> list[tuple[Chunk, list[int]]]:
    """Each chunk cut into batches of consecutive indices: ``[(chunk, indices)]``."""
    return [(chunk, list(range(start, min(start + batch_size, chunk[2]))))
            for chunk in chunks for start in range(chunk[1], chunk[2], batch_size)]


def loader(dataset: Any, batches: Sequence[tuple[Chunk, list[int]]], workers: int,
           device: torch.device) -> torch.utils.data.DataLoader:
    """A DataLoader yielding the planned batches in order, items guarded and collated."""
    return torch.utils.data.DataLoader(
        GuardedDataset(dataset), batch_sampler=[indices for _, indices in batches],
        num_workers=workers, collate_fn=collate, pin_memory=device.type == "cuda")
