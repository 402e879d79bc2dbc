"""User-facing errors.

Every error a user can cause (a typo in a zoo name, a malformed spec, a corrupt store) is raised as a
`ZoobenchError` whose message is one line that says what is wrong and what to do. The CLI prints that
line and exits with `exit_code`; anything else escaping is a bug in zoobench and keeps its traceback.
"""


class ZoobenchError(Exception):
    """A failure the user can act on; exit code 1."""

    exit_code = 1


class UsageError(ZoobenchError):
    """The input itself is wrong (unknown name, malformed spec, bad flag value); exit code 2."""

    exit_code = 2
