"""
Tests for L{mailhub.locks}.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from mailhub.fs import FileSystem
from mailhub.locks import breakStaleLock, pidAlive


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class BreakStaleLockTests(SynchronousTestCase):
    """
    L{breakStaleLock} removes stale locks and nothing else.
    """

    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "lock")
        with open(self.path, "wb") as f:
            f.write(b"old")

    def test_stale(self) -> None:
        """
        A stale lock is removed, and nothing is left beside it.
        """
        self.assertTrue(breakStaleLock(FileSystem(), self.path, read, lambda c: c == b"old"))
        self.assertEqual(os.listdir(self.dir), [])

    def test_live(self) -> None:
        """
        A live lock stays.
        """
        self.assertFalse(breakStaleLock(FileSystem(), self.path, read, lambda c: False))
        self.assertEqual(read(self.path), b"old")

    def test_missing(self) -> None:
        """
        No lock: gone already.
        """
        os.unlink(self.path)
        self.assertTrue(breakStaleLock(FileSystem(), self.path, read, lambda c: True))

    def test_freshLockNotRemoved(self) -> None:
        """
        A fresh lock made while the stale one was being moved aside is
        kept; the caller is told the lock is still held.
        """
        fs = FileSystem()

        # Another session's lock is what ends up moved aside.
        def rename(source: str, target: str) -> None:
            FileSystem.rename(fs, source, target)
            with open(target, "wb") as f:
                f.write(b"someone else's")

        fs.rename = rename  # type: ignore[method-assign]
        self.assertFalse(breakStaleLock(fs, self.path, read, lambda c: c == b"old"))
        self.assertEqual(read(self.path), b"someone else's")
        self.assertEqual(os.listdir(self.dir), ["lock"])


class PidAliveTests(SynchronousTestCase):
    """
    L{pidAlive}.
    """

    def test_pids(self) -> None:
        """
        This process is alive; 0 and negative pids never are.
        """
        self.assertTrue(pidAlive(os.getpid()))
        self.assertFalse(pidAlive(0))
        self.assertFalse(pidAlive(-1))
