"""pacestack: highly available OpenStack controllers on Pacemaker, and the move onto them.

This package is the ground floor shared by the parts (pacestack.agents,
pacestack.cluster, pacestack.migrate). It must never import any of them.
"""

__version__ = "0.1.0"


def _source_tree_parts() -> None:
    """In a source checkout the parts sit beside this directory (setup.cfg's
    package_dir maps them for an install). ``python -m pacestack...`` run from the
    checkout's root imports this directory first, even over an installed pacestack,
    so the checkout's parts must come with it."""
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.isfile(os.path.join(root, "setup.cfg")) and \
            os.path.isfile(os.path.join(root, "agents", "__init__.py")) and \
            root not in __path__:
        __path__.append(root)


_source_tree_parts()
