"""The new cloud as migrate sees it: one database server holding every service's
database, and the neutron settings (ml2 ranges, MTUs) that bound a rewrite.

One connection reaches every service database, so one transaction can change a
nova row, its neutron port binding and its journal entry together.
"""

from __future__ import annotations

import dataclasses
import os
import re
import urllib.parse
from typing import Any

from pacestack.migrate import releases, tables

from pacestack import db, files
from pacestack.errors import ConfigError


@dataclasses.dataclass
class Ml2Settings:
    vlan_ranges: dict[str, list[tuple[int, int]]]  # physnet -> ranges; [] = any VLAN id
    vni_ranges: list[tuple[int, int]]
    flat_networks: list[str]  # '*' = any
    global_physnet_mtu: int = 1500
    path_mtu: int = 0
    overlay_ip_version: int = 4
    source: str = ""
    ovs_create_tap: bool = True  # [OVS_DRIVER] ovs_create_tap (neutron 2026.2's default)

    def vlan_allowed(self, physnet: str, vlan: int) -> bool:
        if physnet not in self.vlan_ranges:
            return False
        ranges = self.vlan_ranges[physnet]
        return not ranges or any(lo <= vlan <= hi for lo, hi in ranges)

    def vni_allowed(self, vni: int) -> bool:
        return any(lo <= vni <= hi for lo, hi in self.vni_ranges)

    def flat_allowed(self, physnet: str) -> bool:
        return "*" in self.flat_networks or physnet in self.flat_networks


def _last(sections, group: str, option: str) -> str | None:
    values = sections.get(group, {}).get(option)
    return values[-1].strip() if values else None


def _int_opt(path: str, sections, group: str, option: str, default: int) -> int:
    raw = _last(sections, group, option)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{path}: [{group}] {option} = {raw!r} is not an integer") from None


def read_ml2(ml2_path: str, neutron_path: str | None = None) -> Ml2Settings:
    """The ranges neutron itself would enforce, from ml2_conf.ini (and neutron.conf MTU)."""
    s = files.read_ini(ml2_path)
    where = f"{ml2_path} [ml2_type_vlan] network_vlan_ranges"
    vlan: dict[str, list[tuple[int, int]]] = {}
    for item in filter(None, (x.strip() for x in (_last(s, "ml2_type_vlan",
                                                         "network_vlan_ranges") or "").split(","))):
        parts = item.split(":")
        try:
            if len(parts) == 1:
                vlan.setdefault(parts[0], [])
            elif len(parts) == 3:
                lo, hi = int(parts[1]), int(parts[2])
                if not 1 <= lo <= hi <= 4094:
                    raise ValueError
                vlan.setdefault(parts[0], []).append((lo, hi))
            else:
                raise ValueError
        except ValueError:
            raise ConfigError(f"{where}: bad range {item!r} (PHYSNET or PHYSNET:MIN:MAX)") \
                from None
    vni: list[tuple[int, int]] = []
    for item in filter(None, (x.strip() for x in (_last(s, "ml2_type_vxlan", "vni_ranges")
                                                   or "").split(","))):
        try:
            lo, hi = (int(x) for x in item.split(":"))
            if not 1 <= lo <= hi <= 2**24 - 1:
                raise ValueError
        except ValueError:
            raise ConfigError(f"{ml2_path} [ml2_type_vxlan] vni_ranges: bad range {item!r}") \
                from None
        vni.append((lo, hi))
    flat = [x.strip() for x in (_last(s, "ml2_type_flat", "flat_networks") or "*").split(",")
            if x.strip()]
    mtu, ipv = 1500, _int_opt(ml2_path, s, "ml2", "overlay_ip_version", 4)
    if neutron_path and os.path.exists(neutron_path):
        n = files.read_ini(neutron_path)
        mtu = _int_opt(neutron_path, n, "DEFAULT", "global_physnet_mtu", 1500)
    create_tap = (_last(s, "OVS_DRIVER", "ovs_create_tap") or "true").lower() \
        not in ("false", "0", "no", "off")
    return Ml2Settings(vlan, vni, flat, mtu, _int_opt(ml2_path, s, "ml2", "path_mtu", 0), ipv,
                       ml2_path, create_tap)


