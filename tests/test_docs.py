"""Every Python block of the README and the documentation site runs, against the session's Ray.

The blocks of one page build on each other, so each page runs as one script
in a fresh interpreter (about 3 s of joining Ray, then the page's own work);
a block marked ``<!-- not run: REASON -->`` is left out (tests/docs_pages.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .docs_pages import PAGES, ROOT, runnable_script
from .support import run_python

RUNNABLE = [page for page in PAGES if runnable_script(page.read_text())]


def test_pages_have_code_to_run() -> None:
    """The guide's pages carry runnable examples: losing them all would pass the test below."""
    names = {page.relative_to(ROOT).as_posix() for page in RUNNABLE}
    assert {"README.md", "docs/getting-started.md", "docs/guide/pools.md"} <= names


@pytest.mark.timeout(180)
@pytest.mark.parametrize("page", RUNNABLE, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_page_code_runs(page: Path, ray_runtime: dict[str, Any]) -> None:
    script = runnable_script(page.read_text())
    run_python(script, env={"RAY_ADDRESS": ray_runtime["gcs_address"]}, timeout=150)
