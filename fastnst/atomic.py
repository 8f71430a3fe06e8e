"""Atomic file writes: a hidden temporary file beside the target, renamed over it once complete.

Readers never see a half-written image, model, checkpoint or JSON file, and a failed or interrupted
write leaves the previous file (if any) untouched and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _create_temp(path: Path) -> Path:
    # Same directory: os.replace is atomic only within one file system. os.open with 0o666 gives the
    # file the permissions open() would (umask applied); tempfile.mkstemp's 0600 would end up on the
    # final file and make shared models and outputs unreadable to the group.
    stem = path.name[:64]
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.with_name(f".{stem}.{os.urandom(4).hex()}.tmp")
        try:
            os.close(os.open(tmp, flags, 0o666))
            return tmp
        except FileExistsError:
            continue
        except OSError as exc:  # name the file the user asked for, not our hidden temporary one
            raise type(exc)(exc.errno, exc.strerror, str(path)) from None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)  # data on disk before the rename makes it visible
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; it replaces ``path`` when the block ends.

    Creates the parent directory. On any exception (Ctrl-C included) the temporary file is removed and
    ``path`` is left as it was. With ``replace=False`` a file that exists at the end (another process
    wrote it meanwhile) is kept and FileExistsError raised: the temporary file is hard-linked under
    the name, which fails if the name is taken, with no window between a check and the write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path)
    try:
        yield tmp
        _fsync(tmp)
        if replace:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _link_new(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to the name ``path`` only if no file has it (FileExistsError otherwise)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "exists (written meanwhile by another process)", str(path)) from None
    except OSError:  # a file system without hard links: check, then rename (a narrow window)
        if path.exists():
            raise FileExistsError(errno.EEXIST, "exists (written meanwhile by another process)", str(path)) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def unwritable_reason(directory: str | os.PathLike) -> str | None:
    """Why files cannot be written into ``directory`` (created with its parents if missing), or None:
    checked before a long run, so that the run's result is not lost to a save that must fail."""
    path = Path(directory)
    if path.exists() and not path.is_dir():
        return f"{path} is not a directory"
    while not path.exists() and path != path.parent:  # the nearest existing ancestor
        path = path.parent
    if not path.is_dir():
        return f"{path} is not a directory"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"cannot write in {path} (permission denied)"
    return None


def save_json(data: Any, path: str | os.PathLike) -> Path:
    """Write JSON atomically (temporary file + os.replace), creating the parent directory."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, allow_nan=True)
        f.write("\n")
    return path
