"""The ``zoobench`` command: parses arguments, calls one API function, prints the result.

Heavy imports (torch) happen inside the API functions that need them, so listing and showing zoos
starts in well under a second. Every user error ends as one line on stderr with exit code 2 (bad
input, a path that cannot be written included) or 1 (failure), never a traceback; an interrupt
(Ctrl-C) exits with 130 and keeps finished work.
"""

from __future__ import annotations

import errno
import sys

import typer

from zoobench.cli import claims, leaderboard, run, zoo  # noqa: F401  (importing them registers their commands)
from zoobench.cli.app import app, errors
from zoobench.errors import ZoobenchError

__all__ = ["app", "main"]


INTERRUPTED = 130  # what typer returns for a Ctrl-C inside a command, and the shell's code for SIGINT
# a path that is wrong (bad input, exit code 2); other file-system errors (a full disk) are failures
PATH_ERRORS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EACCES, errno.EPERM, errno.EROFS}


def main() -> None:
    # click's UsageError, found through its public subclass: typer vendors its own click since 0.2x
    usage_error = next(kind for kind in typer.BadParameter.__mro__ if kind.__name__ == "UsageError")
    try:
        code = app(standalone_mode=False)
        if code == INTERRUPTED:
            raise KeyboardInterrupt
        sys.exit(code)
    except ZoobenchError as error:
        errors.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
    except usage_error as error:  # a malformed command line: one line like every other error, not a box
        if type(error).__name__ == "NoArgsIsHelpError":  # a bare group: its help, as typer shows it
            error.show()
            sys.exit(2)
        where = f"; see `{error.ctx.command_path} --help`" if error.ctx is not None else ""
        errors.print(f"error: {error.format_message().rstrip('.')}{where}", markup=False, highlight=False,
                     soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        errors.print("interrupted: finished work is kept; run the same command again to resume")
        sys.exit(INTERRUPTED)
    except OSError as error:  # a path the user gave that cannot be read or written (a file in the way, ...)
        if error.filename is None:
            raise
        errors.print(f"error: {error.strerror}: {error.filename}; check the path given and its permissions",
                     markup=False, highlight=False, soft_wrap=True)
        sys.exit(2 if error.errno in PATH_ERRORS else 1)
