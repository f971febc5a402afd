"""User-facing errors: one clear line on stderr, a non-zero exit, never a traceback."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable

INTERRUPTED = "interrupted"  # the stderr line of a command that Ctrl+C ended
# an OSError with one of these is an output that could not be written (a full disk, a quota, a
# file too big, a read-only or failing disk), a fault of the machine, not of the code
OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})


class UserError(Exception):
    """A problem the user can fix. The message is one line naming the problem and the fix."""

    exit_code = 2


def output_fault_line(e: OSError, what: str | None = None) -> str:
    """The line for an output that could not be written: `what` (else the file the error names)
    and the cause."""
    what = what or (f"{e.filename}" if e.filename else "an output")
    return f"cannot write {what} ({e.strerror or e}); free space on its disk or write elsewhere"


def _flush_stdout() -> None:
    """Flush stdout now, so a stdout that cannot take it (/dev/full) fails here and not at the
    interpreter's exit; if it cannot, fd 1 goes to /dev/null (the exit's flush stays quiet).
    An unbuffered stdout (PYTHONUNBUFFERED) has nothing to flush: a write of no bytes tells a
    stdout that refuses every write (/dev/full)."""
    if sys.stdout is None:
        return
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # replaced (a test's capture) or closed
        fd = None
    try:
        sys.stdout.flush()
        if fd is not None:
            os.write(fd, b"")
    except OSError as e:
        if fd is not None:
            os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
        if e.errno in OUTPUT_ERRNOS:
            raise OSError(e.errno, e.strerror, "stdout") from None
        if not isinstance(e, BrokenPipeError):  # `... | head`: the reader went, nothing to say
            raise


def run_cli(main: Callable[[], int | None]) -> None:
    """Run a CLI entry point; UserError -> one stderr line + exit 2, Ctrl+C -> exit 130; an
    output that cannot be written (a full disk, OUTPUT_ERRNOS) -> one line + exit 2."""
    try:
        code = main()
        _flush_stdout()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    except OSError as e:
        if e.errno not in OUTPUT_ERRNOS:
            raise
        try:
            _flush_stdout()
        except OSError as again:
            e = e if e.filename else again
        print(f"error: {output_fault_line(e)}", file=sys.stderr)
        sys.exit(UserError.exit_code)
    sys.exit(code or 0)
