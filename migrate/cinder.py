"""Cinder step: where volume, service, backup, group, cluster and attachment
hosts are renamed from an old controller to the new (virtual) one.

Cinder spells a volume's host ``HOST@BACKEND#POOL``; only HOST changes, the
backend and pool stay (``cinder-manage volume update_host`` drops the pool
unless both sides name it). Rows with ``deleted`` set are left alone. When the
new controller's cinder-volume has already registered its own service row, the
old row is soft-deleted the way cinder does it and volumes' ``service_uuid``
point at the surviving row.
"""

from __future__ import annotations

import datetime
import json

from pacestack.migrate.invariant import rows_found
from pacestack.migrate.model import StepPlan

from pacestack import codes
from pacestack.findings import Finding


def split_host(value: str | None) -> tuple[str, str]:
    """``old-control@lvm#pool`` -> (``old-control``, ``@lvm#pool``)."""
    if not value:
        return "", ""
    cut = len(value)
    for sep in "@#":
        i = value.find(sep)
        if i != -1:
            cut = min(cut, i)
    return value[:cut], value[cut:]


def rehost(value: str | None, hosts: dict[str, str]) -> str | None:
    host, rest = split_host(value)
    if host in hosts:
        return hosts[host] + rest
    return value


def _backend(value: str | None) -> str:
    """``controller@lvm#pool`` -> ``controller@lvm`` (a cinder-volume service's host)."""
    return (value or "").split("#", 1)[0]


def plan(cloud, mapping, moves) -> StepPlan:
    sp = StepPlan("cinder")
    hosts = mapping.hosts
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None, microsecond=0)
    # services first: which row survives for each new host@backend
    svc = cloud.rows("SELECT id, host, `binary`, cluster_name, uuid, deleted "
                     "FROM {cinder.services} WHERE deleted = 0 ORDER BY id")
    live = {(s["host"], s["binary"]): s for s in svc}
    surviving: dict[str, str] = {}  # host@backend of cinder-volume -> uuid
    for s in svc:
        new_host = rehost(s["host"], hosts)
        unit = f"cinder-service:{s['id']}"
        if new_host == s["host"]:
            if s["binary"] == "cinder-volume" and s["uuid"]:
                surviving.setdefault(s["host"], s["uuid"])
            continue
        other = live.get((new_host, s["binary"]))
        if other is not None and other["id"] != s["id"]:
            sp.update("cinder", "services", {"id": s["id"]},
                      {"deleted": s["deleted"], "deleted_at": None},
                      {"deleted": 1, "deleted_at": now}, unit,
                      why=f"{new_host} already runs {s['binary']}: old row retired")
            if s["binary"] == "cinder-volume" and other["uuid"]:
                surviving[new_host] = other["uuid"]
        else:
            sp.update("cinder", "services", {"id": s["id"]},
                      {"host": s["host"], "cluster_name": s["cluster_name"]},
                      {"host": new_host, "cluster_name": rehost(s["cluster_name"], hosts)},
                      unit, why="service host renamed")
            if s["binary"] == "cinder-volume" and s["uuid"]:
                surviving[new_host] = s["uuid"]
    for v in cloud.packed_rows({"id": "id", "host": "host", "cluster_name": "cluster_name",
                                "service_uuid": "service_uuid"},
                               "FROM {cinder.volumes} WHERE deleted = 0", "id"):
        new_host = rehost(v["host"], hosts)
        after = {"host": new_host, "cluster_name": rehost(v["cluster_name"], hosts)}
        # a volume that was never scheduled has no host and no service: leave it
        if v["host"] and v["service_uuid"] and _backend(new_host) in surviving:
            after["service_uuid"] = surviving[_backend(new_host)]
        sp.update("cinder", "volumes", {"id": v["id"]}, v, after, f"volume:{v['id']}",
                  why="volume host renamed")
    for table, columns, unit, why, live in _REHOSTED:
        # names from _REHOSTED above, never from input
        sql = (f"SELECT id, {', '.join(columns)} FROM {{cinder.{table}}} "  # noqa: S608
               f"{'WHERE deleted = 0 ' if live else ''}ORDER BY id")
        for r in cloud.rows(sql):
            sp.update("cinder", table, {"id": r["id"]}, r,
                      {c: rehost(r[c], hosts) for c in columns}, f"{unit}:{r['id']}", why=why)
    for a in cloud.rows("SELECT id, volume_id, attached_host, instance_uuid, connector FROM "
                        "{cinder.volume_attachment} WHERE deleted = 0 "
                        "ORDER BY id"):
        move = moves.instance_hosts.get(a["instance_uuid"])
        after = {"attached_host": _follow(a["attached_host"], move, hosts)}
        connector = _connector(a["connector"])
        if connector is not None and isinstance(connector.get("host"), str):
            new = _follow(connector["host"], move, hosts)
            if new != connector["host"]:
                # cinder writes it with oslo's jsonutils.dumps: json.dumps' defaults
                after["connector"] = json.dumps({**connector, "host": new})
                _note_identity(sp, a, connector, new)
        sp.update("cinder", "volume_attachment", {"id": a["id"]},
                  {"attached_host": a["attached_host"], "connector": a["connector"]}, after,
                  f"attachment:{a['id']}", why="attachment follows its host")
    return sp


