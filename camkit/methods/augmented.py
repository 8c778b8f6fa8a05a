"""``"augmented-gradcam"``: the method behind ``camkit.explain(model, images, method="augmented-gradcam")``.

The math (operators, solvers, baselines) lives in :mod:`camkit.augmented`; this module runs the
copies through the model and hands their CAMs to it.
"""
from __future__ import annotations

import math

import torch

from camkit import methods as method_registry
from camkit.augmented.baselines import BASELINES, baseline
from camkit.augmented.operators import DOWNSAMPLINGS, PADDINGS, ImageCopies, _size2, sample_transforms
from camkit.augmented.solvers import MU_PER_COPY, SOLVERS, forward_model, superresolve
from camkit.errors import InputError, finite_number
from camkit.methods import register
from camkit.methods.base import Method, Session

__all__ = ["AugmentedGradCAM", "AugmentedAverage", "AugmentedMax", "FRAMES"]

_BASES = ("gradcam", "cam")
#: How view cells whose footprint left the frame count in the data term.
FRAMES = ("mask", "coverage", "all")
_CPU_BUDGET = 2 * 2**30
#: Images per forward pass of the copies on a CPU (unless ``copies_per_batch`` or ``memory_budget``
#: is given): a CPU pass gains nothing from more images once its convolutions use every core, and
#: loses when the activations leave the caches — ResNet-50 at 224² measured 40–53 ms per image at
#: B = 4–8 and 68–77 ms at B = 16–64 on 2 cores (docs/augmented.md, "Cost").
_CPU_IMAGES_PER_PASS = 8
#: λ per copy of the method (λ = 0.00003·L, 3 % of the reference code's): measured best with γ = 2
#: and the converged solver on held-out shapes images (benchmarks/augmented_forward_model.py;
#: docs/augmented.md; 0.0001·L was best while the solver stopped 2-4 % short of the optimum).
LAM_TV_PER_COPY = 3e-5
#: Default σ of the point-spread function, in map cells (8 px for 7×7 maps of 224²): the network's
#: Grad-CAM fits D(G_σ mask) best near σ = 4–8 px, and σ = 8 px scored best on held-out images.
BLUR_CELLS = 0.25
#: The default solve grid: this many pixels per map cell along each side, at most the input size
#: (56² for 7×7 maps of 224², 112² for 14×14).  Measured with λ and μ rescaled to the grid: the
#: coarse model's held-out metrics were the same from 4 to 32 pixels per cell, and the known-truth
#: problem lost 0.05 dB (7×7 views) and 0.4 dB (14×14) against the input size (docs/augmented.md).
SOLVE_PIXELS_PER_CELL = 8


def _optional(check, value, name: str, **options):
    """``None``, or ``check(value, name, **options)``."""
    return None if value is None else check(value, name, **options)


