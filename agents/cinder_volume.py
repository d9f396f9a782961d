"""``ocf:pacestack:cinder-volume``: one active cinder-volume for the whole
cluster, always reporting under the same host name.

Volumes belong to ``host@backend`` (``controller@rbd``): if the service reported
as ``controller01@rbd`` on one node and ``controller02@rbd`` on the other, every
failover would orphan them. validate-all (and start) read cinder.conf with
oslo.config and refuse a host that is not ``host``, naming file, group and
option, unless ``enforce_host`` lets the agent pass its own small config file
that sets it. monitor checks the process and then, when cinder.conf names a
database, that the ``services`` rows of ``host@backend`` are up (read with
configparser and PyMySQL, both only on that branch: no oslo.config on the
monitor path).
"""

from __future__ import annotations

import os
import time

from pacestack.agents import ocf
from pacestack.agents import service_process as sp
from pacestack.agents.ocf import Action, OCFError, Parameter
from pacestack.agents.openstack_service import (
    PID_DIR,
    SERVICE_PARAMETERS,
    OpenStackServiceAgent,
    plain_options,
    split_list,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

DEFAULT_SERVICE_DOWN_TIME = 60  # cinder's [DEFAULT] service_down_time default


def _cinder_parameters() -> list[Parameter]:
    overrides = {
        "binary": Parameter("binary", "cinder-volume executable", default="/usr/bin/cinder-volume"),
        "config": Parameter("config", "cinder configuration file(s)",
                            "cinder.conf (and further files, separated by spaces or commas), "
                            "each passed as --config-file.", default="/etc/cinder/cinder.conf"),
        "stop_timeout": Parameter("stop_timeout", "Seconds between TERM and KILL on stop",
                                  "cinder-volume finishes running operations on TERM.",
                                  type=int, default=60),
    }
    params = [overrides.get(p.name, p) for p in SERVICE_PARAMETERS]
    return params + [
        Parameter("host", "Host name cinder-volume reports",
                  "The host every controller's cinder-volume reports as: volumes live on "
                  "host@backend, so it must be the same on all nodes.", default="controller"),
        Parameter("backends", "Backends",
                  "Backend names (sections of cinder.conf listed in enabled_backends) this "
                  "service must report; default: all of enabled_backends."),
        Parameter("enforce_host", "Enforce the host name",
                  "When cinder.conf names another host, start cinder-volume with an extra "
                  "config file setting [DEFAULT] host and each backend's backend_host to "
                  "host, instead of refusing.", type=bool, default=False),
        Parameter("check_services", "Check the services table",
                  "monitor checks that host@backend rows in cinder's services table are up "
                  "(when cinder.conf has a [database] connection).", type=bool, default=True),
    ]


class CinderConfig:
    """What the agent needs from cinder.conf: hosts per backend, DB, down time."""

    def __init__(self, default_host: str | None, host_source: str | None,
                 enabled_backends: list[str],
                 backend_hosts: dict[str, tuple[str | None, str | None]],
                 connection: str | None, service_down_time: int) -> None:
        self.default_host = default_host
        self.host_source = host_source  # the file that set [DEFAULT] host
        self.enabled_backends = enabled_backends
        self.backend_hosts = backend_hosts  # backend -> (backend_host, file that set it)
        self.connection = connection
        self.service_down_time = service_down_time


def read_config_oslo(configs: Sequence[str]) -> CinderConfig:
    """cinder.conf as cinder itself reads it (oslo.config): validate/start only."""
    from oslo_config import cfg

    conf = cfg.ConfigOpts()
    conf.register_opts([cfg.StrOpt("host"), cfg.ListOpt("enabled_backends", default=[]),
                        cfg.IntOpt("service_down_time", default=DEFAULT_SERVICE_DOWN_TIME)])
    conf.register_opts([cfg.StrOpt("connection", secret=True)], group="database")
    try:
        conf(args=[], project="cinder", default_config_files=list(configs),
             default_config_dirs=[], use_env=False)
    except cfg.ConfigFileParseError as err:
        raise OCFError(ocf.ERR_CONFIGURED, f"{err.config_file}: cannot parse: {err.msg}") from None
    except (cfg.Error, ValueError) as err:
        raise OCFError(ocf.ERR_CONFIGURED, f"cinder configuration: {err}") from None

    def source(name: str, group: str | None = None) -> str | None:
        try:
            loc = conf.get_location(name, group)
        except (cfg.NoSuchOptError, cfg.NoSuchGroupError):
            return None
        return loc.detail if loc is not None and loc.location == cfg.Locations.user else None

    try:
        backends = list(conf.enabled_backends or [])
        down = conf.service_down_time
    except (cfg.Error, ValueError) as err:
        raise OCFError(ocf.ERR_CONFIGURED, f"cinder configuration: {err}") from None
    hosts: dict[str, tuple[str | None, str | None]] = {}
    for backend in backends:
        conf.register_opts([cfg.StrOpt("backend_host")], group=backend)
        hosts[backend] = (conf[backend].backend_host, source("backend_host", backend))
    return CinderConfig(conf.host, source("host"), backends, hosts,
                        conf.database.connection, down)


def read_config_plain(configs: Sequence[str]) -> CinderConfig:
    """The same facts with configparser (monitor path: no oslo.config). Later
    files override earlier ones, as with oslo.config; [DEFAULT] is a plain
    section here, not a fallback for the others."""
    get = plain_options(configs)
    backends = split_list(get("DEFAULT", "enabled_backends"))
    try:
        down = int(get("DEFAULT", "service_down_time") or DEFAULT_SERVICE_DOWN_TIME)
    except ValueError:
        down = DEFAULT_SERVICE_DOWN_TIME
    return CinderConfig(get("DEFAULT", "host"), None, backends,
                        {b: (get(b, "backend_host"), None) for b in backends},
                        get("database", "connection"), down)


def process_uptime(pid: int) -> float | None:
    """Seconds since the process started (from its kernel start time)."""
    from pacestack import proc

    ticks = proc.start_time(pid)
    try:
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if ticks is None:
        return None
    return uptime - ticks / os.sysconf("SC_CLK_TCK")


class CinderVolumeAgent(OpenStackServiceAgent):
    name = "cinder-volume"
    sh_monitor = False  # its monitor also reads the services rows: Python's
    version = "1.0"
    shortdesc = "cinder-volume, one active instance reporting as one host"
    longdesc = (
        "Runs cinder-volume as exactly one active instance in the cluster so that "
        "after a failover the same services rows (host@backend, e.g. controller@rbd) "
        "keep reporting and volumes stay manageable. validate-all checks with "
        "oslo.config that [DEFAULT] host (or each backend's backend_host) in cinder.conf "
        "equals the host parameter, or, with enforce_host, starts the service with a "
        "small extra config file that sets it. monitor checks the process and the "
        "services rows of host@backend in cinder's database."
    )
    parameters = _cinder_parameters()
    actions = [
        Action("start", 180),
        Action("stop", 180),
        Action("monitor", 60, interval=30),
        Action("validate-all", 60),
    ]

    # -- settings ------------------------------------------------------------------
    @property
    def override_file(self) -> str:
        safe = self.resource.replace(":", "-").replace("/", "_")
        return os.path.join(PID_DIR, f"{safe}-host.conf")

    def backends(self, conf: CinderConfig) -> list[str]:
        return split_list(self.params.backends) or conf.enabled_backends

    def expected_hosts(self, conf: CinderConfig) -> list[str]:
        host = self.params.host
        backends = self.backends(conf)
        return [f"{host}@{b}" for b in backends] if backends else [host]

    def service_argv(self, binary: str) -> list[str]:
        argv = super().service_argv(binary)
        if self.params.enforce_host:
            # last --config-file wins in oslo.config: ours overrides the host
            at = 1 + 2 * len(self.configs)
            argv[at:at] = ["--config-file", self.override_file]
        return argv

    # -- validate ------------------------------------------------------------------
    def validate_all(self) -> int:
        if self.meta.is_clone:
            raise OCFError(ocf.ERR_CONFIGURED, "cinder-volume must run as exactly one "
                           "instance: do not clone it (two would report the same host)")
        super().validate_all()
        if not self.configs:
            raise OCFError(ocf.ERR_CONFIGURED, "config names no cinder.conf")
        conf = read_config_oslo(self.configs)
        self.check_host(conf)
        return ocf.SUCCESS

    def check_host(self, conf: CinderConfig) -> None:
        host = self.params.host
        wanted = self.backends(conf)
        unknown = [b for b in wanted if b not in conf.enabled_backends]
        if unknown:
            raise OCFError(ocf.ERR_CONFIGURED,
                           f"{self.configs[0]}: [DEFAULT] enabled_backends "
                           f"({','.join(conf.enabled_backends) or 'unset'}) lacks backend "
                           f"{unknown[0]!r} named in backends")
        if self.params.enforce_host:
            return
        for backend in wanted:
            backend_host, source = conf.backend_hosts.get(backend, (None, None))
            if backend_host is not None and backend_host != host:
                raise OCFError(ocf.ERR_CONFIGURED,
                               f"{source or self.configs[0]}: [{backend}] backend_host = "
                               f"{backend_host}, but this resource reports as {host!r} "
                               "(fix it, or set enforce_host=true)")
        needs_default = not wanted or any(conf.backend_hosts.get(b, (None,))[0] is None
                                          for b in wanted)
        if needs_default and conf.default_host != host:
            where = conf.host_source or self.configs[0]
            if conf.default_host is None:
                import socket

                raise OCFError(ocf.ERR_CONFIGURED,
                               f"{where}: [DEFAULT] host is not set (cinder would report as "
                               f"{socket.gethostname()!r}), but this resource reports as "
                               f"{host!r} (set it, or set enforce_host=true)")
            raise OCFError(ocf.ERR_CONFIGURED,
                           f"{where}: [DEFAULT] host = {conf.default_host}, but this resource "
                           f"reports as {host!r} (fix it, or set enforce_host=true)")

    # -- start ---------------------------------------------------------------------
    def before_start(self) -> None:
        if self.params.enforce_host:
            conf = read_config_oslo(self.configs)
            lines = ["# written by ocf:pacestack:cinder-volume (enforce_host=true)",
                     "[DEFAULT]", f"host = {self.params.host}", ""]
            for backend in self.backends(conf):
                lines += [f"[{backend}]", f"backend_host = {self.params.host}", ""]
            os.makedirs(PID_DIR, exist_ok=True)
            tmp = self.override_file + ".tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write("\n".join(lines))
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.override_file)
            self.log.info(f"cinder-volume will report as {self.params.host} "
                          f"(override {self.override_file})")

    def start(self) -> int:
        rc = super().start()
        if rc != ocf.SUCCESS or not self.params.check_services:
            return rc
        # started means: every host@backend row heartbeats from this process
        deadline = time.monotonic() + self.op_seconds(180) - 1.0
        delay = 0.5
        while True:
            rc, reason = self.services_state(fresh_since_start=True)
            if rc == ocf.SUCCESS:
                return rc
            if rc == ocf.ERR_CONFIGURED or time.monotonic() >= deadline:
                raise OCFError(rc if rc == ocf.ERR_CONFIGURED else ocf.ERR_GENERIC,
                               f"cinder-volume started but {reason}")
            st = self.state()
            if not st.running:
                raise OCFError(ocf.ERR_GENERIC, f"cinder-volume exited during start: "
                               f"{sp.tail(self.params.log, self.log_id) or st.detail}")
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)

    def stop(self) -> int:
        rc = super().stop()
        if rc == ocf.SUCCESS:
            try:
                os.unlink(self.override_file)
            except FileNotFoundError:
                pass
        return rc

    # -- monitor ---------------------------------------------------------------------
    def identity_configs(self) -> list[str]:
        return self.configs

    def monitor_extra(self) -> int:
        if not self.params.check_services:
            return ocf.SUCCESS
        rc, reason = self.services_state(fresh_since_start=False)
        if rc != ocf.SUCCESS:
            raise OCFError(rc, reason)
        return ocf.SUCCESS

    def services_state(self, fresh_since_start: bool) -> tuple[int, str]:
        """(OCF code, reason) from cinder's services table; SUCCESS when the DB
        is not configured or not reachable (a DB outage is not a cinder failure)."""
        conf = read_config_plain(self.configs)
        if not conf.connection:
            return ocf.SUCCESS, "no [database] connection"
        from pacestack import db
        from pacestack.errors import PacestackError

        try:
            url = db.parse_url(conf.connection, source=f"{self.configs[0]} [database] connection")
            conn = db.connect(url, timeout=max(1, self.params.monitor_timeout))
        except PacestackError as err:
            self.log.warning(f"cannot check cinder's services rows: {err}")
            return ocf.SUCCESS, str(err)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT host, TIMESTAMPDIFF(SECOND, COALESCE(updated_at, created_at), "
                    "UTC_TIMESTAMP()) FROM services "
                    "WHERE `binary` = 'cinder-volume' AND deleted = 0")
                rows = {host: age for host, age in cur.fetchall()}
        except Exception as err:  # noqa: BLE001 - pymysql errors: not worth failing over
            self.log.warning(f"cannot read cinder's services rows: {err}")
            return ocf.SUCCESS, str(err)
        finally:
            conn.close()
        st = self.state()
        uptime = process_uptime(st.pid) if st.pid else None
        down = conf.service_down_time
        # a row of this node's own name heartbeating while we run: cinder-volume
        # (ours or another one) reports under the wrong host
        backends = self.backends(conf)
        own_names = {self.node_name, os.uname().nodename} - {self.params.host}
        for name in sorted(own_names):
            for host in ([f"{name}@{b}" for b in backends] if backends else [name]):
                age = rows.get(host)
                if age is not None and age <= down and uptime is not None and age + 1 <= uptime:
                    return (ocf.ERR_CONFIGURED,
                            f"cinder-volume reports as {host} from this node while it should "
                            f"report as {self.params.host}: misconfiguration")
        for host in self.expected_hosts(conf):
            age = rows.get(host)
            if age is None:
                return ocf.ERR_GENERIC, f"no services row for cinder-volume {host}"
            if age > down:
                return (ocf.ERR_GENERIC, f"cinder-volume {host} last reported {age}s ago "
                        f"(service_down_time {down}s)")
            # DATETIME holds whole seconds: the age is truncated, so a row is newer
            # than our process only when age + 1 <= uptime
            if fresh_since_start and (uptime is None or age + 1 > uptime):
                return (ocf.ERR_GENERIC,
                        f"cinder-volume {host} has not reported since it started")
        return ocf.SUCCESS, "services up"
