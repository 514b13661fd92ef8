"""
Tests for L{mailhub.relay.manager.RelayManager}: the whole life of a queued
message, driven by a L{Clock}, an in-memory queue and a scripted sender.
"""

from __future__ import annotations

import os
from typing import Any

from attrs import evolve
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mailhub.relay.manager import RelayManager
from mailhub.relay.policy import RetryPolicy
from mailhub.relay.values import PENDING, SENT, Outcome, QueuedRecipient, QueueEntry

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0

HEADERS = b"Received: from a\r\nSubject: hello\r\nFrom: alice@example.test\r\n\r\nbody\r\n"


class MemoryQueue:
    """
    The queue's interface over a dict (a test double; the real queue is
    tested on its own).
    """

    def __init__(self, directory: str, message: bytes = HEADERS) -> None:
        self.directory = directory
        os.makedirs(directory)
        self.entries: dict[str, QueueEntry] = {}
        self.message = message
        self.updates: list[QueueEntry] = []
        self.inFlight: set[str] = set()
        self.removed: list[str] = []
        self.durableRemovals: list[bool] = []
        self.busy: set[str] = set()

    def scan(self) -> list[tuple[float, str]]:
        return [(e.nextAttempt, e.id) for e in self.entries.values()]

    flushRequested = False

    def takeFlushRequest(self) -> bool:
        requested, self.flushRequested = self.flushRequested, False
        return requested

    def get(self, queueId: str) -> QueueEntry | None:
        return self.entries.get(queueId)

    def update(self, entry: QueueEntry) -> None:
        self.entries[entry.id] = entry
        self.updates.append(entry)

    def remove(self, queueId: str, *, durable: bool = True) -> None:
        self.entries.pop(queueId, None)
        self.removed.append(queueId)
        self.durableRemovals.append(durable)

    def messagePath(self, queueId: str) -> str:
        path = os.path.join(self.directory, queueId + ".msg")
        with open(path, "wb") as f:
            f.write(self.message)
        return path

    def markInFlight(self, queueId: str) -> bool:
        if queueId in self.inFlight or queueId in self.busy:
            return False
        self.inFlight.add(queueId)
        return True

    def clearInFlight(self, queueId: str) -> None:
        self.inFlight.discard(queueId)


class ScriptedSender:
    """
    Answers each delivery with the next scripted outcome for the domain;
    C{hold} keeps the answer pending.
    """

    def __init__(self) -> None:
        self.script: dict[str, list[Any]] = {}
        self.calls: list[tuple[float, str, tuple[str, ...]]] = []
        self.clock: Clock | None = None
        self.held: list[Deferred[Any]] = []
        self.hold = False
        #: Domains whose answers are held (as C{hold} for all).
        self.holdDomains: set[str] = set()

    def deliver(self, domain, route, sender, recipients, messagePath, size, queueId=""):
        self.calls.append((self.clock.seconds(), domain, tuple(recipients)))
        if self.hold or domain in self.holdDomains:
            d: Deferred[Any] = Deferred()
            self.held.append(d)
            return d
        answer = self.script[domain].pop(0)
        if isinstance(answer, Outcome):
            return succeed({r: answer for r in recipients})
        return succeed(answer)


OK = Outcome(250, "ok", False, "mx.remote.test", "2.0.0")
TEMP = Outcome(451, "try later", False, "mx.remote.test", "4.7.1")
PERM = Outcome(550, "no such user", True, "mx.remote.test", "5.1.1")


