"""Write a linuxbridge-era cloud through the OpenStack projects' own code.

Runs with the OpenStack venv's python (those packages are not in the project's
venv): ``python generate.py all WORK_DIR``. WORK_DIR/etc holds the config files
of freshly synced databases (tests/migrate/service_cloud/__init__.py prepares
them); WORK_DIR/admin-password is keystone's bootstrap admin password.

Keystone, Neutron and Placement are written through their REST APIs under
gunicorn on loopback; Neutron binds ports with the linuxbridge shim in
lbshim/. Agents, the interrupted live migration's INACTIVE binding, nova's and
cinder's rows are written by the projects' own objects and DB APIs, in one
child process per project (their oslo.config globals cannot share a process).
Nothing is written by SQL.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHIM = HERE / "lbshim"
OLD = "old-control"

# (network name, type, physnet, segmentation id): the seed's "old neutron table"
NETWORKS = [
    ("dmz", "flat", "dmz", None),
    ("selfservice-1137", "vlan", "physnet1", 1137),
    ("selfservice-1169", "vlan", "physnet1", 1169),
    ("prod", "flat", "prod", None),
    ("selfservice-1199", "vlan", "physnet1", 1199),
    ("pxe", "flat", "pxe", None),
    ("selfservice-1130", "vlan", "physnet1", 1130),
    ("team", "flat", "team", None),
    ("floating", "flat", "floating", None),
]
PHYSNETS = ("dmz", "prod", "pxe", "team", "floating", "physnet1")

# the old cloud's ml2 (linuxbridge, flat + vlan provider networks)
OLD_ML2 = """\
[DEFAULT]
service_plugins = router,segments
[ml2]
type_drivers = flat,vlan,vxlan
tenant_network_types = vlan
mechanism_drivers = linuxbridge
extension_drivers = port_security
[ml2_type_flat]
flat_networks = dmz,prod,pxe,team,floating
[ml2_type_vlan]
network_vlan_ranges = physnet1:1100:1199
[ml2_type_vxlan]
vni_ranges = 1:1000
[experimental]
# what a linuxbridge cloud of 2024.1 sets: its in-tree driver (which binds as the
# shim does) refuses to load without it; 2025.1 dropped the driver and the option
linuxbridge = true
"""

# name -> (cell, host, network, vm_state, task_state); host None: never scheduled
INSTANCES = {
    "vm-a": ("cell1", "compute01", "selfservice-1137", "stopped", None),
    "vm-b": ("cell1", "compute01", "dmz", "stopped", None),
    # a live migration to compute02 that died half way (conductor gone)
    "vm-live": ("cell1", "compute01", "prod", "active", "migrating"),
    "vm-02": ("cell1", "compute02", "selfservice-1169", "stopped", None),
    "vm-bak": ("cell1", "old-control-bak", "team", "stopped", None),
    "vm-c2": ("cell2", "compute03", "pxe", "stopped", None),
    "vm-gone": ("cell1", "compute01", "dmz", "stopped", None),
    "vm-never": ("cell0", None, None, "error", None),
}
DELETED_INSTANCES = ("vm-gone",)
LAUNCHED = datetime.datetime(2025, 5, 2, 9, 30, tzinfo=datetime.UTC)
# compute host -> cell; compute05 is the new cloud's, registered before the cutover
COMPUTES = {"compute01": "cell1", "compute02": "cell1", "old-control-bak": "cell1",
            "compute05": "cell1", "compute03": "cell2"}
LB_HOSTS = ("compute01", "compute02", "compute03", OLD, "old-control-bak")
OVS_HOSTS = ("compute05", "controller")


def uid(name: str) -> str:
    """Stable UUIDs, so tests name rows without querying for them."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "pacestack-service-cloud/" + name))


def log(message: str) -> None:
    print(f"[generate] {message}", file=sys.stderr, flush=True)


# -- HTTP -----------------------------------------------------------------------

