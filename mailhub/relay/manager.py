# -*- test-case-name: tests.relay.test_manager -*-
"""
The relay manager: when to try each queued message, and what to do with
the outcome.

One timer, for the earliest due entry, reset when mail is enqueued; no
polling loop.  Only C{(nextAttempt, id)} pairs are kept in memory (a heap);
an entry is read from disk when it is due, so a queue of 100,000 deferred
messages costs little memory.

An attempt records C{attempts + 1} and the next attempt time on disk
B{before} it connects anywhere, so a crash mid-attempt never causes a
retry storm; then it delivers every pending recipient, one SMTP
transaction per destination domain (bounded per domain and in all), and
keeps each recipient's outcome: sent, failed (bounced at once: a 5xx,
NXDOMAIN, a null MX, a loop), or still pending (retried on the policy's
schedule until its lifetime ends, then bounced).

The one exception is the first attempt of a message handed over in memory
the moment it was queued (L{RelayManager.enqueued} with C{received}): its
in-flight marker was taken when it was written, and its record (attempt
0, due now) is what a restart would find, so the attempt starts without a
trip to the disk and its outcome is the first thing written.  A crash
during it makes the restarted server try once more at once, and that
attempt, read from disk, is recorded before it connects: at most one
early retry per crash, never a storm.  (Postfix, too, moves a new message
from its incoming queue to delivery without rewriting the queue file.)
A message delivered to every recipient is removed without waiting for
the removal to be durable: only an operating-system crash in the next few
seconds can bring it back, and then it is sent twice, never lost.
"""

from __future__ import annotations

import heapq
from typing import Any, Awaitable, Callable

from attrs import evolve
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, DeferredLock, DeferredSemaphore, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from mailhub.relay import bounce
from mailhub.relay.policy import RetryPolicy
from mailhub.relay.values import FAILED, PENDING, SENT, Outcome, QueuedRecipient, QueueEntry

#: Seconds to wait before trying an entry that a command holds.
BUSY_RETRY = 5.0

#: RFC 5321 §6.3: more Received headers than this is a loop.
MAX_RECEIVED = 100

#: At most this many new entries wait in memory for their first attempt
#: (each an entry record, a few hundred bytes); beyond it, new entries are
#: read from disk when due, like deferred ones, so a burst larger than the
#: relay can send at once costs no more memory than this.
FRESH_LIMIT = 5000


def describe(outcome: Outcome) -> str:
    """
    An outcome as one line for the queue record and reports: the remote's
    reply as it was (the sender keeps it whole), or the code, enhanced
    code and text where the text does not already start with them.
    """
    text = outcome.text
    lead = str(outcome.code) if outcome.code else outcome.enhanced
    if lead and not text.startswith(lead):
        prefix = f"{outcome.code} {outcome.enhanced}" if outcome.code else outcome.enhanced
        return f"{prefix.strip()} {text}".strip()
    return text


def countReceived(headers: bytes) -> int:
    """
    How many C{Received:} fields a header block has.
    """
    return sum(1 for line in headers.split(b"\n") if line[:9].lower() == b"received:")


