"""Run one function in another isolate and use its result (Dart: ``Isolate.run``).

A named function reads and parses a JSON file in a worker isolate (a Ray
task); the main isolate gets the parsed data back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from rayisolates import Isolate

DATA = Path(__file__).resolve().parent / "data" / "with_keys.json"


def read_and_parse_json(path: str) -> dict[str, Any]:
    """Runs in the worker isolate."""
    data: dict[str, Any] = orjson.loads(Path(path).read_bytes())
    return data


def main() -> None:
    json_data = Isolate.run(read_and_parse_json, str(DATA)).result()
    print(f"Number of JSON keys: {len(json_data)}")


if __name__ == "__main__":
    main()