def call(method: str, url: str, body=None, headers=None, expect=(200, 201, 202, 204)):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Accept": "application/json", "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            status, raw, head = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        status, raw, head = exc.code, exc.read(), dict(exc.headers)
    if status not in expect:
        raise RuntimeError(f"{method} {url} -> {status}: {raw[:400]!r}")
    return (json.loads(raw) if raw else None), head


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    """A project's real WSGI application under gunicorn on 127.0.0.1."""

    def __init__(self, work: Path, service: str, env: dict[str, str], ready: str):
        shim_dir = work / f"wsgi-{service}"
        shim_dir.mkdir(exist_ok=True)
        # the release's own WSGI application (pacestack.wsgi_apps, written by the builder)
        shims = json.loads((work / "api-shims.json").read_text())
        (shim_dir / f"gen_{service}_wsgi.py").write_text(shims[service])
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = work / f"{service}-api.log"
        bindir = Path(sys.executable).parent
        argv = [str(bindir / "gunicorn"), "--no-control-socket", "--bind",
                f"127.0.0.1:{port}", "--workers", "1", "--timeout", "300",
                "--graceful-timeout", "3", "--pythonpath", str(shim_dir),
                "--chdir", str(shim_dir), f"gen_{service}_wsgi:application"]
        with open(self.log, "ab") as out:
            # the shim's dist-info must be on sys.path before neutron loads its drivers
            env = {**os.environ, "PYTHONPATH": str(SHIM), **env}
            self.popen = subprocess.Popen(argv, env=env, stdout=out,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                break
            try:
                call("GET", self.url + ready, expect=range(100, 500))
                return
            except (OSError, RuntimeError):
                time.sleep(0.3)
        self.stop()
        tail = self.log.read_text(errors="replace").splitlines()[-8:]
        raise RuntimeError(f"{service} API did not start: {' | '.join(tail)}")

    def stop(self) -> None:
        # gunicorn runs in its own session: its group holds the workers
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)


# -- the driver -------------------------------------------------------------------

