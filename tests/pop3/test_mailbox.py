"""
Tests for L{mailhub.pop3.mailbox}: the POP3 maildrop over a Maildir INBOX
(snapshot, UIDL, sizes, the failure-atomic commit, the session lock).

Results are read back with the stdlib's L{mailbox.Maildir}, an independent
reader.
"""

from __future__ import annotations

import errno
import mailbox
import os

from twisted.internet.task import Clock
from twisted.mail.pop3 import IMailbox
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mailhub.pop3.mailbox import (
    LOCK_NAME,
    STALE_LOCK_AGE,
    ISessionMailbox,
    MaildirMailbox,
    MailboxInUse,
    sizesFromName,
    splitName,
    uidFor,
)
from tests.test_fs import ScriptedFileSystem

NOW = 1795700000

#: A pid no process has (above any pid_max).
DEAD_PID = 2**31 - 2

CRLF_MESSAGE = b"Subject: one\r\nFrom: a@example.test\r\n\r\nHello\r\n.dot\r\n"
LF_MESSAGE = b"Subject: two\n\nline one\nline two\n"


def makeMaildir(path: str) -> str:
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, sub))
    return path


def mailhubName(seconds: int, serial: int, content: bytes) -> str:
    """
    A name as mailhub's delivery writes it (CRLF, so S and W agree).
    """
    return f"{seconds}.M1P100Q{serial}.mx.example.test,S={len(content)},W={len(content)}"


def put(maildir: str, name: str, content: bytes, sub: str = "new") -> str:
    path = os.path.join(maildir, sub, name)
    with open(path, "wb") as f:
        f.write(content)
    return path


class MaildirTestsMixin:
    """
    A fresh Maildir and a clock.
    """

    def setUp(self) -> None:
        self.maildir = makeMaildir(self.mktemp())
        self.clock = Clock()
        self.clock.advance(NOW)

    def mailbox(self, fs: ScriptedFileSystem | None = None, *, lock: bool = True, **kw: object) -> MaildirMailbox:
        box = MaildirMailbox(self.maildir, fs, **kw)  # type: ignore[arg-type]
        self.addCleanup(box.release)
        if lock:
            box.open(self.clock)
        return box

    def listing(self) -> dict[str, list[str]]:
        return {sub: sorted(os.listdir(os.path.join(self.maildir, sub))) for sub in ("cur", "new", "tmp")}

    def reader(self) -> mailbox.Maildir:
        return mailbox.Maildir(self.maildir, factory=None, create=False)


class InterfaceTests(MaildirTestsMixin, SynchronousTestCase):
    def test_verifyObject(self) -> None:
        """
        L{MaildirMailbox} provides Twisted's POP3 L{IMailbox} and the
        session interface the server needs.
        """
        box = self.mailbox()
        self.assertTrue(verifyObject(IMailbox, box))
        self.assertTrue(verifyObject(ISessionMailbox, box))


