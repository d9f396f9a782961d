"""Residue: every live row of every service database that still names something
the cutover retires, and what happens to it.

The old names come from the mapping (and the rows it selects): service hosts,
URL hosts, compute hosts and their nodes, physical networks the segments leave,
the DHCP device ids neutron derives from a host, and linuxbridge's artefacts.
Every text column of every table of every service database (keystone, neutron,
cinder, nova_api, placement, and each nova cell named by nova_api.cell_mappings,
cell0 included) is searched for them, one set-based scan per table (its text
columns listed by information_schema); no table list decides where to look. Only
the rules below, per table, decide what a hit is: rewritten by a step (the plan
changes that column of that row and the new value no longer names anything old),
kept by a named rule (deleted rows, history, what neutron or nova redo themselves,
what the mapping's [keep] names), or uncovered.

A name counts as a *token*: ``old-control-bak`` or ``old-control.example``
is another host, ``http://swift:8080/v1/old-control/`` only names it in a URL
path, and display names (what users typed) are not searched.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import itertools
import json
import operator
import re
import uuid
from collections.abc import Iterable
from typing import Any

from pacestack.migrate import tables

from pacestack import codes
from pacestack.findings import Finding

_META = re.compile(r"([\\.^$|?*+()\[\]{}])")
# characters a host name token is made of; a '.' continues it only before another one
_BEFORE = r"(?<![A-Za-z0-9_.-])"
_AFTER = r"(?![A-Za-z0-9_-])(?!\.[A-Za-z0-9])"
# a URL: scheme (not inside a word), then netloc, then path/query up to a delimiter
_SCHEME = r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*+://"
_NETLOC = r"[^/\s\"'<>?#]*?"
_URL_REST = r"[^\s\"'<>]*"

INT_TYPES = ("tinyint", "smallint", "mediumint", "int", "bigint")
TEXT_TYPES = ("char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set",
              "json")

# Columns holding what users typed (names, descriptions) or a guest's own host name:
# an old name there is a coincidence, not a reference, and is not searched.
DISPLAY_COLUMNS = frozenset({"display_name", "display_description", "description",
                             "hostname", "label"})
# "name" is a display name except where the service derives it from a host
NAME_IS_HOST = frozenset({("placement", "resource_providers"), ("cinder", "clusters"),
                          ("nova_api", "cell_mappings")})


def _esc(text: str) -> str:
    return _META.sub(r"\\\1", text)


@dataclasses.dataclass(frozen=True)
class OldName:
    text: str
    kind: str  # service-host url-host compute-host compute-node physnet dhcp-device linuxbridge
    fragment: str  # regex (the subset Python's re and MariaDB's PCRE2 read alike)
    literals: tuple[str, ...] = ()  # every match contains one of them (default: the name)
    whole: str = ""  # ... or the whole value every other match is
    group: str = ""  # "host"/"physnet": searched as one token of a prefix tree with the others

    def to_dict(self) -> dict:
        return {"name": self.text, "kind": self.kind}


def host_name(text: str, kind: str) -> OldName:
    return OldName(text, kind, f"{_BEFORE}(?i:{_esc(text)}){_AFTER}", group="host")


def physnet_name(text: str) -> OldName:
    return OldName(text, "physnet", f"{_BEFORE}(?-i:{_esc(text)}){_AFTER}", group="physnet")


def _tokens(names: list[OldName]) -> str:
    """The token alternatives: host names (case-insensitive) and physical networks
    (exact) each as one prefix tree between the token boundaries, so a regex engine
    tries a handful of branches at each word, not one per name."""
    alts = []
    for group, flag in (("host", "i"), ("physnet", "-i")):
        words = sorted({n.text.lower() if flag == "i" else n.text for n in names
                        if n.group == group})
        if words:
            alts.append(f"{_BEFORE}(?{flag}:{_trie(words)}){_AFTER}")
    alts += [n.fragment for n in names if not n.group]
    return "|".join(alts) or "(?!)"


def dhcp_device_prefix(host: str) -> str:
    """What neutron's DHCP agent on HOST puts before the network id in its port's
    device_id (neutron.common.utils.get_dhcp_agent_device_id: the short host name's
    uuid5 in the DNS namespace)."""
    return "dhcp" + str(uuid.uuid5(uuid.NAMESPACE_DNS, host.split(".")[0]))


LINUXBRIDGE = (
    OldName("bridge", "linuxbridge", r"(?-i:^bridge$|\"(?:vif_)?type\": ?\"bridge\")",
            literals=(': "bridge"', ':"bridge"'), whole="bridge"),
    OldName("brq…", "linuxbridge", f"{_BEFORE}(?-i:brq[0-9a-f]{{8}}-[0-9a-f]{{2}}){_AFTER}",
            literals=("brq",)),
    OldName("linuxbridge", "linuxbridge", f"{_BEFORE}(?-i:linuxbridge){_AFTER}"),
    OldName("Linux bridge agent", "linuxbridge", r"(?-i:Linux bridge agent)"),
)


def _trie(words: Iterable[str]) -> str:
    """An alternation of literals as a regex factored by common prefixes."""
    root: dict = {}
    for w in words:
        node = root
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict) -> str:
        alts = [_esc(ch) + emit(sub) for ch, sub in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        if "" in node:  # a word ends here and longer ones go on
            body = f"(?:{body})?"
        return body
    return emit(root)


class Matcher:
    """The search for a set of old names: one PCRE2 pattern for MariaDB's REGEXP and
    the same rule in Python for values already in hand (a plan's new values)."""

    def __init__(self, names: Iterable[OldName]):
        self.names = list(names)
        toks = _tokens(self.names)
        # a URL naming an old host in its netloc counts; any other URL is skipped whole,
        # so a name in its path never counts; elsewhere a token counts
        self.sql = (f"{_SCHEME}(?:{_NETLOC}(?:{toks}){_URL_REST}|{_URL_REST}(*SKIP)(*FAIL))"
                    f"|{toks}")
        self._re = re.compile(f"{_SCHEME}(?:(?P<u>{_NETLOC}(?:{toks}){_URL_REST})|{_URL_REST})"
                              f"|(?P<t>{toks})")
        self._each = [(n, re.compile(n.fragment)) for n in self.names]
        # a superset of the rule made of plain literals, which both engines scan fast:
        # nearly every value is ruled out by it alone
        self.whole_values = tuple(n.whole for n in self.names if n.whole)
        plain = {lit.lower() for n in self.names for lit in n.literals or (n.text,)}
        # a literal containing another adds nothing to the filter
        self._plain = tuple(sorted(p for p in plain if not any(o != p and o in p
                                                                for o in plain)))
        # as a prefix tree: PCRE2 then tries one branch per position, not one per literal
        self.cheap_sql = "(?i)" + (_trie(self._plain) or "(?!)")
        # the same tree for values in hand (lowered first, as the literals are): one regex
        # pass over a 4 kB info cache instead of one substring search per literal
        self._plain_re = re.compile(_trie(self._plain) or "(?!)")
        self._memo: dict[str, bool] = {}

    def spans(self, text: str) -> list[str]:
        return [m.group(0) for m in self._re.finditer(text) if m.group("u") or m.group("t")]

    def hits(self, text: Any) -> bool:
        if not isinstance(text, str):
            return False
        if text in self.whole_values:
            return bool(self.spans(text))
        known = self._memo.get(text)
        if known is None:
            known = self._plain_in(text.lower()) and bool(self.spans(text))
            if len(text) < 256:  # host names, types, drivers: a few distinct values
                self._memo[text] = known
        return known

    def _plain_in(self, low: str) -> bool:
        """Whether a literal of the filter occurs in LOW (lowered): the prefix tree for a
        short value; a substring search per literal for a long one (an info cache's 4 kB:
        twice as fast as the tree, which Python's re tries at every position)."""
        if len(low) < 256:
            return self._plain_re.search(low) is not None
        return any(p in low for p in self._plain)

    def names_in(self, text: Any) -> list[str]:
        if not isinstance(text, str):
            return []
        found = self.spans(text)
        return sorted({n.text for n, rx in self._each for s in found if rx.search(s)})


def old_names(cloud, mapping) -> list[OldName]:
    """Every name the cutover retires, from the mapping and the rows it selects."""
    out: dict[tuple[str, str], OldName] = {}

    def add(n: OldName) -> None:
        out.setdefault((n.kind, n.text.lower() if n.kind != "physnet" else n.text), n)

    for old in mapping.hosts:
        add(host_name(old, "service-host"))
        prefix = dhcp_device_prefix(old)
        add(OldName(prefix, "dhcp-device", f"{_BEFORE}(?i:{_esc(prefix)})-"))
    for old in mapping.endpoints:
        add(host_name(old, "url-host"))
    whole = [m.old_host for m in mapping.computes if m.old_host]
    for old in whole:
        add(host_name(old, "compute-host"))
    if whole:
        for r in cloud.rows("SELECT DISTINCT hypervisor_hostname AS n FROM "
                            "{nova.compute_nodes} WHERE deleted = 0 AND host IN %s",
                            [tuple(whole)]):
            if r["n"] and r["n"] not in whole:
                add(host_name(r["n"], "compute-node"))
    for p in _old_physnets(cloud, mapping):
        add(physnet_name(p))
    for n in LINUXBRIDGE:
        add(n)
    return list(out.values())


def _old_physnets(cloud, mapping) -> set[str]:
    """Physical networks no segment uses once the [segments] rules are applied."""
    from pacestack.migrate import neutron

    olds = {r.selector.physical_network for r in mapping.segments
            if r.selector.physical_network
            and r.selector.physical_network != r.target.physical_network}
    segs = neutron._segments(cloud)
    after = set()
    for s in segs:
        rule = mapping.segment_rule(s["network_id"], s["network_type"], s["physical_network"])
        if rule is None:
            after.add(s["physical_network"])
        else:
            if s["physical_network"] != rule.target.physical_network:
                olds.add(s["physical_network"])
            after.add(rule.target.physical_network)
    return {p for p in olds if p} - after


# --- where to look ---------------------------------------------------------------

@dataclasses.dataclass
class Column:
    db: str  # logical name: keystone ... placement, nova (the main cell), nova_<cell>
    schema: str  # real database name
    table: str
    column: str
    pk: list[str]
    has_deleted: bool
    int_columns: frozenset[str] = frozenset()  # of the table: values come back as text

    @property
    def where(self) -> str:
        return f"{self.db}.{self.table}.{self.column}"


def databases(cloud) -> tuple[dict[str, str], list[Finding]]:
    """logical name -> real database of every database to scan; a cell whose database
    is not on this server cannot be scanned (a refusal: completeness unproven)."""
    from pacestack.migrate.cloud import cell_databases

    dbs = {s: cloud.databases[s] for s in ("keystone", "neutron", "cinder", "nova_api",
                                           "placement", "nova")}
    cells, elsewhere = cell_databases(cloud)
    dbs.update(cells)
    problems = [codes.CELL_NOT_SCANNED(
        f"nova_api.cell_mappings uuid={c['uuid']}", cell=c["name"], database=c["database"],
        server=str(cloud.server.endpoint)) for c in elsewhere]
    return dbs, problems


def columns(cloud, dbs: dict[str, str], min_len: int) -> list[Column]:
    label = {real: name for name, real in dbs.items()}
    schemas = tuple(dbs.values())
    pks: dict[tuple[str, str], list[str]] = {}
    for r in cloud.rows("SELECT table_schema AS s, table_name AS t, column_name AS c "
                        "FROM information_schema.statistics WHERE table_schema IN %s AND "
                        "index_name = 'PRIMARY' ORDER BY s, t, seq_in_index", [schemas]):
        pks.setdefault((r["s"], r["t"]), []).append(r["c"])
    # two plain reads joined here: MariaDB answers the join of both views ten times slower
    base = {(r["s"], r["t"]) for r in cloud.rows(
        "SELECT table_schema AS s, table_name AS t FROM information_schema.tables "
        "WHERE table_schema IN %s AND table_type = 'BASE TABLE'", [schemas])}
    rows = [r for r in cloud.rows(
        "SELECT table_schema AS s, table_name AS t, column_name AS c, data_type AS dt, "
        "character_maximum_length AS n FROM information_schema.columns "
        "WHERE table_schema IN %s ORDER BY s, t, ordinal_position", [schemas])
        if (r["s"], r["t"]) in base]
    deleted = {(r["s"], r["t"]) for r in rows if r["c"] == "deleted"}
    ints: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        if r["dt"] in INT_TYPES:
            ints.setdefault((r["s"], r["t"]), set()).add(r["c"])
    out = []
    for r in rows:
        db, table, col = label[r["s"]], r["t"], r["c"]
        if r["dt"] not in TEXT_TYPES or (r["n"] is not None and r["n"] < min_len):
            continue
        if col in DISPLAY_COLUMNS or (col == "name" and (db, table) not in NAME_IS_HOST):
            continue
        out.append(Column(db, r["s"], table, col, pks.get((r["s"], table), []),
                          (r["s"], table) in deleted,
                          frozenset(ints.get((r["s"], table), ()))))
    return out


# --- what a hit is ----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Keep:
    db: str  # "nova" also matches every cell database
    table: str  # a name, or a prefix ending in '*'
    column: str | None  # None: every column
    when: tuple[str, str] | None  # (column, KEEP_VALUES key): the row's column is one of them
    why: str

    def applies(self, c: Column) -> bool:
        db = tables.schema_of(c.db)
        if db != self.db or (self.column and self.column != c.column):
            return False
        if self.table.endswith("*"):
            return c.table.startswith(self.table[:-1])
        return c.table == self.table


def _old_computes(cloud, mapping) -> list:
    return [m.old_host for m in mapping.computes if m.old_host]


def _old_compute_nodes(cloud, mapping) -> list:
    olds = _old_computes(cloud, mapping)
    return [r["uuid"] for r in cloud.rows("SELECT uuid FROM {nova.compute_nodes} WHERE "
                                          "deleted = 0 AND host IN %s", [tuple(olds)])] \
        if olds else []


# the values a Keep.when column is compared with, from the mapping and the cloud
KEEP_VALUES = {
    "free": lambda cloud, mapping: [0],
    "old_compute": _old_computes,
    "old_compute_node": _old_compute_nodes,
}
HISTORY = "history: what happened where, not where things are"
OLD_COMPUTE = ("the old compute's own registration, left when its instances move to a "
               "registered host: `openstack compute service delete` removes it with the host")
KEEP_RULES = (
    Keep("nova", "shadow_*", None, None, "nova's archive of deleted rows"),
    Keep("nova", "migrations", None, None, HISTORY),
    Keep("nova", "instance_actions", None, None, HISTORY),
    Keep("nova", "instance_actions_events", None, None, HISTORY),
    Keep("nova", "instance_faults", None, None, HISTORY),
    Keep("nova", "task_log", None, None, HISTORY),
    Keep("cinder", "messages", None, None, HISTORY),
    Keep("neutron", "ml2_vlan_allocations", "physical_network", ("allocated", "free"),
         "a free VLAN id: neutron-server drops free ids outside its ranges when it starts"),
    Keep("nova", "services", None, ("host", "old_compute"), OLD_COMPUTE),
    Keep("nova", "compute_nodes", None, ("host", "old_compute"), OLD_COMPUTE),
    Keep("nova_api", "host_mappings", None, ("host", "old_compute"), OLD_COMPUTE),
    Keep("placement", "resource_providers", None, ("uuid", "old_compute_node"), OLD_COMPUTE),
    Keep("neutron", "agents", None, ("host", "old_compute"), OLD_COMPUTE),
)


@dataclasses.dataclass(frozen=True)
class KeepKeys:
    """Old names a JSON column holds only under these keys (at any depth) are kept;
    one anywhere else in the value still counts."""
    db: str  # "nova" also matches every cell database
    table: str
    column: str
    keys: frozenset[str]
    why: str

    def applies(self, c: Column) -> bool:
        return (tables.schema_of(c.db), c.table, c.column) == (self.db, self.table, self.column)

    def clean(self, matcher: Matcher, text: Any) -> bool:
        """True when TEXT names old names only under the rule's keys."""
        try:
            value = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            return False
        if not isinstance(value, (dict, list)):
            return False

        def strip(v: Any) -> Any:
            if isinstance(v, dict):
                return {k: strip(x) for k, x in v.items() if k not in self.keys}
            if isinstance(v, list):
                return [strip(x) for x in v]
            return v
        return not matcher.hits(json.dumps(strip(value)))


KEY_RULES = (
    KeepKeys("neutron", "agents", "configurations", frozenset({"interface_driver"}),
             "the interface driver the agent reported running: the agent on the new host "
             "reports its own with its next heartbeat, which replaces configurations whole"),
    KeepKeys("nova", "instance_info_caches", "network_info", frozenset({"label"}),
             "a network's label: the name its users gave the network (nova copies "
             "neutron's network name), not a physical network"),
    # os-brick's connector properties that identify the attaching host to the backend
    KeepKeys("cinder", "volume_attachment", "connector",
             frozenset({"initiator", "nqn", "host_nqn", "wwpns", "wwnns", "uuid",
                        "system uuid", "nvme_hostid"}),
             "the storage identity of the host the volume was exported to: detach ends "
             "that export with it, so it stays until `nova-manage volume_attachment "
             "refresh` on the new host replaces it (the cinder step's "
             "ATTACHMENT_CONNECTOR_IDENTITY note)"),
)


@dataclasses.dataclass
class Entry:
    """The hits of one column with one outcome."""
    where: str  # db.table.column
    outcome: str  # rewritten | kept | uncovered
    by: str  # the step, or the rule that keeps them
    rows: int
    example: dict[str, Any]
    names: list[str]

    def to_dict(self) -> dict:
        return {"column": self.where, "outcome": self.outcome, "by": self.by, "rows": self.rows,
                "example": self.example, "names": self.names}


@dataclasses.dataclass
class Accounting:
    names: list[OldName]
    entries: list[Entry]
    refusals: list[Finding]
    columns_scanned: int = 0
    databases: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def uncovered(self) -> list[Entry]:
        return [e for e in self.entries if e.outcome == "uncovered"]

    def to_dict(self) -> dict:
        return {"names": [n.to_dict() for n in self.names],
                "databases": sorted(self.databases), "columns_scanned": self.columns_scanned,
                "entries": [e.to_dict() for e in self.entries],
                "uncovered_rows": sum(e.rows for e in self.uncovered)}


def _changes_by_row(changes, wanted: set[tuple[str, str]]) -> dict[tuple[str, str],
                                                                    dict[tuple, list]]:
    """(db, table) of WANTED -> row key -> the planned changes of that row."""
    out: dict[tuple[str, str], dict[tuple, list]] = {t: {} for t in wanted}
    for c in changes:
        rows = out.get((c.db, c.table))
        if rows is None or c.op == "insert":
            continue
        key = tuple(c.key.values())
        at = rows.get(key)
        if at is None:
            rows[key] = [c]
        else:
            at.append(c)
    return out


def _rule_keeps(c: Column) -> list[Keep]:
    return [k for k in KEEP_RULES if k.applies(c)]


@dataclasses.dataclass
class TableHits:
    """One table's rows that name an old name: the selected key columns, a deleted flag
    where the table has one, then one flag per column of ``tcols``."""
    tcols: list[Column]
    keys: list[str]  # the table's primary key
    wl_key: list[str]  # the key planned changes address its rows by
    sel: list[str]
    rows: list[tuple]
    exact: bool  # the server applied the token rule (a table without a key)
    rules: dict[str, list[Keep]]


@dataclasses.dataclass
class Scan:
    """What the search read: the old names and every table's hit rows."""
    names: list[OldName]
    matcher: Matcher
    databases: dict[str, str]
    refusals: list[Finding]
    columns_scanned: int
    tables: list[TableHits]


def scan(cloud, mapping) -> Scan:
    """Search every text column of every service database for the old names (reads only;
    any connection to the server will do)."""
    names = old_names(cloud, mapping)
    matcher = Matcher(names)
    dbs, refusals = databases(cloud)
    cols = columns(cloud, dbs, min(len(n.text) for n in names) if names else 1)
    by_table: dict[tuple[str, str], list[Column]] = {}
    for c in cols:
        by_table.setdefault((c.schema, c.table), []).append(c)
    with cloud.conn.cursor() as cur:
        cur.execute("SET SESSION group_concat_max_len = %s", [_PACKED_MAX])
    hits = [th for tcols in by_table.values() if (th := _scan_table(cloud, matcher, tcols))]
    return Scan(names, matcher, dbs, refusals, len(cols), hits)


def scan_aside(cloud, mapping) -> concurrent.futures.Future:
    """scan() on a connection of its own in a thread, so the server searches while the
    steps plan: a plan's wall time is then about the larger of the two, not their sum.
    Its snapshot is taken beside the caller's (a row written in between is judged as
    the scan saw it: a new old name is refused, and apply and verify read again)."""
    from pacestack.migrate.cloud import Cloud

    from pacestack import db

    def run(aside: Cloud) -> Scan:
        try:
            return scan(aside, mapping)
        finally:
            aside.close()

    conn = db.connect(cloud.server, database="", timeout=cloud.timeout)
    aside = Cloud(conn, dict(cloud.databases), cloud.ml2, cloud.server, cloud.journal_db,
                  cloud.config_files)
    aside.cells, aside.cells_elsewhere = cloud.cells, cloud.cells_elsewhere
    with conn.cursor() as cur:
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(run, aside)
    finally:
        pool.shutdown(wait=False)


def account(cloud, mapping, changes: Iterable = (), found: Scan | None = None) -> Accounting:
    """Say of every hit of the search what becomes of it, given the planned changes
    (none: what verify sees after apply)."""
    found = found or scan(cloud, mapping)
    acc = Accounting(found.names, [], list(found.refusals), found.columns_scanned,
                     found.databases)
    # only the tables with hit rows look their planned changes up
    planned = _changes_by_row(changes, {(th.tcols[0].db, th.tcols[0].table)
                                        for th in found.tables})
    for th in found.tables:
        _account_table(cloud, mapping, found.matcher, th, planned, acc)
    for e in acc.uncovered:
        acc.refusals.append(codes.RESIDUE_UNCOVERED(
            e.where, rows=e.rows, row_word="rows" if e.rows != 1 else "row",
            example=", ".join(f"{k}={v}" for k, v in e.example.items()),
            names=", ".join(e.names) or "an old name",
            why=e.by if e.by != "no step, no rule" else "no step rewrites it",
            column=e.where))
    return acc


def _scan_table(cloud, matcher: Matcher, tcols: list[Column]) -> TableHits | None:
    """One scan of a table: the rows where some column names an old name (a literal
    prefilter first, then the token rule), with one flag per column."""
    q = tables.q
    c0 = tcols[0]
    keys = list(c0.pk)
    wl_key = list(tables.pk(c0.db, c0.table)) if tables.whitelisted(c0.db, c0.table) else keys
    real = f"{q(c0.schema)}.{q(c0.table)}"
    # rows a planned change settles are judged by their new values, so the token rule is
    # needed only for the others: read back by key and checked here. A table without a
    # key has the rule applied by the server, only on the columns the literal prefilter
    # lets through (a large pattern).
    exact = not keys
    if exact:
        where, where_args = _prefilter(matcher, tcols)
        pre = [f"({q(c.column)} REGEXP %s OR {q(c.column)} IN %s)" for c in tcols]
        with cloud.conn.cursor() as cur:
            cur.execute(f"SELECT {', '.join(f'IFNULL(SUM({p}), 0)' for p in pre)} "  # noqa: S608 - identifiers from information_schema, quoted
                        f"FROM {real} WHERE {where}",
                        [matcher.cheap_sql, matcher.whole_values] * len(tcols) + where_args)
            counts = cur.fetchone()
        tcols = [c for c, n in zip(tcols, counts, strict=True) if n]
        if not tcols:
            return None
    # one pass over the table: the literal prefilter over the row's text columns as one
    # string (one regex call a row, a small pattern); the rows it lets through come back
    # with one flag per column. Most tables return nothing.
    pre = [f"({q(c.column)} REGEXP %s OR {q(c.column)} IN %s)" for c in tcols]
    hit = [f"({p} AND {q(c.column)} REGEXP %s)" for p, c in zip(pre, tcols, strict=True)] \
        if exact else pre
    flags = (["COALESCE(`deleted`, 0) != 0"] if c0.has_deleted else []) + hit
    args = [matcher.cheap_sql, matcher.whole_values] + ([matcher.sql] if exact else [])
    args = args * len(tcols)
    where, where_args = _prefilter(matcher, tcols)
    rules = {c.column: _rule_keeps(c) for c in tcols}
    # a rule's column is read with the row, so a planned change of it can be judged too
    when = sorted({r.when[0] for rs in rules.values() for r in rs if r.when})
    sel = list(dict.fromkeys(keys + wl_key + when))
    rows = _hit_rows(cloud, real, [q(k) for k in sel], flags, args, where, where_args)
    if not rows:
        return None
    # only the columns some row names an old name in
    first = len(sel) + (1 if c0.has_deleted else 0)
    named = [i for i, flags in enumerate(list(zip(*rows, strict=True))[first:]) if any(flags)]
    if len(named) < len(tcols):
        rows = [r[:first] + tuple(r[first + i] for i in named) for r in rows]
        tcols = [tcols[i] for i in named]
    n_sel = len(sel)
    if rows and isinstance(rows[0][0], str) and c0.int_columns & set(sel):
        conv = [int if k in c0.int_columns else None for k in sel]
        rows = [tuple(f(v) if f and v != "" else v for f, v in zip(conv, r[:n_sel],
                                                                   strict=True)) + r[n_sel:]
                for r in rows]
    return TableHits(tcols, keys, wl_key, sel, rows, exact, rules)


def _account_table(cloud, mapping, matcher: Matcher, th: TableHits, planned,
                   acc: Accounting) -> None:
    """What becomes of each hit row of one table."""
    tcols, keys, wl_key, sel, rows, exact, rules = (th.tcols, th.keys, th.wl_key, th.sel,
                                                    th.rows, th.exact, th.rules)
    c0 = tcols[0]
    real = f"{tables.q(c0.schema)}.{tables.q(c0.table)}"
    n_sel = len(sel)
    by_row = planned.get((c0.db, c0.table), {})
    key_rules = {c.column: [k for k in KEY_RULES if k.applies(c)] for c in tcols}
    fate = _planned_fate(matcher, by_row, [c.column for c in tcols], key_rules)
    values_of = {c.column: [KEEP_VALUES[r.when[1]](cloud, mapping) if r.when else None
                            for r in rules[c.column]] for c in tcols}
    key_at = [sel.index(k) for k in wl_key]
    pk_at = [sel.index(k) for k in keys]
    off = n_sel + (1 if c0.has_deleted else 0)
    wks = list(zip(*(map(operator.itemgetter(j), rows) for j in key_at), strict=True))
    # (column, outcome, by) -> [rows, the first row's key]
    groups: dict[tuple[str, str, str], list] = {}

    def unsettled(c: Column, wk, r) -> tuple[str, str]:
        """The fate of a hit no planned change settles (deleted row, rule, [keep])."""
        key = dict(zip(sel, r[:n_sel], strict=True))
        deleted = bool(r[n_sel]) if c0.has_deleted else False
        return _outcome(mapping, c, key, deleted, by_row.get(wk, []), rules[c.column],
                        values_of[c.column])

    def count(c: Column, r, outcome: tuple[str, str], n: int = 1) -> None:
        """N more hits for (column, outcome); the first one's key is its example."""
        g = groups.get((c.where,) + outcome)
        if g is None:
            groups[(c.where,) + outcome] = [n, {k: r[j] for k, j in zip(keys, pk_at,
                                                                         strict=True)}]
        else:
            g[0] += n

    for i, c in enumerate(tcols):
        # the column's hit rows and what the plan does to each, counted per outcome
        # (map, compress and Counter: a table can hold 50,000 hit rows)
        mask = list(map(operator.itemgetter(off + i), rows))
        hit_rows = list(itertools.compress(rows, mask))
        hit_wks = list(itertools.compress(wks, mask))
        outs = list(map(fate[c.column].get, hit_wks))
        if c.where in mapping.keep:
            # a step rewrote it and its new value still names an old one: the
            # operator's [keep] line covers that column too, saying so
            outs = [("kept", f"mapping [keep]: {mapping.keep[c.where]} ({o[1]})")
                    if o is not None and o[0] == "uncovered" else o for o in outs]
        unsettled_at = [j for j, o in enumerate(outs) if o is None]
        if exact:
            for j in unsettled_at:
                outs[j] = unsettled(c, hit_wks[j], hit_rows[j])
            unsettled_at = []
        first = dict(zip(reversed(outs), reversed(hit_rows), strict=True))
        for outcome, n in collections.Counter(outs).items():
            if outcome is not None:
                count(c, first[outcome], outcome, n)
        pending = [(hit_wks[j], hit_rows[j]) for j in unsettled_at]
        if not pending:
            continue
        values = _values(cloud, real, c, keys, [tuple(r[j] for j in pk_at) for _wk, r in pending])
        for wk, r in pending:
            value = values.get(tuple(r[j] for j in pk_at))
            if not matcher.hits(value):
                continue  # the literal only: not a token
            outcome = unsettled(c, wk, r)
            if outcome[0] == "uncovered":
                left = next((k for k in key_rules[c.column] if k.clean(matcher, value)), None)
                outcome = ("kept", left.why) if left else outcome
            count(c, r, outcome)
    by_where = {c.where: c for c in tcols}
    for (where, outcome, by), (n, example) in groups.items():
        acc.entries.append(Entry(where, outcome, by, n, example,
                                 _names_of(cloud, matcher, by_where[where], example)))


_UNIT, _RECORD = "\x1f", "\x1e"
_PACKED_MAX = 64 << 20


def _values(cloud, real: str, c: Column, keys: list[str], wanted: list[tuple]) -> dict:
    """key tuple -> the column's value, for the rows named."""
    q = tables.q
    out = {}
    cols = ", ".join(q(k) for k in keys)
    for i in range(0, len(wanted), 1000):
        with cloud.conn.cursor() as cur:
            cur.execute(f"SELECT {cols}, {q(c.column)} FROM {real} "  # noqa: S608 - identifiers from information_schema, quoted
                        f"WHERE ({cols}) IN %s", [tuple(wanted[i:i + 1000])])
            for r in cur.fetchall():
                out[tuple(r[:-1])] = r[-1]
    return out


def _prefilter(matcher: Matcher, tcols: list[Column]) -> tuple[str, list]:
    q = tables.q
    return (f"(CONCAT_WS(%s, {', '.join(q(c.column) for c in tcols)}) REGEXP %s OR " +
            " OR ".join(f"{q(c.column)} IN %s" for c in tcols) + ")",
            [_UNIT, matcher.cheap_sql] + [matcher.whole_values] * len(tcols))


def _hit_rows(cloud, real: str, sel: list[str], flags: list[str], args: list, where: str,
              where_args: list) -> list[tuple]:
    """The matching rows: selected columns then 0/1 flags. Packed by the server into one
    value (a row per hit row costs the client ~20 us to parse; at 150,000 hit rows that
    is most of a plan's search), read back row by row when they do not fit."""
    import pymysql

    parts = [f"IFNULL({c}, '')" for c in sel] + [f"IFNULL({f}, 0)" for f in flags]
    try:
        with cloud.conn.cursor() as cur:
            cur.execute(f"SELECT COUNT(*), GROUP_CONCAT(CONCAT_WS(%s, {', '.join(parts)}) "  # noqa: S608 - identifiers from information_schema, quoted
                        f"SEPARATOR %s) FROM {real} WHERE {where}",
                        [_UNIT] + args + [_RECORD] + where_args)
            n, packed = cur.fetchone()
            if isinstance(packed, bytes):  # a binary key column makes the whole value binary
                packed = packed.decode("utf-8", "surrogateescape")
    except pymysql.err.OperationalError:  # larger than max_allowed_packet
        n, packed = -1, None
    if n == 0:
        return []
    if packed is not None and len(packed) < _PACKED_MAX:
        rows = [tuple(r.split(_UNIT)) for r in packed.split(_RECORD)]
        if len(rows) == n and all(map(len(parts).__eq__, map(len, rows))):
            k = len(sel)
            return [r[:k] + tuple(map("1".__eq__, r[k:])) for r in rows]
    with cloud.conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(sel + flags) or '1'} FROM {real} "  # noqa: S608
                    f"WHERE {where}", args + where_args)
        return list(cur.fetchall())


