"""One lab host: its private directories on the host and how to run things inside it.

A host is a network namespace (kept for the whole run) plus a "boot": a
mount+UTS+IPC+PID namespace whose PID 1 is the reaper. A crash ends the boot
(every process at once); a restart is a new boot over the same directories, as
a machine reboots over the same disk.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pacestack.cluster import crm_mon

from pacestack import proc

from . import netns

# Where each private host directory is mounted inside the host.
MOUNTS = {
    "etc_corosync": "/etc/corosync",
    "var_lib_corosync": "/var/lib/corosync",
    "var_lib_pacemaker": "/var/lib/pacemaker",
    # all of /var/log: /var/log/mysql does not exist on the host to mount over
    "var_log": "/var/log",
    "run": "/run",
    "etc_mysql": "/etc/mysql",
    "var_lib_mysql": "/var/lib/mysql",
    # the RabbitMQ member's cluster membership and quorum-queue logs outlive a crash,
    # as on a real disk: a node that boots again rejoins with what it had
    "var_lib_rabbitmq": "/var/lib/rabbitmq",
    "etc_hosts": "/etc/hosts",
}

# Environment variables that would point a command at something other than the
# node's live cluster (a CIB file, another node's name).
_HOST_ONLY_ENV = ("CIB_", "PCMK_", "OCF_", "HA_")
DAEMON_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class NodeRoot:
    """A host's private directories, as paths on the machine running the lab."""

    base: Path

    @property
    def etc_corosync(self) -> Path:
        return self.base / "etc_corosync"

    @property
    def var_lib_corosync(self) -> Path:
        return self.base / "var_lib_corosync"

    @property
    def var_lib_pacemaker(self) -> Path:
        return self.base / "var_lib_pacemaker"

    @property
    def var_log(self) -> Path:
        return self.base / "var_log"

    @property
    def var_log_corosync(self) -> Path:
        return self.var_log / "corosync"

    @property
    def var_log_pacemaker(self) -> Path:
        return self.var_log / "pacemaker"

    @property
    def var_log_mysql(self) -> Path:
        return self.var_log / "mysql"

    @property
    def run(self) -> Path:
        return self.base / "run"

    @property
    def etc_mysql(self) -> Path:
        return self.base / "etc_mysql"

    @property
    def var_lib_mysql(self) -> Path:
        return self.base / "var_lib_mysql"

    @property
    def var_lib_rabbitmq(self) -> Path:
        return self.base / "var_lib_rabbitmq"

    @property
    def etc_hosts(self) -> Path:
        return self.base / "etc_hosts"

    @property
    def boot_dir(self) -> Path:
        """Lab bookkeeping for the host (reaper spec, daemon stdout); not mounted."""
        return self.base / "lab"

    def host_path(self, inside: str) -> Path:
        """The host path of a path inside the node, e.g. /var/lib/mysql/grastate.dat."""
        for key, target in sorted(MOUNTS.items(), key=lambda kv: -len(kv[1])):
            if inside == target or inside.startswith(target.rstrip("/") + "/"):
                return getattr(self, key) / os.path.relpath(inside, target)
        raise ValueError(f"{inside} is not in a private directory of the node")

    def binds(self) -> list[tuple[str, str]]:
        return [(str(getattr(self, key)), target) for key, target in MOUNTS.items()]


def _chown(path: Path, user: str, group: str) -> None:
    shutil.chown(path, user, group)


def _mkdir(path: Path, mode: int, user: str = "root", group: str = "root") -> None:
    path.mkdir(parents=True, exist_ok=True)
    _chown(path, user, group)
    os.chmod(path, mode)


