"""The documentation's pages as tests see them: their Python code blocks and their links.

A fenced ```` ```python ```` block is run by ``tests/test_docs.py`` unless the
line before it is ``<!-- not run: REASON -->``; the blocks of one page run in
order in one fresh process, so a later block may use what an earlier one
defined.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)(?P<info>.*)$")
_NOT_RUN = re.compile(r"^\s*<!--\s*not run:(?P<reason>.*?)-->\s*$")
_MARKER = re.compile(r"<!--\s*not run\b")
# [text](target) and ![alt](target); a target ends at a space (a title) or ")".
_LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced code block: its language, code, first line (1-based) and skip reason."""

    language: str
    code: str
    line: int
    not_run: str | None


def blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, each with the reason it is not run, if any.

    Raises:
        ValueError: A ``not run`` marker without a reason, or one not right
            before a Python block, or a fence never closed.
    """
    lines = text.splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            if _MARKER.search(lines[index]):
                _marker_reason(lines, index)  # a marker must carry a reason ...
                following = index + 1
                while following < len(lines) and not lines[following].strip():
                    following += 1
                fence = _FENCE.match(lines[following]) if following < len(lines) else None
                if not fence or fence["info"].strip() != "python":
                    raise ValueError(  # ... and stand right before a Python block
                        f"line {index + 1}: a 'not run' marker must precede a python block"
                    )
            index += 1
            continue
        language = opening["info"].strip()
        body: list[str] = []
        end = index + 1
        while end < len(lines) and lines[end].strip() != opening["fence"]:
            body.append(lines[end][len(opening["indent"]) :])
            end += 1
        if end == len(lines):
            raise ValueError(f"line {index + 1}: a code fence that is never closed")
        previous = index - 1
        while previous >= 0 and not lines[previous].strip():
            previous -= 1
        not_run = _marker_reason(lines, previous) if previous >= 0 else None
        found.append(Block(language, "\n".join(body) + "\n", index + 1, not_run))
        index = end + 1
    return found


def _marker_reason(lines: list[str], index: int) -> str | None:
    """The reason of the ``not run`` marker on ``lines[index]``, or None if there is none."""
    if not _MARKER.search(lines[index]):
        return None
    marker = _NOT_RUN.match(lines[index])
    reason = marker["reason"].strip() if marker else ""
    if len(reason.split()) < 2:
        raise ValueError(f"line {index + 1}: '<!-- not run: REASON -->' needs a reason")
    return reason


def runnable_script(text: str) -> str:
    """The Python blocks of a page that run, joined in order into one script ('' if none)."""
    return "".join(
        block.code for block in blocks(text) if block.language == "python" and not block.not_run
    )


def relative_links(text: str) -> list[str]:
    """The link and image targets of a Markdown text that point into the repository.

    Targets inside code (fenced blocks and inline ``code``) are not links.
    """
    prose = re.sub(r"(?ms)^ *(```+|~~~+).*?^ *\1 *$", "", text)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    targets = []
    for link in _LINK.finditer(prose):
        target = link["target"]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL (https:, mailto:) or an anchor on the same page
        targets.append(target.split("#", 1)[0])
    return targets
