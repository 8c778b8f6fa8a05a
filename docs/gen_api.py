"""Write docs/api.md from the docstrings: ``python docs/gen_api.py`` (a test checks it is current)."""
from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

MODULES = [
    ("camkit", ["explain", "Explainer", "Explanation", "Segmentation", "Detection"]),
    ("camkit.methods", None),
    ("camkit.maps", None),
    ("camkit.layers", ["resolve_layers", "find_default_layer", "find_head", "Head"]),
    ("camkit.layouts", None),
    ("camkit.detection", None),
    ("camkit.augmented", None),
    ("camkit.localize", None),
    ("camkit.faithfulness", None),
    ("camkit.data", None),
    ("camkit.models", None),
    ("camkit.train", None),
    ("camkit.plot", None),
    ("camkit.imagefiles", None),
    ("camkit.photos", None),
    ("camkit.bench", None),
    ("camkit.errors", None),
]


def first_paragraph(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n")[0].replace("\n", " ").strip()


def signature(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""


def render() -> str:
    lines = ["# API reference", "", "Generated from the docstrings by `python docs/gen_api.py`; shapes are",
             "written `(B, C, H, W)`. Each entry's full docstring (`help(...)`) has the formula and details.", ""]
    for module_name, names in MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        names = names or list(getattr(module, "__all__", []))
        lines += [f"## `{module_name}`", "", first_paragraph(module), ""]
        for name in names:
            obj = getattr(module, name, None)
            if obj is None or not (inspect.isclass(obj) or callable(obj)):
                continue
            kind = "class" if inspect.isclass(obj) else "def"
            lines.append(f"- **`{name}{signature(obj)}`** ({kind}) — {first_paragraph(obj)}")
        lines.append("")
        if module_name == "camkit.methods":
            lines += ["Registered methods (`explain(method=NAME, **options)`):", ""]
            for method in module.available():
                cls = module._REGISTRY[method]
                lines.append(f"- **`{method}`** `{cls.__name__}{signature(cls)}` — {first_paragraph(cls)}")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    target = Path(__file__).with_name("api.md")
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if target.read_text() == text else 1)
    target.write_text(text)
