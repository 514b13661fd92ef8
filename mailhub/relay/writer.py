# -*- test-case-name: tests.relay.test_writer -*-
"""
The relay queue's writer threads: new entries are added in batches around
shared syncs, and delivered ones removed, in batches too.

An add needs one sync (DESIGN.md, "Queue"; L{mailhub.relay.queue}): its
files written and renamed into place, then a sync before the client hears
C{250}; a crash before that sync leaves at most a torn entry, which the
next load recognises by its checksums and removes.  One thread runs every
add that queued up while it was busy as one round: stage them all, one
C{syncfs} for all of them, and the reactor hears of the whole round's
results in one call.  In steady load that is one sync per round for
everything in flight, and each add waits for the round it joins and at
most the one running when it came.  Removals of delivered entries run on
a second thread, since unlinking a message (its blocks freed) costs more
than writing one and adds must not wait behind it; they are made durable
by the next add round's sync, which covers the whole file system, or by
the kernel's write-back (nobody waits for that, see
L{mailhub.relay.manager}).

The other queue steps (an attempt's record, a deferral, the commands) are
rarer and run on the thread pool with the queue's own shared sync.
"""

from __future__ import annotations

import errno
import queue as queueModule
import threading
from typing import Any, Sequence

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailhub.relay.bounce import headersOf, originalHeaders
from mailhub.relay.manager import countReceived
from mailhub.relay.queue import Queue, StagedEntry
from mailhub.relay.values import QueueEntry

_STOP = object()


class _Add:
    def __init__(
        self,
        entry: QueueEntry,
        content: bytes | None,
        spoolPath: str | None,
        size: int,
        claim: bool,
        d: Deferred[int],
    ) -> None:
        self.entry = entry
        self.content = content
        self.spoolPath = spoolPath
        self.size = size
        self.claim = claim
        self.d = d
        self.staged: StagedEntry | None = None
        self.received = 0


class _Remove:
    def __init__(self, queueId: str, d: Deferred[None]) -> None:
        self.queueId = queueId
        self.d = d


