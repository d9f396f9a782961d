"""``pacestack migrate rehome``: parse, call the library, render.

migrate/cli.py's ``register`` calls ``register_rehome(verbs)`` to add the verb.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from pacestack import commands, render
from pacestack.errors import EXIT_RUNTIME, ConfigError


def _say(msg: str) -> None:
    print(f"pacestack migrate rehome: {msg}", file=sys.stderr, flush=True)


def _read_list(path: str) -> list[str]:
    """One instance (UUID or name) per line; '#' comments and blank lines skipped."""
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise ConfigError(f"--from-file {path}: {exc.strerror}") from None
    out = []
    for n, line in enumerate(lines, 1):
        word = line.split("#", 1)[0].strip()
        if not word:
            continue
        if len(word.split()) != 1 or len(word) > 255 or not word.isprintable():
            raise ConfigError(f"{path}:{n}: expected one instance UUID or name per line")
        out.append(word)
    return out


class _Progress:
    """A bar on a terminal, one line per instance otherwise (logs, CI)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.counts: dict[str, int] = {}

    def __call__(self, r, done: int, total: int) -> None:
        if self.quiet:
            return
        self.counts[r.status] = self.counts.get(r.status, 0) + 1
        if self.tty:
            width = 30
            fill = int(width * done / total)
            tally = " ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
            print(f"\r[{'#' * fill}{'.' * (width - fill)}] {done}/{total} {tally}",
                  end="\n" if done == total else "", file=sys.stderr, flush=True)
        else:
            extra = f": {r.error}" if r.error else ""
            _say(f"[{done}/{total}] {r.uuid} {r.name} {r.status} at {r.step}{extra}")


def _repairs_text(r) -> str:
    parts = [f"{x['action']} {x['mac']}" for x in r.repairs if x["action"] != "ok"]
    ok = sum(1 for x in r.repairs if x["action"] == "ok")
    if ok:
        parts.append(f"{ok} port(s) ok")
    parts += [f"net {n['name'] or n['network'][:8]} {n['detail']}" for n in r.networks
              if n.get("action") == "mtu_set"]
    return ", ".join(parts) or "-"


def render_text(result) -> None:
    rows = [(r.uuid, r.name, r.status, r.step, f"{sum(r.seconds.values()):.1f}",
             _repairs_text(r)) for r in result.instances]
    print(render.table(("INSTANCE", "NAME", "STATUS", "STEP", "SECONDS", "REPAIRS"), rows))
    for r in result.instances:
        if r.error:
            print(f"{r.uuid}: {r.error}")
    s = result.summary()
    print()
    print(f"{s['instances']} instance(s) to {result.target.host} ({result.target.node}) in "
          f"{s['seconds']:.1f} s with {s['parallel']} worker(s): "
          + ", ".join(f"{v} {k}" for k, v in s["status"].items())
          + (f", {s['resumed']} resumed" if s["resumed"] else ""))
    if s["ports"]:
        print("ports: " + ", ".join(f"{v} {k}" for k, v in s["ports"].items()))
    if s["networks_mtu_set"]:
        print(f"MTU set on {len(s['networks_mtu_set'])} self-service network(s)")
    if s["step_seconds_mean"]:
        print("mean seconds per step: " + ", ".join(f"{k} {v:.2f}" for k, v in
                                                   s["step_seconds_mean"].items()))


def handle(conf, args) -> int:
    from pacestack.migrate import cloud as cloudmod
    from pacestack.migrate import options as moptions
    from pacestack.migrate.rehome import batch, options
    from pacestack.migrate.rehome.api import NewCloud
    from pacestack.migrate.rehome.machine import Shared
    from pacestack.migrate.rehome.oldcloud import OldCloud
    from pacestack.migrate.rehome.state import StateStore

    moptions.register_opts(conf)
    options.register_opts(conf)
    names = list(args.instances)
    if args.from_file:
        names += _read_list(args.from_file)
    if not names and not args.all_on:
        raise ConfigError("name instances, --from-file FILE or --all-on OLD_HOST")
    o = conf.rehome
    cloud_name = args.os_cloud or o.os_cloud or os.environ.get("OS_CLOUD")
    if not cloud_name:
        raise ConfigError("no cloud: pass --os-cloud NAME (a clouds.yaml entry) or set "
                          "[rehome] os_cloud")
    parallel = args.parallel or o.parallel
    quiet = args.format == "json"

    def open_db():
        return cloudmod.open_from_conf(conf)

    probe = open_db()  # bad DB settings fail here, before any change
    try:
        ml2 = probe.ml2
        store = StateStore(probe.conn, conf.migrate.journal_database)
        store.ensure_schema()
        rows = store.all()
        api = NewCloud(cloud_name, o.wait_timeout)
        if not quiet:
            _say(f"checking {args.to_host} in cloud {cloud_name}")
        target = batch.resolve_target(api, probe, args.to_host, args.node)
    finally:
        probe.close()
    uuids = batch.select_instances(api, rows, names, args.all_on, target)
    old = OldCloud(o.old_nova_connection, o.old_neutron_connection,
                   conf.database.connect_timeout)
    try:
        shared = Shared(api, old, open_db, conf.migrate.journal_database, mtu=args.mtu or
                        o.overlay_mtu, underlay_mtu=ml2.global_physnet_mtu,
                        overlay_ip_version=ml2.overlay_ip_version,
                        old_cloud_name=args.old_cloud_name)
        if not quiet:
            _say(f"{len(uuids)} instance(s) to {target.host} ({target.node}), "
                 f"{min(parallel, max(1, len(uuids)))} at a time")
        stop_after = json.loads(os.environ["PACESTACK_REHOME_STOP_AFTER"]) \
            if os.environ.get("PACESTACK_REHOME_STOP_AFTER") else None  # tests only
        result = batch.run_batch(shared, uuids, target, parallel, _Progress(quiet), stop_after)
    finally:
        old.close()
    if args.format == "json":
        render.print_json(result.to_dict())
    else:
        render_text(result)
    return 0 if result.ok else EXIT_RUNTIME


def register_rehome(verbs) -> None:
    """Add ``rehome`` to the ``migrate`` group's verbs."""
    p = verbs.add_parser(
        "rehome", help="move instances to a new compute host and repair their ports",
        description="Move instances onto a new compute host, one resumable state machine "
        "each: preflight, stopped in the old cloud, DB moved, ports bound, rebooted, ports "
        "repaired, started, verified. A killed run resumes where it stopped.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("instances", nargs="*", metavar="INSTANCE", help="UUID or unique name")
    p.add_argument("--to-host", required=True, metavar="HOST", help="target compute host")
    p.add_argument("--node", metavar="NODE",
                   help="target hypervisor node (default: the host's only node)")
    p.add_argument("--all-on", metavar="OLD_HOST",
                   help="every instance on this old compute host")
    p.add_argument("--from-file", metavar="FILE", help="instances, one per line")
    p.add_argument("--parallel", type=int, metavar="N",
                   help="instances at the same time (default: [rehome] parallel)")
    p.add_argument("--os-cloud", metavar="NAME", help="clouds.yaml entry of the new cloud")
    p.add_argument("--old-cloud-name", default="OLD", metavar="NAME", help=argparse.SUPPRESS)
    p.add_argument("--mtu", type=int, metavar="MTU",
                   help="MTU for self-service networks (default: [rehome] overlay_mtu, "
                   "else underlay minus encapsulation overhead)")
    commands.add_format_argument(p)
    p.set_defaults(func=handle)
