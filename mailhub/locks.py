# -*- test-case-name: tests.test_locks -*-
"""
Lock files that a crash cannot leave behind for ever: the checks shared by
the UID list lock, the POP3 mailbox lock and the relay queue's in-flight
markers.
"""

from __future__ import annotations

import os
import secrets
from typing import Callable

from twisted.logger import Logger

from mailhub.fs import FileSystem

log = Logger()


def pidAlive(pid: int) -> bool:
    """
    Whether a process with this pid exists on this host (one of another
    user counts: C{EPERM} means it exists).
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def breakStaleLock(
    fs: FileSystem,
    path: str,
    read: Callable[[str], bytes],
    isStale: Callable[[bytes], bool],
) -> bool:
    """
    Remove the lock file at C{path} if C{isStale} judges its content stale.

    The lock is moved aside first, then checked to be the one judged stale
    and not a fresh lock another session made in between (which is put
    back), so a live lock is never removed.

    @param read: reads a lock file's content.
    @return: whether the lock is gone (try to take it again).
    """
    try:
        content = read(path)
    except FileNotFoundError:
        return True
    if not isStale(content):
        return False
    aside = f"{path}.stale.{secrets.token_hex(6)}"
    try:
        fs.rename(path, aside)
    except FileNotFoundError:
        return True
    try:
        if read(aside) != content:
            try:
                fs.link(aside, path)
            except FileExistsError:
                pass
            return False
    finally:
        try:
            fs.unlink(aside)
        except OSError:
            pass
    log.info(
        "broke stale lock {path}: {content}",
        path=path,
        content=content.decode("utf-8", "replace").strip(),
    )
    return True
