"""The package layout: every part directory is installed, and the core imports no part."""

import ast
import configparser
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
PARTS = {"agents": "pacestack.agents", "cluster": "pacestack.cluster",
         "galera": "pacestack.galera", "migrate": "pacestack.migrate", "pacestack": "pacestack"}


def _setup_packages() -> set[str]:
    cp = configparser.ConfigParser()
    cp.read(ROOT / "setup.cfg")
    return {p.strip() for p in cp["options"]["packages"].split() if p.strip()}


def test_every_package_directory_is_listed_in_setup_cfg():
    listed = _setup_packages()
    found = set()
    for top, name in PARTS.items():
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    assert found <= listed, f"add to setup.cfg packages: {sorted(found - listed)}"


def test_core_never_imports_a_part():
    for path in (ROOT / "pacestack").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                assert not n.startswith(("pacestack.agents", "pacestack.cluster",
                                         "pacestack.galera", "pacestack.migrate")), \
                    f"{path}: imports {n}"


def test_galera_operations_stand_on_the_agents_rule_and_pacemakers_readers():
    """galera/ reads Pacemaker through cluster/'s readers (crm_mon, the CIB's nvpairs)
    and decides with the agent's rule; nothing else in cluster/ (or migrate/) is its
    business, and nothing below it imports it."""
    readers = ("pacestack.cluster.crm_mon", "pacestack.cluster.cib")
    for path in (ROOT / "galera").rglob("*.py"):
        for n in _imports(path):
            if n.startswith("pacestack.cluster."):
                assert any(n == r or n.startswith(f"{r}.") for r in readers), \
                    f"{path} imports {n}"
            assert not n.startswith("pacestack.migrate"), f"{path} imports {n}"
    for part in ("agents", "cluster", "migrate"):
        for path in (ROOT / part).rglob("*.py"):
            bad = [n for n in _imports(path) if n.startswith("pacestack.galera")]
            assert not bad, f"{path} imports {bad[0]}"


def test_cluster_and_migrate_do_not_import_each_other():
    for part, other in (("cluster", "pacestack.migrate"), ("migrate", "pacestack.cluster")):
        for path in (ROOT / part).rglob("*.py"):
            text = path.read_text()
            assert other not in text, f"{path} imports {other}"


def _imports(path: pathlib.Path) -> list[str]:
    """Every module a file imports, at any depth (function-level imports too)."""
    return [n for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.Import, ast.ImportFrom))
            and (isinstance(node, ast.Import) or node.module)
            for n in _imports_of(node, path)]


def test_real_controller_code_never_imports_the_lab():
    """What runs on real controllers (the drill over ssh, Galera operations, the
    description and its pcs commands) works without the rehearsal lab: only the
    lab's own modules (its package, its command, the drill's lab target) import
    it, at any depth; the drill's --target lab and galera's --lab reach it through
    the lab's entry points (pacestack.commands.lab_entry), never an import."""
    lab_own = {"cluster/drill/lab_target.py", "cluster/lab_cli.py"}
    for path in [*(ROOT / "cluster").rglob("*.py"), *(ROOT / "galera").rglob("*.py")]:
        rel = str(path.relative_to(ROOT))
        if rel.startswith("cluster/lab/") or rel in lab_own:
            continue
        bad = [n for n in _imports(path)
               if n.startswith(("pacestack.cluster.lab.", "pacestack.cluster.drill.lab_target"))
               or n == "pacestack.cluster.lab"]
        assert not bad, f"{rel} imports the lab ({bad[0]})"


def _imports_of(node, path: pathlib.Path) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        top, *rest = path.relative_to(ROOT).with_suffix("").parts[:-node.level]
        return [".".join([PARTS[top], *rest, node.module])]
    return [node.module, *(f"{node.module}.{a.name}" for a in node.names)]


# what makes network namespaces: the lab's fixtures and commands, the hypervisor's host
_MAKES_NAMESPACES = re.compile(r'\b(lab_cluster\w*|galera_lab|drill_lab|profile_lab|'
                               r'stack\.up\(|LabCluster|Hypervisor|hypervisor as hv)\b|'
                               r'"netns"|"lab", "up"')


def test_every_module_that_makes_namespaces_runs_in_the_one_at_a_time_group():
    from tests.conftest import NAMESPACE_MODULES

    found = {str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
             if p != pathlib.Path(__file__).resolve()  # this one only names them
             and _MAKES_NAMESPACES.search(p.read_text())}
    assert found - NAMESPACE_MODULES == set(), \
        "add to NAMESPACE_MODULES in tests/conftest.py"
    assert all((ROOT / m).is_file() for m in NAMESPACE_MODULES)
