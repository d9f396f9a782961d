"""``ocf:pacestack:galera``: a promotable clone, one instance per controller.

Unpromoted = mariadbd stopped, its last committed position known and published
as a node attribute; Promoted = mariadbd running in the Primary component and
Synced. Who may bootstrap is decided in galera_bootstrap.decide() only; this
module gathers its inputs (positions and Primary flags from node attributes) and
carries the decision out. Standard library only (the Promoted monitor runs every
second, through the sh front galera_sh_monitor.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections import namedtuple
from collections.abc import Callable

from pacestack.agents import attributes, galera_cib, ocf
from pacestack.agents.galera_bootstrap import (
    BOOTSTRAP,
    JOIN,
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
from pacestack.agents.galera_mysqld import Mysqld, MysqldError, iso_seconds, wait
from pacestack.agents.galera_state import (
    Position,
    StateError,
    format_recorded,
    format_report,
    lacks_uuid,
    parse_recorded,
    parse_report,
    read_grastate,
    restore_uuid,
    set_safe_to_bootstrap,
    write_grastate,
)
from pacestack.agents.ocf import Action, OCFError, Parameter

from pacestack import proc

HEALTHY_STATES = ("Synced", "Donor/Desynced", "Donor", "Desynced")
# node attributes (prefixed with the resource id, e.g. galera-position)
POSITION = "position"            # reboot: the stopped node's position, UUID:SEQNO:SOURCE
PRIMARY = "primary"              # reboot: 1 while Promoted (Primary and Synced)
LAST_COMMITTED = "last-committed"  # forever: highest UUID:SEQNO:EPOCH this node reported
OVERRIDE = "bootstrap-override"  # reboot: an operator's bootstrap decision (galera recover)
INCARNATION = "incarnation"      # forever: NODE_UUID BOOT_ID of the last promoted mariadbd
OVERRIDE_TTL = 3600              # seconds an unused override stays valid
# a Promoted node records its last committed seqno (a CIB write) when it changed and:
# its view changed, it holds the newest commits without a data peer, or this long passed
RECORD_INTERVAL = 60
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
# Galera's own default for evs.inactive_timeout when the config does not set it
INACTIVE_DEFAULT = 15.0
# seconds of the promote timeout the eviction wait always leaves to the join itself
JOIN_RESERVE = 30.0


class Topology(namedtuple("Topology", "members addresses arbitrators")):
    """members: Pacemaker node names of the data members; addresses: member -> gcomm
    address; arbitrators: gcomm addresses that are no member (garbd)."""

    __slots__ = ()


def parse_cluster_address(text: str) -> list[str]:
    """``gcomm://a,b:4567,c`` → ['a', 'b:4567', 'c'] (options after '?' dropped)."""
    text = text.strip()
    if not text.startswith("gcomm://"):
        raise ValueError(f"wsrep_cluster_address {text[:80]!r} does not start with gcomm://")
    hosts = text[len("gcomm://"):].split("?", 1)[0]
    items = [h.strip() for h in hosts.split(",")]
    if not hosts or any(not h or not re.fullmatch(r"[A-Za-z0-9_.\-\[\]:]+", h) for h in items):
        raise ValueError(f"wsrep_cluster_address {text[:80]!r} lists no valid hosts")
    if len(set(items)) != len(items):
        raise ValueError(f"wsrep_cluster_address {text[:80]!r} lists a host twice")
    return items


def parse_host_map(text: str) -> dict[str, str]:
    """``controller01:10.0.0.11;controller02:10.0.0.12`` → {node: address}."""
    out: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in text.split(";"))):
        node, sep, addr = entry.partition(":")
        node, addr = node.strip(), addr.strip()
        if not sep or not node or not addr:
            raise ValueError(f"cluster_host_map entry {entry[:60]!r} is not node:address")
        if node in out:
            raise ValueError(f"cluster_host_map names {node} twice")
        out[node] = addr
    return out


def topology(cluster_address: str, host_map: str, me: str) -> Topology:
    """Members and arbitrators from the parameters; ValueError names what is wrong."""
    hosts = parse_cluster_address(cluster_address)
    mapping = parse_host_map(host_map) if host_map.strip() else {h: h for h in hosts}
    if me not in mapping:
        raise ValueError(f"this node {me} is not in cluster_host_map "
                         f"({', '.join(sorted(mapping)) or 'empty'})")
    unknown = [f"{n}={a}" for n, a in mapping.items() if a not in hosts]
    if unknown:
        raise ValueError(f"cluster_host_map addresses {', '.join(unknown)} are not in "
                         "wsrep_cluster_address")
    mapped = set(mapping.values())
    return Topology(tuple(sorted(mapping)), mapping,
                    tuple(h for h in hosts if h not in mapped))