def populate(root: NodeRoot, hosts_file: str) -> None:
    """First-boot contents of a host's disk (as the Debian packages would leave them)."""
    _mkdir(root.base, 0o755)
    _mkdir(root.boot_dir, 0o700)
    _mkdir(root.etc_corosync, 0o755)
    _mkdir(root.etc_corosync / "uidgid.d", 0o755)
    _mkdir(root.var_lib_corosync, 0o755)
    _mkdir(root.var_lib_pacemaker, 0o755)
    for sub in ("cib", "pengine", "blackbox", "cores"):
        _mkdir(root.var_lib_pacemaker / sub, 0o750, "hacluster", "haclient")
    _mkdir(root.var_log, 0o755)
    _mkdir(root.var_log_corosync, 0o755)
    _mkdir(root.var_log_pacemaker, 0o770, "hacluster", "haclient")
    _mkdir(root.var_log_pacemaker / "bundles", 0o770, "hacluster", "haclient")
    _mkdir(root.var_log_mysql, 0o2750, "mysql", "adm")
    # /etc/mysql as installed, so mariadbd and the Galera agent find their usual config.
    if Path("/etc/mysql").is_dir():
        shutil.copytree("/etc/mysql", root.etc_mysql, symlinks=True, dirs_exist_ok=True)
    else:
        _mkdir(root.etc_mysql, 0o755)
    _mkdir(root.var_lib_mysql, 0o755, "mysql", "mysql")
    _mkdir(root.var_lib_rabbitmq, 0o750)
    root.etc_hosts.write_text(hosts_file, encoding="utf-8")
    os.chmod(root.etc_hosts, 0o644)
    reset_run(root)


def reset_run(root: NodeRoot) -> None:
    """An empty /run, as after a reboot (the tmpfiles.d entries the stack relies on)."""
    if root.run.exists():
        shutil.rmtree(root.run)
    _mkdir(root.run, 0o755)
    _mkdir(root.run / "lock", 0o1777)
    _mkdir(root.run / "resource-agents", 0o1755)
    _mkdir(root.run / "mysqld", 0o755, "mysql", "root")
    (root.run / "shm").symlink_to("/dev/shm")


class LabCommandError(subprocess.CalledProcessError):
    """A command inside a lab host failed; str() names the host and shows stderr."""

    def __init__(self, host: str, returncode: int, cmd: list[str], output: str, stderr: str):
        super().__init__(returncode, cmd, output, stderr)
        self.host = host

    def __str__(self) -> str:
        tail = (self.stderr or self.output or "").strip().splitlines()[-5:]
        return (f"on {self.host}: {' '.join(self.cmd)} exited {self.returncode}"
                + (": " + " | ".join(tail) if tail else ""))


@dataclass
class ClusterView:
    """What one node's crm_mon says: which nodes are online, who is DC."""

    online: dict[str, bool]
    dc: str | None


