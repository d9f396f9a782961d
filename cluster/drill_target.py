"""What ``pacestack cluster drill`` does to a cluster, behind one small interface.

Two targets:

- ``LabTarget``: the namespace lab (``pacestack lab up``). A crash is the lab's
  power cut (SIGKILL of the node's whole PID namespace), a partition unplugs the
  node's port on the lab switch, commands run through nsenter, the writer runs
  on the arbitrator host, and the lab's fence_dummy "power switch" is watched
  by the drill itself.
- ``SshTarget``: real controllers over ``ssh`` (BatchMode, the operator's key
  and known_hosts; never a password). A crash is the node's own fencing device
  (``stonith_admin --fence``: off, the configured fencing delay disabled), its
  return the same device's "on" action (``stonith_admin --unfence``) -- the
  cluster recorded the power-off itself, so nothing is ever *confirmed* by hand
  (``pcs stonith confirm`` on a node that is not really off is how data is
  lost). A partition is an nft table on the victim that drops corosync's ring
  traffic (removed afterwards, always); a killed service is ``kill -9`` of the
  pid in the resource's own pid file; the writer and the probes run on this
  machine (or on ``--from HOST`` over ssh) against the VIP's name.

Everything returns data; the drill (drill.py) decides, the CLI renders.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pacestack.cluster.hostnames import host_name_problem
from pacestack.cluster.lab.nodes import membership

from pacestack import proc
from pacestack.errors import ConfigError, RuntimeFailure

# corosync's ring traffic (knet/udpu use mcastport 5405 by default, one port per link)
COROSYNC_PORTS = "5404-5412"
NFT_TABLE = "pacestack_drill"
PROBE_MODULE = "pacestack.cluster.drill_probe"


@dataclass
class CrmView:
    """One node's crm_mon, parsed once: nodes online, the DC, where resources run,
    the failed actions."""

    online: dict[str, bool]
    dc: str | None
    placement: dict[str, list[tuple[str, str]]]
    failures: list[dict[str, str]] = field(default_factory=list)


def parse_crm_mon(text: str) -> CrmView | None:
    """crm_mon --output-as=xml -> CrmView; None for no (or unparsable) answer."""
    if not text.strip():
        return None
    try:
        doc = ET.fromstring(text)
    except ET.ParseError:
        return None
    online, dc = membership(doc)
    placed: dict[str, list[tuple[str, str]]] = {}
    resources = doc.find("resources")
    if resources is not None:
        for el in resources.iter("resource"):
            slot = placed.setdefault((el.get("id") or "").split(":")[0], [])
            if el.get("active") == "true" and el.get("failed") != "true":
                slot.extend((n.get("name", ""), el.get("role", "")) for n in el.findall("node"))
    fails = [{k: f.get(k, "") for k in ("op_key", "node", "exitreason", "status")}
             for f in doc.iterfind("./failures/failure")]
    return CrmView(online, dc, {k: sorted(v) for k, v in placed.items()}, fails)


@dataclass
class Layout:
    """What the drill watches, read from the cluster's own configuration."""

    vip: str                            # the VIP's address
    vip_name: str                       # what clients connect to (DNS name or the address)
    vip_id: str = "vip"
    galera_id: str = "galera"
    services: list[str] = field(default_factory=list)        # cloned, Started everywhere
    single_instance: list[str] = field(default_factory=list)  # must never run twice
    programs: dict[str, str] = field(default_factory=dict)   # single-instance id -> program
    probe_urls: dict[str, str] = field(default_factory=dict)  # name -> URL through the VIP
    pidfiles: dict[str, str] = field(default_factory=dict)    # service -> its pid file
    fencing: bool = False


