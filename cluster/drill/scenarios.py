"""``pacestack cluster drill``: break the live cluster on purpose and measure the recovery.

Scenarios (each against the node holding the VIP unless noted): node crash, crash of
the other node (peer-crash), orderly standby, mariadbd killed -9, Keystone's master
killed -9, a network partition with fencing (controller02 unplugged; the
fence_dummy "power switch" of the lab powers off whichever node the cluster
fences), and the return of each node after each of them.

While a scenario runs, the drill probe (probe.py, on the arbitrator host)
commits rows through the VIP and fetches the APIs through it; the drill process
samples crm_mon and which nodes hold the VIP. Per scenario: detection time, time
until the VIP answers again, until Galera takes writes again (Primary), until every
service is healthy, rejoin time of the returning node; acknowledged writes missing
afterwards (must be none); the most instances of a single-instance resource seen
at once (must be <= 1). The cluster is restored after every scenario.

Runs against a target (target.py): the lab (pacestack lab up), or real
controllers over ssh, where a crash is the node's own fencing device and a
partition is an nft table dropping corosync's traffic on the victim. Everything
returns data; cli renders.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pacestack.cluster.drill.target import CloudHandle, Target

from pacestack import proc
from pacestack.errors import ConfigError, RuntimeFailure

SCENARIOS = ("node-crash", "peer-crash", "standby", "kill-mariadbd", "kill-service",
             "partition")
SAMPLE_INTERVAL = 0.25
# confirmed messages the quorum-queue probe puts in before each fault
MESSAGES = 20
# how long a short count of the quorum queue is read again before it counts as lost
COUNT_SETTLE = 20.0
Progress = Callable[[str], None]


@dataclasses.dataclass
class ScenarioResult:
    name: str
    victim: str
    detection_s: float | None = None
    vip_s: float | None = None          # the VIP's address answers again (no service)
    galera_s: float | None = None       # a write through the VIP commits again
    # each HTTP probe through the VIP (keystone, neutron...) answering again
    probes_s: dict[str, float | None] = dataclasses.field(default_factory=dict)
    vip_answered: bool = True           # the address answered before the fault
    # the cloud-level probe (a target running the whole controller): each API's
    # authenticated read through the VIP answering again for good, and the end of
    # the first user sequence (network, port, image, server, volume) that
    # succeeded after the fault; cloud_began_s is when that sequence began: from
    # then on a user's sequence works (the rest of cloud_s is its own length)
    cloud_measured: bool = False
    apis_s: dict[str, float | None] = dataclasses.field(default_factory=dict)
    cloud_s: float | None = None
    cloud_began_s: float | None = None
    cloud_attempts: int = 0
    cloud_hedged: int = 0               # attempts started beside one still running
    cloud_error: str | None = None      # the last failed attempt's error
    # the successful sequence's steps: seconds from its start when each ended and
    # began (steps that need nothing of each other run at once)
    cloud_steps: dict[str, float] = dataclasses.field(default_factory=dict)
    cloud_steps_began: dict[str, float] = dataclasses.field(default_factory=dict)
    services_s: float | None = None     # every service healthy on the nodes that are up
    rejoin_s: float | None = None       # the victim back, everything on every node again
    writes_acked: int = 0
    writes_failed: int = 0
    lost_writes: list[int] = dataclasses.field(default_factory=list)
    # confirmed messages put into a quorum queue before the fault, and how many of
    # them the cluster no longer held once the cloud worked without the victim
    messages_wanted: int = 0     # what the drill tried to put (0: the target has no queue)
    messages_put: int = 0
    messages_lost: int | None = None
    max_instances: dict[str, int] = dataclasses.field(default_factory=dict)
    timeline: dict = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None

    def failures(self) -> list[str]:
        """Why the scenario failed, one phrase a reason ([] when it passed)."""
        out = [self.error] if self.error is not None else []
        if self.lost_writes:
            out.append(f"{len(self.lost_writes)} acknowledged writes lost")
        if self.messages_put < self.messages_wanted:
            out.append(f"the quorum queue confirmed {self.messages_put} of "
                       f"{self.messages_wanted} messages before the fault")
        if self.messages_put and self.messages_lost != 0:
            out.append("quorum queue not counted" if self.messages_lost is None
                       else f"{self.messages_lost} of {self.messages_put} queued messages lost")
        out += [f"{rid} ran {n} times at once" for rid, n in sorted(self.max_instances.items())
                if n > 1]
        if self.vip_s is None and self.vip_answered:
            out.append("the VIP never answered again")
        out += [f"{what} never recovered" for what, value in
                (("Galera", self.galera_s), ("the services", self.services_s),
                 ("the victim's rejoin", self.rejoin_s)) if value is None]
        if self.cloud_measured:
            if self.cloud_s is None:
                out.append("the cloud sequence never worked again")
            if not self.apis_s:
                out.append("no API measured")
            out += [f"{api} API never answered again"
                    for api, value in sorted(self.apis_s.items()) if value is None]
        return out

    @property
    def ok(self) -> bool:
        return not self.failures()

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["failures"] = self.failures()
        d["ok"] = not d["failures"]
        return d


@dataclasses.dataclass
class DrillReport:
    run_id: str
    scenarios: list[ScenarioResult]
    seconds: float
    token_ms: int
    monitor_interval_s: int

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.scenarios)

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "ok": self.ok, "seconds": round(self.seconds, 1),
                "token_ms": self.token_ms, "monitor_interval_s": self.monitor_interval_s,
                "scenarios": [s.to_dict() for s in self.scenarios]}


# ---- observation ---------------------------------------------------------------

class Monitor(threading.Thread):
    """Samples what the cluster says (crm_mon of every node that is up) and where
    the single-instance things really are (the VIP address on each node's
    interfaces, single-instance programs on each node). The target's tick() runs
    first: the lab's power switch powers off a node its fencing device turned off."""

    def __init__(self, target: Target):
        super().__init__(daemon=True)
        self.target = target
        self.samples: list[dict] = []
        self.stop_event = threading.Event()
        self.fenced: list[tuple[float, str]] = []
        self.error: str | None = None

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                for name in self.target.tick():
                    self.fenced.append((time.time(), name))
                self.samples.append(self.sample())
                self.stop_event.wait(SAMPLE_INTERVAL)
        except Exception as exc:  # noqa: BLE001 - reported with the scenario
            self.error = f"monitor: {exc}"

    def sample(self) -> dict:
        t = time.time()
        lay = self.target.layout
        holders, singles = [], {s: 0 for s in lay.single_instance}
        views = {}
        for name in self.target.node_names:
            got = self.target.sample(name)
            if got is None:
                continue
            if got.vip:
                holders.append(name)
            for s in singles:
                singles[s] += int(lay.programs.get(s, s) in got.programs)
            if got.view is not None:
                views[name] = {"online": got.view.online, "dc": got.view.dc,
                               "placement": got.view.placement}
        return {"t": t, "vip_holders": holders, "singles": singles, "views": views}

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)


