r"""Super-resolution of ``L`` low-resolution CAMs into one high-resolution map.

Each map ``h`` (``N×M``) solves

.. math::
    h^\star = \arg\min_h \; \tfrac12 \sum_l \|W_l^{1/2} (D A_l G h - g_l)\|_2^2
              + \lambda \,\mathrm{TV}_{\ell_1}(h) + \tfrac{\mu}{2}\|h\|_2^2,
    \qquad \mathrm{TV}_{\ell_1}(h) = \sum_{ij} |h_{i+1,j} - h_{ij}| + |h_{i,j+1} - h_{ij}|

(Morbidelli et al., ICASSP 2020; ``W_l`` optional per-cell weights, ``G`` an optional blur, both
identities by default).  ``P = [D A_1; …; D A_L] G`` is one sparse matrix shared by every map of
the batch (:class:`~camkit.augmented.operators.ForwardModel`), and the maps are the columns of one
dense ``(N·M, B)`` tensor, so an iteration costs two sparse-dense products for the whole batch.
Three solvers of the same objective:

* ``"accelerated"`` (default) — FISTA (Beck & Teboulle 2009) on ``f = data + μ/2‖h‖²`` with the
  exact proximal step of ``λ TV`` computed by the fast dual projection (FGP, Beck & Teboulle 2009,
  warm-started, ``inner`` iterations), momentum ``(√κ − 1)/(√κ + 1)``, ``κ = Lip(∇f)/μ``.
* ``"primal-dual"`` — Condat–Vũ splitting: gradient steps on ``f``, projection of the TV dual
  variable on ``[-λ, λ]``.
* ``"subgradient"`` — the paper's method, ``h_{k+1} = h_k - t_k s_k``: a first step ``1/Lip`` from
  ``h = 0``, then Polyak's step against an adaptive target level, ``t_k = (F(h_k) - F_best + δ_k)/‖s_k‖²``,
  ``δ_k`` shrunk by 0.7 after 10 iterations without a new best, best iterate kept.  A subgradient method converges like
  ``O(1/√k)``: it is kept for fidelity to the paper, not for speed (see ``docs/augmented.md``).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

from camkit.augmented.forward import ForwardModel
from camkit.augmented.operators import Recent, _check_transforms, _size2, transform_key
from camkit.errors import InputError, all_finite, finite_number

__all__ = ["SuperResolution", "superresolve", "objective", "forward_model", "SOLVERS", "DEFAULT_ITERS", "DEFAULT_TOL"]

SOLVERS = ("accelerated", "primal-dual", "subgradient")
#: Iterations each solver runs by default: enough to come within 1 % of the optimum at 224², L = 100.
DEFAULT_ITERS = {"accelerated": 30, "primal-dual": 500, "subgradient": 500}
#: Relative decrease of the best objective over the last :data:`TOL_WINDOW` iterations below which
#: a solver stops by default: the accelerated solver stops within 0.5 % of the optimum on the
#: known-truth problem and on the shipped models' CAMs (docs/augmented.md); the others run on.
DEFAULT_TOL = {"accelerated": 1e-3, "primal-dual": 0.0, "subgradient": 0.0}
TOL_WINDOW = 5
DEFAULT_INNER = 40
#: μ = 0.0001·L: the reference code's weight of ½‖h‖² (per pixel of the grid solved on).
MU_PER_COPY = 1e-4
LIPSCHITZ_MARGIN = 1.05
_CACHE = Recent(2)


@dataclass
class SuperResolution:
    """What :func:`superresolve` returns; unpacks as ``maps, history = superresolve(...)``.

    * ``maps``: ``(B, N, M)`` the best iterate of each map.
    * ``history``: ``(B, T)`` the best objective so far after each evaluated iterate, starting
      with ``h = 0`` (non-increasing; constant after ``tol`` froze the map).
    * ``objective``: ``(B, T)`` the objective of each iterate itself (subgradient steps may raise it).
    * ``iterations``: the number of steps taken (``T - 1``; fewer than ``iters`` if ``tol`` stopped it).
    """

    maps: torch.Tensor
    history: torch.Tensor
    objective: torch.Tensor
    iterations: int

    def __iter__(self):
        yield self.maps
        yield self.history


def forward_model(angles, shifts, size, map_size, device=None, dtype=torch.float32, *, padding: str = "zeros",
                  downsample: str = "area", blur: float = 0.0) -> ForwardModel:
    """:class:`ForwardModel` for these transforms and options, cached (the last two): a fixed seed
    means the same transforms for every batch, and the sparse matrix is built once."""
    angles, shifts = (t.detach().to("cpu", torch.float64) for t in _check_transforms(angles, shifts))
    device = torch.device(device) if device is not None else torch.device("cpu")
    key = (transform_key(angles, shifts), _size2(size), _size2(map_size, "map size"), str(device), dtype,
           padding, downsample, float(blur))
    return _CACHE.get(key, lambda: ForwardModel(angles, shifts, size, map_size, padding=padding, downsample=downsample,
                                                blur=blur, device=device, dtype=dtype))


@contextlib.contextmanager
def _few_threads_if_small(work: int, device: torch.device, threshold: int = 2**23):
    """Run CPU problems of fewer than ``threshold`` map elements (``N·M·B``) on one thread: an
    iteration is a few hundred element-wise passes and two sparse products, and waking a thread
    pool for each costs more than it saves (element-wise passes over 224²×10 maps ran 4-8× slower
    on 2 threads than on 1 on a loaded 2-core machine)."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or work >= threshold or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _gradient(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences of ``(N, M, B)`` maps: ``(N-1, M, B)`` and ``(N, M-1, B)``."""
    return h[1:] - h[:-1], h[:, 1:] - h[:, :-1]


