"""Types the public calls promise, checked by mypy (``make lint``); never run by pytest.

Each ``assert_type`` fails the lint if a call's result type is lost again
(``IsolateFuture[Any]`` where the function says what it returns).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import assert_type

from rayisolates import Isolate, IsolateFuture, IsolatePool, IsolateStream, compute
from rayisolates._pool.map import PoolMap


def length(text: str) -> int:
    return len(text)


async def later(text: str) -> float:
    return float(len(text))


def words(text: str) -> Iterator[str]:
    yield from text.split()


async def letters(text: str) -> AsyncIterator[bytes]:
    yield text.encode()


def checked(pool: IsolatePool) -> None:
    assert_type(Isolate.run(length, "a"), IsolateFuture[int])
    assert_type(Isolate.run(later, "a"), IsolateFuture[float])
    assert_type(compute(length, "a"), IsolateFuture[int])
    assert_type(compute(later, "a"), IsolateFuture[float])
    assert_type(pool.run(length, "a"), IsolateFuture[int])
    assert_type(pool.run(later, "a"), IsolateFuture[float])
    assert_type(pool.submit(length, "a"), IsolateFuture[int])
    assert_type(pool.submit(later, text="a"), IsolateFuture[float])
    assert_type(pool.map(length, ["a"]), PoolMap[int])
    assert_type(pool.map(later, ["a"], chunksize=2), PoolMap[float])
    assert_type(pool.stream(words, "a b"), IsolateStream[str])
    assert_type(pool.stream(letters, "a b"), IsolateStream[bytes])
    assert_type(Isolate.stream(words, "a b"), IsolateStream[str])
    assert_type(pool.submit(length, "a").result(), int)
    assert_type(pool.submit(length, "a").exception(), BaseException | None)


async def awaited(pool: IsolatePool) -> None:
    assert_type(await pool.submit(later, "a"), float)
    assert_type(await Isolate.run(length, "a"), int)
    assert_type([x async for x in pool.map(length, ["a"])], list[int])