class RelayManager(Service):
    """
    Delivers the relay queue.

    @param clock: the reactor's clock.
    @param queue: the durable queue (blocking methods, run through
        C{runBlocking}).
    @param sender: delivers one domain's recipients:
        C{deliver(domain, route, sender, recipients, messagePath, size)}
        returning a Deferred (or coroutine) of C{{address: Outcome}}.
    @param policy: the retry schedule.
    @param runBlocking: runs a blocking function off the reactor thread.
    @param route: the route for a domain (smarthost, transport map), or
        C{None} for MX delivery.
    @param sendBounce: delivers a report message to an address (locally
        or through the queue); returns a Deferred.
    @param hostname: this server's name (Reporting-MTA).
    @param newMessageId: makes Message-IDs for reports.
    @param concurrency: entries in flight at once.
    @param perDomain: transactions in flight at once per domain.
    @param stopTimeout: how long C{stopService} waits for attempts.
    @param resolver: closed (C{close()}) when the service stops.
    @param writer: removes delivered entries in batches
        (L{mailhub.relay.writer.QueueWriter}); without one, through
        C{runBlocking}.
    """

    log = Logger()

    def __init__(
        self,
        *,
        clock: IReactorTime,
        queue: Any,
        sender: Any,
        policy: RetryPolicy,
        runBlocking: Callable[..., Deferred[Any]],
        route: Callable[[str], Any],
        sendBounce: Callable[[str, bytes], Deferred[Any]],
        hostname: str,
        newMessageId: Callable[[], str],
        concurrency: int = 20,
        perDomain: int = 4,
        stopTimeout: float = 30.0,
        resolver: Any = None,
        writer: Any = None,
    ) -> None:
        self.clock = clock
        self.queue = queue
        self.sender = sender
        self.policy = policy
        self.runBlocking = runBlocking
        self.route = route
        self.sendBounce = sendBounce
        self.hostname = hostname
        self.newMessageId = newMessageId
        self.concurrency = concurrency
        self.perDomain = perDomain
        self.stopTimeout = stopTimeout
        self.resolver = resolver
        self.writer = writer
        self._due: list[tuple[float, str]] = []
        self._queued: set[str] = set()
        self._inFlight: dict[str, Deferred[None]] = {}
        #: Attempts over, their entry's removal still on its way.
        self._settled: set[str] = set()
        #: When to try again the entries whose attempt just ended: pushed
        #: by L{_finished}, once they are no longer in flight (L{_push}
        #: leaves an entry in flight alone).
        self._retryAt: dict[str, float] = {}
        self._domains: dict[str, DeferredSemaphore] = {}
        self._timer: IDelayedCall | None = None
        self._loading: Deferred[Any] | None = None
        #: New entries whose marker we hold: id -> (entry, Received count).
        self._fresh: dict[str, tuple[QueueEntry, int]] = {}

    # Service

    def startService(self) -> None:
        super().startService()
        self._loading = self.runBlocking(self._readForFlush)

        def loaded(result: tuple[bool, list[tuple[float, str]]]) -> None:
            # A flush request left while no server ran has been honoured
            # already: the entries are due at their recorded times.
            _, pairs = result
            self._loading = None
            for when, queueId in pairs:
                self._push(when, queueId)
            self.log.info("relay queue loaded: {count} entries", count=len(pairs))
            self._schedule()

        def failed(reason: Any) -> None:
            self._loading = None
            self.log.failure("relay queue could not be loaded", reason)

        self._loading.addCallbacks(loaded, failed)

    def stopService(self) -> Deferred[None]:
        """
        Cancel the timer and wait (at most C{stopTimeout}) for attempts in
        flight; nothing is left scheduled.
        """
        super().stopService()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self.resolver is not None:
            self.resolver.close()
        waiting = DeferredList(
            list(self._inFlight.values()) + [self._releaseFresh()], consumeErrors=True
        )
        done: Deferred[None] = Deferred()
        timeout = self.clock.callLater(self.stopTimeout, lambda: done.called or done.callback(None))

        def finished(_: object) -> None:
            if timeout.active():
                timeout.cancel()
            if not done.called:
                done.callback(None)

        waiting.addBoth(finished)
        return done.addCallback(lambda _: self._closeSender())

    def _releaseFresh(self) -> Deferred[None]:
        """
        Give back the markers of new entries still waiting for their first
        attempt: they stay in the queue, due now, for the next start.
        """
        ids, self._fresh = list(self._fresh), {}
        if not ids:
            return succeed(None)

        def release() -> None:
            for queueId in ids:
                self.queue.clearInFlight(queueId)

        d = self.runBlocking(release)
        d.addErrback(lambda f: self.log.failure("releasing queue markers failed", f))
        return d

    def _closeSender(self) -> Deferred[None]:
        """
        Close the connections the sender keeps for reuse, if it keeps any.
        """
        close = getattr(self.sender, "close", None)
        if close is None:
            return succeed(None)
        d = _asDeferred(close())
        d.addErrback(lambda f: self.log.failure("closing relay connections failed", f))
        return d.addCallback(lambda _: None)

    # Scheduling

    def wantsFresh(self) -> bool:
        """
        Whether a new entry should be written with its in-flight marker
        taken for this manager (C{Queue.add(claim=True)}) and handed over
        with L{enqueued}'s C{received}: while few enough wait.
        """
        return self.running and len(self._fresh) < FRESH_LIMIT

    def enqueued(self, entry: QueueEntry, received: int | None = None) -> None:
        """
        A new entry is durable in the queue: consider it (it is normally
        due at once).

        @param received: the number of C{Received:} fields of its message,
            given when the entry was written with its marker taken for us:
            then its first attempt starts from this record, without
            reading or rewriting it first.
        """
        if received is not None:
            if not self.running:
                # Nobody will try it: give the marker back.
                self.runBlocking(self.queue.clearInFlight, entry.id).addErrback(
                    lambda f: self.log.failure("releasing a queue marker failed", f)
                )
                return
            self._fresh[entry.id] = (entry, received)
        self._push(entry.nextAttempt, entry.id)
        self._schedule()

    def flush(self) -> Deferred[None]:
        """
        Look at the queue again (C{SIGUSR1}): it is re-read, since a
        command may have changed entries on disk.  After C{mailhub queue
        flush [ID]}, which rewrote the next attempt of the entries it
        flushed and left a request saying so (L{Queue.requestFlush}), each
        entry is due at its recorded time: only those it flushed are due
        now.  A bare signal makes every entry due now.

        Entries scheduled meanwhile (a new entry accepted while the queue
        was read, one whose attempt just ended) keep their place, or take
        the earlier time of the two.
        """
        d = self.runBlocking(self._readForFlush)

        def rescanned(result: tuple[bool, list[tuple[float, str]]]) -> None:
            recorded, pairs = result
            now = self.clock.seconds()
            times = {queueId: when for when, queueId in self._due}
            for when, queueId in pairs:
                if queueId in self._inFlight:
                    continue
                when = min(when, now) if not recorded else when
                times[queueId] = min(when, times.get(queueId, when))
            self._due = [(when, queueId) for queueId, when in times.items()]
            heapq.heapify(self._due)
            self._queued = set(times)
            due = sum(1 for when in times.values() if when <= now)
            self.log.info("relay queue flushed: {count} entries due", count=due)
            self._schedule()

        return d.addCallback(rescanned)

    def _readForFlush(self) -> tuple[bool, list[tuple[float, str]]]:
        """
        Take the command's flush request, if any, then read the queue (in
        that order: a request made after it was taken comes with a signal
        of its own).
        """
        recorded = self.queue.takeFlushRequest()
        return recorded, self.queue.scan()

    def _push(self, when: float, queueId: str) -> None:
        if queueId in self._queued or queueId in self._inFlight:
            return
        self._queued.add(queueId)
        heapq.heappush(self._due, (when, queueId))

    def _schedule(self) -> None:
        """
        One timer, for the earliest due entry.
        """
        if not self.running:
            return
        if not self._due or self._busy() >= self.concurrency:
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = None
            return
        delay = max(0.0, self._due[0][0] - self.clock.seconds())
        if self._timer is not None and self._timer.active():
            self._timer.reset(delay)
        else:
            self._timer = self.clock.callLater(delay, self._run)

    def _run(self) -> None:
        self._timer = None
        now = self.clock.seconds()
        while self._due and self._due[0][0] <= now and self._busy() < self.concurrency:
            _, queueId = heapq.heappop(self._due)
            self._queued.discard(queueId)
            d = Deferred.fromCoroutine(self._attempt(queueId))
            self._inFlight[queueId] = d
            d.addErrback(lambda f, q=queueId: self.log.failure("relay attempt {id} failed", f, id=q))
            d.addBoth(lambda _, q=queueId: self._finished(q))
        self._schedule()

    def _busy(self) -> int:
        """
        Attempts that hold a slot: those in flight, less those only
        waiting for their entry's removal.
        """
        return len(self._inFlight) - len(self._settled)

    def _finished(self, queueId: str) -> None:
        """
        An attempt is over: its slot is free, and its entry is scheduled
        again if the attempt said when.
        """
        self._inFlight.pop(queueId, None)
        self._settled.discard(queueId)
        retry = self._retryAt.pop(queueId, None)
        if retry is not None:
            self._push(retry, queueId)
        self._schedule()

    # One attempt

    async def _attempt(self, queueId: str) -> None:
        fresh = self._fresh.pop(queueId, None)
        entry: QueueEntry | None
        if fresh is not None:
            # Handed over when it was queued, its marker taken then.
            entry, received = fresh
        else:
            # The in-flight marker first: while it is held, "mailhub queue
            # delete/flush" leave the entry alone.  Taking it and reading
            # the entry is one trip off the reactor thread.
            taken, entry = await self.runBlocking(self._claim, queueId)
            if not taken:
                self._retryAt[queueId] = self.clock.seconds() + BUSY_RETRY
                return
        released = False
        try:
            if entry is None:
                return  # removed, or set aside as corrupt
            if entry.done:
                released = True
                await self.runBlocking(self._removeAndRelease, queueId)
                return
            now = self.clock.seconds()
            entry = evolve(entry, attempts=entry.attempts + 1)
            entry = evolve(entry, nextAttempt=self.policy.nextAttempt(entry, now))
            if fresh is None:
                # Recorded before connecting: a crash mid-attempt never
                # retries early.
                received = await self.runBlocking(self._recordAttempt, entry)
            entry = await self._deliver(entry, received)
            released = True
            if entry.done:
                if self.writer is not None:
                    # The slot is free as soon as the outcome is known; the
                    # removal runs on the writer's removal thread.
                    self._settled.add(queueId)
                    self._schedule()
                    await self.writer.remove(queueId)
                else:
                    await self.runBlocking(self._removeAndRelease, queueId)
            else:
                await self.runBlocking(self._updateAndRelease, entry)
                self._retryAt[queueId] = entry.nextAttempt
        finally:
            if not released:
                await self.runBlocking(self.queue.clearInFlight, queueId)

    # Blocking steps, each one trip to a thread.

    def _claim(self, queueId: str) -> tuple[bool, QueueEntry | None]:
        """
        Take the entry's in-flight marker and read the entry.
        """
        if not self.queue.markInFlight(queueId):
            return False, None
        try:
            return True, self.queue.get(queueId)
        except BaseException:
            self.queue.clearInFlight(queueId)
            raise

    def _recordAttempt(self, entry: QueueEntry) -> int:
        """
        Write the attempt durably, then count the message's C{Received:}
        fields (for the loop check).
        """
        self.queue.update(entry)
        return countReceived(bounce.originalHeaders(self.queue.messagePath(entry.id)))

    def _removeAndRelease(self, queueId: str) -> None:
        try:
            self._remove(queueId)
        finally:
            self.queue.clearInFlight(queueId)

    def _updateAndRelease(self, entry: QueueEntry) -> None:
        try:
            self.queue.update(entry)
        finally:
            self.queue.clearInFlight(entry.id)

    def _remove(self, queueId: str) -> None:
        try:
            # Not waited on: a lost removal sends twice, never loses mail.
            self.queue.remove(queueId, durable=False)
        except LookupError:
            pass  # already gone ("mailhub queue delete")

    async def _deliver(self, entry: QueueEntry, received: int) -> QueueEntry:
        """
        Try every pending recipient; return the entry with the outcomes
        recorded, bounces and delay warnings sent.

        @param received: how many C{Received:} fields the message has.
        """
        path = self.queue.messagePath(entry.id)
        failedNow: list[QueuedRecipient] = []
        if received > MAX_RECEIVED:
            loop = Outcome(554, "mail loop: too many Received headers", True, "", "5.4.6")
            outcomes = {r.address: loop for r in entry.pending}
        else:
            outcomes = await self._sendAll(entry, path)
        for recipient in entry.pending:
            outcome = outcomes.get(recipient.address)
            if outcome is None:
                continue
            response = describe(outcome)
            verdict = self.policy.classify(outcome)
            if verdict == "sent":
                state = SENT
                self.log.info(
                    "sent id={id} to=<{to}> relay={mta} response={response}",
                    id=entry.id, to=recipient.address, mta=outcome.remoteMTA, response=response,
                )
            elif verdict == "failed":
                state = FAILED
                self.log.info(
                    "bounced id={id} to=<{to}> relay={mta} response={response}",
                    id=entry.id, to=recipient.address, mta=outcome.remoteMTA, response=response,
                )
            else:
                state = PENDING
                self.log.info(
                    "deferred id={id} to=<{to}> relay={mta} response={response}",
                    id=entry.id, to=recipient.address, mta=outcome.remoteMTA, response=response,
                )
            updated = evolve(recipient, state=state, response=response, remoteMTA=outcome.remoteMTA)
            entry = entry.withRecipient(updated)
            if state == FAILED:
                failedNow.append(updated)
            elif state == PENDING:
                entry = evolve(entry, lastError=response)
        now = self.clock.seconds()
        if entry.pending and self.policy.expired(entry, now):
            for recipient in entry.pending:
                updated = evolve(
                    recipient,
                    state=FAILED,
                    response=f"giving up after {entry.attempts} attempts: {recipient.response}".strip(),
                )
                entry = entry.withRecipient(updated)
                failedNow.append(updated)
                self.log.info("expired id={id} to=<{to}>", id=entry.id, to=recipient.address)
        if failedNow and bounce.shouldBounce(entry):
            await self._report(entry, failedNow, "failed")
        elif entry.pending and self.policy.shouldWarn(entry, now) and bounce.shouldBounce(entry):
            await self._report(entry, list(entry.pending), "delayed")
            entry = evolve(entry, warned=True)
        return entry

    async def _sendAll(self, entry: QueueEntry, path: str) -> dict[str, Outcome]:
        """
        One transaction per domain, at once.  When one ends with
        recipients accepted while others are still going, they are
        recorded as sent before waiting for the rest: a crash meanwhile
        does not send them again (the window between a remote's C{250}
        and its record stays one transaction long).
        """
        byDomain: dict[str, list[str]] = {}
        for recipient in entry.pending:
            byDomain.setdefault(recipient.domain, []).append(recipient.address)
        results: dict[str, Outcome] = {}
        total = len(entry.pending)
        progress = _Progress(entry)

        async def one(domain: str, addresses: list[str]) -> None:
            semaphore = self._domains.setdefault(domain, DeferredSemaphore(self.perDomain))
            await semaphore.acquire()
            try:
                outcomes = await _asDeferred(
                    self.sender.deliver(
                        domain, self.route(domain), entry.sender, addresses, path, entry.size,
                        queueId=entry.id,
                    )
                )
            except Exception as e:
                self.log.failure("delivery to {domain} failed", domain=domain)
                outcomes = {a: Outcome(0, f"local error: {e}", False, "", "4.3.0") for a in addresses}
            finally:
                semaphore.release()
                if not semaphore.waiting and semaphore.tokens == semaphore.limit:
                    self._domains.pop(domain, None)
            results.update(outcomes)
            sent = {a: o for a, o in outcomes.items() if self.policy.classify(o) == "sent"}
            if sent and len(results) < total:
                await self._recordSent(progress, sent)

        await DeferredList(
            [Deferred.fromCoroutine(one(d, a)) for d, a in byDomain.items()], consumeErrors=True
        )
        return results

    async def _recordSent(self, progress: "_Progress", sent: dict[str, Outcome]) -> None:
        """
        Record recipients as sent while the attempt goes on (under the
        entry's marker, which the attempt holds); the writes of one
        attempt are made one after another, each of everything known.
        """
        for address, outcome in sent.items():
            recipient = next(r for r in progress.entry.recipients if r.address == address)
            progress.entry = progress.entry.withRecipient(
                evolve(recipient, state=SENT, response=describe(outcome), remoteMTA=outcome.remoteMTA)
            )
        await progress.lock.acquire()
        try:
            await self.runBlocking(self.queue.update, progress.entry)
        except Exception:
            # The final record of the attempt says it all again.
            self.log.failure("recording the recipients sent so far of id={id} failed", id=progress.entry.id)
        finally:
            progress.lock.release()

    async def _report(self, entry: QueueEntry, recipients: list[QueuedRecipient], action: str) -> None:
        try:
            headers = await self.runBlocking(bounce.originalHeaders, self.queue.messagePath(entry.id))
        except OSError:
            self.log.failure("cannot read the headers of id={id} for its report", id=entry.id)
            headers = b""
        message = bounce.makeReport(
            entry,
            recipients,
            action,
            reportingMTA=self.hostname,
            now=self.clock.seconds(),
            originalHeaders=headers,
            messageId=self.newMessageId(),
            arrival=entry.created,
            retryUntil=self.policy.retryUntil(entry),
        )
        try:
            await _asDeferred(self.sendBounce(entry.sender, message))
        except Exception:
            self.log.failure("could not send the {action} report for id={id}", action=action, id=entry.id)
        else:
            self.log.info(
                "report id={id} action={action} to=<{to}>", id=entry.id, action=action, to=entry.sender
            )


class _Progress:
    """
    What one attempt has recorded so far (L{RelayManager._recordSent}).
    """

    def __init__(self, entry: QueueEntry) -> None:
        self.entry = entry
        self.lock = DeferredLock()


def _asDeferred(result: Any) -> Deferred[Any]:
    if isinstance(result, Deferred):
        return result
    if isinstance(result, Awaitable):
        return Deferred.fromCoroutine(result)  # type: ignore[arg-type]
    return succeed(result)
