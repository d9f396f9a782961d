"""Errors that end a command with a one-line message and a precise exit code."""

EXIT_OK = 0
EXIT_RUNTIME = 1  # the environment misbehaved: server unreachable, refused, failed check
EXIT_USAGE = 2  # the operator's input is wrong: arguments, config files, mapping files


class PacestackError(Exception):
    """An error whose message is fit to show an operator on one line."""

    exit_code = EXIT_RUNTIME

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:  # always one line, whatever a caller passed in
        return " ".join(super().__str__().split())


class ConfigError(PacestackError):
    """Bad configuration or input file: the operator must fix a file or option."""

    exit_code = EXIT_USAGE


class RuntimeFailure(PacestackError):
    """Something outside pacestack failed (a server, a tool, a check)."""

    exit_code = EXIT_RUNTIME
