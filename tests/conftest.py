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
    config = session.config
    base = config._tmp_path_factory.getbasetemp()  # noqa: SLF001 - no public getter
    for log in base.rglob("*.log") if base.is_dir() else ():
        try:
            if log.is_file() and _leaked(log.read_text(errors="replace")):
                _LEAKS.append(str(log))
        except OSError:
            continue
    if hasattr(config, "workeroutput"):  # a pytest-xdist worker: its controller reports
        from tests.fixtures import timings

        config.workeroutput["pacestack_leaks"] = list(_LEAKS)
        config.workeroutput["pacestack_timings"] = dict(timings.TIMINGS)
        return
    if _LEAKS:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_sep("=", "a fixture's password appears in test output", red=True)
            for where in _LEAKS:
                reporter.write_line(f"secret leaked: {where}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# -- two workers ---------------------------------------------------------------------
# `make test` runs the suite on two pytest-xdist workers (-n 2 --dist loadgroup): most
# of its time is spent waiting on real services, not computing. The scheduler below
# keeps a module's tests on one worker, in order, so a module-scoped fixture (a lab,
# a cloud) is built once and tests that build on each other stay in sequence. The
# modules that make network namespaces (Pacemaker labs, the hypervisor's) form one
# unit and run one after the other: two labs at once would double the load under the
# drills' timings, and the lab tests assert that no namespace or mount appeared
# beside their own. That unit is queued first, so its long chain starts at once.
NAMESPACE_MODULES = frozenset({
    "tests/agents/test_cinder_volume_cluster.py",
    "tests/agents/test_galera_pacemaker.py",
    "tests/cluster/test_cluster_apply_concurrent.py",
    "tests/cluster/test_cluster_live.py",
    "tests/cluster/test_drill.py",
    "tests/cluster/test_drill_ssh.py",
    "tests/cluster/test_lab_cli.py",
    "tests/cluster/test_lab_harness.py",
    "tests/cluster/test_lab_profile.py",
    "tests/galera/test_galera_recover.py",
    "tests/migrate/test_rehome_hypervisor.py",
    "tests/migrate/test_rehome_libvirt.py",
    "tests/packaging/test_pip_install.py",
})


def work_unit(nodeid: str) -> str:
    """The unit of work a test belongs to: its module, or the namespace makers' one."""
    module = nodeid.split("::", 1)[0]
    return "namespaces" if module in NAMESPACE_MODULES else module


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    # after pytest ordered the items by their fixtures: a stable sort, so each
    # module's tests keep that order
    items.sort(key=lambda item: work_unit(item.nodeid) != "namespaces")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """With --dist loadgroup: whole work units (see work_unit) to each worker, in the
    order collected. (xdist's own loadgroup marks tests by renaming their node ids,
    which pytest 9's read-only ids no longer allow.)"""
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class WorkUnits(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    config.option.loadscopereorder = False
    return WorkUnits(config, log)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """A worker finished: its leaks and fixture timings join the controller's."""
    from tests.fixtures import timings

    out = getattr(node, "workeroutput", {})
    _LEAKS.extend(out.get("pacestack_leaks", []))
    for name, value in out.get("pacestack_timings", {}).items():
        # a name two workers measured (a session fixture of each): keep every value
        timings.TIMINGS[name] = [*_as_list(timings.TIMINGS[name]), *_as_list(value)] \
            if name in timings.TIMINGS else value


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]
