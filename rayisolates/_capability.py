"""``Capability``: an unforgeable token that authorizes control of an isolate."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

__all__ = ["Capability"]


@dataclass(frozen=True, slots=True)
class Capability:
    """An opaque token; two capabilities are equal only if one is a copy of the other.

    Capabilities travel inside messages like any value and keep their identity,
    so an isolate can hand the right to pause or kill another one onwards.
    """

    token: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)

    __module__ = "rayisolates"

    def __repr__(self) -> str:
        return f"Capability({self.token[:8]}...)"