class NameTests(SynchronousTestCase):
    """
    Parsing Maildir names (table-driven).
    """

    def test_splitName(self) -> None:
        cases = [
            ("1.M2P3.host,S=5,W=6", ("1.M2P3.host,S=5,W=6", "")),
            ("1.M2P3.host,S=5:2,", ("1.M2P3.host,S=5", "")),
            ("1.M2P3.host:2,FS", ("1.M2P3.host", "FS")),
            ("1.M2P3.host:2,Sa", ("1.M2P3.host", "Sa")),
            ("1.M2P3.host:1,experimental", ("1.M2P3.host", None)),
        ]
        for name, expected in cases:
            self.assertEqual(splitName(name), expected, name)

    def test_sizesFromName(self) -> None:
        cases = [
            ("1.M2P3.host,S=5,W=6", (5, 6)),
            ("1.M2P3.host,W=6,S=5", (5, 6)),
            ("1.M2P3.host,S=5", (5, None)),
            ("1.M2P3.host", (None, None)),
            ("1.M2P3.host,S=x", (None, None)),
            ("1.M2P3.host,S=12abc", (None, None)),
        ]
        for name, expected in cases:
            self.assertEqual(sizesFromName(name), expected, name)

    def test_uidIsTheBaseName(self) -> None:
        """
        A base name that is a valid unique-id (RFC 1939 §7) is the UIDL.
        """
        name = "1795700000.M1P2Q3.mx.example.test,S=10,W=10"
        self.assertEqual(uidFor(name), name.encode("ascii"))

    def test_uidOfAwkwardNames(self) -> None:
        """
        A name longer than 70 characters, or with characters outside
        0x21-0x7E, gets a stable hash: printable, at most 70, distinct.
        """
        names = ["1.M2P3." + "h" * 80, "1.M2P3.h\u00f6st", "1.M2P3.with space", "1.M2P3.\udcff"]
        uids = [uidFor(name) for name in names]
        for name, uid in zip(names, uids):
            self.assertTrue(1 <= len(uid) <= 70, uid)
            self.assertTrue(all(0x21 <= c <= 0x7E for c in uid), uid)
            self.assertEqual(uidFor(name), uid)
        self.assertEqual(len(set(uids)), len(uids))


class SnapshotTests(MaildirTestsMixin, SynchronousTestCase):
    """
    The maildrop is listed once, at open, in delivery order.
    """

    def test_newAndCurInDeliveryOrder(self) -> None:
        """
        Messages of C{new/} and C{cur/} are numbered by the seconds that
        start their names, then by name.
        """
        put(self.maildir, mailhubName(NOW - 10, 2, CRLF_MESSAGE), CRLF_MESSAGE)
        put(self.maildir, "999.P1.old:2,S", LF_MESSAGE, sub="cur")
        put(self.maildir, mailhubName(NOW - 10, 1, CRLF_MESSAGE), CRLF_MESSAGE)
        put(self.maildir, mailhubName(NOW - 100, 3, CRLF_MESSAGE) + ":2,F", CRLF_MESSAGE, sub="cur")
        box = self.mailbox()
        uids = [box.getUidl(i) for i in range(len(box.listMessages()))]
        self.assertEqual(
            uids,
            [
                b"999.P1.old",
                mailhubName(NOW - 100, 3, CRLF_MESSAGE).encode(),
                mailhubName(NOW - 10, 1, CRLF_MESSAGE).encode(),
                mailhubName(NOW - 10, 2, CRLF_MESSAGE).encode(),
            ],
        )

    def test_laterDeliveryNotSeen(self) -> None:
        """
        RFC 1939: a message delivered during the session appears in the
        next one, not this one.
        """
        put(self.maildir, mailhubName(NOW, 1, CRLF_MESSAGE), CRLF_MESSAGE)
        box = self.mailbox()
        self.assertEqual(len(box.listMessages()), 1)
        put(self.maildir, mailhubName(NOW + 1, 2, CRLF_MESSAGE), CRLF_MESSAGE)
        self.assertEqual(len(box.listMessages()), 1)
        with self.assertRaises(ValueError):
            box.getUidl(1)
        box.commit()
        box.release()
        self.assertEqual(len(self.mailbox().listMessages()), 2)

    def test_skipsHiddenFilesAndDirectories(self) -> None:
        """
        Dot files and directories in C{new/} and C{cur/} are not messages.
        """
        put(self.maildir, ".hidden", b"x")
        os.mkdir(os.path.join(self.maildir, "cur", "1.P1.dir"))
        os.symlink("/etc/passwd", os.path.join(self.maildir, "new", "2.P1.link"))
        put(self.maildir, "3.P1.real", LF_MESSAGE)
        box = self.mailbox()
        self.assertEqual([box.getUidl(0)], [b"3.P1.real"])
        self.assertEqual(len(box.listMessages()), 1)

    def test_missingSubdirectories(self) -> None:
        """
        A Maildir without C{new/} or C{cur/} is empty, not an error.
        """
        os.rmdir(os.path.join(self.maildir, "new"))
        os.rmdir(os.path.join(self.maildir, "cur"))
        self.assertEqual(self.mailbox().listMessages(), [])

    def test_duplicateListedOnce(self) -> None:
        """
        A message caught mid-rename by another client (in both C{new/} and
        C{cur/}) is listed once, from C{cur/}.
        """
        put(self.maildir, "5.P1.host", LF_MESSAGE)
        put(self.maildir, "5.P1.host:2,S", LF_MESSAGE, sub="cur")
        box = self.mailbox()
        self.assertEqual(len(box.listMessages()), 1)
        self.assertEqual(box.getUidl(0), b"5.P1.host")

    def test_badIndexes(self) -> None:
        """
        Indexes out of range are C{ValueError}, as Twisted prefers.
        """
        put(self.maildir, "5.P1.host", LF_MESSAGE)
        box = self.mailbox()
        for bad in (-1, 1, 100):
            for method in (box.listMessages, box.getMessage, box.getUidl, box.deleteMessage, box.markSeen):
                self.assertRaises(ValueError, method, bad)

    def test_noReadingAtLogin(self) -> None:
        """
        Opening reads no message: sizes come from the names (or a stat).
        """
        put(self.maildir, mailhubName(NOW, 1, CRLF_MESSAGE), CRLF_MESSAGE)
        put(self.maildir, "7.P1.foreign", LF_MESSAGE)
        fs = ScriptedFileSystem()
        self.mailbox(fs)
        self.assertEqual(fs.subjectsOf("openRead"), [])


