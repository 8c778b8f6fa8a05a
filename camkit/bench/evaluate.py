"""The evaluation loop: every batch explained by every method once, its maps scored in NumPy.

For each method, one explanation of the top-k classes gives the Top-k Loc boxes; the true class's
map is taken from those maps when the class is among them (one shared forward and backward) and
explained again only for the other images.  Each map is boxed once (the true class's box is the
top-k box of that class), each box's best IoU with the ground truth is computed once for the
records and the Loc counts, and the true class's maps are prepared once for MaxBoxAcc and PxAP.
"""
from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from camkit.bench.data import Chunk, loader, plan_batches
from camkit.bench.distributed import Group, PeerFailed
from camkit.bench.settings import Settings
from camkit.bench.state import ShardState, content_fingerprint, save_chunk
from camkit.data.wsol import resize_box
from camkit.explainer import Explainer
from camkit.layers import LayerSpec
from camkit.localize import best_iou, largest_box_array, prepare_maps
from camkit.targets import select_output

__all__ = ["Runner", "batch_seed", "evaluate_chunks"]

#: Side of the maps the wsolevaluation protocol scores (its ground-truth boxes are rescaled to it).
_WSOL_SIDE = 224


def batch_seed(seed: int, first_index: int, method_index: int) -> int:
    """A seed per (run seed, batch, method): stochastic methods give the same maps whatever
    process evaluates the batch."""
    digest = hashlib.sha1(f"{seed}/{first_index}/{method_index}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class Runner:
    """Evaluates batches: one :class:`camkit.Explainer` per method."""

    def __init__(self, model: nn.Module, settings: Settings, device: torch.device, layer: LayerSpec,
                 method_options: dict[str, dict[str, Any]]):
        self.model = model
        self.device = device
        self.settings = settings
        self.explainers = {method: Explainer(model, method=method, layer=layer, **method_options.get(method, {}))
                           for method in settings.methods}
        self._num_classes: int | None = None

    def explain(self, explainer: Explainer, images: torch.Tensor, labels: np.ndarray,
                top_k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Top-k maps ``(B, K, H, W)``, their classes ``(B, K)``, the true class's maps
        ``(B, H, W)`` and where the true class sits among the top k (``(B,)``, -1 when absent)."""
        explanation = explainer(images, top_k=top_k)
        maps = explanation.maps.detach().cpu().numpy()
        classes = explanation.classes.detach().cpu().numpy()
        hit = classes == labels[:, None]
        position = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
        gt_maps = maps[np.arange(len(labels)), np.maximum(position, 0)].copy()
        missing = np.flatnonzero(position < 0)
        if missing.size:
            rows = torch.from_numpy(missing).to(images.device)
            extra = explainer(images[rows], targets=torch.from_numpy(labels[missing]).to(images.device))
            gt_maps[missing] = extra.maps[:, 0].detach().cpu().numpy()
        return maps, classes, gt_maps, position

    def evaluate(self, batch: dict[str, Any], state: ShardState) -> None:
        """Explain and score one collated batch; add its counts, records and errors to ``state``."""
        for index, message in batch["errors"]:
            state.errors.append({"index": int(index), "error": message})
        if not batch["index"]:
            return
        settings = self.settings
        images = batch["image"].to(self.device, non_blocking=True)
        labels = batch["label"].numpy()
        gt_boxes = [boxes.numpy() for boxes in batch["boxes"]]
        rows = np.array([i for i, boxes in enumerate(gt_boxes) if boxes.shape[0] > 0], np.int64)
        row_gt = [gt_boxes[r] for r in rows]
        scored_gt = self._protocol_boxes(row_gt, images.shape[-2:])
        records: list[dict[str, Any]] = [{"index": int(i), "label": int(label)}
                                         for i, label in zip(batch["index"], labels, strict=True)]
        for record, image_id in zip(records, batch["image_id"], strict=True):
            if image_id is not None:
                record["image_id"] = image_id
        first = batch["index"][0]
        for method_index, (method, explainer) in enumerate(self.explainers.items()):
            torch.manual_seed(batch_seed(settings.seed, first, method_index))
            top_k = min(settings.top_k, self.num_classes(explainer, images))
            maps, classes, gt_maps, position = self.explain(explainer, images, labels, top_k)
            boxes = largest_box_array(maps, settings.threshold)                    # (B, K, 4)
            known_boxes = boxes[np.arange(len(labels)), np.maximum(position, 0)]  # (B, 4)
            missing = np.flatnonzero(position < 0)
            if missing.size:
                known_boxes[missing] = largest_box_array(gt_maps[missing], settings.threshold)
            prepared = prepare_maps(gt_maps, settings.protocol)                   # (B, H', W')
            metrics = state.metrics[method]
            top_ious = known_ious = np.zeros((0,))
            if rows.size:
                top_ious = best_iou(boxes[rows], row_gt)                           # (R, K)
                known_ious = best_iou(known_boxes[rows], row_gt)                   # (R,)
                metrics.loc.update_ious(top_ious, classes[rows], labels[rows], known_ious)
                metrics.box.update(prepared[rows], scored_gt)
            if "mask" in batch:
                metrics.pxap.update(prepared, batch["mask"], batch.get("ignore"))
            if method_index == 0:
                top1 = classes[:, 0] == labels
                topk = (classes == labels[:, None]).any(axis=1)
                state.classification += np.array([len(labels), int(top1.sum()), int(topk.sum())])
                for record, top in zip(records, classes.tolist(), strict=True):
                    record["classes"] = top
            row_of = {int(r): j for j, r in enumerate(rows)}
            for i, record in enumerate(records):
                entry = {"top1_box": boxes[i, 0].tolist(), "gt_known_box": known_boxes[i].tolist()}
                if i in row_of:
                    entry["top1_iou"] = round(float(top_ious[row_of[i], 0]), 6)
                    entry["gt_known_iou"] = round(float(known_ious[row_of[i]]), 6)
                record.setdefault("methods", {})[method] = entry
        state.records.extend(records)

    def num_classes(self, explainer: Explainer, images: torch.Tensor) -> int:
        """The model's number of classes (1 for a non-classifier output), found once."""
        if self._num_classes is None:
            with torch.no_grad():
                output = select_output(self.model(images[:1]), explainer.output_fn)
            self._num_classes = int(output.shape[1]) if output.dim() == 2 else 1
        return self._num_classes

    def _protocol_boxes(self, boxes: list[np.ndarray], map_size: Sequence[int]) -> list[np.ndarray]:
        """GT boxes in the coordinates of the maps the protocol scores (224² for wsolevaluation,
        rescaled like its reference code: ``int(x · 224 / W)``)."""
        side = _WSOL_SIDE
        if self.settings.protocol != "wsolevaluation" or tuple(map_size) == (side, side):
            return boxes
        height, width = map_size
        return [np.array([resize_box(b, (width, height), (side, side)) for b in box.tolist()],
                         np.int64).reshape(-1, 4) for box in boxes]


def evaluate_chunks(dataset: Any, pending: Sequence[Chunk], runner: Runner, workers: int, total: ShardState,
                    out: Path, fingerprint: str, group: Group, progress: bool) -> None:
    """Evaluate the ``pending`` chunks batch by batch; save each finished chunk (with the digest of
    its items as they were read) and add it to ``total``.  Stops with :class:`PeerFailed` when
    another process reported a failure."""
    batches = plan_batches(pending, runner.settings.batch_size)
    if not batches:
        return
    bar = None
    if progress and group.is_main:
        from tqdm.auto import tqdm

        images = sum(chunk[2] - chunk[1] for chunk in pending)
        bar = tqdm(total=images, unit="img", desc="bench" if group.world_size == 1
                   else f"bench (rank 0 of {group.world_size})", file=sys.stderr)
    state, current = ShardState.empty(runner.settings), None
    digests: dict[int, str] = {}
    try:
        for (chunk, indices), batch in zip(batches, loader(dataset, batches, workers, runner.device), strict=True):
            if group.distributed and group.failed_peers():
                raise PeerFailed()
            if chunk is not current:
                state, current, digests = ShardState.empty(runner.settings), chunk, {}
            runner.evaluate(batch, state)
            digests.update(batch["digests"])
            if bar is not None:
                bar.update(len(indices))
            if indices[-1] == chunk[2] - 1:
                content = content_fingerprint([digests[i] for i in range(chunk[1], chunk[2])])
                save_chunk(out, chunk, fingerprint, content, runner.settings, state)
                total.merge(state)
    finally:
        if bar is not None:
            bar.close()
