"""plan --save FILE, apply --plan FILE: apply writes exactly the saved plan, and only
while every table is as the plan saw it; a row changed since (even one the plan does
not write) makes apply refuse, nothing changed. The seed's cloud in the real schemas."""

from __future__ import annotations

import contextlib
import json
import os
import stat

import pytest
from pacestack.migrate import apply as applymod
from pacestack.migrate import saved as savedmod
from pacestack.migrate.journal import Journal

from pacestack.errors import ConfigError, RuntimeFailure
from tests.migrate import seed_cloud


def _cli(s, verb: str, *args: str):
    return s.cli(verb, "--mapping", str(s.mapping_path), *args)


def _runs(s) -> int:
    """Runs in the journal (none when apply never got as far as creating it)."""
    exists = s.os.server.execute("SELECT COUNT(*) FROM information_schema.tables WHERE "
                                 "table_schema = %s AND table_name = 'runs'", [s.journal_db])
    if not exists[0][0]:
        return 0
    return s.os.server.execute(f"SELECT COUNT(*) FROM `{s.journal_db}`.runs")[0][0]  # noqa: S608


def test_saved_plan_is_applied_then_rolled_back(seeded, tmp_path):
    s = seeded
    path = tmp_path / "cutover.plan"
    before = s.checksums()
    out = _cli(s, "plan", "--save", str(path), "--format", "json")
    assert out.returncode == 0, out.stderr
    planned = json.loads(out.stdout)
    assert planned["saved"] == str(path)
    assert planned["changes_total"] == seed_cloud.SEED_CHANGES
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # new values, some secret
    assert s.checksums() == before  # plan --save writes nothing to the databases

    applied = _cli(s, "apply", "--plan", str(path), "--batch-size", "7", "--format", "json")
    assert applied.returncode == 0, applied.stderr
    doc = json.loads(applied.stdout)
    assert doc["changes"] == seed_cloud.SEED_CHANGES and doc["refusals"] == []
    # what a fresh plan would have done: nothing is left to change
    again = json.loads(_cli(s, "plan", "--format", "json").stdout)
    assert again["ok"] and again["changes_total"] == 0, again["refusals"]
    # the run is journaled as any: rollback restores every before-image
    rb = s.cli("rollback", doc["run_id"])
    assert rb.returncode == 0, rb.stderr
    assert s.checksums() == before


def test_row_changed_after_save_refuses_apply(seeded, tmp_path):
    """vm-b is stopped when planned, then started: its move was planned for a stopped
    instance. The plan's guards cover only the columns it writes (host, node), so
    without the table checks apply would move a running instance from the file."""
    s = seeded
    path = tmp_path / "cutover.plan"
    assert _cli(s, "plan", "--save", str(path)).returncode == 0
    vm_b = s.seed.instances["vm-b"]
    s.sql("nova", "UPDATE instances SET vm_state = 'active', power_state = 1 "
                  "WHERE uuid = %s", [vm_b])
    before = s.checksums()
    out = _cli(s, "apply", "--plan", str(path))
    assert out.returncode == 1, out.stdout + out.stderr
    err = [line for line in out.stderr.splitlines() if not line.startswith("pacestack migrate:")]
    assert len(err) == 1 and "is stale" in err[0] and "nova.instances" in err[0], err
    assert s.checksums() == before
    assert _runs(s) == 0
    # planning again sees the running instance and refuses to move it
    fresh = _cli(s, "plan", "--format", "json")
    assert fresh.returncode == 2 and f"{vm_b} on compute01 is active" in fresh.stderr


def test_row_of_an_unwritten_table_changed_refuses_apply(seeded, tmp_path):
    """The residue search reads every table: a new old name anywhere may be a refusal."""
    s = seeded
    path = tmp_path / "cutover.plan"
    with contextlib.closing(s.cloud()) as c:
        _plan, written = savedmod.save(str(path), c, s.mapping())
    assert written
    s.sql("keystone", "UPDATE region SET description = 'moved' LIMIT 1") \
        if s.sql("keystone", "SELECT COUNT(*) FROM region")[0][0] else \
        s.sql("keystone", "INSERT INTO region (id, description, extra) VALUES "
                          "('RegionTwo', '', '{}')")
    with contextlib.closing(s.cloud()) as c:
        with pytest.raises(RuntimeFailure, match=r"stale: 1 tables changed .*keystone\.region"):
            applymod.apply(c, s.mapping(), plan_file=str(path))
    assert _runs(s) == 0


