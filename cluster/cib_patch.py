"""The difference apply pushes: a Pacemaker patchset between the CIB apply read and the
copy pcs edited, re-checked against the CIB as it is when the patch is pushed.

A patchset (``crm_diff``, format 2) is a list of changes addressed by XPath, mostly by
id: create a child of an element, set or unset attributes of one, delete one, move
one. Applied on top of a CIB that changed since apply read it, everything else that
changed meanwhile stays: a node attribute the Galera agent wrote (``crm_attribute
--lifetime forever``), a ban an operator set. What the patch itself touches must be
as apply read it, or the patch is refused (``Conflict``) rather than overwrite it.

Pacemaker applies the patch only when the live CIB's ``admin_epoch``/``epoch`` are
the ones in the patch's version, so the check and the push cannot be split by a
configuration write (status updates change ``num_updates`` only and do not count).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable

from pacestack.errors import RuntimeFailure

_VERSION_ATTRS = ("admin_epoch", "epoch", "num_updates")


class Conflict(RuntimeFailure):
    """The CIB changed since apply read it, in something the patch changes too."""


class Stale(RuntimeFailure):
    """Pacemaker refused the patch: the configuration's version moved meanwhile."""


@dataclasses.dataclass(frozen=True)
class Change:
    operation: str  # create | modify | delete | move
    path: str  # the element changed (create: the parent of the new one)
    what: str  # that element (create: the new one) as an operator would name it


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "CIB_file"}


def _tool(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, env=_env(),
                              timeout=120, check=False)
    except FileNotFoundError:
        raise RuntimeFailure(f"{argv[0]} not found: install pacemaker-cli-utils") from None
    except subprocess.TimeoutExpired:
        raise RuntimeFailure(f"{argv[0]}: no answer in 120 s") from None


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit status {proc.returncode}"


def diff(original_path: str, new_path: str) -> str:
    """The patchset turning ``original_path`` into ``new_path`` ("" when they are the
    same), without versions: apply adds the version of the CIB it pushes onto."""
    proc = _tool(["crm_diff", "--original", original_path, "--new", new_path, "--no-version"])
    if proc.returncode == 0:
        return ""
    if proc.returncode != 1:  # 1: there is a difference; above that, crm_diff failed
        raise RuntimeFailure(f"crm_diff: {_last_line(proc)}")
    fmt = _parse(proc.stdout, "crm_diff's patch").get("format")
    if fmt != "2":
        # format 1 (a CIB older than crm_feature_set 3.0.8) names no element by path
        raise RuntimeFailure(f"crm_diff made a format {fmt} patch from {original_path}; "
                             f"apply needs format 2 (crm_feature_set 3.0.8 or later)")
    return proc.stdout


def _label(elem: ET.Element | None, path: str) -> str:
    if elem is None:
        return path
    if elem.tag == "nvpair" and elem.get("name"):
        return f"nvpair {elem.get('id')!r} ({elem.get('name')})"
    return f"{elem.tag} {elem.get('id')!r}" if elem.get("id") else elem.tag


def _find(root: ET.Element, path: str) -> ET.Element | None:
    """The element at a patchset path (``/cib/...[@id='x']/...``), None if absent."""
    if path == "/cib":
        return root
    if not path.startswith("/cib/"):
        raise RuntimeFailure(f"crm_diff: unexpected path {path!r}")
    try:
        return root.find("./" + path[len("/cib/"):])
    except SyntaxError:
        raise RuntimeFailure(f"crm_diff: cannot follow path {path!r}") from None


def _parse(xml: str, what: str) -> ET.Element:
    try:
        return ET.fromstring(xml)
    except ET.ParseError as exc:
        raise RuntimeFailure(f"{what}: not XML: {exc}") from None


def changes(patch: str, pristine_xml: str | None = None) -> list[Change]:
    """The patch's changes, named after the elements of ``pristine_xml`` (the CIB the
    patch was made from) where it has them."""
    if not patch:
        return []
    root = _parse(pristine_xml, "CIB") if pristine_xml else None
    out = []
    for ch in _parse(patch, "patch").findall("change"):
        op, path = ch.get("operation", ""), ch.get("path", "")
        if op == "create":
            new = next(iter(ch), None)
            out.append(Change(op, path, _label(new, path)))
        else:
            out.append(Change(op, path, _label(_find(root, path) if root is not None
                                               else None, path)))
    return out


def _canonical(elem: ET.Element) -> tuple:
    return (elem.tag, tuple(sorted(elem.attrib.items())), (elem.text or "").strip(),
            tuple(_canonical(c) for c in elem))


def same_configuration(a_xml: str, b_xml: str) -> bool:
    a = _parse(a_xml, "CIB").find("configuration")
    b = _parse(b_xml, "CIB").find("configuration")
    return a is not None and b is not None and _canonical(a) == _canonical(b)


