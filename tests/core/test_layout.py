"""The package layout: every part directory is installed, and the core imports no part."""

import ast
import configparser
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
PARTS = {"agents": "pacestack.agents", "cluster": "pacestack.cluster",
         "migrate": "pacestack.migrate", "pacestack": "pacestack"}


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
                                         "pacestack.migrate")), f"{path}: imports {n}"


def test_cluster_and_migrate_do_not_import_each_other():
    for part, other in (("cluster", "pacestack.migrate"), ("migrate", "pacestack.cluster")):
        for path in (ROOT / part).rglob("*.py"):
            text = path.read_text()
            assert other not in text, f"{path} imports {other}"