def _planned_fate(matcher: Matcher, by_row: dict, columns: list[str],
                  key_rules: dict[str, list[KeepKeys]]) -> dict[str, dict]:
    """column -> {row key: (outcome, by)} for the rows a planned change settles: deleted,
    soft-deleted, or that column rewritten (judged on its new value)."""
    out: dict[str, dict] = {c: {} for c in columns}
    # (column, step, new value) -> its fate: most new values repeat (a host, a type)
    memo: dict[tuple, tuple[str, str]] = {}
    for key, changes in by_row.items():
        for ch in changes:
            if ch.op == "delete" or ch.after.get("deleted"):
                how = "deleted" if ch.op == "delete" else "soft-deleted"
                done = ("rewritten", f"{ch.step}: row {how}")
                for c in columns:
                    out[c].setdefault(key, done)
                continue
            for c in columns:
                if c in ch.after and key not in out[c]:
                    judged = (c, ch.step, ch.after[c])
                    fate = memo.get(judged)
                    if fate is None:
                        fate = memo[judged] = _judge_new(matcher, key_rules[c], *judged[1:])
                    out[c][key] = fate
    return out


def _judge_new(matcher: Matcher, key_rules: list[KeepKeys], step: str,
               after: Any) -> tuple[str, str]:
    """The fate of a column a step rewrites, judged on its new value."""
    if not matcher.hits(after):
        return "rewritten", step
    left = next((k for k in key_rules if k.clean(matcher, after)), None)
    if left:
        return "rewritten", f"{step}; the rest kept: {left.why}"
    return "uncovered", (f"{step} rewrites it but the new value still names "
                         f"{', '.join(matcher.names_in(after))}")


