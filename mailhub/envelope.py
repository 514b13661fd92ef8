# -*- test-case-name: tests.smtp.test_server -*-
"""
What a message carries besides its text: the session it came in on and its
envelope.
"""

from __future__ import annotations

from attrs import define, frozen

from mailhub.address import Address
from mailhub.directory import Resolution


@define
class Session:
    """
    What the server knows about the client, as the SMTP session goes on.

    @ivar peer: the client's IP address.
    @ivar helo: the name it gave in HELO/EHLO, or C{None} before that.
    @ivar esmtp: it said EHLO.
    @ivar tls: the connection is encrypted.
    @ivar user: the authenticated user, or C{None}.
    @ivar mayRelay: the client may send to non-local recipients.
    """

    peer: str
    helo: str | None = None
    esmtp: bool = False
    tls: bool = False
    user: str | None = None
    mayRelay: bool = False

    @property
    def protocolName(self) -> str:
        """
        The C{with} keyword of the C{Received:} header (RFC 3848).
        """
        name = "ESMTP" if self.esmtp else "SMTP"
        if self.tls:
            name += "S"
        if self.user is not None:
            name += "A"
        return name


@frozen
class Envelope:
    """
    One accepted message's envelope.

    @ivar queueId: the id the client is told and every log line carries.
    @ivar sender: the reverse-path (C{NULL_SENDER} for C{<>}).
    @ivar recipients: each recipient with where it resolved to.
    @ivar session: the session it arrived in.
    """

    queueId: str
    sender: Address
    recipients: tuple[tuple[Address, Resolution], ...]
    session: Session
