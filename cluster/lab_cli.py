"""``pacestack lab up|status|exec|crash|restart|down``: parse, call cluster.lab.stack,
render."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pacestack.cluster.lab import stack

from pacestack import commands, render
from pacestack.errors import ConfigError, RuntimeFailure


def run_inside(which: str, argv: list[str]) -> int:
    """Run argv inside lab node ``which`` ("*": the first node whose Pacemaker is up),
    with this terminal: what a real-controller command's --lab option does, found
    by entry point (setup.cfg, pacestack.lab) so those commands never import the lab."""
    lab = stack.Lab.find()
    names = lab.cluster.node_names
    if which != "*" and which not in names:
        raise ConfigError(f"--lab {which}: no lab node of that name ({', '.join(names)})")
    up = [n for n in lab.cluster.nodes if n.booted and n.running("pacemakerd")]
    node = next((n for n in up if n.name == which or which == "*"), None)
    if node is None:
        raise RuntimeFailure("no lab node is up" if which == "*"
                             else f"lab node {which} is not up")
    return node.popen(argv, start_new_session=False).wait()


def drill_target():
    """The drill's target on the running lab: what ``cluster drill --target lab`` gets
    by entry point (setup.cfg, pacestack.lab), so the drill's command never imports
    the lab."""
    from pacestack.cluster.drill.lab_target import LabTarget

    return LabTarget(stack.Lab.find())


def _progress(message: str) -> None:
    print(f"lab: {message}", file=sys.stderr, flush=True)


def _up(conf, args) -> int:
    opts = stack.UpOptions(
        description=Path(args.description) if args.description else None,
        dump=Path(args.from_dump) if args.from_dump else None,
        venv=Path(args.openstack_venv) if args.openstack_venv else None,
        schemas=Path(args.sample_schemas) if args.sample_schemas else None,
        services=not args.no_services, cinder_volume=not args.no_cinder_volume,
        fencing=not args.no_fencing, whole_profile=args.whole_profile,
        service_debug=args.service_debug)
    lab = stack.up(opts, _progress)
    if args.format == "json":
        render.print_json(lab.status())
        return 0
    info = lab.info
    print(f"lab {info.run_id} is up in {info.timings.get('ready', 0):.0f} s: "
          f"{', '.join(info.nodes)} + {info.arbitrator} "
          f"({'garbd, RabbitMQ' if info.whole_profile else 'garbd'}); VIP {info.vip} "
          f"= {info.vip_name}")
    print(f"description applied: {info.description}")
    status = lab.status()
    _print_migrate(status)
    _print_debug(lab)
    _print_resources(status)
    return 0


def _print_debug(lab: stack.Lab) -> None:
    if not lab.info.service_debug:
        return
    hosts = [*lab.cluster.nodes, lab.cluster.arbitrator]
    compute = (f"; the compute's in {lab.cluster.arbitrator.root.boot_dir}/*.out"
               if lab.info.compute else "")
    print("services log at debug level (--service-debug): "
          "/var/log/pacestack-<service>.log in each node, here "
          + ", ".join(str(h.root.var_log) for h in hosts) + compute)


def _print_migrate(status: dict) -> None:
    if status.get("migrate_config"):
        print(f"migrate config (databases through the VIP): {status['migrate_config']}")
        print(f"  {status['migrate_command']}")


def _print_resources(status: dict) -> None:
    rows = [(h["name"], h["address"], h["role"], "up" if h["booted"] else "down",
             "online" if h["online"] else ("-" if h["role"] == "arbitrator" else "offline"),
             h["link"]) for h in status["hosts"]]
    print(render.table(("HOST", "ADDRESS", "ROLE", "POWER", "CLUSTER", "LINK"), rows))
    rows = [(rid, ", ".join(f"{p['node']} ({p['role']})" for p in placed) or "stopped")
            for rid, placed in status["resources"].items()]
    if rows:
        print()
        print(render.table(("RESOURCE", "RUNS ON"), rows))


def _status(conf, args) -> int:
    lab = stack.Lab.find()
    status = lab.status()
    if args.format == "json":
        render.print_json(status)
    else:
        print(f"lab {status['run_id']}: network {status['network']}, VIP {status['vip']} "
              f"= {status['vip_name']}, garbd {'running' if status['garbd'] else 'down'}"
              + (f", RabbitMQ on the arbitrator "
                 f"{'running' if status['rabbitmq_arbitrator'] else 'down'}"
                 if status.get("whole_profile") else ""))
        _print_migrate(status)
        _print_debug(lab)
        _print_resources(status)
    return 0


def _exec(conf, args) -> int:
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise ConfigError("lab exec: no command given (pacestack lab exec NODE -- CMD ...)")
    return stack.Lab.find().exec(args.node, argv)


def _crash(conf, args) -> int:
    lab = stack.Lab.find()
    lab.crash(args.node)
    print(f"{args.node}: powered off (every process killed at once)")
    return 0


def _restart(conf, args) -> int:
    lab = stack.Lab.find()
    seconds = lab.restart(args.node)
    print(f"{args.node}: booted and back in the cluster in {seconds:.1f} s")
    return 0


def _down(conf, args) -> int:
    result = stack.Lab.find().down()
    if args.format == "json":
        render.print_json(result)
    else:
        print(f"lab {result['run_id']} removed ({result['seconds']:.1f} s)")
    return 0


def register(subparsers) -> None:
    _, verbs = commands.add_group(
        subparsers, "lab", "a local HA controller pair in namespaces, for rehearsals",
        "Builds controller01/controller02 and an arbitrator in network namespaces on this "
        "machine (root): Galera, the VIP, Keystone and the Neutron API under Pacemaker, "
        "configured by `pacestack cluster apply`.")
    p = verbs.add_parser("up", help="build and start the lab")
    p.add_argument("--description", "-d", metavar="FILE",
                   help="cluster description to derive the lab from (default: the sample "
                   "examples/seed-cluster.conf)")
    p.add_argument("--from-dump", metavar="FILE",
                   help="load this SQL dump (mysqldump --databases) into the lab's Galera "
                   "instead of the sample databases")
    p.add_argument("--openstack-venv", metavar="DIR",
                   help="virtualenv with keystone, neutron and gunicorn (default: the cache "
                   "under $PACESTACK_CACHE)")
    p.add_argument("--sample-schemas", metavar="DIR",
                   help="the sample databases (<db>.sql per database and keystone-keys/; "
                   "default: the cache under $PACESTACK_CACHE)")
    p.add_argument("--no-services", action="store_true",
                   help="Galera, VIP and fencing only")
    p.add_argument("--no-cinder-volume", action="store_true",
                   help="without cinder-volume (by default it runs once, under the shared "
                   "host name, with cinder's fake driver)")
    p.add_argument("--no-fencing", action="store_true", help="no fence_dummy devices")
    p.add_argument("--whole-profile", action="store_true",
                   help="every service of the controller profile (memcached, RabbitMQ, "
                   "Keystone, Glance, Placement, Nova, Neutron server, Cinder) and a "
                   "nova-compute with the fake driver on the arbitrator")
    p.add_argument("--service-debug", action="store_true",
                   help="every OpenStack service the lab runs logs at debug level "
                   "(oslo.log's [DEFAULT] debug = true in each config the lab writes): "
                   "the services' own and oslo.messaging's debug lines, to follow a "
                   "request or an RPC through a failover. The logs are "
                   "/var/log/pacestack-<service>.log in each node (`lab status` names "
                   "the directories; the compute's nova-compute and Open vSwitch agent "
                   "write *.out in the arbitrator's lab dir); `lab down` deletes them, "
                   "`bench/cluster_drill.py --whole-profile --service-debug --keep-logs "
                   "DIR` copies them first. Off by default: debug logs are large and slow "
                   "the services")
    commands.add_format_argument(p)
    p.set_defaults(func=_up)

    p = verbs.add_parser("status", help="hosts, resources and where they run")
    commands.add_format_argument(p)
    p.set_defaults(func=_status)

    p = verbs.add_parser(
        "exec", help="run a command inside a lab host (its network, mounts, PIDs)",
        description="Runs CMD inside lab host NODE, where the VIP and the Galera members "
        "are reachable, with this terminal; exits with CMD's exit code. `pacestack lab "
        "status` names the migrate config that reaches the lab's databases: `pacestack "
        "lab exec controller01 -- pacestack --config-file FILE migrate plan --mapping M`.")
    p.add_argument("node")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD",
                   help="the command and its arguments, after --")
    p.set_defaults(func=_exec)

    p = verbs.add_parser("crash", help="power-cut a lab host")
    p.add_argument("node")
    p.set_defaults(func=_crash)

    p = verbs.add_parser("restart", help="boot a crashed host again")
    p.add_argument("node")
    p.set_defaults(func=_restart)

    p = verbs.add_parser("down", help="remove everything the lab created")
    commands.add_format_argument(p)
    p.set_defaults(func=_down)