# ---- analysis ------------------------------------------------------------------

def recovered_at(series: Sequence[tuple[float, bool]], t0: float) -> float | None:
    """Seconds from t0 until the series is ok again for good: 0.0 if it never
    failed after t0, None if it still fails at the end."""
    after = [(t, ok) for t, ok in series if t >= t0]
    if not after:
        return None
    if after[-1][1] is False:
        return None
    fails = [t for t, ok in after if not ok]
    if not fails:
        return 0.0
    last_fail = fails[-1]
    back = next(t for t, ok in after if t > last_fail and ok)
    return round(back - t0, 2)


def answered_again(series: Sequence[tuple[float, bool]], t0: float, end: float
                   ) -> float | None:
    """recovered_at() over the scenario's window (t0 to ``end``, when the victim comes
    back); when its last answer there failed, the first one after it that worked,
    however late (a read that timed out just before the window closed is not an
    API that never came back). None: it never answered again."""
    inside = [(t, ok) for t, ok in series if t < end]
    got = recovered_at(inside, t0)
    if got is not None or not inside or inside[-1][0] < t0:
        return got
    last_fail = inside[-1][0]
    back = next((t for t, ok in series if t > last_fail and ok), None)
    return None if back is None else round(back - t0, 2)


def healthy(target: Target, placed: dict | None, up: Sequence[str]) -> bool:
    """Every service and Galera Promoted on each node in ``up``, one VIP."""
    if placed is None:
        return False
    up = set(up)
    lay = target.layout
    if {n for n, r in placed.get(lay.galera_id, []) if r == "Promoted"} != up:
        return False
    for s in lay.services:
        if {n for n, r in placed.get(s, []) if r == "Started"} != up:
            return False
    return all([r for _, r in placed.get(s, [])] == ["Started"]
               for s in [lay.vip_id, *lay.single_instance])


