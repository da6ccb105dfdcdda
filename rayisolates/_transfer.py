"""``TransferableTypedData``: bytes handed to another isolate without copying them again."""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from typing import Any

__all__ = ["TransferableTypedData"]


class TransferableTypedData:
    """A block of bytes that crosses to another isolate through Ray's object store.

    ``from_list`` copies the given buffers once into one contiguous block, as
    in Dart. Sent in a message, the block rides the object store out of band:
    an isolate on the same node reads it without a copy, one on another node
    after one transfer. :meth:`materialize` returns the bytes, once.

    Differences from Dart: ``materialize()`` returns a ``memoryview``
    (read-only when the bytes came through the object store) instead of a
    ``ByteBuffer``; wrap it with ``numpy.frombuffer`` to view it as numbers.
    """

    __module__ = "rayisolates"
    __slots__ = ("_data", "_materialized")

    def __init__(self, data: memoryview) -> None:
        self._data: memoryview | None = data
        self._materialized = False

    @classmethod
    def from_list(cls, buffers: Iterable[Any]) -> TransferableTypedData:
        """Copy ``buffers`` (bytes, bytearray, memoryview, numpy arrays, ...) into one block.

        Raises:
            TypeError: An element does not support the buffer protocol.
            ValueError: An element is not contiguous in memory.
        """
        views = []
        for index, buffer in enumerate(buffers):
            try:
                view = memoryview(buffer)
            except TypeError:
                raise TypeError(
                    f"TransferableTypedData.from_list(): element {index} ({type(buffer).__name__}) "
                    "is not a buffer (bytes, bytearray, memoryview, array, numpy array)"
                ) from None
            if not view.contiguous:
                raise ValueError(
                    f"TransferableTypedData.from_list(): element {index} is not contiguous; "
                    "copy it first (numpy.ascontiguousarray)"
                )
            views.append(view.cast("B"))
        block = bytearray(sum(view.nbytes for view in views))
        offset = 0
        for view in views:
            block[offset : offset + view.nbytes] = view
            offset += view.nbytes
        return cls(memoryview(block))

    def materialize(self) -> memoryview:
        """The bytes, as one ``memoryview``; may be called once.

        Raises:
            RuntimeError: Called a second time.
        """
        if self._materialized or self._data is None:
            raise RuntimeError("TransferableTypedData.materialize() may only be called once")
        self._materialized = True
        data, self._data = self._data, None
        return data

    def __len__(self) -> int:
        return 0 if self._data is None else self._data.nbytes

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, tuple[Any]]:
        if self._data is None:
            raise TypeError("a materialized TransferableTypedData cannot be sent")
        if isinstance(protocol, int) and protocol >= 5:
            return (_rebuild, (pickle.PickleBuffer(self._data),))
        return (_rebuild, (bytes(self._data),))

    def __repr__(self) -> str:
        state = "materialized" if self._materialized else f"{len(self)} bytes"
        return f"<TransferableTypedData {state}>"


def _rebuild(buffer: Any) -> TransferableTypedData:
    return TransferableTypedData(memoryview(buffer).cast("B"))
