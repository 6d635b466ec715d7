"""One run per workdir: a lock file that a killed run cannot leave stuck.

``lock_workdir(workdir)`` creates the workdir (with a clear error when it cannot: a path that
is a file, a read-only directory) and takes an exclusive ``fcntl.flock`` on
``workdir/.lock``. The kernel drops the lock when its process dies, however it dies (SIGKILL,
OOM, a lost node), so a dead run never blocks the next one; the file only records who held it
(host, pid, start time) for the messages. A lock file whose holder is gone is taken over with
a warning naming the run that did not finish cleanly.

Multi-process runs: only process 0 locks (the processes of one run share the workdir and must
not lock each other out); the outcome is shared, so every process of a refused run stops with
a :class:`WorkdirError` instead of waiting in a collective.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from absl import logging

LOCK_NAME = ".lock"


class WorkdirError(RuntimeError):
    """The workdir cannot be used: busy (another run holds it), not a directory, read-only."""


class WorkdirLock:
    """An exclusive hold on a workdir (see the module docstring); :meth:`release` frees it."""

    def __init__(self, path: Path, fd: int | None):
        self.path = path
        self._fd = fd

    @property
    def held(self) -> bool:
        """Whether this process holds the lock (process 0 of a run; the others never do)."""
        return self._fd is not None

    def release(self) -> None:
        """Marks the run finished in the lock file and frees the lock (idempotent)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):  # a clean end: the next run need not warn
                os.ftruncate(fd, 0)
                os.pwrite(fd, b'{"active": false}\n', 0)
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> WorkdirLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _holder(text: str) -> dict[str, Any]:
    """The lock file's record of its holder (``{}`` when it holds none or no JSON object)."""
    try:
        info = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return info if isinstance(info, dict) else {}


def _describe(info: dict[str, Any]) -> str:
    if not info:
        return "a run that left no record"
    started = info.get("started")
    when = (time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started))
            if isinstance(started, int | float) else "an unknown time")
    return f"pid {info.get('pid')} on host {info.get('host')}, started {when}"


def prepare_workdir(workdir: str | Path) -> Path:
    """Creates ``workdir`` and checks it is a writable directory; returns its absolute path.

    Raises:
      WorkdirError: it (or a parent) is a file, or it cannot be created or written.
    """
    workdir = Path(workdir).absolute()
    for p in (workdir, *workdir.parents):
        if p.exists() and not p.is_dir():
            raise WorkdirError(f"workdir {workdir}: {p} is a file, not a directory; pass "
                               "another --workdir")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"workdir {workdir} cannot be created ({e.strerror}); pass a "
                           "--workdir in a writable place") from None
    if not os.access(workdir, os.W_OK | os.X_OK):
        raise WorkdirError(f"workdir {workdir} is not writable by this user; pass a --workdir "
                           "in a writable place (or fix its permissions)")
    return workdir


def _try_lock(workdir: Path) -> tuple[WorkdirLock | None, str]:
    """Process 0's attempt: ``(lock, "")``, or ``(None, reason)`` when refused."""
    path = workdir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        return None, (f"workdir {workdir}: cannot create its lock file {path} "
                      f"({e.strerror}); pass a --workdir in a writable place")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
            os.close(fd)
            raise
        holder = _holder(os.pread(fd, 4096, 0).decode(errors="replace"))
        os.close(fd)
        return None, (f"workdir {workdir} is in use by another run ({_describe(holder)}): two "
                      "runs in one workdir would interleave their metrics and delete each "
                      "other's checkpoints. Wait for it to finish, stop it, or pass another "
                      "--workdir")
    previous = _holder(os.pread(fd, 4096, 0).decode(errors="replace"))
    if previous.get("active"):
        logging.warning("workdir %s: the previous run (%s) ended without releasing its lock "
                        "(killed or crashed); taking it over", workdir, _describe(previous))
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
              "active": True}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    lock = WorkdirLock(path, fd)
    return lock, ""


def lock_workdir(workdir: str | Path) -> WorkdirLock:
    """Prepares ``workdir`` (:func:`prepare_workdir`) and takes its lock for this run.

    Every process of the run must call it (process 0 locks and broadcasts the outcome).

    Returns:
      The lock; call :meth:`WorkdirLock.release` when the run ends (a process that dies
      releases it anyway). Its ``path`` is ``workdir/.lock``.

    Raises:
      WorkdirError: another live run holds the workdir, or it is not a writable directory.
    """
    lock, reason = None, ""
    try:
        workdir = prepare_workdir(workdir)
    except WorkdirError as e:
        reason = str(e)
    if not reason:
        lock, reason = (_try_lock(workdir) if jax.process_index() == 0
                        else (WorkdirLock(workdir / LOCK_NAME, None), ""))
    if jax.process_count() > 1:  # any process refused: all stop (none waits in a collective)
        from jax.experimental import multihost_utils

        refused = multihost_utils.process_allgather(np.int32(bool(reason)))
        if np.any(refused) and not reason:
            if lock is not None:
                lock.release()
            reason = (f"workdir {workdir}: another process of this run could not use it "
                      "(its log says why)")
    if reason:
        raise WorkdirError(reason)
    return lock
