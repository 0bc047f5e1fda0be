"""One run per folder: an advisory ``fcntl`` lock held for the life of a run.

A second run started into the same folder (by mistake, or a resume while
the first still trains) is refused with the holder's pid, instead of two
runs writing the same checkpoint and log. The lock is the kernel's: it goes
away with the process, so a killed run never leaves a stale lock behind.
On systems without ``fcntl`` (Windows) runs are not locked.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

try:
    import fcntl
except ImportError:                     # pragma: no cover - Windows
    fcntl = None

__all__ = ["RunLockedError", "run_lock", "LOCK_FILE"]

LOCK_FILE = ".lock"


class RunLockedError(RuntimeError):
    """Another live process holds the run folder."""


@contextmanager
def run_lock(folder: str):
    """Hold ``folder``'s lock while the block runs."""
    if fcntl is None:
        yield
        return
    path = os.path.join(folder, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except (PermissionError, NotADirectoryError, FileNotFoundError):
        raise                              # the caller names the folder
    except OSError as e:                   # e.g. a symlink planted as the lock file
        raise RunLockedError(f"{path}: cannot open the run lock ({e.strerror}); remove it "
                             "if it is not a plain file") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunLockedError(f"{folder} is in use by another run (pid {holder}); wait for "
                                 "it to finish or train into another folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
