"""Atomic file writes: a file camkit wrote is either absent or complete.

Every writer puts the bytes in a temporary file beside the target (same folder, so the rename
never crosses file systems), flushes them to disk, then renames the temporary file over the target
with ``os.replace``.  A crash or an interrupt leaves the old file (or none), never half a file; on
error the temporary file is removed.  Parent folders are created.

    >>> from camkit import io
    >>> io.write_json("out/summary.json", {"images": 3})          # doctest: +SKIP
    >>> io.save_torch("out/model.pt", {"state_dict": model.state_dict()})  # doctest: +SKIP

Writers that need a path of their own (matplotlib's ``savefig``, PIL's ``Image.save``) use
:func:`atomic_path`; :func:`write_png` writes an image array.  Before any work is done, a command
checks where it will write: :func:`output_folder` and :func:`output_file` raise
:class:`camkit.errors.InputError` naming the problem (a file where a folder is meant, a folder that
cannot be created or written to).
"""
from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from camkit.errors import InputError

__all__ = ["atomic_path", "write_text", "write_bytes", "write_json", "to_json", "json_default", "save_torch",
           "write_png", "output_folder", "output_file", "removed_if_failed"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, the file written
    there replaces ``path``; on error it is removed and ``path`` is left as it was."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name per call (not mkstemp: the file keeps the permissions of any file made here).
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield temporary
        _sync(temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _sync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _write(path: str | os.PathLike, write, mode: str, encoding: str | None = None) -> Path:
    with atomic_path(path) as temporary, open(temporary, mode, encoding=encoding) as handle:
        write(handle)
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    return _write(path, lambda handle: handle.write(data), "wb")


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    return _write(path, lambda handle: handle.write(text), "w", encoding="utf-8")


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` for NumPy scalars and arrays (ints, floats, lists)."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(value: Any, indent: int | None = 2, allow_nan: bool = False) -> str:
    """``value`` as JSON text: NumPy values become numbers and lists; NaN and infinities raise
    ``ValueError`` unless ``allow_nan`` (they are not JSON)."""
    return json.dumps(value, indent=indent, allow_nan=allow_nan, default=json_default)


def write_json(path: str | os.PathLike, value: Any, indent: int | None = 2, allow_nan: bool = False) -> Path:
    """Write ``value`` as JSON (:func:`to_json`, then a newline) to ``path`` atomically."""
    return write_text(path, to_json(value, indent, allow_nan) + "\n")


def save_torch(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (a checkpoint is never left half-written)."""
    import torch

    def write(handle: IO[bytes]) -> None:
        torch.save(obj, handle)

    return _write(path, write, "wb")


def write_png(path: str | os.PathLike, pixels: Any) -> Path:
    """Write an image ``(H, W, 3)`` (float in [0, 1] or uint8) as a PNG at ``path``, atomically."""
    from PIL import Image

    array = np.asarray(pixels)
    if array.dtype != np.uint8:
        array = np.rint(np.clip(array, 0.0, 1.0) * 255).astype(np.uint8)
    with atomic_path(path) as temporary:
        Image.fromarray(array).save(temporary, format="PNG")
    return Path(path)


_RECORDERS: list[list[Path]] = []


@contextmanager
def removed_if_failed() -> Iterator[None]:
    """The folders :func:`output_folder` (or :func:`output_file`) creates inside the block are
    removed again, deepest first and only while empty, if the block raises: a command that stops
    on an error leaves no empty output folder behind (a folder holding anything stays)."""
    made: list[Path] = []
    _RECORDERS.append(made)
    try:
        yield
    except BaseException:
        for folder in reversed(made):
            try:
                folder.rmdir()
            except OSError:
                pass
        raise
    finally:
        _RECORDERS.remove(made)


def output_folder(path: str | os.PathLike, what: str = "--out") -> Path:
    """Make ``path`` a folder camkit can write into (created when missing) before any work is done.

    Raises :class:`InputError` naming ``what`` when ``path`` is a file, a parent is a file, or the
    folder cannot be created or written to (a file is created there and removed to find out)."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{what} {folder} is a file, not a folder")
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"{what} {folder}: cannot create the folder: {error.strerror or error}") from None
    for made in _RECORDERS:
        made.extend(reversed(missing))  # in the order they were created
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".camkit-probe-"):
            pass
    except OSError as error:
        raise InputError(f"{what} {folder} is not writable: {error.strerror or error}") from None
    return folder


def output_file(path: str | os.PathLike, what: str = "--out") -> Path:
    """Check that a file can be written at ``path`` (its folder is created when missing) before any
    work is done; raises :class:`InputError` naming ``what`` when ``path`` is a folder or its folder
    cannot be written to."""
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{what} {target} is a folder, not a file")
    output_folder(target.parent if str(target.parent) else Path("."), what=f"{what} {target}: folder")
    return target
