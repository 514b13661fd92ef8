"""
Tests for L{mailhub.maildir.modseq} and the mod-sequences the index gives
(RFC 7162 §3.1): monotonic across restarts, crashes and a lost index,
new ones for every kind of change, cheap on disk.
"""

from __future__ import annotations

import errno
import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mailhub.fs import FileSystem
from mailhub.maildir.delivery import ensureMaildir
from mailhub.maildir.index import INDEX_NAME, Changes, FolderIndex, ModifiedSince
from mailhub.maildir.modseq import MODSEQ_BLOCK, MODSEQ_NAME, ModseqCounter, ModseqLocked
from mailhub.maildir.uidlist import UIDLIST_NAME
from tests.test_fs import ScriptedFileSystem

HOST = "mx.example.org"
START = 1_700_000_000


def clockAt(seconds: float) -> Clock:
    clock = Clock()
    clock.advance(seconds)
    return clock


class FailingStateFileSystem(ScriptedFileSystem):
    """
    A L{ScriptedFileSystem} whose renames onto the mod-sequence state file
    fail with C{ENOSPC} while L{failing} is set.
    """

    failing = False

    def rename(self, source: str, target: str) -> None:
        if self.failing and os.path.basename(target) == MODSEQ_NAME:
            raise OSError(errno.ENOSPC, "injected ENOSPC")
        super().rename(source, target)


class Base(SynchronousTestCase):
    def setUp(self) -> None:
        self.folder = self.mktemp()
        ensureMaildir(FileSystem(), self.folder)
        self.clock = clockAt(START)
        self.fs = FailingStateFileSystem()
        self.pauses: list[float] = []
        self.delivered = 0

    def stateWrites(self) -> int:
        """
        How many times the state file was written (each one durable).
        """
        return sum(1 for s in self.fs.subjectsOf("rename") if s is not None and os.path.basename(s) == MODSEQ_NAME)

    def ceilingOnDisk(self) -> int:
        with open(os.path.join(self.folder, MODSEQ_NAME)) as f:
            magic, version, ceiling = f.read().split()
        self.assertEqual((magic, version), ("MHMS", "1"))
        return int(ceiling)


class CounterTests(Base):
    def makeCounter(self, **kwargs) -> ModseqCounter:
        kwargs.setdefault("hostname", HOST)
        kwargs.setdefault("pause", self.pauses.append)
        return ModseqCounter(self.folder, self.fs, self.clock, **kwargs)

    def test_reservesInBlocks(self) -> None:
        """
        The first value is 1; one durable write covers a block of values,
        the next write comes when the block is used up.
        """
        counter = self.makeCounter(block=3)
        self.assertEqual([counter.take() for _ in range(3)], [1, 2, 3])
        self.assertEqual(self.stateWrites(), 1)
        self.assertEqual(self.ceilingOnDisk(), 3)
        self.assertEqual(counter.take(), 4)
        self.assertEqual(self.stateWrites(), 2)
        self.assertEqual(self.ceilingOnDisk(), 6)
        self.assertEqual(counter.ceiling, 6)
        self.assertEqual(MODSEQ_BLOCK, ModseqCounter(self.folder, self.fs, self.clock)._block)

    def test_restartStartsAboveCeiling(self) -> None:
        """
        A new counter (a restart, or a crash) hands out values above
        anything the old one could have handed out.
        """
        first = self.makeCounter(block=10)
        first.take()
        first.take()
        second = self.makeCounter(block=10)
        self.assertEqual(second.take(), 11)

    def test_anotherCounterReserved(self) -> None:
        """
        A counter that sees another one reserved after it reserves again
        before its next value, above the other's block.
        """
        a = self.makeCounter(block=10)
        b = self.makeCounter(block=10)
        self.assertEqual(a.take(), 1)
        self.assertEqual(b.take(), 11)
        a.ready()
        self.assertEqual(a.take(), 21)

    def test_observe(self) -> None:
        """
        Values an index saved are not handed out again, even without a
        state file.
        """
        counter = self.makeCounter(block=10)
        counter.observe(500)
        self.assertEqual(counter.take(), 501)
        self.assertEqual(self.ceilingOnDisk(), 510)

    def test_retire(self) -> None:
        """
        After L{ModseqCounter.retire} the next value raises the ceiling.
        """
        counter = self.makeCounter(block=10)
        counter.take()
        counter.retire()
        self.assertEqual(counter.take(), 11)
        self.assertEqual(self.ceilingOnDisk(), 20)

    def test_failedReservationHandsOutNothing(self) -> None:
        """
        If the reservation cannot be made durable, no value is handed out;
        the next attempt works and nothing is handed out twice.
        """
        counter = self.makeCounter(block=2)
        self.assertEqual(counter.take(), 1)
        self.assertEqual(counter.take(), 2)
        self.fs.failing = True
        self.assertRaises(OSError, counter.take)
        self.assertRaises(OSError, counter.ready)
        self.fs.failing = False
        self.assertEqual(counter.take(), 3)
        self.assertEqual(self.ceilingOnDisk(), 4)

    def test_lockedByAnotherSession(self) -> None:
        """
        A live lock makes the counter wait (through the injected pause, no
        real sleep) and give up with L{ModseqLocked}; nothing is left
        behind once the lock is gone.
        """
        lockPath = os.path.join(self.folder, MODSEQ_NAME + ".lock")
        with open(lockPath, "w") as f:
            f.write(f"{os.getpid()}:{HOST}:{START}\n")
        counter = self.makeCounter()
        self.assertRaises(ModseqLocked, counter.take)
        self.assertTrue(self.pauses)
        self.assertFalse(os.path.exists(os.path.join(self.folder, MODSEQ_NAME)))
        os.unlink(lockPath)
        self.assertEqual(counter.take(), 1)
        self.assertFalse(os.path.exists(lockPath))

    def test_unreadableStateFile(self) -> None:
        """
        A state file that cannot be parsed is taken to say the time in
        milliseconds: far above anything handed out.
        """
        with open(os.path.join(self.folder, MODSEQ_NAME), "w") as f:
            f.write("garbage\n")
        counter = self.makeCounter(block=10)
        self.assertEqual(counter.take(), START * 1000 + 1)