class UidlTests(MaildirTestsMixin, SynchronousTestCase):
    """
    UIDL is stable: across sessions and across flag changes.
    """

    def test_stableAcrossSessions(self) -> None:
        for n in range(3):
            put(self.maildir, mailhubName(NOW + n, n, CRLF_MESSAGE), CRLF_MESSAGE)
        first = self.mailbox()
        uids = [first.getUidl(i) for i in range(3)]
        first.release()
        second = self.mailbox()
        self.assertEqual([second.getUidl(i) for i in range(3)], uids)

    def test_stableAcrossFlagChange(self) -> None:
        """
        Another client moving the message to C{cur/} and changing its
        flags does not change its UIDL.
        """
        name = mailhubName(NOW, 1, CRLF_MESSAGE)
        put(self.maildir, name, CRLF_MESSAGE)
        before = self.mailbox()
        uid = before.getUidl(0)
        before.release()
        os.rename(os.path.join(self.maildir, "new", name), os.path.join(self.maildir, "cur", name + ":2,FS"))
        self.assertEqual(self.mailbox().getUidl(0), uid)
        self.assertEqual(uid, name.encode("ascii"))


class SizeTests(MaildirTestsMixin, SynchronousTestCase):
    """
    Sizes are the octets of the message as sent: CRLF line ends.
    """

    def test_mailhubNamesNotRead(self) -> None:
        """
        mailhub's own names carry C{W=}: the size is exact without reading
        the file.
        """
        put(self.maildir, mailhubName(NOW, 1, CRLF_MESSAGE), CRLF_MESSAGE)
        fs = ScriptedFileSystem()
        box = self.mailbox(fs)
        self.assertEqual(box.listMessages(), [len(CRLF_MESSAGE)])
        self.assertEqual(box.listMessages(0), len(CRLF_MESSAGE))
        self.assertEqual(fs.subjectsOf("openRead"), [])

    def test_wireSizeFromName(self) -> None:
        """
        C{W=} (the size with CRLF) wins over C{S=} (the size on disk), as
        Dovecot writes them for LF files.
        """
        put(self.maildir, f"1.P1.host,S={len(LF_MESSAGE)},W=999", LF_MESSAGE)
        self.assertEqual(self.mailbox().listMessages(), [999])

    def test_lfOnlyMessageMeasured(self) -> None:
        """
        A file without C{W=} is measured once: each bare LF will be sent as
        CRLF.
        """
        put(self.maildir, "1.P1.foreign", LF_MESSAGE)
        put(self.maildir, f"2.P1.foreign,S={len(LF_MESSAGE)}", LF_MESSAGE)
        fs = ScriptedFileSystem()
        box = self.mailbox(fs)
        expected = len(LF_MESSAGE.replace(b"\n", b"\r\n"))
        self.assertEqual(box.listMessages(), [expected, expected])
        self.assertEqual(box.listMessages(1), expected)
        self.assertEqual(len(fs.subjectsOf("openRead")), 2)  # once each
        self.assertEqual(fs.openFds, set())

    def test_mixedAndUnterminated(self) -> None:
        """
        CRLF counts once, bare LF twice; a missing final line end adds
        nothing (it belongs to the terminator).
        """
        content = b"A: 1\r\nB: 2\n\nbody\r\nlast"
        put(self.maildir, "1.P1.foreign", content)
        self.assertEqual(self.mailbox().listMessages(0), len(content) + 2)

    def test_crlfAcrossReadBoundary(self) -> None:
        """
        A CRLF split between two reads is still one line end.
        """
        content = b"X" * (64 * 1024 - 1) + b"\r\n" + b"y\n"
        put(self.maildir, "1.P1.foreign", content)
        self.assertEqual(self.mailbox().listMessages(0), len(content) + 1)

    def test_statWhenNoSizeInName(self) -> None:
        """
        Without sizes in the name the disk size comes from a stat; a CRLF
        file measures the same.
        """
        put(self.maildir, "1.P1.foreign", CRLF_MESSAGE)
        self.assertEqual(self.mailbox().listMessages(), [len(CRLF_MESSAGE)])

    def test_deletedIsZero(self) -> None:
        put(self.maildir, "1.P1.foreign", CRLF_MESSAGE)
        box = self.mailbox()
        box.deleteMessage(0)
        self.assertEqual(box.listMessages(), [0])
        self.assertEqual(box.listMessages(0), 0)
        self.assertTrue(box.isDeleted(0))
        self.assertRaises(ValueError, box.getMessage, 0)


