"""``pacestack migrate plan|apply|verify|rollback``: parse, call the library, render."""

from __future__ import annotations

import argparse
import sys
import uuid

from pacestack.migrate import options
from pacestack.migrate.model import STEPS

from pacestack import codes, commands, findings, render
from pacestack.errors import EXIT_RUNTIME, EXIT_USAGE, PacestackError, RuntimeFailure


def _say(msg: str) -> None:
    print(f"pacestack migrate: {msg}", file=sys.stderr, flush=True)


# access denied to a database, a table, a column; a missing SUPER-like privilege
_DENIED = (1044, 1142, 1143, 1227)
# the server went away or the connection to it broke
_LOST = (2006, 2013, 2055, 1927)


def _db_errors(handler):
    """A server error in the middle of a run (lock wait timeout, lost connection) ends
    the command with one line; the open transaction was rolled back by the server."""
    import functools

    @functools.wraps(handler)
    def wrapped(conf, args):
        import pymysql

        try:
            return handler(conf, args)
        except pymysql.err.MySQLError as exc:
            code = exc.args[0] if exc.args else "?"
            text = " ".join(str(exc.args[1] if len(exc.args) > 1 else exc).split())[:200]
            if code in _DENIED:
                raise PacestackError(f"the database user lacks a privilege migrate needs "
                                     f"(error {code}: {text}); nothing was changed by the "
                                     "refused statement", exit_code=EXIT_USAGE) from None
            if code in _LOST or isinstance(exc, pymysql.err.InterfaceError):
                raise PacestackError(f"lost the database server in the middle of the run "
                                     f"(error {code}: {text or 'connection closed'}); the "
                                     "current batch was rolled back, run the same command "
                                     "again to continue") from None
            raise PacestackError(f"database error {code}: {text}; the current batch was rolled "
                                 "back, run the same command again to continue") from None
    return wrapped


def _setup(conf, args):
    from pacestack.migrate import cloud, mapping

    options.register_opts(conf)
    mp = mapping.load(args.mapping or conf.migrate.mapping_file)
    return mp, cloud.open_from_conf(conf, allow_other_server=args.allow_other_server)


def _only(args) -> list[str] | None:
    if not args.only:
        return None
    return [s for s in STEPS if s in set(args.only)]


def _refused(plan, fmt: str) -> int:
    if fmt != "json":
        for f in plan.refusals:
            print(f"refused: {f.code} {f.subject}: {f.message}", file=sys.stderr)
    first = plan.refusals[0]
    print(f"pacestack: error: {len(plan.refusals)} refusal(s), nothing changed; first: "
          f"{first.code} {first.subject}: {first.message}", file=sys.stderr)
    return EXIT_USAGE


def _render_plan(plan) -> None:
    rows = []
    for s in plan.steps:
        if not s.changes:
            rows.append((s.step, 0, "-"))
        for what, n in s.counts().items():
            rows.append((s.step, n, what))
    print(render.table(("STEP", "ROWS", "TABLE / OPERATION"), rows))
    notes = [n for s in plan.steps for n in s.notes]
    if notes:
        print()
        print(render.findings_table(notes))
    acc = plan.accounting
    if acc is not None:
        rows = [(e.outcome, e.rows, e.where, e.by) for e in acc.entries]
        print()
        print(render.table(("OLD NAMES", "ROWS", "COLUMN", "BY"), rows))
        print(f"{acc.columns_scanned} text columns of {len(acc.databases)} databases searched "
              f"for {len(acc.names)} old names; {sum(e.rows for e in acc.uncovered)} rows "
              "uncovered")
    print(f"\n{len(plan.changes)} row changes planned for OpenStack {plan.release or '?'}; "
          "nothing written.")


def _plan(conf, args) -> int:
    from pacestack.migrate import plan as planmod

    mp, cl = _setup(conf, args)
    try:
        if args.format != "json":
            _say("reading the cloud's databases")
        if args.save:
            from pacestack.migrate import saved

            p, written = saved.save(args.save, cl, mp, only=_only(args), force=args.force)
        else:
            p, written = planmod.build(cl, mp, only=_only(args), force=args.force), False
    finally:
        cl.close()
    if args.format == "json":
        render.print_json({**p.to_dict(with_changes=True),
                           "saved": args.save if written else None})
    else:
        _render_plan(p)
    if written and args.format != "json":
        _say(f"plan saved to {args.save}; apply exactly it with: pacestack migrate apply "
             f"--plan {args.save}")
    return _refused(p, args.format) if p.refusals else 0


