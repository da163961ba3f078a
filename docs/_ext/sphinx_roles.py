"""A griffe extension for the docs site: Sphinx roles in docstrings become cross-references.

The code's docstrings use Sphinx roles (``:class:`~wsfanout.settings.Settings```, ``:meth:`run```),
which read well in the source and in ``help()``; mkdocstrings renders Markdown and would print
them as they are. No maintained griffe extension does this conversion (griffe-sphinx handles
attribute comments only), so this one does, by hand: each role becomes an *optional* autorefs
link, which links when the target is on a page of the site and is plain code otherwise (the API
reference documents the public names, not every module a docstring may point at).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_LITERAL = re.compile(r"(?<!:)::\n\n")
# :role:`target`, :role:`~target` (titled with its last part), :role:`title <target>`
_ROLE = re.compile(
    r":(?:class|func|meth|mod|attr|data|exc|obj):"
    r"`(?P<tilde>~?)(?P<text>[^`<]+?)(?:\s*<(?P<explicit>[^>`]+)>)?`"
)


def _resolve(obj: griffe.Object, target: str) -> str | None:
    """The full path ``target`` names as seen from ``obj``'s docstring, if griffe knows it."""
    target = target.lstrip(".")
    package = obj.package
    first = target.split(".", 1)[0]
    candidates = []
    if first == package.name:
        candidates.append(target)
    imported = obj.module.imports.get(first)
    if imported:
        candidates.append(imported + target[len(first) :])
    scope: griffe.Object | None = obj
    while scope is not None:
        candidates.append(f"{scope.path}.{target}")
        scope = scope.parent
    for path in candidates:
        if not path.startswith(package.name + "."):
            continue
        try:
            found = package[path[len(package.name) + 1 :]]
        except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            continue
        try:
            return str(found.final_target.path if found.is_alias else found.path)
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            return str(path)
    return None


def convert(obj: griffe.Object, text: str) -> str:
    """``text`` with every Sphinx role replaced by an optional cross-reference (or code)."""

    def replace(match: re.Match[str]) -> str:
        target = match["explicit"] or match["text"]
        if match["explicit"]:
            title = match["text"]
        elif match["tilde"]:
            title = target.rsplit(".", 1)[-1]
        else:
            title = target.lstrip(".")
        path = _resolve(obj, target)
        if path is None:
            return f"`{title}`"
        return f'<autoref identifier="{path}" optional><code>{title}</code></autoref>'

    # reStructuredText's "text::" introduces a literal block, which Markdown shows as indented
    # code already: the colon stays single.
    return _LITERAL.sub(":\n\n", _ROLE.sub(replace, text))


def _walk(obj: griffe.Object) -> list[griffe.Object]:
    found = [obj]
    for member in obj.members.values():
        if not isinstance(member, griffe.Alias):  # re-exports are documented where they live
            found.extend(_walk(member))
    return found


class SphinxRoles(griffe.Extension):
    """Rewrite the docstrings of a loaded package (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Convert every docstring of ``pkg`` once it is loaded, when names can be resolved."""
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = convert(obj, obj.docstring.value)
