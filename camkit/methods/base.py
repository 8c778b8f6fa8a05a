"""The method contract, and the session a method runs in.

A :class:`Session` belongs to one ``Explainer`` call: it knows the model, the images
``(B, C, *S)`` (``S`` = ``(L,)``, ``(H, W)`` or ``(T, H, W)``), the tapped layers, the target spec
and the classifier head, and runs forward passes for the method.  Every tapped output reaches a
method as channels-first maps ``A`` (B, C, *grid), whatever its layout in the model
(:mod:`camkit.layouts`: Swin's channel-last maps, ViT's tokens …), and the gradients of the K
explained scores as ``∂S_k/∂A`` (B, K, C, *grid).

The contract — every override point, in one place:

=====================  =========================================================================
``name``               registry name (set by ``@register``)
``needs_gradients``    whether ``session.forward`` backpropagates the scores (``True``)
``spatial_ranks``      grid ranks the method supports: ``(2,)`` (images only, the default for a
                       method that does not say), or ``(1, 2, 3)`` when its formula does not
                       depend on the grid's rank; other inputs get a one-line ``InputError``
``__call__(session)``  → ``{layer: maps (B, K, *grid)}`` before ReLU.  The default runs one pass
                       and calls ``combine`` per layer; methods that need other passes override it
                       and use ``session.forward`` / ``session.scores_of`` / ``session.derive``
``combine(A, G, session, layer)``  activations (B, C, *grid) and gradients (B, K, C, *grid) (None
                       when ``needs_gradients`` is False) → maps (B, K, *grid)
``weighted_maps(session)``  → ``{layer: (B, K, C, *grid)}`` whose channel sum is the map; lets
                       ``smooth="eigen"`` replace that sum by the first principal component
``weights(A, G, session, layer)``  :class:`~camkit.methods.weighted.ChannelWeightMethod`:
                       channel weights (B, K, C); ``channel_weights(session)`` for extra passes
``elementwise(A, G, session, layer)``  :class:`~camkit.methods.weighted.ElementwiseMethod`:
                       weighted activations (B, K, C, *grid)
=====================  =========================================================================
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch
from torch import nn

from camkit.detection import Detection, input_extent
from camkit.errors import InputError, LayerError, all_finite
from camkit.hooks import LayerTap, run_model
from camkit.layers import Head, find_head, nonfinite_source
from camkit.layouts import Layout, Reshape, custom_layout, find_layout
from camkit.targets import (
    ModelOutput,
    ResolvedTargets,
    TargetSpec,
    detach_output,
    is_detection_output,
    resolve_targets,
    select_explained,
)

__all__ = ["Method", "Pass", "Session", "LayerMaps", "needed", "weighted_sum", "per_channel", "spatial_mean"]

GradientsT = TypeVar("GradientsT", torch.Tensor, dict[str, torch.Tensor])

#: ``{layer name: tensor}``, what a method returns: maps (B, K, *grid) or weighted stacks (B, K, C, *grid).
LayerMaps = dict[str, torch.Tensor]


def spatial_mean(values: torch.Tensor, first: int) -> torch.Tensor:
    """Mean over every axis from ``first`` on: gradients (B, K, C, *grid), ``first=3`` → (B, K, C)."""
    return values.flatten(first).mean(-1)


def per_channel(weights: torch.Tensor, rank: int) -> torch.Tensor:
    """Channel weights (..., C) viewed as (..., C, 1, …, 1) to broadcast over a grid of ``rank`` axes."""
    return weights.view(*weights.shape, *[1] * rank)


def weighted_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """``M_k = Σ_c w_kc A_c``: weights (B, K, C), activations (B, C, *grid) → maps (B, K, *grid)."""
    return torch.einsum("bkc,bc...->bk...", weights, activations)


def needed(gradients: GradientsT | None) -> GradientsT:
    """The gradients (a tensor, or ``Pass.gradients``) a method with ``needs_gradients = True`` always receives."""
    if gradients is None:
        raise RuntimeError("this method reads gradients: its class must set needs_gradients = True")
    return gradients


@dataclass
class Pass:
    """What one forward (and backward) pass produced.

    ``activations[name]``: (B, C, *grid) float32, detached.  ``gradients[name]``: (B, K, C, *grid)
    float32, ``∂S_k/∂A`` of each explained score, or ``None`` when not asked for.
    ``output``: the selected model output, detached.  ``scores``: (B, K) float32.
    """

    output: ModelOutput
    activations: dict[str, torch.Tensor]
    gradients: dict[str, torch.Tensor] | None
    scores: torch.Tensor


@dataclass
class Session:
    """One explanation request: model, images (B, C, *S), tapped layers and the target spec.

    ``reshape``: a user's ``(B, ...) → (B, C, *grid)`` for every tapped output, replacing layout
    detection.  Set by the first pass: ``resolved`` (the explained classes and scorer), ``layouts``
    (per layer), ``extent`` (the part of the grid the image covers when the model pads, else None).
    """

    model: nn.Module
    images: torch.Tensor
    layers: dict[str, nn.Module]
    targets: TargetSpec = None
    top_k: int | None = None
    output_fn: Callable[[object], object] | None = None
    head_spec: str | nn.Module | None = None
    reshape: Reshape | None = None
    resolved: ResolvedTargets | None = field(default=None, init=False)
    layouts: dict[str, Layout] = field(default_factory=dict, init=False)
    extent: tuple[float, ...] | None = field(default=None, init=False)
    _first: Pass | None = field(default=None, init=False, repr=False)

    @property
    def rank(self) -> int:
        """Number of spatial axes of the images and maps: 1 (signals), 2 (images) or 3 (clips)."""
        return self.images.dim() - 2

    @property
    def first(self) -> Pass:
        """The first pass: its output, activations and scores define the explanation."""
        if self._first is None:
            raise RuntimeError("no pass has run yet: call forward() first")
        return self._first

    @property
    def classes(self) -> torch.Tensor:
        """(B, K) class indices explained, fixed by the first pass (``-1`` for callable targets)."""
        if self.resolved is None:
            raise RuntimeError("classes are known after the first forward pass")
        return self.resolved.classes

    def select(self, output: object) -> ModelOutput:
        """What is explained of a raw model output (``output_fn``, or :func:`camkit.targets.select_explained`)."""
        return select_explained(output, self.output_fn)

    def derive(self, images: torch.Tensor, targets: TargetSpec = None,
               output_fn: Callable[[object], object] | None = None) -> Session:
        """A session on other images (copies, flips, …) with this one's model, layers, head and reshape.

        Its targets default to the classes this session explains (a callable target is kept);
        ``output_fn`` defaults to this session's.
        """
        if targets is None:
            custom = callable(self.targets) and not isinstance(self.targets, torch.Tensor)
            targets = self.targets if custom else self.classes
        return Session(self.model, images, self.layers, targets, None, output_fn or self.output_fn,
                       self.head_spec, self.reshape)

    def head(self, layer: str) -> Head:
        """The CAM classifier head that pools ``layer`` (found numerically; cached)."""
        return find_head(self.model, self.images, layer, self.select, self.head_spec, self.layouts.get(layer))

    def forward(self, images: torch.Tensor | None = None, gradients: bool = True) -> Pass:
        """Run the model on ``images`` (default: the session's) with the layers tapped.

        The trunk before the first tapped layer runs without a graph; with ``gradients=True`` the
        K scores are backpropagated to the tapped layers only (one backward through the head per
        explained class, never into parameters).  The first call fixes the explained classes.
        Non-finite scores or activations raise an ``InputError`` naming their source.
        """
        images = self.images if images is None else images
        tap = LayerTap(self.layers, start_graph=gradients)
        with torch.no_grad(), tap, input_extent(self.model) as extents:
            output = self.select(run_model(self.model, images))
            if self.resolved is None:
                targets = self.targets
                if targets is None and is_detection_output(output):
                    targets = Detection()
                self.resolved = resolve_targets(detach_output(output), targets, self.top_k)
            scores = self.resolved.scorer(output)
        if self.extent is None and extents:
            self.extent = extents[0]
        raw = self._tapped(tap.outputs, images)
        activations = {name: self.layouts[name].to_maps(value).detach().float() for name, value in raw.items()}
        self._check_finite(images, scores, activations)
        result = Pass(
            output=detach_output(output),
            activations=activations,
            gradients=self._gradients(scores, raw) if gradients else None,
            scores=scores.detach().float(),
        )
        if self._first is None:
            self._first = result
        return result

    def scores_of(self, variants: torch.Tensor, probabilities: bool = False) -> torch.Tensor:
        """Scores (n, B, K) of the explained classes for n variants of each image, (n, B, C, *S).

        One batched forward of n·B images, no hooks, no graph (masked or noisy copies).  Class
        targets are gathered from the logits (or their softmax with ``probabilities=True``);
        callable targets (and detections) are applied to each block of B outputs, so per-image
        targets such as a segmentation mask stay aligned with their image.
        """
        if self.resolved is None:
            raise RuntimeError("scores_of needs the explained classes: run forward() first")
        n, b = variants.shape[:2]
        with torch.no_grad():
            output = self.select(run_model(self.model, variants.flatten(0, 1)))
        classes = self.resolved.classes
        if isinstance(output, torch.Tensor) and output.dim() == 2 and bool((classes >= 0).all()):
            output = output.float()
            if probabilities:
                output = output.softmax(-1)
            scores = output.view(n, b, -1).gather(2, classes[None].expand(n, -1, -1).to(output.device))
        elif probabilities:
            raise InputError("probability weighting needs class targets on a (B, num_classes) output")
        else:
            blocks: Sequence[ModelOutput] = (
                list(output.float().view(n, b, *output.shape[1:])) if isinstance(output, torch.Tensor)
                else [output[i * b:(i + 1) * b] for i in range(n)]
            )
            scores = torch.stack([self.resolved.scorer(block).float() for block in blocks])
        if not bool(torch.isfinite(scores).all()):
            source = self._source(variants)
            raise InputError(f"NaN or Inf in the explained score of a masked or perturbed copy: {source}")
        return scores

    def _tapped(self, outputs: dict[str, object], images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each tapped layer's raw output, its layout found (or checked) on the first pass."""
        checked = {}
        for name in self.layers:
            if name not in outputs:
                raise LayerError(f"layer {name!r} was not reached by the forward pass (is it used in eval mode?)")
            value = outputs[name]
            if not isinstance(value, torch.Tensor):
                keys = f" with keys {list(value)}" if isinstance(value, dict) else ""
                raise LayerError(f"layer {name!r} outputs a {type(value).__name__}{keys}, not a tensor; tap a module "
                                 "that outputs one map (e.g. one FPN level: backbone.fpn.layer_blocks.0)")
            if value.dim() < 3 or value.shape[0] != images.shape[0]:
                raise LayerError(f"layer {name!r} outputs shape {tuple(value.shape)}, not a (B, C, h, w) feature map "
                                 f"(or (B, C, *grid) of a signal or clip) of the {images.shape[0]} input(s); "
                                 "choose a convolutional or patch layer")
            if name not in self.layouts:
                self.layouts[name] = self._layout(name, value, images)
            checked[name] = value
        return checked

    def _layout(self, name: str, value: torch.Tensor, images: torch.Tensor) -> Layout:
        spatial = tuple(images.shape[2:])
        if self.reshape is not None:
            try:
                layout = custom_layout(self.reshape, value)
            except ValueError as error:
                raise InputError(f"layer {name!r}: {error}") from None
            if len(layout.grid) != len(spatial):
                raise InputError(f"reshape gave maps with a {len(layout.grid)}-D grid {layout.grid} for "
                                 f"{len(spatial)}-D inputs {spatial}; it must return (B, C, *grid) "
                                 f"with {len(spatial)} grid axes")
            return layout
        found = find_layout(value, spatial)
        if found is None:
            raise LayerError(
                f"layer {name!r} outputs shape {tuple(value.shape)}, which is not a (B, C, *grid) map over inputs of "
                f"size {spatial}: camkit reads channels-first (B, C, *grid), channels-last (B, *grid, C) and tokens "
                "(B, prefix + grid, C); pass reshape=lambda t: ... returning (B, C, *grid)"
            )
        return found

    def _check_finite(self, images: torch.Tensor, scores: torch.Tensor, activations: dict[str, torch.Tensor]) -> None:
        bad = [f"layer {n!r}" for n, a in activations.items() if not all_finite(a)]
        if not all_finite(scores):
            bad.insert(0, "the explained score")
        if bad:
            raise InputError(f"NaN or Inf in {' and '.join(bad)}: {self._source(images)}")

    def _source(self, images: torch.Tensor) -> str:
        """Which image and model part make a value non-finite (rerun once, on the error path only)."""
        flat = images.flatten(0, images.dim() - self.images.dim())
        for i, image in enumerate(flat):
            where = nonfinite_source(self.model, image[None])
            if where is not None:
                return f"on input {i}, {where}"
        return "no parameter, buffer or module output is NaN or Inf when the inputs run one at a time"

    def _gradients(self, scores: torch.Tensor, raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        names = list(raw)
        tensors = [raw[name] for name in names]
        if not scores.requires_grad:
            raise LayerError(
                f"the explained score does not depend on layer(s) {', '.join(map(repr, names))} through "
                "operations that record gradients (does the model's forward disable gradients after it?)"
            )
        per_class: list[list[torch.Tensor]] = [[] for _ in names]
        count = scores.shape[1]
        for k in range(count):
            grads = torch.autograd.grad(scores[:, k].sum(), tensors, retain_graph=k < count - 1, allow_unused=True)
            for i, grad in enumerate(grads):
                per_class[i].append(torch.zeros_like(tensors[i]) if grad is None else grad)
        return {name: torch.stack([self.layouts[name].to_maps(g) for g in grads], dim=1).float()
                for name, grads in zip(names, per_class, strict=True)}


class Method:
    """Base class of CAM methods; the contract is in this module's docstring.

    ``__call__(session)`` returns ``{layer: maps}`` with maps (B, K, *grid) *before* ReLU; the
    explainer applies ReLU, upsampling and normalisation.
    """

    name: str = ""
    needs_gradients: bool = True
    spatial_ranks: tuple[int, ...] = (2,)

    def __call__(self, session: Session) -> LayerMaps:
        """One pass, then ``combine`` per tapped layer: ``{layer: (B, K, *grid)}`` before ReLU."""
        result = session.forward(gradients=self.needs_gradients)
        return {
            name: self.combine(acts, None if result.gradients is None else result.gradients[name], session, name)
            for name, acts in result.activations.items()
        }

    def combine(
        self, activations: torch.Tensor, gradients: torch.Tensor | None, session: Session, layer: str
    ) -> torch.Tensor:
        """Activations (B, C, *grid) and gradients (B, K, C, *grid) → maps (B, K, *grid) before ReLU."""
        raise NotImplementedError(f"{type(self).__name__} must override combine or __call__")

    def weighted_maps(self, session: Session) -> LayerMaps:
        """``{layer: (B, K, C, *grid)}`` weighted activations whose channel sum is the map (optional)."""
        raise NotImplementedError(f"{type(self).__name__} does not expose weighted activations")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