# os-brick connector properties naming the attaching host's storage identity
CONNECTOR_IDENTITY = ("initiator", "nqn", "host_nqn", "wwpns", "wwnns")


def _note_identity(sp: StepPlan, a: dict, connector: dict, new_host: str) -> None:
    """The connector's storage identity stays: the backend exported the volume to it,
    and cinder terminates that export with the stored connector on detach. Rewriting
    it would name an initiator the backend never saw; the new host's own comes from
    that host."""
    found = [k for k in CONNECTOR_IDENTITY if connector.get(k)]
    if not found:
        return
    old = connector.get("host")
    sp.note(codes.ATTACHMENT_CONNECTOR_IDENTITY(
        f"cinder.volume_attachment id={a['id']}", volume=str(a["volume_id"]),
        instance=str(a["instance_uuid"]), old_host=old, new_host=new_host, keys=found))


# tables whose host-like columns are only renamed, in plan order: (table, columns,
# unit prefix, why, live rows only); the image-volume cache has no deleted column
_REHOSTED = (
    ("backups", ("host",), "backup", "backup host renamed", True),
    ("groups", ("host", "cluster_name"), "group", "group host renamed", True),
    ("clusters", ("name",), "cluster", "cluster name renamed", True),
    ("image_volume_cache_entries", ("host", "cluster_name"), "cache-entry",
     "image-volume cache follows its backend", False),
)

def _follow(host: str | None, move: tuple | None, hosts: dict[str, str]) -> str | None:
    """An attaching host after the cutover: its instance's new host, or its new name."""
    if move and host and (move[0] is None or host == move[0]) and host != move[1]:
        return move[1]
    return rehost(host, hosts)


def _connector(text: str | None) -> dict | None:
    """An attachment's connector (the attaching host's os-brick properties), or None."""
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def invariants(cloud, mapping) -> list[Finding]:
    """No live volume, group, service or backup on an old host; every live service
    versioned; no volume pointing at a retired service."""
    old_hosts = tuple(mapping.hosts) or ("",)
    return [
        *rows_found(cloud, codes.CINDER_OLD_HOST, "live cinder volume on an old host",
                    "SELECT id, host FROM {cinder.volumes} WHERE deleted = 0 AND "
                    "SUBSTRING_INDEX(SUBSTRING_INDEX(host, '#', 1), '@', 1) IN %s", [old_hosts]),
        *rows_found(cloud, codes.CINDER_OLD_HOST, "live cinder group on an old host",
                    "SELECT id, host FROM {cinder.groups} WHERE deleted = 0 AND "
                    "SUBSTRING_INDEX(SUBSTRING_INDEX(host, '#', 1), '@', 1) IN %s", [old_hosts]),
        *rows_found(cloud, codes.CINDER_OLD_HOST, "live cinder service on an old host",
                    "SELECT id, host FROM {cinder.services} WHERE deleted = 0 AND "
                    "SUBSTRING_INDEX(host, '@', 1) IN %s", [old_hosts]),
        *rows_found(cloud, codes.CINDER_OLD_HOST, "live cinder backup on an old host",
                    "SELECT id, host FROM {cinder.backups} WHERE deleted = 0 AND host IN %s",
                    [old_hosts]),
        # cinder refuses to start any of its services (ServiceTooOld) while a live row
        # of that binary has no version: a Liberty-era row, or one written by hand
        *rows_found(cloud, codes.CINDER_SERVICE_UNVERSIONED,
                    "live cinder service without versions (cinder will raise ServiceTooOld; "
                    "`cinder-manage service remove BINARY HOST` if it is gone)",
                    "SELECT id, `binary`, host FROM {cinder.services} WHERE deleted = 0 AND "
                    "(rpc_current_version IS NULL OR object_current_version IS NULL)"),
        *rows_found(cloud, codes.CINDER_SERVICE_UUID, "volume pointing at a retired service",
                    "SELECT v.id, v.service_uuid FROM {cinder.volumes} v "
                    "JOIN {cinder.services} s ON s.uuid = v.service_uuid "
                    "WHERE v.deleted = 0 AND s.deleted != 0"),
    ]
