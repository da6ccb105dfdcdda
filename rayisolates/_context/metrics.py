"""An isolate's figures as Ray metrics, for Ray's dashboard and its Prometheus endpoint.

A daemon thread per process reads the isolate's figures every
``EXPORT_SECONDS`` and hands them to ``ray.util.metrics`` (which Ray's
metrics agent exports in turn): ``rayisolates_messages_sent`` and
``rayisolates_messages_received`` as counters, ``rayisolates_messages_queued``
and ``rayisolates_open_ports`` as gauges, each tagged with the isolate's
debug name (its id when it has none) and id. Sending and receiving only
bump plain ints, so the export costs the transport nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["EXPORT_SECONDS", "MetricsExport"]

EXPORT_SECONDS = 5.0
_TAGS = ("isolate", "isolate_id")
_metrics: dict[str, Any] = {}
_metrics_lock = threading.Lock()


def _made() -> dict[str, Any]:
    """This process's metric objects, made once."""
    from ray.util.metrics import Counter, Gauge

    with _metrics_lock:
        if not _metrics:
            _metrics["sent"] = Counter(
                "rayisolates_messages_sent", "Messages an isolate sent", tag_keys=_TAGS
            )
            _metrics["received"] = Counter(
                "rayisolates_messages_received", "Messages an isolate received", tag_keys=_TAGS
            )
            _metrics["queued"] = Gauge(
                "rayisolates_messages_queued",
                "Messages an isolate received and has not handled yet",
                tag_keys=_TAGS,
            )
            _metrics["open_ports"] = Gauge(
                "rayisolates_open_ports", "Receive ports an isolate has open", tag_keys=_TAGS
            )
        return _metrics


class MetricsExport:
    """Exports ``read()``'s figures every ``EXPORT_SECONDS`` until :meth:`stop`."""

    def __init__(self, read: Callable[[], dict[str, int]], name: str, isolate_id: str) -> None:
        self._read = read
        self._tags = {"isolate": name, "isolate_id": isolate_id}
        self._exported = {"sent": 0, "received": 0}
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rayisolates-metrics", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            metrics = _made()
        except Exception:  # no metrics here (Ray without its metrics agent): nothing to do
            return
        while not self._stopped.wait(EXPORT_SECONDS):
            self.export(metrics)

    def export(self, metrics: dict[str, Any]) -> None:
        """Hand the figures to Ray once (counters by what they grew since last time)."""
        try:
            figures = self._read()
        except Exception:
            return
        tags = self._tags
        for counter in ("sent", "received"):
            grown = figures[counter] - self._exported[counter]
            if grown > 0:
                metrics[counter].inc(grown, tags=tags)
                self._exported[counter] = figures[counter]
        metrics["queued"].set(figures["queued"], tags=tags)
        metrics["open_ports"].set(figures["open_ports"], tags=tags)

    def stop(self) -> None:
        self._stopped.set()
