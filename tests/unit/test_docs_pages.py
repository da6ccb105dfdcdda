"""The documentation's pages without Ray: markers, links, and the API reference's coverage."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

import rayisolates
from tests.docs_pages import PAGES, ROOT, blocks, relative_links, runnable_script


def test_blocks_and_their_markers() -> None:
    text = (
        "intro\n\n```python\na = 1\n```\n\n<!-- not run: needs a GPU node -->\n"
        "```python\nb = 2\n```\n\n```sh\nmake test\n```\n\n```python\nc = a\n```\n"
    )
    found = blocks(text)
    assert [(block.language, block.not_run) for block in found] == [
        ("python", None),
        ("python", "needs a GPU node"),
        ("sh", None),
        ("python", None),
    ]
    assert runnable_script(text) == "a = 1\nc = a\n"


@pytest.mark.parametrize(
    "text",
    [
        "<!-- not run: -->\n```python\nx = 1\n```\n",  # no reason
        "<!-- not run: slow -->\n```python\nx = 1\n```\n",  # a word is not a reason
        "<!-- not run: needs a cluster -->\n\nsome prose\n```python\nx = 1\n```\n",  # not before
        "<!-- not run: needs a cluster -->\n```sh\nmake\n```\n",  # not a Python block
        "```python\nx = 1\n",  # never closed
    ],
)
def test_bad_markers_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        blocks(text)


def test_every_page_parses_and_every_skip_has_a_reason() -> None:
    for page in PAGES:
        for block in blocks(page.read_text()):
            assert block.not_run is None or len(block.not_run.split()) >= 2, (page, block.line)


def test_relative_links_found() -> None:
    text = "[a](docs/x.md) ![c](bench.png) [u](https://ray.io) [s](#top) `[n](no.md)` [f](y.md#p)"
    assert relative_links(text) == ["docs/x.md", "bench.png", "y.md"]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path) -> None:
    missing = [
        target
        for target in relative_links(page.read_text())
        if not (page.parent / target).resolve().exists()
    ]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_api_reference_covers_every_public_name() -> None:
    reference = (ROOT / "docs/api.md").read_text()
    documented = set(re.findall(r"^::: rayisolates\.(\w+)$", reference, re.M))
    assert documented == set(rayisolates.__all__)


def test_readme_is_short_and_has_the_two_set_up_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 150
    commands = [
        line.split("#")[0].strip()
        for block in blocks(readme)
        if block.language == "sh"
        for line in block.code.splitlines()
        if line.startswith("make ")
    ]
    assert commands == ["make demo", "make test"]


def test_sphinx_roles_become_links_or_code() -> None:
    pytest.importorskip("griffe")  # the docs extra
    spec = importlib.util.spec_from_file_location("sphinx_roles", ROOT / "docs/sphinx_roles.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.markdown("An :class:`IsolateFuture`: pass it to :meth:`resume`.") == (
        "An [`IsolateFuture`][rayisolates.IsolateFuture]: pass it to `resume`."
    )
    assert module.markdown(":func:`~rayisolates.shutdown` first") == (
        "[`shutdown`][rayisolates.shutdown] first"
    )
