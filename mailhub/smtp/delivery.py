# -*- test-case-name: tests.smtp.test_delivery -*-
"""
The delivery policy the SMTP server asks at MAIL, RCPT and end of data.

L{IMailDelivery} is what a protocol needs; L{LocalDelivery} is the MX
role's: local recipients only (mailboxes, aliases, subaddresses), delivered
durably into Maildir.  It is one courier-shaped interface: the protocol
never touches storage.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from mailhub.address import Address
from mailhub.directory import Directory, Resolution
from mailhub.envelope import Envelope, Session
from mailhub.errors import DeliveryError
from mailhub.maildir.delivery import Committer, MaildirDelivery
from mailhub.maildir.names import UniqueNames
from mailhub.spool import Spool


class IMailDelivery(Interface):
    """
    Decides who may send to whom, and delivers accepted messages.

    Unlike Twisted's C{IMessageDelivery}, which hands every line of the
    message to one C{IMessage} per recipient, the message is spooled once
    and handed over whole, so that its cost does not grow with the number
    of recipients.
    """

    def validateFrom(session: Session, sender: Address) -> Deferred[None] | None:
        """
        Accept or refuse a reverse-path (MAIL FROM).

        @raise DeliveryError: to refuse it (also as a failed Deferred).
        """

    def validateTo(session: Session, recipient: Address) -> Resolution | Deferred[Resolution]:
        """
        Accept or refuse a recipient (RCPT TO).

        @return: where it goes.
        @raise DeliveryError: to refuse it (also as a failed Deferred).
        """

    def deliver(envelope: Envelope, spool: Spool) -> Deferred[None]:
        """
        Deliver a complete message durably.  C{spool} has been finished;
        the caller discards it once the Deferred has fired.

        @return: fires once the message is safe on disk for every
            recipient; fails with L{DeliveryError} otherwise.
        """


_tempFailure = DeliveryError(False, 451, "4.3.0", "Error: local delivery failed, try again later")
_noRelay = DeliveryError(
    False, 451, "4.3.2", "Error: relaying to other domains is not available on this server yet"
)
_notYourAddress = DeliveryError(
    True, 553, "5.7.1", "Sender address rejected: not owned by the authenticated user"
)


@implementer(IMailDelivery)
class LocalDelivery:
    """
    Delivers to local mailboxes, never relays.

    @param directory: resolves recipients.
    @param committer: writes Maildir files durably.
    @param names: makes unique Maildir names.
    @param relay: queues mail for other domains (C{enqueue}, C{cancel},
        C{release}), or C{None} where there is no relay.
    """

    log = Logger()

    def __init__(
        self,
        directory: Directory,
        committer: Committer,
        names: UniqueNames,
        relay: Any = None,
    ) -> None:
        self.directory = directory
        self.committer = committer
        self.names = names
        self.relay = relay

    def validateFrom(self, session: Session, sender: Address) -> None:
        return None

    def validateTo(self, session: Session, recipient: Address) -> Resolution:
        # Clients allowed to relay (trusted networks, authenticated users)
        # learn that relaying is not there yet; strangers that it is denied.
        resolution = self.directory.resolve(recipient, mayRelay=session.mayRelay)
        if resolution.remote and self.relay is None:
            raise _noRelay
        return resolution

    def deliver(self, envelope: Envelope, spool: Spool) -> Deferred[None]:
        try:
            content = spool.finish()
        except OSError:
            self.log.failure("spool close failed id={queueId}", queueId=envelope.queueId)
            return fail(_tempFailure)
        remote: dict[str, None] = {}
        for _, resolution in envelope.recipients:
            for address in resolution.remote:
                remote[address] = None
        if not remote:
            return self._deliverLocal(envelope, spool, content)
        if self.relay is None:
            return fail(_noRelay)
        return Deferred.fromCoroutine(self._deliverBoth(envelope, spool, content, list(remote)))

    async def _deliverBoth(
        self, envelope: Envelope, spool: Spool, content: bytes | None, remote: list[str]
    ) -> None:
        """
        Queue the remote recipients, then deliver the local ones; if the
        local part fails the queue entry is taken back, so that the
        client's retry does not send twice.
        """
        try:
            entry = await self.relay.enqueue(envelope, content, spool.path, spool.size, remote)
        except Exception:
            self.log.failure("queueing failed id={queueId}", queueId=envelope.queueId)
            raise _tempFailure from None
        if any(resolution.mailboxes for _, resolution in envelope.recipients):
            try:
                await self._deliverLocal(envelope, spool, content)
            except BaseException:
                await self.relay.cancel(envelope.queueId)
                raise
        self.relay.release(entry)

    def _deliverLocal(self, envelope: Envelope, spool: Spool, content: bytes | None) -> Deferred[None]:
        mailboxes = {}
        for _, resolution in envelope.recipients:
            for mailbox in resolution.mailboxes:
                mailboxes.setdefault(mailbox.maildir, mailbox)
        sender = str(envelope.sender)
        # RFC 5321 §4.4: the final delivery adds Return-Path.
        prefix = b"Return-Path: <" + sender.encode("ascii", "replace") + b">\r\n"
        size = len(prefix) + spool.size
        job = MaildirDelivery(
            maildirs=list(mailboxes),
            names=[self.names.make(size) for _ in mailboxes],
            prefix=prefix,
            content=content,
            spoolPath=spool.path,
            spoolSize=spool.size,
        )

        def delivered(result: Any) -> None:
            for mailbox in mailboxes.values():
                self.log.info(
                    "delivered id={queueId} to=<{to}> size={size}",
                    queueId=envelope.queueId,
                    to=mailbox.address,
                    size=size,
                )

        def failed(reason: Failure) -> Failure:
            self.log.failure(
                "delivery failed id={queueId}", reason, queueId=envelope.queueId
            )
            return Failure(_tempFailure)

        return self.committer.submit(job).addCallbacks(delivered, failed)


@implementer(IMailDelivery)
class SubmissionDelivery(LocalDelivery):
    """
    The delivery avatar of an authenticated user (submission, RFC 6409):
    may send only as their own address, an alias that reaches them, or
    the addresses the user file allows them (C{senders=} field).

    @param user: the user's address, lower case.
    @param senders: more addresses this user may send as; C{"*"} among
        them allows any.
    """

    def __init__(
        self,
        directory: Directory,
        committer: Committer,
        names: UniqueNames,
        user: str,
        senders: tuple[str, ...] = (),
        relay: Any = None,
    ) -> None:
        super().__init__(directory, committer, names, relay)
        self.user = user
        self.senders = frozenset(s.lower() for s in senders)

    def validateFrom(self, session: Session, sender: Address) -> None:
        if not sender.local and not sender.domain:
            return None  # <>: delivery reports, vacation replies
        address = sender.key
        if address == self.user or "*" in self.senders or address in self.senders:
            return None
        if self.directory.reaches(address, self.user):
            return None
        raise _notYourAddress
