"""A daemon the agent starts itself: spawn (python-daemon), identify, health-check, stop.

Split from the agent so openstack-service and cinder-volume share one tested
implementation. What runs on the monitor path (``find_service``,
``health_check``) uses only os/socket; python-daemon, pwd/grp and ssl load only
when start or an https check needs them.
"""

from __future__ import annotations

import os
import time

from pacestack import proc

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing-only: collections.abc costs ~2 ms on every monitor
    from collections.abc import Mapping, Sequence

# Environment of the agent that must not leak into the service it starts.
_AGENT_ONLY_PREFIXES = ("OCF_", "HA_", "CIB_", "__OCF", "PCMK_", "CRM_")


def which(binary: str, path: str | None = None) -> str | None:
    """Absolute path of an executable (a path is taken as given), None if absent."""
    if "/" in binary:
        return binary if os.path.isfile(binary) and os.access(binary, os.X_OK) else None
    for d in (path or os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")).split(":"):
        candidate = os.path.join(d or ".", binary)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def build_argv(binary: str, configs: Sequence[str] = (),
               extra_args: Sequence[str] = ()) -> list[str]:
    argv = [binary]
    for conf in configs:
        argv += ["--config-file", conf]
    return argv + list(extra_args)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def interpreter(binary: str) -> str | None:
    """The interpreter of a ``#!`` script (``/usr/bin/env python3`` resolved)."""
    try:
        with open(binary, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].decode(errors="replace").split()
    if not words:
        return None
    if os.path.basename(words[0]) == "env" and len(words) > 1:
        return which(words[1])
    return words[0]


def is_our_process(pid: int, binary: str, configs: Sequence[str] = (),
                   recorded_start: int | None = None) -> bool:
    """Is this live pid really the service?

    When we spawned it we recorded its kernel start time: pid + start time name
    one process for good, whatever it exec'd into or renamed itself to (gunicorn
    rewrites its title; a wrapper script execs the real program), so a match
    decides. Without a record (a pid file someone else wrote) /proc must show
    the service: its executable (/proc/PID/exe) is ``binary`` or, for a script,
    its interpreter, and its command line names ``binary`` (argv[0], or argv[1]
    under an interpreter) and every config file. A recycled pid never passes.
    """
    if recorded_start is not None:
        return proc.start_time(pid) == recorded_start
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = None
    if exe is not None:
        script_interpreter = interpreter(binary)
        if not (_same_file(exe, binary)
                or (script_interpreter and _same_file(exe, script_interpreter))):
            return False
    argv = proc.cmdline(pid)
    if not argv:
        return False
    named = any(c == binary or _same_file(c, binary) for c in argv[:2])
    return named and all(conf in argv for conf in configs)


def _start_file(pidfile: str) -> str:
    return pidfile + ".start"


def read_start_time(pidfile: str) -> int | None:
    try:
        with open(_start_file(pidfile), "rb") as fh:  # bytes: no codec lookup on monitor
            text = fh.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class ServiceState:
    """What the pid file says, checked against /proc."""

    __slots__ = ("pid", "status", "detail")

    def __init__(self, pid: int | None, status: str, detail: str = "") -> None:
        self.pid = pid
        self.status = status  # running | absent | stale | foreign
        self.detail = detail

    @property
    def running(self) -> bool:
        return self.status == "running"

    def __repr__(self) -> str:
        return f"ServiceState({self.pid}, {self.status!r})"


def find_service(pidfile: str, binary: str, configs: Sequence[str] = ()) -> ServiceState:
    pid = proc.read_pidfile(pidfile)
    if pid is None:
        if os.path.exists(pidfile):
            return ServiceState(None, "stale", f"pid file {pidfile} holds no pid")
        return ServiceState(None, "absent", f"no pid file {pidfile}")
    if not proc.is_alive(pid):
        return ServiceState(pid, "stale", f"pid {pid} from {pidfile} is not running")
    if not is_our_process(pid, binary, configs, read_start_time(pidfile)):
        cmd = " ".join(proc.cmdline(pid))[:120]
        return ServiceState(pid, "foreign",
                            f"pid {pid} from {pidfile} is another process ({cmd}), not {binary}")
    return ServiceState(pid, "running", f"pid {pid}")


def find_by_argv(argv: Sequence[str]) -> int | None:
    """A live process running exactly this command line (e.g. started by hand
    before Pacemaker took over), directly or as a script under its interpreter.
    Probes and start use it so the service is adopted, never started twice."""
    want = list(argv)
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        cmd = proc.cmdline(pid)
        if not cmd:
            continue
        split = len(cmd) - len(want) + 1  # cmd = head (1 or 2 entries) + want[1:]
        if split < 1 or cmd[split:] != want[1:]:
            continue
        head = cmd[:split]
        direct = len(head) == 1 and (head[0] == want[0] or _same_file(head[0], want[0]))
        scripted = (len(head) == 2 and (head[1] == want[0] or _same_file(head[1], want[0]))
                    and interpreter(want[0]) is not None)
        if (direct or scripted) and proc.is_alive(pid):
            return pid
    return None


def claimed_elsewhere(pid: int, pidfile: str) -> bool:
    """Does another pid file beside ours record this pid (another resource's)?"""
    directory = os.path.dirname(os.path.abspath(pidfile))
    try:
        names = os.listdir(directory)
    except OSError:
        return False
    for name in names:
        other = os.path.join(directory, name)
        if name.endswith(".pid") and other != os.path.abspath(pidfile):
            if proc.read_pidfile(other) == pid:
                return True
    return False


def remove_pidfile(pidfile: str) -> None:
    for path in (pidfile, _start_file(pidfile)):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write(text)
    os.replace(tmp, path)


def write_pidfile(pidfile: str, pid: int) -> None:
    """The pid file (just the pid, as every tool expects) and, beside it, the
    process's kernel start time that identifies it for good."""
    os.makedirs(os.path.dirname(pidfile) or ".", mode=0o755, exist_ok=True)
    started = proc.start_time(pid)
    if started is not None:
        _write_atomic(_start_file(pidfile), f"{started}\n")
    _write_atomic(pidfile, f"{pid}\n")


def service_environment(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith(_AGENT_ONLY_PREFIXES)}
    env.update(extra)
    return env


def spawn_daemon(argv: Sequence[str], *, pidfile: str, logfile: str | None = None,
                 user: str | None = None, group: str | None = None, umask: int = 0o022,
                 workdir: str = "/", env: Mapping[str, str] | None = None,
                 timeout: float = 10.0) -> Started:
    """Start argv as a daemon (python-daemon: detached, own session, user/group,
    umask, cwd, stdout/stderr to logfile, every other fd closed), record its pid
    in pidfile and return it with the log's identity (for ``tail``). Raises
    OSError with a one-line message on failure (UnsafeLog for a planted log).

    The daemon reports its pid (or why exec failed) through a close-on-exec pipe,
    so the pid file is written by us (root) and only once exec really happened.
    """
    import daemon  # python-daemon: start path only

    uid = gid = None
    if user:
        import pwd

        entry = pwd.getpwnam(user)
        uid, gid = entry.pw_uid, entry.pw_gid
    if group:
        import grp

        gid = grp.getgrnam(group).gr_gid
    if logfile:
        log_fd, log_id = open_log(logfile, uid, gid)
    else:
        log_fd, log_id = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC), None
    log = open(log_fd, "ab", buffering=0)  # noqa: SIM115 - handed to the daemon
    read_fd, write_fd = os.pipe()  # non-inheritable: closed by exec
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked process
        code = 127
        try:
            os.close(read_fd)
            ctx = daemon.DaemonContext(
                detach_process=True, working_directory=workdir, umask=umask, uid=uid, gid=gid,
                initgroups=bool(user), stdout=log, stderr=log, files_preserve=[write_fd],
                # an explicit file: with stdin=None python-daemon reopens /dev/null
                # close-on-exec as fd 0, and the service would start without stdin
                stdin=open(os.devnull, "rb"),  # noqa: SIM115
                signal_map={},  # no ignored signals may survive into the service
                prevent_core=False,
            )
            ctx.open()
            os.setpgid(0, 0)  # own process group: stop can signal the service and its workers
            os.write(write_fd, f"{os.getpid()}\n".encode())
            import signal

            for sig in (signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(sig, signal.SIG_DFL)  # Python ignores these; the service must not
            os.execve(argv[0], list(argv), dict(env if env is not None else os.environ))
        except BaseException as err:  # noqa: BLE001 - report any failure, then leave
            try:
                os.write(write_fd, f"error: {type(err).__name__}: {err}\n".encode())
            except OSError:
                pass
        os._exit(code)
    os.close(write_fd)
    log.close()
    try:
        message = _read_until_eof(read_fd, timeout)
    finally:
        os.close(read_fd)
        _reap_child(child)
    lines = message.splitlines()
    errors = [line[7:] for line in lines if line.startswith("error: ")]
    if errors:
        raise OSError(f"could not start {argv[0]}: {errors[-1]}")
    if not lines or not lines[0].isdigit():
        raise OSError(f"could not start {argv[0]}: the daemon reported no pid")
    pid = int(lines[0])
    write_pidfile(pidfile, pid)
    return Started(pid, log_id)


class Started:
    """A daemon spawn_daemon started (a plain class: typing costs ms on monitor)."""

    __slots__ = ("pid", "log_id")

    def __init__(self, pid: int, log_id: tuple[int, int] | None) -> None:
        self.pid = pid
        self.log_id = log_id  # (st_dev, st_ino) of the log the daemon writes


class UnsafeLog(OSError):
    """The log path is not a plain file of its own (a link, a device, a FIFO)."""


_LOG_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def open_log(path: str, uid: int | None, gid: int | None) -> tuple[int, tuple[int, int]]:
    """Open the daemon's log for append as root and give it to the service account.

    The log usually lives in a directory the service account writes (/var/log/nova),
    so the account can put a symbolic link, a hard link, a FIFO or a device there:
    root must never follow one to append to, chown or later show another file.
    O_NOFOLLOW refuses a link as the last component, O_NONBLOCK keeps a FIFO from
    hanging the open, and the ownership change goes to the descriptor, not the path.
    """
    try:
        fd = os.open(path, _LOG_FLAGS, 0o666)
    except OSError as err:
        import errno

        if err.errno == errno.ELOOP:
            raise UnsafeLog(f"log {path} is a symbolic link: refused") from None
        if err.errno == errno.ENXIO:
            raise UnsafeLog(f"log {path} is not a regular file: refused") from None
        raise OSError(f"log {path}: {err.strerror}") from None
    try:
        import stat

        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeLog(f"log {path} is not a regular file: refused")
        if st.st_nlink != 1:
            raise UnsafeLog(f"log {path} has {st.st_nlink} hard links: refused")
        os.set_blocking(fd, True)
        if uid is not None:
            os.fchown(fd, uid, gid if gid is not None else -1)
    except BaseException:
        os.close(fd)
        raise
    return fd, (st.st_dev, st.st_ino)


def _read_until_eof(fd: int, timeout: float) -> str:
    import select

    chunks = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            break
        data = os.read(fd, 4096)
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


def _reap_child(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def stop_service(pid: int, timeout: float) -> bool:
    """TERM the service's process group, wait, then KILL. True if it ended on TERM."""
    import signal

    group = _own_group(pid)
    graceful = proc.terminate(pid, timeout, group=group)
    if group:
        # workers that outlived their master (KILL reached the group anyway)
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return graceful


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_group(pgid: int, timeout: float) -> bool:
    """End what is left of a dead service's process group (gunicorn workers whose
    master was killed keep the port). Safe because the leader is gone: a process
    group id cannot be reused while any member lives, so every member descends
    from the service. True if there was something to end."""
    import signal

    if pgid == os.getpgrp() or not group_exists(pgid):
        return False
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    if not proc.wait_for(lambda: not group_exists(pgid), timeout):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait_for(lambda: not group_exists(pgid), 5.0)
    return True


def _own_group(pid: int) -> bool:
    """Signal the group only when the service leads its own (as spawn_daemon
    arranges) and it is not ours: never hit the agent or Pacemaker."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return False
    return pgid == pid and pgid != os.getpgrp()


def split_http_url(url: str) -> tuple[str, str, int, str, str] | None:
    """(scheme, host, port, request target, netloc) of an http(s) URL, or None.

    A few lines instead of urllib.parse, which imports ``re`` (~10 ms on every
    monitor run)."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https"):
        return None
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0),
              default=len(rest))
    netloc, target = rest[:cut], rest[cut:].split("#", 1)[0]
    if not target.startswith("/"):
        target = "/" + target
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):  # [IPv6]:port
        host, _, after = hostport[1:].partition("]")
        port_text = after[1:] if after.startswith(":") else ""
    else:
        host, _, port_text = hostport.partition(":")
    if not host or (port_text and not port_text.isdigit()):
        return None
    port = int(port_text) if port_text else (443 if scheme == "https" else 80)
    if not 0 < port < 65536:
        return None
    return scheme, host, port, target, netloc


