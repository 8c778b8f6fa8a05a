"""The registry of CAM methods, by name.

    >>> import camkit.methods
    >>> "gradcam" in camkit.methods.available()
    True

A method is a subclass of :class:`camkit.methods.base.Method` decorated with ``@register("name")``.
Modules listed in ``_PLUGIN_MODULES`` register methods that live outside this package (Augmented
Grad-CAM); they are imported on the first lookup of a name not yet registered.
"""
from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable

from camkit.errors import InputError
from camkit.methods.base import Method, Pass, Session

__all__ = ["Method", "Pass", "Session", "register", "get", "available"]

_REGISTRY: dict[str, type[Method]] = {}
_BUILTIN_MODULES = (
    "camkit.methods.cam", "camkit.methods.gradcam",
    "camkit.methods.gradcampp", "camkit.methods.xgradcam", "camkit.methods.layercam", "camkit.methods.hirescam",
    "camkit.methods.scorecam", "camkit.methods.ablationcam", "camkit.methods.eigencam",
)
_PLUGIN_MODULES = ("camkit.augmented.method",)
_plugins_loaded = False


def register(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: make ``cls`` available to ``explain(method=name)``."""

    def decorate(cls: type[Method]) -> type[Method]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _load_plugins() -> None:
    global _plugins_loaded
    if not _plugins_loaded:
        _plugins_loaded = True
        for module in _PLUGIN_MODULES:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as error:
                if error.name != module and not module.startswith(str(error.name)):
                    raise


def available() -> list[str]:
    """Names of every registered method."""
    _load_plugins()
    return sorted(_REGISTRY)


def get(name: str | Method, **options) -> Method:
    """A method instance by registry name (``options`` go to its constructor), or ``name`` itself if already one."""
    if isinstance(name, Method):
        if options:
            raise InputError("options are given to the method's constructor, not with a method instance")
        return name
    if not isinstance(name, str):
        raise InputError(f"method must be a registry name or a Method, got {type(name).__name__}")
    key = name.lower()
    if key not in _REGISTRY:
        _load_plugins()
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, _REGISTRY, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise InputError(f"unknown method {name!r}{hint} (available: {', '.join(sorted(_REGISTRY))})")
    try:
        return _REGISTRY[key](**options)
    except TypeError as error:
        raise InputError(f"method {key!r}: {error}") from None


for _module in _BUILTIN_MODULES:
    importlib.import_module(_module)