def rebase(patch: str, pristine_xml: str, current_xml: str) -> str:
    """``patch`` (made from ``pristine_xml``) made to apply to ``current_xml`` without
    undoing anything changed meanwhile; Conflict naming the first element the patch
    changes that was changed meanwhile too."""
    pristine = _parse(pristine_xml, "CIB apply read")
    current = _parse(current_xml, "live CIB")
    current_ids = {e.get("id") for e in current.iter() if e.get("id")}
    doc = _parse(patch, "patch")
    for ch in doc.findall("change"):
        op, path = ch.get("operation", ""), ch.get("path", "")
        if not (path == "/cib" or path.startswith("/cib/configuration")):
            raise RuntimeFailure(f"the patch changes {path}, outside the configuration")
        was, now = _find(pristine, path), _find(current, path)
        label = _label(was, path)
        if op == "create":
            new = next(iter(ch), None)
            if now is None:
                raise Conflict(f"{label} was deleted meanwhile; the plan adds "
                               f"{_label(new, path)} to it")
            for e in (new.iter() if new is not None else ()):
                if e.get("id") in current_ids:
                    raise Conflict(f"{_label(e, path)} was created meanwhile; the plan "
                                   f"creates it too")
        elif op == "modify":
            if now is None:
                raise Conflict(f"{label} was deleted meanwhile; the plan changes it")
            result = ch.find("change-result")
            target = next(iter(result), None) if result is not None else None
            if was is None or target is None:
                raise RuntimeFailure(f"crm_diff: unexpected modify of {path}")
            listed = ch.find("change-list")
            names = ([a.get("name", "") for a in listed.findall("change-attr")]
                     if listed is not None else sorted({*was.attrib, *target.attrib}))
            names = [n for n in names if not (path == "/cib" and n in _VERSION_ATTRS)]
            for name in names:
                if was.get(name) != now.get(name):  # values unsaid: they may be secrets
                    raise Conflict(f"{label}: {name} was changed meanwhile; the plan "
                                   f"changes it too")
            # Pacemaker sets the element's attributes to change-result: the current
            # ones, with only this change's own attributes taken from the plan
            merged = dict(now.attrib)
            for name in names:
                if name in target.attrib:
                    merged[name] = target.attrib[name]
                else:
                    merged.pop(name, None)
            target.attrib.clear()
            target.attrib.update(merged)
        elif op == "delete":
            if now is not None and (was is None or _canonical(was) != _canonical(now)):
                raise Conflict(f"{label} was changed meanwhile; the plan deletes it")
        elif op == "move":
            if now is None:
                raise Conflict(f"{label} was deleted meanwhile; the plan moves it")
        else:
            raise RuntimeFailure(f"crm_diff: unknown change {op!r} at {path}")
    return ET.tostring(doc, encoding="unicode")


def apply_to(cib_xml: str, patch: str) -> str:
    """The CIB with the patch applied, by Pacemaker's own code (``crm_diff --patch``)."""
    with tempfile.TemporaryDirectory(prefix="pacestack-patch-") as work:
        base, diff_path = os.path.join(work, "cib.xml"), os.path.join(work, "patch.xml")
        for path, text in ((base, cib_xml), (diff_path, patch)):
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
        proc = _tool(["crm_diff", "--original", base, "--patch", diff_path])
    if proc.returncode != 0:
        raise RuntimeFailure(f"crm_diff --patch: {_last_line(proc)}")
    return proc.stdout


def version(cib_xml: str) -> tuple[int, int]:
    root = _parse(cib_xml, "CIB")
    return int(root.get("admin_epoch", "0")), int(root.get("epoch", "0"))


def push_live(patch: str, onto_xml: str, query: Callable[[], str]) -> None:
    """``cibadmin --patch`` of ``patch``, valid only while the live configuration is
    still the version of ``onto_xml``; Stale if it moved on (``query()`` reads it)."""
    doc = _parse(patch, "patch")
    admin_epoch, epoch = version(onto_xml)
    # num_updates left out: Pacemaker then takes the live one, so status updates
    # (which only count num_updates) do not make the patch stale
    ver = ET.Element("version")
    ET.SubElement(ver, "source", {"admin_epoch": str(admin_epoch), "epoch": str(epoch)})
    doc.insert(0, ver)
    proc = _tool(["cibadmin", "--patch", "--xml-pipe"], ET.tostring(doc, encoding="unicode"))
    if proc.returncode == 0:
        return
    if version(query()) != (admin_epoch, epoch):
        raise Stale(f"cibadmin --patch: {_last_line(proc)}")
    raise RuntimeFailure(f"cibadmin --patch: {_last_line(proc)}")
