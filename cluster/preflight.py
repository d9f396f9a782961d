"""Preflight: is this node (and its peer) ready for the described cluster?

Each check returns findings naming the file and option they are about. The
peer's files come from a directory holding a copy of them (``peer_root``) or over
ssh (``peer_host``); this node's from ``root`` (default ``/``).
"""

from __future__ import annotations

import configparser
import dataclasses
import glob
import hashlib
import ipaddress
import os
import re
import shlex
import socket
import subprocess
from urllib.parse import urlsplit

from pacestack.cluster import cib
from pacestack.cluster.description import Description

from pacestack import codes
from pacestack.errors import ConfigError, PacestackError
from pacestack.findings import Finding

CINDER_CONF = "etc/cinder/cinder.conf"
KEYSTONE_CONF = "etc/keystone/keystone.conf"
KEY_DIRS = ("etc/keystone/fernet-keys", "etc/keystone/credential-keys")
COROSYNC_CONF = "etc/corosync/corosync.conf"
GALERA_GLOBS = ("etc/mysql/my.cnf", "etc/mysql/mariadb.cnf", "etc/mysql/conf.d/*.cnf",
                "etc/mysql/mariadb.conf.d/*.cnf")
GALERA_SECTIONS = ("mysqld", "mariadb", "galera", "server")
GALERA_OPTIONS = ("wsrep_cluster_name", "wsrep_cluster_address", "wsrep_sst_method")


@dataclasses.dataclass
class Inputs:
    node: str | None = None
    peer: str | None = None
    peer_host: str | None = None  # read the peer's files over ssh
    root: str = "/"
    peer_root: str | None = None  # or from a copy of them
    corosync_conf: str | None = None
    cib_file: str | None = None
    skip_database: bool = False