class Cloud:
    """A connection to the server plus the real names of the services' databases."""

    def __init__(self, conn, databases: dict[str, str], ml2: Ml2Settings,
                 server: db.DBUrl, journal_db: str = "pacestack",
                 config_files: dict[str, str] | None = None):
        self.conn = conn
        self.databases = databases
        self.ml2 = ml2
        self.server = server
        self.journal_db = journal_db
        self.config_files = config_files or {}
        # the OpenStack release its databases are at (releases.detect), set by open_cloud
        self.release: releases.Detected | None = None
        # nova's other cells on this server (logical nova_<cell> -> real name), and the
        # cells whose database it does not hold (cell_databases), set by open_cloud
        self.cells: dict[str, str] = {}
        self.cells_elsewhere: list[dict] = []
        self.timeout = 10  # seconds to connect (another connection to the same server)
        self._packing = False  # group_concat_max_len raised for packed_rows

    def nova_databases(self) -> list[str]:
        """Every nova cell database to read and write: the main cell's, then the others."""
        return ["nova", *sorted(self.cells)]

    def t(self, service: str, table: str) -> str:
        """`realdb`.`table` for a whitelisted table (or a journal table)."""
        if service == "journal":
            if table not in ("runs", "checksums", "images"):
                raise ValueError(f"journal.{table} is not a journal table")
            return f"{tables.q(self.journal_db)}.{tables.q(table)}"
        if service not in self.databases or (not tables.whitelisted(service, table) and table
                                             not in _READ_ONLY.get(tables.schema_of(service), ())):
            raise ValueError(f"{service}.{table} is not a known table")
        return f"{tables.q(self.databases[service])}.{tables.q(table)}"

    def sql(self, template: str, cell: str = "nova") -> str:
        """Resolve ``{service.table}`` tokens through the whitelist; nothing else is
        substituted (values go as parameters; an IN list is one tuple parameter).
        ``{nova.table}`` is the table of the nova cell database ``cell``."""
        return _TOKEN.sub(lambda m: self.t(cell if m.group(1) == "nova" else m.group(1),
                                           m.group(2)), template)

    def rows(self, template: str, args: Any = None, cell: str = "nova") -> list[dict]:
        import pymysql.cursors

        with self.conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute(self.sql(template, cell), args)
            return list(cur.fetchall())

    def packed_rows(self, columns: dict[str, str], template: str, order: str,
                    args: list | None = None, select_args: list | None = None,
                    ints: frozenset[str] = frozenset(), cell: str = "nova") -> list[dict]:
        """rows() of ``SELECT <columns> <template> ORDER BY <order>`` (columns: name ->
        expression of text or integer values; ``ints``: the integer ones), packed by the
        server into one value: parsing a result row costs the client ~4 us, most of a
        plan's reads of 50,000 bindings. Read as rows() when the packed value does not fit
        or a value holds a separator."""
        import pymysql

        # each value as text (NULL as ''), which of them were NULL ('0100'), and an end
        # mark: GROUP_CONCAT cuts at group_concat_max_len with only a warning, and a
        # row cut anywhere loses its end mark, so a cut is never read as values
        exprs = [f"IFNULL({e}, '')" for e in columns.values()]
        exprs.append(f"CONCAT({', '.join(f'ISNULL({e})' for e in columns.values())})")
        exprs.append("'.'")
        select_args = select_args or []
        args = args or []
        try:
            with self.conn.cursor() as cur:
                if not self._packing:
                    cur.execute("SET SESSION group_concat_max_len = %s", [PACKED_MAX])
                    self._packing = True
                cur.execute(self.sql(
                    f"SELECT COUNT(*), GROUP_CONCAT(CONCAT_WS(%s, {', '.join(exprs)}) "
                    f"ORDER BY {order} SEPARATOR %s) {template}", cell),
                    [_UNIT, *select_args, *select_args, _RECORD, *args])
                n, packed = cur.fetchone()
        except pymysql.err.OperationalError:  # larger than max_allowed_packet
            n, packed = -1, None
        if n == 0:
            return []
        names = list(columns)
        if isinstance(packed, str) and len(packed) < PACKED_MAX:
            rows = [r.split(_UNIT) for r in packed.split(_RECORD)]
            if len(rows) == n and all(len(r) == len(names) + 2 and r[-1] == "."
                                      and len(r[-2]) == len(names) for r in rows):
                at_int = [i for i, k in enumerate(names) if k in ints]
                out = []
                for r in rows:
                    r.pop()
                    nulls = r.pop()
                    if "1" in nulls:
                        r = [None if f == "1" else v for f, v in zip(nulls, r, strict=True)]
                    for i in at_int:
                        if r[i] is not None:
                            r[i] = int(r[i])
                    out.append(dict(zip(names, r, strict=True)))
                return out
        return self.rows(f"SELECT {', '.join(f'{e} AS {k}' for k, e in columns.items())} "
                         f"{template} ORDER BY {order}", [*select_args, *args], cell)

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - closing a dead connection must not mask the error
            pass


