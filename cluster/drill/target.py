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

The base class and what both share live here; each target has its own module
(``lab_target.py``, ``ssh_target.py``), and nothing a real controller runs
imports the lab. Everything returns data; the drill (scenarios.py) decides, the
CLI renders.
"""

from __future__ import annotations

import abc
import json
import os
import subprocess
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pacestack.cluster import cib, crm_mon
from pacestack.cluster.crm_mon import CrmMon

from pacestack.errors import RuntimeFailure

# corosync's ring traffic (knet/udpu use mcastport 5405 by default, one port per link)
COROSYNC_PORTS = "5404-5412"
NFT_TABLE = "pacestack_drill"
PROBE_MODULE = "pacestack.cluster.drill.probe"


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

    vip = vip_id = galera_id = None
    lay = Layout(vip="", vip_name="")
    for el in doc:
        if el.tag == "primitive":
            p = cib.nvpairs(el)
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
            meta = cib.nvpairs(el, "meta_attributes")
            rid, p = prim.get("id", ""), cib.nvpairs(prim)
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
    view: CrmMon | None      # its crm_mon (None: Pacemaker not answering)


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


class CloudHandle(ProbeHandle):
    """The cloud-level probe of a target that runs the whole controller: its API
    watch's events (``kind: api``) in ``out``, and ``sequence()`` (the user's
    sequence through the VIP: network, port, image, server, volume; a dict with
    ``ok`` and, when not ok, ``error``); ``queue(name, put, drop=True)``, where the
    target has a RabbitMQ cluster, publishes ``put`` confirmed messages to a quorum
    queue through the VIP, or with put 0 counts what it holds and (drop) deletes it
    (the count: None when there is no such queue). With ``cleanup``,
    ``sequence(clean=False)`` leaves what it made for ``cleanup()`` to delete, so
    that two sequences can run side by side."""

    def __init__(self, out: Path, stop, sequence, queue=None, cleanup=None) -> None:
        super().__init__(out, stop)
        self.sequence = sequence
        self.queue = queue
        self.cleanup = cleanup


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

    def crm(self, node: str, timeout: float = 15) -> CrmMon | None:
        if not self.is_up(node):
            return None
        try:
            res = self.run(node, list(crm_mon.ARGV), timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return crm_mon.parse(res.stdout) if res.returncode == 0 else None

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

    def start_cloud_probe(self, out: Path) -> CloudHandle | None:
        """The cloud-level probe, started (None: this target runs no whole cloud)."""
        return None

    def cleanup(self) -> None:
        node = self.observer()
        self.run(node, ["crm_resource", "--cleanup"], timeout=60)

    def close(self) -> None:  # noqa: B027 - optional: only the ssh target holds anything
        """Release what the target holds (ssh connections)."""


# ---- the lab ---------------------------------------------------------------------