def _connections(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 8:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 1 to 8")
    return n


def _apply(conf, args) -> int:
    from pacestack.migrate import apply as applymod

    mp, cl = _setup(conf, args)
    try:
        r = applymod.apply(cl, mp, only=_only(args), force=args.force,
                           batch_size=args.batch_size or conf.migrate.batch_size,
                           connections=args.connections or conf.migrate.apply_connections,
                           progress=_say, pause_after_batch=args.pause_after_batch,
                           break_lock=args.break_lock,
                           lock_stale_after=conf.migrate.lock_stale_seconds,
                           plan_file=args.plan)
    finally:
        cl.close()
    if args.format == "json":
        render.print_json(r.to_dict())
    elif not r.plan.refusals:
        if r.run_id is None:
            print("nothing to change")
        else:
            print(f"run {r.run_id}{' (resumed)' if r.resumed else ''}: {r.changes} rows in "
                  f"{r.batches} batches on {r.connections} connection"
                  f"{'s' if r.connections > 1 else ''}, {r.seconds:.2f} s "
                  f"({r.plan_seconds:.2f} s of it planning)")
    return _refused(r.plan, args.format) if r.plan.refusals else 0


def _verify(conf, args) -> int:
    from pacestack.migrate import verify

    mp, cl = _setup(conf, args)
    only = _only(args)
    try:
        out = verify.invariants(cl, mp, only)
        if only is None:
            out += verify.residue(cl, mp)
        moved = []
        if (only is None or "nova" in only) and mp.computes and not args.skip_upstream:
            hosts = tuple({m.new_host for m in mp.computes})
            moved = [r["uuid"] for r in cl.rows(
                "SELECT uuid FROM {nova.instances} WHERE deleted = 0 AND host IN %s", [hosts])]
    finally:
        cl.close()
    if not args.skip_upstream:
        _say("running the projects' own upgrade checks")
        out += verify.upstream_checks(conf.migrate.openstack_bin_dir, cl.config_files,
                                      conf.migrate.status_check_timeout, only)
        if moved:
            rows, err = verify.nova_readback(conf.migrate.openstack_python,
                                             cl.config_files["nova"], moved)
            if rows is None:
                out.append(codes.NOVA_READBACK_FAILED("nova.objects.Instance", error=err))
            else:
                out.append(codes.NOVA_READBACK_OK("nova.objects.Instance", count=len(rows)))
    render.render_findings(out, args.format)
    return EXIT_RUNTIME if findings.has_errors(out) else 0


def _cell(value) -> str:
    text = "NULL" if value is None else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _rollback(conf, args) -> int:
    from pacestack.migrate import rollback as rb

    options.register_opts(conf)
    from pacestack.migrate import cloud

    try:
        uuid.UUID(args.run_id)
    except ValueError:
        shown = args.run_id if len(args.run_id) <= 40 else args.run_id[:37] + "..."
        raise PacestackError(f"RUN_ID {shown!r} is not a run id (the UUID apply printed)",
                             exit_code=EXIT_USAGE) from None
    cl = cloud.open_from_conf(conf, allow_other_server=args.allow_other_server)
    try:
        r = rb.rollback(cl, args.run_id, progress=_say, force=args.force,
                        break_lock=args.break_lock,
                        lock_stale_after=conf.migrate.lock_stale_seconds)
    finally:
        cl.close()
    if args.format == "json":
        render.print_json(r.to_dict())
    else:
        if r.conflicts:
            rows = []
            for c in r.conflicts:
                key = ",".join(f"{k}={v}" for k, v in c.key.items())
                for col in c.columns or [{"column": "-", "written": "-", "now": "-"}]:
                    rows.append((c.table, key, c.state, col["column"], _cell(col["written"]),
                                 "(row gone)" if c.state == "gone" else _cell(col["now"])))
            print(render.table(("TABLE", "KEY", "SINCE", "COLUMN", "RUN WROTE", "NOW"), rows))
        if not r.refused:
            print(f"run {r.run_id}: {r.rows} rows restored in {r.batches} batches"
                  + (f", {r.kept} changed since kept as they are" if r.kept else "")
                  + f"; checksums {'equal to before the apply' if r.checksums_ok else 'DIFFER'}")
            for name, (a, b) in r.checksums.items():
                if a != b:
                    print(f"  {name}: before apply {a}, now {b}")
    if r.refused:
        raise RuntimeFailure(r.refused)
    if not r.checksums_ok and not r.kept:
        raise PacestackError("table checksums differ from before the apply (rows changed by "
                             "something else since?)")
    return 0


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a row count")
    return n


def _common(p: argparse.ArgumentParser, mapping: bool = True) -> None:
    if mapping:
        p.add_argument("--mapping", metavar="FILE",
                       help="mapping file (default: [migrate] mapping_file)")
        p.add_argument("--only", action="append", choices=STEPS, metavar="STEP",
                       help=f"only this step (repeatable): {', '.join(STEPS)}")
    p.add_argument("--allow-other-server", action="store_true",
                   help="let [migrate] connection reach another server than the services' "
                   "own URLs name (default: refused, see [migrate] allow_other_server)")
    commands.add_format_argument(p)


def _break_lock(p: argparse.ArgumentParser) -> None:
    p.add_argument("--break-lock", metavar="HOST:PID",
                   help="take over the journal lock a killed run left behind (named as the "
                   "refusal names it; only once its heartbeat is stale)")


def register(subparsers) -> None:
    _, verbs = commands.add_group(
        subparsers, "migrate", "the cutover's database rewrites: plan, apply, verify, rollback",
        "Rewrite the new cloud's databases for the HA controllers and openvswitch, from a "
        "mapping file (docs/migrate-mapping.md). plan writes nothing; apply journals every "
        "before-image; rollback RUN_ID restores them.")
    p = verbs.add_parser("plan", help="show every row change, refusal and count; write nothing")
    _common(p)
    p.add_argument("--force", action="store_true", help="plan moving instances not stopped")
    p.add_argument("--save", metavar="FILE",
                   help="also write the plan to FILE (mode 0600: it holds new values, some "
                   "secret) for apply --plan FILE; not written when the plan has refusals")
    p.set_defaults(func=_db_errors(_plan))
    p = verbs.add_parser("apply", help="apply the plan in journaled batches")
    _common(p)
    p.add_argument("--force", action="store_true",
                   help="move instances even when they are not stopped")
    p.add_argument("--batch-size", type=int, metavar="N", help="rows per transaction")
    p.add_argument("--connections", type=_connections, metavar="N",
                   help="batches of independent rows (ports, instances, volumes, endpoints) "
                   "committed at once, each on its own connection; 1 = one connection, "
                   "plan order (default: [migrate] apply_connections, 2)")
    p.add_argument("--plan", metavar="FILE",
                   help="apply the plan plan --save wrote to FILE instead of planning again; "
                   "refused, nothing changed, if any table changed since it was saved")
    p.add_argument("--pause-after-batch", type=float, default=0.0, help=argparse.SUPPRESS)
    _break_lock(p)
    p.set_defaults(func=_db_errors(_apply))
    p = verbs.add_parser("verify", help="check invariants and run the projects' own checks")
    _common(p)
    p.add_argument("--skip-upstream", action="store_true",
                   help="only the invariants; no *-status checks, no nova read-back")
    p.set_defaults(func=_db_errors(_verify))
    p = verbs.add_parser("rollback", help="restore a run's before-images")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--force", type=_count, metavar="N",
                   help="restore although N rows changed since the run wrote them (N: their "
                   "count, as listed); those rows are kept as they are now")
    _break_lock(p)
    _common(p, mapping=False)
    p.set_defaults(func=_db_errors(_rollback))
    from pacestack.migrate.rehome.cli import register_rehome

    register_rehome(verbs)
