"""Run many ``pcs -f FILE ...`` commands in one pcs process.

Executed by pcs's own interpreter (``python3 -I pcs_batch.py``), never imported by
pacestack. The commands are the argv a person would type; pcs parses and checks
each one exactly as on the command line (agent meta-data, parameter names, ids,
constraint references, duplicate constraints).

What is saved, and why it is safe:
- pcs's start-up (about a second of imports per command);
- an agent's meta-data is asked once per batch (it cannot change meanwhile);
- with ``"memory": true`` the CIB stays in this process between commands: pcs's
  calls of ``cibadmin`` to read the file, of ``crm_diff`` and of ``cibadmin
  --patch/--replace`` to write it are answered from memory. Each of those tools
  re-validates the whole CIB against Pacemaker's schema, which is where a 70-command
  plan spends its time. The schema and every rule are checked once, on the result,
  by crm_verify before anything is written (pacestack's apply does that), and any
  other ``cibadmin`` call pcs makes runs for real on the file, written out first.

stdin: JSON {"file": CIB path, "commands": [[arg, ...], ...], "memory": bool}
stdout: one JSON object per command run: {"rc", "stdout", "stderr"}; stops at the
first command that fails. With memory, the file is written once at the end.
"""

import contextlib
import io
import json
import os
import sys


class MemoryCib:
    """The CIB being edited, answering the cibadmin/crm_diff calls pcs makes."""

    def __init__(self, path: str):
        self.path = path
        with open(path, encoding="utf-8") as fh:
            self.xml = fh.read()
        self.dirty = False

    # -- helpers ------------------------------------------------------------------
    def _root(self):
        from lxml import etree

        return etree.fromstring(self.xml.encode())

    @staticmethod
    def _text(elem) -> str:
        from lxml import etree

        return etree.tostring(elem, encoding="unicode") + "\n"

    def store(self, xml: str) -> None:
        """A new full CIB; the epoch goes up as cibadmin's would."""
        from lxml import etree

        root = etree.fromstring(xml.encode())
        if self._text(root) == self._text(self._root()):
            return
        root.set("epoch", str(int(root.get("epoch", "0")) + 1))
        root.set("num_updates", "0")
        self.xml = self._text(root)
        self.dirty = True

    def flush(self) -> None:
        if self.dirty:
            with open(self.path, "w", encoding="utf-8") as fh:
                fh.write(self.xml)
            self.dirty = False

    def reload(self) -> None:
        with open(self.path, encoding="utf-8") as fh:
            self.xml = fh.read()

    # -- the calls ------------------------------------------------------------------
    def answer(self, args, stdin):
        """(stdout, stderr, rc) for a call we answer, or None to run it for real."""
        name = os.path.basename(args[0])
        rest = list(args[1:])
        if name == "crm_diff" and rest[:1] == ["--original"] and "--new" in rest:
            with open(rest[rest.index("--new") + 1], encoding="utf-8") as fh:
                new = fh.read()
            with open(rest[1], encoding="utf-8") as fh:
                same = fh.read() == new
            # the "diff" is the new CIB itself: only our --patch below reads it
            return ("", "", 0) if same else (new, "", 1)
        if name != "cibadmin":
            return None
        flags = [a for a in rest if a.startswith("-")]
        if "--patch" in flags and "--xml-pipe" in flags and stdin:
            self.store(stdin)
            return "", "", 0
        if "--replace" in flags and "--xml-pipe" in flags and stdin and \
                ("-o" in rest and rest[rest.index("-o") + 1] == "configuration"):
            # like cibadmin: the given element replaces its namesake in the scope
            from lxml import etree

            new = etree.fromstring(stdin.encode())
            if new.tag == "cib":
                new = new.find("configuration")
            root = self._root()
            scope = root.find("configuration")
            if new is None or scope is None:
                return None
            old = scope if new.tag == "configuration" else scope.find(new.tag)
            if old is None:
                return None
            old.getparent().replace(old, new)
            self.store(self._text(root))
            return "", "", 0
        if ("-Q" in flags or "--query" in flags) and set(flags) <= {
                "-Q", "--query", "-l", "--local", "--xpath", "--scope", "-o"} | {
                f for f in flags if f.startswith("--scope=")}:
            root = self._root()
            scope = None
            for i, a in enumerate(rest):
                if a.startswith("--scope="):
                    scope = a.split("=", 1)[1]
                elif a in ("--scope", "-o"):
                    scope = rest[i + 1]
            if "--xpath" in rest:
                found = root.xpath(rest[rest.index("--xpath") + 1])
                if not found:
                    return "", "", 105
                if len(found) == 1:
                    return self._text(found[0]), "", 0
                from lxml import etree

                wrap = etree.Element("xpath-query")
                for f in found:
                    wrap.append(f)
                return self._text(wrap), "", 0
            if scope:
                elem = root if scope == "cib" else next(iter(root.iter(scope)), None)
                if elem is None:
                    return "", "", 105
                return self._text(elem), "", 0
            return self.xml, "", 0
        return None


