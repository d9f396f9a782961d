"""The drill's client: runs on a host outside the pair (the lab's arbitrator) and
talks to the cluster only through the VIP's name, as every OpenStack client does.

    python -m pacestack.cluster.drill.probe --host controller.domain
        (--user U --password-file F | --defaults-file MY.CNF) --out EVENTS.jsonl|-
        [--http NAME=URL ...] [--interval 0.1]

``--defaults-file``: a MySQL option file whose [client] section has the user and
password (mode 0600); ``--out -``: the events go to stdout (the drill runs the
probe on another host over ssh and keeps ssh's stdout).

Writer: one row per INSERT (autocommit), each with a fresh id; an id is written
to the event log as acknowledged only after the server said OK. Probes: the
VIP's own address (a TCP handshake on a port nobody listens on, which the node
holding the address refuses: no service involved) and each HTTP URL, every
interval. Every result is one JSON line with a
wall-clock time (the same clock as the drill's, namespaces share it).
Stops on SIGTERM. Standard library + PyMySQL.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request

TABLE = "pacestack_drill.writes"


class Log:
    def __init__(self, path: str):
        if path == "-":
            import sys

            self.fh = sys.stdout
            sys.stdout.reconfigure(line_buffering=True)
        else:
            self.fh = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        self.lock = threading.Lock()

    def __call__(self, **event) -> None:
        event.setdefault("t", time.time())
        with self.lock:
            try:
                self.fh.write(json.dumps(event) + "\n")
            except BrokenPipeError:
                os._exit(0)  # the ssh session that carried the events is gone


def writer(stop: threading.Event, log: Log, host: str, user: str, password: str,
           interval: float, start_id: int) -> None:
    import pymysql

    next_id = start_id
    conn = None
    while not stop.is_set():
        t = time.time()
        try:
            if conn is None:
                conn = pymysql.connect(host=host, user=user, password=password, port=3306,
                                       connect_timeout=1, read_timeout=2, write_timeout=2,
                                       autocommit=True)
            with conn.cursor() as cur:
                cur.execute(f"INSERT INTO {TABLE} (id, t) VALUES (%s, %s)",  # noqa: S608
                            (next_id, t))
            log(kind="write", ok=True, id=next_id, t=t, dt=time.time() - t)
        except Exception as exc:  # noqa: BLE001 - every failure is data for the drill
            log(kind="write", ok=False, id=next_id, t=t, err=str(exc)[:120])
            if conn is not None:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001, S110 - a dead socket
                    pass
            conn = None
        next_id += 1  # an unacknowledged id is never reused: it may have committed
        stop.wait(interval)


def client_credentials(path: str) -> tuple[str, str]:
    """user and password of a MySQL option file's [client] section (only those: its
    socket or host would send the writer somewhere else than the VIP)."""
    import configparser

    cp = configparser.ConfigParser(allow_no_value=True, strict=False, interpolation=None)
    cp.read(path, encoding="utf-8")

    def get(key: str) -> str:
        value = (cp.get("client", key, fallback="") or "").strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        return value

    return get("user"), get("password")


def prober(stop: threading.Event, log: Log, name: str, url: str, interval: float) -> None:
    while not stop.is_set():
        t = time.time()
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - our URL
                ok = 200 <= resp.status < 400
        except (urllib.error.URLError, OSError, ValueError):
            ok = False
        log(kind="probe", name=name, ok=ok, t=t)
        stop.wait(interval)


# nothing listens here on a controller: the node holding the address refuses the
# handshake itself, so an answer proves the address is up, whatever runs there
ADDRESS_PORT = 9


def address_prober(stop: threading.Event, log: Log, host: str, interval: float) -> None:
    """The VIP itself: a TCP handshake to ADDRESS_PORT, answered (refused or accepted)
    by the kernel of the node holding the address; no answer in time: nobody holds
    it (or the ARP caches still point at the dead node)."""
    import socket

    while not stop.is_set():
        t = time.time()
        try:
            with socket.create_connection((host, ADDRESS_PORT), timeout=0.5):
                ok = True
        except ConnectionRefusedError:
            ok = True
        except OSError:
            ok = False
        log(kind="address", ok=ok, t=t)
        stop.wait(interval)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pacestack.cluster.drill.probe")
    p.add_argument("--host", required=True)
    p.add_argument("--user")
    p.add_argument("--password-file")
    p.add_argument("--defaults-file", help="MySQL option file with [client] user, password")
    p.add_argument("--out", required=True)
    p.add_argument("--http", action="append", default=[], metavar="NAME=URL")
    p.add_argument("--interval", type=float, default=0.1)
    p.add_argument("--start-id", type=int, default=1)
    args = p.parse_args(argv)
    if not args.defaults_file and not (args.user and args.password_file):
        p.error("give --defaults-file, or --user and --password-file")
    if args.defaults_file:
        user, password = client_credentials(args.defaults_file)
    else:
        user = args.user
        with open(args.password_file, encoding="utf-8") as fh:
            password = fh.read().strip()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: stop.set())  # its ssh session ended
    log = Log(args.out)
    threads = [threading.Thread(target=writer, args=(stop, log, args.host, user, password,
                                                     args.interval, args.start_id))]
    threads.append(threading.Thread(target=address_prober,
                                    args=(stop, log, args.host, args.interval)))
    for item in args.http:
        name, _, url = item.partition("=")
        threads.append(threading.Thread(target=prober, args=(stop, log, name, url,
                                                             args.interval)))
    for t in threads:
        t.daemon = True
        t.start()
    log(kind="started")
    while not stop.is_set():
        stop.wait(0.5)
    for t in threads:
        t.join(5)
    log(kind="stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
