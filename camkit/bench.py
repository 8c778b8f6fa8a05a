"""The localization benchmark: ``camkit bench`` and :func:`run`.

One pass over a data set explains every image with every method and scores the maps against the
ground truth with :mod:`camkit.localize` (Top-1 / Top-5 / GT-known Loc at a fixed threshold,
MaxBoxAcc, MaxBoxAccV2, PxAP when masks exist).  Metrics are additive counts, so the same code
runs on one process or many (``torchrun``; the counts are all-reduced and rank 0 writes).

The data set is cut into *chunks* of consecutive indices (whole batches); chunk ``c`` is
evaluated by rank ``c % world_size``.  A batch is always the same set of images whatever the
number of processes, so results do not depend on the sharding, and each finished chunk is saved
(``DIR/state/chunk-NNNNNN.json``: its counts and per-image records) so that an interrupted run
resumes without recomputing it.

Output in ``DIR``: ``results.json`` (per method metrics in percent, totals, errors, config),
``results.md`` (a Markdown table), ``records.jsonl`` (one line per image, by index),
``box_acc.png`` (BoxAcc vs τ at IoU 0.5) and ``examples.png`` (overlays with boxes).
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from camkit.errors import CamkitError, InputError

__all__ = ["run", "main", "markdown_table", "collate", "GuardedDataset", "plan_chunks",
           "parse_method_options", "BenchError"]

RESERVED_KEYS = ("config", "totals", "classification", "errors", "run")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STATE_FORMAT = "camkit-bench-chunk/1"


class BenchError(CamkitError):
    """The benchmark could not finish (e.g. a process of a distributed run failed)."""


# ----------------------------------------------------------------------------- data
class GuardedDataset(torch.utils.data.Dataset):
    """Wrap a data set so that an item that cannot be read becomes ``{"index", "ok": False,
    "error"}`` instead of an exception (a DataLoader worker would otherwise end the run).

    Items may be dicts (``image``, ``label``, ``boxes`` (N, 4), optional ``mask``/``ignore``,
    ``image_id``, ``ok``, ``error``) or tuples ``(image, label, boxes[, mask])``."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        try:
            item = self._checked(self.dataset[index])
        except Exception as error:  # an unreadable image is counted, never a crash
            return {"index": int(index), "ok": False, "error": f"{type(error).__name__}: {error}"}
        if not item.get("ok", True):  # a reader that reports failures itself (WSOLDataset)
            return {"index": int(index), "ok": False, "error": str(item.get("error") or "unreadable")}
        item["index"], item["ok"] = int(index), True
        return item

    @staticmethod
    def _checked(item) -> dict:
        item = dict(zip(("image", "label", "boxes", "mask"), item)) if isinstance(item, (tuple, list)) \
            else dict(item)
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


def collate(items: list[dict]) -> dict:
    """Batch readable items (images stacked, ``boxes`` kept as a list: counts vary per image);
    unreadable ones go to ``errors`` as ``(index, message)``."""
    good = [i for i in items if i["ok"]]
    batch: dict[str, Any] = {
        "index": [i["index"] for i in good],
        "errors": [(i["index"], i["error"]) for i in items if not i["ok"]],
    }
    if good:
        batch["image"] = torch.stack([i["image"] for i in good])
        batch["label"] = torch.tensor([i["label"] for i in good], dtype=torch.long)
        batch["boxes"] = [i["boxes"] for i in good]
        batch["image_id"] = [str(i["image_id"]) if "image_id" in i else None for i in good]
        for key in ("mask", "ignore"):
            if all(key in i for i in good):
                batch[key] = torch.stack([torch.as_tensor(i[key]).bool() for i in good])
    return batch


def plan_chunks(length: int, chunk_size: int) -> list[tuple[int, int, int]]:
    """``[(chunk, start, stop)]`` covering ``range(length)`` with consecutive chunks."""
    return [(c, start, min(start + chunk_size, length))
            for c, start in enumerate(range(0, length, chunk_size))]