class ManagerTests(SynchronousTestCase):
    """
    Scheduling, retries, bounces and warnings.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.queue = MemoryQueue(self.mktemp())
        self.sender = ScriptedSender()
        self.sender.clock = self.clock
        self.reports: list[tuple[str, bytes]] = []
        self.ids = iter(f"report{n}@mx.test" for n in range(100))
        self.manager = self.makeManager()

    def makeManager(self, **kwargs: Any) -> RelayManager:
        return RelayManager(
            clock=self.clock,
            queue=self.queue,
            sender=self.sender,
            policy=kwargs.pop("policy", RetryPolicy()),
            runBlocking=maybeDeferred,
            route=lambda domain: None,
            sendBounce=lambda to, message: succeed(self.reports.append((to, message))),
            hostname="mx.test",
            newMessageId=lambda: next(self.ids),
            **kwargs,
        )

    def entry(self, queueId: str = "Q1", *recipients: str, sender: str = "alice@example.test") -> QueueEntry:
        now = self.clock.seconds()
        entry = QueueEntry(
            id=queueId,
            sender=sender,
            recipients=tuple(QueuedRecipient(r) for r in (recipients or ("bob@remote.test",))),
            created=now,
            nextAttempt=now,
            size=100,
        )
        self.queue.entries[queueId] = entry
        return entry

    def start(self) -> None:
        self.manager.startService()
        self.addCleanup(self.stop, self.manager)

    def stop(self, manager: RelayManager) -> None:
        if manager.running:
            d = manager.stopService()
            self.clock.advance(manager.stopTimeout)
            self.successResultOf(d)

    def test_deliveredAtOnce(self) -> None:
        """
        A new entry is tried at once; on 250 it is removed.
        """
        self.start()
        self.sender.script["remote.test"] = [OK]
        self.manager.enqueued(self.entry())
        self.clock.advance(0)
        self.assertEqual(self.queue.entries, {})
        self.assertEqual(self.queue.removed, ["Q1"])
        self.assertEqual(self.reports, [])

    def test_retrySchedule(self) -> None:
        """
        Transient failures are retried after 5, 10, 20, 30, 30 minutes, and
        not before.
        """
        self.start()
        self.sender.script["remote.test"] = [TEMP] * 6 + [OK]
        start = self.clock.seconds()
        self.manager.enqueued(self.entry())
        self.clock.advance(0)
        for minutes in (5, 10, 20, 30, 30, 30):
            self.clock.advance(minutes * MINUTE - 1)
            before = len(self.sender.calls)
            self.clock.advance(1)
            self.assertEqual(len(self.sender.calls), before + 1)
        times = [(t - start) / MINUTE for t, _, _ in self.sender.calls]
        self.assertEqual(times, [0, 5, 15, 35, 65, 95, 125])
        self.assertEqual(self.queue.entries, {})

    def test_attemptRecordedBeforeConnecting(self) -> None:
        """
        The attempt count and next attempt are on disk before the sender is
        called.
        """
        self.start()
        self.sender.hold = True
        self.manager.enqueued(self.entry())
        self.clock.advance(0)
        recorded = self.queue.entries["Q1"]
        self.assertEqual(recorded.attempts, 1)
        self.assertEqual(recorded.nextAttempt, self.clock.seconds() + 5 * MINUTE)
        self.assertIn("Q1", self.queue.inFlight)
        self.sender.held[0].callback({"bob@remote.test": OK})
        self.assertNotIn("Q1", self.queue.inFlight)

    def test_permanentBouncesOneRecipient(self) -> None:
        """
        A 5xx bounces that recipient at once; the other is delivered; the
        sender gets one report naming the failed recipient.
        """
        self.start()
        self.sender.script["remote.test"] = [{"bob@remote.test": PERM, "carol@remote.test": OK}]
        self.manager.enqueued(self.entry("Q1", "bob@remote.test", "carol@remote.test"))
        self.clock.advance(0)
        self.assertEqual(self.queue.entries, {})
        [(to, report)] = self.reports
        self.assertEqual(to, "alice@example.test")
        self.assertIn(b"bob@remote.test", report)
        self.assertNotIn(b"Final-Recipient: rfc822; carol@remote.test", report)

    def test_oneTransactionPerDomain(self) -> None:
        """
        Recipients of one domain share a transaction; domains are separate.
        """
        self.start()
        self.sender.script["remote.test"] = [OK]
        self.sender.script["other.test"] = [OK]
        self.manager.enqueued(self.entry("Q1", "a@remote.test", "b@remote.test", "c@other.test"))
        self.clock.advance(0)
        self.assertEqual(
            sorted((d, r) for _, d, r in self.sender.calls),
            [("other.test", ("c@other.test",)), ("remote.test", ("a@remote.test", "b@remote.test"))],
        )

    def test_sentRecordedWhileOthersGoOn(self) -> None:
        """
        Recipients one domain accepted are recorded as sent while another
        domain's transaction is still going: a crash then (a new manager
        over the queue as it is on disk) sends only to the others.
        """
        self.start()
        self.sender.script["a.test"] = [OK]
        self.sender.holdDomains.add("b.test")
        self.manager.enqueued(self.entry("Q1", "x@a.test", "y@b.test"))
        self.clock.advance(0)
        self.assertEqual(len(self.sender.calls), 2)
        recorded = self.queue.entries["Q1"]
        self.assertEqual([(r.address, r.state) for r in recorded.recipients], [("x@a.test", SENT), ("y@b.test", PENDING)])
        self.assertEqual(recorded.recipients[0].response, "250 2.0.0 ok")
        # The crash: nothing more of this attempt happens; its marker is
        # stale.
        self.queue.inFlight.clear()
        self.sender.holdDomains.clear()
        self.sender.script["b.test"] = [OK]
        self.manager = self.makeManager()
        self.start()
        self.clock.advance(recorded.nextAttempt - self.clock.seconds())
        self.assertEqual([d for _, d, _ in self.sender.calls], ["a.test", "b.test", "b.test"])
        self.assertEqual(self.queue.entries, {})

    def test_oneDomainNoExtraRecord(self) -> None:
        """
        A message to one domain is recorded once, at the end.
        """
        self.start()
        self.sender.script["a.test"] = [TEMP]
        self.manager.enqueued(self.entry("Q1", "x@a.test", "z@a.test"))
        self.clock.advance(0)
        self.assertEqual(len(self.queue.updates), 2)  # the attempt, then its outcome

    def test_delayWarningThenBounceAtLifetime(self) -> None:
        """
        After 4 hours the sender is warned once; after the lifetime the
        message is bounced and removed.
        """
        self.start()
        self.sender.script["remote.test"] = [TEMP] * 1000
        self.manager.enqueued(self.entry())
        self.clock.advance(0)
        self.clock.pump([30 * MINUTE] * (4 * 2 + 1))
        self.assertEqual(len(self.reports), 1)
        self.assertIn(b"Action: delayed", self.reports[0][1])
        self.clock.pump([30 * MINUTE] * (2 * 24 * 5))
        self.assertEqual(len(self.reports), 2)
        self.assertIn(b"Action: failed", self.reports[1][1])
        self.assertEqual(self.queue.entries, {})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_noBounceForNullSender(self) -> None:
        """
        A failed report (sender <>) is never bounced.
        """
        self.start()
        self.sender.script["remote.test"] = [PERM]
        self.manager.enqueued(self.entry(sender=""))
        self.clock.advance(0)
        self.assertEqual(self.reports, [])
        self.assertEqual(self.queue.entries, {})

    def test_loopBounced(self) -> None:
        """
        More than 100 Received headers is a loop: bounced without trying.
        """
        self.queue.message = b"Received: x\r\n" * 101 + b"\r\nbody\r\n"
        self.start()
        self.manager.enqueued(self.entry())
        self.clock.advance(0)
        self.assertEqual(self.sender.calls, [])
        self.assertEqual(len(self.reports), 1)

    def test_restartResumes(self) -> None:
        """
        A new manager over the same queue picks up deferred entries at
        their next attempt time, not before.
        """
        self.start()
        self.sender.script["remote.test"] = [TEMP, OK]
        self.manager.enqueued(self.entry())
        self.clock.advance(0)
        self.successResultOf(self.manager.stopService())
        self.clock.advance(MINUTE)
        self.manager = self.makeManager()
        self.start()
        self.clock.advance(0)
        self.assertEqual(len(self.sender.calls), 1)
        self.clock.advance(4 * MINUTE)
        self.assertEqual(len(self.sender.calls), 2)
        self.assertEqual(self.queue.entries, {})

    def test_concurrencyLimit(self) -> None:
        """
        At most C{concurrency} entries are in flight; the rest wait.
        """
        self.manager = self.makeManager(concurrency=2)
        self.start()
        self.sender.hold = True
        for n in range(5):
            self.manager.enqueued(self.entry(f"Q{n}", f"u{n}@d{n}.test"))
        self.clock.advance(0)
        self.assertEqual(len(self.sender.calls), 2)
        self.sender.held[0].callback({"u0@d0.test": OK})
        self.clock.advance(0)
        self.assertEqual(len(self.sender.calls), 3)

    def test_perDomainLimit(self) -> None:
        """
        At most C{perDomain} transactions to one domain at once.
        """
        self.manager = self.makeManager(perDomain=1)
        self.start()
        self.sender.hold = True
        for n in range(3):
            self.manager.enqueued(self.entry(f"Q{n}", f"u{n}@same.test"))
        self.clock.advance(0)
        self.assertEqual(len(self.sender.calls), 1)
        self.sender.held[0].callback({"u0@same.test": OK})
        self.assertEqual(len(self.sender.calls), 2)

    def test_flush(self) -> None:
        """
        Flushing makes deferred entries due at once.
        """
        self.start()
        self.sender.script["remote.test"] = [TEMP, OK]
        self.manager.enqueued(self.entry())
        self.clock.advance(0)
        self.successResultOf(self.manager.flush())
        self.clock.advance(0)
        self.assertEqual(len(self.sender.calls), 2)
        self.assertEqual(self.queue.entries, {})

    def test_flushRecorded(self) -> None:
        """
        After C{mailhub queue flush ID} (the next attempt of that entry
        rewritten on disk, and its request left), only that entry is due
        now; the others keep their times.
        """
        self.start()
        self.sender.script["a.test"] = [TEMP, OK]
        self.sender.script["b.test"] = [TEMP, OK]
        self.manager.enqueued(self.entry("Q1", "u@a.test"))
        self.manager.enqueued(self.entry("Q2", "u@b.test"))
        self.clock.advance(0)
        self.assertEqual(len(self.sender.calls), 2)
        self.queue.entries["Q1"] = evolve(self.queue.entries["Q1"], nextAttempt=0.0)
        self.queue.flushRequested = True
        self.successResultOf(self.manager.flush())
        self.clock.advance(0)
        self.assertEqual([domain for _, domain, _ in self.sender.calls], ["a.test", "b.test", "a.test"])
        self.assertEqual(sorted(self.queue.entries), ["Q2"])
        self.assertFalse(self.queue.flushRequested)
        # Q2 is still tried at its own time.
        self.clock.advance(self.queue.entries["Q2"].nextAttempt - self.clock.seconds())
        self.assertEqual(len(self.sender.calls), 4)

    def test_flushKeepsWhatCameMeanwhile(self) -> None:
        """
        A new entry accepted while the flush reads the queue, waiting for
        a free slot, stays scheduled (and its first attempt comes).
        """
        self.manager = self.makeManager(concurrency=1)
        self.start()
        self.sender.hold = True
        self.manager.enqueued(self.entry("Q1", "u@a.test"))
        self.clock.advance(0)
        scan = self.queue.scan

        def scanWhileMailArrives() -> list[tuple[float, str]]:
            pairs = scan()
            self.manager.enqueued(self.entry("Q2", "u@b.test"))
            return pairs

        self.queue.scan = scanWhileMailArrives  # type: ignore[method-assign]
        self.successResultOf(self.manager.flush())
        self.queue.scan = scan  # type: ignore[method-assign]
        self.assertEqual(len(self.sender.calls), 1)
        self.sender.held[0].callback({"u@a.test": OK})
        self.clock.advance(0)
        self.assertEqual([domain for _, domain, _ in self.sender.calls], ["a.test", "b.test"])

    def test_stopLeavesNothingScheduled(self) -> None:
        """
        Stopping cancels the timer and waits for attempts in flight (at
        most the stop timeout).
        """
        self.start()
        self.sender.hold = True
        self.manager.enqueued(self.entry("Q1"))
        self.manager.enqueued(evolve(self.entry("Q2"), nextAttempt=self.clock.seconds() + HOUR))
        self.clock.advance(0)
        d = self.manager.stopService()
        self.assertNoResult(d)
        self.sender.held[0].callback({"bob@remote.test": TEMP})
        self.successResultOf(d)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_busyEntryRetriedSoon(self) -> None:
        """
        An entry a command holds is tried again a few seconds later.
        """
        self.start()
        self.sender.script["remote.test"] = [OK]
        self.queue.busy.add("Q1")
        self.manager.enqueued(self.entry())
        self.clock.advance(0)
        self.assertEqual(self.sender.calls, [])
        self.queue.busy.clear()
        self.clock.advance(5)
        self.assertEqual(len(self.sender.calls), 1)

    def test_retryAfterAnAnswerThatCameLater(self) -> None:
        """
        An attempt whose outcome comes later (as from a remote server, not
        at once as from the scripted sender) is retried on the schedule
        all the same: its next attempt is not dropped because the attempt
        was still in flight when it was known.
        """
        self.start()
        self.sender.hold = True
        start = self.clock.seconds()
        self.manager.enqueued(self.entry())
        self.clock.advance(0)
        self.clock.advance(MINUTE)
        self.sender.held.pop().callback({"bob@remote.test": TEMP})
        self.assertEqual(self.queue.entries["Q1"].nextAttempt, start + 5 * MINUTE)
        self.clock.advance(4 * MINUTE - 1)
        self.assertEqual(len(self.sender.calls), 1)
        self.clock.advance(1)
        self.assertEqual([t - start for t, _, _ in self.sender.calls], [0, 5 * MINUTE])

    def test_busyEntryRetriedSoonOffThread(self) -> None:
        """
        An entry a command holds is tried again a few seconds later when
        the queue steps run off the reactor thread (their results come
        later, as from the server's thread pool).
        """
        pending: list[tuple[Deferred[Any], Any, tuple[Any, ...]]] = []

        def runBlocking(f: Any, *args: Any) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            pending.append((d, f, args))
            return d

        def runPending() -> None:
            while pending:
                d, f, args = pending.pop(0)
                maybeDeferred(f, *args).chainDeferred(d)

        self.manager = self.makeManager()
        self.manager.runBlocking = runBlocking
        self.start()
        runPending()
        self.sender.script["remote.test"] = [OK]
        self.queue.busy.add("Q1")
        self.manager.enqueued(self.entry())
        self.clock.advance(0)
        runPending()
        self.assertEqual(self.sender.calls, [])
        self.queue.busy.clear()
        self.clock.advance(5)
        runPending()
        self.assertEqual(len(self.sender.calls), 1)
        runPending()
        self.assertEqual(self.queue.entries, {})

    def test_stopTimeout(self) -> None:
        """
        An attempt that never ends does not hold stopping up for ever.
        """
        self.start()
        self.sender.hold = True
        self.manager.enqueued(self.entry())
        self.clock.advance(0)
        d = self.manager.stopService()
        self.clock.advance(self.manager.stopTimeout)
        self.successResultOf(d)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_senderExceptionIsTransient(self) -> None:
        """
        An exception in the sender counts as a transient failure.
        """
        self.start()

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("boom")

        self.sender.deliver = broken  # type: ignore[method-assign]
        self.manager.enqueued(self.entry())
        self.clock.advance(0)
        entry = self.queue.entries["Q1"]
        self.assertEqual(entry.recipients[0].state, PENDING)
        self.assertIn("boom", entry.lastError)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class FreshEntryTests(SynchronousTestCase):
    """
    A new entry handed over in memory with its marker taken
    (C{enqueued(entry, received)}): its first attempt starts without a
    trip to the disk, and its outcome is the first thing written.
    """

    setUp = ManagerTests.setUp
    makeManager = ManagerTests.makeManager
    entry = ManagerTests.entry
    start = ManagerTests.start
    stop = ManagerTests.stop

    def fresh(self, queueId: str = "Q1", received: int = 1) -> QueueEntry:
        entry = self.entry(queueId)
        self.queue.inFlight.add(queueId)  # taken by Queue.add(claim=True)
        self.manager.enqueued(entry, received)
        return entry

    def test_deliveredWithoutRecord(self) -> None:
        """
        Delivered at once: nothing is rewritten, the entry is removed
        without waiting for the removal to be durable, the marker given
        back.
        """
        self.start()
        self.sender.script["remote.test"] = [OK]
        self.fresh()
        self.clock.advance(0)
        self.assertEqual(len(self.sender.calls), 1)
        self.assertEqual(self.queue.updates, [])
        self.assertEqual(self.queue.removed, ["Q1"])
        self.assertEqual(self.queue.durableRemovals, [False])
        self.assertEqual(self.queue.inFlight, set())

    def test_deferredRecordsTheAttempt(self) -> None:
        """
        A transient failure writes attempt 1 and the next attempt time;
        the retry comes on the policy's schedule and is recorded before it
        connects, as for any entry read from disk.
        """
        self.start()
        self.sender.script["remote.test"] = [TEMP, TEMP, OK]
        self.sender.clock = self.clock
        self.fresh()
        self.clock.advance(0)
        [written] = self.queue.updates
        self.assertEqual(written.attempts, 1)
        self.assertEqual(written.nextAttempt, self.clock.seconds() + 5 * MINUTE)
        self.assertEqual(written.recipients[0].state, PENDING)
        self.assertEqual(self.queue.inFlight, set())
        self.clock.advance(5 * MINUTE)
        self.assertEqual([e.attempts for e in self.queue.updates], [1, 2, 2])
        self.assertEqual(len(self.sender.calls), 2)

    def test_crashDuringFirstAttempt(self) -> None:
        """
        The record a crash during the first attempt leaves is attempt 0,
        due now: a new manager tries it at once and records that attempt
        before connecting.
        """
        self.start()
        self.sender.hold = True
        self.fresh()
        self.clock.advance(0)
        self.assertEqual(self.queue.updates, [])
        # The process dies: its marker is stale, the record untouched.
        self.queue.inFlight.clear()
        self.manager = self.makeManager()
        self.start()
        self.clock.advance(0)
        self.assertEqual(len(self.sender.calls), 2)
        self.assertEqual(self.queue.entries["Q1"].attempts, 1)

    def test_loopCountGiven(self) -> None:
        """
        The loop check uses the count handed over: more than 100 Received
        fields bounce without a connection.
        """
        self.start()
        self.fresh(received=101)
        self.clock.advance(0)
        self.assertEqual(self.sender.calls, [])
        self.assertEqual(len(self.reports), 1)
        self.assertIn(b"Received: from a", self.reports[0][1])

    def test_stopGivesMarkersBack(self) -> None:
        """
        Entries still waiting for their first attempt when the manager
        stops are left due, their markers given back.
        """
        self.manager = self.makeManager(concurrency=1)
        self.start()
        self.sender.hold = True
        self.fresh("Q1")
        self.fresh("Q2")
        self.clock.advance(0)
        self.assertEqual(len(self.sender.calls), 1)
        d = self.manager.stopService()
        self.assertEqual(self.queue.inFlight, {"Q1"})
        self.sender.held[0].callback({"bob@remote.test": TEMP})
        self.successResultOf(d)
        self.assertEqual(self.queue.inFlight, set())
        self.assertEqual(self.queue.entries["Q2"].attempts, 0)

    def test_notRunningGivesMarkerBack(self) -> None:
        """
        A stopped manager takes no new entry in memory: the marker is
        given back and the entry waits for the next start.
        """
        self.assertFalse(self.manager.wantsFresh())
        self.fresh()
        self.assertEqual(self.queue.inFlight, set())
        self.start()
        self.assertTrue(self.manager.wantsFresh())

    def test_slotFreeBeforeRemoval(self) -> None:
        """
        With a writer, a delivered entry's slot is free as soon as its
        outcome is known: the next entry starts while the removal is on
        its way; the attempt ends when the removal is done.
        """
        removals: dict[str, Deferred[None]] = {}

        class Writer:
            def remove(self, queueId: str) -> Deferred[None]:
                removals[queueId] = Deferred()
                return removals[queueId]

        self.manager = self.makeManager(concurrency=1, writer=Writer())
        self.start()
        self.sender.script["remote.test"] = [OK, OK]
        self.sender.script["other.test"] = [OK]
        self.fresh("Q1")
        entry = self.entry("Q2", "carol@other.test")
        self.queue.inFlight.add("Q2")
        self.manager.enqueued(entry, 1)
        self.clock.advance(0)
        self.assertEqual(sorted(removals), ["Q1", "Q2"])
        self.assertEqual(len(self.sender.calls), 2)
        self.assertEqual(sorted(self.manager._inFlight), ["Q1", "Q2"])
        removals["Q1"].callback(None)
        removals["Q2"].callback(None)
        self.assertEqual(self.manager._inFlight, {})