def url_problem(url: str) -> str | None:
    """What makes ``url`` unfit for a health check whatever it parses to, or None.
    The sh front hands the same URLs to Python (sh_monitor.py), so curl and this
    client never judge different requests: no credentials (curl would send them,
    this client drops them; either way they would land in the CIB and exit
    reasons) and nothing outside printable ASCII (a newline would add a header)."""
    if any(c <= " " or c >= "\x7f" for c in url):
        return "contains a space, a control or a non-ASCII character: refused"
    rest = url.partition("://")[2]
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0),
              default=len(rest))
    if "@" in rest[:cut]:
        return "carries credentials (user@host): refused, the check sends none"
    return None


def health_check(url: str, timeout: float) -> tuple[bool, str]:
    """GET url; healthy on 2xx/3xx. Returns (ok, one-line detail).

    A minimal HTTP/1.0 client rather than urllib.request: the monitor runs every
    few seconds and urllib.request costs ~50 ms of imports (http.client, email,
    ssl). Plain http goes through ``_socket``, the C module under ``socket``:
    socket.py itself imports enum, selectors and functools (5-40 ms on a busy
    controller, more than the whole check); https still needs socket and ssl.
    """
    problem = url_problem(url)
    if problem:
        return False, f"monitor_url {problem}"
    parts = split_http_url(url)
    if parts is None:
        return False, f"{url} is not an http(s) URL"
    scheme, host, port, target, netloc = parts
    request = (f"GET {target} HTTP/1.0\r\nHost: {netloc}\r\n"
               "User-Agent: pacestack-ocf\r\nAccept: */*\r\nConnection: close\r\n\r\n"
               ).encode()
    try:
        if scheme == "https":
            head = _https_head(host, port, request, timeout)
        else:
            head = _http_head(host, port, request, timeout)
    except OSError as err:
        return False, f"{url}: {err.strerror or err}"
    status = head.split(b"\r\n", 1)[0].decode(errors="replace")
    fields = status.split()
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        return False, f"{url}: not an HTTP response ({status[:60]!r})"
    code = int(fields[1])
    if 200 <= code < 400:
        return True, f"{url}: HTTP {code}"
    return False, f"{url}: HTTP {code}"


