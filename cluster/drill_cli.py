"""``pacestack cluster drill``: parse, run cluster.drill against the lab, render a
table, JSON, and (``--plot FILE``) a PNG of every scenario's recovery timeline.

Registered into the ``cluster`` group by ``add_verb(verbs)`` from cluster/cli.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pacestack.cluster import drill
from pacestack.cluster.lab import stack

from pacestack import commands, render


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render_table(report: drill.DrillReport) -> str:
    rows = []
    for s in report.scenarios:
        inst = ", ".join(f"{k} {v}" for k, v in s.max_instances.items())
        rows.append((s.name, s.victim, _fmt(s.detection_s), _fmt(s.vip_s), _fmt(s.galera_s),
                     _fmt(s.services_s), _fmt(s.rejoin_s), f"{s.writes_acked}",
                     str(len(s.lost_writes)), inst, "ok" if s.ok else "FAILED"))
    out = [render.table(("SCENARIO", "VICTIM", "DETECT s", "VIP s", "GALERA s", "SERVICES s",
                         "REJOIN s", "ACKED", "LOST", "MAX ACTIVE", "RESULT"), rows)]
    for s in report.scenarios:
        for note in s.notes:
            out.append(f"{s.name}: {note}")
        if s.error:
            out.append(f"{s.name}: error: {s.error}")
    out.append(f"drill {'OK' if report.ok else 'FAILED'}: {len(report.scenarios)} scenarios "
               f"in {report.seconds:.0f} s (times from the fault; corosync token "
               f"{report.token_ms} ms)")
    return "\n".join(out) + "\n"


def plot(report: drill.DrillReport, path: Path) -> Path:
    """One panel per scenario: each probe's answers through the VIP (green ok, red
    failed) against seconds from the fault, with detection and recovery marks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(report.scenarios)
    fig, axes = plt.subplots(n, 1, figsize=(10, 1.9 * n + 0.6), squeeze=False)
    for ax, s in zip(axes[:, 0], report.scenarios, strict=True):
        tl = s.timeline or {}
        series = {"writes": tl.get("writes", []), **tl.get("probes", {})}
        for row, points in enumerate(series.values()):
            ok = [t for t, good in points if good]
            bad = [t for t, good in points if not good]
            ax.scatter(ok, [row] * len(ok), s=6, c="tab:green", marker="|")
            ax.scatter(bad, [row] * len(bad), s=10, c="tab:red", marker="|")
        ax.set_yticks(range(len(series)), list(series))
        marks = [("fault", 0.0, "black"), ("detected", s.detection_s, "tab:orange"),
                 ("services", s.services_s, "tab:blue")]
        if tl.get("t_back") and tl.get("t0"):
            marks.append(("return", tl["t_back"] - tl["t0"], "tab:purple"))
        for label, x, color in marks:
            if x is not None:
                ax.axvline(x, color=color, linestyle="--", linewidth=1, label=label)
        ax.set_title(f"{s.name} ({s.victim})", fontsize=9, loc="left")
        ax.set_xlabel("seconds from the fault", fontsize=8)
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _drill(conf, args) -> int:
    lab = stack.Lab.find()
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()] \
        if args.scenarios else list(drill.SCENARIOS)

    def progress(message: str) -> None:
        print(f"drill: {message}", file=sys.stderr, flush=True)

    report = drill.run(lab, scenarios, progress=progress, timeout=args.timeout)
    if args.plot:
        plot(report, Path(args.plot))
        progress(f"timeline plot written to {args.plot}")
    if args.format == "json":
        data = report.to_dict()
        if not args.timeline:
            for s in data["scenarios"]:
                s.pop("timeline", None)
        render.print_json(data)
    else:
        sys.stdout.write(render_table(report))
    return 0 if report.ok else 1


def add_verb(verbs) -> None:
    p = verbs.add_parser(
        "drill", help="break the live lab cluster on purpose and measure the recovery",
        description="Scenarios: " + ", ".join(drill.SCENARIOS) + ". A writer commits rows "
        "through the VIP meanwhile; every scenario reports detection, VIP, Galera and "
        "service recovery times, lost acknowledged writes (must be 0) and the most "
        "instances of a single-instance resource seen at once (must be 1), then restores "
        "the cluster. Runs against the lab (`pacestack lab up`).")
    p.add_argument("--scenarios", metavar="LIST",
                   help=f"comma-separated subset (default: all: {','.join(drill.SCENARIOS)})")
    p.add_argument("--plot", metavar="PNG", help="write the recovery timelines as a PNG "
                   "(needs the `plot` extra: matplotlib)")
    p.add_argument("--timeline", action="store_true",
                   help="include every probe answer in the JSON output")
    p.add_argument("--timeout", type=float, default=120,
                   help="seconds a recovery may take before the scenario fails (default 120)")
    commands.add_format_argument(p)
    p.set_defaults(func=_drill)
