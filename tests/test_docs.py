"""Every ```python block of README.md and docs/*.md runs, in order, one namespace per file."""
import re
from pathlib import Path

import matplotlib
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_code_examples_run(page, tmp_path, monkeypatch):
    blocks = BLOCK.findall(page.read_text())
    if not blocks:
        pytest.skip(f"{page.name} has no python examples")
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    for number, code in enumerate(blocks, 1):
        try:
            exec(compile(code, f"{page.name}[block {number}]", "exec"), namespace)
        except Exception as error:  # pragma: no cover - the message is the point
            raise AssertionError(f"{page.name}, python block {number} fails: {error!r}\n{code}") from error


def test_api_reference_is_current():
    import subprocess
    import sys

    check = subprocess.run([sys.executable, str(ROOT / "docs" / "gen_api.py"), "--check"])
    assert check.returncode == 0, "docs/api.md is stale: run python docs/gen_api.py"


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#+\s+(.*)$", re.M)


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    return {re.sub(r"[^\w\- ]", "", heading.lower()).strip().replace(" ", "-")
            for heading in HEADING.findall(page.read_text())}


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)  # not in code blocks
    return [link for link in LINK.findall(text) if not re.match(r"[a-z]+:", link)]


def test_the_link_checker_sees_links_and_anchors(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A `title`, here\n[x](other.md#part) ![y](img.png) [web](https://example.org)\n"
                    "```\n[not](a-link.md)\n```\n")
    assert relative_links(page) == ["other.md#part", "img.png"]
    assert _anchors(page) == {"a-title-here"}


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_relative_link_resolves(page):
    broken = []
    for link in relative_links(page):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link} (no file {target.relative_to(ROOT) if ROOT in target.parents else target})")
        elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
            broken.append(f"{link} (no heading #{anchor} in {target.name})")
    assert broken == [], f"{page.name} links to what does not exist"


def test_the_layout_page_lists_every_module_and_only_real_ones():
    """docs/layout.md names each module (or, for packages others own, the package folder)."""
    listed = set(re.findall(r"`(camkit/[\w/]*(?:\.py|/))`", (ROOT / "docs" / "layout.md").read_text()))
    modules = {str(path.relative_to(ROOT)) for path in (ROOT / "camkit").rglob("*.py")}
    missing = sorted(module for module in modules if not module.endswith("__init__.py")
                     and module not in listed and not any(module.startswith(p) for p in listed if p.endswith("/")))
    assert missing == [], "add these modules to docs/layout.md (one line each: what it does)"
    stale = sorted(p for p in listed if not (ROOT / p).exists())
    assert stale == [], "docs/layout.md lists modules that do not exist"
