"""The OCF runtime every pacestack agent is built on.

An agent declares its parameters and actions once (class attributes); from that
declaration this module derives the parsing of ``OCF_RESKEY_*`` (types, defaults,
required), the meta-data XML (OCF 1.1, valid against resource-agents'
ra-api-1.dtd and metadata.rng), action dispatch, exit codes and
``ocf-exit-reason:`` messages, probe detection, and the clone/promotable/notify
meta attributes Pacemaker passes as ``OCF_RESKEY_CRM_meta_*``.

Standard library only and nothing imported eagerly that a monitor does not need
(xml.etree and subprocess load on first use): a monitor runs every few seconds
on every controller. We do not build on resource-agents' ocf.py because it
concatenates strings into XML, parses no types, and runs its setup at import.
"""

from __future__ import annotations

import os
import sys

from pacestack.agents.ocf_log import OCFLogger

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing-only: collections.abc costs ~2 ms on every monitor
    from collections.abc import Callable, Mapping, Sequence

# OCF exit codes (OCF 1.1 names: RUNNING_PROMOTED/FAILED_PROMOTED were *_MASTER)
SUCCESS = 0
ERR_GENERIC = 1
ERR_ARGS = 2
ERR_UNIMPLEMENTED = 3
ERR_PERM = 4
ERR_INSTALLED = 5
ERR_CONFIGURED = 6
NOT_RUNNING = 7
RUNNING_PROMOTED = 8
FAILED_PROMOTED = 9

CODE_NAMES = {
    SUCCESS: "OCF_SUCCESS", ERR_GENERIC: "OCF_ERR_GENERIC", ERR_ARGS: "OCF_ERR_ARGS",
    ERR_UNIMPLEMENTED: "OCF_ERR_UNIMPLEMENTED", ERR_PERM: "OCF_ERR_PERM",
    ERR_INSTALLED: "OCF_ERR_INSTALLED", ERR_CONFIGURED: "OCF_ERR_CONFIGURED",
    NOT_RUNNING: "OCF_NOT_RUNNING", RUNNING_PROMOTED: "OCF_RUNNING_PROMOTED",
    FAILED_PROMOTED: "OCF_FAILED_PROMOTED",
}

OCF_VERSION = "1.1"
# Both schemas Pacemaker tools and ocf-tester use: the DTD knows string, integer,
# boolean (and "time"); metadata.rng knows string, integer, boolean (and
# "second", "select"). Only the common ones are safe.
CONTENT_TYPES = {str: "string", int: "integer", bool: "boolean"}
ROLES = ("Promoted", "Unpromoted")
# action names the DTD allows
ACTION_NAMES = frozenset((
    "start", "stop", "recover", "monitor", "restart", "migrate_to", "migrate_from",
    "promote", "demote", "notify", "status", "reload", "meta-data", "usage",
    "methods", "validate-all",
))
# actions that must work with no (or broken) parameters
_NO_PARAM_ACTIONS = frozenset(("meta-data", "usage", "help", "methods"))

_TRUE = frozenset(("1", "yes", "true", "on", "y", "ja"))
_FALSE = frozenset(("0", "no", "false", "off", "n", "nein"))


def is_true(value: str | bool | None) -> bool:
    """OCF truth (as ocf_is_true in ocf-shellfuncs): yes/true/1/on, case-blind."""
    if isinstance(value, bool):
        return value
    return value is not None and value.strip().lower() in _TRUE


