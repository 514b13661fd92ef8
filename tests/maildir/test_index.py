"""
Tests for L{mailhub.maildir.index}: the per-folder index and its side store.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
import weakref
import zlib

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mailhub.fs import FileSystem
from mailhub.maildir import index as indexModule
from mailhub.imap.message import nestedList
from mailhub.maildir.delivery import ensureMaildir
from mailhub.maildir.index import (
    CACHE_NAME,
    INDEX_NAME,
    Changes,
    FolderIndex,
    MessageGone,
    dateFromName,
    imapFlags,
    iterUIDs,
    sizeFromName,
)
from mailhub.maildir.uidlist import UIDLIST_NAME, UIDList

HOST = "mx.example.org"
START = 1_700_000_000

MESSAGE = (
    b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
    b"From: Alice <alice@example.org>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: hello %d\r\n"
    b"Message-ID: <%d@example.org>\r\n"
    b"\r\n"
    b"body %d\r\n"
)


def message(n: int) -> bytes:
    return MESSAGE % (n, n, n)


def clockAt(seconds: float) -> Clock:
    clock = Clock()
    clock.advance(seconds)
    return clock


class RecordingFileSystem(FileSystem):
    """
    A L{FileSystem} that records the paths opened for reading.
    """

    def __init__(self) -> None:
        self.opened: list[str] = []

    def openRead(self, path: str) -> int:
        self.opened.append(path)
        return super().openRead(path)


class FolderIndexTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.folder = self.mktemp()
        ensureMaildir(FileSystem(), self.folder)
        self.clock = clockAt(START)
        self.counter = 0

    def index(self, **kwargs) -> FolderIndex:
        kwargs.setdefault("clock", self.clock)
        kwargs.setdefault("hostname", HOST)
        return FolderIndex(self.folder, **kwargs)

    def settledIndex(self, count: int) -> tuple[Clock, FolderIndex]:
        """
        C{count} new messages, and an index that refreshed with a clock well
        past the directories' changes (so their listings are settled).
        """
        for _ in range(count):
            self.deliver()
        clock = clockAt(time.time() + 100)
        index = self.index(clock=clock)
        index.refresh()
        return clock, index

    def recordListings(self) -> list[str]:
        """
        From now on, the names of the directories the index lists.
        """
        listed: list[str] = []
        realListdir = os.listdir

        def listdir(path):
            listed.append(os.path.basename(path))
            return realListdir(path)

        self.patch(indexModule.os, "listdir", listdir)
        return listed

    def deliver(self, content: bytes | None = None, sub: str = "new", info: str = "", base: str | None = None) -> str:
        self.counter += 1
        if content is None:
            content = message(self.counter)
        if base is None:
            base = f"{START + self.counter}.M{self.counter}P1Q1.{HOST},S={len(content)},W={len(content)}"
        with open(os.path.join(self.folder, sub, base + info), "wb") as f:
            f.write(content)
        return base

    def test_nameFields(self) -> None:
        """
        The RFC822.SIZE comes from C{,W=}, the internal date from the
        leading seconds.
        """
        self.assertEqual(sizeFromName("1.M1P1.h,S=10,W=12"), 12)
        self.assertEqual(sizeFromName("1.M1P1.h,S=10"), -1)
        self.assertEqual(dateFromName("1700000000.M1P1.h"), 1700000000)
        self.assertIsNone(dateFromName("msg-one"))

    def test_imapFlags(self) -> None:
        """
        The IMAP flags of a name are the same when remembered per info
        part; keyword letters are looked up every time (the keyword file
        may change).
        """
        asked: list[str] = []

        def keywordFor(letter: str) -> str | None:
            asked.append(letter)
            return {"a": "$Junk"}.get(letter)

        for _ in range(2):
            self.assertEqual(imapFlags("1.M1P1.h:2,FRS", keywordFor), ["\\Flagged", "\\Answered", "\\Seen"])
            self.assertEqual(imapFlags("2.M1P1.h:2,", keywordFor), [])
            self.assertEqual(imapFlags("3.M1P1.h", keywordFor), [])
            self.assertEqual(imapFlags("4.M1P1.h:2,Sab", keywordFor), ["\\Seen", "$Junk"])
        self.assertEqual(asked, ["a", "b", "a", "b"])
        flags = imapFlags("1.M1P1.h:2,FRS", keywordFor)
        flags.append("\\Recent")  # the caller's own list
        self.assertEqual(imapFlags("1.M1P1.h:2,FRS", keywordFor), ["\\Flagged", "\\Answered", "\\Seen"])

    def test_headerEnd(self) -> None:
        """
        L{indexModule._headerEnd}: where the blank line after the header
        ends, CRLF or bare LF, whichever comes first.
        """
        table = [
            (b"", -1),
            (b"\n", 1),
            (b"\r\n", 2),
            (b"a: b\r\n", -1),
            (b"a: b\r\n\r\nbody\n\n", 8),
            (b"a: b\n\nbody\r\n\r\n", 6),
            (b"a: b\r\nc: d\n\nx\r\n\r\n", 12),
            (b"a\n\r\n", 4),
        ]
        for data, end in table:
            self.assertEqual(indexModule._headerEnd(data), end, data)

    def test_empty(self) -> None:
        index = self.index()
        self.assertEqual(index.refresh(), Changes())
        self.assertEqual(list(index.uids()), [])
        self.assertIsNotNone(index.uidValidity)

    def test_deliveriesPickedUp(self) -> None:
        """
        Messages delivered into C{new/} get UIDs in delivery order; a
        second refresh reports only what is new.
        """
        bases = [self.deliver() for _ in range(3)]
        index = self.index()
        changes = index.refresh()
        self.assertEqual(changes.added, (1, 2, 3))
        self.assertEqual([e.base for e in index.messages()], bases)
        self.assertEqual(index.entry(2).size, len(message(2)))
        self.assertEqual(index.entry(2).date, START + 2)
        self.deliver()
        self.assertEqual(index.refresh(), Changes(added=(4,)))
        self.assertEqual(index.refresh(), Changes())

    def test_foreignFiles(self) -> None:
        """
        Files another tool dropped into C{new/}, with bare LF line ends and
        no size or time in the name, get a size counted with CRLF (read on
        demand) and the file's mtime as internal date.
        """
        content = b"Subject: x\n\nline one\nline two\n"
        self.deliver(content, base="msg-from-procmail")
        os.utime(os.path.join(self.folder, "new", "msg-from-procmail"), (START - 50, START - 50))
        index = self.index()
        self.assertEqual(index.refresh().added, (1,))
        self.assertEqual(index.entry(1).size, -1)
        self.assertEqual(index.size(1), len(content) + 4)
        self.assertEqual(index.entry(1).date, START - 50)
        self.assertEqual(index.read(1), content.replace(b"\n", b"\r\n"))

    def test_persistence(self) -> None:
        """
        A saved index is loaded by a new instance and gives the same
        messages; sizes learned by reading are kept.
        """
        for _ in range(3):
            self.deliver()
        self.deliver(b"a\nb\n", base="foreign")
        first = self.index()
        first.refresh()
        first.size(4)
        first.save()
        self.assertTrue(os.path.exists(os.path.join(self.folder, INDEX_NAME)))
        second = self.index()
        self.assertEqual(second.refresh(), Changes())
        self.assertEqual(
            [(e.uid, e.name, e.size, e.date) for e in second.messages()],
            [(e.uid, e.name, e.size, e.date) for e in first.messages()],
        )
        self.assertEqual(second.entry(4).size, 6)

    def test_indexFileLoadsWithoutUIDListOrSideStore(self) -> None:
        """
        A saved index is loaded column by column: names that need
        encoding, unknown sizes, both directories and the side store's
        places survive; when the UID list and the side store are as the
        index left them, a new instance's load reads neither (UIDNEXT comes
        from the index file), reading the columns reads the UID list ahead
        of the first new message, and cached records are found without a
        scan of the side store.
        """
        self.deliver(base="odd\tname%with\nstuff")
        seen = self.deliver(sub="cur", info=":2,S")
        plain = self.deliver()
        first = self.index()
        first.refresh()
        first.claimNew()
        self.deliver()  # stays in new/
        first.refresh()
        seenUID, plainUID = first._byBase[seen], first._byBase[plain]
        first.cachedEnvelope(seenUID)
        first.cachedHeaders(plainUID)
        first.save()
        fs = RecordingFileSystem()
        second = self.index(fs=fs)
        self.assertEqual(list(second.uids()), [1, 2, 3, 4])
        self.assertEqual(second.nextUID, 5)
        self.assertEqual(second.refresh(), Changes())
        self.assertEqual(
            [(e.uid, e.base, e.sub, e.name, e.size, e.date) for e in second.messages()],
            [(e.uid, e.base, e.sub, e.name, e.size, e.date) for e in first.messages()],
        )
        self.assertEqual(second.newUIDs(), [4])
        self.assertEqual(second.flags(seenUID), ["\\Seen"])
        self.assertIn("odd\tname%with\nstuff", second._byBase)
        # The index, the mod-sequence CEILING that says whether its
        # mod-sequences can be trusted (a few octets), and the UID list,
        # read with the columns.
        self.assertEqual([os.path.basename(p) for p in fs.opened], [INDEX_NAME, "mailhub-modseq", UIDLIST_NAME])
        self.assertEqual(
            [e.modseq for e in second.messages()], [e.modseq for e in first.messages()]
        )
        self.assertEqual(second.highestModseq, first.highestModseq)
        self.assertEqual(second.cachedEnvelope(seenUID), first.cachedEnvelope(seenUID))
        self.assertEqual(second.cachedHeaders(plainUID), first.cachedHeaders(plainUID))
        self.assertEqual(
            [os.path.basename(p) for p in fs.opened], [INDEX_NAME, "mailhub-modseq", UIDLIST_NAME, CACHE_NAME]
        )
        # The next delivery gets the next UID (the UID list is read now).
        self.deliver()
        self.assertEqual(second.refresh(), Changes(added=(5,)))
        self.assertEqual(second.nextUID, 6)

    def test_indexFileUIDListChangedSince(self) -> None:
        """
        When the UID list changed after the index was saved, the index is
        loaded all the same (same UIDVALIDITY) and the first refresh syncs
        with the list; a new UIDVALIDITY means a rebuild.
        """
        for _ in range(3):
            self.deliver()
        first = self.index()
        first.refresh()
        first.save()
        # Another process gives a UID to a new message.
        other = self.index()
        other.refresh()
        self.deliver()
        other.refresh()
        second = self.index()
        self.assertEqual(second.refresh(), Changes(added=(4,)))
        self.assertEqual(second.nextUID, 5)
        os.unlink(os.path.join(self.folder, UIDLIST_NAME))
        self.clock.advance(10)
        third = self.index()
        third.refresh()
        self.assertNotEqual(third.uidValidity, first.uidValidity)
        self.assertEqual(list(third.uids()), [1, 2, 3, 4])

    def test_indexFileCorrupt(self) -> None:
        """
        An index file that is cut short, has a flipped octet in its UIDs or
        its columns, a count or columns of different lengths, a bad
        directory letter or UIDs out of order is rebuilt; the UIDs stay
        what the UID list says.  The UIDs are checked as the file is
        loaded, the columns when first needed.
        """
        for _ in range(3):
            self.deliver()
        first = self.index()
        first.refresh()
        first.expunge([2])
        first.save()
        expected = [(e.uid, e.base, e.sub) for e in first.messages()]
        path = os.path.join(self.folder, INDEX_NAME)
        with open(path, "rb") as f:
            good = f.read()
        header, rest = good.split(b"\n", 1)
        fields = header.split(b" ")
        self.assertEqual(fields[5], b"2")
        block, body = rest[:8], rest[8:]
        self.assertEqual(block, b"\x01\x00\x00\x00\x03\x00\x00\x00")

        def assemble(newBlock: bytes = block, newBody: bytes = body, count: int = 2) -> bytes:
            changed = list(fields)
            changed[5] = b"%d" % count
            changed[-2] = b"%d" % zlib.crc32(newBlock)
            changed[-1] = b"%d" % zlib.crc32(newBody)
            return b" ".join(changed) + b"\n" + newBlock + newBody

        columns = body.split(b"\n")
        self.assertEqual(assemble(), good)
        flipped = bytearray(good)
        flipped[-5] ^= 0x20
        flippedUID = bytearray(good)
        flippedUID[len(header) + 1] ^= 0x04
        variants = [
            good[:-7],
            good[: len(header) + 5],
            bytes(flipped),
            bytes(flippedUID),
            assemble(count=3),
            assemble(block + b"\x07\x00\x00\x00", count=3),
            assemble(newBody=b"\n".join([columns[0] + b"7"] + columns[1:])),
            assemble(newBody=b"\n".join(columns[:2] + [b"cx"] + columns[3:])),
            assemble(b"\x03\x00\x00\x00\x01\x00\x00\x00"),
            assemble(b"\x00\x00\x00\x00\x03\x00\x00\x00"),
            assemble(newBody=b"\n".join(columns[:-2])),
            header + b"\n",
        ]
        for data in variants:
            with open(path, "wb") as f:
                f.write(data)
            index = self.index()
            index.refresh()
            self.assertEqual([(e.uid, e.base, e.sub) for e in index.messages()], expected, data)
            self.assertEqual(list(index.uids()), [1, 3], data)
            self.assertEqual(index.uidValidity, first.uidValidity)
        with open(path, "wb") as f:
            f.write(good)
        self.assertEqual([(e.uid, e.base, e.sub) for e in self.index().messages()], expected)

    def test_closeSavesSideStorePlaces(self) -> None:
        """
        Closing an index that learnt of enough side store records since its
        last save saves it, though nothing else changed, so that the next
        instance knows where they are; below the threshold it does not.
        """
        for _ in range(3):
            self.deliver()
        first = self.index()
        first.refresh()
        first.save()
        saved = os.stat(os.path.join(self.folder, INDEX_NAME)).st_mtime_ns
        first.cachedHeaders(1)
        self.patch(indexModule, "SAVE_CACHE_GROWTH", 10_000)
        first.close()
        self.assertEqual(os.stat(os.path.join(self.folder, INDEX_NAME)).st_mtime_ns, saved)
        self.patch(indexModule, "SAVE_CACHE_GROWTH", 100)
        first.cachedHeaders(2)
        first.close()
        second = self.index()
        second.uids()  # loads the index file
        self.assertEqual(second._cacheEnd, os.path.getsize(os.path.join(self.folder, CACHE_NAME)))
        self.assertEqual(sorted(second._cacheOffsets["h"]), sorted(e.base for e in second.messages()[:2]))

    def test_indexFileSideStoreReplaced(self) -> None:
        """
        The side store places in the index file are used only for the same
        side store (inode), at least as long as it was: another one is
        read from its start.
        """
        for _ in range(2):
            self.deliver()
        first = self.index()
        first.refresh()
        first.cachedHeaders(1)
        first.save()
        cache = os.path.join(self.folder, CACHE_NAME)
        os.unlink(cache)
        other = self.index()
        other.refresh()
        other.cachedHeaders(2)  # a new side store, with another record
        second = self.index()
        second.refresh()
        self.assertEqual(second.cachedHeaders(2)["subject"], [b"hello 2"])
        self.assertEqual(second.cachedHeaders(1)["subject"], [b"hello 1"])

    def test_rebuildAfterDeletion(self) -> None:
        """
        Without its index file the index is rebuilt, and the UIDs stay (the
        UID list keeps them); so with a corrupt one.
        """
        for _ in range(3):
            self.deliver()
        first = self.index()
        first.refresh()
        first.expunge([2])
        first.save()
        expected = [(e.uid, e.base) for e in first.messages()]
        self.assertEqual([u for u, _ in expected], [1, 3])
        os.unlink(os.path.join(self.folder, INDEX_NAME))
        second = self.index()
        second.refresh()
        self.assertEqual([(e.uid, e.base) for e in second.messages()], expected)
        self.assertEqual(second.uidValidity, first.uidValidity)
        for garbage in (b"garbage\n", b"MHIX 1 1 0 0\n", b"", b"MHIX 1 %d 0 0\n1\t2" % (first.uidValidity,)):
            with open(os.path.join(self.folder, INDEX_NAME), "wb") as f:
                f.write(garbage)
            third = self.index()
            third.refresh()
            self.assertEqual([(e.uid, e.base) for e in third.messages()], expected)

    def test_uidListLost(self) -> None:
        """
        If the UID list is lost, UIDVALIDITY changes and the refresh says
        so (a reset); the old index is not trusted.
        """
        self.deliver()
        index = self.index()
        index.refresh()
        index.save()
        validity = index.uidValidity
        os.unlink(os.path.join(self.folder, UIDLIST_NAME))
        self.clock.advance(10)
        changes = index.refresh()
        self.assertTrue(changes.reset)
        self.assertNotEqual(index.uidValidity, validity)
        self.assertEqual(list(index.uids()), [1])
        fresh = self.index()
        fresh.refresh()
        self.assertEqual(fresh.uidValidity, index.uidValidity)

    def test_externalRenameIsFlagChange(self) -> None:
        """
        Another client renaming a file in C{cur/} (flags), and POP3 moving
        one from C{new/} to C{cur/} with C{:2,S}, are flag changes.
        """
        inCur = self.deliver(sub="cur", info=":2,")
        inNew = self.deliver()
        index = self.index()
        index.refresh()
        os.rename(os.path.join(self.folder, "cur", inCur + ":2,"), os.path.join(self.folder, "cur", inCur + ":2,FS"))
        os.rename(os.path.join(self.folder, "new", inNew), os.path.join(self.folder, "cur", inNew + ":2,S"))
        changes = index.refresh()
        self.assertEqual(changes, Changes(flagsChanged=(1, 2)))
        self.assertEqual(index.flags(1), ["\\Flagged", "\\Seen"])
        self.assertEqual(index.flags(2), ["\\Seen"])
        self.assertEqual(index.newUIDs(), [])

    def test_severalChangesAtOnce(self) -> None:
        """
        One refresh sorts out, from listings compared with what the index
        holds: a delivery, a flag change in C{cur/}, a move from C{new/} to
        C{cur/} with a flag, a removal from each directory; dot files are
        no messages.
        """
        bases = [self.deliver(sub="cur", info=":2,") for _ in range(3)] + [self.deliver() for _ in range(3)]
        index = self.index()
        self.assertEqual(index.refresh().added, (1, 2, 3, 4, 5, 6))
        cur, new = os.path.join(self.folder, "cur"), os.path.join(self.folder, "new")
        os.rename(os.path.join(cur, bases[0] + ":2,"), os.path.join(cur, bases[0] + ":2,F"))
        os.unlink(os.path.join(cur, bases[1] + ":2,"))
        os.rename(os.path.join(new, bases[3]), os.path.join(cur, bases[3] + ":2,S"))
        os.unlink(os.path.join(new, bases[4]))
        late = self.deliver()
        for sub in ("new", "cur"):
            with open(os.path.join(self.folder, sub, ".hidden"), "wb") as f:
                f.write(b"not a message")
        self.assertEqual(index.refresh(), Changes(added=(7,), removed=(2, 5), flagsChanged=(1, 4)))
        self.assertEqual([(e.uid, e.sub, e.name) for e in index.messages()], [
            (1, "cur", bases[0] + ":2,F"),
            (3, "cur", bases[2] + ":2,"),
            (4, "cur", bases[3] + ":2,S"),
            (6, "new", bases[5]),
            (7, "new", late),
        ])
        self.assertEqual(index.newUIDs(), [6, 7])
        self.assertEqual(index.refresh(), Changes())

    def test_moveWithoutFlagChange(self) -> None:
        """
        A move from C{new/} to C{cur/} that sets no flag is not a change.
        """
        base = self.deliver()
        index = self.index()
        index.refresh()
        os.rename(os.path.join(self.folder, "new", base), os.path.join(self.folder, "cur", base + ":2,"))
        self.assertEqual(index.refresh(), Changes())
        self.assertEqual(index.entry(1).sub, "cur")

    def test_externalRemoval(self) -> None:
        base = self.deliver()
        self.deliver()
        index = self.index()
        index.refresh()
        os.unlink(os.path.join(self.folder, "new", base))
        self.assertEqual(index.refresh(), Changes(removed=(1,)))
        self.assertRaises(MessageGone, index.entry, 1)

    def spyUIDList(self, index: FolderIndex, before=None) -> tuple[list, list]:
        """
        Record the calls of C{index}'s UID list's C{assign} and C{sync}
        (C{before}, if given, runs before each C{assign}).
        """
        uidList = index._uidList
        assigned: list = []
        synced: list = []
        realAssign, realSync = uidList.assign, uidList.sync

        def assign(fresh, gone=()):
            fresh, gone = list(fresh), list(gone)
            assigned.append((sorted(fresh), sorted(gone)))
            if before is not None:
                before()
            return realAssign(fresh, gone)

        def sync(names):
            names = list(names)
            synced.append(sorted(names))
            return realSync(names)

        self.patch(uidList, "assign", assign)
        self.patch(uidList, "sync", sync)
        return assigned, synced

    def test_refreshAssignsOnlyWhatChanged(self) -> None:
        """
        Once the index is in step with the UID list, a refresh after N new
        deliveries hands the UID list exactly those N names
        (L{UIDList.assign}) without the whole folder (L{UIDList.sync});
        a removal takes the full sync, whose fresh scan confirms the name
        is gone (a listing racing a rename must not cost a UID).
        """
        for _ in range(5):
            self.deliver(sub="cur", info=":2,S")
        index = self.index()
        index.refresh()
        assigned, synced = self.spyUIDList(index)
        bases = [self.deliver() for _ in range(4)]
        self.assertEqual(index.refresh(), Changes(added=(6, 7, 8, 9)))
        self.assertEqual(assigned, [(sorted(bases), [])])
        self.assertEqual(synced, [])
        self.assertEqual(index.refresh(), Changes())
        self.assertEqual(len(assigned), 1)
        os.unlink(os.path.join(self.folder, "new", bases[1]))
        self.assertEqual(index.refresh(), Changes(removed=(7,)))
        self.assertEqual(assigned[1:], [])
        self.assertEqual(len(synced), 1)
        # The UID list agrees with the index (a dropped record stays in the
        # file until the stale ones are too many, so another reader may
        # still list it).
        self.assertEqual(index._uidList.mapping(), (index.uidValidity, {e.base: e.uid for e in index.messages()}))
        validity, mapping = UIDList(self.folder, clock=self.clock, hostname=HOST).mapping()
        self.assertEqual(validity, index.uidValidity)
        self.assertEqual({base: mapping[base] for base in index._byBase}, {e.base: e.uid for e in index.messages()})

    def test_foreignUIDListChangeSyncsFully(self) -> None:
        """
        When another process changed the UID list (here: dropped a name
        and listed it again, so it has a new UID), the next refresh gives
        the UID list the whole folder (L{UIDList.sync}) and reports the
        message as removed and added again.
        """
        first = self.deliver()
        self.deliver()
        index = self.index()
        index.refresh()
        assigned, synced = self.spyUIDList(index)
        other = UIDList(self.folder, clock=self.clock, hostname=HOST)
        other.assign([], [first])
        other.assign([first])
        self.assertEqual(index.refresh(), Changes(added=(3,), removed=(1,)))
        self.assertEqual(assigned, [])
        self.assertEqual(len(synced), 1)
        self.assertEqual(list(index.uids()), [2, 3])
        self.assertEqual(index.entry(3).base, first)
        # In step again: the next delivery is an assign.
        base = self.deliver()
        self.assertEqual(index.refresh(), Changes(added=(4,)))
        self.assertEqual(assigned, [([base], [])])
        self.assertEqual(len(synced), 1)

    def test_foreignUIDListChangeDuringAssign(self) -> None:
        """
        When another process hands out UIDs between the index's look at
        the UID list and its L{UIDList.assign}, the index does not trust
        the assign and syncs the whole folder.
        """
        first = self.deliver()
        index = self.index()
        index.refresh()
        other = UIDList(self.folder, clock=self.clock, hostname=HOST)

        def meddle() -> None:
            if other.mapping()[1].get(first) == 1:
                other.assign([], [first])
                other.assign([first])

        assigned, synced = self.spyUIDList(index, meddle)
        base = self.deliver()
        changes = index.refresh()
        self.assertEqual(len(assigned), 1)
        self.assertEqual(len(synced), 1)
        self.assertEqual(changes.removed, (1,))
        self.assertEqual(sorted(changes.added), [2, 3])
        self.assertEqual({index.entry(uid).base for uid in changes.added}, {first, base})

    def test_setFlags(self) -> None:
        """
        Setting flags renames the file into C{cur/} with the Maildir
        letters and keyword letters; the keyword file learns the keyword.
        """
        base = self.deliver()
        index = self.index()
        index.refresh()
        flags = index.setFlags(1, ["\\Seen", "\\flagged", "\\Recent"], ["$Forwarded"])
        self.assertEqual(flags, ["\\Flagged", "\\Seen", "$Forwarded"])
        self.assertEqual(os.listdir(os.path.join(self.folder, "cur")), [base + ":2,FSa"])
        self.assertEqual(os.listdir(os.path.join(self.folder, "new")), [])
        self.assertEqual(index.keywords.keywords(), {"$Forwarded": "a"})
        self.assertEqual(index.changeFlags(1, remove=["\\Flagged", "$Forwarded"], add=["\\Answered"]), ["\\Answered", "\\Seen"])
        self.assertEqual(os.listdir(os.path.join(self.folder, "cur")), [base + ":2,RS"])
        # Another instance sees it as a flag change.
        other = self.index()
        other.refresh()
        self.assertEqual(other.flags(1), ["\\Answered", "\\Seen"])

    def test_setFlagsKeepsUnknownLetters(self) -> None:
        """
        Maildir flags with no IMAP meaning (C{P}, passed) survive STORE.
        """
        base = self.deliver(sub="cur", info=":2,PS")
        index = self.index()
        index.refresh()
        index.setFlags(1, ["\\Draft"], [])
        self.assertEqual(os.listdir(os.path.join(self.folder, "cur")), [base + ":2,DP"])

    def test_setFlagsAfterConcurrentRename(self) -> None:
        """
        A file renamed by another session meanwhile is found again, and a
        flag that session set is kept by an added flag.
        """
        base = self.deliver()
        index = self.index()
        index.refresh()
        os.rename(os.path.join(self.folder, "new", base), os.path.join(self.folder, "cur", base + ":2,S"))
        self.assertEqual(index.changeFlags(1, add=["\\Flagged"]), ["\\Flagged", "\\Seen"])
        self.assertEqual(os.listdir(os.path.join(self.folder, "cur")), [base + ":2,FS"])

    def test_setFlagsOnRemovedMessage(self) -> None:
        base = self.deliver()
        index = self.index()
        index.refresh()
        os.unlink(os.path.join(self.folder, "new", base))
        self.assertRaises(MessageGone, index.setFlags, 1, ["\\Seen"], [])
        self.assertRaises(MessageGone, index.read, 1)

    def test_readFollowsRename(self) -> None:
        base = self.deliver()
        index = self.index()
        index.refresh()
        os.rename(os.path.join(self.folder, "new", base), os.path.join(self.folder, "cur", base + ":2,S"))
        self.assertEqual(index.read(1), message(1))
        self.assertEqual(index.entry(1).sub, "cur")

    def test_append(self) -> None:
        """
        APPEND writes the message into C{cur/} with its flags, CRLF line
        ends, the internal date in the name and as mtime.
        """
        index = self.index()
        index.refresh()
        uid = index.append(b"Subject: hi\n\nthere\n", ["\\Seen"], 1_600_000_000.0, ["$Junk"])
        self.assertEqual(uid, 1)
        self.assertEqual(os.listdir(os.path.join(self.folder, "tmp")), [])
        [name] = os.listdir(os.path.join(self.folder, "cur"))
        self.assertTrue(name.startswith("1600000000."), name)
        self.assertTrue(name.endswith(":2,Sa"), name)
        path = os.path.join(self.folder, "cur", name)
        self.assertEqual(os.stat(path).st_mtime, 1_600_000_000)
        self.assertEqual(index.read(uid), b"Subject: hi\r\n\r\nthere\r\n")
        self.assertEqual(index.entry(uid).date, 1_600_000_000)
        self.assertEqual(index.size(uid), 22)
        self.assertEqual(index.flags(uid), ["\\Seen", "$Junk"])
        self.assertEqual(index.refresh(), Changes(added=(1,)))
        self.assertEqual(index.append(message(2)), 2)

    def test_copy(self) -> None:
        """
        Copies are hard links with the flags and internal date of the
        original and new UIDs in the target.
        """
        target = self.mktemp()
        ensureMaildir(FileSystem(), target)
        self.deliver(sub="cur", info=":2,S")
        self.deliver()
        source = self.index()
        source.refresh()
        source.setFlags(2, ["\\Flagged"], ["project"])
        destination = FolderIndex(target, clock=self.clock, hostname=HOST)
        destination.append(message(9))
        # New UIDs follow the internal dates; the answer pairs them up.
        self.assertEqual(source.copy([2, 1], destination), [3, 2])
        self.assertEqual(destination.flags(3), ["\\Flagged", "project"])
        self.assertEqual(destination.flags(2), ["\\Seen"])
        self.assertEqual(destination.read(2), message(1))
        self.assertEqual(destination.entry(2).date, source.entry(1).date)
        self.assertEqual(os.stat(destination.path(2)).st_ino, os.stat(source.path(1)).st_ino)
        self.assertEqual(destination.size(3), len(message(2)))

    def test_expunge(self) -> None:
        for _ in range(3):
            self.deliver()
        index = self.index()
        index.refresh()
        self.assertEqual(index.expunge([1, 3, 99]), [1, 3])
        self.assertEqual(list(index.uids()), [2])
        self.assertEqual(len(os.listdir(os.path.join(self.folder, "new"))), 1)
        self.assertEqual(index.refresh(), Changes(removed=(1, 3)))
        # Another instance sees them gone; UIDs are not reused.
        self.deliver()
        other = self.index()
        other.refresh()
        self.assertEqual(list(other.uids()), [2, 4])

    def test_changesSince(self) -> None:
        """
        Sessions sharing an index ask for the changes since the generation
        they last saw; their own flag changes are left out.
        """
        self.deliver()
        index = self.index()
        index.refresh()
        session = object()
        start = index.generation
        index.changeFlags(1, add=["\\Seen"], owner=session)
        self.deliver()
        index.refresh()
        self.assertEqual(index.changesSince(start, owner=session), Changes(added=(2,)))
        self.assertEqual(index.changesSince(start), Changes(added=(2,), flagsChanged=(1,)))
        self.assertEqual(index.changesSince(index.generation), Changes())

    def test_claimNew(self) -> None:
        """
        L{FolderIndex.claimNew} moves C{new/} messages into C{cur/} and
        answers those it moved itself.
        """
        first, second = self.deliver(), self.deliver()
        index = self.index()
        index.refresh()
        os.rename(os.path.join(self.folder, "new", first), os.path.join(self.folder, "cur", first + ":2,S"))
        self.assertEqual(index.claimNew(), [2])
        self.assertEqual(sorted(os.listdir(os.path.join(self.folder, "cur"))), sorted([first + ":2,S", second + ":2,"]))

    def test_cachedEnvelope(self) -> None:
        """
        ENVELOPE, BODYSTRUCTURE and header fields are computed once and
        then read from the side store, also by another instance.
        """
        base = self.deliver()
        index = self.index()
        index.refresh()
        envelope = index.cachedEnvelope(1)
        self.assertEqual(envelope[1], b"hello 1")
        self.assertEqual(envelope[2], [[b"Alice", None, b"alice", b"example.org"]])
        structure = index.cachedBodyStructure(1)
        self.assertEqual(structure[:2], [b"TEXT", b"PLAIN"])
        self.assertEqual(index.cachedHeaders(1)["subject"], [b"hello 1"])
        self.assertTrue(os.path.exists(os.path.join(self.folder, CACHE_NAME)))
        # Change the file behind the cache's back: the cache answers.
        with open(os.path.join(self.folder, "new", base), "wb") as f:
            f.write(b"Subject: changed\r\n\r\n")
        fs = RecordingFileSystem()
        other = self.index(fs=fs)
        other.refresh()
        self.assertEqual(other.cachedEnvelope(1), envelope)
        self.assertEqual(other.cachedBodyStructure(1), structure)
        self.assertEqual(other.cachedHeaders(1)["subject"], [b"hello 1"])
        self.assertEqual([p for p in fs.opened if "/new/" in p or "/cur/" in p], [])

    def test_cachedEnvelopeText(self) -> None:
        """
        The ENVELOPE as IMAP text is what L{nestedList} makes of
        L{FolderIndex.cachedEnvelope}; it is kept in the side store, made
        from an C{e} record when there is one (no message read), and read
        back by another instance without the message.
        """
        base = self.deliver(message(1).replace(b"hello 1", b'say "hi"'))
        self.deliver()
        index = self.index()
        index.refresh()
        expected = nestedList(index.cachedEnvelope(1))
        self.assertIn(b'"say \\"hi\\""', expected)
        fs = RecordingFileSystem()
        other = self.index(fs=fs)
        other.refresh()
        self.assertEqual(other.cachedEnvelopeText(1), expected)  # from the e record
        self.assertEqual(other.cachedEnvelopeText(2), nestedList(other.cachedEnvelope(2)))
        self.assertEqual([p for p in fs.opened if base in p], [])
        with open(os.path.join(self.folder, "new", base), "wb") as f:
            f.write(b"Subject: changed\r\n\r\n")
        third = self.index(fs=fs)
        third.refresh()
        self.assertEqual(third.cachedEnvelopeText(1), expected)
        self.assertEqual([p for p in fs.opened if base in p], [])

    def test_searchHeadersFromMemory(self) -> None:
        """
        L{FolderIndex.searchHeaders} loads the side store's SEARCH fields
        once; its lookups parse no JSON and read no file, a message lacking
        a field answers C{[]}, one without a record (or a field not kept in
        memory) answers C{None}; records appended later, by this index or
        another, are picked up by the next call.
        """
        for _ in range(3):
            self.deliver()
        self.deliver(b"Subject: a\r\nSubject: =?utf-8?q?b?=\r\n\r\nx\r\n")
        index = self.index()
        index.refresh()
        for uid in (1, 2, 4):
            index.cachedHeaders(uid)
        lookup = index.searchHeaders()
        calls = []
        realLoads, realPread = json.loads, os.pread
        self.patch(indexModule.json, "loads", lambda *a, **k: (calls.append("loads"), realLoads(*a, **k))[1])
        self.patch(indexModule.os, "pread", lambda *a: (calls.append("pread"), realPread(*a))[1])
        self.assertEqual(lookup(1, "subject"), [b"hello 1"])
        self.assertEqual(lookup(2, "from"), [b"Alice <alice@example.org>"])
        self.assertEqual(lookup(2, "cc"), [])
        self.assertEqual(lookup(4, "subject"), [b"a", b"=?utf-8?q?b?="])
        self.assertIsNone(lookup(3, "subject"))
        self.assertIsNone(lookup(1, "references"))
        self.assertIsNone(lookup(99, "subject"))
        # cachedHeader answers from memory too, once loaded.
        self.assertEqual(index.cachedHeader(2, "message-id"), [b"<2@example.org>"])
        self.assertEqual(calls, [])
        other = self.index()
        other.refresh()
        other.cachedHeaders(3)
        self.assertEqual(index.searchHeaders()(3, "subject"), [b"hello 3"])

    def test_ownRecordsNotReadBack(self) -> None:
        """
        A record this index stores goes into its memory at once (the
        columns too, once loaded): neither it nor its JSON is read back,
        while a record another instance appended meanwhile still is.
        """
        for _ in range(4):
            self.deliver()
        index = self.index()
        index.refresh()
        index.searchHeaders()  # the columns are loaded (empty)
        other = self.index()
        other.refresh()
        other.cachedHeaders(3)  # another process's record
        calls = []
        realLoads, realPread = json.loads, os.pread
        self.patch(indexModule.json, "loads", lambda *a, **k: (calls.append("loads"), realLoads(*a, **k))[1])
        self.patch(indexModule.os, "pread", lambda *a: (calls.append(("pread", a[1])), realPread(*a))[1])
        self.assertEqual(index.cachedHeader(1, "subject"), [b"hello 1"])
        self.assertEqual(index.cachedHeader(2, "subject"), [b"hello 2"])
        index.cachedEnvelope(1)
        # The only side store read: the other instance's record, at the
        # first miss (reading the message's header uses os.read).
        self.assertEqual([c for c in calls if c == "loads"], [])
        self.assertEqual(len([c for c in calls if c != "loads"]), 1)
        del calls[:]
        lookup = index.searchHeaders()
        self.assertEqual([lookup(uid, "subject") for uid in (1, 2, 3, 4)], [[b"hello 1"], [b"hello 2"], [b"hello 3"], None])
        self.assertEqual(calls.count("loads"), 1)  # the other's record, once
        del calls[:]
        self.assertEqual(index.cachedEnvelope(1)[1], b"hello 1")
        self.assertEqual(calls.count("loads"), 1)  # from the side store now

    def test_searchHeadersSideStoreReplaced(self) -> None:
        """
        A side store that was replaced (shorter) is read again from the
        start.
        """
        self.deliver()
        index = self.index()
        index.refresh()
        index.cachedHeaders(1)
        self.assertEqual(index.searchHeaders()(1, "subject"), [b"hello 1"])
        with open(os.path.join(self.folder, CACHE_NAME), "r+b") as f:
            f.truncate(0)
        self.assertIsNone(index.searchHeaders()(1, "subject"))
        self.assertEqual(index.cachedHeader(1, "subject"), [b"hello 1"])
        self.assertEqual(index.searchHeaders()(1, "subject"), [b"hello 1"])

    def test_unchangedDirectoriesNotListed(self) -> None:
        """
        A refresh lists a directory only if its mtime changed since a
        listing made after it had settled.
        """
        clock, index = self.settledIndex(3)
        listed = self.recordListings()
        self.assertEqual(index.refresh(), Changes())
        self.assertEqual(listed, [])
        os.utime(os.path.join(self.folder, "new"), ns=(time.time_ns(), time.time_ns() - 10**10))
        self.deliver()
        self.assertEqual(index.refresh().added, (4,))
        self.assertEqual(listed, ["new"])

    def test_settledDirectoriesSaved(self) -> None:
        """
        Directories that settled after the index was saved are saved at
        close, so that the next instance does not list them.
        """
        for _ in range(2):
            self.deliver()
        clock = clockAt(time.time() - 100)  # the directories are "new"
        index = self.index(clock=clock)
        index.refresh()
        clock.advance(200)
        index.refresh()
        index.close()
        listed = self.recordListings()
        second = self.index(clock=clock)
        self.assertEqual(second.refresh(), Changes())
        self.assertEqual(list(second.uids()), [1, 2])
        self.assertEqual(listed, [])

    def settledIndexFile(self) -> tuple[str, bytes, list]:
        """
        Three messages (one in C{new/}, one with C{\\Seen}) and a saved
        index whose directories had settled: a new instance has nothing to
        list.

        @return: the index file's path, its content, and the entries.
        """
        for _ in range(2):
            self.deliver()
        self.deliver(sub="cur", info=":2,S")
        clock = clockAt(time.time() + 100)
        index = self.index(clock=clock)
        index.refresh()
        self.envelope = index.cachedEnvelope(1)
        index.save()
        self.clock = clock
        path = os.path.join(self.folder, INDEX_NAME)
        with open(path, "rb") as f:
            content = f.read()
        return path, content, [(e.uid, e.base, e.sub, e.name, e.size, e.modseq) for e in index.messages()]

    def test_loadReadsHeaderAndUIDsFirst(self) -> None:
        """
        A new instance over a settled, saved index answers what SELECT asks
        (UIDs, UIDNEXT, HIGHESTMODSEQ, no \\Recent to take) from the header
        and the UIDs alone; the other columns are read once, when an entry
        is first needed (or by L{FolderIndex.materialise}), from the file
        as it was at the load, whatever replaced it since.
        """
        path, content, expected = self.settledIndexFile()
        envelope = self.envelope
        fs = RecordingFileSystem()
        second = self.index(fs=fs)
        self.assertEqual(second.refresh(), Changes())
        self.assertEqual([os.path.basename(p) for p in fs.opened], [INDEX_NAME, "mailhub-modseq"])
        self.assertEqual(list(second.uids()), [1, 2, 3])
        self.assertEqual(second.nextUID, 4)
        self.assertEqual(second.highestModseq, max(m for *_, m in expected))
        self.assertIsNotNone(second._pending)
        self.assertNotIn("_entries", second.__dict__)
        # The file is replaced (another save) before the columns are read.
        os.unlink(path)
        with open(path, "wb") as f:
            f.write(b"garbage")
        self.assertEqual([(e.uid, e.base, e.sub, e.name, e.size, e.modseq) for e in second.messages()], expected)
        self.assertIsNone(second._pending)
        self.assertEqual(second.cachedEnvelope(1), envelope)
        with open(path, "wb") as f:
            f.write(content)
        third = self.index()
        third.uids()
        third.materialise()
        self.assertIsNone(third._pending)
        self.assertEqual([(e.uid, e.base, e.name) for e in third.messages()], [e[:2] + e[3:4] for e in expected])
        self.assertEqual(third.newUIDs(), [1, 2])

    def test_loadColumnsDamaged(self) -> None:
        """
        An index whose UIDs are good but whose other columns are damaged is
        found out when they are first read: the index is rebuilt then, and
        the UIDs stay what the UID list says.
        """
        path, content, expected = self.settledIndexFile()
        damaged = bytearray(content)
        damaged[-3] ^= 0x01
        for touch in ("entry", "materialise", "refresh after a delivery"):
            with open(path, "wb") as f:
                f.write(bytes(damaged))
            index = self.index()
            self.assertEqual(list(index.uids()), [1, 2, 3])
            if touch == "entry":
                self.assertEqual(index.entry(3).name, expected[2][3])
            elif touch == "materialise":
                index.materialise()
            else:
                base = self.deliver()
                os.utime(os.path.join(self.folder, "new"), ns=(time.time_ns(), time.time_ns() - 10**10))
                self.assertIn(4, index.refresh().added)
                self.assertEqual(index.entry(4).base, base)
            self.assertEqual([(e.uid, e.base, e.sub, e.name) for e in index.messages()][:3], [e[:4] for e in expected])
            self.assertEqual(list(index.uids())[:3], [1, 2, 3])
            self.flushLoggedErrors()

    def test_settle(self) -> None:
        """
        After the index's own renames into C{cur/} (a claim of new mail),
        L{FolderIndex.settle} lists C{cur/} again once it has settled, so
        that the refresh after the next delivery lists C{new/} only; it
        does nothing for settled, unchanged directories, and lists nothing
        but says so (call again) while a directory is still too fresh.
        """
        clock, index = self.settledIndex(3)
        self.assertFalse(index.settle())
        listed = self.recordListings()
        self.assertEqual(index.claimNew(), [1, 2, 3])
        clock.advance(-100 + 0.5)  # the directories changed half a second ago
        self.assertTrue(index.settle())
        self.assertEqual(listed, [])
        clock.advance(100)
        del listed[:]
        self.assertFalse(index.settle())
        self.assertEqual(sorted(listed), ["cur", "new"])
        del listed[:]
        self.assertFalse(index.settle())
        self.assertEqual(listed, [])
        self.deliver()
        self.assertEqual(index.refresh().added, (4,))
        self.assertEqual(listed, ["new"])
        self.assertEqual([e.sub for e in index.messages()], ["cur", "cur", "cur", "new"])
        # A dirty index is saved by settle once half the changes that make
        # a refresh save it are unsaved.
        path = os.path.join(self.folder, INDEX_NAME)
        before = os.stat(path).st_mtime_ns if os.path.exists(path) else None
        self.patch(indexModule, "SAVE_CHANGES", 100)
        index.claimNew()
        self.assertFalse(index.settle())
        self.assertTrue(index._dirty)
        self.patch(indexModule, "SAVE_CHANGES", 4)
        self.assertFalse(index.settle())
        self.assertFalse(index._dirty)
        self.assertNotEqual(os.stat(path).st_mtime_ns, before)
        self.assertEqual(self.index(clock=clock).newUIDs(), [])

    def test_claimKeepsCurKnown(self) -> None:
        """
        A claim of C{new/} into a C{cur/} the index knew leaves C{cur/}
        known (the next refresh lists C{new/} only), provisionally: it is
        saved as unknown, and listed by the next settle, which finds a
        change another process made behind the claim's mtime.
        """
        clock, index = self.settledIndex(3)
        self.assertEqual(index.claimNew(), [1, 2, 3])
        clock.advance(5)
        index.refresh()  # lists new/ (the claim emptied it), not cur/
        listed = self.recordListings()
        self.deliver()
        self.assertEqual(index.refresh().added, (4,))
        self.assertEqual(listed, ["new"])
        self.assertEqual(index._unverified, {"cur"})
        index.save()
        with open(os.path.join(self.folder, INDEX_NAME), "rb") as f:
            self.assertEqual(f.readline().split(b" ")[4], b"0")
        # Another process marks a message \Seen in the same moment.
        cur = os.path.join(self.folder, "cur")
        stamp = os.stat(cur).st_mtime_ns
        name = index.entry(2).name
        os.rename(os.path.join(cur, name), os.path.join(cur, name + "S"))
        os.utime(cur, ns=(stamp, stamp))
        del listed[:]
        self.assertEqual(index.refresh().flagsChanged, ())
        self.assertEqual(listed, [])
        generation = index.generation
        self.assertFalse(index.settle())
        self.assertEqual(listed, ["cur"])
        self.assertEqual(index._unverified, set())
        self.assertEqual(index.flags(2), ["\\Seen"])
        self.assertEqual(index.changesSince(generation).flagsChanged, (2,))

    def test_settleListsWithoutTheLock(self) -> None:
        """
        A listing L{FolderIndex.settle} made before taking the lock is used
        only while the directory's mtime is what it was then, and judged
        settled by the time of that listing.
        """
        clock, index = self.settledIndex(1)
        mtime = os.stat(os.path.join(self.folder, "new")).st_mtime_ns
        real = sorted(os.listdir(os.path.join(self.folder, "new")))
        index._stamps["new"] = 0
        index._prelisted = {"new": (mtime, ["listed-before"], mtime / 1e9 + 0.5)}
        self.assertEqual(index._listing("new"), (["listed-before"], mtime, False))
        index._prelisted = {"new": (mtime, ["listed-before"], mtime / 1e9 + 5)}
        self.assertEqual(index._listing("new"), (["listed-before"], mtime, True))
        index._prelisted = {"new": (mtime - 1, ["stale"], mtime / 1e9 + 5)}
        names, stamp, settled = index._listing("new")
        self.assertEqual((sorted(names), stamp, settled), (real, mtime, True))

    def test_iterUIDs(self) -> None:
        uids = [2, 5, 9, 10, 40]
        self.assertEqual(list(iterUIDs(uids, [(1, 5), (4, 9), (11, 39)])), [(1, 2), (2, 5), (3, 9)])
        self.assertEqual(list(iterUIDs(uids, [(40, 40)])), [(5, 40)])


class ThreadTests(SynchronousTestCase):
    """
    One L{FolderIndex} shared by sessions whose commands run on several
    worker threads at once (see "The lock" in the module docstring).
    """

    def setUp(self) -> None:
        self.folder = self.mktemp()
        ensureMaildir(FileSystem(), self.folder)
        # A clock that stands still: new names differ by the counter only.
        self.index = FolderIndex(self.folder, clock=clockAt(START), hostname=HOST)
        self.index.refresh()

    def inThreads(self, work, count: int = 8) -> list:
        results: list = [None] * count
        errors: list[BaseException] = []

        def one(n: int) -> None:
            try:
                results[n] = work(n)
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        return results

    def test_concurrentAppendsRefreshesAndKeywords(self) -> None:
        """
        Appends (each with a new keyword), refreshes, flag changes and
        reads from several threads: every message stored once with a UID
        of its own, every keyword with a letter of its own.
        """
        index = self.index

        def work(n: int) -> list[int]:
            uids = []
            for i in range(10):
                uid = index.append(message(n * 100 + i), [], None, [f"$k{n}"])
                index.refresh()
                index.changeFlags(uid, add=["\\Seen", f"$x{n}"])
                self.assertIn(b"body %d" % (n * 100 + i), index.read(uid))
                uids.append(uid)
            return uids

        results = self.inThreads(work)
        every = sorted(u for uids in results for u in uids)
        self.assertEqual(every, list(range(1, 81)))
        self.assertEqual(list(index.uids()), every)
        self.assertEqual(len(os.listdir(os.path.join(self.folder, "cur"))), 80)
        letters = index.keywords.keywords()
        self.assertEqual(len(letters), 16)
        self.assertEqual(len(set(letters.values())), 16)
        for n, uids in enumerate(results):
            for uid in uids:
                self.assertEqual(set(index.flags(uid)), {"\\Seen", f"$k{n}", f"$x{n}"})

    def test_concurrentCopies(self) -> None:
        """
        Copies between two folders in both directions at once: no
        deadlock (the two locks are never held together), no lost copy.
        """
        other = self.mktemp()
        ensureMaildir(FileSystem(), other)
        target = FolderIndex(other, clock=clockAt(START), hostname=HOST)
        target.refresh()
        ours = [self.index.append(message(i)) for i in range(20)]
        theirs = [target.append(message(i)) for i in range(20)]

        def work(n: int) -> list[int]:
            if n % 2:
                return self.index.copy(ours, target)
            return target.copy(theirs, self.index)

        self.inThreads(work, 4)
        self.assertEqual(len(self.index.uids()), 60)
        self.assertEqual(len(target.uids()), 60)


class SharedIndexTests(SynchronousTestCase):
    """
    L{sharedIndex}: one index per folder in the process, kept a while
    after its last user let go of it.
    """

    def setUp(self) -> None:
        self.clock = clockAt(START)
        self.folders = []
        for n in range(3):
            folder = os.path.abspath(self.mktemp())
            ensureMaildir(FileSystem(), folder)
            self.folders.append(folder)

        def forget() -> None:
            for folder in self.folders:
                indexModule._lingering.pop(os.path.realpath(folder), None)

        self.addCleanup(forget)

    def alive(self, reference: "weakref.ref[FolderIndex]") -> bool:
        gc.collect()
        return reference() is not None

    def test_sharedAndLingering(self) -> None:
        """
        Sessions of one folder get one index; it outlives them for
        L{indexModule.LINGER_SECONDS} after it was last asked for, and is
        let go at the first call after that.
        """
        first = indexModule.sharedIndex(self.folders[0], clock=self.clock)
        self.assertIs(indexModule.sharedIndex(self.folders[0] + "/", clock=self.clock), first)
        reference = weakref.ref(first)
        del first
        self.assertTrue(self.alive(reference))
        self.clock.advance(indexModule.LINGER_SECONDS - 1)
        self.assertIs(indexModule.sharedIndex(self.folders[0], clock=self.clock), reference())
        self.clock.advance(indexModule.LINGER_SECONDS + 1)
        self.assertTrue(self.alive(reference))  # nothing has asked since
        indexModule.sharedIndex(self.folders[1], clock=self.clock)
        self.assertFalse(self.alive(reference))

    def test_lingeringBoundedByMessages(self) -> None:
        """
        The lingering indexes hold at most L{indexModule.LINGER_MESSAGES}
        messages; the least recently used go first, and one in use stays.
        """
        self.patch(indexModule, "LINGER_MESSAGES", 5)
        for folder, count in zip(self.folders, (3, 2, 4)):
            for n in range(count):
                with open(os.path.join(folder, "new", f"{START + n}.M{n}P1Q1.{HOST}"), "wb") as f:
                    f.write(message(n))
        references = []
        held = None
        for folder in self.folders:
            index = indexModule.sharedIndex(folder, clock=self.clock)
            index.refresh()
            references.append(weakref.ref(index))
            if held is None:
                held = index  # a session still holds the first
            del index
        # Sizes are judged at the next call: 3 + 2 + 4 messages, so the
        # least recently used went, but a session holds the first folder's.
        self.assertIs(indexModule.sharedIndex(self.folders[2], clock=self.clock), references[2]())
        self.assertEqual([self.alive(r) for r in references], [True, False, True])
        self.assertIs(indexModule.sharedIndex(self.folders[0], clock=self.clock), held)


class LargeFolderTests(SynchronousTestCase):
    """
    The 100,000-message case: correctness only, no timing.
    """

    COUNT = 100_000

    def test_largeFolder(self) -> None:
        folder = self.mktemp()
        ensureMaildir(FileSystem(), folder)
        body = b"Subject: x\r\n\r\nx\r\n"
        cur = os.path.join(folder, "cur")
        for n in range(self.COUNT):
            name = f"{START + n}.M{n}P1Q1.{HOST},S={len(body)},W={len(body)}:2,{'S' if n % 2 else ''}"
            fd = os.open(os.path.join(cur, name), os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(fd, body)
            os.close(fd)
        index = FolderIndex(folder, clock=clockAt(START), hostname=HOST)
        changes = index.refresh()
        self.assertEqual(len(changes.added), self.COUNT)
        uids = index.uids()
        self.assertEqual(uids[0], 1)
        self.assertEqual(uids[-1], self.COUNT)
        index.save()
        for n in range(10):
            base = f"{START + self.COUNT + n}.M{n}P2Q2.{HOST},S={len(body)},W={len(body)}"
            with open(os.path.join(folder, "new", base), "wb") as f:
                f.write(body)
        reopened = FolderIndex(folder, clock=clockAt(START), hostname=HOST)
        changes = reopened.refresh()
        self.assertEqual(changes.added, tuple(range(self.COUNT + 1, self.COUNT + 11)))
        self.assertEqual(reopened.flags(2), ["\\Seen"])
        self.assertEqual(reopened.size(self.COUNT + 5), len(body))
        reopened.expunge([1, self.COUNT])
        self.assertEqual(len(reopened.uids()), self.COUNT + 8)