# packed_rows' separators (a value holding one is read back row by row) and its ceiling
_UNIT, _RECORD = "\x1f", "\x1e"
PACKED_MAX = 64 << 20

_TOKEN = re.compile(r"\{(keystone|neutron|cinder|nova(?:_[a-z0-9_]+)?|placement|journal)\.(\w+)\}")

# Tables read (never written) by the planners and verify.
_READ_ONLY = {
    "neutron": (),
    "nova": (),
    "nova_api": (),
    "placement": (),
    "cinder": ("services",),
}


def server_of(urls: dict[str, db.DBUrl]) -> db.DBUrl:
    """The one server (and user) all the service URLs name, or a one-line error."""
    first_name, first = next(iter(urls.items()))
    for name, u in urls.items():
        if (u.host, u.port or 3306, u.unix_socket) != (first.host, first.port or 3306,
                                                       first.unix_socket):
            raise ConfigError(f"the {name} database ({u.endpoint}) is not on the same server "
                              f"as {first_name} ({first.endpoint}); migrate needs one server")
        if u.user != first.user:
            raise ConfigError(f"the {name} and {first_name} databases use different users; set "
                              "[migrate] connection to a user with rights on all of them")
    return first


def cell_databases(cloud) -> tuple[dict[str, str], list[dict]]:
    """nova's cells besides the main one (whose database nova.conf names), found through
    nova_api.cell_mappings, cell0 included: logical name nova_<cell> -> real database;
    and the cell mappings whose database this server does not hold."""
    present = {r["s"] for r in cloud.rows("SELECT schema_name AS s FROM "
                                          "information_schema.schemata")}
    found: dict[str, str] = {}
    elsewhere: list[dict] = []
    for cell in cloud.rows("SELECT name, uuid, database_connection FROM "
                           "{nova_api.cell_mappings} ORDER BY id"):
        try:
            real = urllib.parse.urlsplit(cell["database_connection"] or "").path.lstrip("/")
        except ValueError:
            real = ""
        if real == cloud.databases["nova"]:
            continue
        if not real or real not in present:
            elsewhere.append({"uuid": cell["uuid"], "name": cell["name"], "database": real})
            continue
        label = re.sub(r"[^a-z0-9_]", "_", f"nova_{cell['name'] or cell['uuid']}".lower())
        if label in tables.SERVICE_DATABASES or label in found:  # a cell named "api"
            label = re.sub(r"[^a-z0-9_]", "_", f"nova_{cell['uuid']}".lower())
        found[label] = real
    return found, elsewhere


def _galera_uuid(conn) -> str:
    with conn.cursor() as cur:
        cur.execute("SHOW STATUS LIKE 'wsrep_cluster_state_uuid'")
        row = cur.fetchone()
    return (row[1] if row else "") or ""


