"""
Tests for L{mailhub.relay.writer}: adds and removals in pipelined batches
around shared syncs.
"""

from __future__ import annotations

import errno
import os
import queue as queueModule
from typing import Any, Callable

from attrs import evolve
from twisted.internet.defer import Deferred
from twisted.logger import capturedLogs

from mailhub.relay import queue as relayQueue
from mailhub.relay.queue import OWNER_PREFIX, GroupSync, Queue
from mailhub.relay.writer import QueueWriter, _Add, _Remove
from tests.relay.test_queue import MESSAGE, QueueTestCase, makeEntry
from tests.test_fs import ScriptedFileSystem

FRESH = dict(attempts=0, lastError="")


class CallsFromThreads:
    """
    A stand-in for the reactor's C{callFromThread}: calls are queued and
    run when the test (the "reactor thread") takes them.
    """

    def __init__(self) -> None:
        self.calls: queueModule.Queue[tuple[Callable[..., Any], tuple[Any, ...]]] = queueModule.Queue()

    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:
        self.calls.put((f, args))

    def runOne(self) -> None:
        # A bounded wait for the writer thread, not a sleep.
        f, args = self.calls.get(timeout=30)
        f(*args)


class WriterTestCase(QueueTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.fs = ScriptedFileSystem(canSyncFilesystem=True)
        self.group = GroupSync(self.fs, os.path.dirname(self.directory))
        self.addCleanup(self.group.close)
        self.queue = Queue(self.directory, self.fs, clock=self.clock, groupSync=self.group)
        self.reactor = CallsFromThreads()

    def writer(self, threaded: bool = False) -> QueueWriter:
        return QueueWriter(self.reactor, self.queue, threaded=threaded)  # type: ignore[arg-type]

    def addJob(self, queueId: str, claim: bool = False) -> _Add:
        return _Add(makeEntry(queueId, **FRESH), MESSAGE, None, 0, claim, Deferred())


class Crash(BaseException):
    """
    The system stops here (no clean-up runs).
    """


class RoundTests(WriterTestCase):
    """
    One round stages the adds (files written and renamed into place), with
    one sync for all of them.
    """

    def test_oneSync(self) -> None:
        """
        Adds are staged, synced and reported in one round, with one sync.
        """
        writer = self.writer()
        a, b = self.addJob("A"), self.addJob("B", claim=True)
        results = writer._round([a, b])
        self.assertEqual(results, [(a, 0), (b, 1)])
        self.assertEqual(self.queue.ids(), ["A", "B"])
        self.assertTrue(self.queue.inFlight("B"))
        self.assertEqual(self.queue.get("B"), evolve(makeEntry("B", **FRESH), size=len(MESSAGE)))
        self.assertEqual(self.group.syncs, 1)
        self.assertEqual(writer.syncs, 1)
        # The order of steps: each message written in place before its
        # envelope is renamed into place, then the one sync.
        steps = [
            (op, os.path.basename(s or "")[:5] if op != "syncfs" else "")
            for (op, _), s in zip(self.fs.calls, self.fs.subjects)
            if op in ("rename", "renameNoReplace", "syncfs")
            or (op == "openExclusive" and (s or "").endswith(".msg"))
        ]
        self.assertEqual(
            steps,
            [
                ("openExclusive", "A.msg"),
                ("renameNoReplace", "A.env"),
                ("openExclusive", "B.msg"),
                ("renameNoReplace", "B.env"),
                ("syncfs", ""),
            ],
        )

    def test_oneFailureAlone(self) -> None:
        """
        An add that cannot be staged (its id exists) fails alone.
        """
        self.queue.add(makeEntry("A"), MESSAGE)
        writer = self.writer()
        a, b = self.addJob("A"), self.addJob("B")
        results = writer._round([a, b])
        self.assertEqual(
            [(job, type(e) if isinstance(e, Exception) else e) for job, e in results],
            [(a, FileExistsError), (b, 0)],
        )

    def test_syncFailureTakesEverythingBack(self) -> None:
        """
        A failed sync fails the adds it was for: nothing of them is left,
        markers given back.
        """
        writer = self.writer()
        self.fs.failOp, self.fs.failAt = "syncfs", 1
        a, b = self.addJob("A", claim=True), self.addJob("B")
        results = writer._round([a, b])
        self.assertEqual([job for job, _ in results], [a, b])
        self.assertTrue(all(isinstance(e, OSError) for _, e in results))
        self.assertEqual(self.listing(), ["tmp"])
        self.assertEqual([n for n in self.listing("tmp") if not n.startswith(OWNER_PREFIX)], [])

    def test_crashBeforeSync(self) -> None:
        """
        A crash before the round's sync, nothing acknowledged: what the
        disk kept of its entries is loaded only where it is whole; torn
        entries (a message cut short or never written, a record never
        written) are removed by the next start's scan, and none is set
        aside as corrupt.
        """

        class Crashing(ScriptedFileSystem):
            def syncfs(self, fd: int) -> None:
                raise Crash()

        self.fs = Crashing(canSyncFilesystem=True)
        self.group = GroupSync(self.fs, os.path.dirname(self.directory))
        self.addCleanup(self.group.close)
        self.queue = Queue(self.directory, self.fs, clock=self.clock, groupSync=self.group)
        jobs = [self.addJob(queueId) for queueId in ("WHOLE", "SHORT", "EMPTY", "NORECORD")]
        for job in jobs:
            self.addCleanup(relayQueue._adding.discard, job.entry.id)
        self.assertRaises(Crash, self.writer()._round, jobs)
        self.assertEqual([job.d.called for job in jobs], [False] * 4)
        # What the disk kept: some blocks and names never written.
        self.write(MESSAGE[:100], "SHORT.msg")
        self.write(b"", "EMPTY.env")
        self.write(b"", "NORECORD.env")
        # The next start: a new process, so none of them is being added.
        self.patch(relayQueue, "_adding", set())
        with capturedLogs() as events:
            pairs = Queue(self.directory, clock=self.clock).scan()
        self.assertEqual([queueId for _, queueId in pairs], ["WHOLE"])
        self.assertEqual(self.listing(), ["WHOLE.env", "WHOLE.msg", "tmp"])
        self.assertEqual(
            sorted(e["id"] for e in events if "torn" in e.get("log_format", "")), ["EMPTY", "NORECORD", "SHORT"]
        )

    def test_remove(self) -> None:
        """
        A removal unlinks the entry and gives back its marker, without a
        sync; a removal of an entry already gone is no error.
        """
        self.queue.add(makeEntry("A"), MESSAGE, claim=True)
        writer = self.writer()
        before = self.group.syncs
        ra, rz = _Remove("A", Deferred()), _Remove("Z", Deferred())
        results = writer._round([ra, rz])
        self.assertEqual(results, [(ra, None), (rz, None)])
        self.assertEqual(self.group.syncs, before)
        self.assertEqual(self.queue.ids(), [])
        self.assertFalse(self.queue.inFlight("A"))


class WriterTests(WriterTestCase):
    """
    L{QueueWriter}'s Deferreds, inline and on its thread.
    """

    def test_inline(self) -> None:
        """
        Not threaded, an add is durable when its Deferred fires.
        """
        writer = self.writer()
        d = writer.add(makeEntry("A", **FRESH), MESSAGE, None, 0, claim=True)
        self.assertEqual(self.successResultOf(d), 1)
        self.assertEqual(self.queue.ids(), ["A"])
        self.successResultOf(writer.remove("A"))
        self.assertEqual(self.queue.ids(), [])

    def test_spool(self) -> None:
        """
        The message can come from a spool file (its Received: fields
        counted from the queued file, its CRC-32 from the spool's first
        C{size} bytes).
        """
        spool = self.write(MESSAGE + b"trailing", "spool", old=False)
        writer = self.writer()
        self.assertEqual(
            self.successResultOf(writer.add(makeEntry("A", **FRESH), None, spool, len(MESSAGE), claim=True)), 1
        )
        with open(self.queue.messagePath("A"), "rb") as f:
            self.assertEqual(f.read(), MESSAGE)
        self.assertEqual(self.queue.get("A"), evolve(makeEntry("A", **FRESH), size=len(MESSAGE)))

    def test_stoppedRefuses(self) -> None:
        """
        After C{stop}, operations fail at once.
        """
        writer = self.writer()
        self.successResultOf(writer.stop())
        failure = self.failureResultOf(writer.add(makeEntry("A"), MESSAGE, None, 0), OSError)
        self.assertEqual(failure.value.errno, errno.ESHUTDOWN)

    def test_threaded(self) -> None:
        """
        On their threads (adds on one, removals on the other): results
        reach the reactor thread; C{stop} finishes what was submitted
        first, on both.
        """
        self.queue.add(makeEntry("OLD"), MESSAGE, claim=True)
        writer = self.writer(threaded=True)
        writer.start()
        results: list[object] = []
        removed: list[object] = []
        for n in range(5):
            writer.add(makeEntry(f"A{n}", **FRESH), MESSAGE, None, 0).addBoth(results.append)
        writer.remove("OLD").addBoth(removed.append)
        stopped = writer.stop()
        while not stopped.called:
            self.reactor.runOne()
        self.assertEqual(results, [0] * 5)
        self.assertEqual(removed, [None])
        self.assertEqual(self.queue.ids(), [f"A{n}" for n in range(5)])
        self.assertFalse(self.queue.inFlight("OLD"))
        self.assertLessEqual(writer.syncs, 5)
        self.assertIsNone(writer._thread)
        self.assertIsNone(writer._remover)
