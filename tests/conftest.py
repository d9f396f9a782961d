"""Every module in tests/fixtures/ is a pytest plugin: fixtures that start real
services (MariaDB, Galera, Pacemaker in namespaces, OpenStack schemas) live there,
one module per service, and clean up exactly what they started."""

import pathlib
import pkgutil

import pytest

# the fixtures' own asserts explain themselves too (pytest rewrites only test modules)
pytest.register_assert_rewrite("tests.fixtures")

_FIXTURES = pathlib.Path(__file__).parent / "fixtures"
pytest_plugins = sorted(
    f"tests.fixtures.{m.name}" for m in pkgutil.iter_modules([str(_FIXTURES)])
)