class QueueWriter:
    """
    Adds and removes relay queue entries on two threads, in batches, the
    adds around shared syncs (see the module's description).

    @param reactor: results are reported through it, on its thread.
    @param queue: the queue; it must have group sync (C{syncfs}).
    @param threaded: C{False} runs each operation at once on the calling
        thread (for tests driven by a L{Clock}).
    """

    log = Logger()

    def __init__(self, reactor: IReactorFromThreads, queue: Queue, threaded: bool = True) -> None:
        self._reactor = reactor
        self.queue = queue
        self._threaded = threaded
        self._jobs: queueModule.SimpleQueue[object] = queueModule.SimpleQueue()
        self._removals: queueModule.SimpleQueue[object] = queueModule.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._remover: threading.Thread | None = None
        self._stopped: Deferred[None] | None = None
        self._stopping = False
        #: Rounds run, and syncs made (for tests and benchmarks).
        self.rounds = 0
        self.syncs = 0

    # Life

    def start(self) -> None:
        """
        Start the threads (a no-op when not threaded).
        """
        self._stopping = False
        if self._threaded and self._thread is None:
            self._thread = threading.Thread(
                target=self._work, args=(self._jobs,), name="mailhub-queue-writer", daemon=True
            )
            self._remover = threading.Thread(
                target=self._work, args=(self._removals,), name="mailhub-queue-remover", daemon=True
            )
            self._thread.start()
            self._remover.start()

    def stop(self) -> Deferred[None]:
        """
        Finish every operation already submitted, then stop the threads.
        """
        self._stopping = True
        if self._thread is None:
            return succeed(None)
        self._stopped = Deferred()
        self._jobs.put(_STOP)
        self._removals.put(_STOP)
        return self._stopped

    # Operations, called on the reactor thread

    def add(
        self,
        entry: QueueEntry,
        content: bytes | None,
        spoolPath: str | None,
        size: int,
        claim: bool = False,
    ) -> Deferred[int]:
        """
        Add an entry durably (L{Queue.add}).

        @param claim: take its in-flight marker for the relay manager.
        @return: fires, once the entry is durable, with the number of
            C{Received:} fields of its message when C{claim}ed (for the
            manager's loop check), else C{0}; or fails with the L{OSError}
            that stopped it (nothing of the entry is left).
        """
        d: Deferred[int] = Deferred()
        self._submit(_Add(entry, content, spoolPath, size, claim, d))
        return d

    def remove(self, queueId: str) -> Deferred[None]:
        """
        Remove a delivered entry and give back its in-flight marker,
        without waiting for the removal to be durable (the next add round's
        sync makes it so).  Removals have a thread of their own: unlinking
        a message (its blocks freed) costs more than writing one, and adds
        must not wait behind them.

        @return: fires once the files are gone (an entry that was already
            gone is no error).
        """
        d: Deferred[None] = Deferred()
        self._submit(_Remove(queueId, d))
        return d

    def _submit(self, job: _Add | _Remove) -> None:
        if self._stopping:
            job.d.errback(Failure(OSError(errno.ESHUTDOWN, "the queue writer is stopping")))
            return
        if not self._threaded:
            self._report(self._round([job]))
            return
        if self._thread is None:
            self.start()
        (self._removals if isinstance(job, _Remove) else self._jobs).put(job)

    # The threads

    def _work(self, source: queueModule.SimpleQueue[object]) -> None:
        while True:
            jobs: list[Any] = [source.get()]
            while True:
                try:
                    jobs.append(source.get_nowait())
                except queueModule.Empty:
                    break
            stop = _STOP in jobs
            if stop:
                jobs = [j for j in jobs if j is not _STOP]
            try:
                results = self._round(jobs)
            except BaseException as e:  # never lose a caller's Deferred
                self.log.failure("queue writer round failed")
                results = [(job, e) for job in jobs]
            if results:
                self._reactor.callFromThread(self._report, results)
            if stop:
                self._reactor.callFromThread(self._finished, threading.current_thread())
                return

    def _round(self, jobs: Sequence[_Add | _Remove]) -> list[tuple[Any, Any]]:
        """
        One round: stage the adds, run the removals, then one sync for all
        of it.

        @return: the results to report (C{(job, value or exception)}).
        """
        queue = self.queue
        self.rounds += 1
        results: list[tuple[Any, Any]] = []
        staged: list[_Add] = []
        for job in jobs:
            if isinstance(job, _Remove):
                results.append((job, self._removeOne(job.queueId)))
                continue
            try:
                job.staged = queue.stage(job.entry, job.content, job.spoolPath, job.size, claim=job.claim)
            except Exception as e:
                results.append((job, e))
                continue
            if job.claim:
                try:
                    job.received = self._countReceived(job)
                except Exception as e:
                    queue.abandon(job.staged)
                    results.append((job, e))
                    continue
            staged.append(job)
        if staged:
            try:
                queue.sync()
                self.syncs += 1
            except Exception as e:
                # Not known to be durable: take every one of them back (the
                # clients hear 451 and send again).
                for job in staged:
                    assert job.staged is not None
                    queue.abandon(job.staged)
                    results.append((job, e))
                return results
        for job in staged:
            assert job.staged is not None
            queue.finish(job.staged)
            results.append((job, job.received))
        return results

    def _countReceived(self, job: _Add) -> int:
        if job.content is not None:
            return countReceived(headersOf(job.content))
        return countReceived(originalHeaders(self.queue.messagePath(job.entry.id)))

    def _removeOne(self, queueId: str) -> BaseException | None:
        try:
            try:
                self.queue.remove(queueId, durable=False)
            except LookupError:
                pass  # already gone ("mailhub queue delete")
            finally:
                self.queue.clearInFlight(queueId)
        except Exception as e:
            return e
        return None

    # Back on the reactor thread

    def _report(self, results: Sequence[tuple[Any, Any]]) -> None:
        for job, value in results:
            if isinstance(value, BaseException):
                job.d.errback(Failure(value))
            else:
                job.d.callback(value)

    def _finished(self, thread: threading.Thread) -> None:
        if thread is self._thread:
            self._thread = None
        elif thread is self._remover:
            self._remover = None
        if self._thread is not None or self._remover is not None:
            return
        self.queue.close()
        stopped, self._stopped = self._stopped, None
        if stopped is not None:
            stopped.callback(None)