def _outcome(mapping, c: Column, key: dict, deleted: bool, row_changes: list,
             rules: list[Keep], values: list) -> tuple[str, str]:
    """What keeps a hit no planned change settles: a deleted row, a rule, the mapping."""
    if deleted:
        return "kept", "deleted row: its service never reads it"
    after = dict(key)
    for ch in row_changes:
        after.update(ch.after)
    for rule, vals in zip(rules, values, strict=True):
        if rule.when is None or after.get(rule.when[0]) in vals:
            return "kept", rule.why
    if c.where in mapping.keep:
        return "kept", f"mapping [keep]: {mapping.keep[c.where]}"
    return "uncovered", "no step, no rule"


def _names_of(cloud, matcher: Matcher, c: Column, key: dict) -> list[str]:
    """The old names in one row's value (for the report: the search itself only
    returned keys)."""
    q = tables.q
    if not key:
        return []
    where = " AND ".join(f"{q(k)} = %s" for k in key)
    with cloud.conn.cursor() as cur:
        cur.execute(f"SELECT {q(c.column)} FROM {q(c.schema)}.{q(c.table)} "  # noqa: S608
                    f"WHERE {where} LIMIT 1", list(key.values()))
        row = cur.fetchone()
    return matcher.names_in(row[0]) if row else []
