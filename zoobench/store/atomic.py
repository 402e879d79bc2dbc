"""Atomic file writes: a reader sees the old content or the new one, never a partial file.

Each write goes to a temporary file in the same folder, is flushed to disk, and is renamed over the
target; a crash or ``kill -9`` at any moment leaves at worst a stray ``.tmp-*`` file that nothing
reads as valid.

Every write a unit of work makes to the store goes through here or through `ModelWriter`, which
both pass their paths through `redirect`; so `capture` can keep a unit's writes out of the store
and hand them to the caller instead (a Ray task returns them to the driver, which installs them,
see `zoobench.execution.ray_executor`).
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator

from zoobench.errors import UsageError


_UMASK = os.umask(0)
os.umask(_UMASK)

_SCRATCH: ContextVar[Path | None] = ContextVar("zoobench_scratch", default=None)


def redirect(path: Path) -> Path:
    """Where a write to `path` goes: `path` itself, or while `capture` is active the same absolute
    path under its scratch folder (a path already there stays, so redirecting twice is harmless)."""
    scratch = _SCRATCH.get()
    if scratch is None or path.is_relative_to(scratch):
        return path
    path = path.absolute()
    return scratch / path.relative_to(path.anchor)


@contextmanager
def capture() -> Iterator[dict[Path, bytes]]:
    """Send the writes made inside the block to a scratch folder instead of their paths.

    Yields a dict that, once the block has finished without error, maps the real path of every file
    the block wrote (and did not remove again) to its content. Reads are not redirected.
    """
    files: dict[Path, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="zoobench-capture-") as folder:
        scratch = Path(folder)
        token = _SCRATCH.set(scratch)
        try:
            yield files
        finally:
            _SCRATCH.reset(token)
        files.update({Path(scratch.anchor) / path.relative_to(scratch): path.read_bytes()
                      for path in sorted(scratch.rglob("*")) if path.is_file()})


def writable_folder(path: Path, what: str) -> Path:
    """Create folder `path` with its parents for `what`, or refuse in one line (a file in the way, no
    permission) instead of failing later mid-write."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create the folder {path} for {what}: {error.strerror}; give another folder") \
            from None
    return path


def write_bytes(path: Path, data: bytes) -> None:
    path = redirect(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; a written file gets the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
