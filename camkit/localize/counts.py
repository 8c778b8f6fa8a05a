"""Counts that add up: the state of every metric in camkit (and of ``camkit bench``).

A metric keeps integer counts, never averages: ``update`` adds a batch, ``merge`` adds another
metric's counts, and ratios are formed only in ``result()``.  So batches, processes and machines
combine exactly: ``counts()`` is every count as one flat int64 tensor, which
``torch.distributed.all_reduce(..., op=SUM)`` adds across processes and ``load_counts`` reads back.

A subclass names its count arrays (int64 scalars or arrays) in ``_fields``; one made of other
metrics lists them in ``_parts()`` (their counts follow its own in the flat tensor).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from camkit.errors import InputError

__all__ = ["Counts"]


class Counts:
    """Named int64 counts that add up (see the module docstring)."""

    _fields: tuple[str, ...] = ()

    def _parts(self) -> Sequence[Counts]:
        """Metrics whose counts are part of this one's, in flat-tensor order."""
        return ()

    def _config(self) -> tuple:
        """What must agree for two metrics' counts to add up (thresholds, protocol …)."""
        return ()

    def _arrays(self) -> list[np.ndarray]:
        return [np.asarray(getattr(self, name)) for name in self._fields]

    def state_dict(self) -> dict[str, np.ndarray]:
        """This metric's own counts by name (copies)."""
        return {name: np.array(getattr(self, name), copy=True) for name in self._fields}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Set the counts from :meth:`state_dict` output (shapes must match)."""
        for name in self._fields:
            current = np.asarray(getattr(self, name))
            value = np.asarray(state[name], dtype=np.int64)
            if value.shape != current.shape:
                raise InputError(f"state {name!r} has shape {value.shape}, expected {current.shape}")
            setattr(self, name, value.copy() if value.ndim else np.int64(value))

    def size(self) -> int:
        """Number of counts in :meth:`counts`."""
        return sum(array.size for array in self._arrays()) + sum(part.size() for part in self._parts())

    def counts(self) -> torch.Tensor:
        """All counts as one flat int64 tensor (sum it across processes, then ``load_counts``)."""
        own = [np.asarray(array, np.int64).ravel() for array in self._arrays()]
        flat = torch.from_numpy(np.concatenate(own)) if own else torch.zeros(0, dtype=torch.int64)
        return torch.cat([flat, *(part.counts() for part in self._parts())])

    def load_counts(self, flat) -> None:
        """Set every count from a flat tensor or array laid out as :meth:`counts` returns it."""
        flat = np.asarray(flat.cpu() if isinstance(flat, torch.Tensor) else flat, np.int64).ravel()
        if flat.size != self.size():
            raise InputError(f"expected {self.size()} counts, got {flat.size}")
        state, offset = {}, 0
        for name, array in zip(self._fields, self._arrays(), strict=True):
            state[name] = flat[offset:offset + array.size].reshape(array.shape)
            offset += array.size
        self.load_state_dict(state)
        for part in self._parts():
            part.load_counts(flat[offset:offset + part.size()])
            offset += part.size()

    def merge(self, other: Any) -> Any:
        """Add ``other``'s counts (same type and configuration) into this metric; returns ``self``."""
        if type(other) is not type(self) or self._config() != other._config():
            raise InputError("can only merge metrics of the same type and configuration")
        for name in self._fields:
            setattr(self, name, np.asarray(getattr(self, name)) + np.asarray(getattr(other, name)))
        for mine, theirs in zip(self._parts(), other._parts(), strict=True):
            mine.merge(theirs)
        return self

    def reset(self) -> None:
        """Set every count to zero."""
        for name in self._fields:
            setattr(self, name, np.zeros_like(np.asarray(getattr(self, name))))
        for part in self._parts():
            part.reset()
