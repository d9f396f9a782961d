"""``ocf:pacestack:openstack-service``: any OpenStack daemon under Pacemaker.

Without systemd the agent daemonizes the service itself (python-daemon) and
keeps a pid file; monitor checks that the pid is alive and really is this
service (/proc exe and command line, so a recycled pid is never mistaken for
it), then the optional HTTP health URL. With ``systemd_unit`` start/stop/monitor
go through systemctl instead. Works as a clone (stateless API services) or as a
single instance.
"""

from __future__ import annotations

import os
import time

from pacestack.agents import ocf
from pacestack.agents import service_process as sp
from pacestack.agents.ocf import Action, OCFError, Parameter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

PID_DIR = "/run/pacestack"


def split_list(value: str | None) -> list[str]:
    """``a.conf b.conf`` or ``a.conf,b.conf`` → ["a.conf", "b.conf"]."""
    return [item for item in (value or "").replace(",", " ").split() if item]


def plain_options(configs: Sequence[str]) -> Callable[[str, str], str | None]:
    """Options of oslo.config files read with configparser (the agents' paths import
    no oslo.config): later files override earlier ones, as with oslo.config;
    [DEFAULT] is a plain section, not a fallback for the others; unreadable files
    are skipped (validate-all reports them). The getter gives a value stripped, or
    None when unset or empty."""
    import configparser

    parser = configparser.RawConfigParser(strict=False, interpolation=None,
                                          default_section="\0none")
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    for path in configs:
        try:
            with open(path, encoding="utf-8") as fh:
                parser.read_file(fh, source=path)
        except (OSError, configparser.Error, UnicodeDecodeError):
            continue

    def get(section: str, option: str) -> str | None:
        if parser.has_section(section) and parser.has_option(section, option):
            return parser.get(section, option).strip() or None
        return None

    return get


