"""What a ``ocf:pacestack:galera`` node knows and publishes about itself and its peers.

Node attributes (each member's reported position, the Primary flag, the persistent
last-committed record, the operator's bootstrap override, promotion scores) and the
files the agent keeps in HA_RSCTMP between actions (the role marker, the last record
the sh front reads, the death sighting the eviction wait reads, the cached
--wsrep-recover result). The Promoted monitor goes through record_running(), so
this stays standard library and cheap to import.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping

from pacestack.agents import attributes, galera_cib, galera_sst, ocf
from pacestack.agents.galera_bootstrap import (
    BOOTSTRAP,
    WAIT,
    Decision,
    Override,
    check_override,
    choose_bootstrap,
    decide,
    held_back,
    parse_override,
    promotion_score,
)
from pacestack.agents.galera_mysqld import Mysqld, MysqldError, sst_env
from pacestack.agents.galera_state import (
    Position,
    StateError,
    format_recorded,
    format_report,
    parse_recorded,
    parse_report,
    read_grastate,
)
from pacestack.agents.galera_topology import Topology
from pacestack.agents.ocf import OCFError
from pacestack.agents.ocf_log import OCFLogger

# node attributes (prefixed with the resource id, e.g. galera-position)
POSITION = "position"            # reboot: the stopped node's position, UUID:SEQNO:SOURCE
PRIMARY = "primary"              # reboot: 1 while Promoted (Primary and Synced)
LAST_COMMITTED = "last-committed"  # forever: highest UUID:SEQNO:EPOCH this node reported
OVERRIDE = "bootstrap-override"  # reboot: an operator's bootstrap decision (galera recover)
OVERRIDE_TTL = 3600              # seconds an unused override stays valid
INCARNATION = "incarnation"      # forever: NODE_UUID BOOT_ID of the last promoted mariadbd
DEPARTED = "departed"            # reboot: node UUIDs the Promoted mariadbd saw leave its view
# how many departed node UUIDs a Promoted node keeps publishing (newest last)
DEPARTED_KEPT = 8
SST_METHODS = "sst-methods"      # reboot: methods this node's mariadbd can donate (a,b,c)
# a Promoted node records its last committed seqno (a CIB write) when it changed and:
# its view changed, or this long passed
RECORD_INTERVAL = 60
# ... and when it is the only data member left (it alone holds the newest commits):
# once its position passes what the missing members last recorded, then at most this
# often. Every record is a change of the CIB's configuration, which aborts the
# transition in flight (a returning node's start and promote); at one per monitor
# (1 s) a survivor under writes aborted every transition. Past that first record the
# later ones only raise the loss gap `pacestack galera recover` shows for the
# survivor, a floor by design (docs/galera-recover.md): 10 s of commits is the most
# it understates, as when the Promoted monitor ran every 10 s.
ALONE_RECORD_INTERVAL = 10
# seconds between a Promoted node's looks at its own view while a peer's promote waits
# for it to drop that peer's killed incarnation (see_off): one status query each
SEE_OFF_POLL = 0.05


def _text(path: str) -> str:
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read()
    except (OSError, ValueError):
        return ""



def boot_id() -> str | None:
    """The kernel's identity of this boot: a process of another boot is dead."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip() or None
    except OSError:
        return None