def _add_gradient_adjoint(out: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, alpha: float = 1.0) -> None:
    """``out += alpha · ∇ᵀ(dy, dx)`` (minus the divergence) in place; ``out`` is ``(N, M, B)``."""
    out[:-1].sub_(dy, alpha=alpha)
    out[1:].add_(dy, alpha=alpha)
    out[:, :-1].sub_(dx, alpha=alpha)
    out[:, 1:].add_(dx, alpha=alpha)


def _objective(residual, dy, dx, h, lam_tv, mu, weights=None) -> torch.Tensor:
    """Per-column objective ``(B,)`` from the residual ``P h - g`` and the differences of ``h``."""
    norm = torch.linalg.vector_norm
    data = 0.5 * (norm(residual, dim=0).square() if weights is None else (weights * residual.square()).sum(0))
    tv = norm(dy, 1, dim=(0, 1)) + norm(dx, 1, dim=(0, 1))
    return data + lam_tv * tv + 0.5 * mu * norm(h, dim=0).square()


def _count(value, name: str, minimum: int = 0) -> int:
    valid = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not valid or int(value) != value or value < minimum:
        raise InputError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _validate(cams, angles, shifts, size):
    if not isinstance(cams, torch.Tensor) or cams.ndim != 4:
        shape = tuple(cams.shape) if isinstance(cams, torch.Tensor) else type(cams).__name__
        raise InputError(f"cams must be a (B, L, h, w) tensor, got {shape}")
    if not cams.is_floating_point():
        raise InputError(f"cams must be floating point, got {cams.dtype}")
    if not all_finite(cams):
        raise InputError("cams contain NaN or infinite values")
    angles, shifts = _check_transforms(angles, shifts)
    if angles.shape[0] != cams.shape[1]:
        raise InputError(f"{angles.shape[0]} transforms for {cams.shape[1]} CAMs per map (cams is (B, L, h, w))")
    return angles, shifts, _size2(size)