# ----------------------------------------------------------------------------- metrics
class MethodMetrics:
    """The additive counts of one method: Loc accuracies, BoxAccuracy and PxAP."""

    def __init__(self, top_k: int, protocol: str, tau_step: float, iou_threshold: float = 0.5):
        from camkit import localize

        self.loc = localize.LocalizationAccuracy(iou_threshold=iou_threshold, top_k=top_k)
        thresholds = localize.default_thresholds(tau_step)
        self.box = localize.BoxAccuracy(thresholds=thresholds, all_components=True,
                                        protocol=protocol)
        self.pxap = localize.PxAP(thresholds=thresholds, protocol=protocol)

    def parts(self):
        return (self.loc, self.box, self.pxap)

    def counts(self) -> torch.Tensor:
        return torch.cat([part.counts() for part in self.parts()])

    def load_counts(self, flat) -> None:
        flat = torch.as_tensor(flat, dtype=torch.int64)
        offset = 0
        for part in self.parts():
            size = part.counts().numel()
            part.load_counts(flat[offset:offset + size])
            offset += size
        if offset != flat.numel():
            raise InputError(f"expected {offset} counts, got {flat.numel()}")

    def merge(self, other: "MethodMetrics") -> None:
        for mine, theirs in zip(self.parts(), other.parts()):
            mine.merge(theirs)

    def result(self) -> dict:
        """Metrics in percent (``None`` where no image could be scored), plus raw counts."""
        out: dict[str, Any] = {key: None for key in (
            "top1_loc", "top5_loc", "gt_known_loc", "max_box_acc", "max_box_acc_v2")}
        if self.loc.num_images:
            loc = self.loc.result()
            out.update({k: _finite(loc[k]) for k in ("top1_loc", "top5_loc", "gt_known_loc")})
        if self.box.num_images:
            box = self.box.result()
            out["max_box_acc"] = box["max_box_acc"]
            out["max_box_acc_v2"] = box["max_box_acc_v2"]
            out["max_box_acc_per_iou"] = {str(d): v for d, v in box["max_box_acc_per_iou"].items()}
            out["best_threshold"] = box["best_threshold"]
            half = list(box["iou_thresholds"]).index(0.5) if 0.5 in box["iou_thresholds"] else 0
            out["box_acc_curve"] = [round(float(v), 6) for v in box["box_acc_largest"][half]]
        if self.pxap.num_images:
            out["pxap"] = _finite(self.pxap.result()["pxap"])
        for key in ("top1_loc", "top5_loc", "gt_known_loc"):
            out[f"{key}_error"] = None if out[key] is None else 100.0 - out[key]
        out["counts"] = {
            "images": int(self.loc.num_images), "top1_correct": int(self.loc.top1_correct),
            "top5_correct": int(self.loc.topk_correct),
            "gt_known_correct": int(self.loc.gt_known_correct),
            "box_images": int(self.box.num_images), "mask_images": int(self.pxap.num_images),
        }
        return out


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class ShardState:
    """Counts and per-image records of a set of images (a chunk, or all of a process's)."""

    metrics: dict[str, MethodMetrics]
    classification: np.ndarray = field(default_factory=lambda: np.zeros(3, np.int64))  # images, top1, top5
    records: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)

    def counts(self) -> torch.Tensor:
        return torch.cat([torch.from_numpy(self.classification.copy())]
                         + [m.counts() for m in self.metrics.values()])

    def load_counts(self, flat) -> None:
        flat = torch.as_tensor(flat, dtype=torch.int64)
        self.classification = flat[:3].numpy().copy()
        offset = 3
        for metric in self.metrics.values():
            size = metric.counts().numel()
            metric.load_counts(flat[offset:offset + size])
            offset += size

    def merge(self, other: "ShardState") -> None:
        self.classification = self.classification + other.classification
        for name, metric in self.metrics.items():
            metric.merge(other.metrics[name])
        self.records.extend(other.records)
        self.errors.extend(other.errors)

    def to_json(self) -> dict:
        return {"counts": self.counts().tolist(), "records": self.records, "errors": self.errors}


# ----------------------------------------------------------------------------- distributed
@dataclass
class Group:
    """This process's place in a (possibly distributed) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    distributed: bool = False
    owns_group: bool = False
    store: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def failed_peers(self) -> int:
        """How many processes reported a failure so far (0 when not distributed)."""
        if self.store is None:
            return 0
        try:
            return int(self.store.add("camkit_bench/failures", 0))
        except Exception:
            return 0

    def report_failure(self) -> None:
        if self.store is not None:
            try:
                self.store.add("camkit_bench/failures", 1)
            except Exception:
                pass


def launched_by_torchrun() -> bool:
    """True when ``torchrun``'s variables (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``) are set
    (also for one process: the same code path, collectives included)."""
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR"))


def setup_distributed(device: str, timeout_s: float) -> tuple[Group, torch.device]:
    """Join the ``torchrun`` process group (gloo on CPU, NCCL on CUDA, with ``timeout_s``) and
    pick this process's device (``cuda:LOCAL_RANK``); a plain process gets ``Group()``."""
    import torch.distributed as dist

    device = torch.device(device)
    if dist.is_available() and dist.is_initialized():
        group = Group(dist.get_rank(), dist.get_world_size(),
                      int(os.environ.get("LOCAL_RANK", 0)), True, False, _default_store())
    elif launched_by_torchrun():
        if not dist.is_available():
            raise BenchError("torchrun launch detected but torch.distributed is not available")
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise InputError("--device cuda was asked for but CUDA is not available")
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s),
                                **({"device_id": device} if backend == "nccl" else {}))
        group = Group(dist.get_rank(), dist.get_world_size(), local_rank, True, True,
                      _default_store())
    else:
        return Group(), device
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", group.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return group, device


