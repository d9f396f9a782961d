"""``pacestack cluster drill``: parse, pick the target (the lab, or real controllers
over ssh: target.py), run the drill against it, render a
table, JSON, and (``--plot FILE``) a PNG of every scenario's recovery timeline.

Registered into the ``cluster`` group by ``add_verb(verbs)`` from cluster/cli.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pacestack.cluster import drill

from pacestack import commands, render
from pacestack.errors import ConfigError


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def steps_text(steps: dict[str, float], began: dict[str, float] | None = None) -> str:
    """``name began-ended`` per step (seconds from the sequence's start), in the order
    they ended: where the sequence's seconds go."""
    began = began or {}
    return " ".join(f"{n} {began[n]:.1f}-{v:.1f}" if n in began else f"{n} {v:.1f}"
                    for n, v in sorted(steps.items(), key=lambda kv: kv[1]))


def render_table(report: drill.DrillReport) -> str:
    # the cloud-level columns only where a scenario measured them (a whole controller)
    cloud = any(s.cloud_measured for s in report.scenarios)
    rows = []
    for s in report.scenarios:
        inst = ", ".join(f"{k} {v}" for k, v in s.max_instances.items())
        probes = " ".join(f"{n} {_fmt(v)}" for n, v in sorted(s.probes_s.items())) or "-"
        row = [s.name, s.victim, _fmt(s.detection_s), _fmt(s.vip_s), _fmt(s.galera_s),
               probes, _fmt(s.services_s)]
        if cloud:
            row += [" ".join(f"{n} {_fmt(v)}" for n, v in sorted(s.apis_s.items())) or "-",
                    f"{_fmt(s.cloud_began_s)}/{_fmt(s.cloud_s)}",
                    f"{'-' if s.messages_lost is None else s.messages_lost}"
                    f"/{s.messages_put}"]
        rows.append((*row, _fmt(s.rejoin_s), f"{s.writes_acked}", str(len(s.lost_writes)),
                     inst, "ok" if s.ok else "FAILED"))
    head = ["SCENARIO", "VICTIM", "DETECT s", "VIP s", "GALERA s", "PROBES s", "SERVICES s"]
    if cloud:
        head += ["APIS s", "CLOUD s (began/done)", "MQ LOST/PUT"]
    out = [render.table((*head, "REJOIN s", "ACKED", "LOST", "MAX ACTIVE", "RESULT"), rows)]
    for s in report.scenarios:
        for note in s.notes:
            out.append(f"{s.name}: {note}")
        if s.cloud_steps:
            out.append(f"{s.name}: cloud sequence steps (s from its start): "
                       + steps_text(s.cloud_steps, s.cloud_steps_began))
        if s.cloud_measured and s.cloud_s is None and s.cloud_error:
            out.append(f"{s.name}: cloud sequence never succeeded "
                       f"({s.cloud_attempts} attempts): {s.cloud_error}")
        reasons = s.failures()
        if reasons:
            out.append(f"{s.name}: FAILED: {'; '.join(reasons)}")
    out.append(f"drill {'OK' if report.ok else 'FAILED'}: {len(report.scenarios)} scenarios "
               f"in {report.seconds:.0f} s (times from the fault; corosync token "
               f"{report.token_ms} ms)")
    return "\n".join(out) + "\n"


ANSWERED, FAILED = "tab:green", "tab:red"


def timeline_figure(report: drill.DrillReport):
    """One panel per scenario: each probe's answers through the VIP (green answered,
    red failed) against seconds from the fault, with detection and recovery marks.
    Each panel's legend sits right of its plotting area, never over a probe's row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    n = len(report.scenarios)
    # constrained layout makes room for the legends beside the panels
    fig, axes = plt.subplots(n, 1, figsize=(11.5, 1.9 * n + 0.6), squeeze=False,
                             layout="constrained")
    for ax, s in zip(axes[:, 0], report.scenarios, strict=True):
        tl = s.timeline or {}
        series = {"writes": tl.get("writes", []), **tl.get("probes", {}),
                  **{f"api {n}": p for n, p in sorted(tl.get("apis", {}).items())}}
        for row, points in enumerate(series.values()):
            ok = [t for t, good in points if good]
            bad = [t for t, good in points if not good]
            ax.scatter(ok, [row] * len(ok), s=6, c=ANSWERED, marker="|")
            ax.scatter(bad, [row] * len(bad), s=10, c=FAILED, marker="|")
        ax.set_yticks(range(len(series)), list(series))
        marks = [("fault", 0.0, "black"), ("detected", s.detection_s, "tab:orange"),
                 ("services", s.services_s, "tab:blue"),
                 ("cloud sequence began", s.cloud_began_s, "tab:green"),
                 ("cloud works", s.cloud_s, "tab:cyan")]
        if tl.get("t_back") and tl.get("t0"):
            marks.append(("return", tl["t_back"] - tl["t0"], "tab:purple"))
        for label, x, color in marks:
            if x is not None:
                ax.axvline(x, color=color, linestyle="--", linewidth=1, label=label)
        ax.set_title(f"{s.name} ({s.victim})", fontsize=9, loc="left")
        ax.set_xlabel("seconds from the fault", fontsize=8)
        # both kinds of answer in every panel's legend, also where none failed, so
        # the colours read the same in each
        kinds = [Line2D([], [], color=color, marker="|", linestyle="none", markersize=8,
                        markeredgewidth=1.5, label=label)
                 for label, color in (("answered", ANSWERED), ("failed", FAILED))]
        lines, _labels = ax.get_legend_handles_labels()
        ax.legend(handles=kinds + lines, fontsize=7, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return fig


def plot(report: drill.DrillReport, path: Path) -> Path:
    """timeline_figure written as a PNG."""
    import matplotlib.pyplot as plt

    fig = timeline_figure(report)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


SSH_HELP = """\
targets:
  lab   the namespace lab of `pacestack lab up` (the default when --nodes is not given)
  ssh   real controllers, every command over ssh (BatchMode: your key, your
        known_hosts, no passwords) as --ssh-user (root). DISRUPTIVE: it powers
        nodes off and kills services on a live cluster; it asks for confirmation
        (or --yes-i-mean-it). What each scenario does there:
    node-crash     powers the VIP's node off through its own fencing device
                   (stonith_admin --fence NODE --delay -1, asked of the other
                   node), then on again through the same device
                   (stonith_admin --unfence NODE), waits for ssh and for the
                   node's cluster stack (pcs cluster start if it is not enabled
                   at boot). Nothing is ever confirmed by hand (pcs stonith confirm)
    peer-crash     the same for the node without the VIP
    standby        pcs node standby NODE, then pcs node unstandby NODE
    kill-mariadbd  kill -9 of the pid in mariadbd's own pid file (@@pid_file)
    kill-service   kill -9 of the pid in the service's pid file (its resource's
                   pid parameter; keystone where it runs), then crm_resource --cleanup
    partition      an nft table (inet pacestack_drill) on the last node drops
                   corosync's ring traffic (udp 5404-5412): the cluster splits and
                   fences one node; the table is deleted afterwards, always
  The writer (rows into pacestack_drill.writes, with the credentials of
  --db-defaults-file: a 0600 MySQL option file with [client] user and password;
  the user needs INSERT on pacestack_drill.*) and the API probes run on
  this machine, or on --from HOST over ssh (pacestack installed there), against
  the VIP's name (--vip-name). Rows are read back on every node as its root
  through its own mysql client configuration. After each scenario the cluster
  is restored: nodes powered on, standby off, failures cleaned up.
