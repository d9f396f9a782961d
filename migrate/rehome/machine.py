"""One instance's way to its new host, as a persisted state machine.

preflight -> old_stopped -> db_moved -> ports_bound -> rebooted -> ports_repaired
-> started -> verified (state.STEPS). ``ports_bound`` comes before the reboot
although the seed did its port work after it: nova 34 refuses to build network
info from a port still bound ``bridge``, so the hard reboot would fail.

Each step looks at the world before it acts, so redoing the step a killed run
was in changes nothing twice: the DB move is skipped when the instance is
already on the target (and is journaled by ``pacestack migrate``), a port is
recreated only when no port with its MAC exists on its network, an attach only
when the port is not on the instance, and ``preserve_on_delete`` is written
before any detach.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

from pacestack.migrate.batch import Stale
from pacestack.migrate.model import Change
from pacestack.migrate.rehome import journaled
from pacestack.migrate.rehome import ports as portlib
from pacestack.migrate.rehome import state as statelib
from pacestack.migrate.runlock import Held

from pacestack import codes
from pacestack.errors import PacestackError, RuntimeFailure
from pacestack.findings import Finding


class Refused(PacestackError):
    """A precondition failed before anything changed."""

    def __init__(self, finding: Finding):
        super().__init__(finding.message)
        self.finding = finding


@dataclasses.dataclass
class Target:
    host: str
    node: str


@dataclasses.dataclass
class InstanceResult:
    uuid: str
    name: str = ""
    target: str = ""
    status: str = "running"  # done | failed | refused
    step: str = "new"  # last completed step
    resumed_from: str | None = None  # step found in the state table, when resuming
    repairs: list[dict] = dataclasses.field(default_factory=list)
    networks: list[dict] = dataclasses.field(default_factory=list)
    findings: list[Finding] = dataclasses.field(default_factory=list)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict:
        return {"uuid": self.uuid, "name": self.name, "target": self.target,
                "status": self.status, "step": self.step, "resumed_from": self.resumed_from,
                "repairs": self.repairs, "networks": self.networks,
                "findings": [f.to_dict() if hasattr(f, "to_dict") else f for f in self.findings],
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
                "error": self.error}


class Shared:
    """What every worker shares: the APIs, the old cloud, the settings."""

    def __init__(self, api, old, open_db: Callable[[], Any], journal_db: str, *,
                 mtu: int | None, underlay_mtu: int, overlay_ip_version: int,
                 old_cloud_name: str = "OLD"):
        self.api = api
        self.old = old
        self.open_db = open_db  # -> a pacestack.migrate.cloud.Cloud on its own connection
        self.journal_db = journal_db
        self.mtu = mtu
        self.underlay_mtu = underlay_mtu
        self.overlay_ip_version = overlay_ip_version
        self.old_cloud_name = old_cloud_name
        # migrate's journal lock admits one apply at a time: our workers queue here
        self.db_move_lock = threading.Lock()
        self.mtu_lock = threading.Lock()
        self.networks_done: dict[str, dict] = {}
        # network id -> (provider type, name), (None, "") when gone: the type is
        # fixed for a network's life, so a batch asks Neutron once per network
        self.network_types: dict[str, tuple[str | None, str]] = {}


class Worker:
    """Runs instances one after another on its own DB connection."""

    def __init__(self, shared: Shared):
        self.shared = shared
        self.api = shared.api
        self.db = shared.open_db()
        self.store = statelib.StateStore(self.db.conn, shared.journal_db)
        self.store.ensure_schema()
        # the server as the previous step of this same run left it (never across
        # runs: a resumed instance is always looked up again)
        self._known: dict[str, Any] = {}

    def close(self) -> None:
        self.db.close()

    def run(self, uuid: str, target: Target, stop_after: str | None = None) -> InstanceResult:
        res = InstanceResult(uuid, target=target.host)
        try:
            self.store.lock(uuid)
        except RuntimeFailure as exc:
            res.status, res.error = "failed", str(exc)
            return res
        try:
            return self._run(uuid, target, res, stop_after)
        finally:
            self._known.pop(uuid, None)
            self.store.unlock(uuid)

    def _run(self, uuid: str, target: Target, res: InstanceResult,
             stop_after: str | None) -> InstanceResult:
        row = self.store.begin(uuid, target.host, target.node)
        if row["step"] != "new" and (row["target_host"], row["target_node"]) != \
                (target.host, target.node) and row["step"] not in ("preflight",):
            if statelib.STEPS.index(row["step"]) >= statelib.STEPS.index("db_moved"):
                res.status = "refused"
                f = codes.ALREADY_MOVING(f"instance {uuid}", instance=uuid,
                                         host=row["target_host"])
                res.findings.append(f)
                res.error = f.message
                return res
        if (row["target_host"], row["target_node"]) != (target.host, target.node):
            self.store.retarget(uuid, target.host, target.node)
        data: dict = row["data"]
        res.name = data.get("name", "")
        if row["step"] != "new":
            res.resumed_from = row["step"]
        res.step = row["step"]
        res.repairs = data.get("repairs", [])
        res.networks = data.get("networks", [])
        res.seconds = data.get("seconds", {})
        step = statelib.next_step(row["step"])
        # a refused or failed instance starts over at the step it did not finish
        while step is not None:
            t0 = time.monotonic()
            try:
                try:
                    getattr(self, f"step_{step}")(uuid, target, data, res)
                finally:
                    res.name = data.get("name", res.name)
            except Refused as exc:
                res.status, res.error = "refused", str(exc)
                res.findings.append(exc.finding)
                self.store.fail(uuid, "refused", str(exc), data)
                return res
            except PacestackError as exc:
                res.status, res.error = "failed", f"{step}: {exc}"
                self.store.fail(uuid, "failed", res.error, data)
                return res
            except Exception as exc:  # noqa: BLE001 - report the instance, keep the batch going
                res.status, res.error = "failed", f"{step}: {type(exc).__name__}: {exc}"
                self.store.fail(uuid, "failed", res.error, data)
                return res
            data.setdefault("seconds", {})[step] = time.monotonic() - t0
            res.seconds = data["seconds"]
            res.repairs = data.get("repairs", [])
            res.networks = data.get("networks", [])
            res.name = data.get("name", res.name)
            self.store.record(uuid, step, data, "done" if step == statelib.STEPS[-1] else
                              "running")
            res.step = step
            if stop_after == step:  # tests and the bench: stop here as a kill would
                return res
            step = statelib.next_step(step)
        res.status = "done"
        return res

    # -- steps -------------------------------------------------------------------
    def step_preflight(self, uuid: str, target: Target, data: dict, res: InstanceResult) -> None:
        server = self.api.server(uuid)
        if server is None:
            raise Refused(codes.INSTANCE_UNKNOWN(f"instance {uuid}", instance=uuid))
        data["name"] = server.name
        data["old_host"] = server.compute_host
        vifs = self._cache(uuid)
        data["cache_ports"] = [v.get("id") for v in vifs]
        self._check_old_running(uuid)
        old_ports = self.shared.old.ports(uuid) if self.shared.old.neutron else []
        nets = sorted({p.network_id for p in old_ports} |
                      {(v.get("network") or {}).get("id") for v in vifs} - {None})
        for net_id in nets:
            net_type, net_name = self._network_type(net_id)
            if net_type not in portlib.OVERLAY_TYPES:
                continue
            for r in self.shared.old.routers_on(net_id):
                if r.admin_state_up:
                    raise Refused(codes.OLD_ROUTER_ENABLED(
                        f"router {r.id}", router=r.name or r.id, network=net_name or net_id,
                        old_cloud=str(self.shared.old_cloud_name), router_id=r.id))

    def _network_type(self, net_id: str) -> tuple[str | None, str]:
        types = self.shared.network_types
        if net_id not in types:
            net = self.api.network(net_id)
            types[net_id] = (net.provider_network_type, net.name or "") if net is not None \
                else (None, "")
        return types[net_id]

    def _check_old_running(self, uuid: str) -> None:
        old = self.shared.old.instance(uuid) if self.shared.old.reachable else None
        if old is not None and not old.stopped:
            raise Refused(codes.OLD_STILL_RUNNING(
                f"instance {uuid}", instance=uuid, vm_state=str(old.vm_state),
                power_state=str(old.power_state), host=str(old.host),
                old_cloud=str(self.shared.old_cloud_name)))

    def step_old_stopped(self, uuid: str, target: Target, data: dict,
                         res: InstanceResult) -> None:
        """Right before the move: still stopped there, and its old record kept."""
        self._check_old_running(uuid)
        server = self.api.server(uuid)
        if server is None:
            raise RuntimeFailure(f"instance {uuid} is gone from the new cloud")
        self._known[uuid] = server
        if server.compute_host != target.host and server.status != "SHUTOFF":
            raise Refused(codes.INSTANCE_NOT_STOPPED(
                f"instance {uuid}", instance=uuid, host=f"{server.compute_host} (new cloud)",
                state=str(server.status), remedy="the database move needs it SHUTOFF"))
        if self.shared.old.neutron is not None:
            data["old_ports"] = [p.to_dict() for p in self.shared.old.ports(uuid)]
        else:
            # no old record: the new cloud's own ports are all we can restore from
            data["old_ports"] = []
            res.findings.append(codes.OLD_CLOUD_UNREACHABLE(f"instance {uuid}"))

    def step_db_moved(self, uuid: str, target: Target, data: dict, res: InstanceResult) -> None:
        from pacestack.migrate import apply as applymod
        from pacestack.migrate import mapping as mappingmod

        # the previous step's look, a moment ago in this run (a resumed run asks again)
        server = self._known.pop(uuid, None) or self.api.server(uuid)
        if server.compute_host == target.host and self._db_host(uuid) == target.host:
            return
        mp = mappingmod.Mapping(path=f"<rehome {uuid}>", computes=[
            mappingmod.ComputeMove(None, uuid, target.host, target.node, 0)])
        data["db_digest"] = applymod.mapping_digest(mp, ["nova"])
        # before the apply: a kill inside it leaves a run this digest finds again
        self.store.record(uuid, "old_stopped", data)
        deadline = time.monotonic() + 120
        while True:
            with self.shared.db_move_lock:
                try:
                    # another run holding the journal lock: queue; a killed rehome's on
                    # this host is taken over by the lock itself
                    self._finish_interrupted(applymod, mappingmod, data["db_digest"])
                    r = applymod.apply(self.db, mp, only=["nova"], lock_command="rehome")
                    break
                except Held:
                    if time.monotonic() > deadline:
                        raise
            time.sleep(0.5)
        if r.plan.refusals:
            f = r.plan.refusals[0]
            raise RuntimeFailure(f"database move refused: {f.code} {f.subject}: {f.message}")
        data["db_run_id"] = r.run_id
        if self._db_host(uuid) != target.host:
            raise RuntimeFailure(f"database move ran (run {r.run_id}) but nova.instances still "
                                 f"names {self._db_host(uuid)}")

    def _finish_interrupted(self, applymod, mappingmod, own_digest: str,
                            break_lock: str | None = None) -> None:
        """A killed rehome may have left migrate's run for another instance
        interrupted; migrate refuses new runs until it is finished: finish it."""
        from pacestack.migrate.journal import Journal

        j = Journal(self.db)
        j.ensure_schema()
        for run in j.interrupted():
            if run["mapping_digest"] == own_digest or run["status"] != "running":
                continue
            for row in self.store.all():
                d = row["data"]
                if d.get("db_digest") == run["mapping_digest"]:
                    mp = mappingmod.Mapping(path=f"<rehome {row['instance']}>", computes=[
                        mappingmod.ComputeMove(None, row["instance"], row["target_host"],
                                               row["target_node"], 0)])
                    applymod.apply(self.db, mp, only=["nova"], lock_command="rehome",
                                   break_lock=break_lock)
                    break

    def _db_host(self, uuid: str) -> str | None:
        rows = self.db.rows("SELECT host FROM {nova.instances} WHERE uuid = %s AND deleted = 0",
                            [uuid])
        self.db.conn.commit()
        return rows[0]["host"] if rows else None

    def _cache(self, uuid: str) -> list[dict]:
        rows = self.db.rows("SELECT network_info FROM {nova.instance_info_caches} WHERE "
                            "instance_uuid = %s AND deleted = 0", [uuid])
        self.db.conn.commit()
        return portlib.cache_vifs(rows[0]["network_info"] if rows else None)

    def _repair(self, data: dict, repair: portlib.Repair) -> None:
        repairs = [r for r in data.setdefault("repairs", []) if r["mac"] != repair.mac]
        repairs.append(repair.to_dict())
        data["repairs"] = repairs

    def step_ports_bound(self, uuid: str, target: Target, data: dict,
                         res: InstanceResult) -> None:
        olds = data.get("old_ports") or []
        if not olds:
            # no old record: the cache's ports are the instance's ports
            olds = [{"id": v.get("id"), "mac_address": v.get("address"),
                     "network_id": (v.get("network") or {}).get("id")}
                    for v in self._cache(uuid) if v.get("id")]
        from pacestack.migrate.rehome.oldcloud import OldPort

        for od in olds:
            port = self.api.port(od["id"])
            if port is None and od.get("network_id"):
                # recreated by an earlier, interrupted run?
                same = self.api.ports(network_id=od["network_id"], mac_address=od["mac_address"])
                port = same[0] if same else None
            if port is None:
                if "fixed_ips" not in od:
                    raise RuntimeFailure(f"port {od['id']} ({od['mac_address']}) is gone and the "
                                         "old cloud's record is not available to recreate it")
                new = self.api.create_port(**portlib.create_attrs(OldPort(**od)))
                self._repair(data, portlib.Repair(
                    od["id"], od["mac_address"], "recreated",
                    "gone from neutron; recreated from the old cloud's record with the same "
                    "MAC, fixed IPs, network and security groups", new.id))
                data.setdefault("attach", []).append(new.id)
                self.store.record(uuid, "db_moved", data)  # never create it twice
                continue
            if port.device_id and port.device_id != uuid:
                raise RuntimeFailure(f"port {port.id} ({port.mac_address}) now belongs to "
                                     f"{port.device_owner} {port.device_id}")
            if not port.device_id:
                if port.id not in data.get("attach", []):
                    data.setdefault("attach", []).append(port.id)
                if port.id != od["id"]:
                    continue  # our recreated port, waiting for its attach
            why = portlib.needs_rebind(port, target.host)
            if why is None:
                if not any(r["mac"] == port.mac_address for r in data.get("repairs", [])):
                    self._repair(data, portlib.Repair(od["id"], port.mac_address, "ok",
                                                      f"bound {portlib.OVS} on {target.host}"))
                continue
            port = self.api.bind(port.id, target.host)
            if port.binding_vif_type != portlib.OVS:
                raise RuntimeFailure(f"port {port.id} bound as {port.binding_vif_type} on "
                                     f"{target.host}: is its Open vSwitch agent alive?")
            self._repair(data, portlib.Repair(od["id"], port.mac_address, "rebound",
                                              f"was {why}; now {portlib.OVS} on {target.host}"))
        self._networks(data, [o["network_id"] for o in olds if o.get("network_id")])

    def _networks(self, data: dict, net_ids: list[str]) -> None:
        sh = self.shared
        want = portlib.overlay_mtu(sh.mtu, sh.underlay_mtu, sh.overlay_ip_version)
        out = data.setdefault("networks", [])
        for net_id in sorted(set(net_ids)):
            with sh.mtu_lock:
                done = sh.networks_done.get(net_id)
                if done is None:
                    net = self.api.network(net_id)
                    done = {"network": net_id, "name": net.name if net else "",
                            "type": net.provider_network_type if net else None,
                            "mtu": net.mtu if net else None, "action": "ok"}
                    if net is not None and net.provider_network_type in portlib.OVERLAY_TYPES \
                            and net.mtu != want:
                        self.api.set_mtu(net_id, want)
                        done.update(action="mtu_set", detail=f"mtu {net.mtu} -> {want}",
                                    mtu=want)
                    sh.networks_done[net_id] = done
            if not any(n["network"] == net_id for n in out):
                out.append(dict(done))

    def step_rebooted(self, uuid: str, target: Target, data: dict, res: InstanceResult) -> None:
        """Hard reboot defines the guest on the new host (the seed's `nova reboot
        --hard`). A guest with a port still to attach or re-plug is stopped again, so
        it boots once with all of them; one with none keeps running: stopping it costs
        a second boot, and Nova's clean stop of a guest still booting waits until the
        guest handles the power button (up to shutdown_timeout). A hard reboot is safe
        to repeat, so a kill before it was recorded only repeats it."""
        server = self.api.wait_idle(uuid)
        if not data.get("reboot_done"):
            self.api.reboot_hard(uuid)
            server = self.api.wait_status(uuid, "ACTIVE")
            data["reboot_done"] = True
            self.store.record(uuid, "ports_bound", data)
        if server.compute_host != target.host:
            raise RuntimeFailure(f"after the hard reboot the instance is on "
                                 f"{server.compute_host}, not {target.host}")
        if server.status == "ACTIVE" and self._ports_to_repair(uuid, target, data):
            self.api.stop(uuid)
            server = self.api.wait_status(uuid, "SHUTOFF")
        self._known[uuid] = server

    def _ports_to_repair(self, uuid: str, target: Target, data: dict) -> list[str]:
        """Port ids step_ports_repaired will attach or re-plug: not yet attached, or
        attached but not an OVS VIF in Nova's cache bound to the target."""
        ifaces = {i.port_id for i in self.api.interfaces(uuid)}
        out = [p for p in data.get("attach", []) if p not in ifaces]
        cache = {v.get("id"): v for v in self._cache(uuid)}
        for port_id in ifaces:
            vif = cache.get(port_id)
            port = self.api.port(port_id)
            if vif is None or vif.get("type") != portlib.OVS or port is None or \
                    portlib.needs_rebind(port, target.host) is not None:
                out.append(port_id)
        return out

    def step_ports_repaired(self, uuid: str, target: Target, data: dict,
                            res: InstanceResult) -> None:
        ifaces = {i.port_id: i for i in self.api.interfaces(uuid)}
        attached = False
        for port_id in data.get("attach", []):
            if port_id not in ifaces:
                self._known.pop(uuid, None)  # nova worked on it: look again before starting
                self.api.attach(uuid, port_id)
                self._wait_interface(uuid, port_id)
                attached = True
            for r in data.get("repairs", []):
                if r.get("new_port") == port_id or (r["port"] == port_id and
                                                   r["action"] != "recreated"):
                    if r["action"] != "recreated":
                        r["action"] = "attached"
        if attached:
            ifaces = {i.port_id: i for i in self.api.interfaces(uuid)}
        cache = {v.get("id"): v for v in self._cache(uuid)}
        for port_id in list(ifaces):
            vif = cache.get(port_id)
            port = self.api.port(port_id)
            if vif is not None and vif.get("type") == portlib.OVS and port is not None and \
                    portlib.needs_rebind(port, target.host) is None:
                continue
            self._replug(uuid, port_id, target, data)

    def _wait_interface(self, uuid: str, port_id: str, present: bool = True) -> None:
        deadline = time.monotonic() + self.api.wait_timeout
        while ({i.port_id for i in self.api.interfaces(uuid)} >= {port_id}) != present:
            if time.monotonic() > deadline:
                where = "not attached to" if present else "still on"
                raise RuntimeFailure(f"port {port_id} {where} {uuid} after "
                                     f"{self.api.wait_timeout}s")
            time.sleep(0.3)

    def _replug(self, uuid: str, port_id: str, target: Target, data: dict) -> None:
        """Detach and attach one port, never letting Nova delete it."""
        self._known.pop(uuid, None)
        self.preserve_ports(uuid, {port_id}, data)
        port = self.api.port(port_id)
        self.api.detach(uuid, port_id)
        self._wait_interface(uuid, port_id, present=False)
        if self.api.port(port_id) is None:  # must not happen: preserve_on_delete was set
            raise RuntimeFailure(f"port {port_id} was deleted by the detach")
        self.api.attach(uuid, port_id)
        self._wait_interface(uuid, port_id)
        self._repair(data, portlib.Repair(port_id, port.mac_address if port else "", "replugged",
                                          "preserve_on_delete set, detached and re-attached"))

    def preserve_ports(self, uuid: str, port_ids: set[str],
                       data: dict | None = None) -> list[str]:
        """Set preserve_on_delete on these VIFs in Nova's info cache, so a detach then
        unbinds the port instead of deleting it. Written as a journaled run
        (journaled.py; its id kept in data["journal_runs"]), so migrate rollback
        restores the cache; a cache Nova rewrote between our read and our write is
        read again."""
        for _attempt in range(5):
            rows = self.db.rows("SELECT id, network_info FROM {nova.instance_info_caches} "
                                "WHERE instance_uuid = %s AND deleted = 0", [uuid])
            self.db.conn.commit()
            if not rows:
                raise RuntimeFailure(f"instance {uuid} has no info cache row")
            old = rows[0]["network_info"]
            text, changed = portlib.set_preserve(old, port_ids)
            if not changed:
                return changed
            change = Change("rehome", "nova", "instance_info_caches", "update",
                            {"id": rows[0]["id"]}, {"network_info": old},
                            {"network_info": text}, f"instance:{uuid}",
                            why="preserve_on_delete before a detach")
            try:
                run_id = journaled.write(self.db, [change], f"preserve {uuid}",
                                         lock=self.shared.db_move_lock)
            except Stale:
                continue
            if data is not None:
                data.setdefault("journal_runs", []).append(run_id)
            return changed
        raise RuntimeFailure(f"nova's info cache of {uuid} kept changing while setting "
                             "preserve_on_delete; run rehome again")

    def step_started(self, uuid: str, target: Target, data: dict, res: InstanceResult) -> None:
        # stopped and idle as the reboot step left it moments ago, else ask (resume)
        server = self._known.pop(uuid, None) or self.api.wait_idle(uuid)
        if server.status != "ACTIVE":
            self.api.start(uuid)
            self.api.wait_status(uuid, "ACTIVE")

    def step_verified(self, uuid: str, target: Target, data: dict, res: InstanceResult) -> None:
        problems = []
        server = self.api.server(uuid)
        if server.status != "ACTIVE":
            problems.append(f"status {server.status}")
        if server.compute_host != target.host:
            problems.append(f"on host {server.compute_host}")
        ifaces = {i.mac_addr: i for i in self.api.interfaces(uuid)}
        cache = {v.get("address"): v for v in self._cache(uuid)}
        for od in data.get("old_ports") or []:
            mac = od["mac_address"]
            iface = ifaces.get(mac)
            if iface is None:
                problems.append(f"no interface with MAC {mac}")
                continue
            want_ips = sorted(ip["ip_address"] for ip in od.get("fixed_ips", []))
            have_ips = sorted(ip["ip_address"] for ip in iface.fixed_ips or [])
            if want_ips != have_ips:
                problems.append(f"{mac} has IPs {have_ips}, the old cloud had {want_ips}")
            port = self.api.port(iface.port_id)
            if port is None or portlib.needs_rebind(port, target.host):
                problems.append(f"port {iface.port_id} "
                                f"{portlib.needs_rebind(port, target.host) if port else 'gone'}")
            vif = cache.get(mac)
            if vif is None or vif.get("type") != portlib.OVS:
                problems.append(f"nova's info cache has {mac} as "
                                f"{vif.get('type') if vif else 'missing'}")
        if problems:
            raise RuntimeFailure("verification failed: " + "; ".join(problems))
