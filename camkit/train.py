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
where it stopped.  The checkpoint records the run's settings (:func:`run_settings`: the model's
architecture, a digest of the training and validation data, every option): a checkpoint is
continued only when they are the same, otherwise :func:`train` refuses and names the differences
(``resume=True`` continues it to another number of epochs, ``resume=False`` starts afresh).
The learning rate follows a linear warm-up then a cosine decay, per step:

    lr(t) = lr · t / T_w                            for t < T_w
    lr(t) = lr · ½ (1 + cos(π (t - T_w) / (T - T_w)))  otherwise
"""
from __future__ import annotations

import hashlib
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from camkit.errors import InputError, one_line
from camkit.io import save_torch
from camkit.targets import select_output

__all__ = ["train", "evaluate", "stack", "save_checkpoint", "load_checkpoint", "cosine_lr", "run_settings",
           "differences", "Plan", "plan_run", "TensorSet"]

CHECKPOINT_FORMAT = "camkit-train-v2"
#: Checkpoints of earlier versions: readable, but they do not record their settings.
_OLDER_FORMATS = ("camkit-train-v1",)


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
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no code runs);
    a file that is not one (unreadable, truncated, another format) raises :class:`InputError`."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"checkpoint {path} does not exist") from None
    except Exception as error:  # truncated, not a torch file, or pickled objects weights_only refuses
        raise InputError(f"cannot read checkpoint {path} (truncated, or not a PyTorch file): "
                         f"{one_line(error)}") from None
    if (not isinstance(state, dict) or state.get("format") not in (CHECKPOINT_FORMAT, *_OLDER_FORMATS)
            or not isinstance(state.get("epoch"), int) or "model" not in state):
        raise InputError(f"{path} is not a camkit training checkpoint (format {CHECKPOINT_FORMAT!r})")
    return state


def _tensor_digest(data: TensorSet | None) -> str | None:
    if data is None:
        return None
    digest = hashlib.sha1()
    for tensor in (data.images, data.labels):
        array = tensor.contiguous().numpy()
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _model_description(model: nn.Module) -> dict[str, Any]:
    """The architecture: its class, its ``config`` when it has one (NiN's), its parameter shapes."""
    shapes = hashlib.sha1(repr([(n, tuple(p.shape)) for n, p in model.state_dict().items()]).encode())
    config = getattr(model, "config", None)
    return {"class": type(model).__name__, "config": dict(config) if isinstance(config, Mapping) else None,
            "parameters": shapes.hexdigest()}


def run_settings(model: nn.Module, *, epochs: int, lr: float, optimizer: str, weight_decay: float,
                 momentum: float, batch_size: int, warmup_epochs: float, class_weights, label_smoothing: float,
                 flip: bool, seed: int, data: TensorSet | None = None, val: TensorSet | None = None,
                 describe: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything that makes a training run, as JSON-like values: the model's architecture, the
    options of :func:`train`, digests of the training and validation data (when given), and
    ``describe`` (what the caller knows of its data, e.g. the command line's shapes options)."""
    if isinstance(class_weights, torch.Tensor):
        class_weights = class_weights.tolist()
    settings: dict[str, Any] = {
        "model": _model_description(model), "epochs": int(epochs), "lr": float(lr), "optimizer": optimizer,
        "weight_decay": float(weight_decay), "momentum": float(momentum), "batch_size": int(batch_size),
        "warmup_epochs": float(warmup_epochs), "class_weights": class_weights,
        "label_smoothing": float(label_smoothing), "flip": bool(flip), "seed": int(seed),
        "describe": dict(describe or {}),
    }
    if data is not None:
        settings["data"] = _tensor_digest(data)
        settings["val_data"] = _tensor_digest(val)
    return settings


def differences(saved: Mapping[str, Any], now: Mapping[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """``["lr: 0.003 → 0.1", ...]``: the settings (nested keys joined by dots) that differ between
    ``saved`` and ``now``, except the keys in ``ignore`` and those only one side records."""
    found: list[str] = []
    for key in sorted(set(saved) & set(now)):
        if key in ignore or saved[key] == now[key]:
            continue
        if isinstance(saved[key], Mapping) and isinstance(now[key], Mapping):
            found += [f"{key}.{item}" for item in differences(saved[key], now[key])]
        elif key in ("data", "val_data", "parameters"):
            found.append(f"{key} (other content)")
        else:
            found.append(f"{key}: {saved[key]!r} → {now[key]!r}")
    return found


@dataclass
class Plan:
    """What :func:`train` does with an existing checkpoint: start at ``start_epoch`` (0: afresh)
    with ``history`` so far, from ``state`` (``None``: afresh); ``message`` says so (empty when
    there was nothing to continue)."""

    start_epoch: int
    history: list[dict]
    state: dict | None
    message: str


def plan_run(checkpoint, settings: Mapping[str, Any], resume: bool | None = None) -> Plan:
    """Decide how a run with ``settings`` treats ``checkpoint`` (a path or ``None``).

    ``resume=None`` (default): continue a checkpoint only when every setting is the same (an
    interrupted run); ``True``: continue it even to another number of epochs (the learning-rate
    schedule is stretched to the new total; its other settings must still be the same);
    ``False``: start afresh, overwriting it.  Raises :class:`InputError` naming the differing
    settings, or when ``epochs`` is fewer than the epochs already trained."""
    epochs = int(settings["epochs"])
    path = None if checkpoint is None else Path(checkpoint)
    if path is None or resume is False or not path.exists():
        if resume is True:
            raise InputError("nothing to resume: no checkpoint given" if path is None
                             else f"nothing to resume: checkpoint {path} does not exist")
        existed = resume is False and path is not None and path.exists()
        return Plan(0, [], None, f"overwriting {path}: starting afresh" if existed else "")
    state = load_checkpoint(path)
    done, saved = int(state["epoch"]), state.get("settings")
    options = "--resume (resume=True) to continue it, or --overwrite (resume=False) to start afresh"
    changed = [] if saved is None else differences(saved, settings, ignore=("epochs",))
    if changed:
        raise InputError(f"{path} holds a run with other settings ({'; '.join(changed)}): rerun with its "
                         "settings to resume it, or pass --overwrite (resume=False) to start afresh")
    if epochs < done:
        raise InputError(f"{path} has already trained {done} epochs; {epochs} is fewer: pass --overwrite "
                         f"(resume=False) to train afresh, or --epochs of at least {done} to keep them")
    if saved is None and resume is not True:
        raise InputError(f"{path} does not record its settings (written by an older camkit): pass {options}")
    if saved is not None and epochs != saved["epochs"] and resume is not True:
        raise InputError(f"{path} holds a run of {saved['epochs']} epochs ({done} done); {epochs} epochs "
                         f"changes its learning-rate schedule: pass {options}")
    message = (f"resuming {path} from epoch {done + 1} of {epochs}" if done < epochs
               else f"{path} has finished all {done} epochs: nothing to train")
    return Plan(done, list(state.get("history", [])), state, message)


def _make_optimizer(name: str, params, lr: float, weight_decay: float, momentum: float):
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True)
    raise InputError(f"optimizer must be 'adamw' or 'sgd', got {name!r}")


def train(model: nn.Module, train_set, val_set=None, epochs: int = 10, lr: float = 3e-3, *,
          optimizer: str = "adamw", weight_decay: float = 5e-4, momentum: float = 0.9,
          batch_size: int = 64, warmup_epochs: float = 0.5, class_weights=None,
          label_smoothing: float = 0.0, flip: bool = True, checkpoint=None, resume: bool | None = None,
          seed: int = 0, progress: bool = True, log: Callable[[dict], None] | None = None,
          notify: Callable[[str], None] | None = None, describe: Mapping[str, Any] | None = None) -> list[dict]:
    """Train ``model`` on full images with cross-entropy; return one record per epoch.

    ``train_set`` / ``val_set``: data sets of ``{"image", "label"}`` items (e.g. ``Shapes``) or a
    ``TensorSet``; both are rendered into memory once.  ``class_weights``: ``None``, ``"balanced"``
    (inverse class frequency) or a ``(num_classes,)`` tensor.  ``flip`` mirrors half of each batch
    left-right.  With ``checkpoint`` set, the training state and the run's settings
    (:func:`run_settings`, with ``describe``) are saved after every epoch; an existing checkpoint is
    treated as :func:`plan_run` says (``resume``: ``None`` continues only the same run, ``True``
    also to another number of epochs, ``False`` starts afresh), and ``notify`` is told what happens
    (``"resuming run.ckpt from epoch 3 of 5"``).  A finished run loads its weights into ``model``
    and returns its history without training.  ``log`` gets each epoch's record: ``epoch``,
    ``lr``, ``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``seconds``.
    """
    if epochs < 1:
        raise InputError(f"epochs must be >= 1, got {epochs}")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    for name, value in (("lr", lr), ("weight_decay", weight_decay), ("momentum", momentum),
                        ("warmup_epochs", warmup_epochs), ("label_smoothing", label_smoothing)):
        if not math.isfinite(value) or value < 0 or (name == "lr" and value == 0):
            raise InputError(f"{name} must be a finite number {'> 0' if name == 'lr' else '>= 0'}, got {value}")
    data = stack(train_set, progress=progress)
    val = stack(val_set, progress=progress) if val_set is not None else None
    settings = run_settings(model, epochs=epochs, lr=lr, optimizer=optimizer, weight_decay=weight_decay,
                            momentum=momentum, batch_size=batch_size, warmup_epochs=warmup_epochs,
                            class_weights=class_weights, label_smoothing=label_smoothing, flip=flip, seed=seed,
                            data=data, val=val, describe=describe)
    plan = plan_run(checkpoint, settings, resume)
    if notify is not None and plan.message:
        notify(plan.message)
    num_classes = int(getattr(model, "num_classes", data.labels.max().item() + 1))
    criterion = nn.CrossEntropyLoss(weight=_class_weights(class_weights, data.labels, num_classes),
                                    label_smoothing=label_smoothing)
    opt = _make_optimizer(optimizer, model.parameters(), lr, weight_decay, momentum)
    steps_per_epoch = math.ceil(len(data) / batch_size)
    total_steps, warmup = epochs * steps_per_epoch, int(warmup_epochs * steps_per_epoch)

    history, start_epoch, current_lr = plan.history, plan.start_epoch, lr
    if plan.state is not None:
        try:
            model.load_state_dict(plan.state["model"])
            opt.load_state_dict(plan.state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as error:
            raise InputError(f"cannot resume {checkpoint}: its model or optimizer state does not fit: "
                             f"{one_line(error)}") from None

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
                                         "history": history, "settings": settings})
        if log is not None:
            log(record)
    model.eval()
    return history