def _install_hooks(memory: MemoryCib | None) -> None:
    """Agent meta-data from memory after the first call; with ``memory`` also the
    CIB reads and writes (see the module text). Anything else runs for real."""
    from pcs import utils
    from pcs.lib import external

    cache: dict = {}

    def intercept(args, stdin):
        key = tuple(args)
        if stdin is None and any(a in ("--show-metadata", "--metadata", "--list-ocf-providers")
                                 for a in key) and key in cache:
            return cache[key]
        if memory is not None:
            answered = memory.answer(args, stdin)
            if answered is not None:
                return answered
            if os.path.basename(args[0]) in ("cibadmin", "crm_diff", "crm_resource",
                                             "crm_verify", "crm_simulate"):
                memory.flush()
        return None

    def after(args, stdin, result):
        key = tuple(args)
        if stdin is None and any(a in ("--show-metadata", "--metadata", "--list-ocf-providers")
                                 for a in key) and result[2] == 0:
            cache[key] = result
        if memory is not None and os.path.basename(args[0]) == "cibadmin":
            memory.reload()  # a real cibadmin call may have changed the file

    original_lib_run = external.CommandRunner.run

    def lib_run(self, args, stdin_string=None, env_extend=None, binary_output=False):
        answered = intercept(args, stdin_string)
        if answered is not None:
            return answered
        result = original_lib_run(self, args, stdin_string=stdin_string,
                                  env_extend=env_extend, binary_output=binary_output)
        after(args, stdin_string, result)
        return result

    external.CommandRunner.run = lib_run

    original_utils_run = utils.run

    def utils_run(args, ignore_stderr=False, string_for_stdin=None, env_extend=None,
                  binary_output=False):
        answered = intercept(args, string_for_stdin)
        if answered is not None:
            out, err, rc = answered
            return (out if ignore_stderr else out + err), rc
        output, rc = original_utils_run(args, ignore_stderr, string_for_stdin, env_extend,
                                        binary_output)
        after(args, string_for_stdin, (output, "", rc))
        return output, rc

    utils.run = utils_run


def main() -> int:
    request = json.load(sys.stdin)
    from pcs import app  # only after reading stdin: pcs is not needed to fail fast

    memory = MemoryCib(request["file"]) if request.get("memory") else None
    _install_hooks(memory)
    real_stdout = sys.stdout
    rc = 0
    for argv in request["commands"]:
        out, err = io.StringIO(), io.StringIO()
        rc = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                app.main(["-f", request["file"], *argv])
            except SystemExit as exc:
                code = exc.code
                rc = code if isinstance(code, int) else (0 if code is None else 1)
            except Exception as exc:  # a pcs bug must not look like success
                err.write(f"Error: {type(exc).__name__}: {exc}\n")
                rc = 1
        real_stdout.write(json.dumps({"rc": rc, "stdout": out.getvalue(),
                                      "stderr": err.getvalue()}) + "\n")
        real_stdout.flush()
        if rc != 0:
            break
    if memory is not None and rc == 0:
        memory.flush()
    return 1 if rc else 0


if __name__ == "__main__":
    sys.exit(main())
