"""``pacestack cluster plan|apply|verify|preflight``: parse arguments, call the library,
render text or JSON. Nothing here decides anything."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys

from pacestack.cluster import apply as apply_mod
from pacestack.cluster import cib, description, options, plan, preflight, secrets, verify

from pacestack import commands, findings, render
from pacestack.errors import ConfigError, PacestackError, RuntimeFailure


def _load(conf, args) -> description.Description:
    options.register_opts(conf)
    paths = args.description or list(conf.config_file or [])
    return description.load(paths)


def _existing(args) -> cib.Cib | None:
    if args.empty:
        return None
    if args.cib_file is None:
        return cib.parse(cib.query_live(), apply_mod.LIVE)
    try:
        return cib.read_file(args.cib_file)
    except ConfigError:
        if not os.path.exists(args.cib_file):
            return None  # apply starts a new file from an empty CIB
        raise


def render_plan(steps: list[plan.Step], cib_file: str | None = None) -> str:
    """Copy-pasteable shell: one comment per section, one per step, shell-quoted."""
    if not steps:
        return "# nothing to do: the CIB already matches the description\n"
    prefix = ["pcs"] + (["-f", cib_file] if cib_file else [])
    lines: list[str] = []
    for section in plan.SECTIONS:
        chosen = [s for s in steps if s.section == section]
        if not chosen:
            continue
        if lines:
            lines.append("")
        lines.append(f"# --- {plan.SECTION_TITLES[section]} ---")
        for s in chosen:
            lines.append(f"# {s.reason}")
            lines.append(shlex.join([*prefix, *s.argv]))
    return "\n".join(lines) + "\n"


def _plan(conf, args) -> int:
    desc = _load(conf, args)
    steps = plan.masked(plan.build(desc, _existing(args)), desc)
    if args.format == "json":
        render.print_json({"steps": steps, "count": len(steps), "cib_file": args.cib_file})
    else:
        sys.stdout.write(render_plan(steps, args.cib_file))
    return 0


def _apply(conf, args) -> int:
    desc = _load(conf, args)
    try:
        result = apply_mod.apply(desc, cib_file=args.cib_file, runner=args.runner,
                                 corosync_conf=args.corosync_conf)
    except PacestackError as exc:
        # pcs, crm_verify and cib-push may quote a value back: never a secret one
        raise type(exc)(secrets.mask_text(str(exc), plan.secret_values(desc)),
                        exit_code=exc.exit_code) from None
    except subprocess.TimeoutExpired as exc:
        tool = os.path.basename(str(exc.cmd[0] if isinstance(exc.cmd, list | tuple) else exc.cmd))
        raise RuntimeFailure(f"{tool} did not finish within {exc.timeout:g} s") from None
    result.steps = plan.masked(result.steps, desc)
    if args.format == "json":
        render.print_json(result)
        return 0
    if result.changed:
        kept = "; the CIB had changed since apply read it, those changes kept" \
            if result.merged else ""
        print(f"{result.target}: applied {len(result.steps)} pcs commands, verified by "
              f"crm_verify, wrote only the difference: {result.changes} changes{kept} "
              f"({result.seconds:.1f} s)")
    elif result.steps:
        print(f"{result.target}: the {len(result.steps)} pcs commands changed nothing, "
              f"nothing written")
    else:
        print(f"{result.target}: already matches the description, nothing written")
    if result.corosync_conf:
        state = "written" if result.corosync_changed else "unchanged"
        print(f"{result.corosync_conf}: corosync.conf {state}")
    return 0


def render_matrix(report: verify.Report) -> str:
    """Resources down, scenarios across would be 40 columns wide: one row per
    scenario and resource whose placement differs from the baseline instead."""
    base = report.scenarios[0] if report.scenarios else None
    rows = []
    if base is not None:
        for rid in report.resources:
            rows.append(("all nodes up", rid, _where(base, rid)))
        for sc in report.scenarios[1:]:
            moved = [rid for rid in report.resources if _where(sc, rid) != _where(base, rid)]
            if not moved:
                rows.append((sc.name, "(nothing moves)", ""))
            for rid in moved:
                rows.append((sc.name, rid, f"{_where(base, rid)} -> {_where(sc, rid)}"))
    parts = []
    if rows:
        parts.append(render.table(("SCENARIO", "RESOURCE", "RUNS ON"), rows))
    parts.append(render.findings_table(report.findings))
    verdict = "OK" if report.ok else "FAILED"
    parts.append(f"{report.target}: {verdict}: {len(report.scenarios)} scenarios, "
                 f"{len(report.findings)} findings ({report.seconds:.1f} s)")
    return "\n\n".join(parts) + "\n"


def _where(sc: verify.Scenario, rid: str) -> str:
    placed = sorted(sc.placement.get(rid, []))
    if not placed:
        return "stopped"
    return ", ".join(n if role == "Started" else f"{n} ({role})" for n, role in placed)


def _verify(conf, args) -> int:
    desc = _load(conf, args)
    report = verify.verify(desc, cib_file=args.cib_file)
    if args.format == "json":
        render.print_json(report)
    else:
        sys.stdout.write(render_matrix(report))
    return 0 if report.ok else 1


def _preflight(conf, args) -> int:
    desc = _load(conf, args)
    inputs = preflight.Inputs(
        node=args.node, peer=args.peer, peer_host=args.peer_host, root=args.root,
        peer_root=args.peer_root, corosync_conf=args.corosync_conf,
        cib_file=args.cib_file, skip_database=args.skip_database,
    )
    result = preflight.preflight(desc, inputs)
    render.render_findings(result, args.format)
    return 1 if findings.has_errors(result) else 0


def _common(p: argparse.ArgumentParser, cib_help: str) -> None:
    p.add_argument("--description", "-d", action="append", metavar="FILE",
                   help="the cluster description (repeatable; default: the --config-file "
                   "files given to pacestack)")
    p.add_argument("--cib-file", metavar="FILE", help=cib_help)
    commands.add_format_argument(p)


def register(subparsers) -> None:
    _, verbs = commands.add_group(
        subparsers, "cluster", "cluster description -> verified Pacemaker configuration",
        "One description of the HA controller pair ([cluster], [vip], [resource:NAME], "
        "[fencing:NAME], [arbitrator]) becomes pcs commands, a verified CIB, a simulated "
        "failure matrix and preflight checks of the nodes.",
    )
    p = verbs.add_parser("plan", help="the pcs commands that realise the description",
                         description="Print the ordered, shell-quoted pcs commands; against "
                         "an existing CIB (live or --cib-file) only what differs.")
    _common(p, "plan against this CIB file instead of the live cluster")
    p.add_argument("--empty", action="store_true",
                   help="plan from an empty CIB (the complete configuration)")
    p.set_defaults(func=_plan)

    p = verbs.add_parser("apply", help="apply the plan (pcs -f on a copy, crm_verify, push)",
                         description="Run the plan with pcs -f on a copy of the CIB, check it "
                         "with crm_verify, then write --cib-file or push to the live cluster "
                         "(only the difference from the CIB apply read: changes made "
                         "meanwhile stay, a conflicting one stops apply). A second apply "
                         "changes nothing.")
    _common(p, "apply to this CIB file (created if missing) instead of the live cluster")
    p.add_argument("--corosync-conf", metavar="FILE",
                   help="also write corosync.conf here (default: [cluster] corosync_conf)")
    p.add_argument("--runner", choices=apply_mod.RUNNERS, default="batch",
                   help="batch: all pcs commands in one pcs process, the CIB kept in memory "
                   "between them (default); batch-files: one pcs process, the file "
                   "re-read and re-written by cibadmin per command; each: one pcs process "
                   "per command. crm_verify checks the result in every case.")
    p.set_defaults(func=_apply)

    p = verbs.add_parser("verify", help="crm_verify and the simulated failure matrix",
                         description="crm_verify, then crm_simulate for every node failure and "
                         "every resource failure; exit 1 when a finding is an error.")
    _common(p, "verify this CIB file instead of the live cluster")
    p.set_defaults(func=_verify)

    p = verbs.add_parser("preflight", help="check a node's files against the description",
                         description="Compare this node's and its peer's files (cinder host, "
                         "Keystone keys, endpoints, VIP name, corosync quorum, fencing, "
                         "Galera options); the peer's come from --peer-root or over ssh.")
    _common(p, "read stonith-enabled from this CIB file (default: the live CIB if any)")
    p.add_argument("--node", help="this node's name (default: the host name)")
    p.add_argument("--peer", help="the peer node's name (default: the other node)")
    p.add_argument("--root", default="/", metavar="DIR",
                   help="this node's files are under DIR (default /)")
    p.add_argument("--peer-root", metavar="DIR",
                   help="the peer's files, copied under DIR")
    p.add_argument("--peer-host", metavar="HOST",
                   help="read the peer's files over ssh from HOST")
    p.add_argument("--corosync-conf", metavar="FILE",
                   help="corosync.conf to check (default ROOT/etc/corosync/corosync.conf)")
    p.add_argument("--skip-database", action="store_true",
                   help="do not read the Keystone endpoints from the database")
    p.set_defaults(func=_preflight)

    # the drill lives in its own modules (it needs a live cluster, not a description)
    from pacestack.cluster.drill import cli as drill_cli

    drill_cli.add_verb(verbs)