def _baseline_differs(view: dict, baseline: dict, nodes: Sequence[str]) -> bool:
    if any(not view["online"].get(n, False) for n in nodes):
        return True
    return view["placement"] != baseline


# an attempt still running after this long gets a second one beside it: a request
# sent as the VIP moved can hang until the client's timeout, and then that timeout,
# not the cloud, would decide when the sequence worked again. A healthy sequence
# takes 4.4-5.2 s on the lab's two cores at load 6: past 6 s it is held up.
HEDGE_AFTER = 6.0


class SequenceLoop(threading.Thread):
    """The cloud's user sequence, tried again and again from the fault until one
    attempt succeeds (or ``limit`` seconds pass); a pause between attempts keeps the
    failed ones from piling up resources. With ``cleanup``, an attempt running for
    ``hedge`` seconds gets a second one beside it (at most two at once), attempts
    leave what they made, and finish() deletes it once every attempt has ended.
    ``began_at``/``done_at``: the first attempt to succeed."""

    def __init__(self, attempt: Callable[..., dict], t0: float, limit: float,
                 pause: float = 2.0, cleanup: Callable[[], dict] | None = None,
                 hedge: float = HEDGE_AFTER):
        super().__init__(daemon=True)
        self.attempt, self.t0, self.limit, self.pause = attempt, t0, limit, pause
        self.cleanup, self.hedge = cleanup, hedge
        self.stop_event = threading.Event()
        self.done_at: float | None = None
        self.began_at: float | None = None
        self.attempts = 0
        self.hedged = 0
        self.last_error: str | None = None
        self.report: dict = {}
        self.cleaned: dict | None = None
        self._lock = threading.Lock()
        self._ended = threading.Event()
        self._running: list[tuple[threading.Thread, float]] = []

    def _one(self) -> None:
        began = time.time()
        got = self.attempt(clean=False) if self.cleanup is not None else self.attempt()
        with self._lock:
            if got.get("ok"):
                # when the user's sequence succeeded, not when its clean-up ended
                finished = float(got.get("finished") or time.time())
                if self.done_at is None or finished < self.done_at:
                    self.done_at, self.report = finished, got
                    self.began_at = float(got.get("started") or began)
            else:
                self.last_error = str(got.get("error") or got)[:300]
        self._ended.set()

    def _start_one(self) -> None:
        t = threading.Thread(target=self._one, daemon=True)
        self._running.append((t, time.time()))
        self.attempts += 1
        t.start()

    def run(self) -> None:
        next_at = 0.0
        while not self.stop_event.is_set() and time.time() - self.t0 < self.limit:
            with self._lock:
                if self.done_at is not None:
                    return
            self._running = [(t, at) for t, at in self._running if t.is_alive()]
            now = time.time()
            if not self._running:
                if now >= next_at:
                    self._start_one()
            elif self.cleanup is not None and len(self._running) == 1 \
                    and now - self._running[0][1] >= self.hedge:
                self.hedged += 1
                self._start_one()
            self._ended.wait(0.1)
            if self._ended.is_set():
                self._ended.clear()
                next_at = time.time() + self.pause

    def finish(self, timeout: float = 200) -> None:
        """Wait for the attempts still running, then delete what they all made."""
        deadline = time.time() + timeout
        for t, _at in list(self._running):
            t.join(max(0.0, deadline - time.time()))
        if self.cleanup is None or not self.attempts:
            return
        try:
            self.cleaned = self.cleanup()
        except Exception as exc:  # noqa: BLE001 - the report says what is left
            self.cleaned = {"error": str(exc).splitlines()[0][:300]}


