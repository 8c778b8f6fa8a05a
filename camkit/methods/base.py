"""The one override point shared by every CAM method, and the session a method runs in.

A :class:`Session` belongs to one ``Explainer`` call: it knows the model, the images, the tapped
layers, the target spec and the classifier head, and runs forward passes for the method.  A
:class:`Method` turns a session into raw class maps before ReLU, ``{layer: (B, K, h, w)}``.  Most
methods only override :meth:`Method.combine`, which sees one layer's activations ``A`` (B, C, h, w)
and the gradients ``∂S_k/∂A`` (B, K, C, h, w) of the K explained scores.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

import torch
from torch import nn

from camkit.errors import InputError, LayerError
from camkit.hooks import LayerTap
from camkit.layers import Head, find_head
from camkit.targets import ResolvedTargets, resolve_targets, select_output

__all__ = ["Method", "Pass", "Session"]


@dataclass
class Pass:
    """What one forward (and backward) pass produced.

    ``activations[name]``: (B, C, h, w) float32, detached.  ``gradients[name]``: (B, K, C, h, w)
    float32, ``∂S_k/∂A`` of each explained score, or ``None`` when not asked for.
    ``output``: the selected model output, detached.  ``scores``: (B, K) float32.
    """

    output: torch.Tensor
    activations: dict[str, torch.Tensor]
    gradients: dict[str, torch.Tensor] | None
    scores: torch.Tensor


@dataclass
class Session:
    """One explanation request: model, images (B, 3, H, W), tapped layers and the target spec."""

    model: nn.Module
    images: torch.Tensor
    layers: dict[str, nn.Module]
    targets: object = None
    top_k: int | None = None
    output_fn: Callable | None = None
    head_spec: object = None
    resolved: ResolvedTargets | None = field(default=None, init=False)
    first: Pass | None = field(default=None, init=False)

    @property
    def classes(self) -> torch.Tensor:
        """(B, K) class indices explained, fixed by the first pass (``-1`` for callable targets)."""
        if self.resolved is None:
            raise RuntimeError("classes are known after the first forward pass")
        return self.resolved.classes

    def select(self, output: object) -> torch.Tensor:
        return select_output(output, self.output_fn)

    def derive(self, images: torch.Tensor, targets: object = None, output_fn: Callable | None = None) -> "Session":
        """A session on other images (copies, flips, …) with this one's model, layers and head.

        Its targets default to the classes this session explains (a callable target is kept);
        ``output_fn`` defaults to this session's.
        """
        if targets is None:
            custom = callable(self.targets) and not isinstance(self.targets, torch.Tensor)
            targets = self.targets if custom else self.classes
        return Session(self.model, images, self.layers, targets, None, output_fn or self.output_fn, self.head_spec)

    def head(self, layer: str) -> Head:
        """The CAM classifier head that pools ``layer`` (found numerically; cached)."""
        return find_head(self.model, self.images, layer, self.select, self.head_spec)

    def forward(self, images: torch.Tensor | None = None, gradients: bool = True) -> Pass:
        """Run the model on ``images`` (default: the session's) with the layers tapped.

        The trunk before the first tapped layer runs without a graph; with ``gradients=True`` the
        K scores are backpropagated to the tapped layers only (one backward through the head per
        explained class, never into parameters).  The first call fixes the explained classes.
        """
        images = self.images if images is None else images
        tap = LayerTap(self.layers, start_graph=gradients)
        with torch.no_grad(), tap:
            output = self.select(self.model(images))
            if self.resolved is None:
                self.resolved = resolve_targets(output.detach(), self.targets, self.top_k)
            scores = self.resolved.scorer(output)
        activations = self._checked_activations(tap.outputs)
        grads = self._gradients(scores, activations) if gradients else None
        result = Pass(
            output=output.detach(),
            activations={name: a.detach().float() for name, a in activations.items()},
            gradients=grads,
            scores=scores.detach().float(),
        )
        if self.first is None:
            self.first = result
        return result

    def scores_of(self, variants: torch.Tensor, probabilities: bool = False) -> torch.Tensor:
        """Scores (n, B, K) of the explained classes for n variants of each image, (n, B, 3, H, W).

        One batched forward of n·B images, no hooks, no graph (masked or noisy copies).  Class
        targets are gathered from the logits (or their softmax with ``probabilities=True``);
        callable targets are applied to each block of B outputs, so per-image targets such as a
        segmentation mask stay aligned with their image.
        """
        if self.resolved is None:
            raise RuntimeError("scores_of needs the explained classes: run forward() first")
        n, b = variants.shape[:2]
        with torch.no_grad():
            output = self.select(self.model(variants.flatten(0, 1))).float()
        classes = self.resolved.classes
        if output.dim() == 2 and bool((classes >= 0).all()):
            if probabilities:
                output = output.softmax(-1)
            return output.view(n, b, -1).gather(2, classes[None].expand(n, -1, -1).to(output.device))
        if probabilities:
            raise InputError("probability weighting needs class targets on a (B, num_classes) output")
        blocks = output.view(n, b, *output.shape[1:])
        return torch.stack([self.resolved.scorer(block).float() for block in blocks])

    def _checked_activations(self, outputs: dict[str, object]) -> dict[str, torch.Tensor]:
        checked = {}
        for name in self.layers:
            if name not in outputs:
                raise LayerError(f"layer {name!r} was not reached by the forward pass (is it used in eval mode?)")
            value = outputs[name]
            if not isinstance(value, torch.Tensor) or value.dim() != 4:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise LayerError(f"layer {name!r} outputs {shape}, not a (B, C, h, w) feature map; choose a convolutional layer")
            checked[name] = value
        return checked

    def _gradients(self, scores: torch.Tensor, activations: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        names = list(activations)
        tensors = [activations[name] for name in names]
        if not scores.requires_grad:
            raise LayerError(
                f"the explained score does not depend on layer(s) {', '.join(map(repr, names))} through "
                "operations that record gradients (does the model's forward disable gradients after it?)"
            )
        per_class: list[list[torch.Tensor]] = [[] for _ in names]
        count = scores.shape[1]
        for k in range(count):
            grads = torch.autograd.grad(
                scores[:, k].sum(), tensors, retain_graph=k < count - 1, allow_unused=True
            )
            for i, grad in enumerate(grads):
                per_class[i].append(torch.zeros_like(tensors[i]) if grad is None else grad)
        return {name: torch.stack(g, dim=1).float() for name, g in zip(names, per_class)}


class Method:
    """Base class of CAM methods: subclasses set ``needs_gradients`` and override ``combine``.

    ``__call__(session)`` returns ``{layer: maps}`` with maps (B, K, h, w) *before* ReLU; the
    explainer applies ReLU, upsampling and normalisation.  Methods that need other passes
    (perturbations, noise) override ``__call__`` and use ``session.forward`` / ``session.scores_of``.
    """

    name: ClassVar[str] = ""
    needs_gradients: ClassVar[bool] = True

    def __call__(self, session: Session) -> dict[str, torch.Tensor]:
        result = session.forward(gradients=self.needs_gradients)
        return {
            name: self.combine(acts, None if result.gradients is None else result.gradients[name], session, name)
            for name, acts in result.activations.items()
        }

    def combine(
        self, activations: torch.Tensor, gradients: torch.Tensor | None, session: Session, layer: str
    ) -> torch.Tensor:
        """Activations (B, C, h, w) and gradients (B, K, C, h, w) → maps (B, K, h, w) before ReLU."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
