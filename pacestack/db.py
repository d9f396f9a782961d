"""Database URLs and connections, the way OpenStack services spell them.

URLs are oslo.db style (``mysql+pymysql://USER:PASSWORD@HOST:PORT/DB?charset=utf8``).
They are read from pacestack's own ``[database]`` options or from a service's
own config file (``[database] connection`` in neutron.conf, nova's
``[api_database]``, placement's ``[placement_database]``) and never from argv.
Whenever a URL is shown, its password is masked. PyMySQL is imported only when a
connection is made, so the agents' monitor path does not pay for it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import urllib.parse
from typing import TYPE_CHECKING, Any

from pacestack import files
from pacestack.errors import ConfigError, RuntimeFailure

if TYPE_CHECKING:  # pragma: no cover
    import pymysql
    from oslo_config import cfg

MASK = "****"
SUPPORTED_DIALECTS = ("mysql", "mysql+pymysql")

# service -> (option in pacestack's [openstack] group naming its file, group, option)
SERVICE_SOURCES: dict[str, tuple[str, str, str]] = {
    "keystone": ("keystone_config", "database", "connection"),
    "neutron": ("neutron_config", "database", "connection"),
    "cinder": ("cinder_config", "database", "connection"),
    "nova": ("nova_config", "database", "connection"),
    "nova_api": ("nova_config", "api_database", "connection"),
    "placement": ("placement_config", "placement_database", "connection"),
}


@dataclasses.dataclass(frozen=True)
class DBUrl:
    dialect: str
    user: str | None
    password: str | None = dataclasses.field(repr=False)
    host: str | None
    port: int | None
    database: str | None
    query: dict[str, str] = dataclasses.field(default_factory=dict)
    source: str = "database URL"  # where it came from, for error messages

    @property
    def unix_socket(self) -> str | None:
        return self.query.get("unix_socket")

    @property
    def endpoint(self) -> str:
        """host:port (or the socket) for messages: never the credentials."""
        if self.unix_socket:
            return self.unix_socket
        return f"{self.host or 'localhost'}:{self.port or 3306}"

    def with_database(self, database: str | None) -> DBUrl:
        return dataclasses.replace(self, database=database)

    def masked(self) -> str:
        return self._render(MASK if self.password is not None else None)

    def render(self) -> str:
        """The full URL, password included: for writing config files, never for display."""
        return self._render(self.password)

    def _render(self, password: str | None) -> str:
        auth = ""
        if self.user is not None:
            auth = urllib.parse.quote(self.user, safe="")
            if password is not None:
                pw = password if password == MASK else urllib.parse.quote(password, safe="")
                auth += ":" + pw
            auth += "@"
        host = self.host or ""
        if host and ":" in host:
            host = f"[{host}]"
        netloc = auth + host + (f":{self.port}" if self.port else "")
        query = ("?" + urllib.parse.urlencode(self.query)) if self.query else ""
        return f"{self.dialect}://{netloc}/{self.database or ''}{query}"

    def __str__(self) -> str:
        return self.masked()


_HOST_RE = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?$")


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOST_RE.match(host)) and ".." not in host


def _shown(text: str) -> str:
    """A name from a URL for a message: quoted, one line, never huge."""
    return repr(text if len(text) <= 60 else text[:57] + "...")


def parse_url(url: str, source: str = "database URL") -> DBUrl:
    """Parse an oslo.db URL; errors name the source, never the password."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"{source}: empty database URL")
    url = url.strip()
    if any(not c.isprintable() for c in url):
        raise ConfigError(f"{source}: database URL holds a control character (NUL, newline...)")
    if "://" not in url:
        raise ConfigError(f"{source}: not a database URL (expected mysql+pymysql://...)")
    dialect = url.split("://", 1)[0].lower()
    if dialect not in SUPPORTED_DIALECTS:
        raise ConfigError(f"{source}: unsupported database dialect {dialect!r} "
                          f"(pacestack speaks {', '.join(SUPPORTED_DIALECTS)})")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigError(f"{source}: malformed database URL (bad host or port)") from None
    path = parts.path.lstrip("/")
    if "/" in path:
        raise ConfigError(f"{source}: malformed database URL (database name contains '/')")
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    if not parts.hostname and "unix_socket" not in query:
        raise ConfigError(f"{source}: database URL names no host")
    if parts.hostname and not _valid_host(parts.hostname):
        raise ConfigError(f"{source}: {_shown(parts.hostname)} is not a host name or address")
    database = urllib.parse.unquote(path)
    if database and (len(database) > 64 or not database.isprintable() or "`" in database
                     or database != database.strip()):
        raise ConfigError(f"{source}: {_shown(database)} is not a database name MariaDB "
                          "accepts (at most 64 printable characters, no backtick)")
    return DBUrl(
        dialect=dialect,
        user=urllib.parse.unquote(parts.username) if parts.username is not None else None,
        password=urllib.parse.unquote(parts.password) if parts.password is not None else None,
        host=parts.hostname,
        port=port,
        database=database or None,
        query=query,
        source=source,
    )


