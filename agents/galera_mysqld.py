"""The local mariadbd of a Galera node: start, stop, recover, query wsrep status.

Standard library only; the status query (the monitor's hot path) runs the
``mariadb`` client over the local unix socket as root, which measured faster here
than importing PyMySQL in a fresh interpreter (bench/galera_monitor.py), and
keeps no password in the CIB. Processes are found by the PID file and checked by
their /proc cmdline, and ended by that PID only.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections import namedtuple
from collections.abc import Mapping, Sequence

from pacestack.agents import galera_files, galera_state
from pacestack.agents.galera_state import Position, StateError

from pacestack import proc

STATUS_VARS = ("wsrep_cluster_status", "wsrep_local_state_comment", "wsrep_ready",
               "wsrep_cluster_state_uuid", "wsrep_last_committed", "wsrep_cluster_size",
               "wsrep_connected", "wsrep_gcomm_uuid", "wsrep_cluster_conf_id")
# wsrep_local_state_comment values of a member that serves (a donor still commits)
HEALTHY_STATES = ("Synced", "Donor/Desynced", "Donor", "Desynced")
CLIENTS = ("/usr/bin/mariadb", "/usr/bin/mysql")
SST_IN_PROGRESS = "sst_in_progress"  # wsrep_sst_common's joiner marker of an unfinished SST
SST_PID_FILE = "wsrep_sst.pid"  # the running SST script (joiner or donor)
# the agent's own record that it started this mariadbd to join a Primary: Galera
# empties grastate.dat for an SST, and when the stock script fails it removes both
# of its markers on exit, so this is what tells that empty file from a lost one
JOIN_MARKER = "pacestack-joining"
# Galera's saved Primary view (pc.recovery): a node that crashed keeps it, and the next
# mariadbd reads its gcomm identity from it
VIEW_STATE = "gvwstate.dat"
INSTALL_DB = ("/usr/bin/mariadb-install-db", "/usr/bin/mysql_install_db")
# what mariadb-install-db creates (and lost+found of a volume mounted as the datadir)
INSTALL_SCHEMAS = frozenset({"mysql", "performance_schema", "sys", "test", "lost+found"})
MAX_RECOVER_LOG = 8 << 20  # a --wsrep-recover log is a few kB
# wsrep_sst_pacestack_rsync and its shims, shipped with the agents: mariadbd finds an
# SST method's script on its PATH (after its own bindir, which it puts first)
SST_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sst")
SST_METHOD = "pacestack_rsync"
# mariadbd runs "wsrep_sst_<method>" through a shell: a method is a plain name
SST_METHOD_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def iso_seconds(text: str | None, default: float) -> float:
    """Galera's durations (PT3S, PT1.5S, PT1M30S) in seconds; default when unreadable."""
    m = re.fullmatch(r"PT(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?",
                     (text or "").strip())
    if not m or not any(m.groups()):
        return default
    h, mi, sec = (float(g or 0) for g in m.groups())
    return h * 3600 + mi * 60 + sec


class MysqldError(RuntimeError):
    """One line: what failed about the local mariadbd."""


_FIELDS = ("binary config datadir socket pid_file log user group cluster_address "
           "check_defaults_file sst_method")


