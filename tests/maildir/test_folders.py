"""
Tests for L{mailhub.maildir.folders}: a Maildir++ tree as Dovecot lays it
out.
"""

from __future__ import annotations

import errno
import mailbox
import os

from twisted.trial.unittest import SynchronousTestCase

from mailhub.errors import MailhubError
from mailhub.maildir.folders import (
    DEFAULT_FOLDERS,
    FolderError,
    MailStore,
    validateName,
)
from tests.test_fs import ScriptedFileSystem


class MailStoreTestsMixin:
    def setUp(self) -> None:
        self.root = self.mktemp()
        self.store = MailStore(self.root)
        self.store.ensureDefaults()

    def deliver(self, folder: str, name: str, sub: str = "new") -> str:
        path = os.path.join(self.store.path(folder), sub, name)
        with open(path, "wb") as f:
            f.write(b"Subject: x\r\n\r\nbody\r\n")
        return path

    def entries(self) -> list[str]:
        return sorted(e for e in os.listdir(self.root) if e.startswith("."))


class LayoutTests(MailStoreTestsMixin, SynchronousTestCase):
    def test_defaults(self) -> None:
        """
        INBOX is the root Maildir; the special folders exist with their
        RFC 6154 attributes, and are subscribed.
        """
        for sub in ("cur", "new", "tmp"):
            self.assertTrue(os.path.isdir(os.path.join(self.root, sub)))
        self.assertEqual(self.entries(), [".Archive", ".Drafts", ".Junk", ".Sent", ".Trash"])
        self.assertEqual(
            self.store.listFolders(), ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]
        )
        self.assertEqual(self.store.specialUse("Sent"), "\\Sent")
        self.assertEqual(self.store.specialUse("Junk"), "\\Junk")
        self.assertEqual(self.store.specialUse("Archive"), "\\Archive")
        self.assertIsNone(self.store.specialUse("INBOX"))
        self.assertEqual(self.store.subscribed(), ["INBOX"] + list(DEFAULT_FOLDERS))
        # Twice is harmless.
        self.store.ensureDefaults()
        self.assertEqual(len(self.store.listFolders()), 6)

    def test_nestedLayout(self) -> None:
        """
        C{Archive/2026} is C{.Archive.2026} with C{cur/ new/ tmp/} and the
        C{maildirfolder} marker.
        """
        self.store.create("Archive/2026")
        path = os.path.join(self.root, ".Archive.2026")
        self.assertEqual(self.store.path("Archive/2026"), path)
        self.assertEqual(sorted(os.listdir(path)), ["cur", "maildirfolder", "new", "tmp"])
        self.assertEqual(os.path.getsize(os.path.join(path, "maildirfolder")), 0)
        self.assertTrue(self.store.exists("Archive/2026"))

    def test_modifiedUTF7(self) -> None:
        """
        Names are stored in modified UTF-7 (RFC 3501 §5.1.3), as Dovecot
        stores them.
        """
        for name, directory in [
            ("Entwürfe", ".Entw&APw-rfe"),
            ("日本語/A&B", ".&ZeVnLIqe-.A&-B"),
        ]:
            self.store.create(name)
            self.assertTrue(os.path.isdir(os.path.join(self.root, directory)))
            self.assertIn(name, self.store.listFolders())

    def test_readableByStdlib(self) -> None:
        """
        The stdlib's Maildir++ reader sees the same folders and messages.
        """
        self.store.create("Archive/2026")
        self.deliver("Archive/2026", "1.M1P1Q1.h")
        md = mailbox.Maildir(self.root, create=False)
        self.assertIn("Archive.2026", md.list_folders())
        self.assertEqual(len(md.get_folder("Archive.2026")), 1)

    def test_inboxCaseInsensitive(self) -> None:
        self.assertEqual(self.store.path("inbox"), self.root)
        self.assertTrue(self.store.exists("InBoX"))

    def test_foreignDirectoriesIgnored(self) -> None:
        """
        Entries that are not folders mailhub would write (non-canonical
        UTF-7, empty components, symbolic links, files) are not listed.
        """
        for entry in [".&AGE-", "..x", ".a..b", ".&Jjo!"]:
            os.mkdir(os.path.join(self.root, entry))
        os.symlink("/", os.path.join(self.root, ".Link"))
        open(os.path.join(self.root, ".file"), "w").close()
        self.assertEqual(
            self.store.listFolders(), ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]
        )
        self.assertFalse(self.store.exists("Link"))

    def test_listAttributes(self) -> None:
        self.store.create("a/b/c")
        listed = dict(self.store.list())
        self.assertEqual(listed["a"], {"\\Noselect", "\\HasChildren"})
        self.assertEqual(listed["a/b"], {"\\Noselect", "\\HasChildren"})
        self.assertEqual(listed["a/b/c"], {"\\HasNoChildren"})
        self.assertEqual(listed["Sent"], {"\\HasNoChildren", "\\Sent"})
        self.assertEqual(self.store.list()[0][0], "INBOX")


