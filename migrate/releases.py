"""Which OpenStack release a cloud's databases are at, and the releases migrate handles.

Every project records the schema revision its own ``db sync`` left in an
``alembic_version`` table. The heads below are those of each release's own
migration files (keystone and neutron: their versions/EXPAND_HEAD and
CONTRACT_HEAD; the others: the alembic scripts' heads), and equal what that
release's sync writes. migrate writes rows column by column, so it only opens
databases whose every head belongs to one release it was proven on.

What differs between releases in the tables migrate touches lives in each
service's module (``RELEASE_DIFFERENCES``), never in the steps.
"""

from __future__ import annotations

import dataclasses

from pacestack.migrate import tables

from pacestack.errors import ConfigError

# oldest first; the newest is the one a new cloud installs today
SUPPORTED = ("2024.1", "2025.1", "2026.2")
NEWEST = SUPPORTED[-1]

_CINDER = frozenset({"9c74c1c6971f"})
_NOVA_API = frozenset({"cdeec0c85668"})
_PLACEMENT = frozenset({"a082b8bb98d0"})

# service database -> release -> its alembic heads at that release
HEADS: dict[str, dict[str, frozenset[str]]] = {
    "keystone": {"2024.1": frozenset({"47147121", "c88cdce8f248"}),
                 "2025.1": frozenset({"47147121", "c88cdce8f248"}),
                 "2026.2": frozenset({"742c857f1dfb", "c88cdce8f248"})},
    "neutron": {"2024.1": frozenset({"0e6eff810791", "5c85685d616d"}),
                "2025.1": frozenset({"5c85685d616d", "ad80a9f07c5c"}),
                "2026.2": frozenset({"5c85685d616d", "c7f8d9e0f1a2"})},
    "cinder": {"2024.1": _CINDER, "2025.1": _CINDER, "2026.2": _CINDER},
    "nova": {"2024.1": frozenset({"13863f4e1612"}),
             "2025.1": frozenset({"2903cd72dc14"}),
             "2026.2": frozenset({"ab450ba04102"})},
    "nova_api": {"2024.1": _NOVA_API, "2025.1": _NOVA_API, "2026.2": _NOVA_API},
    "placement": {"2024.1": _PLACEMENT, "2025.1": _PLACEMENT, "2026.2": _PLACEMENT},
}

# neutron moves its heads every release (its versions/<release>/ directories):
# they name a release migrate does not handle, for the refusal
OTHER_NEUTRON_HEADS: dict[frozenset[str], str] = {
    frozenset({"5c85685d616d", "fc153938cdc1"}): "2023.1",
    frozenset({"5c85685d616d", "89c58a70ceba"}): "2023.2",
    frozenset({"5bcb7b31ec7d", "5c85685d616d"}): "2024.2",
    frozenset({"5c85685d616d", "d553edeb540f"}): "2025.2",
    frozenset({"5c85685d616d", "b1bca967e19d"}): "2026.1",
}


class UnsupportedRelease(ConfigError):
    """The databases are at a release migrate was not proven on (exit 2, nothing read
    beyond the version tables, nothing written)."""


@dataclasses.dataclass(frozen=True)
class Detected:
    release: str
    heads: dict[str, tuple[str, ...]]  # service database -> its alembic heads

    def to_dict(self) -> dict:
        return {"release": self.release, "heads": self.heads}


def _supported() -> str:
    return ", ".join(SUPPORTED)


def read_heads(cloud, service: str) -> frozenset[str] | None:
    """The service database's alembic heads; None when it has no alembic_version."""
    database = cloud.databases[service]
    present = {r["table_name"] for r in cloud.rows(
        "SELECT table_name AS table_name FROM information_schema.tables "
        "WHERE table_schema = %s AND table_name IN ('alembic_version', 'migrate_version')",
        [database])}
    if "alembic_version" not in present:
        return None
    # the database name came from the operator's URL and is quoted; no value is inlined
    rows = cloud.rows(f"SELECT version_num FROM {tables.q(database)}.`alembic_version`")  # noqa: S608
    return frozenset(r["version_num"] for r in rows)


def _unknown(service: str, heads: frozenset[str]) -> str:
    shown = ", ".join(sorted(heads)) or "none"
    if service == "neutron" and heads in OTHER_NEUTRON_HEADS:
        return (f"the cloud's databases are at OpenStack {OTHER_NEUTRON_HEADS[heads]} "
                f"(neutron alembic heads {shown}), a release migrate does not handle; "
                f"supported: {_supported()}; nothing changed")
    return (f"the {service} database is at alembic head {shown}, no release migrate handles "
            f"(an older or newer OpenStack, or a sync left half done); supported: "
            f"{_supported()}; nothing changed")


def detect(cloud) -> Detected:
    """The one supported release every service database is at, or UnsupportedRelease
    with one line naming what was found and the supported releases."""
    found: dict[str, frozenset[str]] = {}
    candidates: dict[str, set[str]] = {}
    for service in tables.SERVICE_DATABASES:
        heads = read_heads(cloud, service)
        if heads is None:
            raise UnsupportedRelease(
                f"the {service} database ({cloud.databases[service]}) has no alembic_version "
                f"table: not a synced OpenStack database, or a release older than 2023.1 "
                f"(sqlalchemy-migrate); supported: {_supported()}; nothing changed")
        found[service] = heads
        candidates[service] = {r for r, h in HEADS[service].items() if h == heads}
    # neutron first: its heads name even a release migrate does not handle
    for service in ("neutron", *tables.SERVICE_DATABASES):
        if not candidates[service]:
            raise UnsupportedRelease(_unknown(service, found[service]))
    common = set.intersection(*candidates.values())
    if not common:
        each = ", ".join(f"{s} {'/'.join(sorted(c))}" for s, c in candidates.items()
                         if len(c) < len(SUPPORTED))
        raise UnsupportedRelease(
            f"the service databases are at different OpenStack releases ({each}): finish "
            f"every project's db sync to one release first; supported: {_supported()}; "
            "nothing changed")
    release = max(common, key=SUPPORTED.index)
    return Detected(release, {s: tuple(sorted(h)) for s, h in found.items()})
