"""The benchmark's state: additive counts per method, and the chunk files a resumed run reuses.

A set of images (a chunk, or all of a process's) is a :class:`ShardState`: classification counts,
one :class:`MethodMetrics` per method (:class:`camkit.localize.Counts`, so states add up across
chunks and processes), per-image records and errors.  A finished chunk is saved as
``DIR/state/chunk-NNNNNN.json`` with two fingerprints: of its settings and model weights, and of
its own content (every item's digest: image, label, boxes, masks); it is reused only when both
are the same, and a chunk that is not says why (:class:`SavedChunk`).
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

import camkit
from camkit import localize
from camkit.bench.data import Chunk
from camkit.bench.settings import Settings
from camkit.errors import InputError
from camkit.io import json_default, to_json, write_text
from camkit.localize import Counts

__all__ = ["MethodMetrics", "ShardState", "SavedChunk", "fingerprint", "content_fingerprint", "chunk_settings",
           "model_fingerprint", "dataset_fingerprint", "load_chunk", "save_chunk", "STATE_FORMAT"]

STATE_FORMAT = "camkit-bench-chunk/2"


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
    """A description of the data set for ``results.json["config"]``: its ``fingerprint`` (attribute
    or method) when it has one; else its image ids and size (wsolevaluation data) or its ``repr``
    (its length when the repr is an address).  Resumes do not trust it: they compare each chunk's
    content (:func:`camkit.bench.data.chunk_digests`)."""
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


#: Settings that describe the whole data set: a chunk's own content stands for them.
_DATA_WIDE = ("dataset", "num_images")


def chunk_settings(settings: Settings) -> dict[str, Any]:
    """The settings a chunk's numbers depend on besides its images (not the data set's size or name),
    and the camkit version: a release may change a method's defaults under the same settings."""
    kept = {key: value for key, value in settings.to_json().items() if key not in _DATA_WIDE}
    return {"camkit": camkit.__version__, **kept}


def fingerprint(settings: Settings, model: nn.Module) -> str:
    """What a saved chunk's settings must match to be reused: :func:`chunk_settings` and the
    model's weights (its images are compared apart, :func:`content_fingerprint`)."""
    return hashlib.sha1((to_json(chunk_settings(settings)) + model_fingerprint(model)).encode()).hexdigest()


def content_fingerprint(digests: Sequence[str]) -> str:
    """SHA-1 of a chunk's item digests in index order."""
    return hashlib.sha1("\n".join(digests).encode()).hexdigest()


@dataclass
class SavedChunk:
    """A chunk file read back: its state, the fingerprint of its content, or why it cannot be used."""

    state: ShardState | None
    content: str = ""
    reason: str = ""


def _chunk_path(out: Path, chunk: int) -> Path:
    return out / "state" / f"chunk-{chunk:06d}.json"


def _changed(saved: dict[str, Any], now: dict[str, Any]) -> str:
    keys = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    return "settings changed (" + ", ".join(keys) + ")" if keys else "model weights changed"


def load_chunk(out: Path, chunk: Chunk, fingerprint: str, settings: Settings) -> SavedChunk:
    """The saved state of ``chunk`` when its settings and model fingerprint are ``fingerprint``;
    else a :class:`SavedChunk` whose ``reason`` says why not (no file, other settings …).  The
    caller compares ``content`` with the chunk's images before reusing it."""
    path = _chunk_path(out, chunk[0])
    if not path.exists():
        return SavedChunk(None, reason="not computed before")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return SavedChunk(None, reason="unreadable chunk file")
    if not isinstance(saved, dict) or saved.get("format") != STATE_FORMAT:
        return SavedChunk(None, reason="chunk file of another camkit version")
    if saved.get("range") != [chunk[1], chunk[2]]:
        return SavedChunk(None, reason="chunk size changed")
    if saved.get("fingerprint") != fingerprint:
        return SavedChunk(None, reason=_changed(saved.get("settings") or {}, chunk_settings(settings)))
    state = ShardState.empty(settings)
    try:
        state.load_counts(saved["counts"])
        state.records, state.errors = list(saved["records"]), list(saved["errors"])
        content = str(saved["content"])
    except (InputError, KeyError, ValueError, RuntimeError, TypeError):
        return SavedChunk(None, reason="unreadable chunk file")
    return SavedChunk(state, content=content)


def save_chunk(out: Path, chunk: Chunk, fingerprint: str, content: str, settings: Settings,
               state: ShardState) -> None:
    """Write ``chunk``'s state atomically (``DIR/state/chunk-NNNNNN.json``) with the fingerprints
    of its settings and model (``fingerprint``) and of its content (``content``)."""
    payload = {"format": STATE_FORMAT, "fingerprint": fingerprint, "content": content,
               "settings": chunk_settings(settings), "chunk": chunk[0], "range": [chunk[1], chunk[2]],
               **state.to_json()}
    write_text(_chunk_path(out, chunk[0]), json.dumps(payload, default=json_default))