def read_service_option(path: str, group: str, option: str) -> str:
    """One option from an OpenStack service's own config file, parsed as oslo.config does."""
    sections = files.read_ini(path)
    values = sections.get(group, {}).get(option)
    if not values or not values[-1].strip():
        raise ConfigError(f"{path}: [{group}] {option} is not set")
    return values[-1].strip()


def url_from_service_config(path: str, group: str = "database",
                            option: str = "connection") -> DBUrl:
    raw = read_service_option(path, group, option)
    return parse_url(raw, source=f"{path} [{group}] {option}")


def service_url(conf: cfg.ConfigOpts, service: str) -> DBUrl:
    """The URL of one service's database: pacestack's override, else the service's file."""
    if service not in SERVICE_SOURCES:
        raise ConfigError(f"unknown service database {service!r} "
                          f"(known: {', '.join(SERVICE_SOURCES)})")
    override = conf.database[f"{service}_connection"]
    if override:
        return parse_url(override, source=f"[database] {service}_connection")
    file_opt, group, option = SERVICE_SOURCES[service]
    return url_from_service_config(conf.openstack[file_opt], group, option)


_CONNECTION_CLASS: list[type] = []


def _connection_class() -> type:
    """PyMySQL's Connection with one TLS context for every connection in PREFERRED mode
    (no ssl option given: TLS when the server offers it). PyMySQL builds that context
    per connection, loading the system CA bundle each time (40-170 ms of CPU); its
    settings never change, so one made once serves them all, thread-safely."""
    if _CONNECTION_CLASS:
        return _CONNECTION_CLASS[0]
    import pymysql

    shared: list = []

    class Connection(pymysql.connections.Connection):
        def _create_ssl_ctx(self, sslp):
            if isinstance(sslp, dict) and not sslp:
                if not shared:
                    shared.append(super()._create_ssl_ctx(sslp))
                return shared[0]
            return super()._create_ssl_ctx(sslp)
    _CONNECTION_CLASS.append(Connection)
    return Connection


# MySQL error numbers that mean "your credentials or names are wrong", not "try later"
_CONFIG_ERRNOS = {1044: "access denied to database", 1045: "access denied (wrong user or password)",
                  1698: "access denied (wrong user or password)", 1049: "unknown database"}


def connect(url: DBUrl, *, database: str | None = None, timeout: int = 10,
            autocommit: bool = False, **kwargs: Any) -> pymysql.connections.Connection:
    """A PyMySQL connection; failures become one-line errors naming host:port.

    The handshake must finish within ``timeout``: a port that accepts and then says
    nothing (a hung server, a firewall's tarpit) fails like an unreachable one, and
    something that answers but is not a MySQL server is named as such.
    """
    import struct

    import pymysql

    read_timeout = kwargs.pop("read_timeout", max(timeout * 30, 300))
    params: dict[str, Any] = dict(
        user=url.user, password=url.password or "", charset=url.query.get("charset", "utf8mb4"),
        database=database if database is not None else url.database,
        connect_timeout=timeout, read_timeout=timeout,
        write_timeout=max(timeout * 30, 300), autocommit=autocommit,
    )
    if url.unix_socket:
        params["unix_socket"] = url.unix_socket
    else:
        params["host"] = url.host or "localhost"
        params["port"] = url.port or 3306
    params.update(kwargs)
    where = f"{url.endpoint} ({url.source})"
    try:
        conn = _connection_class()(**params)
    except pymysql.err.OperationalError as exc:
        errno = exc.args[0] if exc.args else 0
        if errno in _CONFIG_ERRNOS:
            raise ConfigError(f"database {where}: {_CONFIG_ERRNOS[errno]}"
                              f" for user {url.user!r}") from None
        if errno in (2003, 2002, 2006, 2013):
            if "timed out" in str(exc):
                raise RuntimeFailure(f"database {where}: no answer within {timeout} s "
                                     "(server hung or not a database)") from None
            raise RuntimeFailure(f"database {where}: cannot connect (server unreachable)") \
                from None
        raise RuntimeFailure(f"database {where}: error {errno}") from None
    except (pymysql.err.InternalError, pymysql.err.InterfaceError, struct.error, IndexError,
            ValueError, UnicodeError) as exc:
        # a handshake PyMySQL cannot parse: whatever listens there is not a MySQL server
        detail = " ".join(str(exc).split())[:80] or type(exc).__name__
        raise RuntimeFailure(f"database {where}: the server does not speak the MySQL protocol "
                             f"({detail})") from None
    # the handshake is done: queries may run long (a big batch, a lock wait)
    conn._read_timeout = read_timeout  # noqa: SLF001 - PyMySQL has no setter for it
    return conn
