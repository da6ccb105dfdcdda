"""Count the words of Python's own standard library with a pool of four isolates.

The files are read here and their text sent to ``IsolatePool.map``, which
keeps at most ``buffer`` files in flight (the rest are not even read until a
member is free) and hands each to the least-loaded member. The counts come
back as they finish and are merged here, then checked against a count made
in this process.
"""

from __future__ import annotations

import collections
import re
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

from rayisolates import IsolatePool

WORD = re.compile(r"[A-Za-z_]+")


def count_words(text: str) -> collections.Counter[str]:
    """The words of one file and how often each occurs (runs in a pool member)."""
    return collections.Counter(word.lower() for word in WORD.findall(text))


def library_files() -> list[Path]:
    """The standard library's top-level modules."""
    return sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))


def texts(paths: list[Path]) -> Iterator[str]:
    for path in paths:  # read lazily: map pulls a file only when there is room for it
        yield path.read_text(encoding="utf-8", errors="replace")


def main() -> None:
    paths = library_files()
    total: collections.Counter[str] = collections.Counter()
    with IsolatePool(4, retries=1, debug_name="word-count") as pool:
        started = time.perf_counter()
        for counts in pool.map(count_words, texts(paths), buffer=16, ordered=False):
            total.update(counts)
        elapsed = time.perf_counter() - started
        stats = pool.stats()
    expected: collections.Counter[str] = collections.Counter()
    for text in texts(paths):
        expected.update(count_words(text))
    top = ", ".join(f"{word} {count:,}" for word, count in total.most_common(5))
    print(f"Counted {sum(total.values()):,} words in {len(paths)} files in {elapsed:.2f} s")
    print(f"Most common: {top}")
    print(f"Tasks completed by the pool: {stats['completed']}, failed: {stats['failed']}")
    print(f"Same as counting in this process: {total == expected}")


if __name__ == "__main__":
    main()
