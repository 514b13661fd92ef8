"""
Tests for L{mailhub.smtp.server}: the ESMTP protocol driven through a
L{StringTransport} and a L{Clock}, no sockets.
"""

from __future__ import annotations

import os
import re

from attrs import evolve
from hypothesis import given, settings, strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import ITLSTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mailhub.address import Address
from mailhub.config import Limits
from mailhub.directory import Resolution
from mailhub.envelope import Envelope, Session
from mailhub.errors import DeliveryError
from mailhub.smtp.delivery import IMailDelivery
from mailhub.smtp.server import ESMTPServer, SMTPFactory, _hasLongLine
from mailhub.spool import Spool


@implementer(IMailDelivery)
class RecordingDelivery:
    """
    A delivery policy that accepts C{*@example.test} except C{unknown@},
    and records each delivered message.
    """

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, bytes]] = []
        self.held: list[Deferred[None]] = []
        self.hold = False
        self.failure: BaseException | None = None

    def validateFrom(self, session: Session, sender: Address) -> None:
        return None

    def validateTo(self, session: Session, recipient: Address) -> Resolution:
        if recipient.domain not in ("example.test", ""):
            raise DeliveryError(True, 550, "5.7.1", "Relay access denied")
        if recipient.local == "unknown":
            raise DeliveryError(True, 550, "5.1.1", "User unknown")
        return Resolution()

    def deliver(self, envelope: Envelope, spool: Spool) -> Deferred[None]:
        content = spool.finish()
        if content is None:
            assert spool.path is not None
            with open(spool.path, "rb") as f:
                content = f.read()
        self.messages.append((envelope, content))
        if self.failure is not None:
            return fail(self.failure)
        if self.hold:
            d: Deferred[None] = Deferred()
            self.held.append(d)
            return d
        return succeed(None)


@implementer(ITLSTransport)
class TLSStringTransport(StringTransport):
    """
    A string transport that records STARTTLS.
    """

    tlsStarted = None

    def startTLS(self, contextFactory: object) -> None:
        self.tlsStarted = contextFactory


PEER = IPv4Address("TCP", "192.0.2.7", 40000)

_DATE_LINE = re.compile(rb"\t\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d \+0000\Z")


class ServerTestsMixin:
    limits = Limits(peerLimitExempt=())

    def setUp(self) -> None:
        self.clock = Clock()
        self.delivery = RecordingDelivery()
        self.spoolDir = self.mktemp()
        os.makedirs(self.spoolDir)
        self.ids = iter(f"Q{n:04d}" for n in range(1, 10000))
        self.contextFactory = object()
        self.factory = SMTPFactory(
            hostname="mx.test",
            delivery=self.delivery,
            limits=self.limits,
            clock=self.clock,
            newQueueId=lambda: next(self.ids),
            newSpool=lambda queueId: Spool(self.spoolDir, queueId, threshold=4096),
            contextFactory=self.contextFactory,
            describeTLS=lambda transport: "using TLSv1.3 with cipher TEST (256/256 bits)",
        )
        self.clock.advance(1795700000)
        self.server, self.transport = self.connect()

    def connect(self) -> tuple[ESMTPServer, TLSStringTransport]:
        server = self.factory.buildProtocol(PEER)
        transport = TLSStringTransport(peerAddress=PEER)
        server.makeConnection(transport)
        return server, transport

    def replies(self, transport: StringTransport | None = None) -> list[str]:
        """
        The reply lines sent since the last call.
        """
        transport = transport or self.transport
        lines = transport.value().decode("utf-8").split("\r\n")
        transport.clear()
        return [line for line in lines if line]

    def send(self, data: bytes, transport: StringTransport | None = None) -> list[str]:
        self.server.dataReceived(data)
        return self.replies(transport)

    def codes(self, data: bytes) -> list[str]:
        """
        The reply codes (last line of each reply) that C{data} causes.
        """
        return [line[:3] for line in self.send(data) if line[3:4] == " "]

    def greet(self) -> None:
        self.replies()
        self.assertEqual(self.codes(b"EHLO client.test\r\n"), ["250"])

    def transaction(self, body: bytes, *, recipients: int = 1) -> list[str]:
        """
        Send one message; return the reply codes.
        """
        commands = b"MAIL FROM:<sender@remote.test>\r\n"
        commands += b"RCPT TO:<user@example.test>\r\n" * recipients
        return self.codes(commands + b"DATA\r\n" + body)

    def storedBody(self, index: int = -1) -> bytes:
        """
        A delivered message without the Received header mailhub added.
        """
        content = self.delivery.messages[index][1]
        # The Received header ends with its date line.
        lines = content.split(b"\r\n")
        end = next(i for i, line in enumerate(lines) if _DATE_LINE.match(line)) + 1
        return b"\r\n".join(lines[end:])