class MessageTests(MaildirTestsMixin, SynchronousTestCase):
    def test_getMessage(self) -> None:
        """
        C{getMessage} gives the stored bytes, through the file-system seam.
        """
        put(self.maildir, "1.P1.host", CRLF_MESSAGE)
        fs = ScriptedFileSystem()
        box = self.mailbox(fs)
        f = box.getMessage(0)
        self.assertEqual(f.read(1 << 20), CRLF_MESSAGE)
        f.close()
        self.assertEqual(fs.openFds, set())

    def test_followsARename(self) -> None:
        """
        A message another client moved to C{cur/} (or re-flagged) after
        the snapshot is found again by its base name.
        """
        put(self.maildir, "1.P1.host", CRLF_MESSAGE)
        box = self.mailbox()
        os.rename(os.path.join(self.maildir, "new", "1.P1.host"), os.path.join(self.maildir, "cur", "1.P1.host:2,RS"))
        with box.getMessage(0) as f:
            self.assertEqual(f.read(), CRLF_MESSAGE)

    def test_goneIsAnError(self) -> None:
        put(self.maildir, "1.P1.host", CRLF_MESSAGE)
        box = self.mailbox()
        os.unlink(os.path.join(self.maildir, "new", "1.P1.host"))
        self.assertRaises(FileNotFoundError, box.getMessage, 0)