def _default_store():
    try:
        from torch.distributed import distributed_c10d

        return distributed_c10d._get_default_store()
    except Exception:  # fail-fast between batches is a convenience; timeouts still apply
        return None


# ----------------------------------------------------------------------------- the run
def _model_fingerprint(model: nn.Module) -> str:
    digest = hashlib.sha1(type(model).__name__.encode())
    for name, tensor in list(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _dataset_fingerprint(dataset) -> str:
    explicit = getattr(dataset, "fingerprint", None)
    if explicit is not None:
        return str(explicit() if callable(explicit) else explicit)
    metadata = getattr(dataset, "metadata", None)
    if metadata is not None and hasattr(metadata, "image_ids"):
        ids = hashlib.sha1("\n".join(metadata.image_ids).encode()).hexdigest()
        return f"{type(dataset).__name__}(ids={ids}, size={getattr(dataset, 'size', None)})"
    text = repr(dataset)
    if " at 0x" in text:
        text = f"{type(dataset).__name__}(len={len(dataset)})"
    return text


def _batch_seed(seed: int, first_index: int, method_index: int) -> int:
    """A seed per (run seed, batch, method): stochastic methods give the same maps whatever
    process evaluates the batch."""
    digest = hashlib.sha1(f"{seed}/{first_index}/{method_index}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _json(value) -> str:
    return json.dumps(value, indent=2, allow_nan=False, default=_json_default)


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class _Runner:
    """Evaluates batches: one Explainer per method, maps shared between Loc and box metrics."""

    def __init__(self, model, methods, device, config, layer, method_options):
        import camkit

        self.model = model
        self.device = device
        self.config = config
        self.explainers = {}
        for method in methods:
            options = dict((method_options or {}).get(method, {}))
            self.explainers[method] = camkit.Explainer(model, method=method, layer=layer, **options)

    def new_state(self) -> ShardState:
        c = self.config
        return ShardState({m: MethodMetrics(c["top_k"], c["protocol"], c["tau_step"], c["iou_threshold"])
                           for m in self.explainers})

    def explain(self, explainer, images, labels, top_k):
        """Top-k maps and the true class's map of every image: ``(B, K, H, W)``, ``(B, K)``
        classes and ``(B, H, W)``.  The true class's map is taken from the top-k maps when the
        class is among them (one shared pass); only the other images are explained again."""
        explanation = explainer(images, top_k=top_k)
        maps, classes = explanation.maps.detach().cpu(), explanation.classes.detach().cpu()
        hit = classes == labels[:, None]
        found = hit.any(dim=1)
        gt_maps = maps[torch.arange(len(labels)), hit.float().argmax(dim=1)].clone()
        missing = (~found).nonzero().flatten()
        if missing.numel():
            extra = explainer(images[missing.to(images.device)],
                              targets=labels[missing].to(images.device))
            gt_maps[missing] = extra.maps[:, 0].detach().cpu()
        return maps, classes, gt_maps

    def evaluate(self, batch: dict, state: ShardState) -> None:
        from camkit import localize
        from camkit.data.wsol import resize_box

        for index, message in batch["errors"]:
            state.errors.append({"index": int(index), "error": message})
        if not batch["index"]:
            return
        c = self.config
        images = batch["image"].to(self.device, non_blocking=True)
        labels = batch["label"]
        gt_boxes = batch["boxes"]
        has_boxes = torch.tensor([b.shape[0] > 0 for b in gt_boxes])
        box_rows = has_boxes.nonzero().flatten().tolist()
        records = [{"index": int(i), "label": int(l)} for i, l in zip(batch["index"], labels.tolist())]
        for record, image_id in zip(records, batch["image_id"]):
            if image_id is not None:
                record["image_id"] = image_id
        first = batch["index"][0]
        for method_index, (method, explainer) in enumerate(self.explainers.items()):
            torch.manual_seed(_batch_seed(c["seed"], first, method_index))
            top_k = min(c["top_k"], self._num_classes(explainer, images))
            maps, classes, gt_maps = self.explain(explainer, images, labels, top_k)
            metrics = state.metrics[method]
            boxes = localize.boxes(maps, threshold=c["threshold"])            # (B, K, 4)
            known_boxes = localize.boxes(gt_maps, threshold=c["threshold"])   # (B, 4)
            if box_rows:
                rows = torch.tensor(box_rows)
                selected = [gt_boxes[r] for r in box_rows]
                metrics.loc.update(boxes[rows], classes[rows], labels[rows], selected, known_boxes[rows])
                metrics.box.update(gt_maps[rows], self._protocol_boxes(selected, gt_maps.shape[-2:], resize_box))
            if "mask" in batch:
                metrics.pxap.update(gt_maps, batch["mask"], batch.get("ignore"))
            if method_index == 0:
                top1 = classes[:, 0] == labels
                topk = (classes == labels[:, None]).any(dim=1)
                state.classification += np.array([len(labels), int(top1.sum()), int(topk.sum())])
                for record, cls in zip(records, classes.tolist()):
                    record["classes"] = cls
            for row, record in enumerate(records):
                entry = {"top1_box": boxes[row, 0].tolist(), "gt_known_box": known_boxes[row].tolist()}
                if gt_boxes[row].shape[0]:
                    entry["top1_iou"] = round(float(localize.iou(boxes[row, :1], gt_boxes[row]).max()), 6)
                    entry["gt_known_iou"] = round(float(localize.iou(known_boxes[row:row + 1],
                                                                     gt_boxes[row]).max()), 6)
                record.setdefault("methods", {})[method] = entry
        state.records.extend(records)

    def _num_classes(self, explainer, images) -> int:
        if not hasattr(self, "_classes"):
            with torch.no_grad():
                from camkit.targets import select_output

                output = select_output(self.model(images[:1]), explainer.output_fn)
            self._classes = int(output.shape[1]) if output.dim() == 2 else 1
        return self._classes

    def _protocol_boxes(self, boxes, map_size, resize_box):
        """GT boxes in the coordinates of the maps the protocol scores (224² for wsolevaluation,
        rescaled like its reference code: ``int(x · 224 / W)``)."""
        if self.config["protocol"] != "wsolevaluation" or tuple(map_size) == (224, 224):
            return boxes
        height, width = map_size
        return [torch.tensor([resize_box(b, (width, height), (224, 224)) for b in box.tolist()],
                             dtype=torch.int64).reshape(-1, 4) for box in boxes]


def run(model: nn.Module, dataset, methods: Sequence[str] = ("cam", "gradcam"),
        out_dir: str | os.PathLike = "camkit-bench", batch_size: int = 32, workers: int = 0,
        threshold: float = 0.2, class_names: Sequence[str] | None = None, seed: int = 0,
        resume: bool = True, progress: bool = True, examples: int = 8, device: str = "cpu",
        method_options: Mapping[str, Mapping[str, Any]] | None = None, *, top_k: int = 5,
        protocol: str = "camkit", layer=None, chunk_size: int | None = None,
        tau_step: float = 0.01, iou_threshold: float = 0.5, timeout_s: float = 1800.0,
        model_id: str | None = None) -> dict:
    """Benchmark ``methods`` on ``dataset`` with ``model``; write ``out_dir`` and return the
    results (the content of ``results.json``).

    ``dataset[i]``: a dict with ``image`` (3, H, W) float in the model's input range,
    ``label``, ``boxes`` (N, 4) ``x0, y0, x1, y1`` inclusive, optional ``mask``/``ignore``
    (H, W) (then PxAP is scored) — :class:`camkit.data.Shapes` and
    :class:`camkit.data.WSOLDataset` qualify.  ``threshold``: box threshold (fraction of the
    map's max) of the Loc metrics; ``top_k``: classes explained per image for Top-k Loc;
    ``protocol``: ``"camkit"`` or ``"wsolevaluation"`` for MaxBoxAcc(V2)/PxAP;
    ``chunk_size``: images per resumable chunk (default 8 batches); ``method_options``:
    ``{method: {option: value}}`` for :class:`camkit.Explainer`.  Under ``torchrun`` every
    process calls ``run`` and rank 0 writes the files; all ranks return the results.
    """
    if not methods:
        raise InputError("no methods to benchmark")
    methods = list(dict.fromkeys(methods))
    clash = [m for m in methods if m in RESERVED_KEYS]
    if clash:
        raise InputError(f"method names {clash} clash with results keys {RESERVED_KEYS}")
    if batch_size < 1 or workers < 0 or top_k < 1:
        raise InputError("batch_size and top_k must be >= 1 and workers >= 0")
    if not 0 <= threshold < 1:
        raise InputError(f"threshold must lie in [0, 1), got {threshold}")
    if len(dataset) == 0:
        raise InputError("the data set is empty")
    batches_per_chunk = max(1, -(-(chunk_size or 8 * batch_size) // batch_size))
    chunk_size = batches_per_chunk * batch_size
    out = Path(out_dir)
    started = time.perf_counter()

    group, device = setup_distributed(device, timeout_s)
    try:
        failure, resumed, mine, total = None, 0, [], None
        try:  # everything a process can fail at, so that the others hear of it
            model = model.to(device).eval()
            config = {
                "methods": methods, "threshold": float(threshold), "top_k": int(top_k),
                "protocol": protocol, "tau_step": float(tau_step),
                "iou_threshold": float(iou_threshold), "seed": int(seed),
                "batch_size": int(batch_size), "chunk_size": int(chunk_size),
                "method_options": {m: dict(o) for m, o in (method_options or {}).items() if m in methods},
                "layer": _layer_name(model, layer),
                "model": model_id or type(model).__name__, "dataset": _dataset_fingerprint(dataset),
                "num_images": len(dataset),
            }
            fingerprint = hashlib.sha1((_json(config) + _model_fingerprint(model)).encode()).hexdigest()
            runner = _Runner(model, methods, device, config, layer, method_options)
            mine = [chunk for chunk in plan_chunks(len(dataset), chunk_size)
                    if chunk[0] % group.world_size == group.rank]
            total = runner.new_state()
            pending = []
            for chunk in mine:
                saved = _load_chunk(out, chunk, fingerprint, runner) if resume else None
                if saved is None:
                    pending.append(chunk)
                else:
                    total.merge(saved)
                    resumed += 1
            _evaluate_chunks(dataset, pending, batch_size, workers, device, runner, total, out,
                             fingerprint, group, progress)
        except _PeerFailed:
            failure = ""
        except Exception as error:
            group.report_failure()
            if not group.distributed:
                raise
            traceback.print_exc(file=sys.stderr)
            failure = f"rank {group.rank}: {type(error).__name__}: {error}"
        total = _combine(group, total, failure)
        elapsed = time.perf_counter() - started
        results = _results(total, config, group, resumed, len(mine), elapsed)
        if group.is_main:
            _write_outputs(out, results, total.records, model, dataset, runner, class_names,
                           examples, config)
        return results
    finally:
        if group.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _layer_name(model: nn.Module, layer):
    if layer is None or isinstance(layer, str):
        return layer
    if isinstance(layer, nn.Module):
        return next((name for name, module in model.named_modules() if module is layer), type(layer).__name__)
    return [_layer_name(model, item) for item in layer]


class _PeerFailed(Exception):
    pass


def _chunk_path(out: Path, chunk: int) -> Path:
    return out / "state" / f"chunk-{chunk:06d}.json"


def _load_chunk(out: Path, chunk, fingerprint: str, runner: _Runner) -> ShardState | None:
    path = _chunk_path(out, chunk[0])
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (saved.get("format") != STATE_FORMAT or saved.get("fingerprint") != fingerprint
            or saved.get("range") != [chunk[1], chunk[2]]):
        return None
    state = runner.new_state()
    try:
        state.load_counts(saved["counts"])
    except (InputError, KeyError, ValueError, RuntimeError):
        return None
    state.records, state.errors = saved["records"], saved["errors"]
    return state


def _save_chunk(out: Path, chunk, fingerprint: str, state: ShardState) -> None:
    payload = {"format": STATE_FORMAT, "fingerprint": fingerprint, "chunk": chunk[0],
               "range": [chunk[1], chunk[2]], **state.to_json()}
    _atomic_write_text(_chunk_path(out, chunk[0]), json.dumps(payload, default=_json_default))


def _evaluate_chunks(dataset, pending, batch_size, workers, device, runner, total, out,
                     fingerprint, group: Group, progress: bool) -> None:
    batches = [(chunk, list(range(start, min(start + batch_size, chunk[2]))))
               for chunk in pending for start in range(chunk[1], chunk[2], batch_size)]
    if not batches:
        return
    loader = torch.utils.data.DataLoader(
        GuardedDataset(dataset), batch_sampler=[indices for _, indices in batches],
        num_workers=workers, collate_fn=collate, pin_memory=device.type == "cuda")
    bar = None
    if progress and group.is_main:
        from tqdm.auto import tqdm

        images = sum(chunk[2] - chunk[1] for chunk in pending)
        bar = tqdm(total=images, unit="img", desc="bench" if group.world_size == 1
                   else f"bench (rank 0 of {group.world_size})", file=sys.stderr)
    state, current = None, None
    try:
        for (chunk, indices), batch in zip(batches, loader):
            if group.distributed and group.failed_peers():
                raise _PeerFailed()
            if chunk is not current:
                state, current = runner.new_state(), chunk
            runner.evaluate(batch, state)
            if bar is not None:
                bar.update(len(indices))
            if indices[-1] == chunk[2] - 1:
                _save_chunk(out, chunk, fingerprint, state)
                total.merge(state)
    finally:
        if bar is not None:
            bar.close()


def _combine(group: Group, total: ShardState, failure: str | None) -> ShardState:
    """All-reduce the counts and gather records and errors of every process (a no-op for one)."""
    if not group.distributed:
        return total
    import torch.distributed as dist

    statuses = [None] * group.world_size
    dist.all_gather_object(statuses, failure)
    if any(status is not None for status in statuses):
        reasons = [s for s in statuses if s] or ["a process stopped"]
        raise BenchError("distributed benchmark failed: " + "; ".join(reasons))
    counts = total.counts()
    if dist.get_backend() == "nccl":
        counts = counts.cuda()
    dist.all_reduce(counts, op=dist.ReduceOp.SUM)
    total.load_counts(counts.cpu())
    gathered = [None] * group.world_size
    dist.all_gather_object(gathered, (total.records, total.errors))
    total.records = [r for records, _ in gathered for r in records]
    total.errors = [e for _, errors in gathered for e in errors]
    return total


def _results(total: ShardState, config: dict, group: Group, resumed: int, chunks: int,
             elapsed: float) -> dict:
    total.records.sort(key=lambda r: r["index"])
    total.errors.sort(key=lambda e: e["index"])
    images, top1, top5 = (int(v) for v in total.classification)
    results: dict[str, Any] = {method: metric.result() for method, metric in total.metrics.items()}
    results["classification"] = {
        "top1_acc": 100.0 * top1 / images if images else None,
        "top5_acc": 100.0 * top5 / images if images else None,
    }
    results["totals"] = {"images": config["num_images"], "evaluated": images,
                         "errors": len(total.errors)}
    results["errors"] = total.errors
    results["config"] = config
    results["run"] = {"world_size": group.world_size, "seconds": round(elapsed, 3),
                      "chunks_resumed_rank0": resumed, "chunks_rank0": chunks}
    return results


def markdown_table(results: Mapping[str, Any]) -> str:
    """The results as a Markdown table: one row per method, metrics in percent."""
    columns = [("top1_loc", "Top-1 Loc"), ("top5_loc", "Top-5 Loc"), ("gt_known_loc", "GT-known Loc"),
               ("max_box_acc", "MaxBoxAcc"), ("max_box_acc_v2", "MaxBoxAccV2")]
    methods = list(results.get("config", {}).get("methods") or
                   [k for k in results if k not in RESERVED_KEYS])
    if any("pxap" in results[m] for m in methods):
        columns.append(("pxap", "PxAP"))
    lines = ["| method | " + " | ".join(title for _, title in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for method in methods:
        cells = [_cell(results[method].get(key)) for key, _ in columns]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    totals = results.get("totals")
    if totals:
        lines.append("")
        lines.append(f"{totals['evaluated']} of {totals['images']} images evaluated, "
                     f"{totals['errors']} unreadable.")
    return "\n".join(lines)


def _cell(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def _write_outputs(out: Path, results: dict, records: list[dict], model, dataset, runner: _Runner,
                   class_names, examples: int, config: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(out / "records.jsonl",
                       "".join(json.dumps(r, default=_json_default) + "\n" for r in records))
    _atomic_write_text(out / "results.md", markdown_table(results) + "\n")
    _plot_curves(out, results, config)
    if examples > 0:
        try:
            _plot_examples(out, dataset, runner, records, class_names, examples, config)
        except Exception as error:  # figures must not lose the numbers
            print(f"camkit bench: warning: could not draw examples: {error}", file=sys.stderr)
    _atomic_write_text(out / "results.json", _json(results) + "\n")


def _plot_curves(out: Path, results: dict, config: dict) -> None:
    from camkit import localize, plot

    thresholds = localize.default_thresholds(config["tau_step"])
    curves = {m: (thresholds, np.asarray(results[m]["box_acc_curve"]))
              for m in config["methods"] if results[m].get("box_acc_curve")}
    if curves:
        figure = plot.threshold_curve(curves, title="BoxAcc vs. threshold (largest box, IoU ≥ 0.5)")
        _save_figure(plot, figure, out / "box_acc.png")


def _save_figure(plot, figure, path: Path) -> None:
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    plot.save(figure, temporary)
    os.replace(temporary, path)


def _plot_examples(out: Path, dataset, runner: _Runner, records, class_names, examples, config):
    """The first ``examples`` readable images: each method's map of the true class with its box
    (predicted, at the Loc threshold) and the GT boxes."""
    from camkit import plot

    chosen = [r["index"] for r in records[:examples]]
    if not chosen:
        return
    batch = collate([GuardedDataset(dataset)[i] for i in chosen])
    if not batch["index"]:
        return
    images = batch["image"].to(runner.device)
    labels = batch["label"].to(runner.device)
    explanations = {}
    for method_index, (method, explainer) in enumerate(runner.explainers.items()):
        torch.manual_seed(_batch_seed(config["seed"], -1, method_index))
        explanations[method] = explainer(images, targets=labels).cpu()
    names = [class_names[l] if class_names and 0 <= l < len(class_names) else str(l)
             for l in batch["label"].tolist()]
    figure = plot.grid(batch["image"], explanations, boxes=True, gt_boxes=batch["boxes"],
                       box_threshold=config["threshold"], row_labels=names, panel_size=2.0)
    _save_figure(plot, figure, out / "examples.png")


# ----------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="camkit bench",
        description="Weakly-supervised localization benchmark: explain every image with every "
                    "method in one pass and write DIR/results.json, results.md, records.jsonl, "
                    "box_acc.png and examples.png.  Runs unchanged under torchrun.")
    p.add_argument("--model", default="nin-shapes",
                   help="nin-shapes, torchvision:NAME, or a model file (default: %(default)s)")
    p.add_argument("--weights", default=None, help="torchvision weights name, e.g. DEFAULT")
    p.add_argument("--data", default="shapes",
                   help="'shapes' or a wsolevaluation metadata folder (default: %(default)s)")
    p.add_argument("--image-root", default=None,
                   help="image folder of a wsolevaluation split (default: METADATA/../../images)")
    p.add_argument("--split", default="val", help="shapes split (default: %(default)s)")
    p.add_argument("--length", type=int, default=None, help="number of shapes images (default: 1000)")
    p.add_argument("--size", type=int, default=None,
                   help="image side: shapes default 64, wsolevaluation data default 224")
    p.add_argument("--methods", default="cam,gradcam", help="comma-separated (default: %(default)s)")
    p.add_argument("--layer", default=None, help="dotted layer name (default: the last spatial layer)")
    p.add_argument("--option", action="append", default=[], metavar="METHOD:KEY=VALUE",
                   help="an option of one method, e.g. augmented-gradcam:L=32 (repeatable; "
                        "VALUE is read as JSON when it parses, else as a string)")
    p.add_argument("--out", default="camkit-bench", help="output folder (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="images per resumable chunk, whole batches (default: 8 batches)")
    p.add_argument("--threshold", type=float, default=0.2,
                   help="box threshold for Top-1/Top-5/GT-known Loc, fraction of max (default: %(default)s)")
    p.add_argument("--top-k", type=int, default=5, help="classes for Top-k Loc (default: %(default)s)")
    p.add_argument("--protocol", choices=("camkit", "wsolevaluation"), default="camkit",
                   help="MaxBoxAcc/PxAP protocol (default: %(default)s)")
    p.add_argument("--tau-step", type=float, default=0.01, help="τ grid step (default: %(default)s)")
    p.add_argument("--normalize", choices=("auto", "imagenet", "none"), default="auto",
                   help="input normalisation: imagenet mean/std for torchvision models (auto)")
    p.add_argument("--examples", type=int, default=8, help="images in examples.png (0: none)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (under torchrun: cuda:LOCAL_RANK)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=1800.0,
                   help="seconds a process waits for the others before failing (default: %(default)s)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="reuse finished chunks in DIR/state (default: on)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


class _Normalized(nn.Module):
    """``model((x - mean) / std)``: feed images in [0, 1] to an ImageNet-normalised model."""

    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        from camkit.models import Normalize

        self.normalize = Normalize(mean, std)
        self.model = model

    def forward(self, x):
        return self.model(self.normalize(x))


def _dataset_from_args(args, model) -> tuple[Any, list[str] | None]:
    from camkit import data

    if args.data == "shapes":
        size = args.size or int((getattr(model, "meta", None) or {}).get("image_size", 64) or 64)
        dataset = data.Shapes(args.split, size=size, length=args.length, seed=args.seed)
        return dataset, dataset.classes
    metadata = Path(args.data)
    if not metadata.is_dir():
        raise InputError(f"--data {args.data!r} is neither 'shapes' nor a metadata folder")
    image_root = Path(args.image_root) if args.image_root else metadata.parent.parent / "images"
    if not image_root.is_dir():
        raise InputError(f"image root {image_root} is not a folder (give --image-root)")
    from camkit.data.wsol import WSOLDataset

    dataset = WSOLDataset(metadata, image_root, size=args.size or 224)
    if args.length is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(args.length, len(dataset))))
        dataset.fingerprint = f"{_dataset_fingerprint(dataset.dataset)}[:{len(dataset)}]"
    return dataset, None


def parse_method_options(specs: Sequence[str], methods: Sequence[str]) -> dict[str, dict]:
    """``["augmented-gradcam:L=32", ...]`` → ``{"augmented-gradcam": {"L": 32}}``."""
    options: dict[str, dict] = {}
    for spec in specs:
        method, colon, assignment = spec.partition(":")
        key, equals, text = assignment.partition("=")
        if not (colon and equals and method and key):
            raise InputError(f"--option {spec!r}: expected METHOD:KEY=VALUE")
        if method not in methods:
            raise InputError(f"--option {spec!r}: {method!r} is not among --methods {list(methods)}")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        options.setdefault(method, {})[key] = value
    return options


def _run_from_args(args) -> dict:
    from camkit import methods as registry
    from camkit.models.spec import load_model

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in registry.available()]
    if unknown:
        raise InputError(f"unknown method(s) {unknown}; available: {registry.available()}")
    method_options = parse_method_options(args.option, methods)
    torch.manual_seed(args.seed)
    model, names = load_model(args.model, args.weights)
    layer = args.layer
    if layer is not None:
        found = dict(model.named_modules()).get(layer)
        if found is None:
            raise InputError(f"the model has no layer {layer!r}")
        layer = found
    if args.normalize == "imagenet" or (args.normalize == "auto" and args.model.startswith("torchvision:")):
        model = _Normalized(model, IMAGENET_MEAN, IMAGENET_STD)
    dataset, data_names = _dataset_from_args(args, model)
    return run(model, dataset, methods=methods, out_dir=args.out, batch_size=args.batch_size,
               workers=args.workers, threshold=args.threshold, class_names=names or data_names,
               seed=args.seed, resume=args.resume, progress=not args.quiet, examples=args.examples,
               device=args.device, method_options=method_options, top_k=args.top_k,
               protocol=args.protocol, layer=layer,
               chunk_size=args.chunk_size, tau_step=args.tau_step, timeout_s=args.timeout,
               model_id=f"{args.model}:{args.weights}:{args.normalize}:{args.layer}")


def main(argv: Sequence[str] | None = None) -> int:
    """``camkit bench ARGS``: returns the exit code (0 ok, 2 user error, 1 failed run)."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    rank = int(os.environ.get("RANK", "0"))
    try:
        results = _run_from_args(args)
    except BenchError as error:
        if rank == 0:
            print(f"camkit bench: error: {error}", file=sys.stderr)
        return 1
    except (CamkitError, FileNotFoundError) as error:  # the command line or its inputs
        if rank == 0:
            print(f"camkit bench: error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:  # e.g. a distributed timeout, CUDA out of memory
        if rank == 0:
            print(f"camkit bench: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"camkit bench: interrupted; finished chunks are kept in {args.out}/state "
              "(rerun the same command to resume)", file=sys.stderr)
        return 130
    if rank == 0:
        print(markdown_table(results))
        print(f"\nwrote results.json, results.md, records.jsonl, box_acc.png, examples.png to {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
