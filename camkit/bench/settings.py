"""The settings of a benchmark run: everything that determines its numbers."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    """What a run computes, as written to ``results.json["config"]`` (and fingerprinted, so that a
    resumed run reuses a chunk only when every setting is the same, the data set's name and size
    aside: a chunk's own content stands for those, :mod:`camkit.bench.state`).

    ``methods``: registry names; ``threshold``: box threshold of the Loc metrics (fraction of the
    map's max); ``top_k``: classes explained per image; ``protocol``: ``"camkit"`` or
    ``"wsolevaluation"`` (MaxBoxAcc, PxAP); ``tau_step``: step of the τ grid; ``iou_threshold``: δ
    of the Loc metrics; ``seed``: the run's seed; ``batch_size`` and ``chunk_size`` (images, whole
    batches); ``method_options``: ``{method: {option: value}}``; ``layer``: the tapped layer's
    name(s) or ``None``; ``model``, ``dataset``: identifiers; ``num_images``: the data set's size.
    """

    methods: list[str]
    threshold: float = 0.2
    top_k: int = 5
    protocol: str = "camkit"
    tau_step: float = 0.01
    iou_threshold: float = 0.5
    seed: int = 0
    batch_size: int = 32
    chunk_size: int = 256
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    layer: str | list[str] | None = None
    model: str = ""
    dataset: str = ""
    num_images: int = 0

    def to_json(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (``results.json["config"]``), fields in order."""
        return dataclasses.asdict(self)
