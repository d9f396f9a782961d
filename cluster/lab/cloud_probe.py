"""The lab cloud's probe: run inside a lab host by the OpenStack venv's python.

    python cloud_probe.py apis SECONDS     # poll every API through the VIP
    python cloud_probe.py watch OUT        # every API's answers as JSON lines, until SIGTERM
    python cloud_probe.py sequence [--keep]
                                           # network, port, image, server, volume attached
                                           # and detached; then deletes what it made
                                           # (--keep: leaves that to `cleanup`)
    python cloud_probe.py cleanup          # deletes what any sequence made
    python cloud_probe.py inventory        # how many of each of those exist
    python cloud_probe.py agents           # Neutron's agents (type, host, alive)
    python cloud_probe.py mq-put N [Q] | mq-count [Q] | mq-drop [Q]
                                           # messages in a quorum queue behind the VIP

Credentials come from the environment (OS_AUTH_URL, OS_PASSWORD...), never argv.
Prints one JSON object on stdout. Standalone: imports only the venv's libraries.
"""

from __future__ import annotations

import json
import os
import sys
import time

# API -> (catalog type, authenticated read that needs the whole chain behind it)
APIS = {
    "keystone": ("identity", "/auth/tokens"),
    "glance": ("image", "/v2/images"),
    "placement": ("placement", "/resource_providers"),
    "nova": ("compute", "/servers"),
    "neutron": ("network", "/v2.0/networks"),
    "cinder": ("volumev3", "/volumes"),
}


def session():
    from keystoneauth1 import session as ks_session
    from keystoneauth1.identity import v3

    auth = v3.Password(auth_url=os.environ["OS_AUTH_URL"], username=os.environ["OS_USERNAME"],
                       password=os.environ["OS_PASSWORD"],
                       project_name=os.environ["OS_PROJECT_NAME"],
                       user_domain_name="Default", project_domain_name="Default")
    return ks_session.Session(auth=auth, timeout=3)


def api_urls(sess) -> dict[str, str]:
    """Each API's authenticated read, at its public endpoint from the catalog."""
    return {name: sess.get_endpoint(service_type=kind, interface="public").rstrip("/") + path
            for name, (kind, path) in APIS.items()}


def read_headers(name: str, token: str) -> dict[str, str]:
    """The headers of ``name``'s authenticated read: the token, and the microversion
    for Placement only (Cinder refuses another service's)."""
    headers = {"X-Auth-Token": token, "X-Subject-Token": token}
    if name == "placement":
        headers["OpenStack-API-Version"] = "placement 1.0"
    return headers


def apis(limit: float) -> dict:
    """Wall-clock time (time.time()) each API first answered an authenticated read
    again; a token and the catalog are taken before the fault."""
    import requests

    sess = session()
    token = sess.get_token()
    urls = api_urls(sess)
    print(json.dumps({"ready": time.time()}), flush=True)
    answered: dict[str, float | None] = dict.fromkeys(APIS)
    errors: dict[str, str] = {}
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and None in answered.values():
        for name, url in urls.items():
            if answered[name] is not None:
                continue
            try:
                res = requests.get(url, headers=read_headers(name, token), timeout=2)
                if res.status_code == 200:
                    answered[name] = time.time()
                else:
                    errors[name] = f"HTTP {res.status_code} {url}: {res.text[:120]}"
            except requests.RequestException as exc:
                errors[name] = type(exc).__name__
        time.sleep(0.2)
    return {"answered": answered, "last_error": errors}


