"""What score is explained, and which part of the model's output holds it.

A target spec is resolved against the model output into ``classes`` (B, K) and a *scorer*, a
function ``output → scores (B, K)``.  Specs:

* ``None`` — the top-1 prediction (K = 1); with ``top_k=k`` the k best classes (K = k);
* ``int`` — that class for every image;
* a sequence or tensor of shape (B,) or (B, K) — classes per image;
* a callable ``output → (B,)`` scores — any differentiable score (``classes`` are then -1);
* ``Segmentation(cls, mask=None)`` — a dense output's class logit summed over a mask;
* ``camkit.Detection(boxes, labels, iou=0.5)`` — a detector's scores for the detections matching
  given boxes (``camkit.detection``); a detector's output is a list of dicts, one per image.

A target object with a ``resolve(output, top_k)`` method resolves itself (see :class:`Resolvable`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeGuard, Union, runtime_checkable

import torch

from camkit.errors import InputError

__all__ = ["Segmentation", "TargetSpec", "ModelOutput", "Resolvable", "check_class_range", "select_output",
           "select_explained", "resolve_targets", "is_detection_output", "detach_output"]

#: What camkit explains of a model's output: a tensor, or a detector's list of per-image dicts.
ModelOutput = torch.Tensor | list[dict[str, torch.Tensor]]


class Segmentation:
    """Score of a dense output ``(B, N, H, W)``: ``S_b = Σ_{x,y} y[b, cls, x, y] · mask[b, x, y]``.

    ``mask``: (H, W) or (B, H, W), bool or float.  ``None`` uses the pixels predicted as ``cls``
    (``argmax`` over classes), as pytorch-grad-cam's semantic-segmentation target does.  An image
    with an empty mask has score 0 and an all-zero map.
    """

    def __init__(self, cls: int, mask: torch.Tensor | None = None):
        if not isinstance(cls, int) or isinstance(cls, bool):
            raise InputError(f"Segmentation class must be an int, got {cls!r}")
        self.cls = cls
        self.mask = mask

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        """Scores (B,) of a dense output (B, N, H, W) (see the class docstring)."""
        if output.dim() != 4:
            raise InputError(f"Segmentation targets need a dense (B, N, H, W) output, got shape {tuple(output.shape)}")
        check_class_range(torch.tensor([self.cls]), output.shape[1])
        logits = output[:, self.cls].float()
        if self.mask is None:
            mask = (output.argmax(1) == self.cls).float()
        else:
            mask = torch.as_tensor(self.mask, device=output.device).float()
            if mask.shape[-2:] != logits.shape[-2:]:
                raise InputError(f"Segmentation mask of shape {tuple(mask.shape)} does not match the output's "
                                 f"{tuple(logits.shape[-2:])}")
        return (logits * mask).sum((-2, -1))

    def __repr__(self) -> str:
        return f"Segmentation(cls={self.cls}, mask={'None' if self.mask is None else tuple(self.mask.shape)})"


TargetSpec = Union[None, int, Sequence[int], torch.Tensor, Callable[..., torch.Tensor], "Resolvable"]


def is_detection_output(output: object) -> TypeGuard[Sequence[dict[str, torch.Tensor]]]:
    """Whether ``output`` is a detector's: a non-empty list of dicts holding ``boxes`` and ``scores``."""
    return (isinstance(output, (list, tuple)) and len(output) > 0
            and all(isinstance(d, dict) and "boxes" in d and "scores" in d for d in output))


def detach_output(output: ModelOutput) -> ModelOutput:
    """The output without its autograd graph (each tensor of a detector's dicts detached)."""
    if isinstance(output, torch.Tensor):
        return output.detach()
    return [{key: value.detach() if isinstance(value, torch.Tensor) else value for key, value in d.items()}
            for d in output]


def select_output(output: object, output_fn: Callable | None = None) -> torch.Tensor:
    """The tensor to explain: ``output_fn(output)``, a tensor as is, a dict's ``"out"``, a tuple's first element."""
    selected = select_explained(output, output_fn)
    if not isinstance(selected, torch.Tensor):
        raise InputError("the model returns detections (a list of dicts, one per image), not a tensor; "
                         "explain them with camkit.explain(..., targets=camkit.Detection(...))")
    return selected


def select_explained(output: object, output_fn: Callable | None = None) -> ModelOutput:
    """What :func:`camkit.explain` explains: as :func:`select_output`, and a detector's list of dicts as is."""
    if output_fn is not None:
        output = output_fn(output)
    elif is_detection_output(output):
        pass
    elif isinstance(output, dict):
        if "out" not in output:
            raise InputError(f"the model returns a dict with keys {sorted(output)}; pass output=lambda o: o[KEY]")
        output = output["out"]
    elif isinstance(output, (tuple, list)) and output:
        output = output[0]  # namedtuples too: GoogLeNet/Inception's logits come before the aux logits
    if is_detection_output(output):
        return list(output)
    if not isinstance(output, torch.Tensor):
        raise InputError(f"the model output is a {type(output).__name__}, not a tensor; pass output=... to select one")
    return output