class Files:
    """A node's files: local under a root directory, or over ssh."""

    def __init__(self, label: str, root: str | None = None, host: str | None = None):
        self.label, self.root, self.host = label, root, host

    def path(self, rel: str) -> str:
        return os.path.join(self.root or "/", rel) if self.host is None else f"{self.host}:/{rel}"

    def _ssh(self, command: str) -> str | None:
        proc = subprocess.run(["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
                               "--", self.host or "", command], capture_output=True, text=True,
                              timeout=60, check=False)
        return proc.stdout if proc.returncode == 0 else None

    def read(self, rel: str) -> str | None:
        if self.host is not None:
            return self._ssh(f"cat -- {shlex.quote('/' + rel)}")
        try:
            with open(self.path(rel), encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError:
            return None

    def ini(self, rel: str) -> configparser.ConfigParser | None:
        """The file parsed as an INI file; None when it is absent or does not parse."""
        text = self.read(rel)
        if text is None:
            return None
        try:
            return _ini(text)
        except configparser.Error:
            return None

    def glob(self, pattern: str) -> list[str]:
        if self.host is not None:
            out = self._ssh(f"ls -1d /{pattern} 2>/dev/null") or ""
            return [ln.lstrip("/") for ln in out.splitlines() if ln.strip()]
        root = self.root or "/"
        return sorted(os.path.relpath(p, root) for p in glob.glob(os.path.join(root, pattern)))

    def digests(self, rel: str) -> dict[str, str] | None:
        """File name -> sha256 of every file in a directory (None: no directory)."""
        if self.host is not None:
            out = self._ssh(f"cd -- {shlex.quote('/' + rel)} && sha256sum -- *")
            if out is None:
                return None
            return {ln.split(None, 1)[1].strip().lstrip("*"): ln.split(None, 1)[0]
                    for ln in out.splitlines() if ln.strip()}
        path = self.path(rel)
        if not os.path.isdir(path):
            return None
        out = {}
        for name in sorted(os.listdir(path)):
            with open(os.path.join(path, name), "rb") as fh:
                out[name] = hashlib.sha256(fh.read()).hexdigest()
        return out


def _ini(text: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(allow_no_value=True, strict=False, interpolation=None)
    cp.read_string(text)
    return cp


def check_cinder_host(desc: Description, nodes: list[Files]) -> list[Finding]:
    out, seen = [], {}
    for f in nodes:
        text = f.read(CINDER_CONF)
        subject = f"{f.path(CINDER_CONF)} [DEFAULT] host"
        if text is None:
            out.append(codes.CINDER_CONF_MISSING(f.path(CINDER_CONF), node=f.label))
            continue
        host = _ini(text).get("DEFAULT", "host", fallback=None)
        seen[f.label] = host
        if host != desc.shared_host:
            out.append(codes.CINDER_HOST_MISMATCH(subject, node=f.label, host=host,
                                                  shared=desc.shared_host))
    if len(set(seen.values())) > 1:
        out.append(codes.CINDER_HOST_DIFFERS(f"{CINDER_CONF} [DEFAULT] host",
                                             hosts=[f"{k}={v!r}" for k, v in seen.items()]))
    return out


def check_keystone_keys(nodes: list[Files]) -> list[Finding]:
    out = []
    for rel in KEY_DIRS:
        sets = {}
        for f in nodes:
            digests = f.digests(rel)
            if not digests:
                out.append(codes.KEYSTONE_KEYS_MISSING(f.path(rel), node=f.label,
                                                       directory=rel))
                continue
            sets[f.label] = digests
        if len(sets) == len(nodes) and len({tuple(sorted(d.items())) for d in sets.values()}) > 1:
            a, b = list(sets.values())[:2]
            differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            out.append(codes.KEYSTONE_KEYS_DIFFER(f"/{rel}", directory=rel, nodes=list(sets),
                                                  keys=differ))
    return out


def check_endpoints(desc: Description, node: Files) -> list[Finding]:
    from pacestack import db  # only this check needs a database driver

    path = node.path(KEYSTONE_CONF)
    try:
        url = db.url_from_service_config(path)
        conn = db.connect(url, timeout=10)
    except PacestackError as exc:
        return [codes.KEYSTONE_DB_UNREACHABLE(f"{path} [database] connection",
                                              error=str(exc))]
    import pymysql

    try:
        with conn.cursor() as cur:
            cur.execute("SELECT e.id, e.interface, e.url, s.type FROM endpoint e "
                        "JOIN service s ON s.id = e.service_id ORDER BY s.type, e.interface")
            rows = cur.fetchall()
    except pymysql.err.Error as exc:
        # not Keystone's schema, or the server went away: say which, as a finding
        code = exc.args[0] if exc.args else "?"
        text = " ".join(str(exc.args[1] if len(exc.args) > 1 else exc).split())[:200]
        return [codes.KEYSTONE_DB_UNREADABLE(f"{path} [database] connection",
                                             errno=str(code), error=text)]
    finally:
        conn.close()
    out = []
    for row in rows:
        eid, interface, url, stype = (row["id"], row["interface"], row["url"], row["type"]) \
            if isinstance(row, dict) else row
        try:
            host = urlsplit(url).hostname
        except (ValueError, TypeError, AttributeError):
            out.append(codes.ENDPOINT_MALFORMED(f"keystone.endpoint id={eid}",
                                                service=str(stype), interface=str(interface),
                                                url=str(url)[:200]))
            continue
        if host != desc.vip.name:
            out.append(codes.ENDPOINT_NOT_VIP(f"keystone.endpoint id={eid}",
                                              service=str(stype), interface=str(interface),
                                              url=str(url), vip_name=desc.vip.name))
    return out


DATABASE_OPTIONS = (("database", "connection"), ("api_database", "connection"),
                    ("placement_database", "connection"))


def _service_configs(desc: Description) -> list[tuple[str, str]]:
    """(resource, config file relative to a node's root) of the described services
    not colocated with Galera: they must reach it through the VIP. Keystone's file is
    apache's in the profile (its unit has no config parameter)."""
    galera = {r.name for r in desc.resources if r.agent.endswith(":galera")}
    out = []
    for r in desc.resources:
        if not galera or galera & set(r.with_) or r.name in galera:
            continue
        paths = r.params.get("config", "").split()
        if r.name == "apache" and not paths:
            paths = ["/" + KEYSTONE_CONF]
        out += [(r.name, p.lstrip("/")) for p in paths if p.startswith("/")]
    return out


def check_database_reach(desc: Description, nodes: list[Files]) -> list[Finding]:
    """Every described service that does not run beside its node's Galera names the
    VIP (its name or address) as its database host."""
    out = []
    via_vip = {desc.vip.name, desc.vip.address}
    for resource, rel in _service_configs(desc):
        for f in nodes:
            cp = f.ini(rel)
            if cp is None:
                continue  # absent, or broken: the service's own start reports that
            for section, option in DATABASE_OPTIONS:
                url = cp.get(section, option, fallback=None)
                if not url:
                    continue
                try:
                    host = urlsplit(url).hostname
                except ValueError:
                    host = None
                if host and host not in via_vip:
                    out.append(codes.DATABASE_NOT_VIA_VIP(
                        f"{f.path(rel)} [{section}] {option}", node=f.label,
                        resource=resource, host=host, vip_name=desc.vip.name))
    return out


def check_vip_name(desc: Description) -> list[Finding]:
    subject = f"[vip] name {desc.vip.name}"
    try:
        infos = socket.getaddrinfo(desc.vip.name, None)
    except socket.gaierror as exc:
        return [codes.VIP_NAME_UNRESOLVED(subject, vip_name=desc.vip.name,
                                          error=str(exc.strerror))]
    addrs = {str(ipaddress.ip_address(i[4][0].split("%")[0])) for i in infos}
    if desc.vip.address not in addrs:
        return [codes.VIP_NAME_MISMATCH(subject, vip_name=desc.vip.name,
                                        addresses=sorted(addrs), vip=desc.vip.address)]
    return []


def _corosync_sections(text: str) -> dict[str, dict[str, str]]:
    """Top-level section -> key -> value (nested node blocks flattened away)."""
    out: dict[str, dict[str, str]] = {}
    stack: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.endswith("{"):
            stack.append(line[:-1].strip())
        elif line == "}":
            if stack:
                stack.pop()
        elif ":" in line and len(stack) == 1:
            key, value = line.split(":", 1)
            out.setdefault(stack[0], {})[key.strip()] = value.strip()
    return out


def check_corosync(desc: Description, path: str, text: str | None) -> list[Finding]:
    if text is None:
        return [codes.COROSYNC_CONF_MISSING(path)]
    quorum = _corosync_sections(text).get("quorum", {})
    out = []
    if len(desc.nodes) == 2 and quorum.get("two_node") != "1":
        out.append(codes.COROSYNC_TWO_NODE(f"{path} quorum.two_node"))
    wfa = quorum.get("wait_for_all", "1" if quorum.get("two_node") == "1" else "0")
    if wfa != "1":
        out.append(codes.COROSYNC_WAIT_FOR_ALL(f"{path} quorum.wait_for_all"))
    names = set(re.findall(r"^\s*name:\s*(\S+)", text, re.MULTILINE))
    missing = [n.name for n in desc.nodes if n.name not in names]
    if missing:
        out.append(codes.COROSYNC_NODES(f"{path} nodelist", nodes=missing))
    return out


def check_fencing(desc: Description, cib_file: str | None) -> list[Finding]:
    out = []
    if not desc.fencing:
        out.append(codes.FENCING_NOT_DESCRIBED("[fencing:NAME]"))
    try:
        if cib_file:
            have = cib.read_file(cib_file)
        else:
            have = cib.parse(cib.query_live(timeout=10))
    except PacestackError:
        return out  # no cluster yet: the description is all there is to check
    if have.properties.get("stonith-enabled", "true") == "false":
        out.append(codes.FENCING_DISABLED(f"{cib_file or 'CIB'} stonith-enabled",
                                          where=cib_file or "the live CIB"))
    return out


def galera_options(node: Files) -> tuple[dict[str, str], dict[str, str]]:
    """wsrep options -> value, and option -> the file that set it (last wins)."""
    values, where = {}, {}
    for pattern in GALERA_GLOBS:
        for rel in node.glob(pattern):
            cp = node.ini(rel)
            if cp is None:
                continue
            for section in cp.sections():
                if section not in GALERA_SECTIONS:
                    continue
                for opt in GALERA_OPTIONS:
                    for spelled in (opt, opt.replace("_", "-")):
                        if cp.has_option(section, spelled):
                            values[opt] = (cp.get(section, spelled) or "").strip().strip("\"'")
                            where[opt] = node.path(rel)
    return values, where


def check_galera(desc: Description, nodes: list[Files]) -> list[Finding]:
    out = []
    per_node = {f.label: galera_options(f) for f in nodes}
    for opt in GALERA_OPTIONS:
        values = {label: v[0].get(opt) for label, v in per_node.items()}
        for label, value in values.items():
            if value is None:
                out.append(codes.GALERA_OPTION_MISSING(f"{label} {opt}", node=label,
                                                       option=opt))
        if len({v for v in values.values() if v is not None}) > 1:
            out.append(codes.GALERA_OPTIONS_DIFFER(
                opt, option=opt, values=[f"{k}={v!r}" for k, v in values.items()]))
    for label, (values, where) in per_node.items():
        address = values.get("wsrep_cluster_address")
        if not address:
            continue
        members = {m.split(":")[0] for m in address.removeprefix("gcomm://").split(",") if m}
        wanted = [(n.name, {n.name, n.address}) for n in desc.nodes]
        if desc.arbitrator:
            wanted.append((desc.arbitrator.host,
                           {desc.arbitrator.host, desc.arbitrator.address} - {None}))
        absent = [name for name, spellings in wanted if not spellings & members]
        if absent:
            out.append(codes.GALERA_ADDRESS_LIST(
                f"{where['wsrep_cluster_address']} wsrep_cluster_address",
                node=label, address=address, absent=absent))
    return out


def preflight(desc: Description, inputs: Inputs) -> list[Finding]:
    node_name = inputs.node or socket.gethostname()
    peer_name = inputs.peer or next((n for n in desc.node_names if n != node_name), "peer")
    local = Files(node_name, root=inputs.root)
    nodes = [local]
    if inputs.peer_root:
        nodes.append(Files(peer_name, root=inputs.peer_root))
    elif inputs.peer_host:
        from pacestack.cluster.hostnames import host_name_problem

        user, _, host = inputs.peer_host.rpartition("@")
        problem = host_name_problem(host) or (host_name_problem(user) if user else None)
        if problem:
            raise ConfigError(f"--peer-host: {problem}")
        nodes.append(Files(peer_name, host=inputs.peer_host))
    out: list[Finding] = []
    if node_name not in desc.node_names:
        out.append(codes.NODE_NOT_DESCRIBED("[cluster] nodes", node=node_name,
                                            nodes=list(desc.node_names)))
    if len(nodes) == 1:
        out.append(codes.PEER_NOT_CHECKED("--peer-root/--peer-host"))
    out += check_cinder_host(desc, nodes)
    out += check_keystone_keys(nodes)
    if not inputs.skip_database:
        out += check_endpoints(desc, local)
    out += check_vip_name(desc)
    out += check_database_reach(desc, nodes)
    coro = inputs.corosync_conf or local.path(COROSYNC_CONF)
    text = None
    try:
        with open(coro, encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        pass
    out += check_corosync(desc, coro, text)
    out += check_fencing(desc, inputs.cib_file)
    out += check_galera(desc, nodes)
    return out