def _all_at_once(calls) -> None:
    """Run the callables in parallel threads; the first exception is raised once all
    have finished (none is left running behind the action's back)."""
    from concurrent.futures import ThreadPoolExecutor  # promote only

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(c) for c in calls]
    for f in futures:
        f.result()


def boot_id() -> str | None:
    """The kernel's identity of this boot: a process of another boot is dead."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def _text(path: str) -> str:
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read()
    except (OSError, ValueError):
        return ""


class GaleraAgent(ocf.Agent):
    name = "galera"
    _snap: galera_cib.Snapshot | None = None  # the CIB as gather() read it (one decision)
    version = "1.0"
    shortdesc = "Galera (MariaDB) as a promotable clone that never bootstraps from a node behind"
    longdesc = (
        "Manages one MariaDB Galera member per node. Unpromoted: mariadbd is stopped and "
        "the node's last committed position (grastate.dat, or --wsrep-recover) is "
        "published as a node attribute. Promote joins an existing Primary component by "
        "IST where possible, or bootstraps a new one only from the most advanced of all "
        "configured members once every member has reported and all share one cluster "
        "UUID; otherwise it waits and logs whom it waits for. Promoted means Primary and "
        "Synced (Donor/Desynced count as healthy).")
    parameters = [
        Parameter("config", "MariaDB configuration file (passed first as --defaults-file)",
                  default="/etc/mysql/my.cnf"),
        Parameter("binary", "mariadbd executable", default="/usr/sbin/mariadbd"),
        Parameter("datadir", "Data directory", default="/var/lib/mysql"),
        Parameter("datadir_mount", "Mount point the data directory must be on",
                  "When the data lives on its own volume (e.g. /var/lib/mysql), the node "
                  "refuses to start unless that path is a mount point, so an unmounted "
                  "volume is never taken for an empty datadir.", default=""),
        Parameter("socket", "Unix socket of the local server", default="/run/mysqld/mysqld.sock"),
        Parameter("pid", "PID file of the local server", default="/run/mysqld/mysqld.pid"),
        Parameter("log", "Error log (absolute path)", default="/var/log/mysql/error.log"),
        Parameter("user", "User mariadbd runs as", default="mysql"),
        Parameter("group", "Group owning the data directory", default="mysql"),
        Parameter("wsrep_cluster_address",
                  "gcomm:// list of the Galera members (may include an arbitrator)",
                  "The Galera cluster address, e.g. gcomm://10.0.0.11,10.0.0.12,10.0.0.13. "
                  "Addresses not named in cluster_host_map are arbitrators (garbd).",
                  required=True),
        Parameter("cluster_host_map", "Pacemaker node name to Galera address",
                  "controller01:10.0.0.11;controller02:10.0.0.12. Without it, the hosts of "
                  "wsrep_cluster_address must be the Pacemaker node names.", default=""),
        Parameter("two_node_mode", "Two data nodes without arbitrator",
                  "A survivor whose peer Pacemaker reports down (fenced) regains Primary "
                  "with pc.bootstrap. Off: it refuses and says so.", type=bool,
                  default=False),
        Parameter("sync_timeout", "Seconds a promote waits for the node to be Synced",
                  type=int, default=600),
        Parameter("check_defaults_file",
                  "Client credentials file for the monitor (default: local socket as root, "
                  "so no password lives in the CIB)", default=""),
    ]
    actions = [
        Action("start", 120),
        Action("stop", 120),
        Action("promote", 300),
        Action("demote", 120),
        Action("monitor", 30, interval=20, role="Unpromoted"),
        # every second: a killed mariadbd is noticed within 1 s instead of 10, and the
        # healthy case costs one status query (galera_sh_monitor.py). The restart
        # joins under a new Galera identity (Mysqld.forget_view) and only once the
        # peers have evicted the old one (GaleraAgent._await_eviction).
        Action("monitor", 30, interval=1, role="Promoted"),
        Action("monitor", 30, interval=0),
        Action("notify", 30),
        Action("validate-all", 20),
    ]

    # -- configuration -----------------------------------------------------------------
    @property
    def base(self) -> str:
        return self.resource.split(":", 1)[0]

    @property
    def mysqld(self) -> Mysqld:
        p = self.params
        return Mysqld(binary=p.binary, config=p.config, datadir=p.datadir, socket=p.socket,
                      pid_file=p.pid, log=p.log, user=p.user, group=p.group,
                      cluster_address=p.wsrep_cluster_address,
                      check_defaults_file=p.check_defaults_file)

    @property
    def topo(self) -> Topology:
        try:
            return topology(self.params.wsrep_cluster_address, self.params.cluster_host_map,
                            self.node_name)
        except ValueError as err:
            raise OCFError(ocf.ERR_CONFIGURED, str(err)) from None

    def validate_all(self) -> int:
        p = self.params
        if not os.access(p.binary, os.X_OK):
            raise OCFError(ocf.ERR_INSTALLED, f"binary {p.binary} is not an executable")
        if not os.path.isfile(p.config):
            raise OCFError(ocf.ERR_CONFIGURED, f"config {p.config} does not exist")
        if not os.path.isabs(p.log):
            raise OCFError(ocf.ERR_CONFIGURED, f"log {p.log} is not an absolute path")
        if p.check_defaults_file and not os.path.isfile(p.check_defaults_file):
            raise OCFError(ocf.ERR_CONFIGURED,
                           f"check_defaults_file {p.check_defaults_file} does not exist")
        if p.datadir_mount and not os.path.isabs(p.datadir_mount):
            raise OCFError(ocf.ERR_CONFIGURED,
                           f"datadir_mount {p.datadir_mount} is not an absolute path")
        if p.sync_timeout <= 0:
            raise OCFError(ocf.ERR_CONFIGURED, "sync_timeout must be positive")
        topo = self.topo
        if p.two_node_mode and (len(topo.members) != 2 or topo.arbitrators):
            raise OCFError(ocf.ERR_CONFIGURED, "two_node_mode needs exactly two data members "
                           f"and no arbitrator (have {len(topo.members)} members, "
                           f"{len(topo.arbitrators)} arbitrators)")
        return ocf.SUCCESS

    # -- node attributes ---------------------------------------------------------------
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

    def _read(self, what: str, node: str, lifetime: str = "reboot") -> str | None:
        """An attribute as of the snapshot gather() took, crm_attribute without one."""
        if self._snap is not None:
            return self._snap.get(self._attr(what), node, lifetime)
        return self._get(what, node, lifetime)

    # -- the operator's bootstrap override (pacestack galera recover) --------------------
    def records(self, topo: Topology) -> dict[str, Position | None]:
        """Every member's persistent last-committed record (as of gather()'s snapshot)."""
        return {m: self.recorded(m) for m in topo.members}

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

    def record_running(self, status: dict[str, str], force: bool = False) -> None:
        """Monitor of a Promoted node: record wsrep_last_committed when it moved and the
        view changed, this node is the only data member left, or RECORD_INTERVAL passed.
        A file in HA_RSCTMP remembers the last record (no CIB read per monitor)."""
        try:
            pos = Position(status["wsrep_cluster_state_uuid"],
                           int(status["wsrep_last_committed"]), "running")
            size = int(status.get("wsrep_cluster_size", "0"))
        except (KeyError, ValueError):
            return
        try:
            with open(self._record_file(), encoding="ascii") as fh:
                uuid, seqno, old_size, _wall, at = fh.read().split()[:5]
            last = (uuid, int(seqno), int(old_size), float(at))
        except (OSError, ValueError):
            last = None
        # the boot clock: wall-clock steps neither delay nor hurry a record, and the sh
        # front (galera_sh_monitor.py) reads the same clock from /proc/uptime
        now = time.clock_gettime(time.CLOCK_BOOTTIME)
        if last is not None and last[:2] == (pos.uuid, pos.seqno) and not force:
            return
        alone_size = 1 + len(self.topo.arbitrators)
        if last is not None and last[2] == size and size > alone_size and not force and \
                now - last[3] < RECORD_INTERVAL:
            return
        try:
            self.record(pos)
        except attributes.AttributeFailure as err:
            self.log.warning("cannot record last committed position: %s", err)
            return
        # the sh front skips Python only while this says no record is due
        with open(self._record_file(), "w", encoding="ascii") as fh:
            fh.write(f"{pos.uuid} {pos.seqno} {size} {time.time()} {now} {alone_size}\n")

    # -- the role marker (Unpromoted = started with mariadbd stopped) --------------------
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

    # -- positions ----------------------------------------------------------------------
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

    # -- actions -----------------------------------------------------------------------
    def start(self) -> int:
        self.validate_all()
        topo = self.topo
        m = self.mysqld
        if m.pid() is not None:
            # running before Pacemaker started us: report it, monitor shows the truth
            self.log.warning("mariadbd already running (pid %s); not touching it", m.pid())
            self._set_role("unpromoted")
            return ocf.SUCCESS
        self._delete("primary")
        self._check_volume()
        self.note_death(m)
        mine = self.detect_position()
        self._check_data_expected(topo, mine)
        self.publish(mine)
        self._set_role("unpromoted")
        decision = self.refresh_scores(topo)
        self.log.info("started unpromoted; promote would: %s", decision)
        return ocf.SUCCESS

    def _check_volume(self) -> None:
        """A missing datadir or an unmounted data volume fails this node (never
        taken for an empty datadir that a new cluster may be initialised in)."""
        p = self.params
        if not os.path.isdir(p.datadir):
            raise OCFError(ocf.ERR_INSTALLED, f"datadir {p.datadir} does not exist")
        if p.datadir_mount:
            if not os.path.ismount(p.datadir_mount):
                raise OCFError(ocf.ERR_INSTALLED,
                               f"datadir_mount {p.datadir_mount} is not mounted")
            inside = os.path.realpath(p.datadir) + os.sep
            if not inside.startswith(os.path.realpath(p.datadir_mount).rstrip(os.sep) + os.sep):
                raise OCFError(ocf.ERR_CONFIGURED, f"datadir {p.datadir} is not on "
                                                   f"datadir_mount {p.datadir_mount}")

    def _check_data_expected(self, topo: Topology, mine: Position) -> None:
        """No data here although this node recorded a Galera history: unless a Primary
        runs (an SST refills it), the data is somewhere this node cannot see."""
        if not mine.empty:
            return
        rec = self.recorded(self.node_name)
        if rec is None or rec.empty:
            return
        _, primary = self.gather(topo)
        self._snap = None
        if any(p != self.node_name for p in primary):
            return
        raise OCFError(ocf.ERR_INSTALLED,
                       f"datadir {self.params.datadir} holds no database, but this node "
                       f"recorded Galera history {rec}: is its data volume mounted? (to "
                       "re-seed it by SST, start it while a Primary component runs, or "
                       f"delete its {self._attr(LAST_COMMITTED)} attribute)")

    def stop(self) -> int:
        m = self.mysqld
        self._delete(POSITION)  # a stopped member reports again when it starts
        if m.pid() is None:
            self.note_death(m)
        elif self._shutdown(m):
            self._record_stopped(m)
        self._delete("primary")
        self._score(None)
        self._set_role(None)
        return ocf.SUCCESS

    def demote(self) -> int:
        m = self.mysqld
        self._delete(POSITION)  # stale until the recovery below publishes the new one
        if m.pid() is not None:
            self._shutdown(m)
        self._delete("primary")
        self._set_role("unpromoted")
        self.publish(self.detect_position())
        self.refresh_scores(self.topo)
        return ocf.SUCCESS

    def _shutdown(self, m: Mysqld) -> bool:
        budget = max(5.0, self.meta.timeout_ms / 1000 - 10) if self.meta.timeout_ms else 110.0
        pid = m.pid()
        if m.stop(budget):
            self.log.info("mariadbd (pid %s) shut down cleanly", pid)
            return True
        self.log.warning("mariadbd (pid %s) ignored SIGTERM for %.0fs: killed", pid, budget)
        return False

    def _record_stopped(self, m: Mysqld) -> None:
        """A clean shutdown wrote the final seqno to grastate.dat: record it."""
        try:
            state = read_grastate(m.grastate_path())
            if state is not None:
                self.record(Position(state.uuid, state.seqno, "grastate"))
        except (StateError, attributes.AttributeFailure) as err:
            self.log.warning("cannot record the final position: %s", err)

    def notify(self) -> int:
        # after any promote/demote/start/stop the Primary set may have changed:
        # Unpromoted nodes re-score so joiners follow the bootstrap node at once
        if self.meta.notify_type == "post" and self._role() == "unpromoted" \
                and self.mysqld.pid() is None:
            self.refresh_scores(self.topo)
        return ocf.SUCCESS

    def promote(self) -> int:
        self.validate_all()
        topo = self.topo
        m = self.mysqld
        started = time.monotonic()
        timeout = self.meta.timeout_ms / 1000 if self.meta.timeout_ms else 300.0
        deadline = started + max(1.0, timeout - min(20.0, timeout * 0.2))
        if m.pid() is not None:
            return self._finish_promote(m, deadline)
        # the first decision reuses the CIB read that found this node's own report
        first = galera_cib.read(self.environ)
        mine = self._my_report(first)
        last = ""
        while True:
            reports, primary = self.gather(topo, first)
            first = None
            reports[self.node_name] = mine
            records = self.records(topo)
            ovr = self.override(topo, reports, primary, records)
            self._snap = None  # later reads see this action's own writes
            decision = decide(topo.members, reports, primary, self.node_name, ovr, records)
            if decision.kind == JOIN:
                self.log.info("promote: %s", decision)
                return self._join(m, mine, decision, deadline)
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
        self.log.info("waiting %.1fs (evs.inactive_timeout %.1fs, %s) for the peers to evict "
                      "the previous incarnation %s before joining", wait_s, inactive, why, old)
        time.sleep(wait_s)

    def _bootstrap(self, m: Mysqld, mine: Position, deadline: float) -> int:
        if not m.has_data():
            m.initialise()
        try:
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
        child = getattr(self, "_child", None)

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
        # the CIB updates are independent of each other: one read, then all at once
        # (one after another they were ~1-2 s of every promote on a loaded node)
        snap = self._snap = galera_cib.read(self.environ)
        try:
            _all_at_once([
                lambda: self._set(PRIMARY, "1"),
                # a running node's position moves: wsrep_last_committed
                lambda: self._delete(POSITION),
                # a new member of the Primary: on record now
                lambda: self.record_running(seen, force=True),
                lambda: self._score(promotion_score(Decision(JOIN, "")), seen=snap),
                lambda: self._score_joiners(snap),
                lambda: self._record_incarnation(seen),
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
        if wait(merged, max(0.0, budget), SYNC_POLL):
            self.log.info("arbitrator %s joined the new Primary component after %.1fs",
                          ", ".join(arbs), time.monotonic() - started)
        else:
            self.log.warning("arbitrator %s not in the new Primary component after %.1fs "
                             "(cluster size %s): announcing it without", ", ".join(arbs),
                             time.monotonic() - started, seen.get("wsrep_cluster_size", "?"))

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

    def _death_reason(self, m: Mysqld) -> str:
        tail = m.log_tail()
        if "Reversing history" in tail:
            return "Galera aborted: 'Reversing history' (this node is ahead of the cluster)"
        errors = [ln for ln in tail.splitlines() if "[ERROR]" in ln]
        return errors[-1].split("[ERROR]", 1)[1].strip()[:200] if errors else "see " + m.log

    def monitor(self) -> int:
        m = self.mysqld
        pid = m.pid()
        role = self._role()
        if pid is None:
            self.note_death(m)
            if role == "promoted":
                raise OCFError(ocf.ERR_GENERIC, f"mariadbd is not running: "
                                                f"{self._death_reason(m)}")
            if role == "unpromoted":
                if not self.is_probe:
                    self.refresh_scores(self.topo)
                return ocf.SUCCESS
            return ocf.NOT_RUNNING
        try:
            status = m.status()
        except MysqldError as err:
            raise OCFError(ocf.ERR_GENERIC, str(err)) from None
        if status.get("wsrep_cluster_status") != "Primary":
            return self._not_primary(m, status)
        if role == "promoted":
            self.record_running(status)
        state = status.get("wsrep_local_state_comment", "")
        if state not in HEALTHY_STATES:
            # Joined is a moment between Donor and Synced: give it a few seconds
            if wait(lambda: m.status().get("wsrep_local_state_comment") in HEALTHY_STATES,
                    5.0, 0.25):
                return ocf.RUNNING_PROMOTED
            return self._fail_promoted(f"Primary but local state is {state}, not Synced")
        return ocf.RUNNING_PROMOTED

    def _fail_promoted(self, reason: str) -> int:
        self.exit_reason(reason)
        return ocf.FAILED_PROMOTED

    def _not_primary(self, m: Mysqld, status: dict[str, str]) -> int:
        topo = self.topo
        cluster = status.get("wsrep_cluster_status", "?")
        if topo.arbitrators or len(topo.members) != 2:
            return self._fail_promoted(f"cluster status {cluster}, not Primary")
        peer = next(n for n in topo.members if n != self.node_name)
        if not self.params.two_node_mode:
            return self._fail_promoted(f"cluster status {cluster}, not Primary: {peer} is "
                                       "unreachable and two_node_mode is off (no arbitrator)")
        state = self.peer_state(peer)
        if state != "down":
            return self._fail_promoted(f"cluster status {cluster}, not Primary: refusing "
                                       f"pc.bootstrap while {peer} is {state} to Pacemaker")
        self.log.warning("two_node_mode: %s is down (fenced); regaining Primary", peer)
        try:
            m.set_provider_option("pc.bootstrap=YES")
        except MysqldError as err:
            return self._fail_promoted(str(err))
        if wait(lambda: m.status().get("wsrep_cluster_status") == "Primary", 10.0, 0.2):
            return ocf.RUNNING_PROMOTED
        return self._fail_promoted("pc.bootstrap did not bring back a Primary component")

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