# ---- scenarios -----------------------------------------------------------------

class Drill:
    def __init__(self, target: Target, work_dir: Path,
                 progress: Progress = lambda _m: None, settle: float = 4.0,
                 timeout: float = 120):
        self.target = target
        self.work = work_dir
        self.progress = progress
        self.settle = settle
        self.timeout = timeout
        self.next_id = 1

    # helpers
    def placement(self) -> dict:
        return self.target.placement()

    def vip_holder(self) -> str:
        where = self.placement().get(self.target.layout.vip_id, [])
        if len(where) != 1:
            raise RuntimeFailure(f"the VIP runs on {where or 'no node'}: cluster not healthy")
        return where[0][0]

    def wait_healthy(self, up: Sequence[str] | None = None, timeout: float | None = None
                     ) -> float:
        up = list(up or self.target.node_names)
        t0 = time.monotonic()
        last: dict = {}

        def ok() -> bool:
            nonlocal last
            last = self.placement()
            return healthy(self.target, last, up)

        if not proc.wait_for(ok, timeout or self.timeout, interval=0.25):
            raise RuntimeFailure(f"cluster not healthy on {', '.join(up)} after "
                                 f"{timeout or self.timeout:.0f}s: {last}")
        return time.monotonic() - t0

    def wait_detected(self, baseline: dict, timeout: float = 60) -> None:
        """Until the cluster noticed the fault (a failed action, a node gone, a
        resource moved); a check before that would see the old, healthy state."""
        names = self.target.node_names

        def noticed() -> bool:
            view = None
            for name in names:
                view = self.target.crm(name, timeout=10)
                if view is not None:
                    break
            if view is None or not all(view.online.get(n) for n in names):
                return True
            return bool(view.failures) or view.placement != baseline

        if not proc.wait_for(noticed, timeout, interval=0.2):
            raise RuntimeFailure(f"the cluster did not notice the fault in {timeout:.0f}s")

    def cleanup(self) -> None:
        self.target.cleanup()

    def prepare(self) -> None:
        self.target.sql("CREATE DATABASE IF NOT EXISTS pacestack_drill;\n"
                        "CREATE TABLE IF NOT EXISTS pacestack_drill.writes "
                        "(id BIGINT PRIMARY KEY, t DOUBLE) ENGINE=InnoDB;\n")
        got = self.target.sql("SELECT COALESCE(MAX(id), 0) FROM pacestack_drill.writes;")
        self.next_id = int(got.strip() or 0) + 1

    def rows(self, node: str) -> set[int]:
        out = self.target.sql("SELECT id FROM pacestack_drill.writes;", node=node, timeout=60)
        return {int(x) for x in out.split()}

    # the scenario frame: probe + monitor around fault() and back()
    def run_scenario(self, name: str) -> ScenarioResult:
        target = self.target
        nodes = target.node_names
        self.wait_healthy(timeout=self.timeout)
        holder = self.vip_holder()
        if name == "partition":
            # controller01's fence device waits (pcmk_delay_base): the other node loses
            victim = nodes[-1]
        elif name == "peer-crash":
            victim = next(n for n in nodes if n != holder)
        else:
            victim = holder
        result = ScenarioResult(name, victim)
        baseline = self.placement()
        out = self.work / f"probe-{name}.jsonl"
        probe = target.start_probe(out, self.next_id)
        cloud_probe = None
        try:
            cloud_probe = target.start_cloud_probe(self.work / f"cloud-{name}.jsonl")
        except Exception as exc:  # noqa: BLE001 - the scenario runs, the report says why
            result.cloud_measured = True
            result.cloud_error = f"cloud probe did not start: {exc}"[:300]
        # a name of its own each time: in a run of standbys one deletion of the queue
        # crashed in RabbitMQ 3.10, and the same name declared again afterwards found
        # no Raft leader ("leader not known"), so the next scenarios put nothing
        queue = f"pacestack-drill-{name}-{secrets.token_hex(3)}"
        if cloud_probe is not None and cloud_probe.queue is not None:
            result.messages_wanted = MESSAGES
            try:
                result.messages_put = cloud_probe.queue(queue, MESSAGES) or 0
            except Exception as exc:  # noqa: BLE001
                result.notes.append(f"quorum queue not filled: {exc}"[:300])
        sequence = None
        monitor = Monitor(target)
        monitor.start()
        t_back = None
        t0 = time.time()
        survivors = nodes
        try:
            time.sleep(1.5)  # the probe's first answers: a healthy baseline in the plot
            t0 = time.time()
            self.progress(f"{name}: {self._fault(name, victim)}")
            if cloud_probe is not None:
                sequence = SequenceLoop(cloud_probe.sequence, t0, self.timeout,
                                        cleanup=cloud_probe.cleanup)
                sequence.start()
            survivors = [n for n in nodes if n != victim] \
                if name in ("node-crash", "peer-crash", "standby", "partition") else nodes
            self.wait_detected(baseline)
            self.wait_healthy(survivors, self.timeout)
            time.sleep(self.settle)
            if sequence is not None:
                # the victim stays away until the cloud worked without it (or gave up)
                sequence.join(self.timeout + 200)
            if result.messages_put:
                self._count_messages(result, cloud_probe, queue)
            t_back = time.time()
            self.progress(f"{name}: {self._back(name, victim)}")
            self.wait_healthy(timeout=self.timeout)
            t_end = time.time()
            result.rejoin_s = round(t_end - t_back, 2)
            time.sleep(1.0)
        except Exception as exc:  # noqa: BLE001 - the report says what broke
            result.error = str(exc).splitlines()[0][:300]
        finally:
            probe.stop()
            if sequence is not None:
                sequence.stop_event.set()
                sequence.join(200)
                sequence.finish()
            if cloud_probe is not None:
                cloud_probe.stop()
            monitor.stop()
            if target.is_cut(victim):  # a partition is always undone, even on error
                with contextlib.suppress(Exception):
                    target.restore(victim)
        self._analyse(result, probe.events(), monitor, baseline, t0, t_back, survivors)
        if cloud_probe is not None:
            self._analyse_cloud(result, cloud_probe.events(), sequence, t0, t_back)
        try:
            self._restore(victim)
        except Exception as exc:  # noqa: BLE001
            result.error = result.error or f"restore: {exc}"
        self._check_writes(result, probe.events())
        return result

    @staticmethod
    def _count_messages(r: ScenarioResult, cloud_probe: CloudHandle, queue: str,
                        settle: float = COUNT_SETTLE) -> None:
        """What the quorum queue holds while the victim is still away (a majority of
        the members): the messages it lost; then the queue is deleted. A leader just
        elected (the victim's broker may still be stopping) can answer a count before
        it has applied its log, so the count is read again until it shows every
        message or ``settle`` seconds pass, and the highest is taken."""
        held: int | None = None
        last_error = ""
        deadline = time.monotonic() + settle
        while True:
            try:
                count = cloud_probe.queue(queue, 0, False)
                held = count if held is None else max(held, count or 0)
            except Exception as exc:  # noqa: BLE001 - read again; the report says why
                last_error = str(exc)
            if (held is not None and held >= r.messages_put) or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        if held is None and last_error:
            r.notes.append(f"quorum queue not counted: {last_error}"[:300])
            return
        if held is not None and held < r.messages_put:
            r.notes.append(f"quorum queue held {held} of {r.messages_put} for {settle:g} s")
        with contextlib.suppress(Exception):
            cloud_probe.queue(queue, 0)  # counts once more and deletes it
        r.messages_lost = r.messages_put - (held or 0)

    def _fault(self, name: str, victim: str) -> str:
        target = self.target
        if name in ("node-crash", "peer-crash"):
            return target.crash(victim)
        if name == "standby":
            return target.standby(victim, True)
        if name == "kill-mariadbd":
            return f"mariadbd on {victim} killed -9 (pid {target.kill(victim, 'mariadbd')})"
        if name == "kill-service":
            service = self.killed_service()
            return f"{service} on {victim} killed -9 (pid {target.kill(victim, service)})"
        if name == "partition":
            return target.cut(victim)
        raise ConfigError(f"unknown scenario {name!r}")

    def killed_service(self) -> str:
        """Keystone (its gunicorn master) where it runs, else the first service."""
        services = self.target.layout.services
        if not services:
            raise ConfigError("the kill-service scenario needs a cloned service "
                              "(none in this cluster)")
        return "keystone" if "keystone" in services else services[0]

    def _back(self, name: str, victim: str) -> str:
        target = self.target
        if name in ("node-crash", "peer-crash"):
            return target.boot(victim)
        if name == "standby":
            return target.standby(victim, False)
        if name == "partition":
            target.restore(victim)
            if not target.is_up(victim):
                target.boot(victim)
                return f"{victim} plugged in and booted again (it had been fenced)"
            return f"{victim} plugged in again"
        self.cleanup()
        return "failure cleaned up"

    def _restore(self, victim: str) -> None:
        target = self.target
        if target.is_cut(victim):
            target.restore(victim)
        if not target.is_up(victim):
            target.boot(victim)
        self.cleanup()
        self.wait_healthy(timeout=self.timeout)

    def _analyse(self, r: ScenarioResult, events: list[dict], monitor: Monitor,
                 baseline: dict, t0: float, t_back: float | None,
                 survivors: Sequence[str]) -> None:
        writes = [(e["t"], e["ok"]) for e in events if e.get("kind") == "write"]
        r.writes_acked = sum(1 for _, ok in writes if ok)
        r.writes_failed = sum(1 for _, ok in writes if not ok)
        end = t_back or time.time()
        in_fault = [(t, ok) for t, ok in writes if t < end]
        r.galera_s = recovered_at(in_fault, t0)
        probes: dict[str, list[tuple[float, bool]]] = {}
        for e in events:
            if e.get("kind") == "probe":
                probes.setdefault(e["name"], []).append((e["t"], e["ok"]))
        per_service = {n: recovered_at([(t, ok) for t, ok in s if t < end], t0)
                       for n, s in probes.items()}
        r.probes_s = per_service
        address = [(e["t"], e["ok"]) for e in events if e.get("kind") == "address"]
        r.vip_answered = any(ok for t, ok in address if t < t0)
        if r.vip_answered:
            r.vip_s = recovered_at([(t, ok) for t, ok in address if t < end], t0)
        else:
            r.notes.append("the VIP's address did not answer a TCP handshake before the "
                           "fault (a firewall dropping it?): its own time is not measured")
        nodes = self.target.node_names
        detect = cluster_ok = None
        for s in monitor.samples:
            if s["t"] < t0 or s["t"] > end:
                continue
            view = next((v for n, v in s["views"].items() if n in survivors), None)
            if view is None or view["placement"] is None:
                continue
            if detect is None and _baseline_differs(view, baseline, nodes):
                detect = s["t"]
            if detect is not None and healthy(self.target, view["placement"], survivors):
                cluster_ok = s["t"]
                break
        r.detection_s = round(detect - t0, 2) if detect else None
        times = [v for v in per_service.values()] + \
            [round(cluster_ok - t0, 2) if cluster_ok else None]
        r.services_s = None if None in times else max(times)
        counts = {"vip": max((len(s["vip_holders"]) for s in monitor.samples), default=0)}
        for name in self.target.layout.single_instance:
            counts[name] = max((s["singles"].get(name, 0) for s in monitor.samples), default=0)
        r.max_instances = counts
        if monitor.fenced:
            r.notes.append("fenced (powered off by the cluster): " + ", ".join(
                f"{n} at +{t - t0:.1f}s" for t, n in monitor.fenced))
        if monitor.error:
            r.notes.append(monitor.error)
        r.timeline = {"t0": t0, "t_back": t_back,
                      "writes": [(round(t - t0, 2), ok) for t, ok in writes],
                      "probes": {n: [(round(t - t0, 2), ok) for t, ok in s]
                                 for n, s in probes.items()},
                      "address": [(round(t - t0, 2), ok) for t, ok in address],
                      "detection": r.detection_s, "cluster_ok": times[-1]}

    def _analyse_cloud(self, r: ScenarioResult, events: list[dict],
                       sequence: SequenceLoop | None, t0: float,
                       t_back: float | None) -> None:
        r.cloud_measured = True
        end = t_back or time.time()
        apis: dict[str, list[tuple[float, bool]]] = {}
        for e in events:
            if e.get("kind") == "api":
                apis.setdefault(e["name"], []).append((e["t"], e["ok"]))
        r.apis_s = {n: answered_again(s, t0, end) for n, s in sorted(apis.items())}
        if sequence is not None:
            r.cloud_s = round(sequence.done_at - t0, 2) if sequence.done_at else None
            r.cloud_began_s = (round(max(0.0, sequence.began_at - t0), 2)
                               if sequence.began_at else None)
            r.cloud_attempts = sequence.attempts
            r.cloud_hedged = sequence.hedged
            cleaned = sequence.cleaned or {}
            if cleaned.get("error") or cleaned.get("left"):
                r.notes.append(f"the cloud sequences' clean-up left "
                               f"{cleaned.get('left') or cleaned.get('error')}"[:300])
            r.cloud_error = sequence.last_error
            r.cloud_steps = dict(sequence.report.get("steps") or {})
            r.cloud_steps_began = dict(sequence.report.get("began") or {})
        r.timeline["apis"] = {n: [(round(t - t0, 2), ok) for t, ok in s]
                              for n, s in apis.items()}
        r.timeline["cloud"] = r.cloud_s

    def _check_writes(self, r: ScenarioResult, events: list[dict]) -> None:
        acked = {e["id"] for e in events if e.get("kind") == "write" and e["ok"]}
        if acked:
            self.next_id = max(e["id"] for e in events if e.get("kind") == "write") + 1
        missing: set[int] = set()
        for node in self.target.node_names:
            try:
                missing |= acked - self.rows(node)
            except Exception as exc:  # noqa: BLE001
                r.error = r.error or f"reading rows back on {node}: {exc}"
        r.lost_writes = sorted(missing)