def watch(out: str, interval: float = 0.25) -> None:
    """Every API's authenticated read, each in its own thread, as JSON lines
    ({"kind": "api", "name", "ok", "t"}) in ``out`` until SIGTERM: the drill reads
    when each answered again for good. The token and the catalog are taken at start
    (before the fault); a refused token is renewed once the identity API answers."""
    import signal
    import threading

    import requests

    sess = session()
    urls = api_urls(sess)
    state = {"token": sess.get_token()}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    lock = threading.Lock()
    fh = open(out, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - closed at the end

    def log(**event) -> None:
        with lock:
            fh.write(json.dumps(event) + "\n")

    def poll(name: str, url: str) -> None:
        while not stop.is_set():
            t = time.time()
            error = None
            try:
                code = requests.get(url, headers=read_headers(name, state["token"]),
                                    timeout=2).status_code
            except requests.RequestException as exc:
                code, error = None, type(exc).__name__
            if code == 401:
                try:
                    sess.invalidate()
                    state["token"] = sess.get_token()
                except Exception:  # noqa: BLE001, S110 - Keystone down: its own probe says so
                    pass
            # the answer and how long it took: a slow recovery reads from these
            log(kind="api", name=name, ok=code == 200, t=t, code=code, error=error,
                took=round(time.time() - t, 3))
            stop.wait(interval)

    threads = [threading.Thread(target=poll, args=item, daemon=True) for item in urls.items()]
    for th in threads:
        th.start()
    log(kind="started", t=time.time())
    print(json.dumps({"ready": time.time()}), flush=True)
    while not stop.is_set():
        stop.wait(0.5)
    for th in threads:
        th.join(5)
    fh.close()


PREFIX = "probe-"
# what the sequence creates, as (proxy, list call, delete call) in deletion order:
# the server first (it holds the port's binding and the volume's attachment), the
# network last (its subnet and ports go with it)
KINDS = (("compute", "servers", "delete_server"),
         ("block_storage", "volumes", "delete_volume"),
         ("network", "ports", "delete_port"),
         ("network", "subnets", "delete_subnet"),
         ("network", "networks", "delete_network"),
         ("image", "images", "delete_image"))


def connect():
    import openstack

    return openstack.connect(auth_url=os.environ["OS_AUTH_URL"],
                             username=os.environ["OS_USERNAME"],
                             password=os.environ["OS_PASSWORD"],
                             project_name=os.environ["OS_PROJECT_NAME"],
                             user_domain_name="Default", project_domain_name="Default",
                             region_name="RegionOne", compute_api_version="2.37",
                             # a request to an address nobody holds fails, not hangs
                             api_timeout=15)


def inventory(conn=None) -> dict:
    """How many of each kind the sequence creates exist now (every name): a
    sequence that cleans up leaves these counts as it found them."""
    conn = conn or connect()
    return {f"{proxy}.{kind}": sum(1 for _ in getattr(getattr(conn, proxy), kind)())
            for proxy, kind, _delete in KINDS}


def agents() -> list[dict]:
    """Neutron's agents as `openstack network agent list` shows them."""
    return [{"type": a.agent_type, "host": a.host, "alive": a.is_alive,
             "binary": a.binary} for a in connect().network.agents()]


# how often a wait polls a server's or a volume's status: a step's end is seen
# within this, and the APIs are not flooded on two shared cores
POLL = 0.3


class StepFailed(Exception):
    """A step of the sequence failed: its name, and what the steps that ended took."""

    def __init__(self, step: str, exc: BaseException, steps: dict, began: dict):
        super().__init__(f"{step}: {type(exc).__name__}: {exc}")
        self.step, self.steps, self.began = step, steps, began


class Steps:
    """The sequence's steps, each in a thread of its own once what it needs is
    there; ``steps`` and ``began`` are seconds from ``t0`` when each ended and began.
    A step's failure is seen by whoever waits, at once, whatever else still runs."""

    def __init__(self, t0: float):
        import threading

        self.t0 = t0
        self.steps: dict[str, float] = {}
        self.began: dict[str, float] = {}
        self.failed: StepFailed | None = None
        self.changed = threading.Event()

    def run(self, name: str, fn, *args):
        """``fn(*args)`` as step ``name`` in a daemon thread (a failed attempt's
        process exits without waiting for its other steps); returns its task."""
        import threading

        task = {"done": False, "value": None}

        def body() -> None:
            try:
                task["value"] = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - the waiter raises it
                if self.failed is None:
                    self.failed = StepFailed(name, exc, self.steps, self.began)
            else:
                self.steps[name] = round(time.time() - self.t0, 2)
            task["done"] = True
            self.changed.set()

        threading.Thread(target=body, daemon=True).start()
        return task

    def begin(self, name: str) -> None:
        self.began[name] = round(time.time() - self.t0, 2)

    def wait(self, *tasks) -> list:
        """Each task's value once all have ended; the first failure raised at once."""
        while True:
            self.changed.clear()
            if self.failed is not None:
                raise self.failed
            if all(t["done"] for t in tasks):
                return [t["value"] for t in tasks]
            self.changed.wait(0.5)


def sequence(clean: bool = True) -> dict:
    """Network + subnet + port, an image, a server on the lab compute, a volume
    attached to the server and detached again; then everything it made is deleted
    (with what earlier failed attempts left). Steps that need nothing of each other
    run at once, as a user's scripts would: the network, the image and the volume
    from the start, the server once its image is there, the attachment once both
    the server and the volume are. ``finished`` (time.time()) is when the user's
    sequence succeeded, before the untimed clean-up. ``clean=False`` leaves the
    clean-up to ``cleanup``: another sequence may be running beside this one, and
    the clean-up deletes what every sequence made."""
    t0 = time.time()
    conn = connect()
    conn.authorize()  # one token for every step's thread
    tag = f"{PREFIX}{int(t0 * 1000)}"
    run = Steps(t0)

    def network():
        run.begin("network+port")
        net = conn.network.create_network(name=tag)
        conn.network.create_subnet(network_id=net.id, ip_version=4,
                                   cidr="192.168.77.0/24", name=tag)
        return conn.network.create_port(network_id=net.id, name=tag)

    def image():
        run.begin("image")
        made = conn.image.create_image(name=tag, data=b"pacestack lab image\n" * 64,
                                       disk_format="raw", container_format="bare",
                                       allow_duplicates=True)
        return made, [i.name for i in conn.image.images()]

    def server(image_task):
        flavor = conn.compute.find_flavor("lab.tiny")
        if flavor is None:
            flavor = conn.compute.create_flavor(name="lab.tiny", ram=64, vcpus=1, disk=1)
        (made, _listed), = run.wait(image_task)
        run.begin("server")
        booted = conn.compute.create_server(name=tag, image_id=made.id, flavor_id=flavor.id,
                                            networks="none",
                                            availability_zone=f"nova:{os.environ['PROBE_COMPUTE']}")
        return conn.compute.wait_for_server(booted, status="ACTIVE", wait=90, interval=POLL)

    def volume():
        run.begin("volume")
        made = conn.block_storage.create_volume(size=1, name=tag)
        return conn.block_storage.wait_for_status(made, status="available", wait=60,
                                                  interval=POLL)

    net_task = run.run("network+port", network)
    image_task = run.run("image", image)
    volume_task = run.run("volume", volume)
    server_task = run.run("server", server, image_task)
    port, (_image, images), booted, vol = run.wait(net_task, image_task, server_task,
                                                    volume_task)

    def attach():
        run.begin("attach")
        conn.compute.create_volume_attachment(booted, volume_id=vol.id)
        return conn.block_storage.wait_for_status(vol, status="in-use", wait=60,
                                                  interval=POLL)

    attached, = run.wait(run.run("attach", attach))
    attached_to = [a.get("server_id") for a in attached.attachments or []]

    def detach():
        run.begin("detach")
        conn.compute.delete_volume_attachment(booted, vol.id)
        return conn.block_storage.wait_for_status(vol, status="available", wait=60,
                                                  interval=POLL)

    detached, = run.wait(run.run("detach", detach))
    finished = time.time()
    report = {"ok": True, "steps": run.steps, "began": run.began,
              "server_host": booted.compute_host, "server_status": booted.status,
              "port": port.id, "volume": vol.status, "attached_to": attached_to,
              "detached": detached.status, "image_listed": tag in images,
              "seconds": round(finished - t0, 2), "started": t0, "finished": finished}
    if clean:
        report["cleanup"] = cleanup(conn)
    return report


def cleanup(conn, wait: float = 60) -> dict:
    """Delete every resource named by the sequence (this attempt's and failed
    attempts' leftovers); returns how many of each were deleted and what is left."""
    deleted: dict[str, int] = {}
    left: list[str] = []
    for proxy_name, kind, delete in KINDS:
        proxy = getattr(conn, proxy_name)
        found = [r for r in getattr(proxy, kind)() if (r.name or "").startswith(PREFIX)]
        for res in found:
            try:
                if kind == "volumes" and res.status not in ("available", "error"):
                    # a failed attempt's volume stuck attaching: only an admin reset frees it
                    proxy.reset_volume_status(res, status="available",
                                              attach_status="detached", migration_status=None)
                getattr(proxy, delete)(res, ignore_missing=True)
                if kind in ("servers", "volumes"):  # the next kinds depend on them being gone
                    proxy.wait_for_delete(res, interval=POLL, wait=wait)
                deleted[kind] = deleted.get(kind, 0) + 1
            except Exception as exc:  # noqa: BLE001 - reported, the next kind still goes
                left.append(f"{kind} {res.id}: {type(exc).__name__}")
    return {"deleted": deleted, "left": left}


QUEUE = "pacestack-lab-probe"


def mq(action: str, count: int, name: str = QUEUE) -> dict:
    """Publish ``count`` persistent messages to a quorum queue through the VIP (put),
    count what the cluster holds there (count), or count it and delete the queue
    (drop). A quorum queue is the kind the services' RPC topics use: replicated on
    every RabbitMQ member, a node's loss must not lose a confirmed message."""
    import kombu

    # publisher confirms: put returns once a majority of the members has the messages
    with kombu.Connection(os.environ["PROBE_TRANSPORT_URL"].replace("rabbit://", "amqp://"),
                          connect_timeout=5,
                          transport_options={"confirm_publish": True}) as conn:
        channel = conn.channel()
        queue = kombu.Queue(name, durable=True, channel=channel,
                            queue_arguments={"x-queue-type": "quorum"})
        if action == "put":
            queue.declare()
            producer = kombu.Producer(channel)
            for i in range(count):
                producer.publish({"n": i}, routing_key=name, delivery_mode=2)
        messages = None  # the broker has no such queue
        deadline = time.monotonic() + 5
        while True:
            try:
                _name, messages, _consumers = channel.queue_declare(name, passive=True)
            except conn.channel_errors:
                break
            # the count lags a confirmed publish by a moment
            if action != "put" or messages >= count or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if action == "drop" and messages is not None:
            channel.queue_delete(name)
        return {"queue": name, "messages": messages}


def main(argv: list[str]) -> int:
    if argv[:1] == ["mq-put"] and len(argv) in (2, 3):
        print(json.dumps(mq("put", int(argv[1]), *argv[2:])), flush=True)
        return 0
    if argv[:1] in (["mq-count"], ["mq-drop"]) and len(argv) <= 2:
        print(json.dumps(mq(argv[0][3:], 0, *argv[1:])), flush=True)
        return 0
    if argv[:1] == ["apis"]:
        print(json.dumps(apis(float(argv[1]) if len(argv) > 1 else 120)), flush=True)
        return 0
    if argv[:1] == ["watch"] and len(argv) == 2:
        watch(argv[1])
        return 0
    if argv[:1] == ["agents"]:
        print(json.dumps({"agents": agents()}), flush=True)
        return 0
    if argv[:1] == ["inventory"]:
        print(json.dumps(inventory()), flush=True)
        return 0
    if argv[:1] == ["cleanup"]:
        print(json.dumps(cleanup(connect())), flush=True)
        return 0
    if argv[:1] == ["sequence"] and argv[1:] in ([], ["--keep"]):
        try:
            print(json.dumps(sequence(clean=argv[1:] != ["--keep"])), flush=True)
        except StepFailed as exc:  # which step, and how far the others got
            print(json.dumps({"ok": False, "error": str(exc)[:500], "steps": dict(exc.steps),
                              "began": dict(exc.began)}), flush=True)
        except Exception as exc:  # noqa: BLE001 - reported as data, the caller decides
            print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}),
                  flush=True)
        return 0
    print("usage: cloud_probe.py apis [SECONDS] | watch OUT | sequence [--keep] | cleanup "
          "| inventory "
          "| agents | mq-put N [QUEUE] | mq-count [QUEUE] | mq-drop [QUEUE]",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
