"""A Griffe extension for the API reference: Sphinx roles in the docstrings read as Markdown.

The docstrings say ``:class:`IsolateFuture``` and ``:meth:`resume``` (as
Python's own do); mkdocstrings renders Markdown, where those would show as
stray text. A role naming a public name of ``rayisolates`` becomes a link
to its entry in the reference; any other becomes inline code.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

import rayisolates

_ROLE = re.compile(r":(?:class|meth|func|attr|data|mod|exc|obj):`~?(?P<target>[^`]+)`")


def markdown(docstring: str) -> str:
    """``docstring`` with its Sphinx roles turned into Markdown links or code."""

    def replace(role: re.Match[str]) -> str:
        target = role["target"].removeprefix("rayisolates.")
        if target in rayisolates.__all__:
            return f"[`{target}`][rayisolates.{target}]"
        return f"`{target}`"

    return _ROLE.sub(replace, docstring)


class SphinxRoles(griffe.Extension):
    """Rewrite each object's docstring as it is loaded, before it is parsed."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
