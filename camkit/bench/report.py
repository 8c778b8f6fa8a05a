"""What a benchmark run reports: ``results.json`` (metrics per method under ``"methods"``),
``results.md``, ``records.jsonl``, and the figures ``box_acc.png`` and ``examples.png``."""
from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from camkit import localize, plot
from camkit.bench.data import GuardedDataset
from camkit.bench.distributed import Group
from camkit.bench.evaluate import Runner, batch_seed
from camkit.bench.settings import Settings
from camkit.bench.state import MethodMetrics, ShardState
from camkit.data import collate
from camkit.io import json_default, write_json, write_text

__all__ = ["method_results", "results", "markdown_table", "write_outputs", "resume_summary"]

_LOC_KEYS = ("top1_loc", "top5_loc", "gt_known_loc")


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def method_results(metrics: MethodMetrics) -> dict[str, Any]:
    """One method's metrics in percent (``None`` where no image could be scored), plus raw counts."""
    out: dict[str, Any] = {key: None for key in (*_LOC_KEYS, "max_box_acc", "max_box_acc_v2")}
    loc, box, pxap = metrics.loc, metrics.box, metrics.pxap
    if loc.num_images:
        scores = loc.result()
        out.update({key: _finite(scores[key]) for key in _LOC_KEYS})
    if box.num_images:
        boxes = box.result()
        out["max_box_acc"] = boxes["max_box_acc"]
        out["max_box_acc_v2"] = boxes["max_box_acc_v2"]
        out["max_box_acc_per_iou"] = {str(d): v for d, v in boxes["max_box_acc_per_iou"].items()}
        out["best_threshold"] = boxes["best_threshold"]
        half = list(boxes["iou_thresholds"]).index(0.5) if 0.5 in boxes["iou_thresholds"] else 0
        out["box_acc_curve"] = [round(float(v), 6) for v in boxes["box_acc_largest"][half]]
    if pxap.num_images:
        out["pxap"] = _finite(pxap.result()["pxap"])
    for key in _LOC_KEYS:
        out[f"{key}_error"] = None if out[key] is None else 100.0 - out[key]
    out["counts"] = {
        "images": int(loc.num_images), "top1_correct": int(loc.top1_correct),
        "top5_correct": int(loc.topk_correct), "gt_known_correct": int(loc.gt_known_correct),
        "box_images": int(box.num_images), "mask_images": int(pxap.num_images),
    }
    return out


def results(total: ShardState, settings: Settings, group: Group, recomputed: Mapping[str, int], chunks: int,
            elapsed: float) -> dict[str, Any]:
    """The content of ``results.json`` (records and errors sorted by image index); ``recomputed``:
    how many of rank 0's ``chunks`` were computed, by reason (the others were reused)."""
    total.records.sort(key=lambda r: r["index"])
    total.errors.sort(key=lambda e: e["index"])
    images, top1, top5 = (int(v) for v in total.classification)
    return {
        "methods": {method: method_results(metrics) for method, metrics in total.metrics.items()},
        "classification": {"top1_acc": 100.0 * top1 / images if images else None,
                           "top5_acc": 100.0 * top5 / images if images else None},
        "totals": {"images": settings.num_images, "evaluated": images, "errors": len(total.errors)},
        "errors": total.errors,
        "config": settings.to_json(),
        "run": {"world_size": group.world_size, "seconds": round(elapsed, 3),
                "chunks_resumed_rank0": chunks - sum(recomputed.values()), "chunks_rank0": chunks,
                "chunks_recomputed_rank0": dict(sorted(recomputed.items()))},
    }


def resume_summary(results: Mapping[str, Any]) -> str:
    """One line on what a run reused: ``reused 2 of 5 chunks; recomputed 3 (images, labels or boxes
    changed: 1; not computed before: 2)`` (rank 0's chunks under torchrun)."""
    run = results["run"]
    recomputed = run.get("chunks_recomputed_rank0", {})
    line = f"reused {run['chunks_resumed_rank0']} of {run['chunks_rank0']} chunks"
    if recomputed:
        why = "; ".join(f"{reason}: {count}" for reason, count in recomputed.items())
        line += f"; recomputed {sum(recomputed.values())} ({why})"
    return line


