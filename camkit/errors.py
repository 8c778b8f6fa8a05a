"""Exceptions camkit raises for bad input.  Each subclasses a builtin so that ``except ValueError``
in user code keeps working."""
import math


class CamkitError(Exception):
    """Base class of camkit's own errors."""


class InputError(CamkitError, ValueError):
    """The images, targets or options given are malformed (shape, dtype, NaN, range …)."""


class ImageFileError(InputError):
    """An image file cannot be read: missing, not an image, broken, of an unsupported pixel format,
    or larger than the pixel limit."""


class LayerError(CamkitError, ValueError):
    """A layer spec names no module, the input never reaches it, or its output is not spatial."""


class HeadError(CamkitError, ValueError):
    """No classifier head usable by CAM (a Linear or 1x1 conv applied after global pooling)."""


class RunError(CamkitError, RuntimeError):
    """A run failed for a reason other than its inputs (e.g. a process of a distributed benchmark
    stopped); the command line answers it with exit code 1, not 2."""


def one_line(error: BaseException) -> str:
    """An exception as one line for a message: its first line, led by its type when the text alone
    would not say what happened (a ``KeyError``'s key, an empty message)."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    if isinstance(error, (KeyError, IndexError, EOFError)) or len(text) < 12:
        return f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text


def all_finite(tensor) -> bool:
    """Whether a tensor holds no NaN and no Inf.  Its sum is finite only if every element is (NaN and
    Inf propagate), so the element-wise check runs only when the sum is not (Inf or NaN somewhere, or
    finite values whose sum overflows): one reduction instead of a boolean copy of the tensor
    (8 images of 224²: 0.08 against 3 ms)."""
    tensor = tensor.detach()
    return bool(tensor.sum().isfinite()) or bool(tensor.isfinite().all())


def finite_number(value, name: str, *, positive: bool = False) -> float:
    """``value`` as a finite float, ``> 0`` when ``positive`` else ``>= 0``; otherwise an
    :class:`InputError` naming ``name`` (a NaN or a string never passes silently)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        raise InputError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return number
