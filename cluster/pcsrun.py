"""Running Pacemaker's tools on CIB files: pcs -f (batched or one by one), crm_verify."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence

from pacestack.cluster import cib

from pacestack.errors import RuntimeFailure

_BATCH_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pcs_batch.py")


@dataclasses.dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str

    def error_line(self) -> str:
        """pcs's own explanation, on one line."""
        lines = [ln.strip() for ln in self.stderr.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("Error:")
                  and "unable to continue" not in ln]
        return " ".join((errors or lines or [f"exit status {self.rc}"])[0].split())


def pcs_path() -> str:
    path = shutil.which("pcs") or shutil.which("pcs", path="/usr/sbin:/sbin")
    if not path:
        raise RuntimeFailure("pcs not found: install the pcs package")
    return path


def pcs_interpreter() -> list[str]:
    """The interpreter pcs's launcher runs under (its shebang), where ``pcs`` imports."""
    with open(pcs_path(), encoding="utf-8", errors="replace") as fh:
        first = fh.readline()
    if not first.startswith("#!"):
        raise RuntimeFailure(f"{pcs_path()} is not a Python launcher")
    return shlex.split(first[2:])[:1]


def run_batch(cib_path: str, commands: Sequence[Sequence[str]], timeout: float = 600,
              memory: bool = True) -> list[CommandResult]:
    """``pcs -f cib_path ARGV`` for every command, in one pcs process; stops at the first
    failure (the last result is then the failing one). ``memory`` keeps the CIB in
    that process between commands (see pcs_batch.py): the caller must crm_verify the
    result, as apply does."""
    if not commands:
        return []
    request = json.dumps({"file": cib_path, "commands": [list(c) for c in commands],
                          "memory": memory})
    proc = _run([*pcs_interpreter(), "-I", _BATCH_SCRIPT], timeout, input=request,
                what="pcs (batch runner)")
    results = []
    for line, argv in zip(proc.stdout.splitlines(), commands, strict=False):
        try:
            data = json.loads(line)
            results.append(CommandResult(tuple(argv), int(data["rc"]), str(data["stdout"]),
                                         str(data["stderr"])))
        except (ValueError, TypeError, KeyError):
            raise RuntimeFailure(f"pcs batch runner answered {line[:80]!r}, not its JSON "
                                 "result: is pcs's Python the one pcs_batch.py expects?"
                                 ) from None
    if proc.returncode != 0 and (not results or results[-1].rc == 0):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeFailure(f"pcs batch runner failed: {tail}")
    return results


def run_one_by_one(cib_path: str, commands: Sequence[Sequence[str]], timeout: float = 120
                   ) -> list[CommandResult]:
    """The same commands as separate ``pcs -f`` processes, as a person would run them.

    A command line is readable by every local user (/proc/PID/cmdline): secret
    parameters (secrets.py) go to pcs as a placeholder, and their values into the
    CIB file afterwards, by this process."""
    results = []
    for argv in commands:
        shown, target, hidden = _hide_secrets(cib_path, argv)
        proc = _run([pcs_path(), "-f", cib_path, *shown], timeout, what="pcs")
        if proc.returncode == 0 and hidden:
            _fill_secrets(cib_path, target, hidden)
        results.append(CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr))
        if proc.returncode != 0:
            break
    return results


_ATTR_ENDS = ("op", "meta", "clone", "promotable", "bundle", "group")


def _hide_secrets(cib_path: str, argv: Sequence[str]
                  ) -> tuple[list[str], str, dict[str, str]]:
    """(argv with secret values as the mask, the resource id, {name: value} hidden)
    for ``resource|stonith create|update ID ...``; anything else unchanged."""
    from pacestack.cluster import secrets

    argv = list(argv)
    if len(argv) < 4 or argv[0] not in ("resource", "stonith") or \
            argv[1] not in ("create", "update"):
        return argv, "", {}
    target = argv[2]
    if argv[1] == "create":
        agent = f"stonith:{argv[3]}" if argv[0] == "stonith" else argv[3]
        first = 4
    else:
        agent = _cib_agent(cib_path, target)
        first = 3
    end = next((i for i in range(first, len(argv)) if argv[i] in _ATTR_ENDS
                or argv[i].startswith("-")), len(argv))
    pairs = {w.partition("=")[0]: w.partition("=")[2] for w in argv[first:end] if "=" in w}
    names = secrets.secret_names(agent, [k for k, v in pairs.items() if v])
    if not names:
        return argv, target, {}
    for i in range(first, end):
        key = argv[i].partition("=")[0]
        if key in names:
            argv[i] = f"{key}={secrets.MASK}"
    return argv, target, {k: pairs[k] for k in names}


def _cib_agent(cib_path: str, rid: str) -> str:
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(cib_path).getroot()
    except (OSError, ET.ParseError):
        return ""
    for prim in root.iter("primitive"):
        if prim.get("id") == rid:
            return cib.agent_name(prim)
    return ""


def _fill_secrets(cib_path: str, rid: str, values: dict[str, str]) -> None:
    """Put the hidden values where pcs wrote the placeholder (the primitive's
    instance attributes), rewriting the file in place."""
    import xml.etree.ElementTree as ET

    from pacestack.cluster import secrets

    tree = ET.parse(cib_path)
    prim = next((p for p in tree.getroot().iter("primitive") if p.get("id") == rid), None)
    todo = dict(values)
    if prim is not None:
        for attrs in prim.findall("instance_attributes"):
            for nv in attrs.findall("nvpair"):
                if nv.get("name") in todo and nv.get("value") == secrets.MASK:
                    nv.set("value", todo.pop(nv.get("name")))
    if todo:
        raise RuntimeFailure(f"{rid}: pcs did not write parameter {sorted(todo)[0]} "
                             "where pacestack puts its secret value")
    tree.write(cib_path, encoding="unicode")


def _run(argv: Sequence[str], timeout: float, *, input: str | None = None,
         env: dict[str, str] | None = None, what: str | None = None
         ) -> subprocess.CompletedProcess:
    """Run a Pacemaker tool; one line (RuntimeFailure) when it hangs or cannot run."""
    name = what or os.path.basename(argv[0])
    try:
        return subprocess.run(list(argv), input=input, capture_output=True, text=True,
                              errors="replace", env=env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeFailure(f"{name} did not finish within {timeout:g} s: "
                             "nothing written") from None
    except OSError as exc:
        raise RuntimeFailure(f"{name}: {exc.strerror or exc}") from None


def crm_verify(cib_path: str) -> list[str]:
    """crm_verify's complaints about a CIB file (empty: valid)."""
    env = {k: v for k, v in os.environ.items() if k != "CIB_file"}
    proc = _run(["crm_verify", "-x", cib_path, "-V"], 120, env=env)
    if proc.returncode == 0:
        return []
    lines = [" ".join(ln.split()) for ln in (proc.stderr + proc.stdout).splitlines()]
    problems = [ln for ln in lines if ln and not ln.startswith("-V may provide")]
    return problems or [f"crm_verify exit status {proc.returncode}"]
