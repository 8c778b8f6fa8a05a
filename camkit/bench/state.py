"""The benchmark's state: additive counts per method, and the chunk files a resumed run reuses.

A set of images (a chunk, or all of a process's) is a :class:`ShardState`: classification counts,
one :class:`MethodMetrics` per method (:class:`camkit.localize.Counts`, so states add up across
chunks and processes), per-image records and errors.  A finished chunk is saved as
``DIR/state/chunk-NNNNNN.json`` with a fingerprint of everything that made it (settings, model
weights, data set); it is reused only when the fingerprint is the same.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from camkit import localize
from camkit.bench.data import Chunk
from camkit.bench.settings import Settings
from camkit.errors import InputError
from camkit.io import json_default, to_json, write_text
from camkit.localize import Counts

__all__ = ["MethodMetrics", "ShardState", "fingerprint", "model_fingerprint", "dataset_fingerprint",
           "load_chunk", "save_chunk", "STATE_FORMAT"]

STATE_FORMAT = "camkit-bench-chunk/1"


class MethodMetrics(Counts):
    """The additive counts of one method: Loc accuracies, BoxAccuracy and PxAP."""

    def __init__(self, settings: Settings):
        self.loc = localize.LocalizationAccuracy(iou_threshold=settings.iou_threshold, top_k=settings.top_k)
        thresholds = localize.default_thresholds(settings.tau_step)
        self.box = localize.BoxAccuracy(thresholds=thresholds, all_components=True, protocol=settings.protocol)
        self.pxap = localize.PxAP(thresholds=thresholds, protocol=settings.protocol)

    def _parts(self) -> Sequence[Counts]:
        return (self.loc, self.box, self.pxap)


@dataclass
class ShardState(Counts):
    """Counts and per-image records of a set of images (a chunk, or all of a process's).

    ``classification``: images, top-1 correct, top-k correct; ``metrics``: one per method."""

    metrics: dict[str, MethodMetrics]
    classification: np.ndarray = field(default_factory=lambda: np.zeros(3, np.int64))
    records: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)

    _fields = ("classification",)

    @classmethod
    def empty(cls, settings: Settings) -> ShardState:
        """A state with zero counts for the methods of ``settings``."""
        return cls({method: MethodMetrics(settings) for method in settings.methods})

    def _parts(self) -> Sequence[Counts]:
        return list(self.metrics.values())

    def merge(self, other: Any) -> ShardState:
        """Add ``other``'s counts, records and errors; returns ``self``."""
        super().merge(other)
        self.records.extend(other.records)
        self.errors.extend(other.errors)
        return self

    def to_json(self) -> dict[str, Any]:
        """The chunk file's content: flat counts, records, errors."""
        return {"counts": self.counts().tolist(), "records": self.records, "errors": self.errors}


def model_fingerprint(model: nn.Module) -> str:
    """SHA-1 of the model's class name and every tensor of its state dict."""
    digest = hashlib.sha1(type(model).__name__.encode())
    for name, tensor in list(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def dataset_fingerprint(dataset: Any) -> str:
    """The data set's ``fingerprint`` (attribute or method) when it has one; else its image ids and
    size (wsolevaluation data) or its ``repr`` (its length when the repr is an address)."""
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


def fingerprint(settings: Settings, model: nn.Module) -> str:
    """What a saved chunk must match to be reused: the settings and the model's weights."""
    return hashlib.sha1((to_json(settings.to_json()) + model_fingerprint(model)).encode()).hexdigest()


def _chunk_path(out: Path, chunk: int) -> Path:
    return out / "state" / f"chunk-{chunk:06d}.json"


def load_chunk(out: Path, chunk: Chunk, fingerprint: str, settings: Settings) -> ShardState | None:
    """The saved state of ``chunk`` when it was made with the same fingerprint, else ``None``."""
    path = _chunk_path(out, chunk[0])
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (saved.get("format") != STATE_FORMAT or saved.get("fingerprint") != fingerprint
            or saved.get("range") != [chunk[1], chunk[2]]):
        return None
    state = ShardState.empty(settings)
    try:
        state.load_counts(saved["counts"])
    except (InputError, KeyError, ValueError, RuntimeError):
        return None
    state.records, state.errors = saved["records"], saved["errors"]
    return state


def save_chunk(out: Path, chunk: Chunk, fingerprint: str, state: ShardState) -> None:
    """Write ``chunk``'s state atomically (``DIR/state/chunk-NNNNNN.json``)."""
    payload = {"format": STATE_FORMAT, "fingerprint": fingerprint, "chunk": chunk[0],
               "range": [chunk[1], chunk[2]], **state.to_json()}
    write_text(_chunk_path(out, chunk[0]), json.dumps(payload, default=json_default))
