"""
Regression tests for L{mailhub.maildir.index}: a folder deleted or renamed
while its index has changes to save (another IMAP session's DELETE or
RENAME racing this session's CLOSE).
"""

from __future__ import annotations

import os
import shutil

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mailhub.fs import FileSystem
from mailhub.maildir.delivery import ensureMaildir
from mailhub.maildir.index import INDEX_NAME, FolderIndex


class FolderGoneTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = self.mktemp()
        self.folder = os.path.join(self.root, ".Work")
        ensureMaildir(FileSystem(), self.folder)
        clock = Clock()
        clock.advance(1_700_000_000)
        self.index = FolderIndex(self.folder, clock=clock, hostname="mx.example.org")
        self.index.append(b"Subject: saved\r\n\r\nbody\r\n")  # the first change is saved at once
        with open(os.path.join(self.folder, INDEX_NAME), "rb") as f:
            self.saved = f.read()
        self.index.append(b"Subject: unsaved\r\n\r\nbody\r\n")  # the next waits for close()

    def test_closeAfterRename(self) -> None:
        """
        Closing an index with unsaved changes after its folder was renamed
        saves nothing, logs no error and leaves nothing in the new place.
        """
        os.rename(self.folder, os.path.join(self.root, ".Play"))
        self.index.close()
        self.assertEqual(self.flushLoggedErrors(), [])
        with open(os.path.join(self.root, ".Play", INDEX_NAME), "rb") as f:
            self.assertEqual(f.read(), self.saved)
        self.assertFalse(os.path.exists(self.folder))

    def test_closeAfterDelete(self) -> None:
        """
        Closing it after its folder was deleted does not make the folder
        again, and logs no error.
        """
        shutil.rmtree(self.folder)
        self.index.close()
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertFalse(os.path.exists(self.folder))

    def test_otherSaveErrorsStillLogged(self) -> None:
        """
        A save that fails while the folder is there is still logged.
        """
        os.unlink(os.path.join(self.folder, INDEX_NAME))
        os.mkdir(os.path.join(self.folder, INDEX_NAME))  # the rename onto it fails
        self.index.close()
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
