"""
Tests for L{mailhub.maildir.cleanup}: what interrupted deliveries and
sessions left behind.
"""

from __future__ import annotations

import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mailhub.maildir.cleanup import TMP_MAX_AGE, cleanSpool, cleanTmp

NOW = 1_700_000_000.0


def touch(path: str, mtime: float) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"x")
    os.utime(path, (mtime, mtime))
    return path


def allFiles(root: str) -> set[str]:
    return {
        os.path.join(directory, name)
        for directory, _, files in os.walk(root)
        for name in files
    }


class CleanTmpTests(SynchronousTestCase):
    """
    L{cleanTmp} removes tmp/ files older than 36 hours, and nothing else.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.root = os.path.join(self.mktemp(), "mail")
        self.old = NOW - TMP_MAX_AGE - 1
        self.young = NOW - TMP_MAX_AGE + 1

    def maildirFile(self, *parts: str, mtime: float) -> str:
        return touch(os.path.join(self.root, *parts), mtime)

    def test_maxAgeIs36Hours(self) -> None:
        """
        The Maildir convention: 36 hours.
        """
        self.assertEqual(TMP_MAX_AGE, 36 * 3600)

    def test_removesOnlyOldTmpFiles(self) -> None:
        """Old tmp/ files of INBOX and Maildir++ folders go, across domains; young ones stay."""
        gone = {
            self.maildirFile("example.com", "alice", "tmp", "dead1", mtime=self.old),
            self.maildirFile("example.com", "alice", ".Sent", "tmp", "dead2", mtime=self.old),
            self.maildirFile(
                "example.com", "alice", ".Archive.2026", "tmp", "dead3", mtime=self.old
            ),
            self.maildirFile("example.org", "bob", "tmp", "dead4", mtime=self.old),
        }
        kept = {
            self.maildirFile("example.com", "alice", "tmp", "live", mtime=self.young),
            self.maildirFile("example.com", "alice", ".Sent", "tmp", "live", mtime=self.young),
        }
        removed = cleanTmp(self.root, self.clock.seconds())
        self.assertEqual(removed, len(gone))
        self.assertEqual(allFiles(self.root), kept)

    def test_boundary(self) -> None:
        """
        A file exactly 36 hours old stays; one a second older goes.
        """
        exact = self.maildirFile("d", "u", "tmp", "exact", mtime=NOW - TMP_MAX_AGE)
        self.maildirFile("d", "u", "tmp", "older", mtime=NOW - TMP_MAX_AGE - 1)
        self.assertEqual(cleanTmp(self.root, NOW), 1)
        self.assertEqual(allFiles(self.root), {exact})

    def test_neverTouchesNewOrCur(self) -> None:
        """
        Old messages in new/ and cur/, of INBOX and folders, stay.
        """
        kept = {
            self.maildirFile("d", "u", sub, "msg", mtime=self.old)
            for sub in ("new", "cur")
        } | {
            self.maildirFile("d", "u", ".Sent", sub, "msg", mtime=self.old)
            for sub in ("new", "cur")
        }
        self.assertEqual(cleanTmp(self.root, NOW), 0)
        self.assertEqual(allFiles(self.root), kept)

    def test_leavesOtherFilesAlone(self) -> None:
        """Old files outside tmp/, or in a directory inside tmp/, stay."""
        kept = {
            self.maildirFile("d", "u", "dovecot-uidlist", mtime=self.old),
            self.maildirFile("d", "u", "Sent", "tmp", "notafolder", mtime=self.old),
            self.maildirFile("d", "u", "tmp", "subdir", "inner", mtime=self.old),
        }
        self.assertEqual(cleanTmp(self.root, NOW), 0)
        self.assertEqual(allFiles(self.root), kept)

    def test_doesNotFollowSymlinks(self) -> None:
        """An old symlink in tmp/ is not followed: its target outside stays."""
        outside = touch(os.path.join(self.mktemp(), "precious"), self.old)
        link = os.path.join(self.root, "d", "u", "tmp", "link")
        os.makedirs(os.path.dirname(link))
        os.symlink(outside, link)
        cleanTmp(self.root, NOW)
        self.assertTrue(os.path.exists(outside))

    def test_usesGivenTime(self) -> None:
        """Age is measured from the time passed in (the reactor's clock), not the wall clock."""
        self.maildirFile("d", "u", "tmp", "f", mtime=NOW)
        self.assertEqual(cleanTmp(self.root, NOW + TMP_MAX_AGE), 0)
        self.assertEqual(cleanTmp(self.root, NOW + TMP_MAX_AGE + 1), 1)

    def test_maxAgeParameter(self) -> None:
        """
        A shorter maxAge removes younger files.
        """
        self.maildirFile("d", "u", "tmp", "f", mtime=NOW - 120)
        self.assertEqual(cleanTmp(self.root, NOW, maxAge=60), 1)

    def test_missingRoot(self) -> None:
        """
        A mail root that does not exist yet is nothing to clean.
        """
        self.assertEqual(cleanTmp(self.root, NOW), 0)


class CleanSpoolTests(SynchronousTestCase):
    """
    L{cleanSpool} empties the spool directory at start-up.
    """

    def test_removesEveryFile(self) -> None:
        """
        Every file in the spool goes, whatever its age; the count is returned.
        """
        spool = self.mktemp()
        for name, mtime in (("A1", NOW), ("B2", NOW - 10 * TMP_MAX_AGE), ("C3", NOW + 5)):
            touch(os.path.join(spool, name), mtime)
        self.assertEqual(cleanSpool(spool), 3)
        self.assertEqual(os.listdir(spool), [])

    def test_leavesDirectories(self) -> None:
        """
        A subdirectory of the spool is not descended into or removed.
        """
        spool = self.mktemp()
        inner = touch(os.path.join(spool, "sub", "keep"), NOW)
        self.assertEqual(cleanSpool(spool), 0)
        self.assertTrue(os.path.exists(inner))

    def test_missingSpool(self) -> None:
        """
        A spool directory that does not exist is nothing to clean.
        """
        self.assertEqual(cleanSpool(self.mktemp()), 0)
