"""apply writes only the difference, on CIB files: what another writer put in the file
between apply's read and its write stays; a write to what apply changes too stops it,
with nothing written. Real pcs -f, crm_attribute, crm_diff and crm_verify on the file;
the other writer runs when apply calls crm_verify on its edited copy (after the read,
before the write). Time budget: about 15 s."""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pacestack.cluster import apply, cib_patch, description, pcsrun

from pacestack.errors import RuntimeFailure

NODES = ("controller01", "controller02")


def _desc(tmp_path: Path, body: str) -> description.Description:
    path = tmp_path / "cluster.conf"
    path.write_text(f"""\
[cluster]
nodes = {", ".join(NODES)}
addresses = 10.98.0.1, 10.98.0.2
profile = none

[vip]
address = 10.98.0.10
cidr_netmask = 24
fronts = api

[resource:api]
agent = ocf:heartbeat:Dummy
{body}""")
    return description.load([str(path)])


def _on_file(cib_file: Path, argv: list[str]) -> None:
    env = {**os.environ, "CIB_file": str(cib_file)}
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, (argv, proc.stderr)


@pytest.fixture
def cib_file(tmp_path) -> Path:
    """A CIB file with the two nodes (crm_attribute needs their <node> entries)."""
    path = tmp_path / "cib.xml"
    path.write_text(subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True,
                                   check=True).stdout)
    for i, name in enumerate(NODES, 1):
        _on_file(path, ["cibadmin", "--create", "-o", "nodes", "-X",
                        f'<node id="{i}" uname="{name}"/>'])
    return path


def _meanwhile(monkeypatch, *writes) -> None:
    """Run ``writes`` (callables) when apply first calls crm_verify."""
    original = pcsrun.crm_verify

    def writes_first(path):
        monkeypatch.setattr(pcsrun, "crm_verify", original)
        for write in writes:
            write()
        return original(path)

    monkeypatch.setattr(pcsrun, "crm_verify", writes_first)


def _params(cib_file: Path, rid: str) -> dict[str, str]:
    prim = next(p for p in ET.parse(cib_file).iter("primitive") if p.get("id") == rid)
    return {nv.get("name"): nv.get("value") for nv in prim.iterfind("instance_attributes/nvpair")}


def test_other_writers_changes_stay_in_the_file(tmp_path, cib_file, monkeypatch):
    apply.apply(_desc(tmp_path, ""), cib_file=str(cib_file))
    _meanwhile(monkeypatch,
               lambda: _on_file(cib_file, ["crm_attribute", "--node", NODES[0], "--name",
                                           "galera-last-committed", "--lifetime", "forever",
                                           "--update", "u:7:1"]),
               lambda: _on_file(cib_file, ["pcs", "-f", str(cib_file), "constraint", "location",
                                           "api-clone", "avoids", NODES[1]]))
    result = apply.apply(_desc(tmp_path, "params =\n    fake=mine\n"), cib_file=str(cib_file))
    root = ET.parse(cib_file).getroot()
    assert [nv.get("value") for nv in root.iterfind("configuration/nodes/node/"
                                                    "instance_attributes/nvpair")] == ["u:7:1"]
    assert [c.get("node") for c in root.iterfind("configuration/constraints/rsc_location")
            ] == [NODES[1]]
    assert _params(cib_file, "api") == {"fake": "mine"}
    assert pcsrun.crm_verify(str(cib_file)) == []
    assert result.merged and result.written == "diff" and result.changes == 1


def test_deleting_what_another_writer_changed_is_refused(tmp_path, cib_file, monkeypatch):
    apply.apply(_desc(tmp_path, "\n[resource:old]\nagent = ocf:heartbeat:Dummy\n"
                      "mode = single\n"), cib_file=str(cib_file))
    _meanwhile(monkeypatch, lambda: _on_file(cib_file, ["pcs", "-f", str(cib_file), "resource",
                                                        "update", "old", "fake=theirs"]))
    # the description switches "old" off (apply deletes it) and sets a parameter of api
    desc = _desc(tmp_path, "params =\n    fake=mine\n\n[resource:old]\n"
                 "agent = ocf:heartbeat:Dummy\nmode = single\nenabled = false\n")
    with pytest.raises(cib_patch.Conflict) as exc:
        apply.apply(desc, cib_file=str(cib_file))
    assert "primitive 'old' was changed meanwhile; the plan deletes it" in str(exc.value)
    assert "\n" not in str(exc.value) and exc.value.exit_code == 1
    assert _params(cib_file, "old") == {"fake": "theirs"}
    assert _params(cib_file, "api") == {}  # nothing of the plan written


def _files(tmp_path: Path, **texts: str) -> dict[str, str]:
    out = {}
    for name, text in texts.items():
        (tmp_path / f"{name}.xml").write_text(text)
        out[name] = str(tmp_path / f"{name}.xml")
    return out


def test_rebase_refuses_an_attribute_both_changed_and_keeps_the_others(tmp_path):
    pristine = ('<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="1" '
                'admin_epoch="0" num_updates="0"><configuration><resources>'
                '<primitive id="p" class="ocf" provider="heartbeat" type="Dummy" '
                'description="a"/></resources></configuration></cib>')
    ours = pristine.replace('type="Dummy"', 'type="Stateful"')
    files = _files(tmp_path, pristine=pristine, ours=ours)
    patch = cib_patch.diff(files["pristine"], files["ours"])
    assert [(c.operation, c.what) for c in cib_patch.changes(patch, pristine)] == [
        ("modify", "primitive 'p'")]
    theirs = pristine.replace('type="Dummy"', 'type="Delay"')
    with pytest.raises(cib_patch.Conflict, match="primitive 'p': type was changed meanwhile"):
        cib_patch.rebase(patch, pristine, theirs)
    # another attribute of the same element changed meanwhile: theirs kept, ours set
    theirs = pristine.replace('description="a"', 'description="b"')
    merged = ET.fromstring(cib_patch.apply_to(theirs, cib_patch.rebase(patch, pristine, theirs)))
    prim = merged.find(".//primitive")
    assert (prim.get("type"), prim.get("description")) == ("Stateful", "b")
    assert issubclass(cib_patch.Conflict, RuntimeFailure)
