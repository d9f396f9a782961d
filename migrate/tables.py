"""The fixed whitelist of tables and columns pacestack migrate may touch.

SQL identifiers never come from input: every table and column name used in a
statement is looked up here (and quoted); values always travel as parameters.
``db`` is the logical service database (its real name comes from the URL).
"""

from __future__ import annotations

# (service db, table) -> (primary key columns, columns a change may write)
TABLES: dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]] = {
    ("keystone", "endpoint"): (("id",), ("url",)),
    ("neutron", "networksegments"): (("id",), ("network_type", "physical_network",
                                                "segmentation_id")),
    ("neutron", "networks"): (("id",), ("mtu",)),
    ("neutron", "ml2_vlan_allocations"): (("physical_network", "vlan_id"), ("allocated",)),
    ("neutron", "ml2_vxlan_allocations"): (("vxlan_vni",), ("allocated",)),
    ("neutron", "ml2_flat_allocations"): (("physical_network",), ()),
    ("neutron", "ml2_port_bindings"): (("port_id", "host"), ("host", "vif_type",
                                                              "vif_details")),
    ("neutron", "ml2_port_binding_levels"): (("port_id", "host", "level"), ("host", "driver")),
    ("neutron", "segmenthostmappings"): (("segment_id", "host"), ("host",)),
    ("neutron", "ports"): (("id",), ("device_id",)),
    # an old controller's agent's networks and routers, re-pointed before it goes
    ("neutron", "networkdhcpagentbindings"): (("network_id", "dhcp_agent_id"),
                                              ("dhcp_agent_id",)),
    ("neutron", "routerl3agentbindings"): (("router_id", "l3_agent_id"), ("l3_agent_id",)),
    ("neutron", "agents"): (("id",), ("host",)),
    ("cinder", "volumes"): (("id",), ("host", "cluster_name", "service_uuid")),
    ("cinder", "services"): (("id",), ("host", "cluster_name", "deleted", "deleted_at")),
    ("cinder", "backups"): (("id",), ("host",)),
    ("cinder", "groups"): (("id",), ("host", "cluster_name")),
    ("cinder", "clusters"): (("id",), ("name",)),
    ("cinder", "volume_attachment"): (("id",), ("attached_host", "connector")),
    ("cinder", "image_volume_cache_entries"): (("id",), ("host", "cluster_name")),
    ("nova", "instances"): (("id",), ("host", "node", "launched_on", "compute_id")),
    ("nova", "instance_info_caches"): (("id",), ("network_info",)),
    ("nova", "services"): (("id",), ("host", "deleted", "deleted_at")),
    ("nova", "compute_nodes"): (("id",), ("host", "hypervisor_hostname")),
    ("nova_api", "cell_mappings"): (("id",), ("transport_url", "database_connection")),
    # addressed by its unique host (the id is assigned by the server on insert)
    ("nova_api", "host_mappings"): (("host",), ("cell_id", "created_at")),
    ("placement", "resource_providers"): (("id",), ("name",)),
    ("placement", "allocations"): (("id",), ("resource_provider_id",)),
}

# Order in which tables are written inside one transaction (rollback: reverse).
# Parents before children where a change could otherwise trip a foreign key.
ORDER = {key: i for i, key in enumerate(TABLES)}

# columns whose values hold passwords: plan output masks them (the journal keeps them)
SECRET_COLUMNS = frozenset({("nova_api", "cell_mappings", "transport_url"),
                            ("nova_api", "cell_mappings", "database_connection")})

SERVICE_DATABASES = ("keystone", "neutron", "cinder", "nova", "nova_api", "placement")


def schema_of(db: str) -> str:
    """The service whose schema a logical database has: "nova" is the main cell's
    database, and every other cell's (nova_<cell>, cloud.Cloud.cells) is nova's too."""
    return "nova" if db.startswith("nova_") and db != "nova_api" else db


def whitelisted(db: str, table: str) -> bool:
    return (schema_of(db), table) in TABLES


def order(db: str, table: str) -> int:
    return ORDER[(schema_of(db), table)]


def q(name: str) -> str:
    """Quote an identifier that must already be whitelisted (or a real db name)."""
    if "`" in name or "\0" in name or not name:
        raise ValueError(f"refusing identifier {name!r}")
    return f"`{name}`"


def pk(db: str, table: str) -> tuple[str, ...]:
    return TABLES[(schema_of(db), table)][0]


def writes_key(db: str, table: str) -> bool:
    """Whether a change may write a column of the table's primary key."""
    key, allowed = TABLES[(schema_of(db), table)]
    return any(c in allowed for c in key)


def check_columns(db: str, table: str, columns) -> None:
    allowed_pk, allowed = TABLES[(schema_of(db), table)]
    for col in columns:
        if col not in allowed and col not in allowed_pk:
            raise ValueError(f"column {col} of {db}.{table} is not whitelisted")
