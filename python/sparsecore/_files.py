"""Writing files and directories without ever losing data.

Everything sparsecore writes is assembled under a temporary name beside the target,
flushed to disk (fsync), given the permissions an ordinary file would get (the umask's,
not mkstemp's 0600), and renamed into place only when complete; the directory entry is
flushed too. What already sits at the target is replaced only when sparsecore wrote it
(or the caller says so), and a failed rename puts the old one back under its own name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Callable


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_path(path: str) -> None:
    """Flush a file's data, or a directory's entries, to disk."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if os.path.isdir(path) else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return  # some filesystems cannot open directories; nothing more to do there
    try:
        with contextlib.suppress(OSError):  # e.g. EINVAL: a directory fsync the filesystem does not support
            os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: str) -> None:
    for root, _dirs, files in os.walk(path):
        for name in files:
            fsync_path(os.path.join(root, name))
        fsync_path(root)


def normal_permissions(path: str) -> None:
    """0666 / 0777 less the umask, recursively (what open() and mkdir() would give)."""
    mask = _umask()
    if os.path.isdir(path):
        os.chmod(path, 0o777 & ~mask)
        for root, dirs, files in os.walk(path):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o777 & ~mask)
            for f in files:
                os.chmod(os.path.join(root, f), 0o666 & ~mask)
    else:
        os.chmod(path, 0o666 & ~mask)


def write_file_atomically(path: str, write: Callable[[str], None]) -> None:
    """``write(tmp_path)`` then fsync, permissions and rename onto ``path``; on any failure
    the temporary file is removed and ``path`` is untouched."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".sparsecore-", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        write(tmp)
        normal_permissions(tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(directory)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def replace_directory(tmp: str, path: str) -> None:
    """Move the finished directory ``tmp`` onto ``path`` (which may be an existing
    directory the caller has checked may be replaced). The old directory is moved aside
    first and deleted only once the new one is in place; if the final rename fails it is
    moved back, so ``path`` always names a complete directory or nothing new."""
    normal_permissions(tmp)
    fsync_tree(tmp)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(path):
        os.replace(tmp, path)
        fsync_path(parent)
        return
    old = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(path))}.old-", dir=parent)
    os.rmdir(old)  # only the unique name is wanted
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)
        raise
    fsync_path(parent)
    shutil.rmtree(old, ignore_errors=True)
