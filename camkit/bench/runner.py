"""``run()``: one benchmark, from the model and data set to the files in ``out_dir``."""
from __future__ import annotations

import math
import os
import sys
import time
import traceback
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from camkit.bench.data import Chunk, chunk_digests, plan_chunks
from camkit.bench.distributed import PeerFailed, combine, setup_distributed
from camkit.bench.evaluate import Runner, evaluate_chunks
from camkit.bench.report import results as results_of
from camkit.bench.report import write_outputs
from camkit.bench.settings import Settings
from camkit.bench.state import ShardState, content_fingerprint, dataset_fingerprint, fingerprint, load_chunk
from camkit.errors import InputError
from camkit.io import output_folder
from camkit.layers import LayerSpec, resolve_layers

__all__ = ["run"]


def run(model: nn.Module, dataset: Any, methods: Sequence[str] = ("cam", "gradcam"),
        out_dir: str | os.PathLike = "camkit-bench", batch_size: int = 32, workers: int = 0,
        threshold: float = 0.2, class_names: Sequence[str] | None = None, seed: int = 0,
        resume: bool = True, progress: bool = True, examples: int = 8, device: str = "cpu",
        method_options: Mapping[str, Mapping[str, Any]] | None = None, *, top_k: int = 5,
        protocol: str = "camkit", layer: LayerSpec = None, chunk_size: int | None = None,
        tau_step: float = 0.01, iou_threshold: float = 0.5, timeout_s: float = 1800.0,
        model_id: str | None = None) -> dict[str, Any]:
    """Benchmark ``methods`` on ``dataset`` with ``model``; write ``out_dir`` and return the
    results (the content of ``results.json``: per-method metrics under ``results["methods"]``).

    ``dataset[i]``: a dict with ``image`` (3, H, W) float in the model's input range,
    ``label``, ``boxes`` (N, 4) ``x0, y0, x1, y1`` inclusive, optional ``mask``/``ignore``
    (H, W) (then PxAP is scored) — :class:`camkit.data.Shapes` and
    :class:`camkit.data.WSOLDataset` qualify.  ``threshold``: box threshold (fraction of the
    map's max) of the Loc metrics; ``top_k``: classes explained per image for Top-k Loc;
    ``protocol``: ``"camkit"`` or ``"wsolevaluation"`` for MaxBoxAcc(V2)/PxAP;
    ``chunk_size``: images per resumable chunk (default 8 batches); ``method_options``:
    ``{method: {option: value}}`` for :class:`camkit.Explainer`.  Under ``torchrun`` every
    process calls ``run`` and rank 0 writes the files; all ranks return the results.

    With ``resume``, a chunk saved in ``out_dir/state`` is reused only when its settings, the
    model's weights and its own items (images, labels, boxes, masks: each item's digest) are the
    same; ``results["run"]["resume"]`` counts the chunks reused and recomputed, and why.
    ``out_dir`` is checked before any work: a file there, or a folder that cannot be written to,
    raises :class:`camkit.errors.InputError`.
    """
    if not methods:
        raise InputError("no methods to benchmark")
    methods = list(dict.fromkeys(methods))
    if batch_size < 1 or workers < 0 or top_k < 1:
        raise InputError("batch_size and top_k must be >= 1 and workers >= 0")
    if not 0 <= threshold < 1:
        raise InputError(f"threshold must lie in [0, 1), got {threshold}")
    if not (math.isfinite(tau_step) and 0 < tau_step < 1):
        raise InputError(f"tau_step must lie in (0, 1), got {tau_step}")
    if not (math.isfinite(iou_threshold) and 0 < iou_threshold <= 1):
        raise InputError(f"iou_threshold must lie in (0, 1], got {iou_threshold}")
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise InputError(f"timeout_s must be a positive number of seconds, got {timeout_s}")
    if examples < 0 or (chunk_size is not None and chunk_size < 1):
        raise InputError("examples must be >= 0 and chunk_size >= 1")
    if len(dataset) == 0:
        raise InputError("the data set is empty")
    batches_per_chunk = max(1, -(-(chunk_size or 8 * batch_size) // batch_size))
    options = {m: dict(o) for m, o in (method_options or {}).items() if m in methods}
    if torch.device(device).type == "meta":
        raise InputError("device 'meta' holds no data (shapes only): use cpu or cuda")
    out = output_folder(out_dir)
    started = time.perf_counter()

    group, torch_device = setup_distributed(device, timeout_s)
    try:
        failure: str | None = None
        mine: list[Chunk] = []
        total, reasons = None, Counter[str]()
        try:  # everything a process can fail at, so that the others hear of it
            model = model.to(torch_device).eval()
            settings = Settings(
                methods=methods, threshold=float(threshold), top_k=int(top_k), protocol=protocol,
                tau_step=float(tau_step), iou_threshold=float(iou_threshold), seed=int(seed),
                batch_size=int(batch_size), chunk_size=batches_per_chunk * batch_size,
                method_options=options, layer=_layer_names(model, layer),
                model=model_id or type(model).__name__, dataset=dataset_fingerprint(dataset),
                num_images=len(dataset))
            key = fingerprint(settings, model)
            runner = Runner(model, settings, torch_device, layer, options)
            mine = [chunk for chunk in plan_chunks(len(dataset), settings.chunk_size)
                    if chunk[0] % group.world_size == group.rank]
            total = ShardState.empty(settings)
            pending = []
            for chunk in mine:
                reason = "resume off" if not resume else _reuse(out, chunk, key, settings, dataset, workers, total)
                if reason:
                    pending.append(chunk)
                    reasons[reason] += 1
            evaluate_chunks(dataset, pending, runner, workers, total, out, key, group, progress)
        except PeerFailed:
            failure = ""
        except Exception as error:
            group.report_failure()
            if not group.distributed:
                raise
            traceback.print_exc(file=sys.stderr)
            failure = f"rank {group.rank}: {type(error).__name__}: {error}"
        total = combine(group, total, failure)  # raises if any process failed
        results = results_of(total, settings, group, reasons, len(mine), time.perf_counter() - started)
        files = write_outputs(out, results, total.records, dataset, runner, class_names, examples) \
            if group.is_main else []
        results["run"]["files"] = files
        return results
    finally:
        group.close()


def _reuse(out: Path, chunk: Chunk, key: str, settings: Settings, dataset: Any, workers: int,
           total: ShardState) -> str:
    """Merge the saved ``chunk`` into ``total`` when its settings, model and items are unchanged
    and return ``""``; else return why it must be recomputed."""
    saved = load_chunk(out, chunk, key, settings)
    if saved.state is None:
        return saved.reason
    if content_fingerprint(chunk_digests(dataset, chunk, workers)) != saved.content:
        return "images, labels or boxes changed"
    total.merge(saved.state)
    return ""


def _layer_names(model: nn.Module, layer: LayerSpec) -> str | list[str] | None:
    """The tapped layer(s) by name, as given (one name, or a list of names)."""
    if layer is None:
        return None
    names = list(resolve_layers(model, layer))
    return names[0] if isinstance(layer, (str, nn.Module)) else names
