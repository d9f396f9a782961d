"""The drill's target for the namespace lab (``pacestack lab up``): see target.py."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from pacestack.cluster.crm_mon import CrmMon
from pacestack.cluster.drill.target import (
    PROBE_MODULE,
    CloudHandle,
    Layout,
    NodeSample,
    ProbeHandle,
    Target,
)

from pacestack import proc
from pacestack.errors import RuntimeFailure


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

    def crm(self, node: str, timeout: float = 15) -> CrmMon | None:
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
        """probe.py inside the arbitrator host."""
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

    def start_cloud_probe(self, out: Path) -> CloudHandle | None:
        """The whole-profile lab's cloud through the VIP, from the arbitrator."""
        if not self.lab.info.whole_profile:
            return None
        from pacestack.cluster.lab import cloud

        pid = cloud.start_watch(self.lab, out)

        def sequence(clean: bool = True) -> dict:
            try:
                return cloud.sequence(self.lab, timeout=180, clean=clean)
            except Exception as exc:  # noqa: BLE001 - a failed attempt is data
                return {"ok": False, "error": str(exc).splitlines()[0][:200]}

        def cleanup() -> dict:
            return cloud.cleanup(self.lab)

        def queue(name: str, put: int, drop: bool = True) -> int | None:
            return cloud.queue(self.lab, put=put, name=name, drop=drop and not put)

        return CloudHandle(out, lambda: proc.terminate(pid, timeout=10), sequence, queue,
                           cleanup)


# ---- real controllers over ssh ----------------------------------------------------