class OCFError(Exception):
    """Ends the current action with ``code``; ``reason`` becomes ocf-exit-reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Parameter:
    """One instance attribute of the agent (``OCF_RESKEY_<name>``)."""

    __slots__ = ("name", "shortdesc", "longdesc", "type", "default", "required",
                 "unique", "content_type")

    def __init__(self, name: str, shortdesc: str, longdesc: str = "", type: type = str,
                 default: object = None, required: bool = False, unique: bool = False,
                 content_type: str | None = None) -> None:
        if type not in CONTENT_TYPES:
            raise ValueError(f"parameter {name}: type must be str, int or bool")
        derived = CONTENT_TYPES[type]
        # "string" is the API's spelled-out default: a typed parameter keeps its own
        if content_type is None or (content_type == "string" and type is not str):
            content_type = derived
        if content_type not in CONTENT_TYPES.values():
            raise ValueError(f"parameter {name}: content type {content_type!r} is not "
                             "valid in both ra-api-1.dtd and metadata.rng")
        if required and default is not None:
            raise ValueError(f"parameter {name}: a required parameter has no default")
        self.name = name
        self.shortdesc = shortdesc
        self.longdesc = longdesc or shortdesc
        self.type = type
        self.default = default
        self.required = required
        self.unique = unique
        self.content_type = content_type

    def parse(self, raw: str | None) -> object:
        """The typed value of the raw environment string; OCFError(ERR_CONFIGURED)."""
        if raw is None or (raw.strip() == "" and self.type is not str):
            if self.required:
                raise OCFError(ERR_CONFIGURED, f"required parameter '{self.name}' is not set")
            return self.default
        if self.required and raw.strip() == "":
            raise OCFError(ERR_CONFIGURED, f"required parameter '{self.name}' is empty")
        if self.type is bool:
            low = raw.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise OCFError(ERR_CONFIGURED,
                           f"parameter '{self.name}': {raw!r} is not a boolean (true/false)")
        if self.type is int:
            try:
                return int(raw.strip(), 10)
            except ValueError:
                raise OCFError(ERR_CONFIGURED,
                               f"parameter '{self.name}': {raw!r} is not an integer") from None
        return raw

    def default_text(self) -> str | None:
        if self.default is None:
            return None
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        return str(self.default)

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, type={self.type.__name__})"


def _duration(value: int | str | None) -> str | None:
    if value is None:
        return None
    return f"{value}s" if isinstance(value, int) else str(value)


class Action:
    """One action advertised in meta-data (timeouts/intervals in seconds or '20s')."""

    __slots__ = ("name", "timeout", "interval", "role", "depth")

    def __init__(self, name: str, timeout: int | str, interval: int | str | None = None,
                 role: str | None = None, depth: int | None = None) -> None:
        if name not in ACTION_NAMES:
            raise ValueError(f"action {name!r} is not an OCF action")
        if role is not None and role not in ROLES:
            raise ValueError(f"action {name}: role must be one of {ROLES} (OCF 1.1)")
        self.name = name
        self.timeout = timeout
        self.interval = interval
        self.role = role
        self.depth = depth

    def __repr__(self) -> str:
        return f"Action({self.name!r}, role={self.role!r})"


class Params(dict):
    """The parsed parameters: ``params["binary"]`` or ``params.binary``."""

    def __getattr__(self, name: str) -> object:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


# notify_<list>_uname / _resource variables; OCF 1.1 names first, then the old ones
NOTIFY_LISTS = ("active", "inactive", "start", "stop", "promote", "demote",
                "promoted", "unpromoted", "available", "all")
_NOTIFY_ALIASES = {"promoted": "master", "unpromoted": "slave"}


class Meta:
    """What Pacemaker tells the agent about the operation and the clone."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        prefix = "OCF_RESKEY_CRM_meta_"
        self.raw = {k[len(prefix):]: v for k, v in environ.items() if k.startswith(prefix)}
        self.interval_ms = self._int("interval", 0)
        self.timeout_ms = self._int("timeout", 0)
        self.on_node = self.raw.get("on_node") or None
        self.on_node_uuid = self.raw.get("on_node_uuid") or None
        self.clone = self.raw.get("clone")  # instance number of this clone copy
        self.clone_max = self._int("clone_max", None)
        self.clone_node_max = self._int("clone_node_max", None)
        self.promoted_max = self._int("promoted_max", None, "master_max")
        self.promoted_node_max = self._int("promoted_node_max", None, "master_node_max")
        self.promotable = is_true(self.raw.get("promotable")) or self.promoted_max is not None
        self.notify = is_true(self.raw.get("notify"))
        self.globally_unique = is_true(self.raw.get("globally_unique"))
        self.notify_type = self.raw.get("notify_type") or None  # pre / post
        self.notify_operation = self.raw.get("notify_operation") or None  # start, promote...
        self.notify_unames: dict[str, list[str]] = {}
        self.notify_resources: dict[str, list[str]] = {}
        for name in NOTIFY_LISTS:
            self.notify_unames[name] = self._list(name, "uname")
            self.notify_resources[name] = self._list(name, "resource")

    def _int(self, key: str, default: int | None, old: str | None = None) -> int | None:
        value = self.raw.get(key)
        if (value is None or value == "") and old:
            value = self.raw.get(old)
        try:
            return int(value) if value not in (None, "") else default
        except ValueError:
            return default

    def _list(self, name: str, kind: str) -> list[str]:
        value = self.raw.get(f"notify_{name}_{kind}")
        if value is None and name in _NOTIFY_ALIASES:
            value = self.raw.get(f"notify_{_NOTIFY_ALIASES[name]}_{kind}")
        return (value or "").split()

    @property
    def is_clone(self) -> bool:
        return self.clone_max is not None

    # notify lists by their OCF names: meta.active, meta.promoted, ...
    def __getattr__(self, name: str) -> list[str]:
        if name in NOTIFY_LISTS:
            return self.__dict__["notify_unames"][name]
        raise AttributeError(name)