class GaleraRecords:
    """The records half of GaleraAgent (a mixin): reads and writes of this node's and
    its peers' attributes and of the agent's own files, no mariadbd lifecycle."""

    # given by GaleraAgent (ocf.Agent and its configuration)
    environ: Mapping[str, str]
    log: OCFLogger
    node_name: str
    base: str
    mysqld: Mysqld
    topo: Topology
    # the CIB as gather() read it, for the one decision being made; None: read each
    # attribute through crm_attribute (so later reads see this action's own writes)
    _snap: galera_cib.Snapshot | None

    # -- node attributes (one CIB read per decision) -----------------------------------
    def _attr(self, what: str) -> str:
        return f"{self.base}-{what}"

    def _get(self, what: str, node: str, lifetime: str = "reboot") -> str | None:
        return attributes.get(self._attr(what), node, lifetime, env=self.environ)

    def _set(self, what: str, value: str, node: str | None = None,
             lifetime: str = "reboot") -> None:
        attributes.set(self._attr(what), value, node or self.node_name, lifetime,
                       env=self.environ)

    def _delete(self, what: str, node: str | None = None, lifetime: str = "reboot") -> None:
        attributes.delete(self._attr(what), node or self.node_name, lifetime,
                          env=self.environ)

    def _read(self, what: str, node: str, lifetime: str = "reboot") -> str | None:
        """An attribute as of the snapshot gather() took, crm_attribute without one."""
        if self._snap is not None:
            return self._snap.get(self._attr(what), node, lifetime)
        return self._get(what, node, lifetime)

    def gather(self, topo: Topology, snap: galera_cib.Snapshot | None = None
               ) -> tuple[dict[str, Position | None], list[str]]:
        """Every member's reported position (None: not reported or unreadable) and the
        members that say they are Primary (from ``snap`` when just read)."""
        # one CIB read for the whole decision (override() reads it too); None: read
        # attribute by attribute through crm_attribute
        self._snap = snap if snap is not None else galera_cib.read(self.environ)
        reports: dict[str, Position | None] = {}
        primary = []
        for m in topo.members:
            raw = self._read("position", m)
            try:
                reports[m] = parse_report(raw, f"{m}'s position") if raw else None
            except StateError as err:
                self.log.warning("ignoring %s: %s", m, err)  # unreadable = not reported
                reports[m] = None
            if self._read("primary", m) == "1":
                primary.append(m)
        return reports, primary

    # -- promotion scores (only the order of Pacemaker's promotes) ---------------------
    def _score(self, score: int | None, node: str | None = None,
               seen: galera_cib.Snapshot | None = None) -> None:
        node = node or self.node_name
        if seen is not None and seen.get(attributes.promotion_attribute(self.base), node) == \
                (None if score is None else str(int(score))):
            # already so in the CIB the decision was read from: every node re-scores
            # the bootstrap node, and a write costs a CIB update. Scores only order
            # Pacemaker's promotes; promote() decides again itself.
            return
        if score is None:
            attributes.delete_promotion_score(self.base, node, env=self.environ)
        else:
            attributes.set_promotion_score(self.base, score, node, env=self.environ)

    def refresh_scores(self, topo: Topology) -> Decision:
        """Score this node (and the bootstrap node, once every member reported), so
        Pacemaker promotes the most advanced first and the joiners after it."""
        reports, primary = self.gather(topo)
        records = self.records(topo)
        ovr = self.override(topo, reports, primary, records)
        seen, self._snap = self._snap, None  # later reads see this action's own writes
        decision = decide(topo.members, reports, primary, self.node_name, ovr, records)
        self._score(promotion_score(decision), seen=seen)
        if decision.kind == WAIT and decision.bootstrap_node:
            choice = choose_bootstrap(topo.members, reports, last_known=records)
            if choice.kind == BOOTSTRAP:
                self._score(promotion_score(choice), choice.bootstrap_node, seen=seen)
        return decision

    # -- the state transfer methods this node can donate ------------------------------
    def advertise_sst(self, m: Mysqld, seen: galera_cib.Snapshot | None = None) -> None:
        """Publish the methods this node's mariadbd can donate: the running one's (by its
        PATH), else the one spawn() starts. Written before a mariadbd starts, so a peer
        that is Primary has advertised; nothing when the running one's PATH is
        unreadable (a joiner then does not count on this node)."""
        pid = m.pid()
        path = galera_sst.process_path(pid) if pid is not None else sst_env(os.environ)["PATH"]
        value = None if path is None else galera_sst.format_methods(
            galera_sst.donor_methods(path, os.path.dirname(m.binary))) or None
        if seen is not None and seen.get(self._attr(SST_METHODS), self.node_name) == value:
            return
        if value:
            self._set(SST_METHODS, value)
        else:
            self._delete(SST_METHODS)

    # -- the operator's bootstrap override (pacestack galera recover) ------------------
    def override(self, topo: Topology, reports: dict[str, Position | None], primary: list[str],
                 records: dict[str, Position | None]) -> Override | None:
        """This node's override, when it may be honoured now.

        An override that can never apply (unreadable, expired, another position, a
        Primary exists...) is cleared and logged; one that may apply later (a missing
        member not yet confirmed down by Pacemaker) is kept but not used."""
        raw = self._read(OVERRIDE, self.node_name)
        if not raw:
            return None
        try:
            ovr = parse_override(raw)
            if ovr.node != self.node_name:
                raise ValueError(f"it names {ovr.node}, not this node")
        except ValueError as err:
            return self._drop_override(f"{err}")
        age = time.time() - ovr.at
        if not 0 <= age <= OVERRIDE_TTL:
            return self._drop_override(f"made {age:.0f}s ago (valid {OVERRIDE_TTL}s)")
        if [p for p in primary if p != self.node_name]:
            return self._drop_override(f"{', '.join(primary)} is Primary: joining instead")
        why = check_override(topo.members, reports, ovr, records)
        if why:
            return self._drop_override(why)
        held = held_back(topo.members, reports, records)
        unsure = [f"{m} is {st}" for m in held
                  if reports.get(m) is None and (st := self.peer_state(m)) != "down"]
        if unsure:
            self.log.warning("operator override kept, not used yet: %s to Pacemaker",
                             ", ".join(unsure))
            return None
        return ovr

    def _drop_override(self, why: str) -> None:
        self.log.warning("operator bootstrap override ignored and cleared: %s", why)
        self._delete(OVERRIDE)
        return None

    # -- the last-committed record (lifetime=forever) ----------------------------------
    def records(self, topo: Topology) -> dict[str, Position | None]:
        """Every member's persistent last-committed record (as of gather()'s snapshot)."""
        return {m: self.recorded(m) for m in topo.members}

    def recorded(self, node: str) -> Position | None:
        """The position ``node`` last recorded persistently (None: none/unreadable)."""
        raw = self._read(LAST_COMMITTED, node, "forever")
        try:
            return parse_recorded(raw, f"{node}'s last-committed")[0] if raw else None
        except StateError as err:
            self.log.warning("ignoring %s", err)
            return None

    def record(self, pos: Position) -> None:
        """Keep the highest seqno this node reported in its history (lifetime=forever):
        after a full crash it tells how far a member that never returns had got."""
        if pos.empty or pos.seqno < 0:
            return
        old = self.recorded(self.node_name)
        if old is not None and old.uuid == pos.uuid and old.seqno >= pos.seqno:
            return
        self._set(LAST_COMMITTED, format_recorded(pos, time.time()), lifetime="forever")

    def record_running(self, status: dict[str, str], force: bool = False) -> None:
        """Monitor of a Promoted node: record wsrep_last_committed when it moved and the
        view changed or RECORD_INTERVAL passed; as the only data member left, when it
        first passes what the missing members last recorded, then every
        ALONE_RECORD_INTERVAL. A file in HA_RSCTMP remembers the last record (no CIB
        read per monitor); the sh front (galera_sh_monitor.py) applies the same rules."""
        try:
            pos = Position(status["wsrep_cluster_state_uuid"],
                           int(status["wsrep_last_committed"]), "running")
            size = int(status.get("wsrep_cluster_size", "0"))
        except (KeyError, ValueError):
            return
        try:
            with open(self._record_file(), encoding="ascii") as fh:
                uuid, seqno, old_size, _wall, at, _alone, peers = fh.read().split()[:7]
            last = (uuid, int(seqno), int(old_size), float(at), int(peers))
        except (OSError, ValueError):
            last = None  # none, or an older agent's (no peers field): record
        # the boot clock: wall-clock steps neither delay nor hurry a record, and the sh
        # front reads the same clock from /proc/uptime
        now = time.clock_gettime(time.CLOCK_BOOTTIME)
        if last is not None and last[:2] == (pos.uuid, pos.seqno) and not force:
            return
        alone_size = 1 + len(self.topo.arbitrators)
        alone = size <= alone_size
        if last is not None and last[2] == size and not force:
            if not alone and now - last[3] < RECORD_INTERVAL:
                return
            if alone and last[0] == pos.uuid:
                if last[1] > last[4]:  # already past the missing members' records
                    if now - last[3] < ALONE_RECORD_INTERVAL:
                        return
                elif pos.seqno <= last[4]:
                    return  # not past them yet: a record would add nothing
        peers = self._peers_recorded(pos.uuid) if alone else -1
        try:
            self.record(pos)
        except attributes.AttributeFailure as err:
            self.log.warning("cannot record last committed position: %s", err)
            return
        # the sh front skips Python only while this says no record is due
        with open(self._record_file(), "w", encoding="ascii") as fh:
            fh.write(f"{pos.uuid} {pos.seqno} {size} {time.time()} {now} {alone_size} "
                     f"{peers}\n")

    def _peers_recorded(self, uuid: str) -> int:
        """The highest seqno of history ``uuid`` the other data members recorded (-1:
        none): a record of this node's is worth writing once it passes that."""
        # a promote's snapshot, taken just before (the peers' records are not ours);
        # else one CIB read for them all, not one crm_attribute per member
        kept = self._snap
        if kept is None:
            self._snap = galera_cib.read(self.environ)
        try:
            recs = [self.recorded(m) for m in self.topo.members if m != self.node_name]
        finally:
            self._snap = kept
        return max((r.seqno for r in recs if r is not None and r.uuid == uuid), default=-1)

    def _record_stopped(self, m: Mysqld) -> None:
        """A clean shutdown wrote the final seqno to grastate.dat: record it."""
        try:
            state = read_grastate(m.grastate_path())
            if state is not None:
                self.record(Position(state.uuid, state.seqno, "grastate"))
        except (StateError, attributes.AttributeFailure) as err:
            self.log.warning("cannot record the final position: %s", err)

    def _forget_record(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._record_file())  # so the first record after the join is written
        if self.recorded(self.node_name) is None:
            return
        try:
            self._delete(LAST_COMMITTED, lifetime="forever")
        except attributes.AttributeFailure as err:
            self.log.warning("cannot clear this node's last-committed record: %s", err)
        else:
            self.log.info("joining by full SST: this node's last-committed record cleared")

    def _record_file(self) -> str:
        return self._role_file()[:-len(".role")] + ".recorded"

    # -- positions ---------------------------------------------------------------------
    def detect_position(self) -> Position:
        cache = self._role_file()[:-len(".role")] + ".recovered"
        before = _text(cache)
        try:
            pos = self.mysqld.position(cache=cache)
            if pos.source == "recovered" and before and before == _text(cache):
                self.log.info("position %s: the last --wsrep-recover's, the datadir is "
                              "unchanged since", pos)
            return pos
        except (StateError, MysqldError) as err:
            # never guess: this node is not ranked, the others wait for it
            self._delete("position")
            raise OCFError(ocf.ERR_GENERIC, f"cannot place this node: {err}") from None

    def publish(self, pos: Position) -> None:
        self._set(POSITION, format_report(pos))
        self.record(pos)
        self.log.info("last committed position %s (from %s)", pos, pos.source)

    def _my_report(self, snap: galera_cib.Snapshot | None = None) -> Position:
        raw = snap.get(self._attr(POSITION), self.node_name) if snap is not None \
            else self._get(POSITION, self.node_name)
        if raw:
            try:
                return parse_report(raw, "own position")
            except StateError:
                pass
        pos = self.detect_position()
        self.publish(pos)
        return pos

    # -- the death sighting the eviction wait reads ------------------------------------
    def _death_file(self) -> str:
        return self._role_file()[:-len(".role")] + ".dead"

    def note_death(self, m: Mysqld) -> None:
        """mariadbd is not running but its saved view says an incarnation was in a
        Primary component: that incarnation died no later than now. Remember the
        earliest such moment (boot clock) under its node UUID, so a later join waits
        for the peers' eviction only for the part of evs.inactive_timeout still left."""
        try:
            uuid = m.saved_view()
        except MysqldError:
            return
        if uuid in (None, "?") or self._death_seen(uuid) is not None:
            return
        with contextlib.suppress(OSError):
            os.makedirs(os.path.dirname(self._death_file()), exist_ok=True)
            with open(self._death_file(), "w", encoding="ascii") as fh:
                fh.write(f"{uuid} {time.clock_gettime(time.CLOCK_BOOTTIME)}\n")

    def _death_seen(self, uuid: str) -> float | None:
        """When (boot clock) the incarnation ``uuid`` was first seen dead, or None."""
        try:
            with open(self._death_file(), encoding="ascii") as fh:
                seen_uuid, at = fh.read().split()[:2]
            return float(at) if seen_uuid == uuid else None
        except (OSError, ValueError):
            return None

    def _record_incarnation(self, status: dict[str, str]) -> None:
        """This mariadbd's Galera node UUID and the boot it runs in: after a reboot,
        the eviction wait knows that incarnation died before the boot."""
        uuid, boot = status.get("wsrep_gcomm_uuid"), boot_id()
        if not uuid or not boot:
            return
        try:
            self._set(INCARNATION, f"{uuid} {boot}", lifetime="forever")
        except attributes.AttributeFailure as err:
            self.log.warning("cannot record this node's Galera incarnation: %s", err)

    def _died_before_boot(self, uuid: str) -> bool:
        """The incarnation ``uuid`` was recorded running in an earlier boot of this
        machine: it died no later than this boot began."""
        try:
            raw = self._get(INCARNATION, self.node_name, lifetime="forever") or ""
        except attributes.AttributeFailure:
            return False
        recorded, _, boot = raw.partition(" ")
        now = boot_id()
        return recorded == uuid and bool(boot) and now is not None and boot != now

    def _forget_deaths(self) -> None:
        """A new mariadbd is about to run: a later death must be observed anew."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._death_file())

    # -- the departures a joiner's eviction wait reads ----------------------------------
    def _view_file(self) -> str:
        return self._role_file()[:-len(".role")] + ".view"

    def _saved_view(self) -> tuple[str, str, list[str] | None, list[str]] | None:
        """(conf id, own node UUID, members or None when unknown, departed) as the
        last note_view() wrote them; None when there is no readable record."""
        try:
            with open(self._view_file(), encoding="ascii") as fh:
                conf, me, members, departed = fh.read().split()[:4]
        except (OSError, ValueError):
            return None
        return (conf, me, None if members == "?" else members.split(","),
                [] if departed == "-" else departed.split(","))

    def note_view(self, m: Mysqld, status: dict[str, str], published: bool = False) -> None:
        """Promoted: when the view changed since the last note (wsrep_cluster_conf_id),
        publish the node UUIDs that left this mariadbd's view while it ran (DEPARTED).
        A joiner whose crashed incarnation is among them on every Promoted peer need
        not wait for its eviction. A UUID seen back in the view is dropped again, and
        when the members are unknown nothing is claimed. ``published``: the CIB holds
        a DEPARTED value this node may not have a record of (a new mariadbd)."""
        conf, me = status.get("wsrep_cluster_conf_id", ""), status.get("wsrep_gcomm_uuid", "")
        if not conf.isdigit() or not me:
            return
        prev = self._saved_view()
        if prev is not None and prev[:2] == (conf, me):
            return
        try:
            view_id, members = m.members()
        except MysqldError as err:
            self.log.warning("cannot read this node's view members: %s", err)
            members = None
        else:
            if view_id != conf:
                return  # the table lags the view: the next monitor comes back here
        ours = prev is not None and prev[1] == me
        departed: list[str] = []
        if ours and members is not None and prev[2] is not None:
            gone = [u for u in prev[2] if u not in members]
            departed = [u for u in dict.fromkeys([*prev[3], *gone])
                        if u not in members][-DEPARTED_KEPT:]
        had = prev[3] if ours else []
        # a previous mariadbd's departures may still be published
        stale = published or (prev is not None and not ours and bool(prev[3]))
        try:
            if departed and departed != had:
                self._set(DEPARTED, " ".join(departed))
            elif not departed and (had or stale):
                self._delete(DEPARTED)
        except attributes.AttributeFailure as err:
            self.log.warning("cannot publish the departed members: %s", err)
            return
        if departed != had:
            self.log.info("view %s: %s left this node's view", conf,
                          ", ".join(departed) or "none of the known members")
        with open(self._view_file(), "w", encoding="ascii") as fh:
            fh.write(f"{conf} {me} {','.join(members) if members else '?'} "
                     f"{','.join(departed) or '-'}\n")

    def _forget_view(self) -> None:
        """mariadbd stops: its departures end with it (the file tells whether any are
        published, so a stop costs no CIB write when none are)."""
        prev = self._saved_view()
        if prev is not None and prev[3]:
            try:
                self._delete(DEPARTED)
            except attributes.AttributeFailure as err:
                self.log.warning("cannot clear the departed members: %s", err)
                return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._view_file())

    def peers_saw_leave(self, uuid: str) -> list[str] | None:
        """The other Promoted members, when every one of them published that ``uuid``
        left its view; None otherwise (none Promoted, one that did not say so, or an
        unreadable CIB)."""
        snap = galera_cib.read(self.environ)
        if snap is None:
            return None
        peers = [n for n in self.topo.members
                 if n != self.node_name and snap.get(self._attr(PRIMARY), n) == "1"]
        if peers and all(uuid in (snap.get(self._attr(DEPARTED), n) or "").split()
                         for n in peers):
            return peers
        return None

    def see_off(self, m: Mysqld, peers: list[str], budget: float) -> list[str]:
        """Before a peer's promote, on a Promoted node: a peer whose own agent reports
        its mariadbd stopped (its position attribute) while its last incarnation is
        still in this node's view was killed and is being evicted, and its promote
        waits (peers_saw_leave) until this node publishes that it left. Publish it
        as the view drops it, instead of at the next monitor: Pacemaker holds that
        promote until this returns, so the joiner finds the word at once. At most
        ``budget`` seconds; any doubt returns at once (the joiner's own wait stays
        the safety). The incarnation UUIDs still in the view when it gave up."""
        others = [p for p in peers if p != self.node_name and p in self.topo.members]
        if not others or m.pid() is None:
            return []
        snap = galera_cib.read(self.environ)
        if snap is None:
            return []
        dead = set()
        for p in others:
            if snap.get(self._attr(POSITION), p) is None:
                continue  # running, or not placed: no dead incarnation to see off
            inc = (snap.get(self._attr(INCARNATION), p, "forever") or "").split()
            if inc:
                dead.add(inc[0])
        if not dead:
            return []
        end = time.monotonic() + budget
        started = time.monotonic()
        while True:
            try:
                status = m.status(timeout=5)
            except MysqldError:
                return []
            if status.get("wsrep_cluster_status") != "Primary":
                return []
            self.note_view(m, status)
            saved = self._saved_view()
            if saved is None or saved[2] is None or saved[1] != status.get("wsrep_gcomm_uuid"):
                return []  # nothing this node could claim
            held = sorted(dead & set(saved[2]))
            if not held:
                if time.monotonic() - started > SEE_OFF_POLL:
                    self.log.info("view %s: %s left before %s's promote (%.1fs)", saved[0],
                                  ", ".join(sorted(dead)), ", ".join(others),
                                  time.monotonic() - started)
                return []
            if time.monotonic() >= end:
                self.log.info("%s still in this node's view after %.1fs: %s's promote "
                              "waits on its own", ", ".join(held), budget, ", ".join(others))
                return held
            time.sleep(SEE_OFF_POLL)

    # -- the role marker (Unpromoted = started with mariadbd stopped) ------------------
    def _role_file(self) -> str:
        rsctmp = self.environ.get("HA_RSCTMP", "/run/resource-agents")
        return os.path.join(rsctmp, f"pacestack-galera-{self.base}-{self.node_name}.role")

    def _role(self) -> str | None:
        try:
            with open(self._role_file(), encoding="ascii") as fh:
                return fh.read().strip() or None
        except OSError:
            return None

    def _set_role(self, role: str | None) -> None:
        path = self._role_file()
        if role is None:
            if os.path.exists(path):
                os.unlink(path)
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="ascii") as fh:
            fh.write(role + "\n")

    # -- Pacemaker's view of a peer ----------------------------------------------------
    def peer_state(self, peer: str) -> str:
        """'down' only when Pacemaker's status says the peer left cleanly or was fenced;
        'up', or 'unknown' when the CIB does not say."""
        import subprocess
        import xml.etree.ElementTree as ET  # noqa: S405 - Pacemaker's own CIB; rarely needed

        out = subprocess.run(["cibadmin", "--query", "--scope", "status"],
                             capture_output=True, text=True, timeout=30, check=False,
                             env=dict(self.environ))
        if out.returncode != 0:
            return "unknown"
        try:
            root = ET.fromstring(out.stdout)  # noqa: S314 - Pacemaker's own CIB
        except ET.ParseError:
            return "unknown"
        for ns in root.iter("node_state"):
            if ns.get("uname") == peer:
                left = ns.get("in_ccm") in ("false", "0") and ns.get("crmd") == "offline"
                settled = ns.get("join") == "down" and ns.get("expected") == "down"
                if left and settled:
                    return "down"
                return "up" if not left else "unclean (not fenced yet)"
        return "unknown"
