"""The monitoring result as a type at the flow → CLI boundary (:class:`MonitoringOutcome`).

The flow's result stays the dict it writes as ``summary.json`` and sends in events
(:func:`tasks.monitor.verdict.monitoring_result`); what a command shows and the exit status it
returns are read from it here, once.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.errors import EXIT_CANNOT_JUDGE, EXIT_DRIFT, EXIT_OK
from schemas.statuses import CANNOT_JUDGE, DRIFT

EXIT_CODES = {DRIFT: EXIT_DRIFT, CANNOT_JUDGE: EXIT_CANNOT_JUDGE}


@dataclass(frozen=True)
class MonitoringOutcome:
    """What a monitoring run concluded: ``status`` (no-drift, drift, cannot-judge), the
    version judged, the one-line verdict, the reports' folder (or URL) and the drift event."""

    status: str
    version: str
    verdict: str
    reports: str
    event_id: str | None = None

    @classmethod
    def from_dict(cls, result: dict) -> MonitoringOutcome:
        return cls(result["status"], result["version"], result["verdict"],
                   str(result["reports"]["folder"]), result.get("event_id"))

    @property
    def exit_code(self) -> int:
        """0 no drift, 4 drift, 5 cannot judge."""
        return EXIT_CODES.get(self.status, EXIT_OK)
