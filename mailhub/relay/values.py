# -*- test-case-name: tests.relay.test_queue -*-
"""
The values the relay pieces hand each other: a queue entry with its
recipients, and the outcome of one delivery attempt for one recipient.

The queue (C{queue.py}) stores entries, the manager (C{manager.py}) decides
when to try, the sender (C{sender.py}) delivers one domain's recipients of
an entry in one SMTP transaction and reports an L{Outcome} per recipient,
the bounce maker (C{bounce.py}) turns failures into RFC 3464 reports.
"""

from __future__ import annotations

from attrs import evolve, frozen

PENDING = "pending"
SENT = "sent"
FAILED = "failed"


@frozen
class QueuedRecipient:
    """
    One recipient of a queued message.

    @ivar address: the envelope recipient, C{local@domain}.
    @ivar state: C{"pending"} (still to try), C{"sent"} (the remote said
        250) or C{"failed"} (bounced, or given up).
    @ivar response: the last reply or error about it, for people
        (C{"451 4.7.1 greylisted"}, C{"connection refused"}).
    @ivar remoteMTA: the host that gave C{response}, if any.
    """

    address: str
    state: str = PENDING
    response: str = ""
    remoteMTA: str = ""

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2].lower()


@frozen
class QueueEntry:
    """
    One accepted message waiting in the relay queue.

    @ivar id: the queue id (the one the client was told).
    @ivar sender: the reverse-path, C{""} for the null sender C{<>}.
    @ivar recipients: every remote recipient with its state.
    @ivar created: when it was accepted (seconds since the epoch).
    @ivar nextAttempt: when to try next.
    @ivar attempts: attempts made (recorded before each attempt starts).
    @ivar lastError: the last failure, for C{mailhub queue list}.
    @ivar warned: a delay warning has been sent to the sender.
    @ivar size: the message file's size in octets.
    """

    id: str
    sender: str
    recipients: tuple[QueuedRecipient, ...]
    created: float
    nextAttempt: float
    attempts: int = 0
    lastError: str = ""
    warned: bool = False
    size: int = 0

    @property
    def pending(self) -> tuple[QueuedRecipient, ...]:
        return tuple(r for r in self.recipients if r.state == PENDING)

    @property
    def done(self) -> bool:
        """
        Nothing left to try: every recipient is sent or failed.
        """
        return not self.pending

    def withRecipient(self, recipient: QueuedRecipient) -> "QueueEntry":
        """
        A copy with C{recipient} (matched by address) replaced.
        """
        return evolve(
            self,
            recipients=tuple(
                recipient if r.address == recipient.address else r for r in self.recipients
            ),
        )


@frozen
class Outcome:
    """
    What happened to one recipient in one attempt.

    @ivar code: the SMTP reply code (C{0} when there was no reply: DNS or
        connection failures).
    @ivar text: the reply text or the error, for people and for the
        Diagnostic-Code of a bounce.
    @ivar permanent: retrying cannot help (a 5xx, NXDOMAIN, a null MX).
    @ivar remoteMTA: the host that answered, if any.
    @ivar enhanced: the RFC 3463 status code (C{"5.1.1"}), from the reply
        or chosen for local errors.
    """

    code: int
    text: str
    permanent: bool
    remoteMTA: str = ""
    enhanced: str = ""

    @property
    def delivered(self) -> bool:
        return 200 <= self.code < 300