class Agent:
    """Base class: declare name, version, descriptions, parameters and actions;
    implement actions as methods (``validate-all`` → ``validate_all``)."""

    name: str = ""
    version: str = "1.0"
    shortdesc: str = ""
    longdesc: str = ""
    parameters: Sequence[Parameter] = ()
    actions: Sequence[Action] = ()
    sh_monitor: bool = False  # installed behind agents/sh_monitor.py's front

    def __init__(self, environ: Mapping[str, str] | None = None, action: str | None = None) -> None:
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.action = action or self.environ.get("__OCF_ACTION", "")
        self.resource = self.environ.get("OCF_RESOURCE_INSTANCE") or self.name
        self.meta = Meta(self.environ)
        self.log = OCFLogger(self.name, self.environ.get("OCF_RESOURCE_INSTANCE"), self.environ)
        self._params: Params | None = None
        self._node_name: str | None = None
        self._reason_given = False

    # -- parameters ---------------------------------------------------------
    @property
    def params(self) -> Params:
        """Typed parameter values; raises OCFError(ERR_CONFIGURED) on bad input."""
        if self._params is None:
            self._params = self.parse_params(self.environ)
        return self._params

    @classmethod
    def parse_params(cls, environ: Mapping[str, str]) -> Params:
        values = Params()
        for p in cls.parameters:
            values[p.name] = p.parse(environ.get("OCF_RESKEY_" + p.name))
        return values

    # -- facts about this operation -----------------------------------------
    @property
    def is_probe(self) -> bool:
        """A monitor with interval 0 (or none given): Pacemaker asking what is there."""
        return self.action == "monitor" and self.meta.interval_ms == 0

    @property
    def node_name(self) -> str:
        if self._node_name is None:
            self._node_name = (self.meta.on_node or _crm_node_name(self.environ)
                               or os.uname().nodename)
        return self._node_name

    def exit_reason(self, reason: str) -> None:
        """Print the ocf-exit-reason line Pacemaker shows in `pcs status` (and log it)."""
        one_line = " ".join(str(reason).split())
        prefix = self.environ.get("OCF_EXIT_REASON_PREFIX", "ocf-exit-reason:")
        sys.stderr.write(f"{prefix}{one_line}\n")
        sys.stderr.flush()
        self.log.error(one_line)
        self._reason_given = True

    # -- meta-data ------------------------------------------------------------
    @classmethod
    def all_actions(cls) -> list[Action]:
        declared = list(cls.actions)
        names = {a.name for a in declared}
        if "validate-all" not in names and hasattr(cls, "validate_all"):
            declared.append(Action("validate-all", 20))
        if "meta-data" not in names:
            declared.append(Action("meta-data", 5))
        return declared

    @classmethod
    def meta_data(cls) -> str:
        import xml.etree.ElementTree as ET  # only meta-data needs it

        root = ET.Element("resource-agent", name=cls.name, version=str(cls.version))
        ET.SubElement(root, "version").text = OCF_VERSION
        ET.SubElement(root, "longdesc", lang="en").text = cls.longdesc or cls.shortdesc
        ET.SubElement(root, "shortdesc", lang="en").text = cls.shortdesc
        params = ET.SubElement(root, "parameters")
        for p in cls.parameters:
            attrs = {"name": p.name}
            if p.unique:
                attrs["unique"] = "1"
            attrs["required"] = "1" if p.required else "0"
            el = ET.SubElement(params, "parameter", attrs)
            ET.SubElement(el, "longdesc", lang="en").text = p.longdesc
            ET.SubElement(el, "shortdesc", lang="en").text = p.shortdesc
            content = {"type": p.content_type}
            if p.default_text() is not None:
                content["default"] = p.default_text()
            ET.SubElement(el, "content", content)
        actions = ET.SubElement(root, "actions")
        for a in cls.all_actions():
            attrs = {"name": a.name, "timeout": _duration(a.timeout)}
            if a.interval is not None:
                attrs["interval"] = _duration(a.interval)
            if a.role:
                attrs["role"] = a.role
            if a.depth is not None:
                attrs["depth"] = str(a.depth)
            ET.SubElement(actions, "action", attrs)
        ET.indent(root)
        body = ET.tostring(root, encoding="unicode")
        return ('<?xml version="1.0"?>\n'
                '<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">\n' + body + "\n")

    @classmethod
    def usage(cls) -> str:
        names = sorted({a.name for a in cls.all_actions()} | {"usage"})
        return f"usage: {cls.name} {{{'|'.join(names)}}}\n"

    # -- dispatch -------------------------------------------------------------
    def handler(self, action: str) -> Callable[[], int | None] | None:
        if action not in ACTION_NAMES or action in _NO_PARAM_ACTIONS:
            return None
        return getattr(self, action.replace("-", "_"), None)

    def dispatch(self, action: str) -> int:
        """Run one action and return its OCF exit code (never raises)."""
        self.action = action
        if action == "meta-data":
            sys.stdout.write(self.meta_data())
            return SUCCESS
        if action in ("usage", "help", "methods"):
            sys.stdout.write(self.usage() if action != "methods" else
                             "\n".join(a.name for a in self.all_actions()) + "\n")
            return SUCCESS
        func = self.handler(action)
        if func is None:
            self.exit_reason(f"action '{action}' is not implemented by {self.name}")
            return ERR_UNIMPLEMENTED
        try:
            self.params  # noqa: B018 - bad parameters fail every action the same way
            rc = func()
        except OCFError as err:
            self.exit_reason(err.reason)
            return err.code
        except Exception as err:  # an agent bug must still end with an OCF code
            import traceback

            for line in traceback.format_exc().splitlines():
                self.log.error(line)
            self.exit_reason(f"{action} failed: {type(err).__name__}: {err}")
            return ERR_GENERIC
        rc = SUCCESS if rc is None else int(rc)
        self.log.debug(f"{action} -> {CODE_NAMES.get(rc, rc)}")
        return rc


def _crm_node_name(environ: Mapping[str, str]) -> str | None:
    """`crm_node -n`: the node name Pacemaker knows us by (None without a cluster)."""
    import subprocess

    try:
        out = subprocess.run(["crm_node", "-n"], capture_output=True, text=True, timeout=10,
                             env=dict(environ), check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    name = out.stdout.strip()
    return name if out.returncode == 0 and name else None


def run(agent_class: type[Agent], argv: Sequence[str] | None = None,
        environ: Mapping[str, str] | None = None) -> int:
    """Entry point of the installed executables: ``sys.exit(run(MyAgent))``."""
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    action = argv[1] if len(argv) > 1 else environ.get("__OCF_ACTION", "")
    if action in ("-h", "--help"):
        action = "usage"
    if not action:
        sys.stderr.write(agent_class.usage())
        return ERR_ARGS
    return agent_class(environ, action).dispatch(action)
