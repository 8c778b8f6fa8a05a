"""The one collate for data sets with localization ground truth (``DataLoader(collate_fn=collate)``)."""
from __future__ import annotations

from typing import Any

import torch

__all__ = ["collate"]


def collate(items: list[dict]) -> dict[str, Any]:
    """Batch data-set items whose box counts vary per image.

    Readable items (``ok`` true or absent) are batched: ``image`` ``(B, C, H, W)``, ``label``
    ``(B,)``, ``boxes`` a list of ``(N_i, 4)`` tensors, ``mask`` / ``ignore`` ``(B, H, W)`` bool when
    every item has them, ``index`` and ``image_id`` lists (``None`` where an item has none).
    Unreadable ones (``ok`` false, e.g. a corrupt image in :class:`camkit.data.WSOLDataset`) are left
    out and listed in ``errors`` as ``(index, message)``.
    """
    good = [item for item in items if item.get("ok", True)]
    batch: dict[str, Any] = {
        "index": [item.get("index") for item in good],
        "errors": [(item.get("index"), str(item.get("error") or "unreadable")) for item in items
                   if not item.get("ok", True)],
    }
    if good:
        batch["image"] = torch.stack([item["image"] for item in good])
        batch["label"] = torch.tensor([int(item["label"]) for item in good], dtype=torch.long)
        batch["boxes"] = [item["boxes"] for item in good]
        batch["image_id"] = [None if item.get("image_id") is None else str(item["image_id"]) for item in good]
        for key in ("mask", "ignore"):
            if all(key in item for item in good):
                batch[key] = torch.stack([torch.as_tensor(item[key]).bool() for item in good])
    return batch