class IndexModseqTests(Base):
    def index(self, **kwargs) -> FolderIndex:
        kwargs.setdefault("clock", self.clock)
        kwargs.setdefault("hostname", HOST)
        kwargs.setdefault("fs", self.fs)
        kwargs.setdefault("pause", self.pauses.append)
        return FolderIndex(self.folder, **kwargs)

    def deliver(self, sub: str = "new", info: str = "") -> str:
        self.delivered += 1
        content = b"Subject: %d\r\n\r\nbody\r\n" % (self.delivered,)
        base = f"{START + self.delivered}.M{self.delivered}P1Q1.{HOST},S={len(content)},W={len(content)}"
        with open(os.path.join(self.folder, sub, base + info), "wb") as f:
            f.write(content)
        return base

    def modseqs(self, index: FolderIndex) -> dict[int, int]:
        return {uid: index.modseq(uid) for uid in index.uids()}

    def test_emptyFolder(self) -> None:
        """
        An empty folder has a HIGHESTMODSEQ of at least 1 (RFC 7162 §7:
        mod-sequence-value), and the first message gets a larger one.
        """
        index = self.index()
        index.refresh()
        empty = index.highestModseq
        self.assertGreaterEqual(empty, 1)
        self.deliver()
        index.refresh()
        self.assertGreater(index.modseq(1), empty)
        self.assertEqual(index.highestModseq, index.modseq(1))

    def test_newMessages(self) -> None:
        """
        Every message has a mod-sequence; new ones get a larger one than
        any before, and the others keep theirs.
        """
        for _ in range(3):
            self.deliver()
        index = self.index()
        index.refresh()
        before = self.modseqs(index)
        self.assertEqual(len(set(before.values())), 1)
        self.assertEqual(index.highestModseq, before[1])
        self.deliver()
        self.deliver(sub="cur", info=":2,S")
        self.assertEqual(index.refresh().added, (4, 5))
        after = self.modseqs(index)
        self.assertEqual({u: after[u] for u in before}, before)
        self.assertGreater(after[4], before[1])
        self.assertEqual(after[4], after[5])
        self.assertEqual(index.highestModseq, after[4])

    def test_flagChanges(self) -> None:
        """
        C{setFlags} and C{changeFlags} give the message a new, larger
        mod-sequence; a change that changes nothing does not, nor does
        taking a message from C{new/} to C{cur/}.
        """
        self.deliver()
        self.deliver()
        index = self.index()
        index.refresh()
        start = index.highestModseq
        index.claimNew()
        index.refresh()
        self.assertEqual(index.highestModseq, start)
        index.changeFlags(1, add=["\\Seen"])
        seen = index.modseq(1)
        self.assertGreater(seen, start)
        self.assertEqual(index.modseq(2), start)
        index.changeFlags(1, add=["\\Seen"])
        self.assertEqual(index.modseq(1), seen)
        index.setFlags(1, ["\\Flagged"], ["$Work"])
        self.assertGreater(index.modseq(1), seen)
        self.assertEqual(index.highestModseq, index.modseq(1))
        # The session's own change is reported once, by the index refresh
        # that sees the rename it made: no second mod-sequence.
        mine = index.modseq(1)
        index.refresh()
        self.assertEqual(index.modseq(1), mine)

    def test_changesByOthers(self) -> None:
        """
        A rename by another Maildir tool and POP3 taking a message to
        C{cur/} with C{\\Seen} are changes with new mod-sequences; an
        expunge raises HIGHESTMODSEQ.
        """
        inCur = self.deliver(sub="cur", info=":2,")
        inNew = self.deliver()
        self.deliver()
        index = self.index()
        index.refresh()
        start = index.highestModseq
        os.rename(os.path.join(self.folder, "cur", inCur + ":2,"), os.path.join(self.folder, "cur", inCur + ":2,F"))
        os.rename(os.path.join(self.folder, "new", inNew), os.path.join(self.folder, "cur", inNew + ":2,S"))
        self.assertEqual(index.refresh(), Changes(flagsChanged=(1, 2)))
        self.assertGreater(index.modseq(1), start)
        self.assertGreater(index.modseq(2), start)
        self.assertEqual(index.modseq(3), start)
        changed = index.highestModseq
        os.unlink(index.path(3))
        self.assertEqual(index.refresh().removed, (3,))
        self.assertGreater(index.highestModseq, changed)
        index.expunge([2])
        self.assertGreater(index.highestModseq, changed + 1)

    def test_persistedWithTheIndex(self) -> None:
        """
        A new index over the same folder, after the old one saved, has the
        same mod-sequences and HIGHESTMODSEQ, and hands out larger ones.
        """
        for _ in range(3):
            self.deliver()
        first = self.index()
        first.refresh()
        first.changeFlags(2, add=["\\Answered"])
        expected = self.modseqs(first)
        highest = first.highestModseq
        first.close()
        second = self.index()
        self.assertEqual(second.refresh(), Changes())
        self.assertEqual(self.modseqs(second), expected)
        self.assertEqual(second.highestModseq, highest)
        second.changeFlags(3, add=["\\Seen"])
        self.assertGreater(second.modseq(3), highest)

    def test_trustedIndexWritesNothing(self) -> None:
        """
        Loading a trusted index and looking at an unchanged folder writes
        no state file (which would make the saved index untrusted).
        """
        self.deliver()
        first = self.index()
        first.refresh()
        first.close()
        writes = self.stateWrites()
        second = self.index()
        second.refresh()
        second.uids()
        second.close()
        self.assertEqual(self.stateWrites(), writes)
        third = self.index()
        third.refresh()
        self.assertEqual(self.modseqs(third), self.modseqs(first))

    def test_changesAfterTheLastSave(self) -> None:
        """
        A crash after changes the saved index does not have: the next index
        gives every message a mod-sequence above anything handed out
        before, so a client asking for changes since any value it was told
        hears of every message, none is missed.
        """
        for _ in range(3):
            self.deliver()
        first = self.index()
        first.refresh()
        first.save()
        saved = self.modseqs(first)
        # Change and change back: the file names are as saved, only the
        # mod-sequences tell.
        first.changeFlags(1, add=["\\Flagged"])
        told = first.modseq(1)
        first.changeFlags(1, remove=["\\Flagged"])
        highest = first.highestModseq
        self.assertGreater(highest, told)
        # No close: a crash.
        second = self.index()
        second.refresh()
        after = self.modseqs(second)
        self.assertEqual(set(after), set(saved))
        self.assertTrue(all(m > highest for m in after.values()), (after, highest))
        self.assertGreaterEqual(second.highestModseq, max(after.values()))

    def test_indexDeleted(self) -> None:
        """
        Without its index file (or with a corrupt or older one), the index
        is rebuilt and HIGHESTMODSEQ does not go back: every message gets a
        mod-sequence above the old HIGHESTMODSEQ.
        """
        for _ in range(3):
            self.deliver()
        first = self.index()
        first.refresh()
        first.changeFlags(2, add=["\\Seen"])
        first.close()
        highest = first.highestModseq
        for content in (None, b"garbage\n", b"MHIX 1 %d 0 0\n" % (first.uidValidity,)):
            path = os.path.join(self.folder, INDEX_NAME)
            if content is None:
                os.unlink(path)
            else:
                with open(path, "wb") as f:
                    f.write(content)
            rebuilt = self.index()
            rebuilt.refresh()
            self.assertEqual(list(rebuilt.uids()), [1, 2, 3])
            self.assertTrue(all(m > highest for m in self.modseqs(rebuilt).values()))
            self.assertGreater(rebuilt.highestModseq, highest)
            rebuilt.close()
            highest = rebuilt.highestModseq

    def test_versionOneIndex(self) -> None:
        """
        An index of the format before mod-sequences is read (no rebuild of
        the entries) and every message gets a new mod-sequence.
        """
        self.deliver()
        self.deliver()
        first = self.index()
        first.refresh()
        first.size(1)
        first.close()
        path = os.path.join(self.folder, INDEX_NAME)
        with open(path) as f:
            lines = f.read().split("\n")
        header = lines[0].split(" ")
        old = [" ".join(["MHIX", "1"] + header[2:5])]
        for line in lines[1:-1]:
            fields = line.split("\t")
            old.append("\t".join(fields[:4] + fields[5:]))
        with open(path, "w") as f:
            f.write("\n".join(old) + "\n")
        second = self.index()
        second.refresh()
        self.assertEqual([e.name for e in second.messages()], [e.name for e in first.messages()])
        self.assertTrue(all(m > first.highestModseq for m in self.modseqs(second).values()))

    def test_uidListLost(self) -> None:
        """
        A new UIDVALIDITY (the UID list was lost) starts the messages again
        with mod-sequences that still only grow.
        """
        self.deliver()
        index = self.index()
        index.refresh()
        highest = index.highestModseq
        os.unlink(os.path.join(self.folder, UIDLIST_NAME))
        self.clock.advance(10)
        self.assertTrue(index.refresh().reset)
        self.assertGreater(index.modseq(1), highest)

    def test_fewDurableWrites(self) -> None:
        """
        Changes cost no durable write of the state file until a block is
        used up or the index was saved; many changes of one batch share one
        mod-sequence.
        """
        for _ in range(5):
            self.deliver()
        index = self.index()
        index.refresh()
        index.save()
        writes = self.stateWrites()
        for uid in range(1, 6):
            index.changeFlags(uid, add=["\\Seen"])
        self.assertEqual(self.stateWrites(), writes + 1)  # after the save
        for uid in range(1, 6):
            index.changeFlags(uid, add=["\\Flagged"])
            self.deliver()
            index.refresh()
        self.assertEqual(self.stateWrites(), writes + 1)
        with index.modseqBatch():
            for uid in range(1, 6):
                index.changeFlags(uid, remove=["\\Seen"])
        batch = {index.modseq(uid) for uid in range(1, 6)}
        self.assertEqual(len(batch), 1)
        with index.modseqBatch():
            index.changeFlags(1, add=["\\Seen"])
        self.assertGreater(index.modseq(1), batch.pop())

    def test_unchangedSince(self) -> None:
        """
        A conditional change is made only if the message's mod-sequence is
        not above the value given (RFC 7162 §3.1.3); a refused one changes
        nothing.
        """
        self.deliver(sub="cur", info=":2,")
        index = self.index()
        index.refresh()
        modseq = index.modseq(1)
        name = index.entry(1).name
        error = self.assertRaises(ModifiedSince, index.changeFlags, 1, add=["\\Seen"], unchangedSince=modseq - 1)
        self.assertEqual((error.uid, error.modseq), (1, modseq))
        self.assertEqual(index.entry(1).name, name)
        self.assertEqual(index.modseq(1), modseq)
        self.assertEqual(index.changeFlags(1, add=["\\Seen"], unchangedSince=modseq), ["\\Seen"])
        self.assertRaises(ModifiedSince, index.setFlags, 1, [], [], unchangedSince=modseq)
        # The test applies even when the change would change nothing.
        self.assertRaises(ModifiedSince, index.changeFlags, 1, add=["\\Seen"], unchangedSince=modseq)

    def test_unchangedSinceSeesUnnoticedRename(self) -> None:
        """
        A rename by another tool that the index has not noticed yet still
        fails the test: the conditional change finds the file gone, looks
        again, and sees the new mod-sequence.
        """
        base = self.deliver(sub="cur", info=":2,")
        index = self.index()
        index.refresh()
        modseq = index.modseq(1)
        os.rename(os.path.join(self.folder, "cur", base + ":2,"), os.path.join(self.folder, "cur", base + ":2,T"))
        self.assertRaises(ModifiedSince, index.changeFlags, 1, add=["\\Seen"], unchangedSince=modseq)
        self.assertEqual(index.flags(1), ["\\Deleted"])

    def test_failedReservationDuringRefresh(self) -> None:
        """
        If no mod-sequence can be handed out, a refresh still records what
        changed (and raises); once one can be, every message gets a new one.
        """
        self.deliver()
        index = self.index()
        index.refresh()
        highest = index.highestModseq
        index.save()  # the next change must reserve
        self.deliver()
        self.fs.failing = True
        self.assertRaises(OSError, index.refresh)
        self.assertEqual(list(index.uids()), [1, 2])
        self.assertRaises(OSError, index.changeFlags, 1, add=["\\Seen"])
        self.assertEqual(index.flags(1), [])
        self.fs.failing = False
        index.refresh()
        self.assertTrue(all(m > highest for m in self.modseqs(index).values()))
        index.changeFlags(1, add=["\\Seen"])
        self.assertEqual(index.flags(1), ["\\Seen"])

    def test_saveDuringBatch(self) -> None:
        """
        A save in the middle of a batch (a refresh saves now and then)
        makes the batch's later changes take a mod-sequence above the
        saved CEILING: a crash after them does not leave a trusted index
        without them.
        """
        for _ in range(2):
            self.deliver()
        first = self.index()
        first.refresh()
        with first.modseqBatch():
            first.changeFlags(1, add=["\\Seen"])
            first.save()
            first.changeFlags(2, add=["\\Seen"])
        self.assertGreater(first.modseq(2), first.modseq(1))
        # A crash: the saved index lacks the second change.
        second = self.index()
        second.refresh()
        self.assertTrue(all(m > first.highestModseq for m in self.modseqs(second).values()))

    def test_twoProcesses(self) -> None:
        """
        Two indexes over one folder (two processes): each hands out values
        above what the other had reserved when it last looked, so a change
        one of them sees after the other's is numbered above it.
        """
        self.deliver()
        self.deliver()
        a = self.index()
        a.refresh()
        b = self.index()
        b.refresh()
        a.changeFlags(1, add=["\\Seen"])
        b.refresh()
        self.assertGreater(b.modseq(1), a.modseq(1))
        b.changeFlags(2, add=["\\Seen"])
        a.refresh()
        self.assertGreater(a.modseq(2), b.modseq(2))

    def test_folderDeleted(self) -> None:
        """
        A flag change in a folder deleted under the index (by another
        session or tool) looks at the folder again, as it did before
        mod-sequences, instead of failing at the reservation: the index's
        own answer to a folder that is gone is what the caller hears.
        """

        class FolderVanished(Exception):
            pass

        class GoneAware(FolderIndex):
            def _refresh(self) -> Changes:
                if not os.path.isdir(self.folderPath):
                    raise FolderVanished()
                return super()._refresh()

        self.deliver()
        index = GoneAware(self.folder, self.fs, self.clock, hostname=HOST, pause=self.pauses.append)
        index.refresh()
        index.save()  # the next change would need a reservation
        os.rename(self.folder, self.folder + ".moved")
        self.assertRaises(FolderVanished, index.changeFlags, 1, add=["\\Seen"])
