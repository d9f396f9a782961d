"""``ocf:pacestack:galera``: a promotable clone, one instance per controller.

Unpromoted = mariadbd stopped, its last committed position known and published
as a node attribute; Promoted = mariadbd running in the Primary component and
Synced. Who may bootstrap is decided in galera_bootstrap.decide() only; the agent
gathers its inputs (galera_records.py: positions and Primary flags from node
attributes) and carries the decision out (galera_promote.py). This module holds the
topology, the metadata and the other actions. Standard library only (the Promoted
monitor runs every second, through the sh front galera_sh_monitor.py).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping

from pacestack.agents import attributes, galera_cib, ocf
from pacestack.agents.galera_mysqld import (
    HEALTHY_STATES,
    SST_METHOD,
    SST_METHOD_RE,
    Mysqld,
    MysqldError,
    iso_seconds,
    wait,
)
from pacestack.agents.galera_promote import INACTIVE_DEFAULT, Promotion
from pacestack.agents.galera_records import (  # the attribute names galera/ reads too
    ALONE_RECORD_INTERVAL,
    LAST_COMMITTED,
    OVERRIDE,
    OVERRIDE_TTL,
    POSITION,
    PRIMARY,
    RECORD_INTERVAL,
    SST_METHODS,
)
from pacestack.agents.galera_state import Position
from pacestack.agents.galera_topology import (
    Topology,
    parse_cluster_address,
    parse_host_map,
    topology,
)
from pacestack.agents.ocf import Action, OCFError, Parameter

# importable here for galera_sh_monitor.py, galera/ (status, recover) and the tests
__all__ = ["ALONE_RECORD_INTERVAL", "HEALTHY_STATES", "LAST_COMMITTED", "OVERRIDE",
           "OVERRIDE_TTL", "POSITION", "PRIMARY", "RECORD_INTERVAL", "GaleraAgent", "Topology",
           "parse_cluster_address", "parse_host_map", "topology"]


class GaleraAgent(Promotion, ocf.Agent):
    """One action on one node. Mixins, as every part works on the same action's
    parameters, log and CIB snapshot: the records (node attributes, HA_RSCTMP files,
    scores) are galera_records.GaleraRecords, the promote path galera_promote.Promotion
    (built on the records); here the metadata, the configuration, start, stop,
    demote, notify and monitor."""

    name = "galera"
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
        Parameter("wsrep_sst_method",
                  "State transfer method mariadbd is started with (empty: the config's)",
                  "pacestack_rsync (default): MariaDB's own rsync transfer "
                  "(wsrep_sst_rsync does all of it, donor and joiner), whose joiner stops "
                  "waiting as soon as the donor is done instead of polling once a second; "
                  "an IST join is about half a second shorter. Its script ships with this "
                  "agent and is on the PATH of every mariadbd the agent starts. The donor "
                  "runs the method the joiner asks for: each node advertises the methods "
                  "its mariadbd can donate (node attribute <resource>-sst-methods), and "
                  "left at this default a joiner uses rsync unless every Primary member "
                  "advertises pacestack_rsync (e.g. during an upgrade from a version "
                  "without it). A method set here is always used as given. Empty: "
                  "wsrep_sst_method from the config file.", default=SST_METHOD),
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

    def __init__(self, environ: Mapping[str, str] | None = None,
                 action: str | None = None) -> None:
        super().__init__(environ, action)
        # the CIB as gather() read it, for the one decision being made; None: read
        # attribute by attribute (so later reads see this action's own writes)
        self._snap: galera_cib.Snapshot | None = None
        # the mariadbd this promote spawned (None: none yet, or already running): it
        # rewrites its pid file while starting, and the promote must not take that
        # moment for a death
        self._child: int | None = None

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
                      check_defaults_file=p.check_defaults_file,
                      sst_method=p.wsrep_sst_method)

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
        if p.wsrep_sst_method and not SST_METHOD_RE.fullmatch(p.wsrep_sst_method):
            raise OCFError(ocf.ERR_CONFIGURED,
                           f"wsrep_sst_method {p.wsrep_sst_method!r} is not a method name "
                           "(letters, digits, _ and -)")
        if p.sync_timeout <= 0:
            raise OCFError(ocf.ERR_CONFIGURED, "sync_timeout must be positive")
        topo = self.topo
        if p.two_node_mode and (len(topo.members) != 2 or topo.arbitrators):
            raise OCFError(ocf.ERR_CONFIGURED, "two_node_mode needs exactly two data members "
                           f"and no arbitrator (have {len(topo.members)} members, "
                           f"{len(topo.arbitrators)} arbitrators)")
        return ocf.SUCCESS

    # -- actions -----------------------------------------------------------------------
    def start(self) -> int:
        self.validate_all()
        topo = self.topo
        m = self.mysqld
        if m.pid() is not None:
            # running before Pacemaker started us: report it, monitor shows the truth
            self.log.warning("mariadbd already running (pid %s); not touching it", m.pid())
            self.advertise_sst(m)
            self._set_role("unpromoted")
            return ocf.SUCCESS
        found: list[Position] = []

        def place() -> None:
            self._check_volume()
            self.note_death(m)
            found.append(self.detect_position())

        # independent CIB writes and the position (maybe a --wsrep-recover) at once:
        # Pacemaker waits for every action between a failure and the promote
        self._at_once([lambda: self._delete("primary"), place])
        mine = found[0]
        self._check_data_expected(topo, mine)
        self._at_once([lambda: self.advertise_sst(m), lambda: self.publish(mine)])
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
        # independent CIB writes, at once (each a crm_attribute run)
        calls = [lambda: self._delete("primary"), self._forget_view,
                 # whatever starts mariadbd next advertises its own
                 lambda: self._delete(SST_METHODS), lambda: self._score(None)]
        if m.pid() is None:
            self.note_death(m)
            calls.append(lambda: self._delete(POSITION))  # it reports again on start
        else:
            self._delete(POSITION)  # before the shutdown: stale from then on
            if self._shutdown(m):
                self._record_stopped(m)
        self._at_once(calls)
        self._set_role(None)
        return ocf.SUCCESS

    def demote(self) -> int:
        m = self.mysqld
        self._delete(POSITION)  # stale until the recovery below publishes the new one
        if m.pid() is not None:
            self._shutdown(m)
        found: list[Position] = []
        # independent CIB writes and the recovery (a --wsrep-recover after a crash) at once
        self._at_once([lambda: self._delete("primary"), self._forget_view,
                       lambda: found.append(self.detect_position())])
        self._set_role("unpromoted")
        self.publish(found[0])
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

    def notify(self) -> int:
        # after any promote/demote/start/stop the Primary set may have changed:
        # Unpromoted nodes re-score so joiners follow the bootstrap node at once.
        # What returns SUCCESS here without a change, the sh front answers itself
        # (galera_sh_monitor.py): keep the two alike
        meta = self.meta
        if meta.notify_type == "post" and self._role() == "unpromoted" \
                and not self._only_mine(meta) and self.mysqld.pid() is None:
            self.refresh_scores(self.topo)
        elif meta.notify_type == "pre" and meta.notify_operation == "promote" \
                and self._role() == "promoted":
            m = self.mysqld
            # only speed (the joiner's own eviction wait is the safety): a failure
            # here must not fail the notification, which fails the transition
            try:
                inactive = iso_seconds(m.provider_option("evs.inactive_timeout"),
                                       INACTIVE_DEFAULT)
                timeout = meta.timeout_ms / 1000 if meta.timeout_ms else 30.0
                self.see_off(m, meta.promote, max(0.0, min(inactive, timeout - 5.0)))
            except (OSError, subprocess.SubprocessError, MysqldError,
                    attributes.AttributeFailure) as err:
                self.log.warning("cannot see %s's previous incarnation off: %s",
                                 ", ".join(meta.promote), err)
        return ocf.SUCCESS

    def _only_mine(self, meta: ocf.Meta) -> bool:
        """The transition starts, stops, promotes or demotes this node only: its own
        action scored it at its end, and no peer changed, so a re-score would find
        what that one did."""
        acting = {n for op in ("start", "stop", "promote", "demote")
                  for n in meta.notify_unames[op]}
        return acting == {self.node_name}

    def _withdraw_promotion(self) -> None:
        """This node's mariadbd died while Promoted: no promotion score until it has
        recovered. With the score, Pacemaker's recovery plans the instance Promoted
        here again, so what runs with Promoted Galera (the VIP) stays on this node
        through the demote's crash recovery, the stop and the start, refusing every
        connection; without it, the same transition moves the VIP to a Promoted peer.
        The demote re-scores this node once its position is known."""
        try:
            self._score(None)
        except attributes.AttributeFailure as err:  # the failure below still goes out
            self.log.warning("could not withdraw the promotion score: %s", err)

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
                self._withdraw_promotion()
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
            self.note_view(m, status)
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