class Mysqld(namedtuple("Mysqld", _FIELDS, defaults=("", ""))):
    """Where one node's mariadbd lives (the agent's parameters)."""

    __slots__ = ()

    # -- process -----------------------------------------------------------------
    def base_args(self) -> list[str]:
        # --defaults-file must come first; the parameters override what it says
        return [self.binary, f"--defaults-file={self.config}", f"--datadir={self.datadir}",
                f"--socket={self.socket}", f"--pid-file={self.pid_file}", f"--user={self.user}"]

    def provider_option(self, name: str) -> str | None:
        """One wsrep_provider_options entry as the config file sets it (None: Galera's
        default applies)."""
        done = subprocess.run(["my_print_defaults", f"--defaults-file={self.config}",
                               "mysqld", "server", "galera", "mariadb", "mariadbd"],
                              capture_output=True, text=True, timeout=10, check=False)
        value = None
        for line in done.stdout.splitlines():
            key, _, options = line.partition("=")
            if key.replace("_", "-") != "--wsrep-provider-options":
                continue
            for option in options.split(";"):
                k, _, v = option.partition("=")
                if k.strip() == name:
                    value = v.strip()  # the last one given wins, as in Galera
        return value

    def pid(self) -> int | None:
        """The running mariadbd of this datadir, None when there is none."""
        pid = _read_pid(self.pid_file)
        if not pid or not proc.is_alive(pid):
            return None
        argv = proc.cmdline(pid)
        if argv and os.path.basename(argv[0]) in ("mariadbd", "mysqld",
                                                   os.path.basename(self.binary)):
            return pid
        # argv[0] is what the starter chose; the executable is what runs (the sh
        # monitor front checks this, galera_sh_monitor.py)
        if _executes(pid, self.binary):
            return pid
        return None  # a stale pid file whose number was reused

    def spawn(self, extra: Sequence[str]) -> int:
        """Start mariadbd detached (own session) and return its PID; no waiting."""
        for d in (os.path.dirname(self.socket), os.path.dirname(self.pid_file)):
            self._own_dir(d)
        self._own_dir(self.datadir)
        argv = [*self.base_args(), f"--log-error={self.log}",
                f"--wsrep_cluster_address={self.cluster_address}"]
        if self.sst_method:
            argv.append(f"--wsrep_sst_method={self.sst_method}")
        argv += extra
        with open(os.devnull, "rb") as null_in, open(os.devnull, "wb") as null_out:
            child = subprocess.Popen(argv, stdin=null_in, stdout=null_out, stderr=null_out,
                                     start_new_session=True, close_fds=True, cwd="/",
                                     env=sst_env(os.environ))
        # mariadbd writes its pid file itself later; record ours now so a stop or a
        # monitor during a long SST finds the process
        try:
            _write_pid(self.pid_file, child.pid, *_ids(self.user, self.group))
        except OSError as exc:
            raise _failed(f"cannot write {self.pid_file} for mariadbd pid {child.pid}",
                          exc) from None
        return child.pid

    def _own_dir(self, path: str) -> None:
        if not path:
            return
        try:
            galera_files.make_dir(path, *_ids(self.user, self.group))
        except OSError as exc:
            raise _failed(f"cannot create {path}", exc) from None

    def stop(self, timeout: float) -> bool:
        """SIGTERM (clean shutdown writes the seqno to grastate.dat), SIGKILL after
        timeout. True when it ended cleanly or was not running."""
        pid = self.pid()
        if pid is None:
            return True
        os.kill(pid, signal.SIGTERM)
        if proc.wait_for(lambda: not proc.is_alive(pid), timeout):
            return True
        proc.signal_pid(pid, signal.SIGKILL)
        proc.wait_for(lambda: not proc.is_alive(pid), 10)
        return False

    # -- status ----------------------------------------------------------------------
    def client(self) -> str:
        for c in CLIENTS:
            if os.access(c, os.X_OK):
                return c
        raise MysqldError("no mariadb/mysql client installed")

    def status(self, timeout: float = 10, every: bool = False) -> dict[str, str]:
        """wsrep status through the local socket (the monitor's few variables, or
        ``every`` wsrep_% one); MysqldError when it does not answer."""
        names = ",".join(f"'{v}'" for v in STATUS_VARS)
        out = self._query("SHOW GLOBAL STATUS LIKE 'wsrep%'" if every else
                          f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})",
                          timeout, "status query")
        values = {}
        for line in out.splitlines():
            key, _, value = line.partition("\t")
            values[key.strip().lower()] = value.strip()
        return values

    def members(self, timeout: float = 10) -> tuple[str, list[str]]:
        """(view id, node UUIDs) of the view mariadbd last stored (MariaDB 10.4+ keeps
        it in mysql.wsrep_cluster and wsrep_cluster_members, garbd included): the
        view id is wsrep_cluster_conf_id's value for the same view. MysqldError
        when it does not answer or the tables are missing."""
        out = self._query("SELECT c.view_id, m.node_uuid FROM mysql.wsrep_cluster c "
                          "JOIN mysql.wsrep_cluster_members m", timeout)
        views, uuids = set(), []
        for line in out.splitlines():
            view_id, _, uuid = line.partition("\t")
            views.add(view_id.strip())
            uuids.append(uuid.strip())
        if len(views) != 1 or not all(galera_state.is_uuid(u) for u in uuids):
            raise MysqldError(f"mysql.wsrep_cluster_members on {self.socket} holds no "
                              "single view of node UUIDs")
        return views.pop(), uuids

    def _auth(self) -> list[str]:
        return ([f"--defaults-file={self.check_defaults_file}"] if self.check_defaults_file
                else ["--no-defaults", "--user=root"])

    def _query(self, sql: str, timeout: float, what: str = "query") -> str:
        argv = [self.client(), *self._auth(), f"--socket={self.socket}", "--protocol=socket",
                "--connect-timeout=5", "--batch", "--skip-column-names", "--execute", sql]
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                 check=False, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise MysqldError(f"{what} on {self.socket} timed out") from None
        if out.returncode != 0:
            detail = (out.stderr.strip().splitlines() or ["no output"])[-1]
            raise MysqldError(f"{what} on {self.socket} failed: {detail[:200]}")
        return out.stdout

    def set_provider_option(self, option: str) -> None:
        """SET GLOBAL wsrep_provider_options (the two_node_mode pc.bootstrap path)."""
        out = subprocess.run([self.client(), *self._auth(), f"--socket={self.socket}",
                              "--protocol=socket", "--execute",
                              f"SET GLOBAL wsrep_provider_options='{option}'"],
                             capture_output=True, text=True, timeout=30, check=False)
        if out.returncode != 0:
            raise MysqldError(f"setting {option} failed: {out.stderr.strip()[:200]}")

    def log_tail(self, size: int = 20000) -> str:
        try:
            with os.fdopen(galera_files.open_file(self.log), "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - size))
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    # -- positions ---------------------------------------------------------------------
    def has_data(self) -> bool:
        """An initialised datadir (system tables or InnoDB files present)."""
        return any(os.path.exists(os.path.join(self.datadir, n))
                   for n in ("mysql", "ibdata1", "aria_log_control"))

    def own_schemas(self) -> list[str]:
        """Schemas beyond what mariadb-install-db creates (a ``test`` schema counts only
        when it holds a table): the difference between a fresh install and a
        standalone server's data."""
        found = []
        with os.scandir(self.datadir) as entries:
            for e in entries:
                if not e.is_dir(follow_symlinks=False) or e.name.startswith("#") \
                        or e.name in INSTALL_SCHEMAS:
                    continue
                if e.name == "test" and set(os.listdir(e.path)) <= {"db.opt"}:
                    continue
                found.append(e.name)
        return sorted(found)

    def grastate_path(self) -> str:
        return os.path.join(self.datadir, "grastate.dat")

    def position(self, recover_timeout: float = 120, cache: str = "") -> Position:
        """This stopped node's last committed position. Raises StateError/MysqldError
        (a node we cannot place must not be ranked). ``cache``: a root-owned file that
        keeps a --wsrep-recover result for as long as the datadir is unchanged."""
        if not os.path.isdir(self.datadir):
            raise StateError(f"datadir {self.datadir} does not exist")
        if self.unfinished_sst():
            # the joiner died mid-copy: its files (grastate.dat included) are a mix of
            # two states, so it has no history of its own and must take an SST again
            return Position(galera_state.ZERO_UUID, -1, "empty")
        if not self.has_data():
            # no database files at all (new or wiped datadir, or a joiner that died
            # before any were copied): nothing to lose, whatever grastate.dat says
            return Position(galera_state.ZERO_UUID, -1, "empty")
        if self.grastate_emptied():
            raise StateError(f"{self.grastate_path()} is empty but no state transfer of "
                             "this node's was under way (no SST marker, no join by the "
                             "agent): its history is unknown")
        state = galera_state.read_grastate(self.grastate_path())
        if state is not None and state.seqno >= 0:
            return Position(state.uuid, state.seqno, "grastate")
        recovered = self.recover_cached(cache, recover_timeout) if cache \
            else self.recover(recover_timeout)
        if state is not None and state.uuid != galera_state.ZERO_UUID:
            # grastate.dat names a history: InnoDB must hold the same one
            if recovered.uuid != state.uuid:
                raise StateError(f"{self.grastate_path()} says cluster {state.uuid} but "
                                 f"InnoDB recovered {recovered}: the datadir does not "
                                 "match its Galera state")
            return recovered
        if recovered.uuid != galera_state.ZERO_UUID:
            # a node that crashed soon after joining by SST still has the zero UUID in
            # grastate.dat: then InnoDB's recovered position is the only record
            return recovered
        schemas = self.own_schemas()
        if schemas:
            return Position(galera_state.ZERO_UUID, -1, "standalone")
        return Position(galera_state.ZERO_UUID, -1, "empty")

    def saved_view(self) -> str | None:
        """The node UUID of the Primary view a crash left (gvwstate.dat), "?" when the
        file is there but unreadable as one, None when there is none. mariadbd removes
        it on a clean shutdown, so with mariadbd stopped it names a dead incarnation."""
        try:
            dir_fd = galera_files.open_dir(self.datadir)
        except OSError as exc:
            raise _failed(f"cannot open {self.datadir}", exc) from None
        try:
            return self._view_uuid(dir_fd)
        finally:
            os.close(dir_fd)

    @staticmethod
    def _view_uuid(dir_fd: int) -> str | None:
        try:
            fd = galera_files.open_regular(VIEW_STATE, dir_fd)
        except FileNotFoundError:
            return None
        except OSError:
            return "?"  # not a plain file (a symlink)
        with os.fdopen(fd, "rb") as fh:
            head = fh.read(4096).decode(errors="replace")
        return next((ln.split(":", 1)[1].strip() for ln in head.splitlines()
                     if ln.startswith("my_uuid:")), "?")

    def forget_view(self) -> str | None:
        """Remove the saved Primary view a crash left (gvwstate.dat); its node UUID, or
        None when there was none. With it, the next mariadbd comes back as the crashed
        incarnation of that UUID: peers still evicting the old one then refuse it (or
        worse, lose their own Primary), and after the eviction they shun it for
        gmcast.time_wait. Without it, the node joins under a new identity."""
        try:
            dir_fd = galera_files.open_dir(self.datadir)
        except OSError as exc:
            raise _failed(f"cannot open {self.datadir}", exc) from None
        try:
            uuid = self._view_uuid(dir_fd)
            if uuid is not None:
                galera_files.remove(VIEW_STATE, dir_fd)
            return uuid
        finally:
            os.close(dir_fd)

    def unfinished_sst(self) -> bool:
        """wsrep_sst_rsync's joiner marker survived, or Galera emptied grastate.dat for
        a state transfer (joiner start) and an SST script pid file or this agent's join
        marker is left. A donor leaves the pid file too, but its grastate.dat is
        intact, so it is not matched."""
        if os.path.exists(os.path.join(self.datadir, SST_IN_PROGRESS)):
            return True
        if not self.grastate_emptied():
            return False
        return any(os.path.exists(os.path.join(self.datadir, name))
                   for name in (SST_PID_FILE, JOIN_MARKER))

    def grastate_emptied(self) -> bool:
        try:
            return os.path.getsize(self.grastate_path()) == 0
        except OSError:
            return False

    def mark_joining(self, peer: str) -> None:
        """Record, durably and before mariadbd starts, that this node joins ``peer``:
        the bootstrap rule has accepted that an SST may replace its data."""
        dir_fd = galera_files.open_dir(self.datadir)
        try:
            galera_files.install(dir_fd, JOIN_MARKER, f"joining {peer}\n".encode(), 0, 0,
                                 0o644, replace=True)
            os.fsync(dir_fd)  # the marker must outlive a power cut during the copy
        finally:
            os.close(dir_fd)

    def clear_joining(self) -> None:
        """The join ended Synced (its state is in grastate.dat) or this node bootstraps."""
        dir_fd = galera_files.open_dir(self.datadir)
        try:
            galera_files.remove(JOIN_MARKER, dir_fd)
        finally:
            os.close(dir_fd)

    def fingerprint(self) -> str:
        """The datadir's state as far as a recovered position depends on it: any run
        of mariadbd (a failed start too), an SST, a restore or a replaced volume
        changes the inode or change time of one of these."""
        parts = []
        for name in (".", "grastate.dat", "ib_logfile0", "ibdata1", "aria_log_control"):
            try:
                st = os.stat(os.path.join(self.datadir, name), follow_symlinks=False)
            except OSError:
                parts.append(f"{name}:-")
                continue
            parts.append(f"{name}:{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:"
                         f"{st.st_ctime_ns}")
        return " ".join(parts)

    def recover_cached(self, cache: str, timeout: float = 120) -> Position:
        """recover(), unless ``cache`` holds the result of one on this very datadir
        state: Pacemaker's recovery of a failed node runs demote, stop and start,
        and each would otherwise replay InnoDB's recovery again."""
        try:
            with open(cache, encoding="ascii") as fh:
                seen, _, pos = fh.read().rpartition("\n")[0].rpartition("\n")
            if seen == self.fingerprint() and self.pid() is None:
                return galera_state.parse_position(pos, cache, source="recovered")
        except (OSError, ValueError, StateError):
            pass
        with contextlib.suppress(FileNotFoundError):
            os.unlink(cache)
        pos = self.recover(timeout)
        with contextlib.suppress(OSError):  # only costs the next action a recovery
            with open(cache, "w", encoding="ascii") as fh:
                fh.write(f"{self.fingerprint()}\n{pos.uuid}:{pos.seqno}\n")
        return pos

    def recover(self, timeout: float = 120) -> Position:
        """``mariadbd --wsrep-recover``: never on a running node."""
        if self.pid() is not None:
            raise MysqldError("refusing --wsrep-recover: mariadbd is running")
        ids = _ids(self.user, self.group)
        # the log lives in the datadir (mariadbd, as mysql, must write it), so it is
        # made under a random name and read back through its descriptor only
        try:
            dir_fd = galera_files.open_dir(self.datadir)
        except OSError as exc:
            raise _failed("refusing --wsrep-recover", exc) from None
        try:
            name, fd = galera_files.create_temp(dir_fd, "wsrep-recover.", ".log", *ids, 0o640)
        except OSError as exc:
            os.close(dir_fd)
            raise _failed(f"cannot create a --wsrep-recover log in {self.datadir}", exc) from None
        try:
            with os.fdopen(fd, "rb") as fh:
                try:
                    out = subprocess.run(
                        [*self.base_args(), "--wsrep-recover",
                         f"--log-error={os.path.join(self.datadir, name)}",
                         "--skip-networking"],
                        capture_output=True, text=True, timeout=timeout, check=False,
                        stdin=subprocess.DEVNULL, cwd="/")
                except subprocess.TimeoutExpired:
                    raise MysqldError(f"--wsrep-recover did not finish in "
                                      f"{timeout:.0f}s") from None
                text = fh.read(MAX_RECOVER_LOG).decode(errors="replace")
            if out.returncode != 0 and "Recovered position" not in text:
                last = [ln for ln in (text + out.stderr).splitlines() if ln.strip()]
                raise MysqldError(f"--wsrep-recover exited {out.returncode}: "
                                  f"{last[-1][:200] if last else 'no output'}")
            return galera_state.parse_recover_log(text, "--wsrep-recover output")
        finally:
            galera_files.remove(name, dir_fd)
            os.close(dir_fd)

    def initialise(self) -> None:
        """A fresh datadir for the bootstrap of a brand-new cluster."""
        tool = next((t for t in INSTALL_DB if os.access(t, os.X_OK)), None)
        if tool is None:
            raise MysqldError("mariadb-install-db not installed")
        self._own_dir(self.datadir)
        out = subprocess.run([tool, f"--defaults-file={self.config}", f"--datadir={self.datadir}",
                              f"--user={self.user}", "--skip-test-db",
                              "--auth-root-authentication-method=socket"],
                             capture_output=True, text=True, timeout=300, check=False)
        if out.returncode != 0:
            detail = (out.stderr.strip().splitlines() or ["no output"])[-1]
            raise MysqldError(f"mariadb-install-db failed: {detail[:200]}")


def sst_env(environ: Mapping[str, str]) -> dict[str, str]:
    """mariadbd's environment: SST_DIR last on PATH, so that this node can serve as
    donor (and join) by wsrep_sst_pacestack_rsync, while nothing there shadows a
    system tool."""
    env = dict(environ)
    path = env.get("PATH") or "/usr/sbin:/usr/bin:/sbin:/bin"
    if SST_DIR not in path.split(":"):
        path = f"{path}:{SST_DIR}"
    env["PATH"] = path
    return env


def _ids(user: str, group: str) -> tuple[int, int]:
    import grp  # start/recover only; the monitor never needs them
    import pwd

    try:
        return pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid
    except KeyError:
        raise MysqldError(f"no user {user!r} or group {group!r} on this host") from None


def _failed(what: str, exc: OSError) -> MysqldError:
    if isinstance(exc, galera_files.UnsafePath):
        return MysqldError(str(exc))  # names the path and why root refuses it
    return MysqldError(f"{what}: {exc.strerror or exc}")



def _executes(pid: int, binary: str) -> bool:
    """The process runs the file ``binary`` (whatever its argv[0] says)."""
    try:
        return os.path.samefile(f"/proc/{pid}/exe", binary)
    except OSError:
        return False


def _read_pid(path: str) -> int | None:
    try:
        text = galera_files.read_file(path, 32).strip()
    except OSError:
        return None  # missing, unreadable, or not a plain file: no pid to trust
    return int(text) if text.isdigit() and len(text) <= 20 else None


def _write_pid(path: str, pid: int, uid: int, gid: int) -> None:
    head, name = galera_files.split(path)
    dir_fd = galera_files.open_dir(head)
    try:
        # owned by mariadbd's user: it rewrites and removes the file itself
        galera_files.install(dir_fd, name, f"{pid}\n".encode(), uid, gid, 0o644, replace=True)
    finally:
        os.close(dir_fd)


def wait(predicate, timeout: float, interval: float = 0.2) -> bool:
    """Poll until true or timeout (no fixed sleeps in callers)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