def markdown_table(results: Mapping[str, Any]) -> str:
    """The results as a Markdown table: one row per method, metrics in percent.  The Top-k Loc
    column is titled with the run's ``top_k`` (``results.json`` keeps the key ``top5_loc``) and left
    out when only the top-1 class was explained, where it would repeat Top-1 Loc."""
    top_k = int(results.get("config", {}).get("top_k", 5))
    columns = [("top1_loc", "Top-1 Loc")] + ([("top5_loc", f"Top-{top_k} Loc")] if top_k > 1 else []) + [
        ("gt_known_loc", "GT-known Loc"), ("max_box_acc", "MaxBoxAcc"), ("max_box_acc_v2", "MaxBoxAccV2")]
    methods = results["methods"]
    if any("pxap" in scores for scores in methods.values()):
        columns.append(("pxap", "PxAP"))
    lines = ["| method | " + " | ".join(title for _, title in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for method, scores in methods.items():
        cells = [_cell(scores.get(key)) for key, _ in columns]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    totals = results.get("totals")
    if totals:
        lines.append("")
        lines.append(f"{totals['evaluated']} of {totals['images']} images evaluated, "
                     f"{totals['errors']} unreadable.")
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def write_outputs(out: Path, results: dict[str, Any], records: list[dict], dataset: Any, runner: Runner,
                  class_names: Sequence[str] | None, examples: int) -> list[str]:
    """Write every output file; ``results.json`` last, so that it marks a finished run.  A figure
    this run does not draw (``examples=0``, no box metric) is removed if an earlier run left one, so
    that every file in ``out`` belongs to these results.  Returns the names of the files written."""
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "records.jsonl", "".join(json.dumps(r, default=json_default) + "\n" for r in records))
    write_text(out / "results.md", markdown_table(results) + "\n")
    written = ["records.jsonl", "results.md"]
    if _plot_curves(out, results, runner.settings):
        written.append("box_acc.png")
    drawn = False
    if examples > 0:
        try:
            drawn = _plot_examples(out, dataset, runner, records, class_names, examples)
        except Exception as error:  # figures must not lose the numbers
            print(f"camkit bench: warning: could not draw examples: {error}", file=sys.stderr)
    if drawn:
        written.append("examples.png")
    for name in ("box_acc.png", "examples.png"):
        if name not in written:
            (out / name).unlink(missing_ok=True)
    write_json(out / "results.json", results)
    return ["results.json", *written]


def _plot_curves(out: Path, results: dict[str, Any], settings: Settings) -> bool:
    thresholds = localize.default_thresholds(settings.tau_step)
    curves = {method: (thresholds, np.asarray(scores["box_acc_curve"]))
              for method, scores in results["methods"].items() if scores.get("box_acc_curve")}
    if curves:
        figure = plot.threshold_curve(curves, title="BoxAcc vs. threshold (largest box, IoU ≥ 0.5)")
        plot.save(figure, out / "box_acc.png")
    return bool(curves)


def _plot_examples(out: Path, dataset: Any, runner: Runner, records: list[dict],
                   class_names: Sequence[str] | None, examples: int) -> bool:
    """The first ``examples`` readable images: each method's map of the true class with its box
    (predicted, at the Loc threshold) and the GT boxes."""
    chosen = [r["index"] for r in records[:examples]]
    if not chosen:
        return False
    batch = collate([GuardedDataset(dataset)[i] for i in chosen])
    if not batch["index"]:
        return False
    images = batch["image"].to(runner.device)
    labels = batch["label"].to(runner.device)
    explanations = {}
    for method_index, (method, explainer) in enumerate(runner.explainers.items()):
        torch.manual_seed(batch_seed(runner.settings.seed, -1, method_index))
        explanations[method] = explainer(images, targets=labels).cpu()
    names = [class_names[label] if class_names and 0 <= label < len(class_names) else str(label)
             for label in batch["label"].tolist()]
    figure = plot.grid(batch["image"], explanations, boxes=True, gt_boxes=batch["boxes"],
                       box_threshold=runner.settings.threshold, row_labels=names, panel_size=2.0)
    plot.save(figure, out / "examples.png")
    return True
