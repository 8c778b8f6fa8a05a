"""What score is explained, and which part of the model's output holds it.

A target spec is resolved against the model output into ``classes`` (B, K) and a *scorer*, a
function ``output → scores (B, K)``.  Specs:

* ``None`` — the top-1 prediction (K = 1); with ``top_k=k`` the k best classes (K = k);
* ``int`` — that class for every image;
* a sequence or tensor of shape (B,) or (B, K) — classes per image;
* a callable ``output → (B,)`` scores — any differentiable score (``classes`` are then -1);
* ``Segmentation(cls, mask=None)`` — a dense output's class logit summed over a mask.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, Union

import torch

from camkit.errors import InputError

__all__ = ["Segmentation", "TargetSpec", "select_output", "resolve_targets"]


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
        _check_class_range(torch.tensor([self.cls]), output.shape[1])
        logits = output[:, self.cls].float()
        if self.mask is None:
            mask = (output.argmax(1) == self.cls).float()
        else:
            mask = torch.as_tensor(self.mask, device=output.device).float()
            if mask.shape[-2:] != logits.shape[-2:]:
                raise InputError(f"Segmentation mask of shape {tuple(mask.shape)} does not match the output's {tuple(logits.shape[-2:])}")
        return (logits * mask).sum((-2, -1))

    def __repr__(self) -> str:
        return f"Segmentation(cls={self.cls}, mask={'None' if self.mask is None else tuple(self.mask.shape)})"


TargetSpec = Union[None, int, Sequence[int], torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]


def select_output(output: object, output_fn: Callable | None = None) -> torch.Tensor:
    """The tensor to explain: ``output_fn(output)``, a tensor as is, a dict's ``"out"``, a tuple's first element."""
    if output_fn is not None:
        output = output_fn(output)
    elif isinstance(output, dict):
        if "out" not in output:
            raise InputError(f"the model returns a dict with keys {sorted(output)}; pass output=lambda o: o[KEY]")
        output = output["out"]
    elif isinstance(output, (tuple, list)) and output:
        output = output[0]  # namedtuples too: GoogLeNet/Inception's logits come before the aux logits
    if not isinstance(output, torch.Tensor):
        raise InputError(f"the model output is a {type(output).__name__}, not a tensor; pass output=... to select one")
    return output


@dataclass
class ResolvedTargets:
    classes: torch.Tensor  # (B, K) long; -1 where a callable target has no class
    scorer: Callable[[torch.Tensor], torch.Tensor]  # output → scores (B, K)


def _check_class_range(classes: torch.Tensor, num_classes: int) -> None:
    if classes.numel() and (classes.min() < 0 or classes.max() >= num_classes):
        bad = classes[(classes < 0) | (classes >= num_classes)][0].item()
        raise InputError(f"class index {bad} out of range: the model has {num_classes} classes (0..{num_classes - 1})")


def _class_scorer(classes: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    def scorer(output: torch.Tensor) -> torch.Tensor:
        return output.gather(1, classes.to(output.device)).float()

    return scorer


def resolve_targets(output: torch.Tensor, targets: TargetSpec, top_k: int | None) -> ResolvedTargets:
    """Resolve a target spec against the model output (B, N) or (B, N, H, W) of the first pass."""
    batch = output.shape[0]
    if top_k is not None:
        if targets is not None:
            raise InputError("give targets or top_k, not both")
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise InputError(f"top_k must be a positive int, got {top_k!r}")
    if callable(targets) and not isinstance(targets, torch.Tensor):
        def scorer(out: torch.Tensor) -> torch.Tensor:
            scores = targets(out)
            if not isinstance(scores, torch.Tensor) or scores.shape != (out.shape[0],):
                shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
                raise InputError(f"a target callable must return (B,) = ({out.shape[0]},) scores, got {shape}")
            return scores.float()[:, None]

        cls = targets.cls if isinstance(targets, Segmentation) else -1
        return ResolvedTargets(torch.full((batch, 1), cls, dtype=torch.long, device=output.device), scorer)
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
                raise InputError(f"targets must be an int, a (B,) or (B, K) sequence of ints, or a callable: {error}") from None
            if classes.is_floating_point() or classes.dtype == torch.bool:
                raise InputError(f"targets must be integer class indices, got dtype {classes.dtype}")
            if classes.dim() == 0:
                classes = classes.expand(batch)
            if classes.dim() == 1:
                classes = classes[:, None]
            if classes.dim() != 2 or classes.shape[0] != batch:
                raise InputError(f"got targets of shape {tuple(classes.shape)} for a batch of {batch} images; give one class (or K classes) per image")
        classes = classes.long().to(output.device)
        _check_class_range(classes, num_classes)
    return ResolvedTargets(classes, _class_scorer(classes))
