"""A plan saved to a file (``plan --save FILE``) and applied later (``apply --plan FILE``).

Re-planning reads every table of every service database (the residue scan) and
costs apply a third of its time; a saved plan spares it, but only while it is
still what a plan would say now. A plan is a function of the databases' rows,
the mapping, ``--only``/``--force`` and the ml2 settings: the file records all of
them, the rows as the CHECKSUM TABLE of every base table of every database a
plan reads, taken before and after planning (equal: nothing was committed while
the plan read). apply checksums the same tables again under the run lock and
refuses the file when any differs, naming the tables: a row changed since the
plan is never overwritten from the file. The checksums apply takes are also the
before-run checksums its rollback compares against.

The file holds the new values of rows, some of them secrets (a cell's database
URL), so it is written mode 0600. It is JSON: loading it runs no code, and every
change is checked against the table whitelist as a plan's are.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from typing import Any

from pacestack.migrate import residue
from pacestack.migrate.batch import HASH_OVER, Digest, md5_hex
from pacestack.migrate.journal import _default, _hook
from pacestack.migrate.model import STEPS, Change, Plan, StepPlan
from pacestack.migrate.plan import build, no_cyclic_gc
from pacestack.migrate.tables import q

from pacestack import __version__
from pacestack.errors import ConfigError, RuntimeFailure

FORMAT = "pacestack-migrate-plan/1"
_NATIVE = (str, int, float, bool, type(None))
_BLOB_OVER = 512  # characters: longer texts are stored after the JSON, as they are


def ml2_digest(cloud) -> str:
    return hashlib.sha256(repr(cloud.ml2).encode()).hexdigest()


def _tables(cloud, dbs: dict[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {name: [] for name in dbs}
    by_real = {real: name for name, real in dbs.items()}
    with cloud.conn.cursor() as cur:
        cur.execute("SELECT table_schema, table_name FROM information_schema.tables WHERE "
                    "table_type = 'BASE TABLE' AND table_schema IN %s "
                    "ORDER BY table_schema, table_name", [tuple(dbs.values())])
        for schema, name in cur.fetchall():
            out[by_real[schema]].append(name)
    return out


def checksums(cloud, conn=None) -> dict[str, Any]:
    """"db.table" -> CHECKSUM TABLE of every base table of every database a plan reads
    (the services', each nova cell's on this server), one statement per database."""
    dbs, _elsewhere = residue.databases(cloud)
    names = _tables(cloud, dbs)
    out: dict[str, Any] = {}
    conn = conn or cloud.conn
    conn.commit()  # a fresh read: never the snapshot of an open transaction
    with conn.cursor() as cur:
        for name, tabs in names.items():
            if not tabs:
                continue
            real = q(dbs[name])
            cur.execute("CHECKSUM TABLE " + ", ".join(f"{real}.{q(t)}" for t in tabs))
            for (full, value), t in zip(cur.fetchall(), tabs, strict=True):
                if not full.endswith("." + t):
                    raise RuntimeFailure(f"CHECKSUM TABLE answered for {full}, not {t}")
                out[f"{name}.{t}"] = value
    conn.commit()
    return out


def _encode(changes: list[Change]) -> tuple[list[dict], list[str], list[list], bytes]:
    """Rows in plan order (batches depend on it), each naming its shape: the columns
    are listed once per shape, not once per row; and the long texts they hold."""
    shapes: list[dict] = []
    index: dict[tuple, int] = {}
    texts: dict[str, int] = {}  # units and reasons, each written once
    rows: list[list] = []
    tagged: dict[int, set[int]] = {}
    for c in changes:
        sig = (c.step, c.db, c.table, c.op, tuple(c.key), tuple(c.before), tuple(c.after))
        n = index.get(sig)
        if n is None:
            n = index[sig] = len(shapes)
            shapes.append({"step": c.step, "db": c.db, "table": c.table, "op": c.op,
                           "key": list(c.key), "before": list(c.before),
                           "after": list(c.after), "tagged": []})
        before = list(c.before.values())
        for i, v in enumerate(before):
            # an old value longer than HASH_OVER is only ever compared by its MD5
            if type(v) is str and len(v) > HASH_OVER:
                before[i] = Digest(md5_hex(v))
        rows.append([n, texts.setdefault(c.unit, len(texts)),
                     texts.setdefault(c.why, len(texts)), *c.key.values(), *before,
                     *c.after.values()])
    rows = _constants(shapes, rows)
    # values JSON does not hold (datetimes, decimals, bytes, digests) are tagged, and so
    # are long texts, kept as they are after the JSON (an info cache's JSON, escaped
    # inside a JSON string, would cost loading twice the time)
    blob: list[bytes] = []
    size = 0
    for r in rows:
        for i in range(3, len(r)):
            v = r[i]
            if type(v) is str:
                if len(v) > _BLOB_OVER:
                    raw = v.encode("utf-8", "surrogatepass")
                    r[i] = {"$blob": [size, len(raw)]}
                    blob.append(raw)
                    size += len(raw)
                    tagged.setdefault(r[0], set()).add(i)
            elif not isinstance(v, _NATIVE) or type(v) is Digest:
                tagged.setdefault(r[0], set()).add(i)
                r[i] = _scalar(v)
    for n, cols in tagged.items():
        shapes[n]["tagged"] = sorted(cols)
    return shapes, list(texts), rows, b"".join(blob)


def _scalar(v: Any) -> Any:
    if type(v) is Digest:
        return {"$md5": str(v)}
    return v if isinstance(v, _NATIVE) else _default(v)


def _constants(shapes: list[dict], rows: list[list]) -> list[list]:
    """An old or new value the same in every row of a shape (a binding's new
    vif_details, a volume's new host) is written once, in the shape."""
    by_shape: dict[int, list[list]] = {}
    for r in rows:
        by_shape.setdefault(r[0], []).append(r)
    drop: dict[int, list[int]] = {}
    for n, members in by_shape.items():
        sh = shapes[n]
        first = members[0]
        start = 3 + len(sh["key"])
        same = [i for i in range(start, len(first)) if len(members) > 1 and all(
            type(r[i]) is type(first[i]) and r[i] == first[i] for r in members)]
        if not same:
            continue
        drop[n] = same
        names = sh["before"] + sh["after"]
        nb = len(sh["before"])
        sh["const_before"] = {names[i - start]: _scalar(first[i]) for i in same
                              if i - start < nb}
        sh["const_after"] = {names[i - start]: _scalar(first[i]) for i in same
                             if i - start >= nb}
        sh["before"] = [c for c in sh["before"] if c not in sh["const_before"]]
        sh["after"] = [c for c in sh["after"] if c not in sh["const_after"]]
    if not drop:
        return rows
    out = []
    for r in rows:
        gone = drop.get(r[0])
        out.append([v for i, v in enumerate(r) if i not in gone] if gone else r)
    return out


def save(path: str, cloud, mapping, only: list[str] | None = None,
         force: bool = False) -> tuple[Plan, bool]:
    """Plan, and write the plan to path when it has no refusals and the databases did
    not change while planning; returns the plan and whether it was written."""
    from pacestack.migrate.apply import mapping_digest  # apply imports this module

    steps = only or list(STEPS)
    folder = os.path.dirname(os.path.abspath(path))
    try:  # an unwritable place is refused before the plan's minutes of reading
        fd, tmp = tempfile.mkstemp(prefix=".pacestack-plan-", dir=folder)  # mode 0600
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the plan there ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            before = checksums(cloud)
            plan = build(cloud, mapping, only=steps, force=force)
            cloud.conn.commit()
            if plan.refusals:
                os.unlink(tmp)
                return plan, False
            after = checksums(cloud)
            moved = _moved(before, after)
            if moved:
                raise RuntimeFailure(f"{len(moved)} tables changed while planning "
                                     f"({_few(moved)}): nothing saved; plan again once the "
                                     "cloud is quiet")
            shapes, texts, rows, blob = _encode(plan.changes)
            # one line of JSON (escaped: no newline inside), then the long texts
            head = json.dumps({"format": FORMAT, "pacestack_version": __version__,
                               "steps": steps, "force": force,
                               "mapping_digest": mapping_digest(mapping, steps),
                               "ml2_digest": ml2_digest(cloud), "databases": cloud.databases,
                               "release": plan.release, "mapping_path": plan.mapping_path,
                               "checksums": after, "shapes": shapes, "texts": texts,
                               "rows": rows, "blob_bytes": len(blob)},
                              separators=(",", ":"), allow_nan=False)
            fh.write(head.encode("ascii") + b"\n")
            fh.write(blob)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return plan, True


@dataclasses.dataclass
class Saved:
    path: str
    steps: list[str]
    force: bool
    mapping_digest: str
    ml2_digest: str
    databases: dict[str, str]
    checksums: dict[str, Any]
    plan: Plan
    version: str


def _bad(path: str, what: str) -> ConfigError:
    return ConfigError(f"{path}: not a plan saved by pacestack migrate plan --save ({what})")


def load(path: str) -> Saved:
    """The saved plan in path; ConfigError (nothing changed) when it is not one."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the saved plan ({exc.strerror})") from None
    end = data.find(b"\n")
    try:
        doc = json.loads(data[:end] if end >= 0 else data)
    except ValueError:
        raise _bad(path, "not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _bad(path, "no format " + FORMAT)
    try:
        blob = memoryview(data)[end + 1:] if end >= 0 else memoryview(b"")
        if len(blob) != doc["blob_bytes"]:
            raise ValueError(f"{len(blob)} bytes of long values, not {doc['blob_bytes']}: "
                             "truncated?")
        steps = [s for s in STEPS if s in doc["steps"]]
        if not steps or len(steps) != len(doc["steps"]):
            raise ValueError("steps")
        with no_cyclic_gc():
            by_step = _decode(doc["shapes"], doc["texts"], doc["rows"], blob)
        plan = Plan([StepPlan(s, by_step.get(s, [])) for s in steps],
                    str(doc["mapping_path"]), release=str(doc["release"]))
        return Saved(path, steps, bool(doc["force"]), str(doc["mapping_digest"]),
                     str(doc["ml2_digest"]), dict(doc["databases"]), dict(doc["checksums"]),
                     plan, str(doc["pacestack_version"]))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        # a whitelist refusal (ValueError) names the table or column itself
        raise _bad(path, " ".join(str(exc).split())[:120] or type(exc).__name__) from None


def _decode(shapes: list[dict], texts: list[str], rows: list[list], blob: memoryview
            ) -> dict[str, list[Change]]:
    out: dict[str, list[Change]] = {}

    def tag(v: Any) -> Any:
        if type(v) is not dict:
            return v
        if "$blob" in v:
            start, n = v["$blob"]
            if not 0 <= start <= start + n <= len(blob):
                raise ValueError(f"long value at {start}+{n} is outside the file")
            return str(blob[start:start + n], "utf-8", "surrogatepass")
        return _hook(v)
    made = []
    for s in shapes:
        if s["op"] not in ("insert", "update", "delete") or s["step"] not in STEPS:
            raise ValueError(f"operation {str(s['op'])[:20]!r} of step {str(s['step'])[:20]!r}")
        nk, nb = len(s["key"]), len(s["before"])
        # what every row of the shape shares, worked out once: ~180,000 rows, a few
        # dozen shapes
        made.append((s["step"], s["db"], s["table"], s["op"], s["key"], s["before"],
                     s["after"], 3 + nk, 3 + nk + nb, 3 + nk + nb + len(s["after"]),
                     set(s["tagged"]),
                     {c: tag(v) for c, v in s.get("const_before", {}).items()},
                     {c: tag(v) for c, v in s.get("const_after", {}).items()},
                     out.setdefault(s["step"], []).append))
    names = [str(t) for t in texts]
    for r in rows:
        step, dbn, table, op, kc, bc, ac, b0, a0, n, tagged, cb, ca, add = made[r[0]]
        if tagged:
            r = [tag(v) if i in tagged else v for i, v in enumerate(r)]
        if len(r) != n:
            raise ValueError(f"a row of {dbn}.{table} has {len(r)} fields")
        # the length check above makes each slice exactly as long as its names
        before = dict(zip(bc, r[b0:a0]))  # noqa: B905
        after = dict(zip(ac, r[a0:]))  # noqa: B905
        add(Change(step, dbn, table, op, dict(zip(kc, r[3:b0])),  # noqa: B905
                   {**cb, **before} if cb else before, {**ca, **after} if ca else after,
                   names[r[1]], names[r[2]]))
    return {step: changes for step, changes in out.items() if changes}


def _moved(then: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The tables whose checksum differs between two readings (or is in one only)."""
    return sorted(k for k in now.keys() | then.keys() if now.get(k) != then.get(k))


def _few(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def check(cloud, mapping, saved: Saved, now: dict[str, Any]) -> None:
    """Refuse (nothing changed) a saved plan that is not what planning would say now:
    another version, mapping, ml2 settings or set of databases, or any table whose
    checksum differs from the one taken when it was saved."""
    from pacestack.migrate.apply import mapping_digest  # apply imports this module

    where = f"plan {saved.path}"
    if saved.version != __version__:
        raise ConfigError(f"{where} was saved by pacestack {saved.version}, this is "
                          f"{__version__}: plan again")
    if saved.mapping_digest != mapping_digest(mapping, saved.steps):
        raise ConfigError(f"{where} was made with another mapping file: plan again with "
                          "this one, or apply with the mapping the plan was made with")
    if saved.ml2_digest != ml2_digest(cloud) or saved.databases != cloud.databases:
        raise ConfigError(f"{where} was made for other ml2 settings or databases than "
                          "these: plan again")
    moved = _moved(saved.checksums, now)
    if moved:
        raise RuntimeFailure(f"{where} is stale: {len(moved)} tables changed since it was "
                             f"saved ({_few(moved)}); nothing changed, plan again")


def current_plan(cloud, mapping, saved: Saved) -> tuple[Plan, dict]:
    """The saved plan once the databases are checked (under the run lock) to be as it
    saw them, and the before-run checksums of the tables it writes."""
    now = checksums(cloud)
    check(cloud, mapping, saved, now)
    return saved.plan, {(d, t): now[f"{d}.{t}"] for d, t in saved.plan.tables()}
