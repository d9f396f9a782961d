"""Keystone step: endpoint URLs whose host is an old controller.

URLs are parsed, not searched: only the host part changes; scheme, user info,
port, path, query and fragment stay as they are. ``http://ocata-vm:8774/v2.1/%(tenant_id)s``
becomes ``http://controller.domain:8774/v2.1/%(tenant_id)s``; a path that merely
contains "ocata-vm" is left alone.
"""

from __future__ import annotations

import urllib.parse

from pacestack.migrate.journal import applied_before
from pacestack.migrate.model import StepPlan

from pacestack import codes
from pacestack.findings import Finding


def rewrite_url(url: str, hosts: dict[str, str]) -> str | None:
    """The URL with its host replaced, or None when its host is not mapped."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None
    if not host or host.lower() not in hosts:
        return None
    netloc = parts.netloc
    userinfo, sep, hostport = netloc.rpartition("@")
    new_host = hosts[host.lower()]
    if hostport.startswith("["):  # IPv6 literal: [addr]:port
        end = hostport.index("]")
        rest = hostport[end + 1:]
    else:
        rest = hostport[len(hostport.split(":", 1)[0]):]
    if ":" in new_host:
        new_host = f"[{new_host}]"
    new_netloc = f"{userinfo}{sep}{new_host}{rest}"
    return urllib.parse.urlunsplit(parts._replace(netloc=new_netloc))


def plan(cloud, mapping, moves=None) -> StepPlan:
    sp = StepPlan("keystone")
    if not mapping.endpoints:
        return sp
    seen_hosts: set[str] = set()
    for row in cloud.rows("SELECT id, url FROM {keystone.endpoint} ORDER BY id"):
        try:
            host = (urllib.parse.urlsplit(row["url"]).hostname or "").lower()
        except ValueError:
            host = ""
        new = rewrite_url(row["url"], mapping.endpoints)
        if new is None:
            continue
        seen_hosts.add(host)
        sp.update("keystone", "endpoint", {"id": row["id"]}, {"url": row["url"]}, {"url": new},
                  unit=f"endpoint:{row['id']}", why=f"endpoint host {host} -> "
                  f"{mapping.endpoints[host]}")
    # a host no endpoint names is a typo, unless a run already rewrote it
    missing = [old for old in mapping.endpoints if old not in seen_hosts]
    if missing and not applied_before(cloud):
        for old in missing:
            sp.refuse(codes.MAPPING_UNKNOWN_ENDPOINT_HOST(
                f"{mapping.path}:{mapping.lines.get('endpoints ' + old)}", host=old))
    return sp


def invariants(cloud, mapping) -> list[Finding]:
    """No endpoint URL names a host the mapping moves endpoints away from."""
    if not mapping.endpoints:
        return []
    out = []
    for r in cloud.rows("SELECT id, url FROM {keystone.endpoint}"):
        try:
            host = (urllib.parse.urlsplit(r["url"]).hostname or "").lower()
        except ValueError:
            continue
        if host in mapping.endpoints:
            out.append(codes.ENDPOINT_OLD_HOST(f"keystone.endpoint id={r['id']}", host=host))
    return out
