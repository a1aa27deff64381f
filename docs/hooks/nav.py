"""MkDocs hook: pages in ``docs/`` that ``nav`` does not list are added under "More".

Features add their own pages; until a page is given its place in ``nav`` (mkdocs.yml), this hook
puts it in a "More" section at the end of the navigation instead of failing the strict build
with "pages exist in the docs directory, but are not included in the nav". Nothing is hidden:
every Markdown page under ``docs/`` is reachable from the navigation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def listed(nav: Any) -> set[str]:
    """Every page path in a ``nav`` structure (lists, ``{title: path}``, nested sections)."""
    out: set[str] = set()
    if isinstance(nav, str):
        out.add(nav)
    elif isinstance(nav, list):
        for item in nav:
            out |= listed(item)
    elif isinstance(nav, dict):
        for value in nav.values():
            out |= listed(value)
    return out


def unlisted(docs_dir: str | Path, nav: Any) -> list[str]:
    """Markdown pages under ``docs_dir`` (relative, POSIX) that ``nav`` does not list."""
    root = Path(docs_dir)
    have = listed(nav)
    pages = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.md"))
    return [p for p in pages if p not in have and not p.startswith(("site/", "hooks/"))]


def on_config(config: Any, **kwargs: Any) -> Any:
    nav = config.get("nav")
    if nav:
        extra = unlisted(config["docs_dir"], nav)
        if extra:
            config["nav"] = [*nav, {"More": extra}]
    return config