def readable_by(path: str, user: str, group: str | None = None) -> bool:
    """Could ``user`` (running with ``group`` or its own groups) read path? The
    agent runs as root, for which os.access always says yes."""
    import grp
    import pwd
    import stat

    entry = pwd.getpwnam(user)
    if entry.pw_uid == 0:
        return True
    gids = {grp.getgrnam(group).gr_gid} if group else {entry.pw_gid}
    if not group:
        gids |= {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    st = os.stat(path)
    if st.st_uid == entry.pw_uid:
        return bool(st.st_mode & stat.S_IRUSR)
    if st.st_gid in gids:
        return bool(st.st_mode & stat.S_IRGRP)
    return bool(st.st_mode & stat.S_IROTH)


def systemd_command(action: str, unit: str) -> list[str]:
    """The systemctl call for an OCF action in systemd_unit mode."""
    verbs = {"start": ["start"], "stop": ["stop"], "monitor": ["is-active", "--quiet"],
             "validate-all": ["cat"]}
    if action not in verbs:
        raise ValueError(f"no systemctl command for {action!r}")
    return ["systemctl", *verbs[action], "--", unit]


SERVICE_PARAMETERS = [
    Parameter("binary", "Service executable",
              "Path (or name on PATH) of the daemon, e.g. /usr/bin/nova-scheduler. Required "
              "unless systemd_unit is set."),
    Parameter("config", "Configuration file(s)",
              "One or more configuration files, separated by spaces or commas; each is "
              "passed as --config-file in this order."),
    Parameter("user", "Run as user", "System user the daemon runs as (default: root)."),
    Parameter("group", "Run as group", "System group the daemon runs as (default: the "
              "user's primary group)."),
    Parameter("pid", "Pid file", "Pid file the agent keeps for the daemon (default "
              f"{PID_DIR}/<resource>.pid).", unique=True),
    Parameter("extra_args", "Extra arguments",
              "Further command line arguments, split like a shell would."),
    Parameter("environment", "Environment",
              "KEY=VALUE pairs (shell-quoted, space separated) added to the daemon's "
              "environment, e.g. OS_KEYSTONE_CONFIG_DIR=/etc/keystone."),
    Parameter("log", "Output log file",
              "File that receives the daemon's stdout and stderr (default: discarded)."),
    Parameter("workdir", "Working directory", default="/"),
    Parameter("umask", "umask", "File creation mask of the daemon, in octal.", default="0022"),
    Parameter("monitor_url", "Health check URL",
              "HTTP(S) URL checked by monitor, e.g. http://127.0.0.1:5000/v3 or oslo.middleware's "
              "/healthcheck; 2xx and 3xx are healthy. Start waits until it answers."),
    Parameter("monitor_timeout", "Health check timeout (seconds)", type=int, default=10),
    Parameter("stop_timeout", "Seconds between TERM and KILL on stop",
              "At least this long; longer when the config files set [DEFAULT] "
              "graceful_shutdown_timeout (oslo.service: how long a TERMed service may "
              "finish the RPCs it is handling): that plus 2 s, within the stop's timeout.",
              type=int, default=20),
    Parameter("systemd_unit", "systemd unit",
              "Manage this unit through systemctl instead of daemonizing the binary."),
]

SERVICE_ACTIONS = [
    Action("start", 120),
    Action("stop", 120),
    Action("monitor", 30, interval=10),
    Action("validate-all", 30),
]


class OpenStackServiceAgent(ocf.Agent):
    name = "openstack-service"
    # installed behind a sh front that answers a healthy recurring monitor (process
    # and URL) without starting Python: agents/sh_monitor.py
    sh_monitor = True
    version = "1.0"
    shortdesc = "An OpenStack daemon (API, scheduler, conductor, agent...)"
    longdesc = (
        "Starts, stops and monitors one OpenStack service. Without systemd_unit the "
        "agent daemonizes the binary itself (pid file, user/group, umask, working "
        "directory, output log, inherited file descriptors closed); monitor checks the "
        "recorded pid is alive and is this service (executable and command line), then "
        "the optional HTTP health URL. Use it as a clone for stateless API services or "
        "as a single instance."
    )
    parameters = SERVICE_PARAMETERS
    actions = SERVICE_ACTIONS
    log_id: tuple[int, int] | None = None  # the log this start gave the daemon

    # -- derived settings ---------------------------------------------------------
    @property
    def configs(self) -> list[str]:
        return split_list(self.params.config)

    @property
    def pidfile(self) -> str:
        if self.params.pid:
            return self.params.pid
        safe = self.resource.replace(":", "-").replace("/", "_")
        return os.path.join(PID_DIR, f"{safe}.pid")

    def binary_path(self) -> str | None:
        return sp.which(self.params.binary) if self.params.binary else None

    def service_argv(self, binary: str) -> list[str]:
        """The daemon's command line (cinder-volume adds its own config file)."""
        import shlex

        try:
            extra = shlex.split(self.params.extra_args or "")
        except ValueError as err:
            raise OCFError(ocf.ERR_CONFIGURED, f"extra_args: {err}") from None
        return sp.build_argv(binary, self.configs, extra)

    def service_env(self) -> dict[str, str]:
        import shlex

        extra = {}
        try:
            items = shlex.split(self.params.environment or "")
        except ValueError as err:
            raise OCFError(ocf.ERR_CONFIGURED, f"environment: {err}") from None
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or not key.isidentifier():
                raise OCFError(ocf.ERR_CONFIGURED,
                               f"environment: {item!r} is not KEY=VALUE")
            extra[key] = value
        return sp.service_environment(self.environ, extra)

    def op_seconds(self, default: float) -> float:
        """Time this operation may take, minus a margin to report before Pacemaker
        gives up on us."""
        if self.meta.timeout_ms:
            return max(1.0, self.meta.timeout_ms / 1000.0 - 2.0)
        return default

    def identity_configs(self) -> list[str]:
        return self.configs

    def graceful_seconds(self) -> int | None:
        """``[DEFAULT] graceful_shutdown_timeout`` of the config files (the last file
        that sets it wins, as in oslo.config): after TERM an oslo.service daemon stops
        taking RPCs and finishes those it holds (a server's build in nova-conductor)
        for up to this long; a KILL before loses them, acknowledged to the broker.
        0 is oslo.service's endless wait. None: not set, or unreadable."""
        value = plain_options(self.configs)("DEFAULT", "graceful_shutdown_timeout")
        return int(value) if value is not None and value.isdigit() else None

    def stop_seconds(self) -> float:
        """TERM to KILL: stop_timeout, or the service's own graceful shutdown plus its
        exit when that is longer, within what Pacemaker gives the stop."""
        wait = float(self.params.stop_timeout)
        limit = max(0.0, self.op_seconds(120) - 5.0)
        graceful = self.graceful_seconds()
        if graceful == 0:
            wait = limit
        elif graceful is not None:
            wait = max(wait, graceful + 2.0)
        return min(wait, limit)

    # -- systemd mode -------------------------------------------------------------
    def systemctl(self, action: str) -> int:
        import subprocess

        argv = systemd_command(action, self.params.systemd_unit)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False,
                                  timeout=self.op_seconds(60))
        except (OSError, subprocess.TimeoutExpired) as err:
            raise OCFError(ocf.ERR_GENERIC, f"{' '.join(argv)}: {err}") from None
        if done.returncode != 0 and action != "monitor":
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise OCFError(ocf.ERR_GENERIC, f"{' '.join(argv)} failed: "
                           f"{detail[-1] if detail else f'exit {done.returncode}'}")
        return done.returncode

    # -- actions ------------------------------------------------------------------
    def validate_all(self) -> int:
        p = self.params
        if p.systemd_unit:
            if sp.which("systemctl") is None:
                raise OCFError(ocf.ERR_INSTALLED,
                               "systemd_unit is set but systemctl is not installed")
        else:
            if not p.binary:
                raise OCFError(ocf.ERR_CONFIGURED, "required parameter 'binary' is not set "
                               "(or set systemd_unit)")
            if self.binary_path() is None:
                raise OCFError(ocf.ERR_INSTALLED,
                               f"binary '{p.binary}' is not installed or not executable")
        for conf in self.configs:
            if not os.path.exists(conf):
                raise OCFError(ocf.ERR_INSTALLED, f"config file {conf} does not exist")
            if not os.path.isfile(conf) or not os.access(conf, os.R_OK):
                raise OCFError(ocf.ERR_CONFIGURED, f"config file {conf} is not a readable file")
        self._validate_account()
        if p.user:
            for conf in self.configs:
                if not readable_by(conf, p.user, p.group or None):
                    raise OCFError(ocf.ERR_CONFIGURED,
                                   f"config file {conf} is not readable by user {p.user}")
        try:
            int(p.umask, 8)
        except ValueError:
            raise OCFError(ocf.ERR_CONFIGURED,
                           f"umask {p.umask!r} is not an octal number") from None
        if not os.path.isdir(p.workdir):
            raise OCFError(ocf.ERR_CONFIGURED, f"workdir {p.workdir} is not a directory")
        if p.log and not os.path.isdir(os.path.dirname(os.path.abspath(p.log))):
            raise OCFError(ocf.ERR_CONFIGURED, f"log {p.log}: directory does not exist")
        if p.monitor_timeout <= 0 or p.stop_timeout < 0:
            raise OCFError(ocf.ERR_CONFIGURED, "monitor_timeout must be > 0 and stop_timeout >= 0")
        if p.monitor_url:
            self._validate_url(p.monitor_url)
        self.service_env()
        if not p.systemd_unit:
            self.service_argv(self.binary_path() or p.binary)
        return ocf.SUCCESS

    def _validate_account(self) -> None:
        p = self.params
        if p.user:
            import pwd

            try:
                pwd.getpwnam(p.user)
            except KeyError:
                raise OCFError(ocf.ERR_CONFIGURED, f"user '{p.user}' does not exist") from None
        if p.group:
            import grp

            try:
                grp.getgrnam(p.group)
            except KeyError:
                raise OCFError(ocf.ERR_CONFIGURED, f"group '{p.group}' does not exist") from None

    @staticmethod
    def _validate_url(url: str) -> None:
        import socket
        from urllib.parse import urlsplit

        problem = sp.url_problem(url)
        if problem:
            raise OCFError(ocf.ERR_CONFIGURED, f"monitor_url {problem}")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise OCFError(ocf.ERR_CONFIGURED, f"monitor_url {url}: invalid host or port") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OCFError(ocf.ERR_CONFIGURED, f"monitor_url {url} is not an http(s) URL")
        try:
            socket.getaddrinfo(parts.hostname, port or 80, type=socket.SOCK_STREAM)
        except OSError:
            raise OCFError(ocf.ERR_CONFIGURED,
                           f"monitor_url {url}: host {parts.hostname} does not resolve") from None

    def state(self) -> sp.ServiceState:
        binary = self.binary_path() or self.params.binary or ""
        st = sp.find_service(self.pidfile, binary, self.identity_configs())
        # only without any pid file: a stale one means our service died, and what
        # is left of it (workers with the same command line) is swept, not adopted
        if st.status == "absent" and (self.is_probe or self.action == "start"):
            adopted = self.adopt(binary)
            if adopted is not None:
                return adopted
        return st

    def adopt(self, binary: str) -> sp.ServiceState | None:
        """The service running without our pid file (started by hand, or before
        this node joined): record it so Pacemaker manages it, never start a twin."""
        if not binary:
            return None
        try:
            argv = self.service_argv(binary)
        except OCFError:
            return None
        pid = sp.find_by_argv(argv)
        if pid is None or sp.claimed_elsewhere(pid, self.pidfile):
            return None  # none, or another resource's (a second clone instance here)
        sp.write_pidfile(self.pidfile, pid)
        self.log.warning(f"adopted {binary} already running as pid {pid} "
                         f"(no pid file of ours); recorded in {self.pidfile}")
        return sp.ServiceState(pid, "running", f"pid {pid} (adopted)")

    def monitor(self) -> int:
        p = self.params
        if p.systemd_unit:
            if self.systemctl("monitor") != 0:
                return ocf.NOT_RUNNING
        else:
            if not p.binary:
                raise OCFError(ocf.ERR_CONFIGURED, "required parameter 'binary' is not set")
            st = self.state()
            if not st.running:
                if st.status != "absent" and not self.is_probe:
                    self.exit_reason(f"{p.binary} is not running: {st.detail}")
                return ocf.NOT_RUNNING
        if p.monitor_url:
            ok, detail = sp.health_check(p.monitor_url, p.monitor_timeout)
            if not ok:
                raise OCFError(ocf.ERR_GENERIC, f"health check failed: {detail}")
        return self.monitor_extra()

    def monitor_extra(self) -> int:
        """Service-specific checks after process and URL (cinder-volume's DB rows)."""
        return ocf.SUCCESS

    def start(self) -> int:
        self.validate_all()
        p = self.params
        deadline = time.monotonic() + self.op_seconds(120)
        if p.systemd_unit:
            self.systemctl("start")
            return self._wait_healthy(None, deadline)
        st = self.state()
        if st.running:
            self.log.info(f"{p.binary} already running ({st.detail})")
            return self._wait_healthy(st.pid, deadline)
        if st.status in ("stale", "foreign"):
            self.log.warning(f"removing stale pid file: {st.detail}")
            if st.status == "stale" and st.pid and sp.sweep_group(st.pid, 5.0):
                self.log.warning(f"ended leftover processes of process group {st.pid}")
            sp.remove_pidfile(self.pidfile)
        self.before_start()
        argv = self.service_argv(self.binary_path())
        if p.log:
            os.makedirs(os.path.dirname(os.path.abspath(p.log)), exist_ok=True)
        try:
            started = sp.spawn_daemon(argv, pidfile=self.pidfile, logfile=p.log or None,
                                      user=p.user or None, group=p.group or None,
                                      umask=int(p.umask, 8), workdir=p.workdir,
                                      env=self.service_env(),
                                      timeout=max(1.0, deadline - time.monotonic()))
        except sp.UnsafeLog as err:
            # planted on this node by whoever writes the log directory
            raise OCFError(ocf.ERR_PERM, str(err)) from None
        except OSError as err:
            raise OCFError(ocf.ERR_GENERIC, str(err)) from None
        pid, self.log_id = started.pid, started.log_id
        self.log.info(f"started {' '.join(argv)} as pid {pid}")
        return self._wait_healthy(pid, deadline)

    def before_start(self) -> None:
        """Hook for subclasses (cinder-volume writes its host override here)."""

    def _wait_healthy(self, pid: int | None, deadline: float) -> int:
        """Until the deadline: the process must stay up; with monitor_url it must
        answer; without one it must survive a short settle time (config errors
        make daemons exit at once)."""
        from pacestack import proc

        p = self.params
        settle_until = time.monotonic() + 1.0
        detail = ""
        delay = 0.05
        while True:
            if pid is not None and not proc.is_alive(pid):
                sp.remove_pidfile(self.pidfile)
                log_tail = sp.tail(p.log, self.log_id)
                raise OCFError(ocf.ERR_GENERIC, f"{p.binary} (pid {pid}) exited during start"
                               + (f": {log_tail}" if log_tail else ""))
            if p.monitor_url:
                ok, detail = sp.health_check(p.monitor_url, p.monitor_timeout)
                if ok:
                    return ocf.SUCCESS
            elif time.monotonic() >= settle_until:
                return ocf.SUCCESS
            if time.monotonic() >= deadline:
                raise OCFError(ocf.ERR_GENERIC, f"{p.binary} started but is not healthy: {detail}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def stop(self) -> int:
        p = self.params
        if p.systemd_unit:
            self.systemctl("stop")
            return ocf.SUCCESS
        st = self.state()
        if st.running:
            timeout = self.stop_seconds()
            if sp.stop_service(st.pid, timeout):
                self.log.info(f"stopped {p.binary} (pid {st.pid})")
            else:
                self.log.warning(
                    f"{p.binary} (pid {st.pid}) ignored TERM for {timeout:.0f}s: killed")
        elif st.status in ("stale", "foreign"):
            self.log.info(f"removing stale pid file: {st.detail}")
            if st.status == "stale" and st.pid:
                # the service died; its workers may live on holding the port
                timeout = min(float(p.stop_timeout), max(0.0, self.op_seconds(120) - 5.0))
                if sp.sweep_group(st.pid, timeout):
                    self.log.warning(f"ended leftover processes of dead {p.binary} "
                                     f"(process group {st.pid})")
        sp.remove_pidfile(self.pidfile)
        return ocf.SUCCESS
