"""Documents rendered from Jinja2 templates (``xray/reporting/templates/``).

A document is a title and a list of sections of blocks (paragraphs, notices, bullet lists,
tables); the content is Python (what to say), the presentation is the templates (how it
looks): ``document.md.j2`` and ``document.html.j2`` render the same blocks, so the two
formats cannot say different things. Markdown escaping is done by the filters here; the
HTML environment autoescapes every value.
"""

import re
from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar

import jinja2


@dataclass(frozen=True)
class Code:
    """An identifier or literal value (path, fingerprint, setting), set in monospace."""

    text: str


Inline = str | Code
"""Text (escaped in both formats) or a code span."""


@dataclass(frozen=True)
class Paragraph:
    kind: ClassVar[str] = "paragraph"
    parts: tuple[Inline, ...]


@dataclass(frozen=True)
class Notice:
    """A prominent warning box (the disclaimer)."""

    kind: ClassVar[str] = "notice"
    text: str


@dataclass(frozen=True)
class Bullets:
    kind: ClassVar[str] = "bullets"
    items: tuple[tuple[Inline, ...], ...]


@dataclass(frozen=True)
class Table:
    kind: ClassVar[str] = "table"
    header: tuple[str, ...]
    rows: tuple[tuple[Inline, ...], ...]


Block = Paragraph | Notice | Bullets | Table


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple[Block, ...]


# --- Markdown escaping (the Markdown template's filters) ------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#&])")
_MD_LINE_START = re.compile(r"^([-+]|\d+[.)])(?=\s|$)")


def _one_line(text: str) -> str:
    return text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def md_text(text: str) -> str:
    """Text with every Markdown-special character escaped, on one line."""
    return _MD_SPECIAL.sub(r"\\\1", _one_line(text))


def _md_code(text: str, in_table: bool) -> str:
    text = _one_line(text)
    if in_table:
        text = text.replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_inline(parts: tuple[Inline, ...], in_table: bool = False) -> str:
    """Text and code spans as Markdown (a line never turns into a list by accident)."""
    text = "".join(_md_code(p.text, in_table) if isinstance(p, Code) else md_text(p) for p in parts)
    return _MD_LINE_START.sub(lambda m: m.group(0)[:-1] + "\\" + m.group(0)[-1], text)


def md_cell(cell: Inline) -> str:
    """One table cell as Markdown (``|`` inside code spans escaped too)."""
    return md_inline((cell,), in_table=True)


def section_id(title: str) -> str:
    """The HTML anchor of a section title."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


# --- Rendering ------------------------------------------------------------------------


@cache
def environment(html: bool) -> jinja2.Environment:
    """The Jinja2 environment of the templates: HTML autoescaped, Markdown through the
    escaping filters. Templates are read from the package (also from a wheel)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("xray.reporting", "templates"),
        autoescape=html,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters.update(md_text=md_text, md_inline=md_inline, md_cell=md_cell, section_id=section_id)
    env.tests["code"] = lambda value: isinstance(value, Code)
    return env


def render(template: str, **context: Any) -> str:
    """Renders ``templates/<template>`` (HTML when its name ends in ``.html.j2``)."""
    return environment(template.endswith(".html.j2")).get_template(template).render(**context)
