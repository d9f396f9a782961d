"""Node attributes and promotion scores through Pacemaker's ``crm_attribute``.

Going through the CLI rather than editing XML keeps one code path for a live
cluster and for a CIB file: with ``CIB_file=/path/cib.xml`` in the environment
crm_attribute reads and writes that file instead (a node needs a <node> entry,
and a <node_state> for reboot-lifetime attributes, as in a real status section).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing only: a Galera monitor imports this module
    import subprocess
    from collections.abc import Mapping

# crm_attribute's exit code when the attribute (not the node) does not exist
_NO_SUCH = 105


class AttributeFailure(RuntimeError):
    """crm_attribute failed for a reason other than "no such attribute"."""


def _run(args: list[str], env: Mapping[str, str] | None) -> subprocess.CompletedProcess:
    import subprocess  # ~8 ms: only when an attribute is actually read or written

    try:
        return subprocess.run(["crm_attribute", *args], capture_output=True, text=True,
                              timeout=30, check=False,
                              env=dict(os.environ if env is None else env))
    except (OSError, subprocess.TimeoutExpired) as err:
        raise AttributeFailure(f"crm_attribute {' '.join(args)}: {err}") from None


def _target(name: str, node: str | None, lifetime: str) -> list[str]:
    if lifetime not in ("reboot", "forever"):
        raise ValueError(f"lifetime must be 'reboot' or 'forever', not {lifetime!r}")
    args = ["--name", name, "--lifetime", lifetime]
    if node:
        args += ["--node", node]
    return args


def _fail(what: str, proc: subprocess.CompletedProcess) -> AttributeFailure:
    detail = (proc.stderr or proc.stdout).strip().splitlines()
    return AttributeFailure(f"{what}: crm_attribute exit {proc.returncode}: "
                            f"{detail[-1] if detail else 'no output'}")


def _missing(proc: subprocess.CompletedProcess) -> bool:
    """Only "no such attribute": an unknown node also exits 105 but says so."""
    return proc.returncode == _NO_SUCH and "Could not map" not in proc.stderr


def get(name: str, node: str | None = None, lifetime: str = "reboot", *,
        env: Mapping[str, str] | None = None) -> str | None:
    proc = _run([*_target(name, node, lifetime), "--query", "--quiet"], env)
    if proc.returncode == 0:
        return proc.stdout.strip()
    if _missing(proc):
        return None
    raise _fail(f"reading {name}", proc)


def set(name: str, value: object, node: str | None = None, lifetime: str = "reboot", *,  # noqa: A001
        env: Mapping[str, str] | None = None) -> None:
    proc = _run([*_target(name, node, lifetime), "--update", str(value)], env)
    if proc.returncode != 0:
        raise _fail(f"setting {name}={value}", proc)


def delete(name: str, node: str | None = None, lifetime: str = "reboot", *,
           env: Mapping[str, str] | None = None) -> None:
    proc = _run([*_target(name, node, lifetime), "--delete"], env)
    if proc.returncode != 0 and not _missing(proc):
        raise _fail(f"deleting {name}", proc)


def promotion_attribute(resource: str) -> str:
    """Pacemaker reads promotion scores from ``master-<resource>`` (clone suffix
    dropped: anonymous clone instances share one score per node)."""
    return "master-" + resource.split(":", 1)[0]


def set_promotion_score(resource: str, score: int, node: str | None = None, *,
                        env: Mapping[str, str] | None = None) -> None:
    set(promotion_attribute(resource), int(score), node, "reboot", env=env)


def get_promotion_score(resource: str, node: str | None = None, *,
                        env: Mapping[str, str] | None = None) -> int | None:
    value = get(promotion_attribute(resource), node, "reboot", env=env)
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        raise AttributeFailure(
            f"promotion score of {resource} is not an integer: {value!r}") from None


def delete_promotion_score(resource: str, node: str | None = None, *,
                           env: Mapping[str, str] | None = None) -> None:
    delete(promotion_attribute(resource), node, "reboot", env=env)