def _view_weights(weights, cams: torch.Tensor, dtype) -> torch.Tensor | None:
    """``weights`` ``(L, h, w)`` or ``(B, L, h, w)`` → ``(L·h·w, 1 or B)`` columns, checked."""
    if weights is None:
        return None
    weights = torch.as_tensor(weights)
    batch, L, h, w = cams.shape
    if weights.shape not in ((L, h, w), (batch, L, h, w)):
        raise InputError(f"weights must have shape ({L}, {h}, {w}) or ({batch}, {L}, {h}, {w}), "
                         f"got {tuple(weights.shape)}")
    if not torch.isfinite(weights).all() or (weights < 0).any():
        raise InputError("weights must be finite and non-negative")
    return weights.to(cams.device, dtype).reshape(-1, L * h * w).t().contiguous()


def objective(maps, cams, angles, shifts, lam_tv, mu, *, weights=None, padding: str = "zeros",
              downsample: str = "area", blur: float = 0.0) -> torch.Tensor:
    """The objective ``(B,)`` of high-resolution ``maps (B, N, M)`` given ``cams (B, L, h, w)``."""
    angles, shifts, size = _validate(cams, angles, shifts, maps.shape[-2:])
    model = forward_model(angles, shifts, size, cams.shape[-2:], cams.device, maps.dtype, padding=padding,
                          downsample=downsample, blur=blur)
    h = maps.reshape(maps.shape[0], -1).t().contiguous()
    residual = model.forward(h) - cams.reshape(cams.shape[0], -1).t().to(maps.dtype)
    dy, dx = _gradient(h.view(*size, -1))
    return _objective(residual, dy, dx, h, lam_tv, mu, _view_weights(weights, cams, maps.dtype))


def superresolve(
    cams: torch.Tensor,
    angles: torch.Tensor,
    shifts: torch.Tensor,
    size,
    *,
    lam_tv: float | None = None,
    mu: float | None = None,
    iters: int | None = None,
    solver: str = "accelerated",
    tol: float | None = None,
    step: float | None = None,
    inner: int | None = None,
    weights: torch.Tensor | None = None,
    padding: str = "zeros",
    downsample: str = "area",
    blur: float = 0.0,
) -> SuperResolution:
    """Super-resolve ``cams (B, L, h, w)`` of ``L`` roto-translated copies into ``(B, N, M)`` maps.

    ``angles (L,)`` radians counter-clockwise, ``shifts (L, 2)`` as ``(dx, dy)`` pixels of the
    ``size = (N, M)`` grid (``A_1`` is usually the identity); ``lam_tv`` defaults to ``0.001·L``
    and ``mu`` to ``0.0001·L`` (the reference code's weights in the ½-convention, for CAMs in
    ``[0, 1]``).  Starts from ``h = 0``.  ``solver``: ``"accelerated"`` (default), ``"primal-dual"``
    or ``"subgradient"`` (the paper's); ``iters`` defaults to ``DEFAULT_ITERS[solver]``; ``step``
    scales each solver's step (default 1); ``inner``: dual iterations of the accelerated solver's
    TV step (default 40).  ``tol > 0`` freezes a map once its best objective fell by less than
    ``tol`` (relative) over the last 5 iterations, and stops when every map is frozen (default
    ``DEFAULT_TOL[solver]``: ``1e-3`` for the accelerated solver, 0 — run all ``iters`` — for the
    others).  Forward model: ``weights`` ``(L, h, w)`` or ``(B, L, h, w)`` weigh each view cell in
    the data term (e.g. ``ForwardModel.coverage``: views count only where the copy saw the
    image); ``padding``, ``downsample`` and ``blur`` as in
    :class:`~camkit.augmented.operators.ForwardModel`.  Runs on the device of ``cams``, all maps
    in one tensor.  Returns a :class:`SuperResolution` (``maps, history = ...`` unpacks).

    >>> import torch
    >>> from camkit.augmented import sample_transforms, superresolve
    >>> angles, shifts = sample_transforms(16, (32, 32), seed=0)
    >>> maps, history = superresolve(torch.rand(2, 16, 8, 8), angles, shifts, (32, 32), iters=30, tol=0)
    >>> maps.shape, history.shape
    (torch.Size([2, 32, 32]), torch.Size([2, 31]))
    """
    angles, shifts, size = _validate(cams, angles, shifts, size)
    if solver not in SOLVERS:
        raise InputError(f"unknown solver {solver!r}; choose one of {SOLVERS}")
    iters = DEFAULT_ITERS[solver] if iters is None else _count(iters, "iters")
    inner = DEFAULT_INNER if inner is None else _count(inner, "inner", 1)
    L = cams.shape[1]
    lam_tv = 0.001 * L if lam_tv is None else finite_number(lam_tv, "lam_tv")
    mu = MU_PER_COPY * L if mu is None else finite_number(mu, "mu")
    step = 1.0 if step is None else finite_number(step, "step", positive=True)
    tol = DEFAULT_TOL[solver] if tol is None else finite_number(tol, "tol")
    blur = finite_number(blur, "blur")
    dtype = cams.dtype if cams.dtype == torch.float64 else torch.float32
    model = forward_model(angles, shifts, size, cams.shape[-2:], cams.device, dtype, padding=padding,
                          downsample=downsample, blur=blur)
    problem = _Problem(model, cams.reshape(cams.shape[0], -1).t().to(dtype).contiguous(),   # (L·h·w, B)
                       _view_weights(weights, cams, dtype), size, lam_tv, mu)
    run = {"accelerated": _accelerated, "primal-dual": _primal_dual, "subgradient": _subgradient}[solver]
    with _few_threads_if_small(size[0] * size[1] * problem.views.shape[1], cams.device):
        tracker = run(problem, _Tracker(problem.zeros(), tol), iters, step, inner)
    maps, history, values, steps = tracker.result()
    maps = maps.t().reshape(-1, *size).to(cams.dtype)
    return SuperResolution(maps, history.t().contiguous(), values.t().contiguous(), steps)