class CommitTests(MaildirTestsMixin, SynchronousTestCase):
    """
    Deletions and seen flags, applied at commit, all or nothing.
    """

    def setUp(self) -> None:
        super().setUp()
        self.names = [mailhubName(NOW + n, n, CRLF_MESSAGE) for n in range(3)]
        put(self.maildir, self.names[0], CRLF_MESSAGE)
        put(self.maildir, self.names[1] + ":2,F", CRLF_MESSAGE, sub="cur")
        put(self.maildir, self.names[2], CRLF_MESSAGE)

    def test_deleteAndCommit(self) -> None:
        """
        Deleted messages are removed at commit, and the directories they
        were in are fsynced (through the seam); C{tmp/} is left empty.
        """
        fs = ScriptedFileSystem()
        box = self.mailbox(fs)
        box.deleteMessage(0)
        box.deleteMessage(1)
        self.assertEqual(len(self.reader()), 3)  # nothing before commit
        mark = len(fs.calls)
        box.sync()
        self.assertEqual(self.listing(), {"cur": [], "new": [self.names[2]], "tmp": []})
        self.assertEqual(
            sorted(fs.subjectsOf("fsyncDirectory")),
            [os.path.join(self.maildir, "cur"), os.path.join(self.maildir, "new")],
        )
        # The fsyncs come before the files are unlinked: a crash in between
        # leaves them in tmp/, where no reader looks.
        ops = [op for op, _ in fs.calls[mark:]]
        self.assertEqual(ops, ["rename", "rename", "fsyncDirectory", "fsyncDirectory", "unlink", "unlink"])
        self.assertEqual(list(self.reader().keys()), [self.names[2]])

    def test_undelete(self) -> None:
        """
        RSET (C{undeleteMessages}) unmarks everything; commit removes
        nothing.
        """
        box = self.mailbox()
        box.deleteMessage(0)
        box.deleteMessage(2)
        box.undeleteMessages()
        self.assertEqual(box.listMessages(), [len(CRLF_MESSAGE)] * 3)
        box.commit()
        self.assertEqual(len(self.reader()), 3)

    def test_noCommitNoChange(self) -> None:
        """
        Releasing without a commit (a dropped connection) changes nothing.
        """
        box = self.mailbox()
        box.deleteMessage(0)
        box.markSeen(2)
        before = self.listing()
        box.release()
        self.assertEqual(self.listing(), before)

    def test_seenMovesToCur(self) -> None:
        """
        A retrieved message moves from C{new/} to C{cur/} with C{:2,S};
        one in C{cur/} keeps its flags, in ASCII order.
        """
        box = self.mailbox()
        box.markSeen(0)
        box.markSeen(1)
        box.commit()
        self.assertEqual(
            self.listing(),
            {"cur": sorted([self.names[0] + ":2,S", self.names[1] + ":2,FS"]), "new": [self.names[2]], "tmp": []},
        )
        reader = self.reader()
        self.assertEqual(reader.get_message(self.names[0]).get_flags(), "S")
        self.assertEqual(reader.get_message(self.names[1]).get_flags(), "FS")
        self.assertEqual(reader.get_message(self.names[2]).get_subdir(), "new")

    def test_keywordsKept(self) -> None:
        """
        Lower-case keyword letters (Dovecot) stay, after the system flags.
        """
        os.rename(
            os.path.join(self.maildir, "cur", self.names[1] + ":2,F"),
            os.path.join(self.maildir, "cur", self.names[1] + ":2,Fab"),
        )
        box = self.mailbox()
        box.markSeen(1)
        box.commit()
        self.assertIn(self.names[1] + ":2,FSab", self.listing()["cur"])

    def test_alreadySeenNotRenamed(self) -> None:
        os.rename(
            os.path.join(self.maildir, "cur", self.names[1] + ":2,F"),
            os.path.join(self.maildir, "cur", self.names[1] + ":2,S"),
        )
        fs = ScriptedFileSystem()
        box = self.mailbox(fs)
        box.markSeen(1)
        box.commit()
        self.assertEqual(fs.ops("rename"), [])

    def test_seenAndDeleted(self) -> None:
        """
        A message both retrieved and deleted is just removed.
        """
        box = self.mailbox()
        box.markSeen(0)
        box.deleteMessage(0)
        box.commit()
        self.assertEqual(self.listing()["cur"], [self.names[1] + ":2,F"])
        self.assertEqual(self.listing()["new"], [self.names[2]])

    def test_renamedByAnotherClient(self) -> None:
        """
        Commit finds a message another client renamed meanwhile; one that
        another client removed is simply gone.
        """
        box = self.mailbox()
        os.rename(
            os.path.join(self.maildir, "new", self.names[0]),
            os.path.join(self.maildir, "cur", self.names[0] + ":2,T"),
        )
        os.unlink(os.path.join(self.maildir, "new", self.names[2]))
        box.markSeen(0)
        box.deleteMessage(2)
        box.commit()
        self.assertEqual(
            self.listing()["cur"], sorted([self.names[0] + ":2,ST", self.names[1] + ":2,F"])
        )

    def assertFailureChangesNothing(self, failOp: str, failAt: int) -> None:
        before = self.listing()
        fs = ScriptedFileSystem(failOp=failOp, failAt=failAt, failErrno=errno.EIO)
        box = self.mailbox(fs)
        box.markSeen(0)
        box.markSeen(1)
        box.deleteMessage(2)
        fs.failAt += fs.counts[failOp]  # count from here, not from open()
        with self.assertRaises(OSError) as raised:
            box.commit()
        self.assertIs(raised.exception, fs.raised)
        self.assertEqual(self.listing(), before, (failOp, failAt))
        box.release()
        self.flushLoggedErrors(OSError)

    def test_failureUndoesEverything(self) -> None:
        """
        A failure at any rename or directory fsync of the commit (injected
        through the seam) is raised, and every rename already made is
        undone: the Maildir is as it was.
        """
        for failOp, failAt in [("rename", 1), ("rename", 2), ("rename", 3), ("fsyncDirectory", 1), ("fsyncDirectory", 2)]:
            self.assertFailureChangesNothing(failOp, failAt)

    def test_unlinkFailureAfterCommitPoint(self) -> None:
        """
        Once renames and fsyncs are done the commit has happened: a file
        that cannot be unlinked from C{tmp/} is left for the sweep of old
        C{tmp/} files, not reported.
        """
        fs = ScriptedFileSystem()
        box = self.mailbox(fs)
        box.deleteMessage(0)
        fs.failOp, fs.failAt = "unlink", fs.counts["unlink"] + 1
        box.commit()
        self.assertEqual(len(self.listing()["tmp"]), 1)
        self.assertEqual(len(self.reader()), 2)
        self.flushLoggedErrors(OSError)


