"""Running Pacemaker's tools on CIB files: pcs -f (batched or one by one), crm_verify."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence

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
    proc = subprocess.run([*pcs_interpreter(), "-I", _BATCH_SCRIPT], input=request,
                          capture_output=True, text=True, timeout=timeout, check=False)
    results = []
    for line, argv in zip(proc.stdout.splitlines(), commands, strict=False):
        data = json.loads(line)
        results.append(CommandResult(tuple(argv), data["rc"], data["stdout"], data["stderr"]))
    if proc.returncode != 0 and (not results or results[-1].rc == 0):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeFailure(f"pcs batch runner failed: {tail}")
    return results


def run_one_by_one(cib_path: str, commands: Sequence[Sequence[str]], timeout: float = 120
                   ) -> list[CommandResult]:
    """The same commands as separate ``pcs -f`` processes, as a person would run them."""
    results = []
    for argv in commands:
        proc = subprocess.run([pcs_path(), "-f", cib_path, *argv], capture_output=True,
                              text=True, timeout=timeout, check=False)
        results.append(CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr))
        if proc.returncode != 0:
            break
    return results


def crm_verify(cib_path: str) -> list[str]:
    """crm_verify's complaints about a CIB file (empty: valid)."""
    env = {k: v for k, v in os.environ.items() if k != "CIB_file"}
    proc = subprocess.run(["crm_verify", "-x", cib_path, "-V"], capture_output=True,
                          text=True, env=env, check=False, timeout=120)
    if proc.returncode == 0:
        return []
    lines = [" ".join(ln.split()) for ln in (proc.stderr + proc.stdout).splitlines()]
    problems = [ln for ln in lines if ln and not ln.startswith("-V may provide")]
    return problems or [f"crm_verify exit status {proc.returncode}"]
