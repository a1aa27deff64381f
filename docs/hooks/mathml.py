"""MkDocs hook: render the LaTeX of ``pymdownx.arithmatex`` as MathML when the site is built.

``pymdownx.arithmatex`` (``generic: true``) leaves ``\\(...\\)`` in ``<span class="arithmatex">``
and ``\\[...\\]`` in ``<div class="arithmatex">``. This hook replaces each with the MathML that
``latex2mathml`` produces, so every browser with MathML support (Chromium 109+, Firefox,
Safari) shows the equations with no JavaScript and no network access. A formula that
latex2mathml cannot convert stops the build with its page and source.
"""

from __future__ import annotations

import html
import re
from typing import Any

from latex2mathml.converter import convert
from mkdocs.exceptions import PluginError

_MATH = re.compile(
    r'<(?P<tag>span|div) class="arithmatex">\s*'
    r"(?:\\\((?P<inline>.*?)\\\)|\\\[(?P<block>.*?)\\\])\s*</(?P=tag)>",
    re.S,
)


def to_mathml(latex: str, display: str) -> str:
    """MathML for ``latex`` (``display`` is ``'inline'`` or ``'block'``)."""
    return convert(latex.strip(), display=display)


def render(text: str, where: str = "") -> str:
    """Replace every arithmatex element of the HTML ``text`` with MathML."""

    def sub(m: re.Match) -> str:
        block = m.group("block") is not None
        latex = html.unescape(m.group("block") if block else m.group("inline"))
        try:
            mathml = to_mathml(latex, "block" if block else "inline")
        except Exception as exc:  # latex2mathml raises several types
            raise PluginError(f"{where}: cannot render {latex!r} as MathML: {exc}") from exc
        tag = m.group("tag")
        return f'<{tag} class="arithmatex">{mathml}</{tag}>'

    return _MATH.sub(sub, text)


def on_page_content(html_text: str, page: Any, **kwargs: Any) -> str:
    return render(html_text, page.file.src_uri)
