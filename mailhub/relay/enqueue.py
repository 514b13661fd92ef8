# -*- test-case-name: tests.relay.test_enqueue -*-
"""
Where the SMTP server hands mail for other domains to the relay queue, and
where delivery reports go out.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mailhub.address import NULL_SENDER, parseMailbox
from mailhub.envelope import Envelope, Session
from mailhub.errors import DeliveryError
from mailhub.maildir.delivery import Committer, MaildirDelivery
from mailhub.maildir.names import UniqueNames
from mailhub.relay.bounce import originalHeaders
from mailhub.relay.manager import countReceived
from mailhub.relay.values import QueuedRecipient, QueueEntry
from mailhub.relay.writer import QueueWriter


class Relay:
    """
    The SMTP side of relaying: C{enqueue} makes a queue entry durable,
    C{release} hands it to the manager once the whole message is accepted,
    C{cancel} takes it back when the rest of the delivery failed.

    @param clock: the reactor's clock.
    @param queue: the durable queue (blocking methods).
    @param manager: the relay manager (C{enqueued(entry)}).
    @param runBlocking: runs a blocking function off the reactor thread.
    @param writer: adds entries in batches (L{QueueWriter}); without one,
        each add runs through C{runBlocking}.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        queue: Any,
        manager: Any,
        runBlocking: Callable[..., Deferred[Any]],
        writer: QueueWriter | None = None,
    ) -> None:
        self.clock = clock
        self.queue = queue
        self.manager = manager
        self.runBlocking = runBlocking
        self.writer = writer
        #: Entries added with their marker taken for the manager: id ->
        #: the count of Received fields, until released or cancelled.
        self._claimed: dict[str, int] = {}

    async def enqueue(
        self,
        envelope: Envelope,
        content: bytes | None,
        spoolPath: str | None,
        spoolSize: int,
        recipients: list[str],
    ) -> QueueEntry:
        """
        Write the message and its envelope durably into the queue.

        @return: the entry, not yet released to the manager.
        """
        now = self.clock.seconds()
        entry = QueueEntry(
            id=envelope.queueId,
            sender=str(envelope.sender),
            recipients=tuple(QueuedRecipient(address) for address in recipients),
            created=now,
            nextAttempt=now,
            size=spoolSize,
        )
        # A new entry usually goes straight to its first attempt: written
        # with its in-flight marker taken for the manager, and handed over
        # in memory with what the attempt needs to know of the message.
        claim = bool(getattr(self.manager, "wantsFresh", lambda: False)())
        spool = spoolPath if content is None else None
        if self.writer is not None:
            received = await self.writer.add(entry, content, spool, spoolSize, claim)
        else:
            received = await self.runBlocking(self._add, entry, content, spool, spoolSize, claim)
        if claim:
            self._claimed[entry.id] = received
        return entry

    def _add(
        self, entry: QueueEntry, content: bytes | None, spoolPath: str | None, size: int, claim: bool
    ) -> int:
        """
        Add the entry (on a thread); with C{claim}, also count its
        message's C{Received:} fields for the manager's loop check.
        """
        self.queue.add(entry, content, spoolPath, size, claim=claim)
        if not claim:
            return 0
        try:
            return countReceived(originalHeaders(self.queue.messagePath(entry.id)))
        except BaseException:
            self.queue.clearInFlight(entry.id)
            raise

    def release(self, entry: QueueEntry) -> None:
        self.manager.enqueued(entry, self._claimed.pop(entry.id, None))

    def cancel(self, queueId: str) -> Deferred[None]:
        self.log.info("unqueued id={id}: the rest of the delivery failed", id=queueId)
        claimed = self._claimed.pop(queueId, None) is not None

        def remove() -> None:
            try:
                self.queue.remove(queueId)
            finally:
                if claimed:
                    self.queue.clearInFlight(queueId)

        return self.runBlocking(remove)


class ReportSender:
    """
    Delivers delivery status reports (sender C{<>}): into the sender's
    mailbox when the sender is local, through the queue otherwise.

    @param directory: resolves local addresses.
    @param committer: writes Maildir files.
    @param names: Maildir names.
    @param relay: queues reports for remote senders.
    @param newQueueId: makes queue ids.
    """

    log = Logger()

    def __init__(
        self,
        directory: Any,
        committer: Committer,
        names: UniqueNames,
        relay: Relay,
        newQueueId: Callable[[], str],
    ) -> None:
        self.directory = directory
        self.committer = committer
        self.names = names
        self.relay = relay
        self.newQueueId = newQueueId

    async def __call__(self, to: str, message: bytes) -> None:
        address = parseMailbox(to)
        try:
            resolution = self.directory.resolve(address, mayRelay=True)
        except DeliveryError as e:
            self.log.info("report to <{to}> dropped: {error}", to=to, error=str(e))
            return
        if resolution.mailboxes:
            prefix = b"Return-Path: <>\r\n"
            size = len(prefix) + len(message)
            await self.committer.submit(
                MaildirDelivery(
                    maildirs=[m.maildir for m in resolution.mailboxes],
                    names=[self.names.make(size) for _ in resolution.mailboxes],
                    prefix=prefix,
                    content=message,
                )
            )
        if resolution.remote:
            envelope = Envelope(
                queueId=self.newQueueId(),
                sender=NULL_SENDER,
                recipients=(),
                session=Session(peer="127.0.0.1"),
            )
            entry = await self.relay.enqueue(
                envelope, message, None, len(message), list(resolution.remote)
            )
            self.log.info(
                "queued report id={id} to={to}",
                id=entry.id,
                to=",".join(f"<{a}>" for a in resolution.remote),
            )
            self.relay.release(entry)
