"""An isolate's figures as Ray metrics, for Ray's dashboard and its Prometheus endpoint.

One daemon thread per process reads its isolates' figures every
``EXPORT_SECONDS`` and hands them to ``ray.util.metrics`` (which Ray's
metrics agent exports in turn): ``rayisolates_messages_sent`` and
``rayisolates_messages_received`` as counters, ``rayisolates_messages_queued``
and ``rayisolates_open_ports`` as gauges, each tagged with the isolate's
debug name (its id when it has none) and id. Sending and receiving only
bump plain ints, so the export costs the transport nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["EXPORT_SECONDS", "MetricsExport", "start_exporting"]

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
        _exporter.add(self)

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
        _exporter.remove(self)


class _Exporter:
    """This process's exporting thread and what it exports."""

    def __init__(self) -> None:
        self._exports: set[MetricsExport] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="rayisolates-metrics", daemon=True
                )
                self._thread.start()

    def add(self, export: MetricsExport) -> None:
        with self._lock:
            self._exports.add(export)
        self.start()

    def remove(self, export: MetricsExport) -> None:
        with self._lock:
            self._exports.discard(export)

    def _run(self) -> None:
        try:
            metrics = _made()
        except Exception:  # no metrics here (Ray without its metrics agent): nothing to do
            return
        while True:
            time.sleep(EXPORT_SECONDS)
            with self._lock:
                exports = list(self._exports)
            for export in exports:
                export.export(metrics)


_exporter = _Exporter()


def start_exporting() -> None:
    """Start this process's exporting thread now (a warm host does, so that its spawn does
    not wait for a thread to start)."""
    _exporter.start()