"""


def _target(args):
    """The drill target from the arguments; refuses before touching anything."""
    kind = args.target or ("ssh" if args.nodes else "lab")
    if kind == "lab":
        stray = [opt for opt, value in (("--nodes", args.nodes),
                                       ("--db-defaults-file", args.db_defaults_file),
                                       ("--from", args.probe_from)) if value]
        if stray:
            raise ConfigError(f"{stray[0]} is for --target ssh (the lab knows its nodes)")
        return commands.lab_entry("drill_target")()
    if not args.nodes:
        raise ConfigError("--target ssh needs --nodes NODE1,NODE2 (the Pacemaker node names, "
                          "reachable over ssh)")
    if not args.db_defaults_file:
        raise ConfigError("--target ssh needs --db-defaults-file FILE (a 0600 MySQL option "
                          "file with the writer's [client] user and password)")
    from pacestack.cluster.drill import ssh_target

    opts = ssh_target.SshOptions(
        nodes=[n.strip() for n in args.nodes.split(",") if n.strip()],
        db_defaults_file=Path(args.db_defaults_file), user=args.ssh_user,
        identity=Path(args.ssh_identity) if args.ssh_identity else None,
        known_hosts=Path(args.ssh_known_hosts) if args.ssh_known_hosts else None,
        port=args.ssh_port, config=Path(args.ssh_config) if args.ssh_config else None,
        probe_from=args.probe_from, probe_python=args.from_python, vip_name=args.vip_name)
    ssh_target.check_ssh_options(opts)
    if not args.yes_i_mean_it:
        if not sys.stdin.isatty():
            raise ConfigError("the ssh target disrupts a live cluster (nodes powered off, "
                              "services killed): pass --yes-i-mean-it")
        answer = input(f"pacestack cluster drill will power off, partition and kill services "
                       f"on {', '.join(opts.nodes)}. Type yes to go on: ")
        if answer.strip() != "yes":
            raise ConfigError("not confirmed: nothing done")
    return ssh_target.SshTarget(opts)


def _drill(conf, args) -> int:
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()] \
        if args.scenarios else list(drill.SCENARIOS)
    unknown = [s for s in scenarios if s not in drill.SCENARIOS]
    if unknown:
        raise ConfigError(f"unknown drill scenario {unknown[0]!r} "
                          f"(have: {', '.join(drill.SCENARIOS)})")
    work_dir = drill.work_directory(Path(args.work_dir), "") if args.work_dir else None
    target = _target(args)

    def progress(message: str) -> None:
        print(f"drill: {message}", file=sys.stderr, flush=True)

    try:
        report = drill.run(target, scenarios, progress=progress, timeout=args.timeout,
                           work_dir=work_dir)
    finally:
        target.close()
    if args.plot:
        plot(report, Path(args.plot))
        progress(f"timeline plot written to {args.plot}")
    if args.format == "json":
        data = report.to_dict()
        data["target"] = target.kind
        if not args.timeline:
            for s in data["scenarios"]:
                s.pop("timeline", None)
        render.print_json(data)
    else:
        sys.stdout.write(render_table(report))
    return 0 if report.ok else 1


def add_verb(verbs) -> None:
    p = verbs.add_parser(
        "drill", help="break a live cluster (the lab, or real controllers over ssh) on "
        "purpose and measure the recovery",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Scenarios: " + ", ".join(drill.SCENARIOS) + ". A writer commits rows "
        "through the VIP meanwhile; every scenario reports detection, VIP, Galera and "
        "service recovery times, lost acknowledged writes (must be 0) and the most "
        "instances of a single-instance resource seen at once (must be 1), then restores "
        "the cluster.", epilog=SSH_HELP)
    p.add_argument("--scenarios", metavar="LIST",
                   help=f"comma-separated subset (default: all: {','.join(drill.SCENARIOS)})")
    p.add_argument("--plot", metavar="PNG", help="write the recovery timelines as a PNG "
                   "(needs the `plot` extra: matplotlib)")
    p.add_argument("--timeline", action="store_true",
                   help="include every probe answer in the JSON output")
    p.add_argument("--timeout", type=float, default=120,
                   help="seconds a recovery may take before the scenario fails (default 120)")
    p.add_argument("--target", choices=("lab", "ssh"),
                   help="lab (default) or ssh (default when --nodes is given)")
    p.add_argument("--nodes", metavar="LIST", help="ssh: the cluster's nodes, comma-separated "
                   "(Pacemaker node names, also the ssh host names)")
    p.add_argument("--ssh-user", default="root", help="ssh: login user (default root)")
    p.add_argument("--ssh-identity", metavar="FILE", help="ssh: private key (ssh -i)")
    p.add_argument("--ssh-known-hosts", metavar="FILE",
                   help="ssh: known_hosts file to check host keys against "
                   "(default: ssh's own)")
    p.add_argument("--ssh-port", type=int, metavar="PORT", help="ssh: port (default: ssh's)")
    p.add_argument("--ssh-config", metavar="FILE", help="ssh: ssh_config file (ssh -F)")
    p.add_argument("--db-defaults-file", metavar="FILE",
                   help="ssh: the writer's MySQL option file ([client] user, password; "
                   "mode 0600)")
    p.add_argument("--vip-name", metavar="NAME",
                   help="ssh: the name clients use for the VIP (default: its address)")
    p.add_argument("--from", dest="probe_from", metavar="HOST",
                   help="ssh: run the writer and probes on HOST over ssh (an arbitrator; "
                   "--db-defaults-file is then a path there) instead of here")
    p.add_argument("--from-python", default="python3", metavar="PYTHON",
                   help="ssh --from: the python with pacestack on HOST (default python3)")
    p.add_argument("--work-dir", metavar="DIR",
                   help="where the probe's event logs go: a directory of yours that "
                   "only you can write (default: the lab's dir or a new private directory "
                   "under /tmp)")
    p.add_argument("--yes-i-mean-it", action="store_true",
                   help="ssh: do not ask for confirmation")
    commands.add_format_argument(p)
    p.set_defaults(func=_drill)