@dataclass
class _Problem:
    """One batch's problem: ``P``, the views ``g (L·h·w, B)``, weights ``(L·h·w, 1|B)`` or None."""

    model: ForwardModel
    views: torch.Tensor
    weights: torch.Tensor | None
    size: tuple[int, int]
    lam_tv: float
    mu: float

    def zeros(self) -> torch.Tensor:
        return torch.zeros(self.size[0] * self.size[1], self.views.shape[1], dtype=self.views.dtype,
                           device=self.views.device)

    def lipschitz(self) -> float:
        """The Lipschitz constant of ``∇f``, ``f = ½‖W^½(Ph − g)‖² + μ/2‖h‖²``: ``‖W^½P‖² + μ``, the norm
        by power iteration with a 5 % margin (it approaches from below)."""
        return LIPSCHITZ_MARGIN * self.model.squared_norm(self.weights) + self.mu

    def smooth(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(F(h) (B,), ∇f(h), ∇h)`` with ``∇h = (dy, dx)`` of the ``(N, M, B)`` view."""
        residual = self.model.forward(h).sub_(self.views)
        dy, dx = _gradient(h.view(*self.size, -1))
        value = _objective(residual, dy, dx, h, self.lam_tv, self.mu, self.weights)
        if self.weights is not None:
            residual.mul_(self.weights)
        return value, self.model.adjoint(residual).add_(h, alpha=self.mu), dy, dx


class _Tracker:
    """Keeps each column's best iterate and the objective histories; decides when to stop.

    With ``tol > 0`` a column that converged is frozen (its best iterate and history stay as they
    were), so that a map's result does not depend on the maps solved beside it; the solver stops
    when every column is frozen."""

    def __init__(self, h: torch.Tensor, tol: float, window: int = TOL_WINDOW) -> None:
        self.best = h.clone()
        self.best_value = torch.full((h.shape[-1],), math.inf, dtype=torch.float64, device=h.device)
        self.frozen = torch.zeros(h.shape[-1], dtype=torch.bool, device=h.device)
        self.values: list[torch.Tensor] = []
        self.history: list[torch.Tensor] = []
        self.tol, self.window = tol, window

    def update(self, h, value) -> bool:
        """Record ``h`` and its objective ``(B,)``; ``True`` when ``tol`` says stop."""
        value = value.double()
        improved = (value < self.best_value) & ~self.frozen
        self.best = torch.where(improved, h, self.best)
        self.best_value = torch.where(improved, value, self.best_value)
        self.values.append(value)
        self.history.append(self.best_value)
        if self.tol <= 0 or len(self.history) <= self.window:
            return False
        old = self.history[-1 - self.window]
        self.frozen |= (old - self.best_value) <= self.tol * self.best_value.abs()
        return bool(self.frozen.all())

    def result(self):
        return self.best, torch.stack(self.history), torch.stack(self.values), len(self.history) - 1


def _tv_prox(z: torch.Tensor, weight: float, dual: tuple[torch.Tensor, torch.Tensor], size, inner: int):
    """``argmin_h ½‖h − z‖² + weight·TV(h)`` for every column of ``z (N·M, B)``, by FGP: accelerated
    projected gradient on the dual ``q ∈ [−weight, weight]`` of the differences, ``h = z − ∇ᵀq``,
    step 1/8 (``‖∇‖² ≤ 8``), started from ``dual`` (updated in place)."""
    q_y, q_x = dual
    r_y, r_x = q_y.clone(), q_x.clone()
    image = z.view(*size, -1)
    h = torch.empty_like(image)
    t = 1.0
    for _ in range(inner):
        _minus_gradient_adjoint(image, r_y, r_x, out=h)
        new_y = r_y.add_(h[1:] - h[:-1], alpha=0.125).clamp_(-weight, weight)
        new_x = r_x.add_(h[:, 1:] - h[:, :-1], alpha=0.125).clamp_(-weight, weight)
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        momentum = (t - 1) / t_next
        # r ← new + momentum·(new − q), q ← new: the old q's memory takes the next r.
        r_y, q_y = q_y.mul_(-momentum).add_(new_y, alpha=1 + momentum), new_y
        r_x, q_x = q_x.mul_(-momentum).add_(new_x, alpha=1 + momentum), new_x
        t = t_next
    dual[0].copy_(q_y)
    dual[1].copy_(q_x)
    _minus_gradient_adjoint(image, q_y, q_x, out=h)
    return h.view_as(z)


def _minus_gradient_adjoint(image: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, out: torch.Tensor) -> None:
    """``out = image − ∇ᵀ(dy, dx)`` for ``(N, M, B)`` maps (``∇ᵀ`` as in :func:`_add_gradient_adjoint`)."""
    out.copy_(image)
    _add_gradient_adjoint(out, dy, dx, alpha=-1.0)


def _accelerated(problem: _Problem, tracker: _Tracker, iters: int, step: float, inner: int) -> _Tracker:
    # FISTA: h⁺ = prox_{tλTV}(y − t∇f(y)), y⁺ = h⁺ + β(h⁺ − h).  The objective is evaluated at the
    # extrapolated points y, whose residual the gradient needs anyway (no extra product with P).
    n, m = problem.size
    lipschitz = problem.lipschitz()
    t = step / lipschitz if lipschitz > 0 else step
    kappa = lipschitz / problem.mu if problem.mu > 0 else math.inf
    constant = (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1) if math.isfinite(kappa) else None
    h = problem.zeros()
    y = h.clone()
    dual = (torch.zeros(n - 1, m, h.shape[1], dtype=h.dtype, device=h.device),
            torch.zeros(n, m - 1, h.shape[1], dtype=h.dtype, device=h.device))
    theta = 1.0
    for k in range(iters + 1):
        value, gradient, _, _ = problem.smooth(y)
        if tracker.update(y, value) or k == iters:
            break
        new = _tv_prox(y.sub_(gradient, alpha=t), t * problem.lam_tv, dual, problem.size, inner)
        if constant is None:
            theta_next = (1 + math.sqrt(1 + 4 * theta * theta)) / 2
            beta, theta = (theta - 1) / theta_next, theta_next
        else:
            beta = constant
        y = new + beta * (new - h)
        h = new
    return tracker


def _subgradient(problem: _Problem, tracker: _Tracker, iters: int, step: float, inner: int) -> _Tracker:
    # The first step is the classic one, 1/Lip from h = 0 (a back-projection Pᵀg/Lip: TV has no
    # slope at 0); then Polyak's step against a target level below the best value so far, the gap
    # δ (from ½F after the first step) shrunk ×0.7 after 10 iterations without a new best.  Of the
    # rules measured at 224², L = 100 (docs/augmented.md) it is the one whose worst case was best.
    n, m = problem.size
    lipschitz = problem.lipschitz()
    h = problem.zeros()
    gap = None
    stall = torch.zeros(h.shape[1], dtype=torch.long, device=h.device)
    for k in range(iters + 1):
        value, direction, dy, dx = problem.smooth(h)
        improved = value.double() < tracker.best_value
        if tracker.update(h, value) or k == iters:
            break
        # sign(d), 0 for |d| at rounding level: keeps tiny float differences between runs over other
        # batches from flipping the TV subgradient (0 is in the subdifferential of |·| at 0).
        dead = 1e-5 * h.abs().amax(0)                                                        # (B,)
        _add_gradient_adjoint(direction.view(n, m, -1), _sign(dy, dead), _sign(dx, dead), alpha=problem.lam_tv)
        if k == 0:
            h.sub_(direction, alpha=step / lipschitz if lipschitz > 0 else step)
            continue
        if gap is None:
            gap = 0.5 * value.double()
        stall = torch.where(improved, 0, stall + 1)
        shrink = stall >= 10
        gap = torch.where(shrink, 0.7 * gap, gap)
        stall = torch.where(shrink, 0, stall)
        norm2 = direction.double().square().sum(0)
        rate = step * (value.double() - tracker.best_value + gap) / torch.where(norm2 > 0, norm2, 1.0)
        h.sub_(direction * rate.to(h.dtype))
    return tracker


def _sign(d: torch.Tensor, dead: torch.Tensor) -> torch.Tensor:
    """``sign(d)`` of differences ``(…, B)``, 0 where ``|d| <= dead (B,)``."""
    return torch.where(d.abs() > dead, d.sign(), torch.zeros((), dtype=d.dtype, device=d.device))


def _primal_dual(problem: _Problem, tracker: _Tracker, iters: int, step: float, inner: int) -> _Tracker:
    # Condat–Vũ: min f(h) + λ‖∇h‖₁, f = ½‖W^½(Ph − g)‖² + μ/2‖h‖² with ∇f Lipschitz (≤ ‖P‖² + μ).
    # Convergence needs 1/τ − σ‖∇‖² ≥ Lip(∇f)/2 with ‖∇‖² ≤ 8.  The TV dual must reach ±λ
    # quickly: a small primal step τ = 0.1 (maps in [0, 1]) lets σ ≈ 1.25 (tuned on 224² → 7², 14²).
    n, m = problem.size
    lam_tv = problem.lam_tv
    lipschitz = problem.lipschitz()
    tau = step * min(0.1, 1.0 / lipschitz) if lipschitz > 0 else 0.1 * step
    sigma = 0.99 * (1.0 / tau - lipschitz / 2) / 8.0
    h = problem.zeros()
    dual_y = torch.zeros(n - 1, m, h.shape[1], dtype=h.dtype, device=h.device)
    dual_x = torch.zeros(n, m - 1, h.shape[1], dtype=h.dtype, device=h.device)
    for k in range(iters + 1):
        value, gradient, dy, dx = problem.smooth(h)
        if tracker.update(h, value) or k == iters:
            break
        _add_gradient_adjoint(gradient.view(n, m, -1), dual_y, dual_x)
        h.add_(gradient, alpha=-tau)
        new_dy, new_dx = _gradient(h.view(n, m, -1))
        dual_y.add_(new_dy, alpha=2 * sigma).sub_(dy, alpha=sigma).clamp_(-lam_tv, lam_tv)
        dual_x.add_(new_dx, alpha=2 * sigma).sub_(dx, alpha=sigma).clamp_(-lam_tv, lam_tv)
    return tracker
