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


# -- no secret in any output of the suite ----------------------------------------------
# The fixtures' passwords (every MariaDB/Galera root password, RabbitMQ's, keystone's
# bootstrap admin) are noted when made; every test's captured stdout, stderr, log and
# failure text, and the *.log files under the run's tmp dirs, are searched for them.
_SECRETS: set[str] = set()
_LEAKS: list[str] = []


def _note_secret_on(cls, method: str, attr: str) -> None:
    import functools

    original = getattr(cls, method)

    @functools.wraps(original)
    def noting(self, *args, **kwargs):
        _SECRETS.add(getattr(self, attr))
        return original(self, *args, **kwargs)

    setattr(cls, method, noting)


def pytest_configure(config):
    from tests.fixtures import mariadb, nova, openstack_build

    _note_secret_on(mariadb.MariaDBServer, "write_config", "root_password")  # Galera too
    _note_secret_on(nova.RabbitMQ, "start", "password")
    for f in openstack_build.cache_base().glob("openstack-*/admin-password"):
        _SECRETS.add(f.read_text().strip())


def _leaked(text: str) -> bool:
    return any(s in text for s in _SECRETS if len(s) >= 8)


def pytest_runtest_logreport(report):
    for name, text in report.sections:
        if _leaked(text):
            _LEAKS.append(f"{report.nodeid}: {name}")
    if report.failed and _leaked(report.longreprtext):
        _LEAKS.append(f"{report.nodeid}: failure report ({report.when})")


def pytest_sessionfinish(session):
    base = session.config._tmp_path_factory.getbasetemp()  # noqa: SLF001 - no public getter
    for log in base.rglob("*.log") if base.is_dir() else ():
        try:
            if log.is_file() and _leaked(log.read_text(errors="replace")):
                _LEAKS.append(str(log))
        except OSError:
            continue
    if _LEAKS:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_sep("=", "a fixture's password appears in test output", red=True)
            for where in _LEAKS:
                reporter.write_line(f"secret leaked: {where}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
