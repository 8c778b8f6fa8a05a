"""Full-image classification training on a CPU, made for CAM-ready models.

    >>> from camkit.data import Shapes
    >>> from camkit.models import NiN
    >>> from camkit.train import train
    >>> model = NiN(num_classes=12)
    >>> history = train(model, Shapes("train", length=2000), Shapes("val", length=500),
    ...                 epochs=3, lr=3e-3, checkpoint="nin.ckpt")          # doctest: +SKIP

The data set is rendered once into memory (``float16``) so that training is not data bound.
Each epoch reseeds the shuffling and dropout from ``seed + epoch``, and a checkpoint is written
atomically after every epoch, so an interrupted run resumed from its checkpoint continues exactly
where it stopped.  The learning rate follows a linear warm-up then a cosine decay, per step:

    lr(t) = lr · t / T_w                            for t < T_w
    lr(t) = lr · ½ (1 + cos(π (t - T_w) / (T - T_w)))  otherwise
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from camkit.errors import InputError
from camkit.io import save_torch
from camkit.targets import select_output

__all__ = ["train", "evaluate", "stack", "save_checkpoint", "load_checkpoint", "cosine_lr"]

CHECKPOINT_FORMAT = "camkit-train-v1"


@dataclass
class TensorSet:
    """A data set held in memory: ``images`` (N, 3, H, W) float16 in [0, 1], ``labels`` (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def stack(dataset, progress: bool = False) -> TensorSet:
    """Render every item of ``dataset`` (items ``{"image", "label"}`` or ``(image, label)``) into memory."""
    if isinstance(dataset, TensorSet):
        return dataset
    n = len(dataset)
    if n == 0:
        raise InputError("the data set is empty")
    images: torch.Tensor | None = None
    labels = torch.empty(n, dtype=torch.long)
    iterator = range(n)
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(iterator, desc="render", leave=False, file=sys.stderr)
    for i in iterator:
        item = dataset[i]
        image, label = (item["image"], item["label"]) if isinstance(item, dict) else item[:2]
        if images is None:
            images = torch.empty((n, *image.shape), dtype=torch.float16)
        images[i] = image
        labels[i] = int(label)
    assert images is not None  # n > 0
    return TensorSet(images, labels)


def cosine_lr(step: int, total: int, lr: float, warmup: int = 0) -> float:
    """The learning rate at ``step`` of ``total``: linear warm-up over ``warmup`` steps, then cosine to 0."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _class_weights(spec, labels: torch.Tensor, num_classes: int) -> torch.Tensor | None:
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec != "balanced":
            raise InputError(f"class_weights must be None, 'balanced' or a tensor, got {spec!r}")
        counts = torch.bincount(labels, minlength=num_classes).float()
        return counts.sum() / (num_classes * counts.clamp(min=1))
    weights = torch.as_tensor(spec, dtype=torch.float32)
    if weights.shape != (num_classes,):
        raise InputError(f"class_weights must have shape ({num_classes},), got {tuple(weights.shape)}")
    return weights


@torch.no_grad()
def evaluate(model: nn.Module, data, batch_size: int = 256) -> dict:
    """Mean cross-entropy and top-1 accuracy of ``model`` on ``data`` (a data set or ``TensorSet``)."""
    data = stack(data)
    was_training = model.training
    model.eval()
    loss, correct = 0.0, 0
    try:
        for start in range(0, len(data), batch_size):
            x = data.images[start:start + batch_size].float()
            y = data.labels[start:start + batch_size]
            logits = select_output(model(x))
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
    finally:
        model.train(was_training)
    return {"loss": loss / len(data), "accuracy": correct / len(data)}


def save_checkpoint(path, state: dict) -> None:
    """Write ``state`` with ``torch.save``, atomically (:func:`camkit.io.save_torch`)."""
    save_torch(path, state)


def load_checkpoint(path) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no code runs)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path} is not a camkit training checkpoint (format {CHECKPOINT_FORMAT!r})")
    return state


def _make_optimizer(name: str, params, lr: float, weight_decay: float, momentum: float):
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True)
    raise InputError(f"optimizer must be 'adamw' or 'sgd', got {name!r}")


def train(model: nn.Module, train_set, val_set=None, epochs: int = 10, lr: float = 3e-3, *,
          optimizer: str = "adamw", weight_decay: float = 5e-4, momentum: float = 0.9,
          batch_size: int = 64, warmup_epochs: float = 0.5, class_weights=None,
          label_smoothing: float = 0.0, flip: bool = True, checkpoint=None, resume: bool = True,
          seed: int = 0, progress: bool = True, log=None) -> list[dict]:
    """Train ``model`` on full images with cross-entropy; return one record per epoch.

    ``train_set`` / ``val_set``: data sets of ``{"image", "label"}`` items (e.g. ``Shapes``) or a
    ``TensorSet``; both are rendered into memory once.  ``class_weights``: ``None``, ``"balanced"``
    (inverse class frequency) or a ``(num_classes,)`` tensor.  ``flip`` mirrors half of each batch
    left-right.  With ``checkpoint`` set, the training state is saved after every epoch, and with
    ``resume`` an existing checkpoint is continued.  Records: ``epoch``, ``lr``, ``train_loss``,
    ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``seconds``.
    """
    if epochs < 1:
        raise InputError(f"epochs must be >= 1, got {epochs}")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    data = stack(train_set, progress=progress)
    val = stack(val_set, progress=progress) if val_set is not None else None
    num_classes = int(getattr(model, "num_classes", data.labels.max().item() + 1))
    criterion = nn.CrossEntropyLoss(weight=_class_weights(class_weights, data.labels, num_classes),
                                    label_smoothing=label_smoothing)
    opt = _make_optimizer(optimizer, model.parameters(), lr, weight_decay, momentum)
    steps_per_epoch = math.ceil(len(data) / batch_size)
    total_steps, warmup = epochs * steps_per_epoch, int(warmup_epochs * steps_per_epoch)

    history: list[dict] = []
    current_lr = lr
    start_epoch = 0
    if checkpoint is not None and resume and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        history, start_epoch = list(state["history"]), int(state["epoch"])

    for epoch in range(start_epoch, epochs):
        began = time.perf_counter()
        generator = torch.Generator().manual_seed(seed * 100003 + epoch)
        torch.manual_seed(seed * 100003 + epoch)  # dropout
        order = torch.randperm(len(data), generator=generator)
        model.train()
        loss_sum, correct = 0.0, 0
        batches = range(steps_per_epoch)
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(batches, desc=f"epoch {epoch + 1}/{epochs}", leave=False, file=sys.stderr)
            batches = bar
        for step in batches:
            index = order[step * batch_size:(step + 1) * batch_size]
            x, y = data.images[index].float(), data.labels[index]
            if flip:
                mirrored = torch.rand(len(index), generator=generator) < 0.5
                x = torch.where(mirrored[:, None, None, None], x.flip(-1), x)
            current_lr = cosine_lr(epoch * steps_per_epoch + step, total_steps, lr, warmup)
            for group in opt.param_groups:
                group["lr"] = current_lr
            logits = select_output(model(x))
            loss = criterion(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(index)
            correct += int((logits.argmax(1) == y).sum())
            if bar is not None:
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{current_lr:.2g}")
        record = {"epoch": epoch + 1, "lr": current_lr, "train_loss": loss_sum / len(data),
                  "train_accuracy": correct / len(data)}
        if val is not None:
            scores = evaluate(model, val)
            record.update(val_loss=scores["loss"], val_accuracy=scores["accuracy"])
        record["seconds"] = time.perf_counter() - began
        history.append(record)
        if checkpoint is not None:
            save_checkpoint(checkpoint, {"format": CHECKPOINT_FORMAT, "epoch": epoch + 1,
                                         "model": model.state_dict(), "optimizer": opt.state_dict(),
                                         "history": history})
        if log is not None:
            log(record)
    model.eval()
    return history