def work_directory(path: Path | None, run_id: str) -> Path:
    """Where the probes' event logs go, a directory only we can write: root appends
    to files in it, so a name another user could create first (or link elsewhere)
    must not be used. None: a fresh private directory (mkdtemp, 0700)."""
    if path is None:
        import tempfile

        return Path(tempfile.mkdtemp(prefix=f"pacestack-drill-{run_id}-"))
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(f"--work-dir {path}: {exc.strerror}") from None
    import os
    import stat

    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        raise ConfigError(f"--work-dir {path} is a symbolic link: give the directory itself")
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"--work-dir {path} is not a directory")
    if st.st_uid != os.geteuid():
        raise ConfigError(f"--work-dir {path} belongs to uid {st.st_uid}, not to this user "
                          f"(uid {os.geteuid()})")
    if st.st_mode & 0o022:
        raise ConfigError(f"--work-dir {path} is writable by group or others "
                          f"(mode {stat.S_IMODE(st.st_mode):04o})")
    return path


def run(target: Target, scenarios: Sequence[str] = SCENARIOS,
        work_dir: Path | None = None, progress: Progress = lambda _m: None,
        timeout: float = 120) -> DrillReport:
    """Run the scenarios in order against the target (lab_target.LabTarget or
    ssh_target.SshTarget); the cluster is restored after each."""
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise ConfigError(f"unknown drill scenario {unknown[0]!r} (have: {', '.join(SCENARIOS)})")
    if "partition" in scenarios and not target.layout.fencing:
        raise ConfigError("the partition scenario needs fencing: " + (
            "the lab was built with --no-fencing" if target.kind == "lab"
            else "the cluster has no stonith device"))
    work = work_directory(work_dir or target.work_dir, target.run_id)
    t0 = time.monotonic()
    drill = Drill(target, work, progress, timeout=timeout)
    drill.prepare()
    results = []
    for name in scenarios:
        progress(f"scenario {name}")
        results.append(drill.run_scenario(name))
    return DrillReport(target.run_id, results, time.monotonic() - t0,
                       target.token_ms or 0, 5)