@dataclass
class ResolvedTargets:
    """A target spec resolved on the first pass: the classes explained and how to score an output."""

    classes: torch.Tensor  # (B, K) long; -1 where a callable target has no class
    scorer: Callable[[ModelOutput], torch.Tensor]  # output → scores (B, K)


@runtime_checkable
class Resolvable(Protocol):
    """A target that resolves itself against the first pass's (detached) output, e.g. a detector's
    :class:`camkit.Detection`, which fixes the detections it explains there."""

    def resolve(self, output: ModelOutput, top_k: int | None) -> ResolvedTargets:
        """Classes (B, K) and the scorer of every later output."""
        ...


def check_class_range(classes: torch.Tensor, num_classes: int) -> None:
    """Raise an ``InputError`` naming the first class index outside ``0..num_classes-1``."""
    if classes.numel() and (classes.min() < 0 or classes.max() >= num_classes):
        bad = classes[(classes < 0) | (classes >= num_classes)][0].item()
        raise InputError(f"class index {bad} out of range: the model has {num_classes} classes (0..{num_classes - 1})")


def _class_scorer(classes: torch.Tensor) -> Callable[[ModelOutput], torch.Tensor]:
    def scorer(output: ModelOutput) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise InputError("class targets need a (B, num_classes) output, got a detector's list of dicts")
        return output.gather(1, classes.to(output.device)).float()

    return scorer


def _batch_and_device(output: ModelOutput) -> tuple[int, torch.device]:
    if isinstance(output, torch.Tensor):
        return output.shape[0], output.device
    return len(output), output[0]["scores"].device


def resolve_targets(output: ModelOutput, targets: TargetSpec, top_k: int | None) -> ResolvedTargets:
    """Resolve a target spec against the model output (B, N) or (B, N, H, W) of the first pass, or a
    detector's list of dicts (explained by a :class:`Resolvable` target such as ``camkit.Detection``,
    or a callable on the list)."""
    if isinstance(targets, Resolvable):
        return targets.resolve(output, top_k)
    batch, device = _batch_and_device(output)
    if top_k is not None:
        if targets is not None:
            raise InputError("give targets or top_k, not both")
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise InputError(f"top_k must be a positive int, got {top_k!r}")
    if callable(targets) and not isinstance(targets, torch.Tensor):
        score_fn = targets

        def scorer(out: ModelOutput) -> torch.Tensor:
            scores = score_fn(out)
            size = _batch_and_device(out)[0]
            if not isinstance(scores, torch.Tensor) or scores.shape != (size,):
                shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
                raise InputError(f"a target callable must return (B,) = ({size},) scores, got {shape}")
            return scores.float()[:, None]

        cls = targets.cls if isinstance(targets, Segmentation) else -1
        return ResolvedTargets(torch.full((batch, 1), cls, dtype=torch.long, device=device), scorer)
    if not isinstance(output, torch.Tensor):
        raise InputError("the model returns detections (a list of dicts, one per image): explain them with "
                         "targets=camkit.Detection(boxes, labels) or a callable, or leave targets=None for its "
                         "top detection")
    if output.dim() != 2:
        raise InputError(
            f"the model output has shape {tuple(output.shape)}; class targets need (B, num_classes) logits. "
            "For a dense output use targets=camkit.Segmentation(cls) or a callable"
        )
    num_classes = output.shape[1]
    if targets is None:
        k = top_k or 1
        if k > num_classes:
            raise InputError(f"top_k={k} exceeds the model's {num_classes} classes")
        classes = output.detach().topk(k, dim=1).indices
    else:
        if isinstance(targets, bool) or (isinstance(targets, float)):
            raise InputError(f"targets must be class indices, got {targets!r}")
        if isinstance(targets, int):
            classes = torch.full((batch, 1), targets, dtype=torch.long)
        else:
            try:
                classes = torch.as_tensor(targets)
            except (TypeError, ValueError) as error:
                raise InputError("targets must be an int, a (B,) or (B, K) sequence of ints, or a callable: "
                                 f"{error}") from None
            if classes.is_floating_point() or classes.dtype == torch.bool:
                raise InputError(f"targets must be integer class indices, got dtype {classes.dtype}")
            if classes.dim() == 0:
                classes = classes.expand(batch)
            if classes.dim() == 1:
                classes = classes[:, None]
            if classes.dim() != 2 or classes.shape[0] != batch:
                raise InputError(f"got targets of shape {tuple(classes.shape)} for a batch of {batch} images; "
                                 "give one class (or K classes) per image")
        classes = classes.long().to(output.device)
        check_class_range(classes, num_classes)
    return ResolvedTargets(classes, _class_scorer(classes))
