"""The drill's target for real controllers over ssh: see target.py."""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pacestack.cluster import crm_mon
from pacestack.cluster.drill.target import (
    COROSYNC_PORTS,
    NFT_TABLE,
    PROBE_MODULE,
    NodeSample,
    ProbeHandle,
    Target,
    layout_from_cib,
    programs_from_args,
)
from pacestack.cluster.hostnames import host_name_problem

from pacestack import proc
from pacestack.errors import ConfigError, RuntimeFailure


@dataclass
class SshOptions:
    nodes: list[str]
    db_defaults_file: Path          # the writer's [client] user/password, mode 0600
    user: str = "root"
    identity: Path | None = None
    known_hosts: Path | None = None
    port: int | None = None
    config: Path | None = None      # an ssh_config to use instead of the user's
    probe_from: str | None = None   # run the writer/probes on this host (over ssh)
    probe_python: str = "python3"   # its python with pacestack installed
    vip_name: str | None = None     # default: the VIP's address
    connect_timeout: int = 5


def check_ssh_options(opts: SshOptions) -> None:
    """Refuse, naming what is wrong, before anything is touched."""
    for what, names in (("--nodes", opts.nodes),
                        ("--from", [opts.probe_from] if opts.probe_from is not None else [])):
        for name in names:
            problem = host_name_problem(name)
            if problem:
                raise ConfigError(f"{what}: {problem}")
    if len(opts.nodes) < 2 or len(set(opts.nodes)) != len(opts.nodes):
        raise ConfigError("--nodes: name the cluster's nodes (at least two, comma-separated, "
                          "as Pacemaker knows them)")
    for what, path in (("--ssh-identity", opts.identity), ("--ssh-known-hosts",
                                                           opts.known_hosts),
                       ("--ssh-config", opts.config)):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{what} {path}: no such file")
    f = Path(opts.db_defaults_file)
    if not f.is_file():
        raise ConfigError(f"--db-defaults-file {f}: no such file")
    if opts.probe_from is None:  # on --from HOST the path is that host's
        mode = f.stat().st_mode & 0o777
        if mode & 0o077:
            raise ConfigError(f"--db-defaults-file {f}: mode {mode:04o}; it holds a password: "
                              "make it 0600")
        import configparser

        cp = configparser.ConfigParser(allow_no_value=True, strict=False, interpolation=None)
        try:
            cp.read(f, encoding="utf-8")
        except configparser.Error as exc:
            raise ConfigError(f"--db-defaults-file {f}: {str(exc).splitlines()[0]}") from None
        if not cp.has_option("client", "user"):
            raise ConfigError(f"--db-defaults-file {f}: no user in its [client] section")


