"""Run many ``pcs -f FILE ...`` commands in one pcs process.

Executed by pcs's own interpreter (``python3 -I pcs_batch.py``), never imported by
pacestack: each pcs start costs about a second of imports, so a 60-command plan
run command by command spends most of its time loading pcs. The commands are
the same argv a person would type; pcs parses and validates each one exactly as
it would on the command line.

stdin: JSON {"file": CIB path, "commands": [[arg, ...], ...]}
stdout: one JSON object per command run: {"rc", "stdout", "stderr"}; stops at the
first command that fails.
"""

import contextlib
import io
import json
import sys


def main() -> int:
    request = json.load(sys.stdin)
    from pcs import app  # only after reading stdin: pcs is not needed to fail fast

    real_stdout = sys.stdout
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
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