class LockTests(MaildirTestsMixin, SynchronousTestCase):
    """
    One POP3 session per Maildir, with a lock a crash cannot leave behind.
    """

    def lockPath(self) -> str:
        return os.path.join(self.maildir, LOCK_NAME)

    def writeLock(self, content: str) -> None:
        with open(self.lockPath(), "w") as f:
            f.write(content)

    def test_lockFileHoldsPidHostTime(self) -> None:
        box = self.mailbox(hostname="pop.test", pid=4242)
        with open(self.lockPath()) as f:
            pid, host, when, nonce = f.read().split()
        self.assertEqual((pid, host, when), ("4242", "pop.test", str(NOW)))
        self.assertTrue(nonce)
        box.release()
        self.assertFalse(os.path.exists(self.lockPath()))
        self.assertEqual(sorted(os.listdir(self.maildir)), ["cur", "new", "tmp"])

    def test_sameProcessTwice(self) -> None:
        """
        Within one process the in-memory set refuses a second session,
        whatever the lock file says.
        """
        self.mailbox()
        other = MaildirMailbox(self.maildir)
        self.assertRaises(MailboxInUse, other.open, self.clock)
        os.unlink(self.lockPath())
        self.assertRaises(MailboxInUse, other.open, self.clock)

    def test_releaseAndReopen(self) -> None:
        box = self.mailbox()
        box.release()
        box.release()  # idempotent
        self.mailbox()

    def test_liveLockElsewhere(self) -> None:
        """
        A fresh lock held by another host (or a live process here) is
        respected.
        """
        for content in (f"123 other.host {NOW - 60} n1\n", f"1 pop.test {NOW - 60} n2\n"):
            self.writeLock(content)
            box = MaildirMailbox(self.maildir, hostname="pop.test")
            self.assertRaises(MailboxInUse, box.open, self.clock)
            with open(self.lockPath()) as f:
                self.assertEqual(f.read(), content)
            self.assertEqual(sorted(os.listdir(self.maildir)), ["cur", "mailhub-pop3.lock", "new", "tmp"])

    def test_staleLocksBroken(self) -> None:
        """
        A lock older than 30 minutes, one whose process is gone (on this
        host), one naming this very process (a previous process with the
        same pid), or one that is not a lock at all is broken.
        """
        stale = [
            f"123 other.host {NOW - STALE_LOCK_AGE - 1} n1\n",
            f"1 pop.test {NOW - STALE_LOCK_AGE - 1} n2\n",
            f"{DEAD_PID} pop.test {NOW} n3\n",
            f"4242 pop.test {NOW} n4\n",
            "",
            "garbage",
        ]
        for content in stale:
            self.writeLock(content)
            box = self.mailbox(hostname="pop.test", pid=4242)
            with open(self.lockPath()) as f:
                self.assertIn(" pop.test ", f.read(), content)
            box.release()
            self.assertEqual(sorted(os.listdir(self.maildir)), ["cur", "new", "tmp"])

    def test_futureLockStale(self) -> None:
        """
        A lock dated far in the future (a clock gone wrong) does not hold
        the mailbox for ever.
        """
        self.writeLock(f"123 other.host {NOW + STALE_LOCK_AGE + 1} n1\n")
        self.mailbox()

    def test_releaseLeavesAnotherLock(self) -> None:
        """
        If this session's lock was broken and another session locked the
        mailbox since, releasing does not remove the other's lock.
        """
        box = self.mailbox()
        os.unlink(self.lockPath())
        self.writeLock("123 other.host 1 n1\n")
        box.release()
        self.assertTrue(os.path.exists(self.lockPath()))

    def test_keepAlive(self) -> None:
        """
        A long session refreshes its lock (after a third of its lifetime),
        so it never looks stale.
        """
        fs = ScriptedFileSystem()
        box = self.mailbox(fs, hostname="pop.test", pid=4242)
        self.clock.advance(STALE_LOCK_AGE / 3 - 1)
        box.keepAlive()
        self.assertEqual(fs.ops("rename"), [])
        self.clock.advance(1)
        box.keepAlive()
        with open(self.lockPath()) as f:
            self.assertEqual(f.read().split()[:3], ["4242", "pop.test", str(int(NOW + STALE_LOCK_AGE / 3))])
        self.clock.advance(STALE_LOCK_AGE)
        self.assertFalse(MaildirMailbox(self.maildir, hostname="other").isStale(open(self.lockPath(), "rb").read(), self.clock.seconds()))
        box.release()
        self.assertEqual(sorted(os.listdir(self.maildir)), ["cur", "new", "tmp"])

    def test_listingFailureReleases(self) -> None:
        """
        If the Maildir cannot be listed, open raises and holds nothing.
        """
        os.rmdir(os.path.join(self.maildir, "cur"))
        with open(os.path.join(self.maildir, "cur"), "w"):
            pass
        box = MaildirMailbox(self.maildir)
        self.assertRaises(NotADirectoryError, box.open, self.clock)
        self.assertFalse(os.path.exists(self.lockPath()))
        os.unlink(os.path.join(self.maildir, "cur"))
        os.mkdir(os.path.join(self.maildir, "cur"))
        self.mailbox()

    def test_lockWriteFailure(self) -> None:
        """
        A lock that cannot be written is an C{OSError}, with nothing left
        behind.
        """
        fs = ScriptedFileSystem(failOp="write", failErrno=errno.ENOSPC)
        box = MaildirMailbox(self.maildir, fs)
        self.assertRaises(OSError, box.open, self.clock)
        self.assertEqual(sorted(os.listdir(self.maildir)), ["cur", "new", "tmp"])
        self.mailbox()