def _positive_int(value, name: str, *, minimum: int = 1) -> int:
    valid = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not valid or int(value) != value or value < minimum:
        raise InputError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _choice(value, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise InputError(f"unknown {name} {value!r}; choose one of {choices}")
    return value


@register("augmented-gradcam")
class AugmentedGradCAM(Method):
    r"""Augmented Grad-CAM (Morbidelli et al., ICASSP 2020): the CAMs :math:`g_l` of ``L``
    roto-translated copies :math:`A_l x` (``A_1`` = identity), super-resolved into one map

    .. math:: h^\star = \arg\min_h \tfrac12 \sum_l \|W_l^{1/2}(D A_l G h - g_l)\|^2
              + \lambda\,\mathrm{TV}_{\ell_1}(h) + \tfrac{\mu}{2}\|h\|^2

    on a grid of ``size`` (default: ``SOLVE_PIXELS_PER_CELL`` = 8 pixels per map cell, at most the
    input size; ``"input"``: the input size), with each :math:`g_l` divided by its max first
    (``divide_by_max``, the reference code's choice).  Copies: ``L``, ``max_angle`` radians and
    ``max_shift`` pixels (default ±0.5 rad, ±30/224 of the image size), ``seed`` (same seed, same
    transforms, same map), ``padding`` of what a copy shows where it left the frame (``"border"``
    by default, measured best; ``"zeros"`` as in the paper; ``"reflection"``; the forward model
    pads the same way).  Forward model:
    ``frame="mask"`` drops the view cells whose footprint left the frame (``"coverage"`` weighs
    them by the share inside, ``"all"`` keeps them), ``downsample`` ``D`` (``"area"`` or the
    reference code's ``"bilinear"``), ``blur`` σ in input pixels of a Gaussian ``G`` for the
    network's own blur (default: a quarter of a map cell, 8 px for 7×7 maps of 224², measured; 0:
    none), ``gamma``: the views are raised to ``γ`` before solving, undoing
    a concave response ``g ≈ (D A_l h)^{1/γ}`` of the network to the share of a cell the object
    covers (default 2, measured; 1: the paper; the baselines use the views as they are).
    Solver: ``solver`` (``"accelerated"``, ``"primal-dual"``, ``"subgradient"`` as in the paper),
    ``iters`` and ``tol`` (default: the solver's), ``lam_tv`` (default ``0.00003·L``, 3 % of the
    reference code's ``0.001·L``, measured best with ``gamma=2``), ``mu`` (default ``0.0001·L``),
    ``step``, ``inner``.  ``lam_tv`` and ``mu`` are per pixel of the input grid: on a grid ``s``
    times the input's side the solver gets ``λ/s`` and ``μ/s²``, so that one map sampled on
    either grid scores the same objective (TV sums over edges ∝ s, ``‖h‖²`` over pixels ∝ s²).
    ``baseline="single" | "max" | "avg"`` returns that baseline instead of solving;
    ``base="gradcam" | "cam"`` the CAM of each copy.  Copies go through the model in micro-batches
    of ``copies_per_batch`` copies of the whole batch, by default as many as ``memory_budget``
    bytes allow (default: half the free memory on CUDA; on CPU 2 GiB and passes of about 8 images,
    where larger passes run slower per image).  Targets must be classes
    (``None``, ints, ``top_k``).

    >>> import torch, camkit
    >>> from camkit.data import Shapes
    >>> model = camkit.models.pretrained("nin-shapes")            # shipped: 16×16 maps of 64² images
    >>> images = torch.stack([Shapes("val", size=64, length=2)[i]["image"] for i in range(2)])
    >>> e = camkit.explain(model, images, method="augmented-gradcam", L=8)
    >>> e.raw.shape   # (B, K, H, W): the super-resolved maps, at the input size
    torch.Size([2, 1, 64, 64])
    """

    def __init__(
        self,
        L: int = 100,
        *,
        max_angle: float = 0.5,
        max_shift: float | None = None,
        seed: int = 0,
        padding: str = "border",
        frame: str = "mask",
        downsample: str = "area",
        blur: float | None = None,
        gamma: float = 2.0,
        solver: str = "accelerated",
        iters: int | None = None,
        lam_tv: float | None = None,
        mu: float | None = None,
        tol: float | None = None,
        step: float | None = None,
        inner: int | None = None,
        baseline: str | None = None,
        base: str = "gradcam",
        size=None,
        divide_by_max: bool = True,
        copies_per_batch: int | None = None,
        memory_budget: int | None = None,
    ):
        self.L = _positive_int(L, "L")
        self.max_angle = finite_number(max_angle, "max_angle")
        self.max_shift = _optional(finite_number, max_shift, "max_shift")
        self.seed = _positive_int(seed, "seed", minimum=0)
        self.padding = _choice(padding, PADDINGS, "padding")
        self.frame = _choice(frame, FRAMES, "frame")
        self.downsample = _choice(downsample, DOWNSAMPLINGS, "downsample")
        self.blur = _optional(finite_number, blur, "blur")
        self.gamma = finite_number(gamma, "gamma", positive=True)
        self.solver = _choice(solver, SOLVERS, "solver")
        self.iters = _optional(_positive_int, iters, "iters", minimum=0)
        self.lam_tv = _optional(finite_number, lam_tv, "lam_tv")
        self.mu = _optional(finite_number, mu, "mu")
        self.tol = _optional(finite_number, tol, "tol")
        self.step = _optional(finite_number, step, "step", positive=True)
        self.inner = _optional(_positive_int, inner, "inner")
        if baseline is not None and baseline not in BASELINES:
            raise InputError(f"unknown baseline {baseline!r}; choose one of {BASELINES} or None")
        self.baseline = baseline
        self.base = method_registry.get(_choice(base, _BASES, "base"))
        if isinstance(size, str) and size != "input":
            raise InputError(f"size must be None, 'input' or an int or pair (N, M) of ints, got {size!r}")
        self.size = size if size is None or size == "input" else _size2(size)
        self.divide_by_max = bool(divide_by_max)
        self.copies_per_batch = _optional(_positive_int, copies_per_batch, "copies_per_batch")
        self.memory_budget = _optional(_positive_int, memory_budget, "memory_budget")
        # Method declares needs_gradients per class; here it is the base method's (Grad-CAM or CAM).
        self.needs_gradients = self.base.needs_gradients

    def __call__(self, session: Session) -> dict[str, torch.Tensor]:
        """The super-resolved map (or baseline) of every image and class, ``{layer: (B, K, N, M)}``."""
        images = session.images
        first = {name: torch.relu(maps.float()) for name, maps in self.base(session).items()}   # copy 1 = identity
        if (session.classes < 0).any():
            raise InputError("augmented-gradcam explains class targets (None, ints, top_k), not callables")
        cams = self.copy_cams(session, first)                                       # {layer: (B, K, L, h, w)}
        out = {}
        for name, stack in cams.items():
            maps = self.merge_copies(stack.flatten(0, 1), images.shape[-2:])                 # (B·K, N, M)
            out[name] = maps.reshape(*stack.shape[:2], *maps.shape[-2:])
        return out

    def merge_copies(self, cams: torch.Tensor, image_size) -> torch.Tensor:
        """The super-resolved maps (or the baseline) ``(B, N, M)`` of the copies' rectified CAMs
        ``cams (B, L, h, w)`` of images of ``image_size``, on the grid :meth:`grid` chooses."""
        image_size = tuple(int(n) for n in image_size)
        angles, shifts = self.transforms(image_size)
        size = self.grid(image_size, cams.shape[-2:])
        # Transforms act on the image grid; rescale the shifts (and σ, λ, μ) to the solve grid.
        scale = torch.tensor([size[1] / image_size[1], size[0] / image_size[0]], dtype=torch.float64)
        shifts = shifts * scale
        if self.divide_by_max:
            peak = cams.amax(dim=(-2, -1), keepdim=True)
            cams = torch.where(peak > 0, cams / torch.where(peak > 0, peak, torch.ones_like(peak)), cams)
        if self.baseline is not None:
            return baseline(cams, angles, shifts, size, self.baseline)
        blur = BLUR_CELLS * size[0] / cams.shape[-2] if self.blur is None else self.blur * float(scale.mean())
        if self.gamma != 1:
            cams = cams.pow(self.gamma)
        side = math.sqrt(float(scale.prod()))
        lam_tv = LAM_TV_PER_COPY * self.L if self.lam_tv is None else self.lam_tv
        mu = MU_PER_COPY * self.L if self.mu is None else self.mu
        return superresolve(cams, angles.to(cams.device), shifts.to(cams.device), size,
                            lam_tv=lam_tv / side, mu=mu / side**2, iters=self.iters, solver=self.solver,
                            tol=self.tol, step=self.step, inner=self.inner,
                            weights=self.view_weights(angles, shifts, size, cams, blur),
                            padding=self.padding, downsample=self.downsample, blur=blur).maps

    def grid(self, image_size, map_size) -> tuple[int, int]:
        """``(N, M)`` of the grid the maps are solved on (the baselines: the input size by default)."""
        n, m = (int(side) for side in image_size)
        if self.size == "input" or (self.size is None and self.baseline is not None):
            return n, m
        if self.size is None:
            return min(n, SOLVE_PIXELS_PER_CELL * int(map_size[0])), min(m, SOLVE_PIXELS_PER_CELL * int(map_size[1]))
        return self.size

    def view_weights(self, angles, shifts, size, cams: torch.Tensor, blur: float = 0.0) -> torch.Tensor | None:
        """``(L, h, w)`` weights of the view cells for ``frame`` (None for ``"all"``): 1 inside the
        frame, the share of the footprint inside (``"coverage"``) or 0 (``"mask"``) elsewhere.  ``blur``
        only picks the cached operator the solve will use (coverage does not depend on it)."""
        if self.frame == "all":
            return None
        dtype = cams.dtype if cams.dtype == torch.float64 else torch.float32
        model = forward_model(angles, shifts, size, cams.shape[-2:], cams.device, dtype, padding=self.padding,
                              downsample=self.downsample, blur=blur)
        coverage = model.coverage
        return coverage if self.frame == "coverage" else (coverage >= 1 - 1e-6).to(coverage.dtype)

    def transforms(self, size) -> tuple[torch.Tensor, torch.Tensor]:
        """``angles (L,)``, ``shifts (L, 2)`` for images of ``size``: the same for every batch."""
        return sample_transforms(self.L, size, self.max_angle, self.max_shift, seed=self.seed)

    def copy_cams(self, session: Session, first: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rectified CAMs of all ``L`` copies, ``{layer: (B, K, L, h, w)}``, the copies in micro-batches."""
        images = session.images
        batch = images.shape[0]
        angles, shifts = self.transforms(images.shape[-2:])
        per_batch = self._copies_per_batch(images, first)
        make_copies = ImageCopies(angles, shifts, images, padding=self.padding)
        stacks = {name: [maps[:, :, None]] for name, maps in first.items()}
        for start in range(1, self.L, per_batch):
            stop = min(self.L, start + per_batch)
            count = stop - start
            copies = make_copies(start, stop).to(images.dtype).flatten(0, 1)                  # image-major
            sub = session.derive(copies, targets=session.classes.repeat_interleave(count, 0))
            for name, maps in self.base(sub).items():
                maps = torch.relu(maps.float())
                stacks[name].append(maps.reshape(batch, count, *maps.shape[1:]).transpose(1, 2))
        return {name: torch.cat(parts, dim=2) for name, parts in stacks.items()}

    def _copies_per_batch(self, images: torch.Tensor, first: dict[str, torch.Tensor]) -> int:
        if self.copies_per_batch is not None:
            return int(self.copies_per_batch)
        budget = self.memory_budget
        cap = self.L - 1
        if budget is None:
            if images.device.type == "cuda":
                budget = torch.cuda.mem_get_info(images.device)[0] // 2
            else:
                budget = _CPU_BUDGET
                cap = max(1, min(cap, _CPU_IMAGES_PER_PASS // images.shape[0]))
        # A forward pass of a CNN holds activations ~100x the input image (VGG16 at 224²: ~60 MB
        # per image in float32) plus the copy and the tapped gradients.
        per_image = images[0].numel() * images.element_size() * 100
        per_image += sum(m[0].numel() for m in first.values()) * 4 * 2
        return max(1, min(cap, int(budget) // (per_image * images.shape[0])))

    def __repr__(self) -> str:
        return (f"AugmentedGradCAM(L={self.L}, solver={self.solver!r}, iters={self.iters}, frame={self.frame!r}, "
                f"padding={self.padding!r}, downsample={self.downsample!r}, blur={self.blur}, gamma={self.gamma}, "
                f"size={self.size!r}, baseline={self.baseline!r}, base={self.base.name!r}, seed={self.seed})")


@register("augmented-avg")
class AugmentedAverage(AugmentedGradCAM):
    """The paper's *avg* baseline: ``mean_l A_l⁻¹ upsample(g_l)`` over the copies of
    ``"augmented-gradcam"`` (same options; ``baseline="avg"``)."""

    def __init__(self, L: int = 100, **options):
        super().__init__(L, **{"baseline": "avg", **options})


@register("augmented-max")
class AugmentedMax(AugmentedGradCAM):
    """The paper's *max* baseline: ``max_l A_l⁻¹ upsample(g_l)`` (``baseline="max"``)."""

    def __init__(self, L: int = 100, **options):
        super().__init__(L, **{"baseline": "max", **options})
