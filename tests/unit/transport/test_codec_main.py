"""Functions and classes of ``__main__`` travel by value (the receiver's ``__main__`` differs).

A script's own functions, lambdas, closures, classes, their instances and
bound methods, nested at random in containers, are encoded in a child
process (whose ``__main__`` is the script) and rebuilt here, where
``__main__`` is pytest: pickling them by name would fail to load here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from rayisolates._transport.codec import INLINE, decode_pickled

from ...support import ROOT

SEEDS = int(os.environ.get("CODEC_MAIN_SEEDS", "40"))

SCRIPT = r'''
import base64, dataclasses, functools, json, random, sys
from rayisolates._transport.codec import encode

def square(x):
    return x * x

class Point:
    def __init__(self, x):
        self.x = x
    def norm(self):
        return abs(self.x)

@dataclasses.dataclass
class Pair:
    first: object
    second: object

def probe(rng):
    """('probe', callable, argument, expected): the receiver checks callable(argument)."""
    n = rng.randrange(-50, 50)
    offset = rng.randrange(10)
    def shifted(x):
        return x + offset
    choices = [
        lambda: (square, n, n * n),
        lambda: ((lambda x: 3 * x), n, 3 * n),
        lambda: (shifted, n, n + offset),
        lambda: (Point(n).norm, None, abs(n)),
        lambda: (Point, n, "Point"),
        lambda: (functools.partial(square), n, n * n),
        lambda: (Pair(square, n).first, n, n * n),
    ]
    fn, argument, expected = rng.choice(choices)()
    return ("probe", fn, argument, expected)

def value(rng, depth):
    pick = rng.randrange(6 if depth < 3 else 2)
    if pick < 2:
        return probe(rng)
    items = [value(rng, depth + 1) for _ in range(rng.randrange(1, 4))]
    if pick == 2:
        return items
    if pick == 3:
        return tuple(items)
    if pick == 4:
        return {f"k{i}": item for i, item in enumerate(items)}
    return Pair(items[0], items[-1])

out = []
for seed in json.loads(sys.argv[1]):
    rng = random.Random(seed)
    kind, payload, refs = encode(value(rng, 0))
    out.append([kind, base64.b64encode(payload).decode(), refs is None])
print(json.dumps(out))
'''


def probes(value: Any) -> list[tuple[Any, Any, Any]]:
    """Every ``('probe', fn, argument, expected)`` inside ``value``."""
    if isinstance(value, tuple) and len(value) == 4 and value[0] == "probe":
        return [value[1:]]
    if isinstance(value, (list, tuple)):
        return [found for item in value for found in probes(item)]
    if isinstance(value, dict):
        return [found for item in value.values() for found in probes(item)]
    if hasattr(value, "first"):  # a Pair
        return probes(value.first) + probes(value.second)
    return []


@pytest.mark.timeout(120)
def test_functions_and_classes_of_main_travel_by_value() -> None:
    import base64

    seeds = list(range(SEEDS))
    child = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(seeds)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    checked = 0
    for seed, (kind, payload, no_refs) in zip(seeds, json.loads(child.stdout), strict=True):
        assert kind != INLINE and no_refs, seed
        value = decode_pickled(base64.b64decode(payload), None)
        for fn, argument, expected in probes(value):
            if expected == "Point":  # the class itself: build one and use it
                assert fn(argument).norm() == abs(argument), seed
            elif argument is None:
                assert fn() == expected, seed
            else:
                assert fn(argument) == expected, seed
            checked += 1
    assert checked >= SEEDS
