"""A griffe extension for the API reference: Butter's docstrings are written in reST habits, the site is Markdown.

Rewrites each docstring once, when griffe has loaded a package (mkdocstrings then renders it as Markdown):

* Sphinx roles (``:class:`~butter.slots.NodeServices```, ``:meth:`Node.store```) become cross-references that
  link when the target is on the site and stay plain code when it is not (autorefs' ``optional``);
  unqualified names are resolved in the object's scope, as Sphinx would.
* A paragraph ending in ``::`` (a reST literal block follows) ends in ``:``; the indented block after it is a
  Markdown code block already.
* reST simple tables (``====  ====`` rules) become Markdown tables.

Registered under ``extensions:`` of the python handler in mkdocs.yml.
"""

from __future__ import annotations

import html
import re
from itertools import pairwise
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const|type):`(?P<text>[^`]+)`")
LITERAL_INTRO = re.compile(r"(\S)::[ \t]*$", re.MULTILINE)
BARE_LITERAL = re.compile(r"^[ \t]*::[ \t]*$", re.MULTILINE)
RULE = re.compile(r"^=+(?: {2,}=+)+\s*$")


class RstDocstrings(griffe.Extension):
    """Turns reST roles, literal-block markers and simple tables into Markdown (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        _walk(pkg)


def _walk(obj: griffe.Object) -> None:
    if obj.docstring is not None:
        obj.docstring.value = convert(obj.docstring.value, obj)
    for member in obj.members.values():
        if not member.is_alias:
            _walk(member)  # type: ignore[arg-type]


def convert(text: str, obj: griffe.Object) -> str:
    text = _tables(text)  # first: a role's replacement would shift the table's columns
    text = ROLE.sub(lambda match: _reference(match["text"], obj), text)
    text = LITERAL_INTRO.sub(r"\1:", text)
    return BARE_LITERAL.sub("", text)


def _reference(text: str, obj: griffe.Object) -> str:
    """``~a.b.C`` (title ``C``), ``a.b.C`` (title as written), ``Title <a.b.C>``, each as an optional autoref."""
    explicit = re.fullmatch(r"(?P<title>.+?)\s*<(?P<target>[^>]+)>", text)
    if explicit:
        title, target = explicit["title"], explicit["target"]
    else:
        target = text.lstrip("~")
        title = target.rsplit(".", 1)[-1] if text.startswith("~") else target.lstrip(".")
        title = f"<code>{html.escape(title)}</code>"
    identifier = _resolve(target.lstrip("."), obj)
    return f'<autoref identifier="{html.escape(identifier)}" optional>{title}</autoref>'


def _resolve(target: str, obj: griffe.Object) -> str:
    head, _, rest = target.partition(".")
    scope: griffe.Object | None = obj if obj.is_module or obj.is_class else obj.parent
    while scope is not None:
        try:
            resolved = scope.resolve(head)
        except Exception:  # griffe raises NameResolutionError, or an alias error for unloaded targets
            scope = scope.parent
            continue
        return f"{resolved}.{rest}" if rest else resolved
    return target


def _tables(text: str) -> str:
    """Each reST simple table (rule, header, rule, rows, rule) becomes a Markdown table. A row whose first
    cell is empty continues the row above it."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        if RULE.match(lines[i]) and i + 2 < len(lines) and RULE.match(lines[i + 2]):
            starts = [m.start() for m in re.finditer(r"=+", lines[i])]
            rows = [_cells(lines[i + 1], starts)]
            j = i + 3
            while j < len(lines) and not RULE.match(lines[j]):
                if lines[j].strip():
                    cells = _cells(lines[j], starts)
                    if cells[0] or len(rows) == 1:
                        rows.append(cells)
                    else:
                        rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
                j += 1
            out.append("| " + " | ".join(rows[0]) + " |")
            out.append("|" + "---|" * len(starts))
            out.extend("| " + " | ".join(row) + " |" for row in rows[1:])
            i = j + 1
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out)


def _cells(line: str, starts: list[int]) -> list[str]:
    """Cut ``line`` at the rule's column starts; a cell whose text runs past the next column's start pushes
    that cut to the next space."""
    cuts = [0]
    for start in starts[1:]:
        cut = max(start, cuts[-1])
        while cut < len(line) and cut > 0 and not line[cut - 1].isspace():
            cut += 1
        cuts.append(cut)
    cuts.append(len(line))
    return [line[a:b].strip() for a, b in pairwise(cuts)]