def layout_from_cib(resources_xml: str, vip_name: str | None = None) -> Layout:
    """The drill's Layout from ``cibadmin -Q -o resources``: the IPaddr2 primitive is
    the VIP, the promotable clone the Galera, other clones the services (probed
    at their monitor_url through the VIP), uncloned primitives the single-instance
    resources (counted by their binary's name)."""
    try:
        doc = ET.fromstring(resources_xml)
    except ET.ParseError as exc:
        raise RuntimeFailure(f"cibadmin -Q -o resources: not XML ({exc})") from None

    def params(prim: ET.Element) -> dict[str, str]:
        return {nv.get("name", ""): nv.get("value", "")
                for nv in prim.iterfind("./instance_attributes/nvpair")}

    vip = vip_id = galera_id = None
    lay = Layout(vip="", vip_name="")
    for el in doc:
        if el.tag == "primitive":
            p = params(el)
            if el.get("class") == "stonith":
                lay.fencing = True
            elif el.get("type") in ("IPaddr2", "IPaddr") and vip is None:
                vip, vip_id = p.get("ip"), el.get("id")
            else:
                rid = el.get("id", "")
                lay.single_instance.append(rid)
                lay.programs[rid] = os.path.basename(p.get("binary") or el.get("type", rid))
        elif el.tag == "clone":
            prim = el.find("primitive")
            if prim is None:
                continue
            meta = {nv.get("name"): nv.get("value")
                    for nv in el.iterfind("./meta_attributes/nvpair")}
            rid, p = prim.get("id", ""), params(prim)
            if (meta.get("promotable") or "").lower() in ("true", "yes", "1"):
                galera_id = galera_id or rid
            else:
                lay.services.append(rid)
                if p.get("pid"):
                    lay.pidfiles[rid] = p["pid"]
                if p.get("monitor_url"):
                    lay.probe_urls[rid] = p["monitor_url"]
    if not vip or not vip_id:
        raise RuntimeFailure("no IPaddr2 resource (the VIP) in the cluster's configuration")
    if galera_id is None:
        raise RuntimeFailure("no promotable clone (Galera) in the cluster's configuration")
    lay.vip, lay.vip_id, lay.galera_id = vip, vip_id, galera_id
    lay.vip_name = vip_name or vip
    for rid, url in list(lay.probe_urls.items()):
        parts = urllib.parse.urlsplit(url)
        host = lay.vip_name if ":" not in lay.vip_name else f"[{lay.vip_name}]"
        netloc = host + (f":{parts.port}" if parts.port else "")
        lay.probe_urls[rid] = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return lay


@dataclass
class NodeSample:
    vip: bool                 # the VIP address is on one of its interfaces
    programs: set[str]        # program names running there
    view: CrmView | None      # its crm_mon (None: Pacemaker not answering)


def programs_from_args(lines: Sequence[str]) -> set[str]:
    """Program names from ``ps -e -o args=`` lines: a venv console script runs as
    ``python .../bin/cinder-volume``, so the script's name counts too."""
    names = set()
    for line in lines:
        words = line.split()[:2]
        names.update(os.path.basename(w) for w in words if w)
    return names


class ProbeHandle:
    """The running writer/probe; its events are JSON lines in ``out``."""

    def __init__(self, out: Path, stop) -> None:
        self.out = out
        self._stop = stop

    def stop(self) -> None:
        self._stop()

    def events(self) -> list[dict]:
        if not self.out.exists():
            return []
        found = []
        for line in self.out.read_text(encoding="utf-8").splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue  # a line cut by the kill
        return found


