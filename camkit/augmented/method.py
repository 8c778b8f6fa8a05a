"""``"augmented-gradcam"``: the method behind ``camkit.explain(model, images, method="augmented-gradcam")``."""
from __future__ import annotations

import torch

from camkit import methods as method_registry
from camkit.augmented.baselines import BASELINES, baseline
from camkit.augmented.operators import RotoTranslation, _size2, sample_transforms
from camkit.augmented.solvers import SOLVERS, superresolve
from camkit.errors import InputError
from camkit.methods import register
from camkit.methods.base import Method, Session

__all__ = ["AugmentedGradCAM"]

_BASES = ("gradcam", "cam")
_CPU_BUDGET = 2 * 2**30


@register("augmented-gradcam")
class AugmentedGradCAM(Method):
    r"""Augmented Grad-CAM (Morbidelli et al., ICASSP 2020): the CAMs :math:`g_l` of ``L``
    roto-translated copies :math:`A_l x` (``A_1`` = identity), super-resolved into one map

    .. math:: h^\star = \arg\min_h \tfrac12 \sum_l \|D A_l h - g_l\|^2 + \lambda\,\mathrm{TV}_{\ell_1}(h)
              + \tfrac{\mu}{2}\|h\|^2

    at ``size`` (default: the input size), with each :math:`g_l` divided by its max first (the
    reference code's choice).  Options: ``L`` copies, ``max_angle`` radians and ``max_shift``
    pixels (default ±0.5 rad, ±30/224 of the image size), ``seed`` (same seed, same transforms,
    same map), ``lam_tv``/``mu`` (default ``0.001·L``/``0.0001·L``), ``iters``, ``solver``
    (``"subgradient"`` as in the paper, or ``"primal-dual"``), ``tol``; ``baseline="single" |
    "max" | "avg"`` returns that baseline instead of solving; ``base="gradcam" | "cam"`` the CAM
    of each copy.  Copies go through the model in micro-batches of ``copies_per_batch`` copies
    of the whole batch, by default as many as ``memory_budget`` bytes allow (default: 2 GiB on
    CPU, half the free memory on CUDA).  Targets must be classes (``None``, ints, ``top_k``).

    >>> e = camkit.explain(model, images, method="augmented-gradcam", L=32, solver="primal-dual")  # doctest: +SKIP
    >>> e.raw.shape   # (B, K, H, W): the super-resolved maps, at the input size
    """

    def __init__(
        self,
        L: int = 100,
        *,
        max_angle: float = 0.5,
        max_shift: float | None = None,
        seed: int = 0,
        lam_tv: float | None = None,
        mu: float | None = None,
        iters: int = 200,
        solver: str = "subgradient",
        tol: float = 0.0,
        baseline: str | None = None,
        base: str = "gradcam",
        size=None,
        normalize: bool = True,
        copies_per_batch: int | None = None,
        memory_budget: int | None = None,
    ):
        if int(L) != L or L < 1:
            raise InputError(f"L must be a positive int, got {L!r}")
        if solver not in SOLVERS:
            raise InputError(f"unknown solver {solver!r}; choose one of {SOLVERS}")
        if baseline is not None and baseline not in BASELINES:
            raise InputError(f"unknown baseline {baseline!r}; choose one of {BASELINES} or None")
        if base not in _BASES:
            raise InputError(f"base must be one of {_BASES}, got {base!r}")
        if copies_per_batch is not None and (int(copies_per_batch) != copies_per_batch or copies_per_batch < 1):
            raise InputError(f"copies_per_batch must be a positive int, got {copies_per_batch!r}")
        self.L = int(L)
        self.max_angle, self.max_shift, self.seed = float(max_angle), max_shift, int(seed)
        self.lam_tv, self.mu, self.iters, self.solver, self.tol = lam_tv, mu, int(iters), solver, float(tol)
        self.baseline, self.normalize = baseline, bool(normalize)
        self.size = None if size is None else _size2(size)
        self.copies_per_batch, self.memory_budget = copies_per_batch, memory_budget
        self.base = method_registry.get(base)
        self.needs_gradients = self.base.needs_gradients

    def __call__(self, session: Session) -> dict[str, torch.Tensor]:
        """Per tapped layer, the super-resolved (or baseline) map of each image and class, (B, K, *size)."""
        images = session.images
        first = {name: torch.relu(maps.float()) for name, maps in self.base(session).items()}   # copy 1 = identity
        if (session.classes < 0).any():
            raise InputError("augmented-gradcam explains class targets (None, ints, top_k), not callables")
        cams = self.copy_cams(session, first)                                                   # {layer: (B, K, L, h, w)}
        size = self.size or tuple(images.shape[-2:])
        angles, shifts = self.transforms(images.shape[-2:])
        # Transforms act on the image grid; rescale the shifts if the maps are solved at another size.
        scale = torch.tensor([size[1] / images.shape[-1], size[0] / images.shape[-2]], dtype=torch.float64)
        out = {}
        for name, stack in cams.items():
            batch, classes = stack.shape[:2]
            flat = stack.flatten(0, 1)                                                          # (B·K, L, h, w)
            if self.normalize:
                peak = flat.amax(dim=(-2, -1), keepdim=True)
                flat = torch.where(peak > 0, flat / torch.where(peak > 0, peak, torch.ones_like(peak)), flat)
            if self.baseline is not None:
                maps = baseline(flat, angles, shifts * scale, size, self.baseline)
            else:
                maps = superresolve(flat, angles.to(flat.device), (shifts * scale).to(flat.device), size,
                                    lam_tv=self.lam_tv, mu=self.mu, iters=self.iters, solver=self.solver,
                                    tol=self.tol).maps
            out[name] = maps.reshape(batch, classes, *maps.shape[-2:])
        return out

    def transforms(self, size) -> tuple[torch.Tensor, torch.Tensor]:
        """``angles (L,)``, ``shifts (L, 2)`` for images of ``size``: the same for every batch."""
        return sample_transforms(self.L, size, self.max_angle, self.max_shift, seed=self.seed)

    def copy_cams(self, session: Session, first: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rectified CAMs of all ``L`` copies, ``{layer: (B, K, L, h, w)}``, the copies in micro-batches."""
        images = session.images
        batch = images.shape[0]
        angles, shifts = self.transforms(images.shape[-2:])
        per_batch = self._copies_per_batch(images, first)
        stacks = {name: [maps[:, :, None]] for name, maps in first.items()}
        for start in range(1, self.L, per_batch):
            stop = min(self.L, start + per_batch)
            count = stop - start
            warp = RotoTranslation(angles[start:stop], shifts[start:stop], images.shape[-2:], device=images.device,
                                   dtype=images.dtype if images.dtype == torch.float64 else torch.float32)
            copies = warp(images).transpose(1, 2).reshape(batch * count, *images.shape[1:])  # image-major
            sub = session.derive(copies, targets=session.classes.repeat_interleave(count, 0))
            for name, maps in self.base(sub).items():
                maps = torch.relu(maps.float())
                stacks[name].append(maps.reshape(batch, count, *maps.shape[1:]).transpose(1, 2))
        return {name: torch.cat(parts, dim=2) for name, parts in stacks.items()}

    def _copies_per_batch(self, images: torch.Tensor, first: dict[str, torch.Tensor]) -> int:
        if self.copies_per_batch is not None:
            return int(self.copies_per_batch)
        budget = self.memory_budget
        if budget is None:
            if images.device.type == "cuda":
                budget = torch.cuda.mem_get_info(images.device)[0] // 2
            else:
                budget = _CPU_BUDGET
        # A forward pass of a CNN holds activations ~100x the input image (VGG16 at 224²: ~60 MB
        # per image in float32) plus the copy and the tapped gradients.
        per_image = images[0].numel() * images.element_size() * 100
        per_image += sum(m[0].numel() for m in first.values()) * 4 * 2
        return max(1, min(self.L - 1, int(budget) // (per_image * images.shape[0])))

    def __repr__(self) -> str:
        return (f"AugmentedGradCAM(L={self.L}, solver={self.solver!r}, iters={self.iters}, "
                f"baseline={self.baseline!r}, base={self.base.name!r}, seed={self.seed})")
