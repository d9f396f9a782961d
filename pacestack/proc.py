"""Small process helpers shared by the agents, the lab and the test harness.

Only the standard library: the agents' monitor path imports this. Processes are
always ended by the PID we started or recorded, never by name, and a zombie
counts as dead (``kill -0`` succeeds on zombies; /proc/PID/status does not lie).
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing-only: collections.abc imports collections (~2 ms per monitor)
    import subprocess
    from collections.abc import Callable


def process_state(pid: int) -> str | None:
    """The one-letter state from /proc/PID/status ('R', 'S', 'Z', ...), None if gone."""
    # bytes, not text: a text file looks up its codec (encodings.ascii) on the monitor path
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"State:"):
                    return line.split()[1].decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def is_alive(pid: int | None) -> bool:
    if not pid or pid <= 0:
        return False
    state = process_state(pid)
    return state is not None and state not in ("Z", "X")


def start_time(pid: int) -> int | None:
    """Kernel start time in clock ticks: with the PID it identifies one process for good."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name may hold spaces and parentheses: fields follow the last ')'
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[19])


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def read_pidfile(path: str) -> int | None:
    try:
        with open(path, "rb") as fh:
            text = fh.read().strip()
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        return None
    return int(text) if text.isdigit() else None


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll predicate until it is true or timeout seconds pass; back off gently."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(interval, remaining))
        interval = min(interval * 1.5, 0.5)


def signal_pid(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def terminate(pid: int, timeout: float = 10.0, *, group: bool = False) -> bool:
    """SIGTERM, wait up to timeout, then SIGKILL. True if it ended gracefully.

    With group=True the signal goes to the process group led by pid (a service
    started with setsid), so its children end with it.
    """
    if not is_alive(pid):
        return True
    import signal  # only stopping needs it; the monitor path never does

    send = (lambda s: os.killpg(pid, s)) if group else (lambda s: os.kill(pid, s))
    try:
        send(signal.SIGTERM)
    except ProcessLookupError:
        return True
    if wait_for(lambda: not is_alive(pid), timeout):
        _reap(pid)
        return True
    try:
        send(signal.SIGKILL)
    except ProcessLookupError:
        return True
    wait_for(lambda: not is_alive(pid), 10.0)
    _reap(pid)
    return False


def _reap(pid: int) -> None:
    """Collect our own child's exit status so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def run_group(argv: list[str], input: str | None = None, timeout: float = 60,
              env: dict[str, str] | None = None, cwd: str | None = None
              ) -> subprocess.CompletedProcess:
    """Run argv in a session of its own, capturing text output; on timeout the whole
    process group is killed (a wrapper such as nsenter or ssh and what it started
    would otherwise outlive the caller) and TimeoutExpired is raised."""
    import signal
    import subprocess  # not at the top: the agents' monitor path imports this module

    p = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None
                         else subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
                         start_new_session=True)
    try:
        out, err = p.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise
    return subprocess.CompletedProcess(argv, p.returncode, out, err)
