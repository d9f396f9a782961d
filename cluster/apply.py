"""Apply a plan: pcs -f on a copy of the CIB, crm_verify, then write only the difference.

apply keeps the CIB it read untouched and edits a copy; what reaches the target (the
live cluster, or a CIB file) is the patchset between the two (cib_patch), laid on the
target as it is at that moment. Whatever changed there meanwhile stays (a node
attribute the Galera agent recorded, an operator's ban); a change to something the
plan changes too makes apply fail and write nothing. Nothing is written unless every
pcs command succeeded and crm_verify accepts the result (with the changes made
meanwhile, when there were some); a second apply of the same description plans
nothing and writes nothing. corosync.conf is written offline by ``pcs cluster setup
--corosync_conf``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import subprocess
import tempfile
import time

from pacestack.cluster import cib, cib_patch, pcsrun, plan, secrets
from pacestack.cluster.description import Description

from pacestack.errors import ConfigError, RuntimeFailure

LIVE = "live cluster"
# pushes tried while other writers keep changing the live configuration in between
PUSH_ATTEMPTS = 5


@dataclasses.dataclass
class ApplyResult:
    target: str  # the CIB file, or LIVE
    steps: list[plan.Step]
    changed: bool
    changes: int = 0  # changes in the patchset written (created, modified, deleted elements)
    written: str | None = None  # "diff": only those changes were written
    merged: bool = False  # the target had changed since apply read it: those changes kept
    corosync_conf: str | None = None
    corosync_changed: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _origin(desc: Description, step: plan.Step) -> str:
    r = desc.resource(step.target)
    if r is not None:
        return f"{r.origin}: [resource:{r.name}]"
    if step.target == desc.vip.resource:
        return f"{desc.sources[-1] if desc.sources else 'description'}: [vip]"
    if any(f.name == step.target for f in desc.fencing):
        return f"{desc.sources[-1] if desc.sources else 'description'}: [fencing:{step.target}]"
    return step.target


RUNNERS = ("batch", "batch-files", "each")


def run_steps(desc: Description, cib_path: str, steps: list[plan.Step],
              runner: str = "batch") -> None:
    """Run the steps on ``cib_path`` (a scratch copy); raise on the first refusal.

    batch: every command in one pcs process, the CIB kept in memory between them;
    batch-files: one pcs process, but pcs reads and writes the file (cibadmin) for
    every command; each: one ``pcs -f`` process per command, as typed by hand.
    """
    commands = [s.argv for s in steps]
    if runner == "batch":
        results = pcsrun.run_batch(cib_path, commands, memory=True)
    elif runner == "batch-files":
        results = pcsrun.run_batch(cib_path, commands, memory=False)
    elif runner == "each":
        results = pcsrun.run_one_by_one(cib_path, commands)
    else:
        raise ValueError(f"unknown runner {runner!r}")
    for step, res in zip(steps, results, strict=False):
        if res.rc != 0:
            # pcs refuses what the description asked for: the operator fixes the file
            shown = plan.masked([step], desc)[0]
            raise ConfigError(secrets.mask_text(
                f"{_origin(desc, step)}: pcs refused `pcs {shlex.join(shown.argv)}`: "
                f"{res.error_line()}", plan.secret_values(desc)))
    if len(results) != len(steps):
        raise RuntimeFailure(f"pcs ran {len(results)} of {len(steps)} commands")


def _write_atomically(path: str, data: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".pacestack-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
        os.chmod(tmp, 0o640)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _onto(pristine: str, current: str, patch: str, target: str, work: str) -> tuple[str, bool]:
    """The patch to lay on ``current`` and whether ``current`` had changed since apply
    read ``pristine``; refuses conflicts and a merged result crm_verify rejects."""
    if cib_patch.same_configuration(pristine, current):
        return patch, False
    try:
        rebased = cib_patch.rebase(patch, pristine, current)
    except cib_patch.Conflict as exc:
        raise cib_patch.Conflict(f"{target}: changed since apply read it: {exc}; "
                                 f"nothing written") from None
    merged_path = os.path.join(work, "merged.xml")
    with open(merged_path, "w", encoding="utf-8") as fh:
        fh.write(cib_patch.apply_to(current, rebased))
    problems = pcsrun.crm_verify(merged_path)
    if problems:
        raise RuntimeFailure(f"{target}: with the changes made since apply read it, "
                             f"crm_verify rejects the result, nothing written: {problems[0]}")
    return rebased, True


def _push_live(pristine: str, patch: str, work: str) -> bool:
    """The patch onto the live CIB; True when it had changed since apply read it."""
    for _ in range(PUSH_ATTEMPTS):
        current = cib.query_live()
        onto, merged = _onto(pristine, current, patch, LIVE, work)
        try:
            cib_patch.push_live(onto, current, cib.query_live)
        except cib_patch.Stale:
            continue  # written meanwhile: check again against what is there now
        return merged
    raise RuntimeFailure(f"{LIVE}: the configuration changed during each of "
                         f"{PUSH_ATTEMPTS} pushes, nothing written; run apply again")


def _write_file(cib_file: str, pristine: str, scratch: str, patch: str, work: str) -> bool:
    """The patch onto the CIB file as it is now; True when it had changed since read."""
    current = current_cib_xml(cib_file) if os.path.exists(cib_file) else pristine
    if current == pristine:
        with open(scratch, encoding="utf-8") as fh:
            _write_atomically(cib_file, fh.read())
        return False
    onto, merged = _onto(pristine, current, patch, cib_file, work)
    _write_atomically(cib_file, cib_patch.apply_to(current, onto))
    return merged


def current_cib_xml(cib_file: str | None) -> str:
    """The CIB apply starts from: the file (an empty CIB if it does not exist yet) or
    the live cluster's."""
    if cib_file is None:
        return cib.query_live()
    if not os.path.exists(cib_file):
        return cib.empty_cib()
    with open(cib_file, encoding="utf-8") as fh:
        return fh.read()


