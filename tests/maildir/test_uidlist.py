"""
Tests for L{mailhub.maildir.uidlist}: Dovecot-compatible persistent UIDs.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mailhub.maildir.delivery import ensureMaildir
from mailhub.maildir.uidlist import (
    UIDLIST_NAME,
    DotLock,
    LockBusy,
    UIDList,
    UIDListLocked,
    scanFolder,
)
from mailhub.fs import FileSystem
from tests.test_fs import ScriptedFileSystem

HOST = "mx.example.org"
START = 1_700_000_000


def clockAt(seconds: float) -> Clock:
    clock = Clock()
    clock.advance(seconds)
    return clock


def name(seconds: int, n: int) -> str:
    return f"{seconds}.M{n}P100Q{n}.{HOST},S=10,W=10"


def deadPid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


class UIDListTestsMixin:
    def setUp(self) -> None:
        self.folder = self.mktemp()
        ensureMaildir(FileSystem(), self.folder)
        self.clock = clockAt(START)

    def uidList(self, **kwargs) -> UIDList:
        kwargs.setdefault("clock", self.clock)
        kwargs.setdefault("hostname", HOST)
        return UIDList(self.folder, **kwargs)

    def deliver(self, base: str, sub: str = "new", info: str = "") -> None:
        with open(os.path.join(self.folder, sub, base + info), "wb") as f:
            f.write(b"x")

    def remove(self, base: str) -> None:
        for sub in ("new", "cur"):
            for entry in os.listdir(os.path.join(self.folder, sub)):
                if entry.split(":")[0] == base:
                    os.unlink(os.path.join(self.folder, sub, entry))

    def listText(self) -> str:
        with open(os.path.join(self.folder, UIDLIST_NAME)) as f:
            return f.read()


class UIDListTests(UIDListTestsMixin, SynchronousTestCase):
    def test_format(self) -> None:
        """
        The file is Dovecot's version 3: header, then C{uid :basename}.
        """
        a, b = name(START, 1), name(START + 5, 2)
        self.deliver(a)
        self.deliver(b, "cur", ":2,S")
        validity, uids = self.uidList().sync(scanFolder(self.folder))
        self.assertEqual(validity, START)
        self.assertEqual(uids, {a: 1, b: 2})
        lines = self.listText().split("\n")
        header = lines[0].split(" ")
        self.assertEqual(header[:3], ["3", f"V{START}", "N3"])
        self.assertRegex(header[3], r"^G[0-9a-f]{32}$")
        self.assertEqual(lines[1:], [f"1 :{a}", f"2 :{b}", ""])

    def test_deliveryOrder(self) -> None:
        """
        New names get UIDs in delivery order: the leading seconds, then
        the name (numerically, not as text).
        """
        names = [name(START + 100, 1), name(999_999_999, 2), name(START, 3)]
        _, uids = self.uidList().sync(names)
        self.assertEqual(uids, {names[1]: 1, names[2]: 2, names[0]: 3})

    def test_flagsIgnored(self) -> None:
        """
        Full names are cut at the C{:}; a flag change keeps the UID.
        """
        base = name(START, 1)
        _, first = self.uidList().sync([base])
        _, second = self.uidList().sync([base + ":2,FS"])
        self.assertEqual(first, second)

    def test_stableAcrossInstances(self) -> None:
        """
        A new object (a restart) reads the same UIDs and UIDVALIDITY.
        """
        names = [name(START + i, i) for i in range(5)]
        first = self.uidList().sync(names)
        self.clock.advance(1000)
        second = self.uidList().sync(names)
        self.assertEqual(first, second)

    def test_noWriteWhenUnchanged(self) -> None:
        """
        A sync that changes nothing does not write (nor lock).
        """
        names = [name(START, 1)]
        self.uidList().sync(names)
        fs = ScriptedFileSystem()
        self.uidList(fs=fs).sync(names)
        self.assertEqual(fs.ops("openExclusive", "rename", "write"), [])

    def test_neverReuse(self) -> None:
        """
        After an expunge of the newest message and new mail, the new mail
        gets a UID above every UID ever given.
        """
        a, b, c = name(START, 1), name(START + 1, 2), name(START + 2, 3)
        for n in (a, b):
            self.deliver(n)
        uidList = self.uidList()
        uidList.sync(scanFolder(self.folder))
        self.remove(b)
        validity, uids = uidList.sync(scanFolder(self.folder))
        self.assertEqual(uids, {a: 1})
        self.deliver(c)
        _, uids = self.uidList().sync(scanFolder(self.folder))
        self.assertEqual(uids, {a: 1, c: 3})
        self.assertIn(" N4 ", self.listText().split("\n")[0] + " ")

    def test_returningNameGetsNewUID(self) -> None:
        """
        A name dropped and seen again gets a new UID, not its old one.
        """
        a = name(START, 1)
        self.deliver(a)
        uidList = self.uidList()
        uidList.sync([a])
        self.remove(a)
        uidList.sync([])
        self.deliver(a)
        self.assertEqual(uidList.sync([a])[1], {a: 2})

    def test_uidValidityKept(self) -> None:
        """
        UIDVALIDITY is set when the file is made and kept after.
        """
        validity, _ = self.uidList().sync([name(START, 1)])
        self.clock.advance(3600)
        later, _ = self.uidList().sync([name(START, 1), name(START + 3600, 2)])
        self.assertEqual(validity, later)

    def test_uidValidityChangesWhenLost(self) -> None:
        """
        If the file is lost, UIDVALIDITY changes (even within the same
        second, for an object that has seen the old one) and UIDs start
        again at 1.
        """
        names = [name(START, 1)]
        uidList = self.uidList()
        validity, _ = uidList.sync(names)
        os.unlink(os.path.join(self.folder, UIDLIST_NAME))
        again, uids = uidList.sync(names)
        self.assertGreater(again, validity)
        self.assertEqual(uids, {names[0]: 1})
        os.unlink(os.path.join(self.folder, UIDLIST_NAME))
        self.clock.advance(60)
        third, _ = self.uidList().sync(names)
        self.assertEqual(third, START + 60)

    def test_corruptFileIsLost(self) -> None:
        """
        An unreadable file is replaced by a new list with a new
        UIDVALIDITY.
        """
        names = [name(START, 1)]
        uidList = self.uidList()
        validity, _ = uidList.sync(names)
        with open(os.path.join(self.folder, UIDLIST_NAME), "w") as f:
            f.write("garbage\n")
        again, uids = uidList.sync(names)
        self.assertGreater(again, validity)

    def test_readsDovecotFile(self) -> None:
        """
        A file Dovecot wrote, with extension fields and extra header
        fields, is read, and they are kept when it is rewritten.
        """
        a, b, c = name(START, 1), name(START + 1, 2), name(START + 2, 3)
        text = (
            f"3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1 X9\n"
            f"25020 :{a}\n"
            f"25021 W1234 S1200 :{b}\n"
        )
        with open(os.path.join(self.folder, UIDLIST_NAME), "w") as f:
            f.write(text)
        validity, uids = self.uidList().sync([a, b, c])
        self.assertEqual((validity, uids), (1275660208, {a: 25020, b: 25021, c: 25022}))
        self.assertEqual(
            self.listText(),
            "3 V1275660208 N25023 G3085f01b7f11094c501100008c4a11c1 X9\n"
            f"25020 :{a}\n25021 W1234 S1200 :{b}\n25022 :{c}\n",
        )

    def test_readsVersion1(self) -> None:
        """
        A Courier-style version 1 file is read and rewritten as version 3.
        """
        a, b = name(START, 1), name(START + 1, 2)
        with open(os.path.join(self.folder, UIDLIST_NAME), "w") as f:
            f.write(f"1 1111 7\n6 {a}:2,S\n")
        validity, uids = self.uidList().sync([a, b])
        self.assertEqual((validity, uids), (1111, {a: 6, b: 7}))
        self.assertTrue(self.listText().startswith("3 V1111 N8 G"))

    def test_concurrentSessionsAgree(self) -> None:
        """
        Two objects on one folder give every message the same UID, and a
        session with an older listing does not drop mail another session
        has just listed.
        """
        one, two = self.uidList(), self.uidList()
        a, b, c = name(START, 1), name(START + 1, 2), name(START + 2, 3)
        for n in (a, b):
            self.deliver(n)
        oldListing = scanFolder(self.folder)
        one.sync(oldListing)
        self.deliver(c)
        _, seenByTwo = two.sync(scanFolder(self.folder))
        self.assertEqual(seenByTwo, {a: 1, b: 2, c: 3})
        # One still has the listing from before c: c stays, with its UID.
        self.assertEqual(one.sync(oldListing)[1], {a: 1, b: 2, c: 3})
        self.assertEqual(one.sync(scanFolder(self.folder)), two.sync(scanFolder(self.folder)))

    def test_movedNewToCur(self) -> None:
        """
        A message moved from C{new/} to C{cur/} (POP3 or IMAP reading it)
        keeps its UID.
        """
        a = name(START, 1)
        self.deliver(a)
        uidList = self.uidList()
        uidList.sync(scanFolder(self.folder))
        os.rename(os.path.join(self.folder, "new", a), os.path.join(self.folder, "cur", a + ":2,S"))
        self.assertEqual(uidList.sync(scanFolder(self.folder))[1], {a: 1})

    def test_hundredThousand(self) -> None:
        """
        A folder of 100,000 messages syncs (timing is for the benchmark),
        a second sync changes nothing, and 1,000 new ones are appended.
        """
        names = [name(START + i, i) for i in range(100_000)]
        validity, uids = self.uidList().sync(names)
        self.assertEqual(len(uids), 100_000)
        self.assertEqual(uids[names[-1]], 100_000)
        uidList = self.uidList()
        self.assertEqual(uidList.sync(names), (validity, uids))
        more = names + [name(START + 200_000 + i, i) for i in range(1000)]
        _, uids = uidList.sync(more)
        self.assertEqual(uids[more[-1]], 101_000)


class LockTests(UIDListTestsMixin, SynchronousTestCase):
    def lockPath(self) -> str:
        return os.path.join(self.folder, UIDLIST_NAME + ".lock")

    def writeLock(self, content: str) -> None:
        with open(self.lockPath(), "w") as f:
            f.write(content)

    def test_liveLockRespected(self) -> None:
        """
        A lock held by a live process on this host, fresh, makes sync
        raise L{UIDListLocked} and leaves the lock alone.
        """
        content = f"{os.getppid()}:{HOST}:{START}\n"
        self.writeLock(content)
        self.assertRaises(UIDListLocked, self.uidList().sync, [name(START, 1)])
        with open(self.lockPath()) as f:
            self.assertEqual(f.read(), content)
        self.assertFalse(os.path.exists(os.path.join(self.folder, UIDLIST_NAME)))
        self.assertTrue(issubclass(UIDListLocked, LockBusy))

    def test_otherHostLockRespected(self) -> None:
        """
        A fresh lock from another host (whose pids we cannot check) holds.
        """
        self.writeLock(f"{deadPid()}:other.example.org:{START}\n")
        self.assertRaises(UIDListLocked, self.uidList().sync, [name(START, 1)])

    def test_deadPidBroken(self) -> None:
        """
        A lock naming a dead pid on this host is broken at once.
        """
        self.writeLock(f"{deadPid()}:{HOST}:{START}\n")
        _, uids = self.uidList().sync([name(START, 1)])
        self.assertEqual(len(uids), 1)
        self.assertFalse(os.path.exists(self.lockPath()))

    def test_oldLockBroken(self) -> None:
        """
        A lock older than 30 seconds is broken, even from another host.
        """
        self.writeLock(f"{os.getppid()}:other.example.org:{START}\n")
        self.clock.advance(31)
        self.uidList().sync([name(START, 1)])
        self.assertFalse(os.path.exists(self.lockPath()))

    def test_lockReleased(self) -> None:
        """
        No lock is left after a sync, nor any temporary file.
        """
        self.uidList().sync([name(START, 1)])
        self.assertEqual(sorted(os.listdir(self.folder)), ["cur", UIDLIST_NAME, "new", "tmp"])

    def test_lockContent(self) -> None:
        """
        The lock holds pid, host and time; its owner removes it.
        """
        pid = os.getppid()  # alive, and not this process
        lock = DotLock(self.lockPath(), FileSystem(), self.clock, hostname=HOST, pid=pid)
        lock.acquire()
        with open(self.lockPath()) as f:
            self.assertEqual(f.read(), f"{pid}:{HOST}:{START}\n")
        self.assertRaises(UIDListLocked, self.uidList().sync, [name(START, 1)])
        lock.release()
        self.assertFalse(os.path.exists(self.lockPath()))

    def test_faults(self) -> None:
        """
        A failure at any step of an update leaves the old list whole, no
        lock and no temporary file; the next sync gives the same UIDs as
        if nothing had failed.
        """
        a, b = name(START, 1), name(START + 1, 2)
        for op, at in [
            ("openExclusive", 1),  # the lock
            ("write", 1),  # the lock's content
            ("close", 1),
            ("openExclusive", 2),  # the temporary file
            ("write", 2),
            ("fsync", 1),
            ("close", 2),
            ("rename", 1),
        ]:
            with self.subTest(op=op, at=at):
                for entry in os.listdir(self.folder):
                    if entry.startswith(UIDLIST_NAME):
                        os.unlink(os.path.join(self.folder, entry))
                self.uidList().sync([a])
                before = self.listText()
                fs = ScriptedFileSystem(failOp=op, failAt=at, failErrno=errno.EIO)
                # The whole-file path (an append's faults: test_appendFaults).
                self.assertRaises(OSError, self.uidList(fs=fs, append=False).sync, [a, b])
                self.assertIsNotNone(fs.raised)
                self.assertEqual(self.listText(), before)
                self.assertEqual(sorted(os.listdir(self.folder)), ["cur", UIDLIST_NAME, "new", "tmp"])
                self.assertEqual(fs.openFds, set())
                self.assertEqual(self.uidList().sync([a, b])[1], {a: 1, b: 2})

    def test_directoryFsyncFault(self) -> None:
        """
        A failed directory fsync (after the rename) is reported; the list
        on disk is the new one, whole, and no lock is left.
        """
        a, b = name(START, 1), name(START + 1, 2)
        self.uidList().sync([a])
        fs = ScriptedFileSystem(failOp="fsyncDirectory", failErrno=errno.EIO)
        self.assertRaises(OSError, self.uidList(fs=fs, append=False).sync, [a, b])
        self.assertEqual(self.uidList().mapping()[1], {a: 1, b: 2})
        self.assertFalse(os.path.exists(self.lockPath()))


class AppendTests(UIDListTestsMixin, SynchronousTestCase):
    """
    New records are appended to the list (and C{N} set in place); the
    whole file is rewritten only now and then.
    """

    def listPath(self) -> str:
        return os.path.join(self.folder, UIDLIST_NAME)

    def test_newRecordsAppended(self) -> None:
        """
        New messages are appended to the same file: what was there stays
        byte for byte, C{N} is updated in place, nothing is renamed, and
        only the new records (and C{N}'s digits) are written.
        """
        names = [name(START + i, i) for i in range(3)]
        self.uidList().sync(names)
        before = self.listText()
        inode = os.stat(self.listPath()).st_ino
        fs = ScriptedFileSystem()
        more = names + [name(START + 10, 10), name(START + 11, 11)]
        _, uids = self.uidList(fs=fs).sync(more)
        self.assertEqual([uids[n] for n in more], [1, 2, 3, 4, 5])
        after = self.listText()
        self.assertEqual(os.stat(self.listPath()).st_ino, inode)
        self.assertEqual(after, before.replace(" N4 ", " N6 ", 1) + f"4 :{more[3]}\n5 :{more[4]}\n")
        self.assertEqual(fs.ops("rename"), [])
        self.assertEqual([args[0] for _, args in fs.ops("openExclusive")], [self.listPath() + ".lock"])
        records = len(f"4 :{more[3]}\n5 :{more[4]}\n")
        # The lock's content, the records, N's digit.
        self.assertEqual([args[1] for _, args in fs.ops("write")][1:], [records, 1])
        self.assertEqual(self.uidList().mapping()[1], uids)

    def test_assignCostsTheNewNames(self) -> None:
        """
        L{UIDList.assign} looks only at the names it is given: it gives
        UIDs to the new ones, drops the gone ones without listing the
        folder, and answers for the new ones only.
        """
        names = [name(START + i, i) for i in range(5)]
        uidList = self.uidList(scan=lambda path: self.fail("listed the folder"))
        uidList.sync(names)
        validity, uids = uidList.assign([name(START + 9, 9), names[0] + ":2,S"], gone=[names[1]])
        self.assertEqual(uids, {name(START + 9, 9): 6, names[0]: 1})
        self.assertNotIn(names[1], uidList.mapping()[1])
        # Already listed: nothing to do, no lock taken.
        fs = ScriptedFileSystem()
        self.assertEqual(self.uidList(fs=fs).assign([names[2]]), (validity, {names[2]: 3}))
        self.assertEqual(fs.ops("openExclusive"), [])

    def test_nGrowsADigit(self) -> None:
        """
        When C{N} needs one more digit the file is rewritten whole
        (atomically), with the right header.
        """
        names = [name(START + i, i) for i in range(8)]
        uidList = self.uidList()
        uidList.sync(names)
        inode = os.stat(self.listPath()).st_ino
        uidList.sync(names + [name(START + 20, 20)])  # N9 -> N10
        self.assertNotEqual(os.stat(self.listPath()).st_ino, inode)
        lines = self.listText().split("\n")
        self.assertIn(" N10 ", lines[0] + " ")
        self.assertEqual(lines[-2], f"9 :{name(START + 20, 20)}")
        uidList.sync(names + [name(START + 20, 20), name(START + 21, 21)])  # N10 -> N11: append
        self.assertIn(" N11 ", self.listText().split("\n")[0] + " ")

    def test_dropIsLazy(self) -> None:
        """
        An expunge writes nothing while at most half the records are of
        gone messages; the dropped message is out of the mapping at once.
        Past half, the list is rewritten without them.
        """
        names = [name(START + i, i) for i in range(4)]
        for n in names:
            self.deliver(n)
        uidList = self.uidList()
        uidList.sync(scanFolder(self.folder))
        before = self.listText()
        for n in names[:2]:
            self.remove(n)
        _, uids = uidList.sync(scanFolder(self.folder))
        self.assertEqual(uids, {names[2]: 3, names[3]: 4})
        self.assertEqual(self.listText(), before)
        self.assertEqual(uidList.mapping()[1], uids)
        self.remove(names[2])
        _, uids = uidList.sync(scanFolder(self.folder))
        self.assertEqual(uids, {names[3]: 4})
        self.assertEqual(self.listText().split("\n")[1:], [f"4 :{names[3]}", ""])
        self.assertIn(" N5 ", self.listText().split("\n")[0] + " ")
        # Another object reading the file agrees.
        self.assertEqual(self.uidList().sync(scanFolder(self.folder))[1], uids)

    def test_staleRecordsConfirmedByNewReader(self) -> None:
        """
        A new object reads a record still in the file for a message another
        one dropped; its own sync confirms the message is gone and drops it,
        and new mail gets a UID above it.
        """
        names = [name(START + i, i) for i in range(3)]
        for n in names:
            self.deliver(n)
        self.uidList().sync(scanFolder(self.folder))
        self.remove(names[2])
        self.uidList().sync(scanFolder(self.folder))
        self.deliver(name(START + 9, 9))
        _, uids = self.uidList().sync(scanFolder(self.folder))
        self.assertEqual(uids, {names[0]: 1, names[1]: 2, name(START + 9, 9): 4})

    def test_returningNameAppendedAgain(self) -> None:
        """
        A name dropped (its record still in the file) that comes back is
        appended again with a new UID; readers take the later record, as
        Dovecot does.
        """
        a, b, c = name(START, 1), name(START + 1, 2), name(START + 2, 3)
        for n in (a, b, c):
            self.deliver(n)
        uidList = self.uidList()
        uidList.sync(scanFolder(self.folder))
        self.remove(a)
        uidList.sync(scanFolder(self.folder))
        self.deliver(a)
        self.assertEqual(uidList.sync(scanFolder(self.folder))[1], {b: 2, c: 3, a: 4})
        self.assertEqual(self.listText().split("\n")[1:], [f"1 :{a}", f"2 :{b}", f"3 :{c}", f"4 :{a}", ""])
        self.assertEqual(self.uidList().mapping()[1], {b: 2, c: 3, a: 4})

    def test_readsAppendedTail(self) -> None:
        """
        An object whose list another session appended to reads only what
        was appended, and sees C{N} as it is now.
        """
        names = [name(START + i, i) for i in range(3)]
        reader = self.uidList()
        reader.sync(names)
        parsed = []
        original = reader._parse
        reader._parse = lambda data: (parsed.append(len(data)), original(data))[1]
        self.uidList().sync(names + [name(START + 5, 5)])
        self.assertEqual(reader.mapping()[1][name(START + 5, 5)], 4)
        self.assertEqual(reader.nextUID, 5)
        self.assertEqual(parsed, [])
        # A rewrite (a new file) is read whole.
        self.uidList(append=False).sync(names[1:] + [name(START + 5, 5)])
        self.assertEqual(reader.mapping()[1], {names[1]: 2, names[2]: 3, name(START + 5, 5): 4})
        self.assertEqual(len(parsed), 1)

    def test_dovecotAppendedRecords(self) -> None:
        """
        Records Dovecot appended without raising C{N} in the header are
        read, C{N} taken as one above the highest UID; the next append
        sets C{N} right.
        """
        a, b, c = name(START, 1), name(START + 1, 2), name(START + 2, 3)
        with open(self.listPath(), "w") as f:
            f.write(f"3 V1275660208 N5 G3085f01b7f11094c501100008c4a11c1\n5 :{a}\n6 W9 :{b}\n")
        uidList = self.uidList()
        self.assertEqual(uidList.mapping()[1], {a: 5, b: 6})
        self.assertEqual(uidList.nextUID, 7)
        self.assertEqual(uidList.sync([a, b, c])[1], {a: 5, b: 6, c: 7})
        self.assertEqual(
            self.listText(),
            f"3 V1275660208 N8 G3085f01b7f11094c501100008c4a11c1\n5 :{a}\n6 W9 :{b}\n7 :{c}\n",
        )

    def test_partialLastLineIgnored(self) -> None:
        """
        A crash in the middle of an append leaves a partial last line:
        readers ignore it, and the next update rewrites the list whole
        without it.
        """
        a, b, c = name(START, 1), name(START + 1, 2), name(START + 2, 3)
        self.uidList().sync([a])
        with open(self.listPath(), "a") as f:
            f.write(f"2 :{b}"[:9])
        uidList = self.uidList()
        self.assertEqual(uidList.mapping()[1], {a: 1})
        self.assertEqual(uidList.nextUID, 2)
        self.assertEqual(uidList.sync([a, c])[1], {a: 1, c: 2})
        self.assertEqual(self.listText().split("\n")[1:], [f"1 :{a}", f"2 :{c}", ""])
        self.assertTrue(self.listText().startswith(f"3 V{START} N3 G"))

    def test_partialLineCompletedLater(self) -> None:
        """
        A reader that saw an append half written reads the whole record
        once it is complete.
        """
        a, b = name(START, 1), name(START + 1, 2)
        self.uidList().sync([a])
        reader = self.uidList()
        line = f"2 :{b}\n"
        with open(self.listPath(), "a") as f:
            f.write(line[:5])
        self.assertEqual(reader.mapping()[1], {a: 1})
        with open(self.listPath(), "a") as f:
            f.write(line[5:])
        self.assertEqual(reader.mapping()[1], {a: 1, b: 2})

    def test_appendFaults(self) -> None:
        """
        A failure while appending (a short write of the records or of
        C{N}, a failed fsync) cuts the file back: the old list whole, no
        lock, and the next sync gives the same UIDs as if nothing failed.
        """
        a, b = name(START, 1), name(START + 1, 2)
        for op, at in [
            ("write", 2),  # the records (write 1 is the lock's content)
            ("write", 3),  # N in the header
            ("fsync", 1),
        ]:
            with self.subTest(op=op, at=at):
                for entry in os.listdir(self.folder):
                    if entry.startswith(UIDLIST_NAME):
                        os.unlink(os.path.join(self.folder, entry))
                self.uidList().sync([a])
                before = self.listText()
                fs = ScriptedFileSystem(failOp=op, failAt=at, failErrno=errno.EIO)
                self.assertRaises(OSError, self.uidList(fs=fs).sync, [a, b])
                self.assertIsNotNone(fs.raised)
                self.assertEqual(self.listText(), before)
                self.assertEqual(sorted(os.listdir(self.folder)), ["cur", UIDLIST_NAME, "new", "tmp"])
                self.assertEqual(fs.openFds, set())
                self.assertEqual(self.uidList().sync([a, b])[1], {a: 1, b: 2})

    def test_crashMidAppend(self) -> None:
        """
        A short write that could not be cut back (the process died) leaves
        a partial last line; readers ignore it and the next writer
        replaces the list whole.
        """
        a, b, c = name(START, 1), name(START + 1, 2), name(START + 2, 3)
        self.uidList().sync([a])
        fs = ScriptedFileSystem(failOp="write", failAt=2, failErrno=errno.EIO)
        self.patch(os, "ftruncate", lambda fd, size: (_ for _ in ()).throw(OSError(errno.EIO, "died")))
        self.assertRaises(OSError, self.uidList(fs=fs).sync, [a, b])
        self.assertFalse(self.listText().endswith("\n"))
        self.assertEqual(self.uidList().mapping()[1], {a: 1})
        self.assertEqual(self.uidList().sync([a, c])[1], {a: 1, c: 2})
        self.assertTrue(self.listText().endswith(f"\n2 :{c}\n"))

    def test_closeFaultAfterAppend(self) -> None:
        """
        A failed close after the fsync is reported; the appended list is
        in place, whole, and no lock is left.
        """
        a, b = name(START, 1), name(START + 1, 2)
        self.uidList().sync([a])
        # close 1: the first read; 2: the lock; 3: the list.
        fs = ScriptedFileSystem(failOp="close", failAt=3, failErrno=errno.EIO)
        self.assertRaises(OSError, self.uidList(fs=fs).sync, [a, b])
        self.assertEqual(self.uidList().mapping()[1], {a: 1, b: 2})
        self.assertFalse(os.path.exists(self.listPath() + ".lock"))

    def test_appendKeepsMappingOnHundredThousand(self) -> None:
        """
        At 100,000 messages, 1, 10 and 1,000 new ones are appended (not
        rewritten), and a new object reads the same list.
        """
        names = [name(START + i, i) for i in range(100_000)]
        uidList = self.uidList()
        uidList.sync(names)
        inode = os.stat(self.listPath()).st_ino
        for k in (1, 10, 1000):
            fresh = [name(START + 200_000 + len(names) + i, i) for i in range(k)]
            _, uids = uidList.assign(fresh)
            self.assertEqual(sorted(uids.values()), list(range(len(names) + 1, len(names) + k + 1)))
            names += fresh
        self.assertEqual(os.stat(self.listPath()).st_ino, inode)
        self.assertEqual(self.uidList().mapping(), uidList.mapping())
        self.assertEqual(len(uidList.mapping()[1]), 101_011)
