"""LabCluster: a real Corosync/Pacemaker cluster on this machine, one namespace set per node.

    with LabCluster() as lab:                    # controller01, controller02, arbitrator
        lab.node("controller01").run(["pcs", "resource", "create", "d", "ocf:heartbeat:Dummy"])
        lab.crash("controller01")                # SIGKILL of its whole PID namespace
        lab.restart("controller01")              # boots again, rejoins

Each run has a random id that names its namespaces, its directory and its
corosync cluster, a /24 of its own in 10.99.0.0/16 that exists only inside
its namespaces, and a state file (see state.py) so that ``destroy`` -- or, if
the owner died, the next run's ``cleanup_stale`` -- removes exactly what it made.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pacestack import proc

from . import corosync, netns, nodes, state
from .netns import LabError
from .nodes import Node, NodeRoot

_RUN_ID = re.compile(r"^[a-z0-9]{1,12}$")
_HOST_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
SUBNET_BASE = "10.99"


class LabCluster:
    """A Corosync/Pacemaker cluster of network+mount+UTS+PID namespaces, plus an arbitrator."""

    def __init__(self, run_id: str | None = None,
                 nodes: Sequence[str] = ("controller01", "controller02"),
                 arbitrator: str | None = "arbitrator", base_dir: str | os.PathLike | None = None,
                 token_ms: int = 1000, registry: str | os.PathLike | None = None):
        self.run_id = run_id or secrets.token_hex(4)
        if not _RUN_ID.match(self.run_id):
            raise ValueError(f"run_id {self.run_id!r}: use 1-12 lowercase letters/digits")
        names = list(nodes) + ([arbitrator] if arbitrator else [])
        if not nodes or len(set(names)) != len(names) or \
                not all(_HOST_NAME.match(n) for n in names):
            raise ValueError(f"host names {names!r}: need unique lowercase hostnames")
        self.registry = Path(registry) if registry else state.REGISTRY
        self.dir = Path(base_dir or self.registry) / self.run_id
        self.token_ms = token_ms
        self.cluster_name = f"pslab-{self.run_id}"
        self.switch_netns = f"pslab-{self.run_id}-lan"
        self._node_names = list(nodes)
        self._arbitrator_name = arbitrator
        self._hosts: dict[str, Node] = {}
        self._cut: set[str] = set()
        self._record: dict | None = None
        self.subnet: str | None = None  # e.g. "10.99.37" once allocated
        self.timings: dict[str, float] = {}

    # ---- names and addresses -------------------------------------------------
    @property
    def network(self) -> str:
        return f"{self._need_subnet()}.0/24"

    def address(self, host_index: int) -> str:
        """Address number host_index (1-254) in this run's /24; nodes are .1, .2, ...,
        the arbitrator follows them; 100-199 are free for VIPs."""
        return f"{self._need_subnet()}.{host_index}"

    def spare_address(self, n: int = 0) -> str:
        """An address in the lab network no host uses (for a VIP): .100 + n."""
        return self.address(100 + n)

    def _need_subnet(self) -> str:
        if self.subnet is None:
            raise LabError("the lab has no network yet: call start() first")
        return self.subnet

    @property
    def nodes(self) -> list[Node]:
        return [self._hosts[n] for n in self._node_names]

    @property
    def node_names(self) -> list[str]:
        return list(self._node_names)

    @property
    def arbitrator(self) -> Node | None:
        return self._hosts.get(self._arbitrator_name) if self._arbitrator_name else None

    def node(self, name: str) -> Node:
        try:
            return self._hosts[name]
        except KeyError:
            raise LabError(f"no lab host named {name!r} (have: {', '.join(self._hosts)})") \
                from None

    # ---- lifecycle -----------------------------------------------------------
    def start(self, timeout: float = 60) -> LabCluster:
        """Create the namespaces, boot every host, form the cluster; return when all
        nodes are online. On failure everything made so far is removed again."""
        if self._record is not None:
            raise LabError(f"lab {self.run_id} was already started")
        t0 = time.monotonic()
        state.cleanup_stale(self.registry)
        try:
            self._create()
            self.timings["namespaces"] = time.monotonic() - t0
            self._boot(*self._hosts.values())
            self.timings["booted"] = time.monotonic() - t0
            self._start_stack(self.nodes)
            self.wait_online(timeout=max(1.0, timeout - (time.monotonic() - t0)))
        except BaseException as exc:
            logs = "\n".join(n.log_tail() for n in self.nodes if n.root.base.exists())
            try:
                self.destroy()
            except LabError as cleanup_exc:
                logs += f"\n(and cleanup failed: {cleanup_exc})"
            if isinstance(exc, LabError):
                raise LabError(f"{exc}\n{logs}".rstrip()) from exc
            raise
        self.timings["formed"] = time.monotonic() - t0
        return self

    def __enter__(self) -> LabCluster:
        if self._record is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.destroy()

    def _create(self) -> None:
        with state.registry_lock(self.registry):
            taken = {r.get("subnet") for r in state.load_all(self.registry)}
            if state.state_path(self.run_id, self.registry).exists() or self.dir.exists():
                raise LabError(f"lab run {self.run_id} exists already ({self.dir})")
            free = [f"{SUBNET_BASE}.{i}" for i in range(1, 255)
                    if f"{SUBNET_BASE}.{i}" not in taken]
            if not free:
                raise LabError(f"no free /24 left in {SUBNET_BASE}.0.0/16 for a lab run")
            self.subnet = random.choice(free)
            self._record = {
                "run_id": self.run_id, "owner": state.pid_record(os.getpid()),
                "dir": str(self.dir), "subnet": self.subnet, "created": time.time(),
                # names first (inode None): a crash mid-creation still gets them removed
                "netns": {}, "holders": {}, "mounts": [],
                # enough to attach() from another process (the lab CLI)
                "nodes": self._node_names, "arbitrator": self._arbitrator_name,
                "token_ms": self.token_ms, "kept": False, "cut": [],
            }
            self.dir.mkdir(parents=True, mode=0o755)
            (self.dir / state.MARKER).write_text(self.run_id + "\n", encoding="utf-8")
            state.save(self._record, self.registry)

        self._make_hosts()
        hosts_file = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" + \
            "".join(f"{n.address}\t{n.name}\n" for n in self._hosts.values())
        conf = corosync.corosync_conf(self.cluster_name,
                                      [(n.name, n.address) for n in self.nodes], self.token_ms)
        cib = corosync.seeded_cib()
        for node in self._hosts.values():
            nodes.populate(node.root, hosts_file)
            if node.cluster_member:
                (node.root.etc_corosync / "corosync.conf").write_text(conf, encoding="utf-8")
                cib_path = node.root.var_lib_pacemaker / "cib" / "cib.xml"
                cib_path.write_text(cib, encoding="utf-8")
                shutil.chown(cib_path, "hacluster", "haclient")
                os.chmod(cib_path, 0o600)

        for name in [self.switch_netns] + [n.netns for n in self._hosts.values()]:
            if (netns.NETNS_DIR / name).exists():
                raise LabError(f"network namespace {name} exists already: not ours")
            self._record["netns"][name] = None
            state.save(self._record, self.registry)
            try:
                self._record["netns"][name] = netns.netns_add(name)
            except LabError:
                # not created (a name race with someone else's): never delete it later
                del self._record["netns"][name]
                state.save(self._record, self.registry)
                raise
            self._record["mounts"].append(str(netns.NETNS_DIR / name))
            state.save(self._record, self.registry)
            netns.loopback_up(name)
        netns.build_lan(self.switch_netns, [(self._port(n.name), n.netns, f"{n.address}/24")
                                            for n in self._hosts.values()])

    def _make_hosts(self) -> None:
        hosts = self._node_names + ([self._arbitrator_name] if self._arbitrator_name else [])
        for i, name in enumerate(hosts, start=1):
            self._hosts[name] = Node(name, self.address(i), NodeRoot(self.dir / name),
                                     f"pslab-{self.run_id}-{name}",
                                     cluster_member=name in self._node_names)

    # ---- a lab that outlives its process (pacestack lab up / down) -------------
    def detach(self) -> str:
        """Keep this lab after the current process exits (cleanup_stale leaves it
        alone while its namespaces exist); find it again with attach(run_id)."""
        rec = self._need_record()
        rec["kept"] = True
        state.save(rec, self.registry)
        return self.run_id

    @classmethod
    def attach(cls, run_id: str, registry: str | os.PathLike | None = None) -> LabCluster:
        """The LabCluster of a running (detached) lab, from its state file."""
        reg = Path(registry) if registry else state.REGISTRY
        path = state.state_path(run_id, reg)
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise LabError(f"no lab run {run_id!r} in {reg}: {exc}") from None
        lab = cls(run_id=rec["run_id"], nodes=rec["nodes"], arbitrator=rec["arbitrator"],
                  base_dir=Path(rec["dir"]).parent, token_ms=rec["token_ms"], registry=reg)
        lab.subnet, lab._record, lab._cut = rec["subnet"], rec, set(rec.get("cut", []))
        lab._make_hosts()
        for name, holder in rec["holders"].items():
            if name in lab._hosts and state.same_process(holder.get("reaper")):
                lab._hosts[name].reaper_pid = holder["reaper"][0]
        return lab

    @staticmethod
    def list_runs(registry: str | os.PathLike | None = None) -> list[dict]:
        """The state records of every registered lab run on this machine."""
        return state.load_all(Path(registry) if registry else state.REGISTRY)

    def describe(self) -> dict:
        """The lab as data (for `pacestack lab status`): hosts, addresses, who is up."""
        hosts = []
        for node in self._hosts.values():
            view = node.status() if node.booted and node.cluster_member else None
            hosts.append({"name": node.name, "address": node.address,
                          "role": "node" if node.cluster_member else "arbitrator",
                          "booted": node.booted, "pid1": node.reaper_pid,
                          "link": "cut" if node.name in self._cut else "up",
                          "online": bool(view and view.online.get(node.name)),
                          "dc": view.dc if view else None})
        return {"run_id": self.run_id, "cluster_name": self.cluster_name,
                "network": self.network if self.subnet else None, "dir": str(self.dir),
                "kept": bool(self._record and self._record.get("kept")), "hosts": hosts}

    def _need_record(self) -> dict:
        if self._record is None:
            raise LabError(f"lab {self.run_id} is not running")
        return self._record

    def _port(self, name: str) -> str:
        return f"p{list(self._hosts).index(name) + 1}"

    def _boot(self, *hosts: Node) -> None:
        """Power hosts on (in parallel): each gets a fresh mount/UTS/IPC/PID namespace
        set over its directories. Every host that did boot is recorded, even when
        another failed, so destroy() finds it."""
        def spawn(node: Node) -> tuple[subprocess.Popen, int]:
            spec = {"hostname": node.name, "binds": node.root.binds(),
                    "tmpfs": ["/dev/shm"], "sysfs": True, "boot_clock": True,
                    "boot_id": str(node.root.boot_dir / "boot_id")}
            spec_path = node.root.boot_dir / "boot.json"
            spec_path.write_text(json.dumps(spec), encoding="utf-8")
            return netns.boot_holder(node.netns, spec_path, node.root.boot_dir / "boot.log")

        rec = self._need_record()
        with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
            futures = [(node, pool.submit(spawn, node)) for node in hosts]
        errors = []
        for node, future in futures:
            try:
                node.holder, node.reaper_pid = future.result()
            except LabError as exc:
                errors.append(exc)
                continue
            rec["holders"][node.name] = {"holder": state.pid_record(node.holder.pid),
                                         "reaper": state.pid_record(node.reaper_pid)}
        state.save(rec, self.registry)
        if errors:
            raise errors[0]

    def _start_stack(self, members: Iterable[Node], timeout: float = 20) -> None:
        members = list(members)
        for node in members:
            node.start_daemon(["corosync", "-f"], "corosync.out")
        for node in members:
            if not proc.wait_for(lambda n=node: n.run(["corosync-cfgtool", "-s"],
                                                     check=False).returncode == 0, timeout):
                raise LabError(f"corosync did not come up on {node.name}")
        for node in members:
            # PCMK_logfacility=none: there is no syslog in a lab node; the log file is enough.
            node.start_daemon(["pacemakerd"], "pacemakerd.out",
                              env={"PCMK_logfacility": "none",
                                   "PCMK_logfile": "/var/log/pacemaker/pacemaker.log"})

    # ---- cluster state -------------------------------------------------------
    def wait_online(self, names: Iterable[str] | None = None, timeout: float = 60) -> float:
        """Wait until every named node (default: all cluster nodes) sees all of them
        online with a DC; returns the seconds waited."""
        want = list(names) if names is not None else self.node_names
        t0 = time.monotonic()

        def all_online() -> bool:
            for name in want:
                view = self.node(name).status()
                if not view or not view.dc or not all(view.online.get(w) for w in want):
                    return False
            return True

        if not proc.wait_for(all_online, timeout, interval=0.2):
            views = {n: self.node(n).status() for n in want if self.node(n).booted}
            raise LabError(f"nodes {', '.join(want)} not all online after {timeout:.0f}s: {views}")
        return time.monotonic() - t0

    def wait_offline(self, name: str, observer: str, timeout: float = 30) -> float:
        """Wait until observer's Pacemaker sees node name offline; returns seconds waited."""
        t0 = time.monotonic()
        obs = self.node(observer)

        def gone() -> bool:
            view = obs.status()
            return bool(view and view.dc and not view.online.get(name, False))

        if not proc.wait_for(gone, timeout, interval=0.2):
            raise LabError(f"{observer} still sees {name} online after {timeout:.0f}s")
        return time.monotonic() - t0

    # ---- faults --------------------------------------------------------------
    def crash(self, name: str) -> None:
        """Power-cut a host: SIGKILL of its PID 1 kills every process of the host at
        once; then its /run is emptied and /dev/shm is gone, as after a reboot."""
        node = self.node(name)
        if node.reaper_pid is None:
            raise LabError(f"{name} is already down")
        rec = self._need_record()
        victims = node.pids()
        state.kill_host(rec["holders"].get(name, {}))
        for pid in victims:
            proc.wait_for(lambda p=pid: not proc.is_alive(p), 10)
        if node.holder is not None:
            node.holder.wait(10)
        node.holder, node.reaper_pid = None, None
        rec["holders"].pop(name, None)
        state.save(rec, self.registry)
        nodes.reset_run(node.root)

    def restart(self, name: str, wait: bool = True, timeout: float = 60) -> float:
        """Boot a crashed host again (or start the stack of a node that was shut
        down); a cluster node starts corosync and pacemaker and, with wait, rejoins.
        Returns the seconds until online (or booted)."""
        node = self.node(name)
        if node.booted and (not node.cluster_member or node.running("corosync")):
            raise LabError(f"{name} is running: crash() or shutdown() it first")
        t0 = time.monotonic()
        if node.reaper_pid is not None and not node.booted:
            self.crash(name)  # its PID 1 died behind our back: clean up as after a crash
        if not node.booted:
            self._boot(node)
        if node.cluster_member:
            self._start_stack([node])
            if wait:
                # the restarted node counts even if its pacemakerd is not up yet
                # (otherwise the survivor alone would satisfy the wait)
                others = [n.name for n in self.nodes
                          if n.name != name and n.running("pacemakerd")]
                self.wait_online([*others, name], timeout)
        return time.monotonic() - t0

    def shutdown(self, name: str, timeout: float = 120) -> float:
        """Stop a node's cluster stack cleanly, as `pcs cluster stop` does: Pacemaker
        first (its resources stop or move away), then corosync. The host stays up
        (what else runs on it keeps running); restart() starts the stack again."""
        node = self.node(name)
        if not node.cluster_member or not node.running("corosync"):
            raise LabError(f"{name} has no running cluster stack")
        t0 = time.monotonic()
        if node.running("pacemakerd"):
            node.run(["pacemakerd", "--shutdown"], timeout=timeout)
            if not proc.wait_for(lambda: not node.running("pacemakerd"), timeout):
                raise LabError(f"pacemaker on {name} did not stop in {timeout:.0f}s")
        node.run(["corosync-cfgtool", "-H", "--force"], timeout=30)
        if not proc.wait_for(lambda: not node.running("corosync"), 30):
            raise LabError(f"corosync on {name} did not stop")
        return time.monotonic() - t0

    def cut_link(self, name: str | None = None) -> None:
        """Unplug a host (default: the last cluster node) from the lab switch: it can
        reach nobody and nobody can reach it, while it keeps running."""
        name = name or self._node_names[-1]
        self.node(name)
        netns.set_port(self.switch_netns, self._port(name), up=False)
        self._cut.add(name)
        self._save_cut()

    def restore_link(self, name: str | None = None) -> None:
        """Plug a host back in (default: every unplugged host)."""
        for host in [name] if name else sorted(self._cut):
            self.node(host)
            netns.set_port(self.switch_netns, self._port(host), up=True)
            self._cut.discard(host)
        self._save_cut()

    def _save_cut(self) -> None:
        rec = self._need_record()
        rec["cut"] = sorted(self._cut)
        state.save(rec, self.registry)

    # ---- teardown ------------------------------------------------------------
    def pids(self) -> list[int]:
        """Every live host PID that belongs to this run (holders, PID 1s, everything
        inside the nodes and in the lab's network namespaces)."""
        found: set[int] = set()
        if self._record is None:
            return []
        for rec in self._record["holders"].values():
            for key in ("holder", "reaper"):
                if state.same_process(rec.get(key)):
                    found.add(rec[key][0])
        for node in self._hosts.values():
            found.update(node.pids())
        inodes = {i for i in self._record["netns"].values() if i}
        found.update(netns.pids_in_namespaces("net", inodes))
        return sorted(found)

    def destroy(self) -> None:
        """End every process this run started, delete its namespaces, its directory and
        its state file. Idempotent. Raises LabError naming whatever could not be removed."""
        if self._record is None:
            return
        t0 = time.monotonic()
        with state.registry_lock(self.registry):
            problems = state.teardown(self._record, self.registry)
        for node in self._hosts.values():
            if node.holder is not None:
                try:
                    node.holder.wait(10)
                except Exception:  # noqa: BLE001 - the teardown reported it already
                    node.holder.send_signal(signal.SIGKILL)
            node.holder, node.reaper_pid = None, None
        self.timings["destroy"] = time.monotonic() - t0
        if problems:
            raise LabError(f"lab {self.run_id} teardown incomplete: {'; '.join(problems)}")
        self._record = None
