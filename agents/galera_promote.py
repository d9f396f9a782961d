"""The promotion of a ``ocf:pacestack:galera`` node: decide, then join or bootstrap.

Who may bootstrap is decided in galera_bootstrap.decide() only; promote() gathers
its inputs (through GaleraRecords) until the decision is JOIN or BOOTSTRAP, then
starts mariadbd for it and waits until the node is Primary and Synced: a joiner
first waits for the peers to evict its crashed incarnation, a bootstrap node that
resumes a history for the arbitrators to merge in. Loaded with the agent but only
run by promote.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping

from pacestack.agents import attributes, galera_cib, galera_sst, ocf
from pacestack.agents.galera_bootstrap import (
    BOOTSTRAP,
    JOIN,
    Decision,
    Override,
    decide,
    promotion_score,
)
from pacestack.agents.galera_mysqld import HEALTHY_STATES, Mysqld, MysqldError, iso_seconds, wait
from pacestack.agents.galera_records import (
    DEPARTED,
    LAST_COMMITTED,
    OVERRIDE,
    POSITION,
    PRIMARY,
    SST_METHODS,
    GaleraRecords,
)
from pacestack.agents.galera_state import (
    Position,
    StateError,
    lacks_uuid,
    read_grastate,
    restore_uuid,
    set_safe_to_bootstrap,
    write_grastate,
)
from pacestack.agents.galera_topology import Topology
from pacestack.agents.ocf import Meta, OCFError, Params

from pacestack import proc

# seconds between a promote's status queries (each one client run): often while an
# IST rejoin may end any moment, then sparingly through a long SST
SYNC_POLL, SYNC_POLL_AFTER, SYNC_POLL_SLOW = 0.1, 10.0, 0.5
# A bootstrap that resumes a history waits up to this long for the arbitrators (garbd,
# which outlives a full crash) to join its new Primary component before announcing
# it. A joiner that connects while garbd is still merging in is left out of that view
# and then shunned by garbd for gmcast.time_wait (5 s by default): in the lab, the
# joiner's membership took 4.4 s instead of under one. Never waiting longer than
# that shunning costs; garbd still evicting the crashed members (inactive_timeout,
# 3 s in the lab) and then merging fits inside.
ARBITRATOR_WAIT = 5.0
# the gcomm port Galera connects to when an address in the cluster address names none
GMCAST_PORT = 4567
# Galera's own default for evs.inactive_timeout when the config does not set it
INACTIVE_DEFAULT = 15.0
# seconds of the promote timeout the eviction wait always leaves to the join itself
JOIN_RESERVE = 30.0
# seconds between the eviction wait's reads of the peers' published departures
EVICTION_POLL = 0.2


def _all_at_once(calls, *, parallel: bool = True) -> None:
    """Run the callables in parallel threads; the first exception is raised once all
    have finished (none is left running behind the action's back). Not ``parallel``:
    one after another (a CIB file has no daemon to serialise its writers)."""
    if not parallel:
        for c in calls:
            c()
        return
    from concurrent.futures import ThreadPoolExecutor  # not on the monitor's path

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(c) for c in calls]
    for f in futures:
        f.result()




class Promotion(GaleraRecords):
    """The promote path of GaleraAgent (a mixin): it reads and writes the node's
    records through GaleraRecords; mariadbd's shutdown and death reason are the
    agent's (shared with stop and monitor)."""

    # given by GaleraAgent (ocf.Agent, its configuration and its stop/monitor half)
    environ: Mapping[str, str]
    params: Params
    meta: Meta
    topo: Topology
    validate_all: Callable[[], int]
    _shutdown: Callable[[Mysqld], bool]
    _death_reason: Callable[[Mysqld], str]
    # the PID of the mariadbd this promote spawned: while it starts, mariadbd rewrites
    # its pid file, and _finish_promote() must not take that moment for a death
    _child: int | None

    def _at_once(self, calls) -> None:
        """Independent CIB writes (and work beside them) in parallel under a live CIB,
        whose daemon orders the writers; one after another on a CIB file (ocf-tester),
        where crm_attribute rewrites the whole file and parallel writers lose updates."""
        _all_at_once(calls, parallel="CIB_file" not in self.environ)

    def promote(self) -> int:
        self.validate_all()
        topo = self.topo
        m = self.mysqld
        started = time.monotonic()
        timeout = self.meta.timeout_ms / 1000 if self.meta.timeout_ms else 300.0
        deadline = started + max(1.0, timeout - min(20.0, timeout * 0.2))
        if m.pid() is not None:
            self.advertise_sst(m)
            return self._finish_promote(m, deadline)
        # the first decision reuses the CIB read that found this node's own report
        first = galera_cib.read(self.environ)
        mine = self._my_report(first)
        # before mariadbd starts: once it is Primary, a joiner may pick it as donor
        self.advertise_sst(m, first)
        last = ""
        while True:
            reports, primary = self.gather(topo, first)
            first = None
            reports[self.node_name] = mine
            records = self.records(topo)
            ovr = self.override(topo, reports, primary, records)
            # what each possible donor can run, from the same CIB read as its Primary flag
            donors = {p: self._read(SST_METHODS, p) for p in primary if p != self.node_name}
            self._snap = None  # later reads see this action's own writes
            decision = decide(topo.members, reports, primary, self.node_name, ovr, records)
            if decision.kind == JOIN:
                self.log.info("promote: %s", decision)
                return self._join(self._sst_for_join(m, donors), mine, decision, deadline)
            if decision.kind == BOOTSTRAP:
                if decision.override:
                    self._consume_override(ovr, records)
                self.log.warning("promote: %s: bootstrapping", decision)
                return self._bootstrap(m, mine, deadline)
            if decision.reason != last:
                self.log.warning("promote: %s", decision)
                last = decision.reason
            if time.monotonic() >= deadline:
                raise OCFError(ocf.ERR_GENERIC, f"not promoted: {decision.reason}")
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))

    def _consume_override(self, ovr: Override, last_known: dict[str, Position | None]) -> None:
        """Honoured once: cleared before mariadbd starts, so a failed bootstrap is not
        retried without the operator. The missing members' records describe a history
        this bootstrap abandons: they are cleared too (logged first)."""
        self._delete(OVERRIDE)
        gap = "unknown" if ovr.gap is None else str(ovr.gap)
        lost = ", ".join(f"{m} last recorded {p}" if p else f"{m} never recorded"
                         for m, p in sorted(last_known.items()) if m in ovr.missing)
        self.log.warning("operator override honoured: %s decided at %d that %s bootstraps at "
                         "%s:%s without %s (%s); seqno gap %s", ovr.by, ovr.at, ovr.node,
                         ovr.uuid, ovr.seqno, ", ".join(ovr.missing), lost, gap)
        for m in ovr.missing:
            try:
                self._delete(LAST_COMMITTED, m, "forever")
            except attributes.AttributeFailure as err:
                self.log.warning("cannot clear %s's last-committed record: %s", m, err)

    def _sst_for_join(self, m: Mysqld, donors: dict[str, str | None]) -> Mysqld:
        """mariadbd with the method every possible donor can run (the parameter's
        default only; a bootstrap transfers nothing and keeps it)."""
        explicit = "OCF_RESKEY_wsrep_sst_method" in self.environ
        method, why = galera_sst.join_method(m.sst_method, explicit, donors)
        if method == m.sst_method:
            return m
        self.log.warning("joining by wsrep_sst_method=%s, not %s: %s (node attribute %s)",
                         method, m.sst_method, why, self._attr(SST_METHODS))
        return m._replace(sst_method=method)

    def _start_args(self, mine: Position) -> list[str]:
        if mine.empty or mine.seqno < 0:
            return []  # nothing to resume from: a full SST is the only way
        return [f"--wsrep_start_position={mine}"]

    def _give_back_history(self, m: Mysqld, mine: Position, *, bootstrap: bool) -> None:
        """Galera honours --wsrep_start_position only when grastate.dat names the same
        cluster UUID. A lost file, or the zero UUID a crash soon after an SST join
        leaves, would make a joiner take a full SST and a bootstrap node start a new
        history every joiner must SST from. InnoDB's recovered position is the
        record (it ranked this node): give Galera its UUID back."""
        if mine.empty or mine.seqno < 0:
            return
        path = m.grastate_path()
        state = read_grastate(path)
        if state is None:
            st = os.stat(m.datadir)
            write_grastate(path, mine, st.st_uid, st.st_gid, safe_to_bootstrap=bootstrap)
        elif lacks_uuid(state):
            restore_uuid(path, mine.uuid)
        else:
            return
        self.log.warning("grastate.dat had no cluster UUID; wrote %s from the %s position "
                         "so Galera resumes this node's history", mine.uuid, mine.source)

    def _join(self, m: Mysqld, mine: Position, decision: Decision, deadline: float) -> int:
        try:
            self._give_back_history(m, mine, bootstrap=False)
        except (StateError, OSError) as err:
            # only costs speed: without it Galera takes a full SST
            self.log.warning("cannot give grastate.dat its cluster UUID: %s", err)
        try:
            old = m.forget_view()
        except MysqldError as err:
            raise OCFError(ocf.ERR_GENERIC, str(err)) from None
        if old:
            # a Primary runs elsewhere, so the saved view can restore nothing; it
            # would only make this mariadbd the crashed incarnation of its node UUID
            self.log.info("joining under a new Galera identity: removed the saved view "
                          "of the previous incarnation (%s)", old)
            self._await_eviction(m, old, deadline)
        args = self._start_args(mine)
        if not args:
            # a full SST replaces whatever history this node recorded: a crash during
            # the copy must not leave a record that holds the others back
            self._forget_record()
        try:
            m.mark_joining(decision.peer)
        except OSError as err:
            # without it a failed SST would leave a grastate.dat no rule may read
            raise OCFError(ocf.ERR_GENERIC, f"cannot mark this node as joining: {err}") \
                from None
        self._forget_deaths()
        pid = self._child = m.spawn(args)
        self.log.info("mariadbd pid %s joining via %s", pid, decision.peer)
        return self._finish_promote(m, deadline)

    def _await_eviction(self, m: Mysqld, old: str, deadline: float) -> None:
        """The crashed incarnation may still be a member in the peers' view: a new
        mariadbd arriving from the same address while they evict it takes part in
        failed membership rounds, and on a busy node the survivor has been seen to
        lose its own Primary component that way. The peers have evicted it once
        evs.inactive_timeout has passed since its death; the death was no later than
        the moment this agent first saw it dead (note_death), or than now."""
        inactive = iso_seconds(m.provider_option("evs.inactive_timeout"), INACTIVE_DEFAULT)
        seen = self._death_seen(old)
        now = time.clock_gettime(time.CLOCK_BOOTTIME)
        # a record from before a reboot only understates the time since the death
        since = max(0.0, now - seen) if seen is not None else 0.0
        why = f"seen dead {since:.1f}s ago" if seen is not None else "not seen dead before"
        if self._died_before_boot(old):
            since, why = max(since, now), f"died before this boot, {now:.0f}s ago"
        wait_s = max(0.0, min(inactive - since, deadline - time.monotonic() - JOIN_RESERVE))
        if wait_s <= 0:
            self.log.info("not waiting (evs.inactive_timeout %.1fs, %s) for the peers to "
                          "evict the previous incarnation %s", inactive, why, old)
            return
        self.log.info("waiting up to %.1fs (evs.inactive_timeout %.1fs, %s) for the peers "
                      "to evict the previous incarnation %s before joining", wait_s,
                      inactive, why, old)
        # the Promoted peers' monitors publish whom they saw leave their view: once
        # every one names this incarnation, no peer holds it any more
        start = time.monotonic()
        end = start + wait_s
        while True:
            saw = self.peers_saw_leave(old)
            if saw:
                self.log.info("%s saw the previous incarnation %s leave its view (after "
                              "%.1fs of the wait): joining", ", ".join(saw), old,
                              time.monotonic() - start)
                return
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(EVICTION_POLL, left))

    def _bootstrap(self, m: Mysqld, mine: Position, deadline: float) -> int:
        if m.unfinished_sst():
            # a mix of two states: no cluster may start from it, a new one neither
            raise OCFError(ocf.ERR_GENERIC, f"{m.datadir} holds a state transfer that never "
                                            "finished: move it aside to form a new cluster")
        if not m.has_data():
            m.initialise()
        try:
            m.clear_joining()  # this node's data is the cluster's now, not a copy's
            self._give_back_history(m, mine, bootstrap=True)
            if os.path.exists(m.grastate_path()):
                set_safe_to_bootstrap(m.grastate_path())
        except (StateError, OSError) as err:
            raise OCFError(ocf.ERR_GENERIC, f"cannot mark safe_to_bootstrap: {err}") from None
        self._forget_deaths()
        pid = self._child = m.spawn(["--wsrep-new-cluster", *self._start_args(mine)])
        self.log.warning("mariadbd pid %s bootstrapping a new Primary component from %s",
                         pid, mine)
        # a new or standalone history has no arbitrator that knew it: nothing to wait for
        return self._finish_promote(m, deadline, arbitrators=not mine.empty and mine.seqno >= 0)

    def _finish_promote(self, m: Mysqld, deadline: float, arbitrators: bool = False) -> int:
        sync_deadline = min(deadline, time.monotonic() + self.params.sync_timeout)
        seen: dict[str, str] = {}
        child = self._child

        def alive() -> bool:
            # mariadbd rewrites its pid file while starting: trust our child's PID too
            return m.pid() is not None or proc.is_alive(child)

        def synced() -> bool:
            if not alive():
                return True  # died: reported below
            try:
                seen.update(m.status(timeout=5))
            except MysqldError:
                return False
            return (seen.get("wsrep_cluster_status") == "Primary"
                    and seen.get("wsrep_local_state_comment") in HEALTHY_STATES)

        if not wait(synced, max(0.0, min(SYNC_POLL_AFTER, sync_deadline - time.monotonic())),
                    SYNC_POLL):
            wait(synced, max(0.0, sync_deadline - time.monotonic()), SYNC_POLL_SLOW)
        if not alive():
            raise OCFError(ocf.ERR_GENERIC, f"mariadbd exited while promoting: "
                                            f"{self._death_reason(m)}")
        if not synced():
            state = seen.get("wsrep_local_state_comment", "not answering")
            self._shutdown(m)
            raise OCFError(ocf.ERR_GENERIC, f"not Synced in time (last state: {state}, "
                                            f"cluster {seen.get('wsrep_cluster_status', '?')})")
        if arbitrators and self.topo.arbitrators:
            self._await_arbitrators(m, seen, alive,
                                    min(ARBITRATOR_WAIT, deadline - time.monotonic()))
            if not alive():
                raise OCFError(ocf.ERR_GENERIC, f"mariadbd exited while promoting: "
                                                f"{self._death_reason(m)}")
        self._set_role("promoted")
        try:
            m.clear_joining()  # Synced: grastate.dat holds this node's state again
        except OSError as err:
            self.log.warning("cannot remove the join marker: %s", err)
        # the CIB updates are independent of each other: one read, then all at once
        # (one after another they were ~1-2 s of every promote on a loaded node)
        snap = self._snap = galera_cib.read(self.environ)
        try:
            self._at_once([
                lambda: self._set(PRIMARY, "1"),
                # a running node's position moves: wsrep_last_committed
                lambda: self._delete(POSITION),
                # a new member of the Primary: on record now
                lambda: self.record_running(seen, force=True),
                lambda: self._score(promotion_score(Decision(JOIN, "")), seen=snap),
                lambda: self._score_joiners(snap),
                lambda: self._record_incarnation(seen),
                # the view it joined: the members a later departure is told from
                lambda: self.note_view(m, seen, published=snap is None or snap.get(
                    self._attr(DEPARTED), self.node_name) is not None),
            ])
        finally:
            self._snap = None
        self.log.info("promoted: Primary and %s, cluster size %s",
                      seen.get("wsrep_local_state_comment"), seen.get("wsrep_cluster_size"))
        return ocf.SUCCESS

    def _await_arbitrators(self, m: Mysqld, seen: dict[str, str],
                           alive: Callable[[], bool], budget: float) -> None:
        """Until this bootstrap node's Primary component holds every arbitrator too (or
        ``budget`` seconds passed: an arbitrator that is down only costs its wait)."""
        arbs = self.topo.arbitrators
        want = 1 + len(arbs)

        def merged() -> bool:
            if not alive():
                return True  # the caller reports the death
            try:
                seen.update(m.status(timeout=5))
            except MysqldError:
                return False
            return seen.get("wsrep_cluster_size", "0").isdigit() and \
                int(seen["wsrep_cluster_size"]) >= want
        started = time.monotonic()
        if merged():
            return
        self._call_arbitrators(m)
        if wait(merged, max(0.0, budget), SYNC_POLL):
            self.log.info("arbitrator %s joined the new Primary component after %.1fs",
                          ", ".join(arbs), time.monotonic() - started)
        else:
            self.log.warning("arbitrator %s not in the new Primary component after %.1fs "
                             "(cluster size %s): announcing it without", ", ".join(arbs),
                             time.monotonic() - started, seen.get("wsrep_cluster_size", "?"))

    def _call_arbitrators(self, m: Mysqld) -> None:
        """A new Primary component (--wsrep-new-cluster) drops the peer addresses, so
        only the arbitrators' own reconnect brings them in: after a refused attempt
        garbd waits 1 s plus up to one 0.5 s check, 0.8 s of the lab's full crash on
        average. Asked to, Galera connects out at its next check (0.5 s at most).
        Only speed: a failure leaves the arbitrators' reconnect to do it."""
        for addr in self.topo.arbitrators:
            host_port = addr if re.search(r"(^[^:\[]+|\])(:\d+)$", addr) \
                else f"{addr}:{GMCAST_PORT}"
            try:
                m.set_provider_option(f"gmcast.peer_addr=add:tcp://{host_port}")
            except MysqldError as err:
                self.log.warning("cannot ask Galera to connect to arbitrator %s: %s",
                                 addr, err)

    def _score_joiners(self, snap: galera_cib.Snapshot | None) -> None:
        """A Primary component exists now: every other started (reported), non-Primary
        member would score itself for JOIN on its post-promote notification. Without
        notify=true on the clone that waits for its next Unpromoted monitor (20 s, the
        lab measured it as most of a full-crash recovery), so score them here. Only a
        hint for Pacemaker: their promote decides again itself."""
        if snap is None:
            return
        join = promotion_score(Decision(JOIN, ""))
        for m in self.topo.members:
            if m == self.node_name or not snap.get(self._attr(POSITION), m) \
                    or snap.get(self._attr(PRIMARY), m) == "1":
                continue
            try:
                self._score(join, m, seen=snap)
            except attributes.AttributeFailure as err:
                self.log.warning("cannot score %s for joining: %s", m, err)