class Target(abc.ABC):
    """The operations the drill needs. Node names are the Pacemaker node names."""

    kind = "?"
    node_names: list[str]
    layout: Layout
    run_id: str
    work_dir: Path | None = None    # where the probe's event logs go (None: a fresh one)
    token_ms: int | None = None

    @abc.abstractmethod
    def run(self, node: str, argv: Sequence[str], input: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
        raise NotImplementedError

    @abc.abstractmethod
    def is_up(self, node: str) -> bool:
        raise NotImplementedError

    def crm(self, node: str, timeout: float = 15) -> CrmView | None:
        if not self.is_up(node):
            return None
        try:
            res = self.run(node, ["crm_mon", "-1", "--output-as=xml"], timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return parse_crm_mon(res.stdout) if res.returncode == 0 else None

    def observer(self, exclude: Sequence[str] = ()) -> str:
        """A node whose Pacemaker answers."""
        for name in self.node_names:
            if name not in exclude and self.crm(name, timeout=10) is not None:
                return name
        raise RuntimeFailure("no cluster node answers crm_mon")

    def placement(self) -> dict[str, list[tuple[str, str]]]:
        for name in self.node_names:
            view = self.crm(name)
            if view is not None:
                return view.placement
        return {}

    @abc.abstractmethod
    def sample(self, node: str) -> NodeSample | None:
        raise NotImplementedError

    def tick(self) -> list[str]:
        """Called every sample: nodes the target itself powered off since (the lab's
        power switch); real fencing devices need nothing."""
        return []

    @abc.abstractmethod
    def crash(self, node: str) -> str:
        raise NotImplementedError

    @abc.abstractmethod
    def boot(self, node: str) -> str:
        raise NotImplementedError

    @abc.abstractmethod
    def standby(self, node: str, on: bool) -> str:
        raise NotImplementedError

    @abc.abstractmethod
    def kill(self, node: str, what: str) -> int:
        raise NotImplementedError

    @abc.abstractmethod
    def cut(self, node: str) -> str:
        raise NotImplementedError

    @abc.abstractmethod
    def restore(self, node: str) -> None:
        raise NotImplementedError

    @abc.abstractmethod
    def is_cut(self, node: str) -> bool:
        raise NotImplementedError

    @abc.abstractmethod
    def sql(self, statements: str, node: str | None = None, timeout: float = 120) -> str:
        raise NotImplementedError

    @abc.abstractmethod
    def start_probe(self, out: Path, start_id: int) -> ProbeHandle:
        raise NotImplementedError

    def cleanup(self) -> None:
        node = self.observer()
        self.run(node, ["crm_resource", "--cleanup"], timeout=60)

    def close(self) -> None:  # noqa: B027 - optional: only the ssh target holds anything
        """Release what the target holds (ssh connections)."""


# ---- the lab ---------------------------------------------------------------------

class LabTarget(Target):
    """The namespace lab; behaviour and timings as the drill always had on it."""

    kind = "lab"

    def __init__(self, lab) -> None:
        self.lab = lab
        info = lab.info
        self.node_names = lab.cluster.node_names
        self.run_id = info.run_id
        self.token_ms = lab.cluster.token_ms
        self.layout = Layout(vip=info.vip, vip_name=info.vip_name,
                             services=list(info.services),
                             single_instance=list(info.single_instance),
                             programs={s: s for s in info.single_instance},
                             fencing=bool(info.power_dir))
        self.work_dir = lab.cluster.dir / "drill"

    def _node(self, name: str):
        return self.lab.cluster.node(name)

    def run(self, node, argv, input=None, timeout=60):
        return self._node(node).run(list(argv), check=False, input=input, timeout=timeout)

    def is_up(self, node: str) -> bool:
        return self._node(node).booted

    def crm(self, node: str, timeout: float = 15) -> CrmView | None:
        n = self._node(node)
        if not n.booted or not n.running("pacemakerd"):
            return None
        return super().crm(node, timeout)

    def sample(self, node: str) -> NodeSample | None:
        n = self._node(node)
        if not n.booted:
            return None
        res = n.run(["ip", "-o", "-4", "addr", "show"], check=False, timeout=5)
        programs = set()
        for pid in n.pids():  # from the host's /proc: cheaper than ps inside
            argv = proc.cmdline(pid) or []
            programs.update(os.path.basename(a) for a in argv[:2] if a)
        return NodeSample(f" {self.layout.vip}/" in res.stdout, programs,
                          self.crm(node, timeout=5))

    def tick(self) -> list[str]:
        """The lab's power switch: a node whose fence_dummy file reads off is
        powered off (crashed) at once, as a real fence device would."""
        from pacestack.cluster.lab import stack

        power = self.lab.info.power_dir
        if not power:
            return []
        off = []
        for node in self.lab.cluster.nodes:
            if node.booted and stack.powered_off(Path(power), node.name):
                self.lab.crash(node.name)
                off.append(node.name)
        return off

    def crash(self, node: str) -> str:
        self.lab.crash(node)
        return f"{node} powered off"

    def boot(self, node: str) -> str:
        self.lab.restart(node)
        return f"{node} booted again"

    def standby(self, node: str, on: bool) -> str:
        # off is asked of the other node: the one in standby may be the only DC
        where = node if on else next(n for n in self.node_names if n != node)
        self._node(where).run(["crm_attribute", "--node", node, "--name", "standby",
                               "--update", "on" if on else "off", "--lifetime", "forever"],
                              timeout=30)
        return f"{node} put in standby" if on else f"{node} out of standby"

    def kill(self, node: str, what: str) -> int:
        n = self._node(node)
        if what == "mariadbd":
            pids = [p for p in n.pids()
                    if os.path.basename((proc.cmdline(p) or [""])[0]) == "mariadbd"]
        else:
            inner = proc.read_pidfile(str(n.root.host_path(f"/run/pacestack-{what}.pid")))
            pid = n.host_pid(inner) if inner else None  # the node's own PID namespace
            pids = [pid] if pid else []
        if not pids:
            raise RuntimeFailure(f"no {what} process on {node}")
        for pid in pids:
            proc.signal_pid(pid, signal.SIGKILL)
        return pids[0]

    def cut(self, node: str) -> str:
        self.lab.cluster.cut_link(node)
        return f"{node} unplugged from the lab network (fencing on)"

    def restore(self, node: str) -> None:
        if self.is_cut(node):
            self.lab.cluster.restore_link(node)

    def is_cut(self, node: str) -> bool:
        return node in self.lab.cluster._cut

    def sql(self, statements: str, node: str | None = None, timeout: float = 120) -> str:
        return self.lab.sql(statements, node=node, timeout=timeout)

    def start_probe(self, out: Path, start_id: int) -> ProbeHandle:
        """drill_probe.py inside the arbitrator host."""
        from pacestack.cluster.lab import stack

        arb, info = self.lab.cluster.arbitrator, self.lab.info
        argv = [os.environ.get("PACESTACK_PYTHON", stack.sys.executable), "-m", PROBE_MODULE,
                "--host", info.vip_name, "--user", "pacestack_lab",
                "--password-file", info.db_password_file, "--out", str(out),
                "--start-id", str(start_id)]
        if "keystone" in info.services:
            argv += ["--http", f"keystone=http://{info.vip_name}:5000/v3"]
        if "neutron-server" in info.services:
            argv += ["--http", f"neutron=http://{info.vip_name}:9696/"]
        pid = arb.start_daemon(argv, "drill-probe.out")
        return ProbeHandle(out, lambda: proc.terminate(pid, timeout=10))


# ---- real controllers over ssh ----------------------------------------------------

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
        argv = self.ssh_argv(host) + ["--", command]
        p = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None
                             else subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = p.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
            raise
        return subprocess.CompletedProcess(argv, p.returncode, out, err)

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
                  "crm_mon -1 --output-as=xml 2>/dev/null")
        try:
            res = self._ssh(node, script, timeout=10)
        except subprocess.TimeoutExpired:
            return None
        if res.returncode == 255 or "@@crm@@" not in res.stdout:
            return None
        addrs, _, rest = res.stdout.partition("@@ps@@\n")
        ps, _, xml = rest.partition("@@crm@@\n")
        return NodeSample(f" {self.layout.vip}/" in addrs, programs_from_args(ps.splitlines()),
                          parse_crm_mon(xml))

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
            return self.run(node, ["crm_mon", "-1", "--output-as=xml"],
                            timeout=15).returncode == 0

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
                p = subprocess.Popen(self.ssh_argv(self.opts.probe_from) + ["--", remote],
                                     stdin=subprocess.DEVNULL, stdout=fh, stderr=log,
                                     start_new_session=True)

        def stop() -> None:
            proc.terminate(p.pid, timeout=10)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)

        return ProbeHandle(out, stop)
