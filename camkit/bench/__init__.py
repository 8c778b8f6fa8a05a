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

Output in ``DIR``: ``results.json`` (per-method metrics in percent under ``"methods"``, totals,
errors, config), ``results.md`` (a Markdown table), ``records.jsonl`` (one line per image, by
index), ``box_acc.png`` (BoxAcc vs τ at IoU 0.5) and ``examples.png`` (overlays with boxes).

One job per module: :mod:`~camkit.bench.settings` (what determines the numbers),
:mod:`~camkit.bench.data` (guarded items, chunks, batches), :mod:`~camkit.bench.state` (counts
and resumable chunk files), :mod:`~camkit.bench.distributed` (process group, failures, all-reduce),
:mod:`~camkit.bench.evaluate` (the loop over batches), :mod:`~camkit.bench.report` (results,
table, files, figures) and :mod:`~camkit.bench.runner` (:func:`run`, which ties them together).
The command line lives in :mod:`camkit.cli.bench`.
"""
from camkit.bench.data import GuardedDataset, plan_chunks
from camkit.bench.distributed import BenchError
from camkit.bench.report import markdown_table, resume_summary
from camkit.bench.runner import run
from camkit.bench.settings import Settings

__all__ = ["run", "Settings", "markdown_table", "resume_summary", "GuardedDataset", "plan_chunks", "BenchError"]
