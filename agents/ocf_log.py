"""Agent logging with the conventions of resource-agents' ocf-shellfuncs.

Pacemaker's executor hands every agent HA_LOGFACILITY (syslog facility, or
"none"), HA_LOGFILE, HA_DEBUGLOG and HA_debug; operators read agent messages in
those places, tagged ``agent(resource)[pid]``. We honour them the same way:

- HA_LOGFACILITY set (and not "none"): syslog with that facility;
- HA_LOGFILE set: one line appended per message;
- neither: stderr (Pacemaker captures it into its own log);
- debug messages only when HA_debug is set and not "0" (to HA_DEBUGLOG when set).

Deliberately not the ``logging`` package: this runs on every monitor, every few
seconds on every node, and a dozen lines of our own are cheaper to import.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing-only: collections.abc costs ~2 ms on every monitor
    from collections.abc import Mapping

_LEVELS = ("debug", "info", "warning", "error")
# ocf-shellfuncs prints these words in the message itself (ha_log "ERROR: ...")
_WORDS = {"debug": "DEBUG", "info": "INFO", "warning": "WARNING", "error": "ERROR"}


class OCFLogger:
    """Writes agent messages where Pacemaker's environment says they belong."""

    def __init__(self, agent: str, resource: str | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.tag = f"{agent}({resource})[{os.getpid()}]" if resource else f"{agent}[{os.getpid()}]"
        facility = env.get("HA_LOGFACILITY", "").strip()
        self.facility = "" if facility.lower() == "none" else facility
        self.logfile = env.get("HA_LOGFILE", "").strip()
        debuglog = env.get("HA_DEBUGLOG", "").strip()
        self.debuglog = "" if debuglog == "/dev/null" else debuglog
        self.debug_enabled = env.get("HA_debug", "0").strip() not in ("", "0")
        self.datefmt = env.get("HA_DATEFMT", "%b %d %T ")
        self.stream = sys.stderr

    # the familiar logging-style method names, so code reads like any Python
    def debug(self, msg: str, *args: object) -> None:
        self.log("debug", msg, *args)

    def info(self, msg: str, *args: object) -> None:
        self.log("info", msg, *args)

    def warning(self, msg: str, *args: object) -> None:
        self.log("warning", msg, *args)

    def error(self, msg: str, *args: object) -> None:
        self.log("error", msg, *args)

    def log(self, level: str, msg: str, *args: object) -> None:
        if level not in _LEVELS:
            raise ValueError(f"unknown log level {level!r}")
        if level == "debug" and not self.debug_enabled:
            return
        text = (msg % args if args else msg).replace("\0", " ")
        line = f"{_WORDS[level]}: {text}"
        wrote = False
        if self.facility:
            self._syslog(level, line)
            wrote = True
        if level == "debug" and self.debuglog:
            self._append(self.debuglog, line)
            wrote = True
        elif self.logfile:
            self._append(self.logfile, line)
            wrote = True
        if not wrote:
            self._write_stream(line)

    def _stamp(self) -> str:
        try:
            return time.strftime(self.datefmt.replace("%T", "%H:%M:%S"))
        except ValueError:
            return time.strftime("%b %d %H:%M:%S ")

    def _append(self, path: str, line: str) -> None:
        try:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(f"{self.tag}:\t{self._stamp()}{line}\n")
        except OSError:
            # a log file we cannot write must never fail the action itself
            self._write_stream(line)

    def _write_stream(self, line: str) -> None:
        try:
            self.stream.write(f"{self.tag}:\t{self._stamp()}{line}\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def _syslog(self, level: str, line: str) -> None:
        import syslog  # only when asked for: a C module, cheap, but not always needed

        fac = getattr(syslog, "LOG_" + self.facility.upper(), syslog.LOG_DAEMON)
        prio = {"debug": syslog.LOG_DEBUG, "info": syslog.LOG_INFO,
                "warning": syslog.LOG_WARNING, "error": syslog.LOG_ERR}[level]
        syslog.openlog(self.tag, 0, fac)
        syslog.syslog(prio, line)