class Node:
    """A lab host. ``run``/``popen`` execute inside its net+mount+UTS+IPC+PID namespaces."""

    def __init__(self, name: str, address: str, root: NodeRoot, netns_name: str,
                 cluster_member: bool = True):
        self.name = name
        self.address = address
        self.root = root
        self.netns = netns_name
        self.cluster_member = cluster_member
        self.reaper_pid: int | None = None  # PID 1 of the current boot, as the host sees it
        self.holder: subprocess.Popen | None = None

    def __repr__(self) -> str:
        return f"<lab Node {self.name} {self.address} pid1={self.reaper_pid}>"

    @property
    def booted(self) -> bool:
        """Is the host up (its PID 1 alive)?"""
        return self.reaper_pid is not None and proc.is_alive(self.reaper_pid)

    def _prefix(self) -> list[str]:
        if self.reaper_pid is None:
            raise netns.LabError(f"{self.name} is down (crashed or not started)")
        return netns.nsenter_argv(self.reaper_pid)

    @staticmethod
    def _env(env: dict[str, str] | None) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(_HOST_ONLY_ENV)}
        base.update(env or {})
        return base

    def run(self, argv: list[str], check: bool = True, input: str | None = None,
            env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run argv inside the node, capturing text output (like subprocess.run)."""
        argv = [str(a) for a in argv]
        # nsenter and its child share the process group: a timeout ends both
        done = proc.run_group(self._prefix() + argv, input=input, timeout=timeout,
                              env=self._env(env), cwd="/")
        res = subprocess.CompletedProcess(argv, done.returncode, done.stdout, done.stderr)
        if check and res.returncode != 0:
            raise LabCommandError(self.name, res.returncode, argv, res.stdout, res.stderr)
        return res

    def popen(self, argv: list[str], **kw) -> subprocess.Popen:
        """subprocess.Popen inside the node. The returned PID is nsenter's (on the host);
        it leads its own process group, so ``os.killpg(p.pid, sig)`` reaches the program."""
        kw.setdefault("start_new_session", True)
        kw.setdefault("cwd", "/")
        kw["env"] = self._env(kw.get("env"))
        return subprocess.Popen(self._prefix() + [str(a) for a in argv], **kw)

    def start_daemon(self, argv: list[str], log_name: str,
                     env: dict[str, str] | None = None) -> int:
        """Start a long-running program detached in its own session; it becomes a
        child of the node's PID 1, so it lives until stopped or until the node
        crashes. Output goes to root.boot_dir/log_name. Returns its host PID (stop it
        with pacestack.proc.terminate(pid))."""
        clean = {"PATH": DAEMON_PATH, "LANG": "C.UTF-8", "HOME": "/root", **(env or {})}
        # The log arrives as sh's stdin and is moved to fd 3 (an asynchronous list's
        # stdin is /dev/null). A background job of a non-interactive sh is no group
        # leader, so setsid execs in place and $! is the daemon's PID in the node.
        script = 'exec 3>&0 </dev/null; setsid "$@" >&3 2>&3 3>&- & echo $!'
        with open(self.root.boot_dir / log_name, "ab") as log:
            res = subprocess.run(self._prefix() + ["sh", "-c", script, "sh", *map(str, argv)],
                                 stdin=log, capture_output=True, text=True, env=clean, cwd="/",
                                 check=False, timeout=30)
        inner = res.stdout.strip()
        if res.returncode != 0 or not inner.isdigit():
            raise LabCommandError(self.name, res.returncode, list(argv), res.stdout, res.stderr)
        pid = self.host_pid(int(inner))
        if pid is None:
            raise netns.LabError(f"on {self.name}: {argv[0]} exited at once "
                                 f"(see {self.root.boot_dir / log_name})")
        return pid

    def host_pid(self, inner_pid: int) -> int | None:
        """The host PID of the process the node knows as inner_pid."""
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
                    for line in fh:
                        if line.startswith("NSpid:"):
                            if int(line.split()[-1]) == inner_pid:
                                return pid
                            break
            except (FileNotFoundError, ProcessLookupError):
                continue
        return None

    def pids(self) -> list[int]:
        """Host PIDs of every process in this node's current boot (its PID namespace)."""
        if self.reaper_pid is None:
            return []
        ino = netns.ns_inode(self.reaper_pid, "pid")
        return netns.pids_in_namespaces("pid", {ino}) if ino else []

    def running(self, program: str) -> bool:
        """Is a process of this program (by executable name) alive in the node?"""
        return any(os.path.basename((proc.cmdline(p) or [""])[0]) == program
                   for p in self.pids())

    def status(self) -> ClusterView | None:
        """This node's view of the cluster (crm_mon), None if it cannot tell yet."""
        if self.reaper_pid is None:
            return None
        res = self.run(list(crm_mon.ARGV), check=False, timeout=15)
        v = crm_mon.parse(res.stdout) if res.returncode == 0 else None
        return None if v is None else ClusterView(v.online, v.dc)

    def online(self) -> bool:
        """True if this node's own Pacemaker sees itself online with a DC elected."""
        view = self.status()
        return bool(view and view.dc and view.online.get(self.name))

    def log_tail(self, lines: int = 20) -> str:
        """The end of the node's corosync and pacemaker logs (for error messages)."""
        out = []
        for path in (self.root.var_log_corosync / "corosync.log",
                     self.root.var_log_pacemaker / "pacemaker.log"):
            if path.exists():
                text = path.read_text(encoding="utf-8", errors="replace").splitlines()
                out.append(f"== {self.name}:{path.name}\n" + "\n".join(text[-lines:]))
        return "\n".join(out)
