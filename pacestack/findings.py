"""Structured findings: what preflight, plan refusals and verify report.

Like pcs report items: a stable code a script can match on, a severity, the
subject (file/option/row) it is about, a message for people and the payload the
message was built from (for scripts). Codes are declared in pacestack/codes.py.
Library code returns lists of findings; only the CLI renders them.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable


class Severity(enum.IntEnum):
    INFO = 0
    WARNING = 1
    ERROR = 2

    def __str__(self) -> str:
        return self.name.lower()


@dataclasses.dataclass(frozen=True)
class Finding:
    severity: Severity
    code: str  # e.g. "CINDER_HOST_MISMATCH"; stable, upper-case, for scripts
    subject: str  # what it is about: "cinder.conf [DEFAULT] host", "neutron.networksegments id=..."
    message: str
    payload: dict = dataclasses.field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        return {
            "severity": str(self.severity),
            "code": self.code,
            "subject": self.subject,
            "message": self.message,
            "payload": dict(self.payload),
        }


def error(code: str, subject: str, message: str) -> Finding:
    return Finding(Severity.ERROR, code, subject, message)


def warning(code: str, subject: str, message: str) -> Finding:
    return Finding(Severity.WARNING, code, subject, message)


def info(code: str, subject: str, message: str) -> Finding:
    return Finding(Severity.INFO, code, subject, message)


def worst(findings: Iterable[Finding]) -> Severity | None:
    severities = [f.severity for f in findings]
    return max(severities) if severities else None


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity >= Severity.ERROR for f in findings)