def apply(desc: Description, *, cib_file: str | None = None, runner: str = "batch",
          corosync_conf: str | None = None) -> ApplyResult:
    """Apply ``desc`` to ``cib_file`` (None: the live cluster this host belongs to)."""
    started = time.monotonic()
    xml = current_cib_xml(cib_file)
    existing = cib.parse(xml, cib_file or LIVE)
    steps = plan.build(desc, existing)
    result = ApplyResult(target=cib_file or LIVE, steps=steps, changed=False)
    if steps:
        with tempfile.TemporaryDirectory(prefix="pacestack-apply-") as work:
            pristine, scratch = os.path.join(work, "read.xml"), os.path.join(work, "cib.xml")
            for path in (pristine, scratch):
                with open(path, "w", encoding="utf-8") as fh:
                    fh.write(xml)
            run_steps(desc, scratch, steps, runner)
            problems = pcsrun.crm_verify(scratch)
            if problems:
                raise RuntimeFailure(f"crm_verify rejects the result, nothing written: "
                                     f"{problems[0]}")
            patch = cib_patch.diff(pristine, scratch)
            result.changes = len(cib_patch.changes(patch))
            if patch:
                result.changed, result.written = True, "diff"
                if cib_file is None:
                    result.merged = _push_live(xml, patch, work)
                else:
                    result.merged = _write_file(cib_file, xml, scratch, patch, work)
    path = corosync_conf or desc.corosync_conf
    if path:
        result.corosync_conf = path
        result.corosync_changed = write_corosync_conf(desc, path)
    result.seconds = time.monotonic() - started
    return result


_UUID_RE = re.compile(r"^\s*cluster_uuid:.*$", re.MULTILINE)


def corosync_conf_text(desc: Description) -> str:
    """corosync.conf as ``pcs cluster setup`` writes it for the description's nodes."""
    argv = [pcsrun.pcs_path(), "cluster", "setup", desc.name]
    for node in desc.nodes:
        argv += [node.name, f"addr={node.address}"]
    with tempfile.TemporaryDirectory(prefix="pacestack-corosync-") as work:
        out = os.path.join(work, "corosync.conf")
        proc = subprocess.run([*argv, "--corosync_conf", out], capture_output=True, text=True,
                              timeout=120, check=False)
        if proc.returncode != 0:
            res = pcsrun.CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)
            raise ConfigError(f"{desc.sources[-1] if desc.sources else 'description'}: "
                              f"[cluster]: pcs cluster setup refused: {res.error_line()}")
        with open(out, encoding="utf-8") as fh:
            return fh.read()


def write_corosync_conf(desc: Description, path: str) -> bool:
    """Write corosync.conf unless an equivalent one is there; True when written.
    pcs puts a fresh random cluster_uuid in every file, so it is not compared."""
    text = corosync_conf_text(desc)
    try:
        with open(path, encoding="utf-8") as fh:
            old = fh.read()
    except FileNotFoundError:
        old = None
    if old is not None and _UUID_RE.sub("", old) == _UUID_RE.sub("", text):
        return False
    _write_atomically(path, text)
    return True
