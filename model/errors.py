"""User-facing errors: one clear line on stderr, a non-zero exit, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

INTERRUPTED = "interrupted"  # the stderr line of a command that Ctrl+C ended


class UserError(Exception):
    """A problem the user can fix. The message is one line naming the problem and the fix."""

    exit_code = 2


def run_cli(main: Callable[[], int | None]) -> None:
    """Run a CLI entry point; UserError -> one stderr line + exit 2, Ctrl+C -> exit 130."""
    try:
        code = main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
