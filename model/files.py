"""Atomic file writes: a reader, a crash or Ctrl+C sees the old file or the new one, never half.

    with atomic_path(path) as tmp:           # write tmp with any library (h5py, np.savez, ...)
        np.savez(tmp, x=x)
    atomic_write_text(path, json.dumps(d))

A write that fails on a full disk is an OSError(ENOSPC) naming `path`, also from the libraries
that hide the errno (h5py and torch.save raise RuntimeError), so a command says it in one line
(model.errors.run_cli).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

FULL_BYTES = 1 << 20  # a disk with less room than this after a failed write was full


def free_bytes(folder: str | Path) -> int | None:
    """Room left for this process on the disk holding `folder` (None if it cannot be told)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize  # root: the reserve


def disk_full(folder: str | Path) -> bool:
    """Whether the disk holding `folder` has (about) no room left for this process."""
    free = free_bytes(folder)
    return free is not None and free < FULL_BYTES


def check_room(path: str | Path, nbytes: int) -> None:
    """OSError(ENOSPC) naming `path` now if its disk has no room for `nbytes` more, for writers
    that must not meet a full disk part way (HDF5 crashes the process after such a write)."""
    free = free_bytes(Path(path).parent)
    if free is not None and free < nbytes + FULL_BYTES:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside `path`, moved over it (after fsync) when the block succeeds and
    removed when it fails. `suffix` lets libraries that add an extension (np.savez) keep it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except Exception as e:
        if not isinstance(e, OSError) and disk_full(path.parent):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from e
        raise
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
