# -*- test-case-name: tests.maildir.test_cleanup -*-
"""
Removing what an interrupted delivery left behind.

By Maildir convention a file in C{tmp/} that has not been touched for 36
hours belongs to a delivery that died; it is never visible to readers and
is removed.
"""

from __future__ import annotations

import os

from twisted.logger import Logger

#: Maildir convention: tmp/ files older than this are garbage.
TMP_MAX_AGE = 36 * 3600

log = Logger()


def _maildirs(mailRoot: str):
    """
    Every Maildir under C{DATA/mail/DOMAIN/LOCAL/}, with its Maildir++
    folders (C{.Sent/} and so on).
    """
    for domain in _subdirs(mailRoot):
        for user in _subdirs(domain):
            yield user
            for entry in _subdirs(user):
                if os.path.basename(entry).startswith("."):
                    yield entry


def _subdirs(path: str):
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    yield entry.path
    except OSError:
        return


def cleanTmp(mailRoot: str, now: float, maxAge: float = TMP_MAX_AGE) -> int:
    """
    Remove C{tmp/} files older than C{maxAge} seconds in every Maildir.

    Blocking: run it off the reactor thread.

    @param now: the current time, from the reactor's clock.
    @return: how many files were removed.
    """
    removed = 0
    for maildir in _maildirs(mailRoot):
        tmp = os.path.join(maildir, "tmp")
        try:
            entries = list(os.scandir(tmp))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < now - maxAge:
                    os.unlink(entry.path)
                    removed += 1
            except OSError:
                continue
    if removed:
        log.info("removed {count} stale tmp files under {root}", count=removed, root=mailRoot)
    return removed


def cleanSpool(spoolDir: str) -> int:
    """
    Remove every file in the spool directory: at start-up nothing there
    belongs to a live session.

    @return: how many files were removed.
    """
    removed = 0
    try:
        entries = list(os.scandir(spoolDir))
    except OSError:
        return 0
    for entry in entries:
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed += 1
        except OSError:
            continue
    return removed