def check_same_server(conn, admin: db.DBUrl, urls: dict[str, db.DBUrl],
                      timeout: int = 10) -> None:
    """Refuse an admin connection that reaches another server than the services' URLs.

    Migrate writes through ``[migrate] connection``; pointed at the old controller it
    would rewrite the old cloud, the fallback. A service endpoint spelled like the
    admin's is the same server. Otherwise the service's own credentials reach its
    server, which is the admin's when it sees a lock the admin connection holds
    (another name for one server), or a member of the same Galera cluster.
    """
    others: dict[str, list[str]] = {}
    for name, u in urls.items():
        if (u.host, u.port or 3306, u.unix_socket) != (admin.host, admin.port or 3306,
                                                       admin.unix_socket):
            others.setdefault(u.endpoint, []).append(name)
    if not others:
        return
    lock = f"pacestack.identity.{os.getpid()}.{id(conn)}"
    with conn.cursor() as cur:
        cur.execute("SELECT GET_LOCK(%s, 0)", [lock])
    try:
        admin_cluster = _galera_uuid(conn)
        for endpoint, names in others.items():
            u = urls[names[0]]
            try:
                other = db.connect(u, timeout=timeout, autocommit=True)
            except ConfigError as exc:
                raise ConfigError(f"cannot check that [migrate] connection ({admin.endpoint}) "
                                  f"is the {names[0]} database's server: {exc}") from None
            try:
                with other.cursor() as cur:
                    cur.execute("SELECT IS_USED_LOCK(%s)", [lock])
                    same = cur.fetchone()[0] is not None
                cluster = "" if same else _galera_uuid(other)
            finally:
                other.close()
            if same or (admin_cluster and cluster == admin_cluster):
                continue
            what = (f"Galera cluster {cluster} vs {admin_cluster}" if cluster and admin_cluster
                    else "another server")
            raise ConfigError(
                f"[migrate] connection names {admin.endpoint} but the {', '.join(names)} "
                f"database{'s are' if len(names) > 1 else ' is'} on {endpoint} ({what}): "
                "migrate would rewrite that server, not the services' databases; nothing "
                "changed (--allow-other-server or [migrate] allow_other_server = true if "
                "that is meant)")
    finally:
        with conn.cursor() as cur:
            cur.execute("SELECT RELEASE_LOCK(%s)", [lock])


def _check_databases_exist(conn, server: db.DBUrl, urls: dict[str, db.DBUrl]) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN %s",
                    [tuple(u.database for u in urls.values())])
        present = {r[0] for r in cur.fetchall()}
    for name, u in urls.items():
        if u.database not in present:
            raise ConfigError(f"{u.source}: no database {u.database!r} on {server.endpoint} "
                              f"(the {name} database), or user {server.user!r} may not see it")


def open_cloud(urls: dict[str, str | db.DBUrl], *, ml2_config: str,
               neutron_config: str | None = None, admin_url: str | None = None,
               journal_db: str = "pacestack", timeout: int = 10,
               config_files: dict[str, str] | None = None,
               allow_other_server: bool = False) -> Cloud:
    parsed = {k: (v if isinstance(v, db.DBUrl) else db.parse_url(v, source=f"{k} database URL"))
              for k, v in urls.items()}
    missing = [s for s in tables.SERVICE_DATABASES if s not in parsed]
    if missing:
        raise ConfigError(f"no database URL for {', '.join(missing)}")
    for u in parsed.values():
        if not u.database:
            raise ConfigError(f"{u.source}: names no database")
    server = db.parse_url(admin_url, source="[migrate] connection") if admin_url \
        else server_of(parsed)
    ml2 = read_ml2(ml2_config, neutron_config)
    conn = db.connect(server, database="", timeout=timeout)
    try:
        if admin_url and not allow_other_server:
            check_same_server(conn, server, parsed, timeout)
        _check_databases_exist(conn, server, parsed)
        cloud = Cloud(conn, {k: u.database for k, u in parsed.items()}, ml2, server,
                      journal_db, config_files)
        cloud.timeout = timeout
        cloud.release = releases.detect(cloud)
        cloud.cells, cloud.cells_elsewhere = cell_databases(cloud)
        cloud.databases.update(cloud.cells)
    except BaseException:
        conn.close()
        raise
    return cloud


def open_from_conf(conf, allow_other_server: bool = False) -> Cloud:
    urls = {s: db.service_url(conf, s) for s in tables.SERVICE_DATABASES}
    o = conf.openstack
    files = {"keystone": o.keystone_config, "neutron": o.neutron_config, "ml2": o.ml2_config,
             "cinder": o.cinder_config, "nova": o.nova_config,
             "placement": o.placement_config}
    return open_cloud(urls, ml2_config=o.ml2_config, neutron_config=o.neutron_config,
                      admin_url=conf.migrate.connection, journal_db=conf.migrate.journal_database,
                      timeout=conf.database.connect_timeout, config_files=files,
                      allow_other_server=allow_other_server or conf.migrate.allow_other_server)