class CreateDeleteTests(MailStoreTestsMixin, SynchronousTestCase):
    def test_createExisting(self) -> None:
        self.assertRaises(FolderError, self.store.create, "Sent")
        self.assertRaises(FolderError, self.store.create, "INBOX")
        self.assertRaises(FolderError, self.store.create, "inbox")

    def test_createFaultLeavesNothing(self) -> None:
        """
        A failure while making a folder leaves no part of it.
        """
        for op, at in [("mkdir", 1), ("mkdir", 3), ("openExclusive", 1), ("fsync", 1), ("fsyncDirectory", 2)]:
            with self.subTest(op=op, at=at):
                store = MailStore(self.root, ScriptedFileSystem(failOp=op, failAt=at, failErrno=errno.EIO))
                self.assertRaises(OSError, store.create, "New")
                self.assertFalse(os.path.exists(os.path.join(self.root, ".New")))

    def test_delete(self) -> None:
        self.deliver("Trash", "1.M1P1Q1.h")
        self.store.delete("Trash")
        self.assertFalse(self.store.exists("Trash"))
        self.assertNotIn("Trash", self.store.listFolders())
        self.assertEqual(self.entries(), [".Archive", ".Drafts", ".Junk", ".Sent"])
        self.assertRaises(FolderError, self.store.delete, "Trash")

    def test_deleteInboxRefused(self) -> None:
        for name in ("INBOX", "inbox"):
            self.assertRaises(FolderError, self.store.delete, name)
        self.assertTrue(self.store.exists("INBOX"))

    def test_deleteWithChildren(self) -> None:
        """
        Deleting a folder with children leaves the children; it becomes
        \\Noselect (RFC 3501 §6.3.4).
        """
        self.store.create("a")
        self.store.create("a/b")
        self.store.delete("a")
        self.assertTrue(self.store.exists("a/b"))
        self.assertEqual(dict(self.store.list())["a"], {"\\Noselect", "\\HasChildren"})
        self.assertRaises(FolderError, self.store.delete, "a")

    def test_deleteFault(self) -> None:
        store = MailStore(self.root, ScriptedFileSystem(failOp="rename", failErrno=errno.EIO))
        self.assertRaises(OSError, store.delete, "Junk")
        self.assertTrue(self.store.exists("Junk"))


class RenameTests(MailStoreTestsMixin, SynchronousTestCase):
    def test_renameWithChildren(self) -> None:
        self.store.create("a")
        self.store.create("a/b")
        self.store.create("ab")
        self.deliver("a/b", "1.M1P1Q1.h")
        self.store.rename("a", "x/y")
        self.assertTrue(self.store.exists("x/y"))
        self.assertTrue(os.path.exists(os.path.join(self.root, ".x.y.b", "new", "1.M1P1Q1.h")))
        self.assertFalse(self.store.exists("a"))
        self.assertFalse(self.store.exists("a/b"))
        self.assertTrue(self.store.exists("ab"))  # not a child of "a"

    def test_renameRefusals(self) -> None:
        self.store.create("a")
        self.assertRaises(FolderError, self.store.rename, "missing", "b")
        self.assertRaises(FolderError, self.store.rename, "a", "Sent")
        self.assertRaises(FolderError, self.store.rename, "a", "a/b")
        self.assertRaises(FolderError, self.store.rename, "a", "INBOX")
        self.assertRaises(FolderError, self.store.rename, "a", "../x")

    def test_renameChildConflict(self) -> None:
        """
        If a child's new name exists, nothing is renamed.
        """
        self.store.create("a")
        self.store.create("a/b")
        self.store.create("x/b")
        self.assertRaises(FolderError, self.store.rename, "a", "x")
        self.assertTrue(self.store.exists("a/b"))

    def test_renameFaultUndone(self) -> None:
        self.store.create("a")
        self.store.create("a/b")
        store = MailStore(self.root, ScriptedFileSystem(failOp="rename", failAt=2, failErrno=errno.EIO))
        self.assertRaises(OSError, store.rename, "a", "z")
        self.assertTrue(self.store.exists("a"))
        self.assertTrue(self.store.exists("a/b"))
        self.assertFalse(self.store.exists("z"))

    def test_renameInbox(self) -> None:
        """
        Renaming INBOX moves its messages to a new folder and leaves INBOX
        empty, and its children where they are (RFC 3501 §6.3.5).
        """
        self.store.create("INBOX/child")
        self.deliver("INBOX", "1.M1P1Q1.h")
        self.deliver("INBOX", "2.M1P1Q1.h:2,S", "cur")
        self.store.rename("INBOX", "Old")
        self.assertEqual(os.listdir(os.path.join(self.root, "new")), [])
        self.assertEqual(os.listdir(os.path.join(self.root, "cur")), [])
        old = self.store.path("Old")
        self.assertEqual(os.listdir(os.path.join(old, "new")), ["1.M1P1Q1.h"])
        self.assertEqual(os.listdir(os.path.join(old, "cur")), ["2.M1P1Q1.h:2,S"])
        self.assertTrue(self.store.exists("INBOX"))
        self.assertTrue(self.store.exists("INBOX/child"))
        self.assertRaises(FolderError, self.store.rename, "INBOX", "Old")

    def test_renameInboxFaultUndone(self) -> None:
        self.deliver("INBOX", "1.M1P1Q1.h")
        self.deliver("INBOX", "2.M1P1Q1.h")
        store = MailStore(self.root, ScriptedFileSystem(failOp="rename", failAt=2, failErrno=errno.EIO))
        self.assertRaises(OSError, store.rename, "INBOX", "Old")
        self.assertEqual(sorted(os.listdir(os.path.join(self.root, "new"))), ["1.M1P1Q1.h", "2.M1P1Q1.h"])
        self.assertFalse(self.store.exists("Old"))