class SshTarget(Target):
    """Real controllers, every command over ssh as ``user`` (root by default)."""

    kind = "ssh"

    def __init__(self, opts: SshOptions) -> None:
        check_ssh_options(opts)
        self.opts = opts
        self.node_names = list(opts.nodes)
        self.run_id = f"ssh-{time.strftime('%Y%m%d%H%M%S')}"
        self._ctl = Path(tempfile.mkdtemp(prefix="pacestack-drill-ssh-"))  # mode 0700
        self._down: set[str] = set()
        self._cut: set[str] = set()
        self._lock = threading.Lock()
        self._hosts: dict[str, int] = {}
        try:
            self._discover()
        except BaseException:
            self.close()
            raise

    # -- ssh plumbing
    def ssh_argv(self, host: str, master: bool = False) -> list[str]:
        o = self.opts
        argv = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"ConnectTimeout={o.connect_timeout}", "-o", "ServerAliveInterval=2",
                "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR",
                "-o", f"ControlPath={self._socket(host)}",
                "-o", "ControlMaster=yes" if master else "ControlMaster=no", "-l", o.user]
        if o.config:
            argv += ["-F", str(o.config)]
        if o.identity:
            argv += ["-i", str(o.identity), "-o", "IdentitiesOnly=yes"]
        if o.known_hosts:
            argv += ["-o", f"UserKnownHostsFile={o.known_hosts}"]
        if o.port:
            argv += ["-p", str(o.port)]
        return argv + ["--", host]  # checked names; "--" all the same

    def _socket(self, host: str) -> Path:
        with self._lock:
            index = self._hosts.setdefault(host, len(self._hosts))
        return self._ctl / str(index)

    def _master(self, host: str) -> None:
        """One connection per host for the whole drill (a sample then costs a few ms):
        a master started detached (-f) with no pipe of ours, so it never holds a
        command's output open. If it cannot start, commands connect directly."""
        if self._socket(host).exists():
            return
        argv = self.ssh_argv(host, master=True)
        argv[1:1] = ["-f", "-N", "-o", "ControlPersist=yes"]
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=self.opts.connect_timeout + 10,
                           check=False, start_new_session=True)

    def run(self, node, argv, input=None, timeout=60):
        return self._ssh(node, shlex.join(str(a) for a in argv), input, timeout)

    def _ssh(self, host: str, command: str, input: str | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess:
        self._master(host)
        # no second "--": ssh would hand it to the remote shell as part of the command
        # (ssh_argv already ends options before the host; commands start with a program)
        return proc.run_group([*self.ssh_argv(host), command], input=input, timeout=timeout)

    def _must(self, node: str, argv: Sequence[str], timeout: float = 60,
              input: str | None = None) -> str:
        res = self.run(node, argv, input=input, timeout=timeout)
        if res.returncode != 0:
            tail = (res.stderr or res.stdout).strip().splitlines()[-1:]
            raise RuntimeFailure(f"on {node}: {shlex.join(argv)} exited {res.returncode}"
                                 + (f": {tail[0]}" if tail else ""))
        return res.stdout

    def reachable(self, node: str, timeout: float = 10) -> bool:
        try:
            return self._ssh(node, "true", timeout=timeout).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def _discover(self) -> None:
        for node in self.node_names:
            try:
                res = self._ssh(node, "true", timeout=30)
                why = (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1]
            except subprocess.TimeoutExpired:
                res, why = None, "timed out"
            if res is None or res.returncode != 0:
                raise RuntimeFailure(f"ssh {self.opts.user}@{node}: no answer ({why}; BatchMode: "
                                     "the key must be authorised and the host key known)")
        first = self.node_names[0]
        view = self.crm(first)
        if view is None:
            raise RuntimeFailure(f"crm_mon on {first}: Pacemaker does not answer")
        strangers = [n for n in self.node_names if n not in view.online]
        if strangers:
            raise ConfigError(f"--nodes: {strangers[0]} is not a node of this cluster "
                              f"(nodes: {', '.join(sorted(view.online))})")
        self.layout = layout_from_cib(self._must(first, ["cibadmin", "-Q", "-o", "resources"]),
                                      self.opts.vip_name)
        res = self.run(first, ["corosync-cmapctl", "-g", "runtime.config.totem.token"])
        try:
            self.token_ms = int(res.stdout.rsplit("=", 1)[1])
        except (IndexError, ValueError):
            self.token_ms = None

    def close(self) -> None:
        """End the shared connections (ssh -O exit) and remove their directory."""
        for host in list(self._hosts):
            if self._socket(host).exists():
                with contextlib.suppress(Exception):
                    subprocess.run(self.ssh_argv(host)[:-2] + ["-O", "exit", "--", host],
                                   capture_output=True, timeout=10, check=False)
        with contextlib.suppress(OSError):
            for leftover in self._ctl.iterdir():
                leftover.unlink()
            self._ctl.rmdir()

    # -- observation
    def is_up(self, node: str) -> bool:
        if node in self._down:
            return False
        if node in self._cut:  # the cluster may have fenced it meanwhile
            return self.reachable(node, 10)
        return True

    def sample(self, node: str) -> NodeSample | None:
        if node in self._down:
            return None
        script = ("ip -o -4 addr show; echo @@ps@@; ps -e -o args=; echo @@crm@@; "
                  f"{shlex.join(crm_mon.ARGV)} 2>/dev/null")
        try:
            res = self._ssh(node, script, timeout=10)
        except subprocess.TimeoutExpired:
            return None
        if res.returncode == 255 or "@@crm@@" not in res.stdout:
            return None
        addrs, _, rest = res.stdout.partition("@@ps@@\n")
        ps, _, xml = rest.partition("@@crm@@\n")
        return NodeSample(f" {self.layout.vip}/" in addrs, programs_from_args(ps.splitlines()),
                          crm_mon.parse(xml))

    # -- faults
    def crash(self, node: str) -> str:
        """Power the node off through its own fencing device, asked of a survivor."""
        if not self.layout.fencing:
            raise ConfigError("node crash over ssh powers the node off through its fencing "
                              "device: this cluster has none configured")
        via = self.observer(exclude=[node])
        # --delay -1: pcmk_delay_base breaks ties in a split; here it would only
        # shift the moment the power goes off
        self._must(via, ["stonith_admin", "--fence", node, "--delay", "-1",
                         "--timeout", "120"], timeout=150)
        self._down.add(node)
        return f"{node} powered off by its fencing device (stonith_admin --fence on {via})"

    def boot(self, node: str, timeout: float = 300) -> str:
        """Power on through the same device ("on" action), wait for ssh, start the
        cluster stack if the node does not start it at boot."""
        via = self.observer(exclude=[node])
        self._must(via, ["stonith_admin", "--unfence", node, "--timeout", "120"], timeout=150)
        if not proc.wait_for(lambda: self.reachable(node, 10), timeout, interval=1.0):
            raise RuntimeFailure(f"{node} powered on but ssh does not answer after "
                                 f"{timeout:.0f}s")
        self._down.discard(node)
        self._drop_rules(node)  # rules that outlived the power-off (they never should)

        def pacemaker_up() -> bool:
            return self.run(node, list(crm_mon.ARGV), timeout=15).returncode == 0

        if not proc.wait_for(pacemaker_up, 30, interval=1.0):
            self._must(node, ["pcs", "cluster", "start"], timeout=120)  # not enabled at boot
            return f"{node} powered on (fencing device); cluster stack started"
        return f"{node} powered on again through its fencing device"

    def standby(self, node: str, on: bool) -> str:
        via = self.observer(exclude=[node] if not on else [])
        self._must(via, ["pcs", "node", "standby" if on else "unstandby", node], timeout=60)
        return f"{node} put in standby (pcs node standby)" if on else f"{node} out of standby"

    def kill(self, node: str, what: str) -> int:
        """kill -9 of the pid in the resource's own pid file."""
        if what == "mariadbd":
            pidfile = self._must(node, ["mysql", "--batch", "--skip-column-names", "-e",
                                        "SELECT @@pid_file"], timeout=30).strip()
        else:
            pidfile = self.layout.pidfiles.get(what, "")
        if not pidfile.startswith("/"):
            raise RuntimeFailure(f"no pid file known for {what} on {node}")
        q = shlex.quote(pidfile)
        script = f'pid=$(cat {q}) && [ -n "$pid" ] && kill -9 "$pid" && echo "$pid"'
        res = self._ssh(node, script, timeout=30)
        if res.returncode != 0 or not res.stdout.strip().isdigit():
            raise RuntimeFailure(f"no {what} process on {node} (pid file {pidfile}): "
                                 f"{(res.stderr or res.stdout).strip()[:200]}")
        return int(res.stdout.strip())

    def cut(self, node: str) -> str:
        """Drop corosync's ring traffic in and out of the node (loopback spared)."""
        if not self._ssh(node, "command -v nft >/dev/null", timeout=30).returncode == 0:
            raise RuntimeFailure(f"partition on {node} needs nft (apt install nftables)")
        rules = f"""\
table inet {NFT_TABLE} {{
  chain input {{ type filter hook input priority -10; policy accept;
    iifname "lo" accept; udp dport {COROSYNC_PORTS} drop; udp sport {COROSYNC_PORTS} drop; }}
  chain output {{ type filter hook output priority -10; policy accept;
    oifname "lo" accept; udp dport {COROSYNC_PORTS} drop; udp sport {COROSYNC_PORTS} drop; }}
}}
"""
        self._cut.add(node)  # before: a half-applied table is removed too
        self._must(node, ["nft", "-f", "-"], input=rules, timeout=30)
        return (f"{node}: corosync traffic (udp {COROSYNC_PORTS}) dropped by nft table "
                f"inet {NFT_TABLE} (fencing on)")

    def _drop_rules(self, node: str) -> bool:
        script = (f"if nft list table inet {NFT_TABLE} >/dev/null 2>&1; then "
                  f"nft delete table inet {NFT_TABLE}; fi")
        try:
            return self._ssh(node, script, timeout=30).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def restore(self, node: str) -> None:
        """Remove the partition's rules; a node that cannot be reached now (fenced)
        keeps them on the list and boot() removes them."""
        if node in self._cut and self._drop_rules(node):
            self._cut.discard(node)

    def is_cut(self, node: str) -> bool:
        return node in self._cut

    def sql(self, statements: str, node: str | None = None, timeout: float = 120) -> str:
        """As the node's root through its own client configuration (unix socket)."""
        where = node or self.observer()
        res = self.run(where, ["mysql", "--batch", "--skip-column-names"], input=statements,
                       timeout=timeout)
        if res.returncode != 0:
            raise RuntimeFailure(f"mysql on {where}: "
                                 f"{(res.stderr or res.stdout).strip().splitlines()[-1:]}")
        return res.stdout

    # -- the writer and probes
    def probe_argv(self, python: str, out: str, start_id: int) -> list[str]:
        lay = self.layout
        argv = [python, "-m", PROBE_MODULE, "--host", lay.vip_name, "--defaults-file",
                str(self.opts.db_defaults_file), "--out", out, "--start-id", str(start_id)]
        for name, url in lay.probe_urls.items():
            argv += ["--http", f"{name}={url}"]
        return argv

    def start_probe(self, out: Path, start_id: int) -> ProbeHandle:
        if self.opts.probe_from is None:
            argv = self.probe_argv(sys.executable, str(out), start_id)
            log = open(out.with_suffix(".log"), "ab")  # noqa: SIM115 - the child holds it
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True)
            log.close()
        else:
            # events come back on ssh's stdout; ending ssh ends the remote probe
            # (its next write hits a closed pipe)
            remote = shlex.join(self.probe_argv(self.opts.probe_python, "-", start_id))
            with open(out, "ab") as fh, open(out.with_suffix(".log"), "ab") as log:
                p = subprocess.Popen([*self.ssh_argv(self.opts.probe_from), remote],
                                     stdin=subprocess.DEVNULL, stdout=fh, stderr=log,
                                     start_new_session=True)

        def stop() -> None:
            proc.terminate(p.pid, timeout=10)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)

        return ProbeHandle(out, stop)