def run_phase(work: Path, phase: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(SHIM)}
    started = time.monotonic()
    result = subprocess.run([sys.executable, __file__, phase, str(work)], env=env,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=900)
    (work / f"phase-{phase}.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        lines = [ln for ln in result.stderr.splitlines() if "eventlet" not in ln.lower()]
        raise RuntimeError(f"phase {phase} failed (exit {result.returncode}): "
                           + " | ".join(lines[-12:]))
    log(f"phase {phase}: {time.monotonic() - started:.1f}s")


def tool(work: Path, project: str, *args: str) -> str:
    etc = work / "etc"
    files = {"nova": ["nova.conf"], "neutron": ["neutron.conf", "ml2_conf.ini"],
             "cinder": ["cinder.conf"]}[project]
    argv = [str(Path(sys.executable).parent / args[0])]
    for name in files:
        argv += ["--config-file", str(etc / name)]
    result = subprocess.run(argv + list(args[1:]), capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=600)
    name = " ".join(args[:3])  # never the rest: a database URL holds a password
    with open(work / "tools.log", "a") as fh:
        fh.write(f"== {name}: exit {result.returncode}\n{result.stdout}{result.stderr}\n")
    # discover_hosts/online_data_migrations: 1 means "more to do / found some"
    if result.returncode not in (0, 1):
        lines = [ln for ln in (result.stdout + result.stderr).splitlines()
                 if ln.strip() and "eventlet" not in ln.lower()]
        raise RuntimeError(f"{name} failed ({result.returncode}): {' | '.join(lines[-4:])}")
    return result.stdout


def state_path(work: Path) -> Path:
    return work / "state.json"


def load_state(work: Path) -> dict:
    return json.loads(state_path(work).read_text())


def save_state(work: Path, state: dict) -> None:
    state_path(work).write_text(json.dumps(state, indent=1, sort_keys=True))


def keystone(work: Path, state: dict) -> None:
    etc = str(work / "etc")
    api = Api(work, "keystone",
              {"OS_KEYSTONE_CONFIG_DIR": etc, "OS_KEYSTONE_CONFIG_FILES": "keystone.conf"},
              "/v3")
    try:
        password = (work / "admin-password").read_text().strip()
        _body, head = call("POST", api.url + "/v3/auth/tokens", {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"id": "default"}, "password": password}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
        h = {"X-Auth-Token": head["X-Subject-Token"]}
        v3 = api.url + "/v3"
        project = call("POST", v3 + "/projects", {"project": {
            "name": "demo", "domain_id": "default", "description": "the old cloud's users"}},
            h)[0]["project"]["id"]
        user = call("POST", v3 + "/users", {"user": {
            "name": "demo", "domain_id": "default", "default_project_id": project,
            "password": uuid.uuid4().hex}}, h)[0]["user"]["id"]
        roles = call("GET", v3 + "/roles?name=member", None, h)[0]["roles"]
        call("PUT", f"{v3}/projects/{project}/users/{user}/roles/{roles[0]['id']}", None, h)
        # the old controller's services: internal/admin on its name, public on its
        # external name; one public endpoint behind a proxy names it in the path only
        catalog = [
            ("compute", "nova", 8774, "/v2.1"),
            ("network", "neutron", 9696, ""),
            ("volumev3", "cinderv3", 8776, "/v3/%(project_id)s"),
            ("placement", "placement", 8778, ""),
            ("image", "glance", 9292, ""),
        ]
        for kind, name, port, path in catalog:
            svc = call("POST", v3 + "/services", {"service": {"type": kind, "name": name}},
                       h)[0]["service"]["id"]
            urls = {"internal": f"http://{OLD}:{port}{path}",
                    "admin": f"http://{OLD}:{port}{path}",
                    "public": f"https://{OLD}.cloud.example:{port}{path}"}
            if kind == "image":
                urls["public"] = f"https://cloud.example/{OLD}/image"
            for interface, url in urls.items():
                call("POST", v3 + "/endpoints", {"endpoint": {
                    "service_id": svc, "interface": interface, "url": url,
                    "region_id": "RegionOne"}}, h)
        # keystone's own endpoints pointed at the old controller too
        for ep in call("GET", v3 + "/endpoints", None, h)[0]["endpoints"]:
            if ep["url"].startswith("http://controller.domain:5000"):
                host = f"{OLD}.cloud.example" if ep["interface"] == "public" else OLD
                call("PATCH", f"{v3}/endpoints/{ep['id']}", {"endpoint": {
                    "url": f"http://{host}:5000/v3/"}}, h)
        state.update(project_id=project, user_id=user)
    finally:
        api.stop()


def neutron_rest(work: Path, state: dict) -> None:
    etc = str(work / "etc")
    api = Api(work, "neutron",
              {"OS_NEUTRON_CONFIG_DIR": etc,
               "OS_NEUTRON_CONFIG_FILES": "neutron.conf;ml2_conf.ini"}, "/")
    try:
        v2 = api.url + "/v2.0"
        project = state["project_id"]
        nets, subnets = {}, {}
        for i, (name, kind, phys, sid) in enumerate(NETWORKS):
            body = {"name": name, "project_id": project,
                    "provider:network_type": kind, "provider:physical_network": phys}
            if sid is not None:
                body["provider:segmentation_id"] = sid
            if name == "floating":
                body["router:external"] = True
            nets[name] = call("POST", v2 + "/networks", {"network": body})[0]["network"]["id"]
            subnets[name] = call("POST", v2 + "/subnets", {"subnet": {
                "network_id": nets[name], "project_id": project, "ip_version": 4,
                "cidr": f"10.{i}.0.0/24", "gateway_ip": f"10.{i}.0.1",
                "enable_dhcp": True, "name": f"{name}-v4"}})[0]["subnet"]
        state["networks"] = nets
        state["subnets"] = {n: {"id": s["id"], "cidr": s["cidr"], "gateway": s["gateway_ip"]}
                            for n, s in subnets.items()}
        # the agents must be alive before anything binds: they report through the plugin
        run_phase(work, "neutron-agents")
        ports = {}

        def port(key: str, net: str, host: str, owner: str, device: str) -> dict:
            p = call("POST", v2 + "/ports", {"port": {
                "network_id": nets[net], "project_id": project, "device_owner": owner,
                "device_id": device, "binding:host_id": host, "name": key}})[0]["port"]
            if p["binding:vif_type"] != "bridge":
                raise RuntimeError(f"port {key} bound {p['binding:vif_type']} on {host}")
            ports[key] = {"id": p["id"], "mac": p["mac_address"], "network": net,
                          "ip": p["fixed_ips"][0]["ip_address"], "host": host}
            return p

        # the old controller's DHCP agent served every network
        for net, _k, _p, _s in NETWORKS:
            port(f"dhcp/{net}", net, OLD, "network:dhcp",
                 f"dhcp{uid('dhcp-agent/' + OLD)}-{nets[net]}")
        for name, (_cell, host, net, _vm, _task) in INSTANCES.items():
            if host is None or name in DELETED_INSTANCES:
                continue
            port(f"vm/{name}", net, host, "compute:nova", uid(f"instance/{name}"))
        # a router on the old controller's L3 agent: gateway on floating, one interface
        router = call("POST", v2 + "/routers", {"router": {
            "name": "router1", "project_id": project,
            "external_gateway_info": {"network_id": nets["floating"]}}})[0]["router"]
        call("PUT", f"{v2}/routers/{router['id']}/add_router_interface",
             {"subnet_id": subnets["selfservice-1137"]["id"]})
        for p in call("GET", f"{v2}/ports?device_id={router['id']}")[0]["ports"]:
            bound = call("PUT", f"{v2}/ports/{p['id']}",
                         {"port": {"binding:host_id": OLD}})[0]["port"]
            ports[f"router/{p['device_owner'].split(':')[1]}"] = {
                "id": p["id"], "mac": p["mac_address"], "host": OLD,
                "vif_type": bound["binding:vif_type"]}
        state["router"] = router["id"]
        state["ports"] = ports
        save_state(work, state)
        run_phase(work, "neutron-inactive")
    finally:
        api.stop()


def placement(work: Path, state: dict) -> None:
    api = Api(work, "placement",
              {"OS_PLACEMENT_CONFIG_DIR": str(work / "etc")}, "/")
    try:
        h = {"X-Auth-Token": "admin", "OpenStack-API-Version": "placement 1.39"}
        for node in state["compute_nodes"].values():
            call("POST", api.url + "/resource_providers",
                 {"name": node["name"], "uuid": node["uuid"]}, h)
            call("PUT", f"{api.url}/resource_providers/{node['uuid']}/inventories", {
                "resource_provider_generation": 0, "inventories": {
                    "VCPU": {"total": 8, "allocation_ratio": 4.0},
                    "MEMORY_MB": {"total": 16384, "reserved": 512},
                    "DISK_GB": {"total": 100}}}, h)
        usage = {"VCPU": 1, "MEMORY_MB": 512, "DISK_GB": 1}
        cn = state["compute_nodes"]

        def allocate(consumer: str, host: str, kind: str = "INSTANCE") -> None:
            call("PUT", f"{api.url}/allocations/{consumer}", {
                "allocations": {cn[host]["uuid"]: {"resources": usage}},
                "project_id": state["project_id"], "user_id": state["user_id"],
                "consumer_generation": None, "consumer_type": kind}, h)

        for name, (_cell, host, _net, _vm, _task) in INSTANCES.items():
            if host is None or name in DELETED_INSTANCES:
                continue
            if name == "vm-live":
                # nova's live migration: the migration holds the source's resources,
                # the instance already holds the destination's
                allocate(state["migration_uuid"], host, "MIGRATION")
                allocate(uid(f"instance/{name}"), "compute02")
            else:
                allocate(uid(f"instance/{name}"), host)
    finally:
        api.stop()


def drive(work: Path) -> None:
    etc = work / "etc"
    (etc / "ml2_conf.ini").write_text(OLD_ML2)
    with open(etc / "placement.conf", "a") as fh:
        fh.write("\n[api]\nauth_strategy = noauth2\n")
    with open(etc / "nova.conf", "a") as fh:
        fh.write("\n[api]\nauth_strategy = noauth2\n")
    state: dict = {}
    started = time.monotonic()
    keystone(work, state)
    save_state(work, state)
    log(f"keystone: {time.monotonic() - started:.1f}s")
    neutron_rest(work, state)
    started = time.monotonic()
    # a second cell, created the way an operator does it
    tool(work, "nova", "nova-manage", "cell_v2", "create_cell", "--name", "cell2",
         "--database_connection", (work / "cell2-url").read_text().strip(),
         "--transport-url", "fake://cell2/")  # one queue per cell
    log(f"create_cell: {time.monotonic() - started:.1f}s")
    run_phase(work, "nova")
    state = load_state(work)
    started = time.monotonic()
    tool(work, "nova", "nova-manage", "cell_v2", "discover_hosts", "--verbose")
    tool(work, "nova", "nova-manage", "db", "online_data_migrations")
    log(f"discover_hosts + online_data_migrations: {time.monotonic() - started:.1f}s")
    started = time.monotonic()
    placement(work, state)
    log(f"placement: {time.monotonic() - started:.1f}s")
    run_phase(work, "cinder")


# -- phases in child processes (one project's code each) ----------------------------

def phase_neutron_agents(work: Path) -> None:
    from neutron.common import config as n_config
    from neutron_lib import context as n_context

    plugin = _neutron_plugin(work, n_config)
    ctx = n_context.get_admin_context()
    mappings = {p: f"eth-{p}" for p in PHYSNETS}

    def report(host: str, kind: str, binary: str, topic: str, conf: dict) -> None:
        plugin.create_or_update_agent(ctx, {
            "agent_type": kind, "binary": binary, "host": host, "topic": topic,
            "configurations": conf, "start_flag": True, "availability_zone": "nova"})

    for host in LB_HOSTS:
        report(host, "Linux bridge agent", "neutron-linuxbridge-agent", "N/A",
               {"interface_mappings": mappings, "bridge_mappings": {},
                "extensions": [], "devices": 0})
    report(OLD, "DHCP agent", "neutron-dhcp-agent", "dhcp_agent",
           {"dhcp_driver": "neutron.agent.linux.dhcp.Dnsmasq", "networks": len(NETWORKS)})
    report(OLD, "L3 agent", "neutron-l3-agent", "l3_agent",
           {"agent_mode": "legacy", "routers": 1, "interface_driver": "linuxbridge"})
    report(OLD, "Metadata agent", "neutron-metadata-agent", "N/A",
           {"metadata_proxy_socket": "/var/lib/neutron/metadata_proxy"})
    # the new cloud's agents, started before the cutover
    for host in OVS_HOSTS:
        report(host, "Open vSwitch agent", "neutron-openvswitch-agent", "N/A",
               {"bridge_mappings": {"provider": "br-provider"}, "tunnel_types": ["vxlan"],
                "integration_bridge": "br-int", "ovs_hybrid_plug": False})


def _neutron_plugin(work: Path, n_config):
    from neutron import manager
    from neutron_lib import rpc as n_rpc
    from neutron_lib.plugins import directory
    from oslo_config import cfg

    etc = work / "etc"
    n_config.register_common_config_options()
    cfg.CONF(["--config-file", str(etc / "neutron.conf"),
              "--config-file", str(etc / "ml2_conf.ini")], project="neutron")
    n_rpc.init(cfg.CONF)  # transport_url = fake://: notifications go nowhere
    manager.init()
    return directory.get_plugin()


def phase_neutron_inactive(work: Path) -> None:
    from neutron.common import config as n_config
    from neutron_lib import context as n_context

    plugin = _neutron_plugin(work, n_config)
    state = load_state(work)
    port = state["ports"]["vm/vm-live"]["id"]
    # what nova's conductor asks for before a live migration: a binding on the target
    binding = plugin.create_port_binding(n_context.get_admin_context(), port,
                                         {"binding": {"host": "compute02", "vnic_type": "normal",
                                                      "profile": {}}})
    if binding["status"] != "INACTIVE" or binding["vif_type"] != "bridge":
        raise RuntimeError(f"unexpected inactive binding {binding}")


def phase_nova(work: Path) -> None:
    from nova import config as nova_config
    from nova import context as nova_context
    from nova import objects
    from nova.network import model

    objects.register_all()
    nova_config.parse_args(["nova", "--config-file", str(work / "etc" / "nova.conf")])
    state = load_state(work)
    ctx = nova_context.get_admin_context()
    cells = {c.name: c for c in objects.CellMappingList.get_all(ctx)}
    cells["cell0"] = next(c for c in cells.values() if c.is_cell0())
    flavor = objects.Flavor(ctx, name="m1.small", memory_mb=512, vcpus=1, root_gb=1,
                            ephemeral_gb=0, flavorid="2", swap=0, rxtx_factor=1.0,
                            vcpu_weight=0, disabled=False, is_public=True, extra_specs={})
    flavor.create()
    nodes = {}
    for cell_name in ("cell1", "cell2"):
        with nova_context.target_cell(ctx, cells[cell_name]) as cctx:
            # the old controller's control services registered in every cell
            for binary, topic in (("nova-scheduler", "scheduler"),
                                  ("nova-conductor", "conductor")):
                objects.Service(cctx, host=OLD, binary=binary, topic=topic).create()
            for host, cell in COMPUTES.items():
                if cell != cell_name:
                    continue
                # Service sets its own version (SERVICE_VERSION), as nova-compute does
                svc = objects.Service(cctx, host=host, binary="nova-compute", topic="compute")
                svc.create()
                node = objects.ComputeNode(
                    cctx, host=host, hypervisor_hostname=f"{host}.domain",
                    uuid=uid(f"node/{host}"), service_id=svc.id, vcpus=8, memory_mb=16384,
                    local_gb=100, vcpus_used=0, memory_mb_used=0, local_gb_used=0,
                    hypervisor_type="QEMU", hypervisor_version=8002000, cpu_info="{}",
                    disk_available_least=99, free_ram_mb=16384, free_disk_gb=100,
                    current_workload=0, running_vms=0, cpu_allocation_ratio=4.0,
                    ram_allocation_ratio=1.0, disk_allocation_ratio=1.0, host_ip="127.0.0.1",
                    supported_hv_specs=[], pci_device_pools=objects.PciDevicePoolList(),
                    stats={})
                node.create()
                nodes[host] = {"uuid": node.uuid, "name": node.hypervisor_hostname,
                               "id": node.id}
    ports = state["ports"]
    for name, (cell_name, host, net, vm_state, task_state) in INSTANCES.items():
        with nova_context.target_cell(ctx, cells[cell_name]) as cctx:
            inst = objects.Instance(
                cctx, uuid=uid(f"instance/{name}"), user_id=state["user_id"],
                project_id=state["project_id"], display_name=name, hostname=name,
                host=host, node=nodes[host]["name"] if host else None, launched_on=host,
                compute_id=nodes[host]["id"] if host else None,
                vm_state=vm_state, task_state=task_state,
                power_state=1 if vm_state == "active" else (4 if host else 0),
                availability_zone="nova" if host else None, flavor=flavor,
                instance_type_id=flavor.id, memory_mb=512, vcpus=1, root_gb=1,
                ephemeral_gb=0, image_ref=uid("image/debian"), metadata={},
                system_metadata={},
                # booted on its host once (nova's API acts only on a launched instance)
                launched_at=LAUNCHED if host else None,
                # nova's API gives every instance an empty cache, cell0's too
                # (API._populate_instance_for_create); nova-api lists none without
                info_cache=objects.InstanceInfoCache(network_info=model.NetworkInfo()))
            inst.create()
            if host:
                p = ports.get(f"vm/{name}") or {
                    "id": uid(f"port/{name}"), "mac": "fa:16:3e:00:00:99", "network": net,
                    "ip": "10.0.0.99"}
                sub = state["subnets"][p["network"]]
                vif = model.VIF(
                    id=p["id"], address=p["mac"], type="bridge",
                    details={"port_filter": True, "connectivity": "l2"},
                    devname=("tap" + p["id"])[:14], vnic_type="normal", active=True,
                    network=model.Network(
                        id=state["networks"][p["network"]],
                        bridge=("brq" + state["networks"][p["network"]])[:14],
                        label=p["network"], should_create_bridge=True,
                        tenant_id=state["project_id"], mtu=1500,
                        subnets=[model.Subnet(
                            cidr=sub["cidr"], gateway=model.IP(address=sub["gateway"],
                                                               type="gateway"),
                            ips=[model.FixedIP(address=p["ip"])])]))
                cache = objects.InstanceInfoCache.get_by_instance_uuid(cctx, inst.uuid)
                cache.network_info = model.NetworkInfo([vif])
                cache.save()
            # what nova's API stores for the scheduler at boot (API._provision_instances);
            # a move of the instance reads it back
            objects.RequestSpec.from_components(
                ctx, inst.uuid, {"id": uid("image/debian"), "properties": {}}, flavor, None,
                objects.InstancePCIRequests(requests=[]), {}, None, inst.availability_zone,
                project_id=inst.project_id, user_id=inst.user_id).create()
            objects.InstanceMapping(ctx, instance_uuid=inst.uuid, cell_mapping=cells[cell_name],
                                    project_id=inst.project_id, user_id=inst.user_id).create()
            if name == "vm-live":
                migration = objects.Migration(
                    cctx, uuid=uid("migration/vm-live"), instance_uuid=inst.uuid,
                    source_compute=host, dest_compute="compute02",
                    source_node=nodes[host]["name"], dest_node=nodes["compute02"]["name"],
                    dest_compute_id=nodes["compute02"]["id"],
                    dest_host="127.0.0.1", migration_type="live-migration",
                    status="running", old_instance_type_id=flavor.id,
                    new_instance_type_id=flavor.id)
                migration.create()
                state["migration_uuid"] = migration.uuid
            if name in DELETED_INSTANCES:
                inst.destroy()
    state["compute_nodes"] = nodes
    save_state(work, state)


def phase_cinder(work: Path) -> None:
    from cinder import context as c_context
    from cinder import objects
    from cinder.backup import rpcapi as backup_rpcapi
    from cinder.common import config  # noqa: F401  (registers the options)
    from cinder.db import api as db
    from cinder.scheduler import rpcapi as scheduler_rpcapi
    from cinder.volume import rpcapi as volume_rpcapi
    from cinder.volume import volume_types
    from oslo_config import cfg

    objects.register_all()
    cfg.CONF(["--config-file", str(work / "etc" / "cinder.conf")], project="cinder")
    state = load_state(work)
    ctx = c_context.get_admin_context()
    obj_version = objects.base.OBJ_VERSIONS.get_current()
    rpc = {"cinder-volume": volume_rpcapi.VolumeAPI.RPC_API_VERSION,
           "cinder-scheduler": scheduler_rpcapi.SchedulerAPI.RPC_API_VERSION,
           "cinder-backup": backup_rpcapi.BackupAPI.RPC_API_VERSION}
    services = {}
    for host, binary in ((OLD, "cinder-scheduler"), (OLD, "cinder-backup"),
                         (f"{OLD}@rbd", "cinder-volume"), (f"{OLD}@rbd2", "cinder-volume"),
                         (f"{OLD}@lvm", "cinder-volume"),
                         ("old-control-bak@rbd", "cinder-volume"),
                         # the new controller's cinder-volume, started before the cutover
                         ("controller@rbd", "cinder-volume")):
        svc = objects.Service(ctx, host=host, binary=binary, topic=binary,
                              availability_zone="nova", uuid=uid(f"cinder-service/{host}/"
                                                                 f"{binary}"),
                              rpc_current_version=rpc[binary],
                              object_current_version=obj_version, report_count=1)
        svc.create()
        services[host] = svc
    services[f"{OLD}@lvm"].destroy()  # a backend the old cloud retired
    vtype = volume_types.create(ctx, "rbd", {"volume_backend_name": "rbd"})
    project, user = state["project_id"], state["user_id"]

    def volume(name: str, host: str | None, status: str, **extra) -> str:
        backend = host.split("#")[0] if host else None
        values = {"id": uid(f"volume/{name}"), "display_name": name, "size": 1,
                  "status": status, "attach_status": "detached", "host": host,
                  "service_uuid": services[backend].uuid if backend else None,
                  "availability_zone": "nova", "volume_type_id": vtype["id"],
                  "project_id": project, "user_id": user, "use_quota": True}
        values.update(extra)
        return db.volume_create(ctx, values)["id"]

    v1 = volume("v1", f"{OLD}@rbd#rbd", "available")
    volume("v2", f"{OLD}@rbd#rbd", "available")
    volume("v3", f"{OLD}@rbd2#pool-b", "available")
    volume("v-bak", "old-control-bak@rbd#rbd", "available")
    volume("v-never", None, "error")  # the scheduler found no backend: never had a host
    db.volume_destroy(ctx, volume("v-gone", f"{OLD}@rbd#rbd", "available"))
    # the image-volume cache: a volume of the internal tenant, and its entry
    image = uid("image/debian")
    cached = volume(f"image-{image}", f"{OLD}@rbd#rbd", "available",
                    project_id=uid("internal-tenant"), user_id=uid("internal-user"),
                    use_quota=False)
    db.image_volume_cache_create(ctx, f"{OLD}@rbd#rbd", None, image,
                                 __import__("datetime").datetime(2025, 6, 1), cached, 1)
    # vm-a's volume, attached the way nova's attachment API leaves it
    connector = {"platform": "x86_64", "os_type": "linux", "ip": "127.0.0.11",
                 "host": "compute01", "multipath": False, "do_local_attach": False,
                 "initiator": "iqn.1993-08.org.debian:01:compute01", "system uuid": None}
    att = db.volume_attach(ctx, {"volume_id": v1, "instance_uuid": uid("instance/vm-a"),
                                 "attach_status": "attaching"})
    db.volume_attachment_update(ctx, att["id"], {
        "attached_host": "compute01", "mountpoint": "/dev/vdb", "attach_status": "attached",
        "attach_mode": "rw", "connector": json.dumps(connector), "connection_info": json.dumps(
            {"driver_volume_type": "rbd", "data": {"name": f"volumes/volume-{v1}",
                                                   "hosts": ["127.0.0.21"]}})})
    db.volume_update(ctx, v1, {"status": "in-use", "attach_status": "attached"})
    for name, deleted in (("b1", False), ("b-gone", True)):
        backup = db.backup_create(ctx, {
            "id": uid(f"backup/{name}"), "volume_id": uid("volume/v2"), "host": OLD,
            "status": "available", "project_id": project, "user_id": user, "size": 1,
            "service": "cinder.backup.drivers.ceph.CephBackupDriver",
            "display_name": name, "availability_zone": "nova"})
        if deleted:
            db.backup_destroy(ctx, backup["id"])


PHASES = {"neutron-agents": phase_neutron_agents, "neutron-inactive": phase_neutron_inactive,
          "nova": phase_nova, "cinder": phase_cinder}


def main() -> int:
    phase, work = sys.argv[1], Path(sys.argv[2])
    if phase == "all":
        drive(work)
    else:
        PHASES[phase](work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
