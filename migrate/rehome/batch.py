"""A batch of instances: validate the target once, run the state machines on N
workers, and sum up what was repaired and how long each step took."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import queue
import time
from collections import Counter
from collections.abc import Callable

from pacestack.migrate.rehome import state as statelib
from pacestack.migrate.rehome.machine import InstanceResult, Shared, Target, Worker

from pacestack.errors import ConfigError

Progress = Callable[[InstanceResult, int, int], None]


@dataclasses.dataclass
class BatchResult:
    target: Target
    instances: list[InstanceResult]
    seconds: float
    parallel: int

    def summary(self) -> dict:
        status = Counter(r.status for r in self.instances)
        repairs = Counter(rep["action"] for r in self.instances for rep in r.repairs)
        nets: dict[str, dict] = {}
        for r in self.instances:
            for n in r.networks:
                nets.setdefault(n["network"], n)
        step_totals: dict[str, list[float]] = {}
        for r in self.instances:
            for step, secs in r.seconds.items():
                step_totals.setdefault(step, []).append(secs)
        return {
            "instances": len(self.instances),
            "status": dict(sorted(status.items())),
            "ports": dict(sorted(repairs.items())),
            "networks_mtu_set": sorted(n["network"] for n in nets.values()
                                       if n.get("action") == "mtu_set"),
            "resumed": sum(1 for r in self.instances if r.resumed_from),
            "seconds": round(self.seconds, 3),
            "parallel": self.parallel,
            "step_seconds_mean": {s: round(sum(v) / len(v), 3) for s, v in
                                  sorted(step_totals.items(),
                                         key=lambda kv: statelib.STEPS.index(kv[0]))},
        }

    @property
    def ok(self) -> bool:
        return all(r.status == "done" for r in self.instances)

    def to_dict(self) -> dict:
        return {"target": dataclasses.asdict(self.target), "ok": self.ok,
                "summary": self.summary(), "instances": [r.to_dict() for r in self.instances]}


def compute_nodes(db, host: str) -> list[str]:
    """The host's hypervisor nodes from nova.compute_nodes: os-hypervisors/detail
    asks every compute for its uptime over RPC and hangs on a just-stopped one."""
    rows = db.rows("SELECT hypervisor_hostname FROM {nova.compute_nodes} WHERE host = %s "
                   "AND deleted = 0 ORDER BY hypervisor_hostname", [host])
    db.conn.commit()
    return [r["hypervisor_hostname"] for r in rows]


def resolve_target(api, db, host: str, node: str | None) -> Target:
    """The target compute host must exist and be up; its node name is nova's."""
    services = [s for s in api.compute_services() if s.binary == "nova-compute"]
    known = sorted({s.host for s in services})
    mine = [s for s in services if s.host == host]
    if not mine:
        raise ConfigError(f"--to-host {host}: no nova-compute service on that host in the new "
                          f"cloud (known: {', '.join(known) or 'none'})")
    if mine[0].state != "up" or mine[0].status != "enabled":
        raise ConfigError(f"--to-host {host}: its nova-compute service is {mine[0].state}/"
                          f"{mine[0].status}, not up/enabled")
    nodes = compute_nodes(db, host)
    if node is None:
        if len(nodes) != 1:
            raise ConfigError(f"--to-host {host} has nodes {', '.join(nodes) or 'none'}: "
                              "name one with --node")
        node = nodes[0]
    elif node not in nodes:
        raise ConfigError(f"--node {node}: host {host} has nodes {', '.join(nodes) or 'none'}")
    return Target(host, node)


def select_instances(api, store_rows: list[dict], names: list[str], all_on: str | None,
                     target: Target) -> list[str]:
    """Instance UUIDs, in order, duplicates dropped. Names are looked up; an
    unknown one is an error before anything changes. --all-on also takes the
    instances an interrupted run already moved off that host."""
    out: list[str] = []
    for name in names:
        server = api.find_server(name)
        if server is None:
            raise ConfigError(f"unknown instance {name!r}: not in the new cloud")
        out.append(server.id)
    if all_on:
        services = {s.host for s in api.compute_services() if s.binary == "nova-compute"}
        on_host = [s.id for s in api.servers_on(all_on)]
        unfinished = [r["instance"] for r in store_rows
                      if r["data"].get("old_host") == all_on and r["status"] != "done" and
                      r["target_host"] == target.host]
        if all_on not in services and not on_host and not unfinished:
            raise ConfigError(f"--all-on {all_on}: no compute service or instance on that host")
        out += sorted(on_host) + sorted(unfinished)
    seen: set[str] = set()
    return [u for u in out if not (u in seen or seen.add(u))]


def run_batch(shared: Shared, uuids: list[str], target: Target, parallel: int,
              progress: Progress | None = None, stop_after: dict[str, str] | None = None,
              ) -> BatchResult:
    """Each worker holds its own DB connection and API session."""
    t0 = time.monotonic()
    todo: queue.Queue[str] = queue.Queue()
    for u in uuids:
        todo.put(u)
    results: dict[str, InstanceResult] = {}
    done_count = [0]

    def work() -> None:
        worker = Worker(shared)
        try:
            while True:
                try:
                    u = todo.get_nowait()
                except queue.Empty:
                    return
                r = worker.run(u, target, (stop_after or {}).get(u))
                results[u] = r
                done_count[0] += 1
                if progress:
                    progress(r, done_count[0], len(uuids))
        finally:
            worker.close()

    n = max(1, min(parallel, len(uuids)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        for f in [pool.submit(work) for _ in range(n)]:
            f.result()
    return BatchResult(target, [results[u] for u in uuids], time.monotonic() - t0, n)