def test_tables_changing_while_planning_save_nothing(seeded, tmp_path, monkeypatch):
    s = seeded
    path = tmp_path / "cutover.plan"
    real = savedmod.build

    def build_then_write(cloud, *a, **kw):
        plan = real(cloud, *a, **kw)
        s.sql("cinder", "UPDATE volumes SET display_description = 'busy' LIMIT 1")
        return plan
    monkeypatch.setattr(savedmod, "build", build_then_write)
    with contextlib.closing(s.cloud()) as c:
        with pytest.raises(RuntimeFailure, match=r"1 tables changed while planning "
                                                 r"\(cinder\.volumes\)"):
            savedmod.save(str(path), c, s.mapping())
    assert not path.exists() and os.listdir(tmp_path).count("cutover.plan") == 0
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".pacestack-plan-")]


def test_bad_saved_plans_are_refused_before_anything(seeded, tmp_path):
    s = seeded
    path = tmp_path / "cutover.plan"
    assert _cli(s, "plan", "--save", str(path)).returncode == 0
    head, _nl, blob = path.read_bytes().partition(b"\n")  # a JSON line, then long texts
    assert blob  # the seed's info caches are long texts
    doc = json.loads(head)
    before = s.checksums()

    def refused(text: str | bytes | None, *extra: str, match: str) -> None:
        bad = tmp_path / "bad.plan"
        if text is not None:
            bad.write_bytes(text if isinstance(text, bytes) else text.encode() + b"\n" + blob)
        out = _cli(s, "apply", "--plan", str(bad if text is not None else path), *extra)
        assert out.returncode == 2, out.stdout + out.stderr
        err = [ln for ln in out.stderr.splitlines() if not ln.startswith("pacestack migrate:")]
        assert len(err) == 1 and match in err[0], err
        assert s.checksums() == before
    refused("{not json", match="not JSON")
    refused(json.dumps({**doc, "format": "x"}), match="no format")
    # a table outside the whitelist, as a tampered file would name it
    shapes = [dict(sh) for sh in doc["shapes"]]
    shapes[0]["table"] = "users"
    refused(json.dumps({**doc, "shapes": shapes}), match="users")
    rows = [list(r) for r in doc["rows"]]
    rows[0].append("extra")
    refused(json.dumps({**doc, "rows": rows}), match="fields")
    refused(head + b"\n" + blob[:-1] if blob else head, match="truncated")
    refused(None, "--only", "nova", match="--only and --force are the saved plan's")
    (tmp_path / "missing").mkdir()
    out = _cli(s, "apply", "--plan", str(tmp_path / "missing" / "none.plan"))
    assert out.returncode == 2 and "cannot read the saved plan" in out.stderr
    # another mapping than the plan was made with
    s.mapping(seed_cloud.SEED_MAPPING + "\n# edited\n")
    refused(None, match="another mapping file")
    assert _runs(s) == 0


def test_interrupted_run_is_not_continued_from_a_file(seeded, tmp_path):
    s = seeded
    path = tmp_path / "cutover.plan"
    mp = s.mapping()
    with contextlib.closing(s.cloud()) as c:
        savedmod.save(str(path), c, mp)
        j = Journal(c)
        j.ensure_schema()
        run_id = j.start_run(applymod.mapping_digest(mp, list(savedmod.STEPS)),
                             list(savedmod.STEPS))
        with pytest.raises(RuntimeFailure, match=f"run {run_id} was interrupted: continue it "
                                                 "with apply without --plan"):
            applymod.apply(c, mp, plan_file=str(path))
        with pytest.raises(ConfigError, match="cannot read the saved plan"):
            applymod.apply(c, mp, plan_file=str(tmp_path / "none"))
