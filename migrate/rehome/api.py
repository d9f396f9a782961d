"""The new cloud through its APIs (openstacksdk, a clouds.yaml entry).

openstacksdk is heavy: this module is imported only on the rehome code path.
Each worker thread gets its own connection (a keystoneauth session is not
meant to be shared across threads while it re-authenticates).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from pacestack.errors import ConfigError, RuntimeFailure

_local = threading.local()

NORMAL_STATES = ("ACTIVE", "SHUTOFF")


def _connect(cloud_name: str | None):
    import openstack
    import openstack.config.exceptions

    try:
        return openstack.connect(cloud=cloud_name)
    except openstack.config.exceptions.OpenStackConfigException as exc:
        raise ConfigError(f"--os-cloud {cloud_name}: {str(exc).splitlines()[0]}") from None


class NewCloud:
    """The calls rehome makes; every failure becomes one line naming the call."""

    def __init__(self, cloud_name: str | None, wait_timeout: int = 300):
        self.cloud_name = cloud_name
        self.wait_timeout = wait_timeout
        self.conn  # noqa: B018 - fail early on a bad clouds.yaml entry
        # how long nova took for each action so far in this batch, and when each
        # server's pending action was sent: waits poll when it should be done
        self._lock = threading.Lock()
        self._took: dict[str, float] = {}
        self._sent: dict[str, tuple[str, float]] = {}

    def _sent_now(self, uuid: str, action: str) -> None:
        with self._lock:
            self._sent[uuid] = (action, time.monotonic())

    def _learn(self, action: str, seconds: float) -> None:
        with self._lock:
            old = self._took.get(action)
            self._took[action] = seconds if old is None else 0.7 * old + 0.3 * seconds

    @property
    def conn(self):
        key = f"conn-{id(self)}"
        conn = getattr(_local, key, None)
        if conn is None:
            conn = _connect(self.cloud_name)
            setattr(_local, key, conn)
        return conn

    def _call(self, what: str, fn, *args, **kw) -> Any:
        import openstack.exceptions as exc

        try:
            return fn(*args, **kw)
        except exc.ResourceNotFound:
            return None
        except exc.SDKException as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise RuntimeFailure(f"{what}: {msg}") from None

    # -- compute ---------------------------------------------------------------
    def server(self, uuid: str):
        return self._call(f"GET server {uuid}", self.conn.compute.get_server, uuid)

    def find_server(self, name_or_id: str):
        """By UUID or unique name, in any project; None when there is none."""
        import openstack.exceptions as exc

        try:
            return self.conn.compute.find_server(name_or_id, ignore_missing=True,
                                                 all_projects=True)
        except exc.DuplicateResource:
            raise ConfigError(f"instance name {name_or_id!r} is not unique: give its UUID") \
                from None
        except exc.SDKException as e:
            raise RuntimeFailure(f"find server {name_or_id}: {str(e).splitlines()[0]}") from None

    def compute_services(self) -> list:
        return list(self._call("GET os-services", self.conn.compute.services))

    def servers_on(self, host: str) -> list:
        return list(self._call(f"GET servers on {host}", self.conn.compute.servers,
                               all_projects=True, compute_host=host))

    def stop(self, uuid: str) -> None:
        self._call(f"stop server {uuid}", self.conn.compute.stop_server, uuid)
        self._sent_now(uuid, "stop")

    def start(self, uuid: str) -> None:
        self._call(f"start server {uuid}", self.conn.compute.start_server, uuid)
        self._sent_now(uuid, "start")

    def reboot_hard(self, uuid: str) -> None:
        self._call(f"reboot --hard server {uuid}", self.conn.compute.reboot_server, uuid, "HARD")
        self._sent_now(uuid, "reboot")

    def wait_status(self, uuid: str, status: str | tuple[str, ...],
                    timeout: float | None = None):
        """Poll until the server has (one of) status and no task; ERROR ends the wait."""
        wanted = (status,) if isinstance(status, str) else status
        deadline = time.monotonic() + (timeout or self.wait_timeout)
        with self._lock:
            action, sent = self._sent.pop(uuid, (None, None))
            took = self._took.get(action) if action else None
        # Every poll is a GET on nova-api, the busiest service of a batch: the first
        # one when this action usually ends (learnt from earlier instances of the
        # batch), then short steps; a fixed backoff polls too early and overshoots.
        if took and sent is not None:
            time.sleep(max(0.0, sent + 0.8 * took - time.monotonic()))
        delay = 0.2 if took else 0.3
        while True:
            asked = time.monotonic()
            s = self.server(uuid)
            if s is None:
                raise RuntimeFailure(f"server {uuid} disappeared while waiting for {status}")
            if s.status in wanted and not s.task_state:
                if action and sent is not None:
                    # when the poll was sent: a poll that finds it done at once
                    # moves the next first poll earlier
                    self._learn(action, asked - sent)
                return s
            if s.status == "ERROR":
                fault = (s.fault or {}).get("message", "") if hasattr(s, "fault") else ""
                raise RuntimeFailure(f"server {uuid} went to ERROR waiting for {status}: {fault}")
            if time.monotonic() > deadline:
                raise RuntimeFailure(f"server {uuid} is {s.status}/{s.task_state}, not {status} "
                                     f"after {timeout or self.wait_timeout}s")
            time.sleep(delay)
            delay = min(delay * 1.3, 1.0)

    def wait_idle(self, uuid: str, timeout: float | None = None):
        """The server once no task runs on it (a killed run may have left one going)."""
        deadline = time.monotonic() + (timeout or self.wait_timeout)
        while True:
            s = self.server(uuid)
            if s is None:
                raise RuntimeFailure(f"server {uuid} disappeared")
            if not s.task_state:
                return s
            if time.monotonic() > deadline:
                raise RuntimeFailure(f"server {uuid} still has task {s.task_state}")
            time.sleep(0.3)

    def interfaces(self, uuid: str) -> list:
        return list(self._call(f"GET os-interface of {uuid}", self.conn.compute.server_interfaces,
                               uuid))

    def attach(self, uuid: str, port_id: str) -> None:
        self._call(f"attach port {port_id} to {uuid}", self.conn.compute.create_server_interface,
                   uuid, port_id=port_id)

    def detach(self, uuid: str, port_id: str) -> None:
        self._call(f"detach port {port_id} from {uuid}",
                   self.conn.compute.delete_server_interface, port_id, server=uuid)

    # -- network ---------------------------------------------------------------
    def port(self, port_id: str):
        return self._call(f"GET port {port_id}", self.conn.network.get_port, port_id)

    def ports(self, **query) -> list:
        return list(self._call("GET ports", self.conn.network.ports, **query))

    def network(self, net_id: str):
        return self._call(f"GET network {net_id}", self.conn.network.get_network, net_id)

    def set_mtu(self, net_id: str, mtu: int) -> None:
        self._call(f"set mtu of network {net_id}", self.conn.network.update_network, net_id,
                   mtu=mtu)

    def bind(self, port_id: str, host: str):
        return self._call(f"bind port {port_id} to {host}", self.conn.network.update_port,
                          port_id, binding_host_id=host)

    def create_port(self, **attrs):
        return self._call(f"create port {attrs.get('mac_address')}",
                          self.conn.network.create_port, **attrs)
