"""MkDocs hook: render the LaTeX of ``pymdownx.arithmatex`` as MathML when the site is built.

``pymdownx.arithmatex`` (``generic: true``) leaves ``\\(...\\)`` in ``<span class="arithmatex">``
and ``\\[...\\]`` in ``<div class="arithmatex">``. This hook replaces each with the MathML that
``latex2mathml`` produces, so every browser with MathML support (Chromium 109+, Firefox,
Safari) shows the equations with no JavaScript and no network access. A formula that
latex2mathml cannot convert stops the build with its page and source.

NumPy-style docstrings write display math as ``.. math:: LATEX``; mkdocstrings renders that as a
paragraph ``<p>.. math:: LATEX</p>``, which is converted the same way.
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
_RST_MATH = re.compile(r"<p>\.\. math::\s*(?P<block>.*?)</p>", re.S)


def to_mathml(latex: str, display: str) -> str:
    """MathML for ``latex`` (``display`` is ``'inline'`` or ``'block'``)."""
    return convert(latex.strip(), display=display)


def render(text: str, where: str = "") -> str:
    """Replace every arithmatex element of the HTML ``text`` with MathML."""

    def sub(m: re.Match) -> str:
        block = m.group("block") is not None
        if m.re is _RST_MATH:
            latex = html.unescape(m.group("block"))
            return f'<div class="arithmatex">{_convert(latex, "block", where)}</div>'

        latex = html.unescape(m.group("block") if block else m.group("inline"))
        mathml = _convert(latex, "block" if block else "inline", where)
        tag = m.group("tag")
        return f'<{tag} class="arithmatex">{mathml}</{tag}>'

    return _RST_MATH.sub(sub, _MATH.sub(sub, text))


def _convert(latex: str, display: str, where: str) -> str:
    try:
        return to_mathml(latex, display)
    except Exception as exc:  # latex2mathml raises several types
        raise PluginError(f"{where}: cannot render {latex!r} as MathML: {exc}") from exc


def on_page_content(html_text: str, page: Any, **kwargs: Any) -> str:
    return render(html_text, page.file.src_uri)
