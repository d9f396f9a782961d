"""The finding-code registry: one code, one meaning, a payload the message is built from."""

import ast
import pathlib

import pytest

from pacestack import codes
from pacestack.findings import Severity

ROOT = pathlib.Path(__file__).resolve().parents[2]
LEGACY_CALLS = {"error", "warning", "info", "refuse", "note"}


def _literal_codes(part: str) -> dict[str, set[str]]:
    """Code names written as string literals at finding call sites, per file."""
    out: dict[str, set[str]] = {}
    for path in (ROOT / part).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            first = node.args[0]
            if name in LEGACY_CALLS and isinstance(first, ast.Constant) \
                    and isinstance(first.value, str) and first.value.isupper():
                out.setdefault(str(path.relative_to(ROOT)), set()).add(first.value)
    return out


def test_every_part_builds_findings_only_from_registered_codes():
    for part in ("pacestack", "cluster", "agents", "migrate"):
        assert _literal_codes(part) == {}, f"{part}: use pacestack.codes, not a string"


def test_a_code_builds_its_message_from_a_checked_payload():
    f = codes.CINDER_HOST_MISMATCH("cinder.conf [DEFAULT] host", node="controller01",
                                   host="controller01", shared="controller")
    assert f.severity is Severity.ERROR and f.code == "CINDER_HOST_MISMATCH"
    assert f.message.startswith("controller01: host is 'controller01', not the shared "
                                "name 'controller'")
    assert f.to_dict()["payload"] == {"node": "controller01", "host": "controller01",
                                      "shared": "controller"}
    assert codes.COROSYNC_NODES("nodelist", nodes=("a", "b")).message == \
        "nodes missing from the nodelist: a, b"
    with pytest.raises(TypeError, match="payload"):
        codes.COROSYNC_NODES("nodelist")
    with pytest.raises(TypeError, match="seqno must be"):
        codes.GALERA_NOT_MOST_ADVANCED("n1", node="n1", seqno="90", best="n2", best_seqno=100)


def test_a_code_is_declared_once_with_the_fields_its_message_uses():
    assert all(name == code.name for name, code in codes.declared().items())
    with pytest.raises(ValueError, match="declared twice"):
        codes._code("CRM_VERIFY", Severity.ERROR, "{problem}", problem=str)
    with pytest.raises(ValueError, match="template fields"):
        codes.Code("X_Y", Severity.ERROR, "{a} and {b}", a=str)