class ConversationTests(ServerTestsMixin, SynchronousTestCase):
    """
    The commands of RFC 5321 and the extensions mailhub advertises.
    """

    def test_greeting(self) -> None:
        """
        The greeting is 220 with the host name.
        """
        self.assertEqual(self.replies(), ["220 mx.test ESMTP mailhub"])

    def test_ehloAdvertisesExtensions(self) -> None:
        """
        EHLO lists PIPELINING, SIZE with the limit, STARTTLS,
        ENHANCEDSTATUSCODES and 8BITMIME.
        """
        self.replies()
        lines = self.send(b"EHLO client.test\r\n")
        self.assertEqual(
            lines,
            [
                "250-mx.test",
                "250-PIPELINING",
                f"250-SIZE {self.limits.messageSize}",
                "250-STARTTLS",
                "250-ENHANCEDSTATUSCODES",
                "250 8BITMIME",
            ],
        )

    def test_heloIsPlain(self) -> None:
        """
        HELO answers one line and the session is not ESMTP.
        """
        self.replies()
        self.assertEqual(self.send(b"HELO client.test\r\n"), ["250 mx.test"])
        self.assertFalse(self.server.session.esmtp)

    def test_heloNeedsArgument(self) -> None:
        """
        HELO and EHLO without a domain are syntax errors.
        """
        self.replies()
        self.assertEqual(self.codes(b"HELO\r\nEHLO\r\n"), ["501", "501"])

    def test_mailBeforeHelo(self) -> None:
        """
        Regression: Twisted accepts MAIL before HELO/EHLO; mailhub answers
        503 5.5.1.
        """
        self.replies()
        self.assertEqual(
            self.send(b"MAIL FROM:<a@remote.test>\r\n"),
            ["503 5.5.1 Error: send HELO/EHLO first"],
        )

    def test_noop(self) -> None:
        """
        Regression: Twisted has no NOOP; RFC 5321 §4.1.1.9 requires it.
        """
        self.replies()
        self.assertEqual(self.send(b"NOOP\r\nNOOP ignored\r\n"), ["250 2.0.0 Ok"] * 2)

    def test_vrfy(self) -> None:
        """
        Regression: Twisted has no VRFY; mailhub answers 252 (RFC 5321
        §3.5.3) without saying whether the user exists.
        """
        self.greet()
        self.assertEqual(
            self.send(b"VRFY user@example.test\r\n"),
            ["252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery"],
        )
        self.assertEqual(self.codes(b"VRFY\r\n"), ["501"])

    def test_expnHelpRset(self) -> None:
        """
        EXPN is not implemented (502); HELP is 214; RSET is 250.
        """
        self.greet()
        self.assertEqual(self.codes(b"EXPN list\r\nHELP\r\nRSET\r\n"), ["502", "214", "250"])

    def test_quit(self) -> None:
        """
        QUIT answers 221 2.0.0 and closes.
        """
        self.greet()
        self.assertEqual(self.send(b"QUIT\r\n"), ["221 2.0.0 Bye"])
        self.assertTrue(self.transport.disconnecting)

    def test_unknownCommand(self) -> None:
        """
        An unknown command is 500 5.5.2 and the session goes on.
        """
        self.greet()
        self.assertEqual(self.codes(b"FROB\r\nNOOP\r\n"), ["500", "250"])

    def test_binaryGarbage(self) -> None:
        """
        Binary garbage is answered with an error, not a traceback, and the
        session goes on.
        """
        self.greet()
        codes = self.codes(b"\x00\xff\xfe\x80garbage\r\nMAIL FROM:<\xff@x>\r\n\r\nNOOP\r\n")
        self.assertEqual(codes, ["500", "501", "500", "250"])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_httpRequestDisconnects(self) -> None:
        """
        A web request on the SMTP port is answered 421 and dropped.
        """
        self.replies()
        self.assertEqual(self.codes(b"GET / HTTP/1.1\r\nHost: x\r\n"), ["421"])
        self.assertTrue(self.transport.disconnecting)

    def test_mailSyntax(self) -> None:
        """
        Malformed MAIL and RCPT are 501 with the enhanced code of the
        address; a space after the colon is tolerated.
        """
        self.greet()
        self.assertEqual(self.codes(b"MAIL <a@b.test>\r\n"), ["501"])
        self.assertEqual(self.send(b"MAIL FROM:<a@@b>\r\n"), ["501 5.1.7 Bad sender address syntax"])
        self.assertEqual(self.codes(b"MAIL FROM: <a@remote.test>\r\n"), ["250"])
        self.assertEqual(
            self.send(b"RCPT TO:<bad address>\r\n"), ["501 5.1.3 Bad recipient address syntax"]
        )

    def test_nullSender(self) -> None:
        """
        The null reverse-path <> is accepted (bounces use it).
        """
        self.greet()
        codes = self.codes(b"MAIL FROM:<>\r\nRCPT TO:<user@example.test>\r\nDATA\r\nhi\r\n.\r\n")
        self.assertEqual(codes, ["250", "250", "354", "250"])
        self.assertEqual(str(self.delivery.messages[0][0].sender), "")

    def test_postmasterWithoutDomain(self) -> None:
        """
        RCPT TO:<postmaster> is accepted (RFC 5321 §4.1.1.3).
        """
        self.greet()
        self.assertEqual(self.codes(b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<Postmaster>\r\n"), ["250", "250"])

    def test_nestedMail(self) -> None:
        """
        A second MAIL in a transaction is 503.
        """
        self.greet()
        self.assertEqual(
            self.codes(b"MAIL FROM:<a@remote.test>\r\nMAIL FROM:<a@remote.test>\r\n"),
            ["250", "503"],
        )

    def test_orderErrors(self) -> None:
        """
        RCPT before MAIL and DATA before RCPT are 503 5.5.1 / 554 5.5.1.
        """
        self.greet()
        self.assertEqual(self.send(b"RCPT TO:<user@example.test>\r\n"), ["503 5.5.1 Error: need MAIL command"])
        self.assertEqual(self.codes(b"DATA\r\n"), ["503"])
        self.assertEqual(self.codes(b"MAIL FROM:<a@remote.test>\r\nDATA\r\n"), ["250", "554"])

    def test_recipientRejections(self) -> None:
        """
        The policy's refusals reach the client with their codes: unknown
        user 550 5.1.1, relaying 550 5.7.1 (never an open relay).
        """
        self.greet()
        self.send(b"MAIL FROM:<a@remote.test>\r\n")
        self.assertEqual(self.send(b"RCPT TO:<unknown@example.test>\r\n"), ["550 5.1.1 User unknown"])
        self.assertEqual(self.send(b"RCPT TO:<victim@elsewhere.test>\r\n"), ["550 5.7.1 Relay access denied"])

    def test_unknownParameters(self) -> None:
        """
        MAIL and RCPT parameters mailhub does not advertise are 555 5.5.4.
        """
        self.greet()
        self.assertEqual(self.codes(b"MAIL FROM:<a@remote.test> FROB=1\r\n"), ["555"])
        self.assertEqual(self.codes(b"MAIL FROM:<a@remote.test> BODY=BINARYMIME\r\n"), ["501"])
        self.assertEqual(self.codes(b"MAIL FROM:<a@remote.test> BODY=8BITMIME AUTH=<>\r\n"), ["250"])
        self.assertEqual(self.codes(b"RCPT TO:<user@example.test> NOTIFY=NEVER\r\n"), ["555"])

    def test_eightBitMessage(self) -> None:
        """
        8BITMIME: 8-bit text is stored byte for byte.
        """
        self.greet()
        body = "Subject: caf\u00e9\r\n\r\nna\u00efve \u00fcber\r\n".encode("utf-8")
        self.codes(b"MAIL FROM:<a@remote.test> BODY=8BITMIME\r\n")
        self.assertEqual(
            self.codes(b"RCPT TO:<user@example.test>\r\nDATA\r\n" + body + b".\r\n"),
            ["250", "354", "250"],
        )
        self.assertEqual(self.storedBody(), body)

    def test_tooManyRecipients(self) -> None:
        """
        Past the recipient limit RCPT is 452 4.5.3 (RFC 5321 §4.5.3.1.10),
        and the accepted ones still get the message.
        """
        self.factory.limits = evolve(self.limits, recipients=2)
        self.greet()
        codes = self.transaction(b"hi\r\n.\r\n", recipients=3)
        self.assertEqual(codes, ["250", "250", "250", "452", "354", "250"])
        self.assertEqual(len(self.delivery.messages[0][0].recipients), 2)

    def test_tooManyErrors(self) -> None:
        """
        After the error limit the client is told 421 4.7.0 and dropped.
        """
        self.factory.limits = evolve(self.limits, errors=3)
        self.greet()
        self.assertEqual(self.codes(b"FROB\r\nFROB\r\nFROB\r\nNOOP\r\n"), ["500", "500", "500", "421"])
        self.assertTrue(self.transport.disconnecting)

    def test_idleTimeout(self) -> None:
        """
        A silent client is told 421 4.4.2 after the idle timeout and
        dropped; activity resets the timer.
        """
        self.greet()
        self.clock.advance(self.limits.idleTimeout - 1)
        self.send(b"NOOP\r\n")
        self.clock.advance(self.limits.idleTimeout - 1)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(1)
        self.assertEqual(self.replies(), ["421 4.4.2 mx.test Error: timeout exceeded"])
        self.assertTrue(self.transport.disconnecting)

    def test_noDelayedCallsAfterDisconnect(self) -> None:
        """
        A closed session leaves nothing scheduled.
        """
        self.greet()
        self.server.connectionLost(None)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_queuedReply(self) -> None:
        """
        The message is delivered and the client hears its queue id.
        """
        self.greet()
        self.assertEqual(self.transaction(b"Subject: x\r\n\r\nhello\r\n.\r\n"), ["250", "250", "354", "250"])
        envelope, content = self.delivery.messages[0]
        self.assertEqual(envelope.queueId, "Q0001")
        self.assertEqual(self.storedBody(), b"Subject: x\r\n\r\nhello\r\n")

    def test_queuedReplyText(self) -> None:
        """
        The 250 after DATA names the queue id.
        """
        self.greet()
        lines = self.send(
            b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\nhi\r\n.\r\n"
        )
        self.assertEqual(lines[-1], "250 2.0.0 Ok: queued as Q0001")

    def test_receivedHeader(self) -> None:
        """
        The Received header of RFC 5321 §4.4: the HELO name, the peer
        address, this host, the protocol, the id, the recipient, the date.
        """
        self.greet()
        self.transaction(b"hi\r\n.\r\n")
        content = self.delivery.messages[0][1]
        self.assertEqual(
            content.split(b"\r\n")[:4],
            [
                b"Received: from client.test ([192.0.2.7])",
                b"\tby mx.test (mailhub) with ESMTP id Q0001",
                b"\tfor <user@example.test>;",
                b"\tThu, 26 Nov 2026 13:33:20 +0000",
            ],
        )

    def test_receivedHeaderSeveralRecipients(self) -> None:
        """
        With several recipients the Received header names none of them.
        """
        self.greet()
        self.transaction(b"hi\r\n.\r\n", recipients=2)
        self.assertNotIn(b"for <", self.delivery.messages[0][1].split(b"\r\n\r\n")[0])

    def test_temporaryFailureAfterData(self) -> None:
        """
        Regression: Twisted turns every failure after DATA into a permanent
        550.  A temporary failure is 451 4.3.0, so the client retries.
        """
        self.delivery.failure = DeliveryError(False, 451, "4.3.0", "try again")
        self.greet()
        self.assertEqual(self.transaction(b"hi\r\n.\r\n")[-1], "451")

    def test_unexpectedFailureAfterDataIsTemporary(self) -> None:
        """
        An unexpected exception in delivery is logged and answered 451
        4.3.0, never 550 and never a traceback to the peer.
        """
        self.delivery.failure = RuntimeError("disk on fire")
        self.greet()
        lines = self.send(
            b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\nhi\r\n.\r\n"
        )
        self.assertEqual(lines[-1], "451 4.3.0 Error: queue file write error")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_permanentFailureAfterData(self) -> None:
        """
        A permanent failure keeps its own code.
        """
        self.delivery.failure = DeliveryError(True, 554, "5.6.0", "no")
        self.greet()
        self.assertEqual(self.transaction(b"hi\r\n.\r\n")[-1], "554")

    def test_dataArgumentRefused(self) -> None:
        """
        DATA takes no argument.
        """
        self.greet()
        self.assertEqual(self.codes(b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<user@example.test>\r\nDATA x\r\n"), ["250", "250", "501"])

    def test_authNotOffered(self) -> None:
        """
        AUTH is not enabled on the MX listener.
        """
        self.greet()
        self.assertEqual(self.codes(b"AUTH PLAIN AGFAYg==\r\n"), ["503"])


class PipeliningTests(ServerTestsMixin, SynchronousTestCase):
    """
    RFC 2920: commands sent in one go are answered in order, even when one
    of them waits for the disk.
    """

    def test_groupAnsweredInOrder(self) -> None:
        """
        MAIL, RCPT, RCPT and DATA in one write get four replies in order.
        """
        self.greet()
        codes = self.codes(
            b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<user@example.test>\r\n"
            b"RCPT TO:<unknown@example.test>\r\nDATA\r\n"
        )
        self.assertEqual(codes, ["250", "250", "550", "354"])

    def test_commandsWaitForDelivery(self) -> None:
        """
        Commands after the end of data wait until the message is safe: the
        250 comes first, then the answers to what followed.
        """
        self.delivery.hold = True
        self.greet()
        codes = self.codes(
            b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\n"
            b"hi\r\n.\r\nMAIL FROM:<b@remote.test>\r\nQUIT\r\n"
        )
        self.assertEqual(codes, ["250", "250", "354"])
        self.delivery.held[0].callback(None)
        self.assertEqual(self.codes(b""), ["250", "250", "221"])

    def test_floodWhileBlockedPausesReading(self) -> None:
        """
        While a reply is pending, a client that keeps sending is paused
        rather than buffered without bound.
        """
        self.delivery.hold = True
        self.greet()
        self.transaction(b"hi\r\n.\r\n")
        self.server.dataReceived(b"NOOP\r\n" * 60000)
        self.assertEqual(self.transport.producerState, "paused")
        self.delivery.held[0].callback(None)
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual(self.codes(b"").count("250"), 60001)


class StartTLSTests(ServerTestsMixin, SynchronousTestCase):
    """
    STARTTLS (RFC 3207).
    """

    def test_startTLS(self) -> None:
        """
        STARTTLS is answered 220 2.0.0 and TLS starts with the configured
        options.
        """
        self.greet()
        self.assertEqual(self.send(b"STARTTLS\r\n"), ["220 2.0.0 Ready to start TLS"])
        self.assertIs(self.transport.tlsStarted, self.contextFactory)
        self.assertTrue(self.server.session.tls)

    def test_pipelinedCommandsDiscarded(self) -> None:
        """
        Regression: Twisted runs plaintext commands pipelined after
        STARTTLS inside the TLS session (the CVE-2011-0411 class).  They are
        discarded (RFC 3207 §4.2).
        """
        self.greet()
        lines = self.send(b"STARTTLS\r\nMAIL FROM:<attacker@remote.test>\r\nRCPT TO:<user@example.test>\r\n")
        self.assertEqual(lines, ["220 2.0.0 Ready to start TLS"])
        # The injected MAIL did not happen: a RCPT now needs a MAIL first.
        self.assertEqual(self.codes(b"EHLO client.test\r\nRCPT TO:<user@example.test>\r\n"), ["250", "503"])

    def test_transactionDoesNotSurviveStartTLS(self) -> None:
        """
        Regression: in Twisted the mail transaction survives STARTTLS.  All
        state is forgotten, even the HELO.
        """
        self.greet()
        self.codes(b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<user@example.test>\r\n")
        self.send(b"STARTTLS\r\n")
        self.assertEqual(self.codes(b"DATA\r\n"), ["503"])
        self.assertEqual(self.codes(b"MAIL FROM:<a@remote.test>\r\n"), ["503"])

    def test_ehloAfterTLS(self) -> None:
        """
        After TLS, EHLO no longer offers STARTTLS and the Received header
        says ESMTPS with the TLS details.
        """
        self.greet()
        self.send(b"STARTTLS\r\n")
        lines = self.send(b"EHLO client.test\r\n")
        self.assertNotIn("250-STARTTLS", lines)
        self.transaction(b"hi\r\n.\r\n")
        head = self.delivery.messages[0][1].split(b"\r\n")[:3]
        self.assertEqual(head[1], b"\t(using TLSv1.3 with cipher TEST (256/256 bits))")
        self.assertEqual(head[2], b"\tby mx.test (mailhub) with ESMTPS id Q0001")

    def test_startTLSTwice(self) -> None:
        """
        A second STARTTLS is 503.
        """
        self.greet()
        self.send(b"STARTTLS\r\n")
        self.assertEqual(self.codes(b"EHLO c.test\r\nSTARTTLS\r\n"), ["250", "503"])

    def test_startTLSUnavailable(self) -> None:
        """
        Without TLS options STARTTLS is neither offered nor accepted (454).
        """
        self.factory.contextFactory = None
        server, transport = self.connect()
        self.server = server
        self.replies(transport)
        server.dataReceived(b"EHLO c.test\r\nSTARTTLS\r\n")
        lines = self.replies(transport)
        self.assertNotIn("250-STARTTLS", lines)
        self.assertEqual(lines[-1], "454 4.7.0 TLS not available")


class FramingTests(ServerTestsMixin, SynchronousTestCase):
    """
    Lines, message text and the classic attacks on them.
    """

    limits = Limits(peerLimitExempt=(), lineLength=1000, messageSize=64 * 1024)

    def test_commandLineTooLong(self) -> None:
        """
        A command line over the limit is 500 5.5.2 and the session goes on.
        """
        self.greet()
        lines = self.send(b"NOOP " + b"x" * 2000 + b"\r\nNOOP\r\n")
        self.assertEqual(lines, ["500 5.5.2 Error: line too long", "250 2.0.0 Ok"])

    def test_endlessLineMemoryBounded(self) -> None:
        """
        Regression: 64 MiB without a line break stalls Twisted's reactor
        and grows its memory.  mailhub keeps at most one line's worth and
        answers 500 5.5.2 once the line ends.
        """
        self.greet()
        chunk = b"A" * 65536
        for _ in range(1024):
            self.server.dataReceived(chunk)
            self.assertLessEqual(len(self.server._input), 65536)
        self.assertEqual(self.send(b"\r\nNOOP\r\n"), ["500 5.5.2 Error: line too long", "250 2.0.0 Ok"])

    def test_longLineInDataStaysInData(self) -> None:
        """
        Regression (body smuggling): in Twisted a line over 16 KiB inside
        DATA drops back to command mode and the rest of the text runs as
        commands.  mailhub stays in DATA until <CRLF>.<CRLF>, refuses the
        message with 500 5.5.2, and runs none of the text.
        """
        self.greet()
        body = (
            b"Subject: x\r\n\r\n" + b"y" * 20000 + b"\r\n"
            b"MAIL FROM:<evil@remote.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\nevil\r\n.\r\n"
        )
        self.assertEqual(self.transaction(body), ["250", "250", "354", "500"])
        self.assertEqual(self.delivery.messages, [])
        self.assertEqual(self.codes(b"NOOP\r\n"), ["250"])

    def test_endlessLineInData(self) -> None:
        """
        Megabytes without a line break inside DATA keep memory bounded and
        end in one 500 5.5.2 at the end of the message.
        """
        self.greet()
        self.transaction(b"Subject: x\r\n\r\n")
        for _ in range(64):
            self.server.dataReceived(b"z" * 65536)
            self.assertLessEqual(len(self.server._input), 65536)
        self.assertEqual(self.codes(b"\r\n.\r\n"), ["500"])
        self.assertEqual(os.listdir(self.spoolDir), [])

    def test_lineLengthBoundary(self) -> None:
        """
        Among other lines, a line of exactly the limit (without its CRLF)
        is accepted, one octet more is refused, wherever it is.
        """
        self.greet()
        short = b"s" * 70 + b"\r\n"
        exact = short * 3 + b"e" * 1000 + b"\r\n" + short * 3
        self.assertEqual(self.transaction(exact + b".\r\n")[-1], "250")
        for over in (b"o" * 1001 + b"\r\n" + short, short * 3 + b"o" * 1001 + b"\r\n"):
            self.assertEqual(self.transaction(over + b".\r\n")[-1], "500")

    @given(
        st.integers(min_value=1, max_value=60),
        st.lists(st.integers(min_value=0, max_value=130), max_size=12),
        st.booleans(),
    )
    def test_hasLongLine(self, lineLength: int, lengths: list[int], lastEnds: bool) -> None:
        """
        The long-line check says what splitting the text into lines says.
        """
        text = b"\n".join(b"x" * n for n in lengths) + (b"\n" if lastEnds else b"")
        expected = max(map(len, text.split(b"\n"))) > lineLength + 1
        self.assertEqual(_hasLongLine(text, lineLength), expected)

    def test_lineUnderLimitAccepted(self) -> None:
        """
        A line longer than RFC 5321's 998 but under the limit is accepted.
        """
        self.factory.limits = evolve(self.limits, lineLength=5000)
        self.greet()
        line = b"k" * 4000
        self.assertEqual(self.transaction(line + b"\r\n.\r\n")[-1], "250")
        self.assertEqual(self.storedBody(), line + b"\r\n")

    def test_messageTooBigWithoutSize(self) -> None:
        """
        A message over the size limit is 552 5.3.4 even when the client
        declared no SIZE; nothing is delivered and the spool is emptied.
        """
        self.greet()
        body = (b"x" * 70 + b"\r\n") * 2000
        self.assertEqual(self.transaction(body + b".\r\n")[-1], "552")
        self.assertEqual(self.delivery.messages, [])
        self.assertEqual(os.listdir(self.spoolDir), [])

    def test_messageTooBigLyingSize(self) -> None:
        """
        A client that declares a small SIZE and sends more is refused too.
        """
        self.greet()
        self.codes(b"MAIL FROM:<a@remote.test> SIZE=100\r\n")
        body = (b"x" * 70 + b"\r\n") * 2000
        codes = self.codes(b"RCPT TO:<user@example.test>\r\nDATA\r\n" + body + b".\r\n")
        self.assertEqual(codes, ["250", "354", "552"])

    def test_declaredSizeTooBig(self) -> None:
        """
        SIZE over the limit is refused at MAIL (RFC 1870 §6.2).
        """
        self.greet()
        self.assertEqual(
            self.send(b"MAIL FROM:<a@remote.test> SIZE=999999999\r\n"),
            ["552 5.3.4 Message size exceeds fixed limit"],
        )

    def test_bigMessageSpills(self) -> None:
        """
        A message larger than the spill threshold goes through a spool file
        and arrives intact; the spool file is removed afterwards.
        """
        self.greet()
        body = b"".join(b"line %05d\r\n" % i for i in range(3000))
        self.assertEqual(self.transaction(body + b".\r\n")[-1], "250")
        self.assertEqual(self.storedBody(), body)
        self.assertEqual(os.listdir(self.spoolDir), [])

    def test_disconnectMidData(self) -> None:
        """
        A client that disconnects in DATA delivers nothing and leaves no
        spool file.
        """
        self.greet()
        body = b"".join(b"line %05d\r\n" % i for i in range(3000))
        self.transaction(body)
        self.assertNotEqual(os.listdir(self.spoolDir), [])
        self.server.connectionLost(None)
        self.assertEqual(self.delivery.messages, [])
        self.assertEqual(os.listdir(self.spoolDir), [])

    def test_dotUnstuffing(self) -> None:
        """
        RFC 5321 §4.5.2: the leading dot of a line is removed.
        """
        self.greet()
        self.transaction(b"..one\r\n.two\r\n...\r\n.\r\n")
        self.assertEqual(self.storedBody(), b".one\r\ntwo\r\n..\r\n")

    def test_emptyMessage(self) -> None:
        """
        A message with no text at all is the Received header alone.
        """
        self.greet()
        self.assertEqual(self.transaction(b".\r\n")[-1], "250")
        self.assertEqual(self.storedBody(), b"")

    def test_bareLineFeedsStoredAsCRLF(self) -> None:
        """
        Bare LF ends a line of text; it is stored as CRLF.
        """
        self.greet()
        self.transaction(b"Subject: x\n\nbody\nmore\r\n.\r\n")
        self.assertEqual(self.storedBody(), b"Subject: x\r\n\r\nbody\r\nmore\r\n")

    def smuggle(self, terminator: bytes) -> None:
        self.greet()
        body = (
            b"Subject: legit\r\n\r\nhello" + terminator + b"MAIL FROM:<evil@remote.test>\r\n"
            b"RCPT TO:<user@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\n.\r\n"
        )
        self.assertEqual(self.transaction(body), ["250", "250", "354", "250"])
        self.assertEqual(len(self.delivery.messages), 1)
        self.assertIn(b"Subject: smuggled", self.delivery.messages[0][1])

    def test_smugglingBareLFDotBareLF(self) -> None:
        """
        Regression (SMTP smuggling): <LF>.<LF> does not end DATA.
        """
        self.smuggle(b"\n.\n")

    def test_smugglingCRLFDotLF(self) -> None:
        """
        Regression (SMTP smuggling): <CRLF>.<LF> does not end DATA.
        """
        self.smuggle(b"\r\n.\n")

    def test_smugglingLFDotCRLF(self) -> None:
        """
        Regression (SMTP smuggling): <LF>.<CRLF> does not end DATA.
        """
        self.smuggle(b"\n.\r\n")

    def test_smugglingCRDotCR(self) -> None:
        """
        Regression (SMTP smuggling): <CR>.<CR> and <CR>.<CRLF> do not end DATA.
        """
        self.smuggle(b"\r.\r")
        self.delivery.messages.clear()
        self.smuggle(b"\r.\r\n")

    def test_terminatorSplitAcrossWrites(self) -> None:
        """
        <CRLF>.<CRLF> split over several reads still ends the message.
        """
        self.greet()
        self.transaction(b"hi\r")
        for piece in (b"\n", b".", b"\r", b"\n"):
            self.server.dataReceived(piece)
        self.assertEqual(self.replies()[-1], "250 2.0.0 Ok: queued as Q0001")
        self.assertEqual(self.storedBody(), b"hi\r\n")

    @settings(max_examples=60, deadline=None)
    @given(
        lines=st.lists(
            st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
            max_size=30,
        ),
        cuts=st.lists(st.integers(min_value=1, max_value=50), max_size=40),
    )
    def test_anyChunkingSameMessage(self, lines: list[bytes], cuts: list[int]) -> None:
        """
        Property: a dot-stuffed message fed in any chunking is stored as the
        original text.
        """
        self.tearDownHypothesis()
        text = b"".join(line + b"\r\n" for line in lines)
        stuffed = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)
        wire = (
            b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\n"
            + stuffed
            + b".\r\n"
        )
        self.greet()
        position = 0
        for cut in cuts:
            self.server.dataReceived(wire[position : position + cut])
            position += cut
        self.server.dataReceived(wire[position:])
        self.assertEqual(self.replies()[-1], "250 2.0.0 Ok: queued as " + self.delivery.messages[-1][0].queueId)
        self.assertEqual(self.storedBody(), text)

    def tearDownHypothesis(self) -> None:
        # Each example starts a fresh session.
        self.delivery.messages.clear()
        self.server.connectionLost(None)
        self.server, self.transport = self.connect()


class FactoryTests(ServerTestsMixin, SynchronousTestCase):
    """
    The factory: connection limits per peer.
    """

    limits = Limits(peerLimitExempt=(), connectionsPerPeer=2)

    def test_perPeerLimit(self) -> None:
        """
        Over the limit a connection hears 421 4.7.0 and is closed; others
        are unaffected; a closed session frees its place.
        """
        second, secondTransport = self.connect()
        third, thirdTransport = self.connect()
        self.assertEqual(
            thirdTransport.value(),
            b"421 4.7.0 mx.test Error: too many connections from your address\r\n",
        )
        self.assertTrue(thirdTransport.disconnecting)
        second.connectionLost(None)
        fourth, fourthTransport = self.connect()
        self.assertTrue(fourthTransport.value().startswith(b"220 "))

    def test_exemptNetworks(self) -> None:
        """
        Exempt networks have no per-peer limit.
        """
        import ipaddress

        self.factory.limits = evolve(self.limits, peerLimitExempt=(ipaddress.ip_network("192.0.2.0/24"),))
        for _ in range(5):
            _, transport = self.connect()
            self.assertTrue(transport.value().startswith(b"220 "))


class InterfaceTests(SynchronousTestCase):
    """
    Fakes and real implementations provide their interfaces.
    """

    def test_recordingDelivery(self) -> None:
        """
        The test double provides L{IMailDelivery}.
        """
        self.assertTrue(verifyObject(IMailDelivery, RecordingDelivery()))


class PeerHostTests(SynchronousTestCase):
    """
    L{peerHost} normalises client addresses.
    """

    def test_mappedIPv4(self) -> None:
        """
        An IPv4 client on an IPv6 socket is seen as IPv4, so that network
        lists (trusted networks, limit exemptions) match it.
        """
        from twisted.internet.address import IPv6Address

        from mailhub.smtp.server import peerHost

        self.assertEqual(peerHost(IPv6Address("TCP", "::ffff:192.0.2.1", 25)), "192.0.2.1")
        self.assertEqual(peerHost(IPv6Address("TCP", "2001:db8::1", 25)), "2001:db8::1")
        self.assertEqual(peerHost(PEER), "192.0.2.7")


class ShutdownTests(ServerTestsMixin, SynchronousTestCase):
    """
    Stopping the server closes sessions politely (RFC 5321 §3.8).
    """

    def test_idleSessionHears421(self) -> None:
        """
        An idle session hears 421 4.3.2 and is closed; the factory's
        Deferred fires once it is gone.
        """
        self.greet()
        d = self.factory.shutDown()
        self.assertEqual(self.replies(), ["421 4.3.2 mx.test Service shutting down"])
        self.assertTrue(self.transport.disconnecting)
        self.assertNoResult(d)
        self.server.connectionLost(None)
        self.successResultOf(d)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_deliveryFinishesFirst(self) -> None:
        """
        A session whose message is being delivered hears the 250 first,
        then 421, and nothing it pipelined after is run.
        """
        self.delivery.hold = True
        self.greet()
        self.transaction(b"hi\r\n.\r\nMAIL FROM:<b@remote.test>\r\n")
        self.factory.shutDown()
        self.assertEqual(self.replies(), [])
        self.delivery.held[0].callback(None)
        self.assertEqual(
            self.replies(),
            ["250 2.0.0 Ok: queued as Q0001", "421 4.3.2 mx.test Service shutting down"],
        )

    def test_stuckSessionAborted(self) -> None:
        """
        A connection that does not close within the grace period is aborted.
        """
        self.greet()
        d = self.factory.shutDown(grace=5)
        self.clock.advance(5)
        self.assertTrue(self.transport.disconnecting)
        self.server.connectionLost(None)
        self.successResultOf(d)

    def test_noSessions(self) -> None:
        """
        With no session open, shutting down is immediate.
        """
        self.server.connectionLost(None)
        self.successResultOf(self.factory.shutDown())


class SizeSyntaxTests(ServerTestsMixin, SynchronousTestCase):
    """
    The SIZE parameter's syntax (RFC 1870 §3).
    """

    def test_badSize(self) -> None:
        """
        SIZE without a number, or not a number, is a 501 syntax error.
        """
        self.greet()
        self.assertEqual(self.codes(b"MAIL FROM:<a@remote.test> SIZE=abc\r\n"), ["501"])
        self.assertEqual(self.codes(b"MAIL FROM:<a@remote.test> SIZE\r\n"), ["501"])
        self.assertEqual(self.codes(b"MAIL FROM:<a@remote.test> SIZE=1000\r\n"), ["250"])
