"""``Isolate.run`` with a closure: the function captures what it needs.

The closure (and the path it captures) is pickled by value and runs in a
worker isolate; only its result comes back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from rayisolates import Isolate

DATA = Path(__file__).resolve().parent / "data" / "with_keys.json"


def main() -> None:
    path = str(DATA)

    def read_and_parse() -> dict[str, Any]:
        data: dict[str, Any] = orjson.loads(Path(path).read_bytes())
        return data

    json_data = Isolate.run(read_and_parse).result()
    print(f"Number of JSON keys: {len(json_data)}")


if __name__ == "__main__":
    main()