def _address(host: str) -> str | bytes:
    # an ASCII host as bytes: a str goes through the idna codec, which imports re
    return host.encode("ascii") if host.isascii() else host


def _read_status(recv) -> bytes:
    """Bytes up to the end of the status line (at most 4 KiB)."""
    head = b""
    while b"\r\n" not in head and len(head) < 4096:
        data = recv(1024)
        if not data:
            break
        head += data
    return head


def _http_head(host: str, port: int, request: bytes, timeout: float) -> bytes:
    """What socket.create_connection does (every address in turn, timeout per
    attempt, the last error raised), on _socket."""
    import _socket

    last: OSError | None = None
    for family, kind, proto, _name, address in _socket.getaddrinfo(
            _address(host), port, 0, _socket.SOCK_STREAM):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except OSError as err:
            sock.close()
            last = err
            continue
        try:
            sock.sendall(request)
            return _read_status(sock.recv)
        finally:
            sock.close()
    raise last if last is not None else OSError("getaddrinfo returned no address")


def _https_head(host: str, port: int, request: bytes, timeout: float) -> bytes:
    import socket
    import ssl

    with socket.create_connection((_address(host), port), timeout=timeout) as sock:
        conn = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        conn.sendall(request)
        return _read_status(conn.recv)


def tail(path: str | None, log_id: tuple[int, int] | None, lines: int = 3) -> str:
    """The last lines of the log the daemon was given, for an exit reason when start
    fails. ``log_id`` is what ``open_log`` returned: whatever the service account
    put at ``path`` since (a link to /etc/shadow) is not shown."""
    if not path or log_id is None:
        return ""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != log_id:
            return ""
        size = st.st_size
        text = os.pread(fd, 4096, max(0, size - 4096)).decode(errors="replace")
    except OSError:
        return ""
    finally:
        os.close(fd)
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])