class SubscriptionTests(MailStoreTestsMixin, SynchronousTestCase):
    def test_roundTrip(self) -> None:
        """
        Subscriptions persist, one modified UTF-7 name a line.
        """
        self.store.subscribe("Entwürfe/2026")
        self.store.subscribe("Entwürfe/2026")
        self.store.unsubscribe("Junk")
        again = MailStore(self.root)
        self.assertEqual(
            again.subscribed(), ["INBOX", "Sent", "Drafts", "Trash", "Archive", "Entwürfe/2026"]
        )
        with open(os.path.join(self.root, "subscriptions")) as f:
            self.assertEqual(f.read(), "INBOX\nSent\nDrafts\nTrash\nArchive\nEntw&APw-rfe/2026\n")
        self.assertRaises(FolderError, self.store.unsubscribe, "Junk")

    def test_dovecotVersion2(self) -> None:
        with open(os.path.join(self.root, "subscriptions"), "w") as f:
            f.write("V\t2\n\nINBOX\nArchive\t2026\nEntw&APw-rfe\n")
        self.assertEqual(self.store.subscribed(), ["INBOX", "Archive/2026", "Entwürfe"])

    def test_writeFault(self) -> None:
        store = MailStore(self.root, ScriptedFileSystem(failOp="rename", failErrno=errno.ENOSPC))
        before = self.store.subscribed()
        self.assertRaises(OSError, store.subscribe, "New")
        self.assertEqual(self.store.subscribed(), before)
        self.assertEqual([e for e in os.listdir(self.root) if "subscriptions" in e], ["subscriptions"])


class ValidationTests(SynchronousTestCase):
    BAD = [
        "",
        "a\x00b",
        "a\nb",
        "a\rb",
        "tab\there",
        "del\x7f",
        "c1\x85",
        "/abs",
        "trailing/",
        "a//b",
        ".",
        "..",
        "a/../b",
        "a/./b",
        "dot.ted",
        ".hidden",
        "~home",
        "x" * 255,
        "ü" * 100,  # 100 characters, far more bytes in modified UTF-7
        "a/" * 128 + "a",
    ]

    def test_refused(self) -> None:
        store = MailStore(self.mktemp())
        for name in self.BAD:
            with self.subTest(name=name):
                error = self.assertRaises(FolderError, validateName, name)
                self.assertIsInstance(error, MailhubError)
                self.assertTrue(error.reason)
                for method in (store.path, store.create, store.delete, store.exists, store.subscribe):
                    self.assertRaises(FolderError, method, name)
                self.assertRaises(FolderError, store.rename, "INBOX", name)

    def test_accepted(self) -> None:
        for name in ["a", "a/b", "Entwürfe", "日本語", "x" * 200, "A&B", "with space", "INBOX/x"]:
            with self.subTest(name=name):
                validateName(name)

    def test_pathTraversalRegression(self) -> None:
        """
        Regression: no folder name, however built, gives a path outside the
        user's Maildir, and traversal attempts are refused before any file
        is touched.
        """
        root = self.mktemp()
        store = MailStore(root)
        store.ensureDefaults()
        outside = os.path.dirname(os.path.abspath(root))
        before = sorted(os.listdir(outside))
        for name in ["../x", "../../etc", "a/../../..", "/etc/passwd", "a\\..\\b", "..\x00", "Sent/../..", "./x"]:
            with self.subTest(name=name):
                self.assertRaises(FolderError, store.create, name)
                self.assertRaises(FolderError, store.rename, "Sent", name)
        self.assertEqual(sorted(os.listdir(outside)), before)
        for name in ["a\\b", "%2e%2e", "&AC4ALg-", "-/x", "a b/c"]:
            with self.subTest(name=name):
                path = store.path(name)
                self.assertEqual(os.path.dirname(path), root)
                self.assertTrue(os.path.basename(path).startswith("."))

    def test_pathTraversalEncodedDotsOnDisk(self) -> None:
        """
        Regression: a directory whose name decodes to "." or ".." (or
        has one as a component) is never listed as a folder.
        """
        root = self.mktemp()
        store = MailStore(root)
        store.ensureDefaults()
        for entry in [".&AC4ALg-", ".&AC4-", ".a.&AC4ALg-"]:
            os.mkdir(os.path.join(root, entry))
        self.assertEqual(
            store.listFolders(), ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]
        )
