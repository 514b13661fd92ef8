# -*- test-case-name: tests.relay.test_sender -*-
"""
Tests for L{mailhub.relay.sender}: unit tests against a scripted server on
a L{StringTransport} and a L{MemoryReactorClock}, and functional tests
against Twisted's own ESMTP server on 127.0.0.1, with STARTTLS under a test
certificate authority.
"""

from __future__ import annotations

import base64
import datetime
import io
from typing import Any, Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import IRealm, Portal
from twisted.internet import reactor as _globalReactor
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import (
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IPullProducer,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, PrivateCertificate, trustRootFromCertificates
from twisted.internet.testing import MemoryReactorClock, StringTransport, StringTransportWithDisconnection
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.mail import smtp
from twisted.mail._cred import PLAINCredentials
from twisted.mail.interfaces import IMessageDelivery
from twisted.names import dns
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mailhub.relay import sender as senderModule
from mailhub.relay.sender import (
    Reply,
    Route,
    SMTPSender,
    Timeouts,
    _AnyCertificate,
    _ClientProtocol,
    _DotStuffer,
    _MessageProducer,
    parseRoute,
)
from mailhub.relay.mx import MXResolver
from mailhub.relay.values import Outcome
from tests.relay.test_mx import FakeResolver

MESSAGE = b"Subject: hi\r\n\r\nline one\r\n.hidden dot\r\nlast\r\n"


def _writeMessage(test: SynchronousTestCase, data: bytes = MESSAGE) -> str:
    path = test.mktemp()
    with open(path, "wb") as f:
        f.write(data)
    return path


# Pure parts.


class ParseRouteTests(SynchronousTestCase):
    def test_table(self) -> None:
        """
        Postfix-style next hops: brackets mean no MX lookup.
        """
        for text, route in [
            ("example.net", Route("example.net", 25, True)),
            ("Example.NET.:2525", Route("example.net", 2525, True)),
            ("[10.0.0.5]:2525", Route("10.0.0.5", 2525, False)),
            ("[smtp.example.net]:587", Route("smtp.example.net", 587, False)),
            ("[smtp.example.net]", Route("smtp.example.net", 25, False)),
            ("[2001:db8::5]:26", Route("2001:db8::5", 26, False)),
            ("[IPv6:2001:db8::5]", Route("2001:db8::5", 25, False)),
            ("192.0.2.1", Route("192.0.2.1", 25, False)),
        ]:
            self.assertEqual(parseRoute(text), route, text)

    def test_bad(self) -> None:
        for text in ["", "[x", "[x]y", "x:0", "x:99999", "x:port", "2001:db8::5", "a b", "[]"]:
            self.assertRaises(ValueError, parseRoute, text)

    def test_passwordHidden(self) -> None:
        """
        A route's password is not in its repr.
        """
        self.assertNotIn("s3cret", repr(Route("h", username="u", password="s3cret")))


class ReplyTests(SynchronousTestCase):
    def test_enhanced(self) -> None:
        self.assertEqual(Reply(550, ("5.1.1 no such user",)).enhanced, "5.1.1")
        self.assertEqual(Reply(451, ("4.7.1", "more")).enhanced, "4.7.1")
        self.assertEqual(Reply(550, ("4.1.1 wrong class",)).enhanced, "")
        self.assertEqual(Reply(250, ("ok",)).enhanced, "")
        self.assertEqual(Reply(250, ("a", "b")).text, "250 a b")


class DotStufferTests(SynchronousTestCase):
    def stuff(self, *chunks: bytes) -> bytes:
        s = _DotStuffer()
        return b"".join(s.transform(c) for c in chunks) + s.end()

    def test_stuffing(self) -> None:
        """
        Dots at line starts are doubled, across chunk boundaries too; bare
        LF becomes CRLF; the end is CRLF.CRLF.
        """
        self.assertEqual(self.stuff(b".a\r\nb\r\n.\r\n"), b"..a\r\nb\r\n..\r\n.\r\n")
        self.assertEqual(self.stuff(b"a\r", b"\n.b", b"\n", b".", b"c"), b"a\r\n..b\r\n..c\r\n.\r\n")
        self.assertEqual(self.stuff(b"x\n.\ny"), b"x\r\n..\r\ny\r\n.\r\n")
        self.assertEqual(self.stuff(b"x\r"), b"x\r\n.\r\n")
        self.assertEqual(self.stuff(), b".\r\n")
        # Clean CRLF text passes as it is; a bare LF anywhere in a chunk
        # of CRLF lines is still made CRLF.
        self.assertEqual(self.stuff(b"a\r\nb\r\n"), b"a\r\nb\r\n.\r\n")
        self.assertEqual(self.stuff(b"a\r\nb\nc\r\n"), b"a\r\nb\r\nc\r\n.\r\n")


# Unit tests: a scripted server.


class _Script:
    """
    The server side of one connection made through a L{MemoryReactorClock}.
    """

    def __init__(self, test: SynchronousTestCase, reactor: MemoryReactorClock, index: int) -> None:
        self.host, self.port, factory, self.timeout, _ = reactor.tcpClients[index]
        self.protocol = factory.buildProtocol(None)
        self.transport = StringTransportWithDisconnection()
        self.transport.protocol = self.protocol
        self.protocol.makeConnection(self.transport)
        self.test = test

    def say(self, reply: bytes) -> bytes:
        """
        Send a reply; return what the client wrote before it.
        """
        written = self.transport.value()
        self.transport.clear()
        self.protocol.dataReceived(reply)
        return written

    def written(self) -> bytes:
        value = self.transport.value()
        self.transport.clear()
        return value


class UnitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.resolver = FakeResolver()
        self.resolver.add("example.com", dns.MX, (10, "mx1.example.com"), (20, "mx2.example.com"))
        self.resolver.add("mx1.example.com", dns.A, "192.0.2.1")
        self.resolver.add("mx2.example.com", dns.A, "192.0.2.2")
        self.sender = SMTPSender(self.reactor, self.resolver, "client.test")
        self.path = _writeMessage(self)

    def deliver(self, recipients: list[str], route: Any = None, sender: SMTPSender | None = None) -> Deferred[dict[str, Outcome]]:
        return Deferred.fromCoroutine(
            (sender or self.sender).deliver("example.com", route, "a@src.test", recipients, self.path, len(MESSAGE))
        )

    def test_interfaces(self) -> None:
        """
        The protocol, the message producer and the TLS creator provide their
        interfaces.
        """
        protocol = _ClientProtocol(self.reactor)
        self.assertTrue(verifyObject(IHandshakeListener, protocol))
        self.assertTrue(verifyObject(IPullProducer, _MessageProducer(io.BytesIO(), protocol)))
        creator = _AnyCertificate("mx.test", trustRootFromCertificates([Certificate.loadPEM(CA.caPEM)]))
        self.assertTrue(verifyObject(IOpenSSLClientConnectionCreator, creator))

    def test_lastBlockWithTheDot(self) -> None:
        """
        The last block of the message and the final dot go out in one
        write (a dot alone after the data would wait for the remote's
        delayed ACK).
        """
        writes: list[bytes] = []

        class Recording(StringTransport):
            def write(self, data: bytes) -> None:
                writes.append(data)

        protocol = _ClientProtocol(self.reactor)
        protocol.makeConnection(Recording())
        self.patch(senderModule, "CHUNK_SIZE", 16)
        producer = _MessageProducer(io.BytesIO(b"0123456789abcdef.second\r\nend"), protocol)
        protocol._blockSent = lambda: None  # type: ignore[method-assign]
        protocol._messageSent = lambda: None  # type: ignore[method-assign]
        protocol.transport.registerProducer(producer, False)
        producer.resumeProducing()
        producer.resumeProducing()
        self.assertEqual(writes, [b"0123456789abcdef", b".second\r\nend\r\n.\r\n"])

    def test_noDelay(self) -> None:
        """
        Client connections set TCP_NODELAY.
        """
        transport = StringTransport()
        calls: list[bool] = []
        transport.setTcpNoDelay = calls.append  # type: ignore[attr-defined]
        _ClientProtocol(self.reactor).makeConnection(transport)
        self.assertEqual(calls, [True])

    def test_fakeServerInterfaces(self) -> None:
        """
        The functional tests' server-side fakes provide their interfaces.
        """
        factory = _ServerFactory()
        protocol = factory.buildProtocol(None)
        self.assertTrue(verifyObject(IMessageDelivery, _Delivery(factory, protocol)))
        self.assertTrue(verifyObject(smtp.IMessage, _Message(factory, protocol, "b@example.test")))

    def test_transaction(self) -> None:
        """
        A whole transaction: EHLO with our name, SIZE= in MAIL, the message
        dot-stuffed and streamed, per-recipient replies; nothing is left
        pending afterwards.
        """
        d = self.deliver(["b@example.com", "c@example.com"])
        s = _Script(self, self.reactor, 0)
        self.assertEqual((s.host, s.port, s.timeout), ("192.0.2.1", 25, 30.0))
        s.say(b"220 mx1 ESMTP\r\n")
        self.assertEqual(s.say(b"250-mx1\r\n250-SIZE 100000\r\n250 8BITMIME\r\n"), b"EHLO client.test\r\n")
        self.assertEqual(s.say(b"250 2.1.0 ok\r\n"), b"MAIL FROM:<a@src.test> SIZE=%d\r\n" % len(MESSAGE))
        self.assertEqual(s.say(b"250 2.1.5 ok\r\n"), b"RCPT TO:<b@example.com>\r\n")
        self.assertEqual(s.say(b"550 5.1.1 no such user\r\n"), b"RCPT TO:<c@example.com>\r\n")
        self.assertEqual(s.say(b"354 go\r\n"), b"DATA\r\n")
        while s.transport.producer is not None:
            s.transport.producer.resumeProducing()
        self.assertEqual(s.say(b"250 2.0.0 queued as X\r\n"), MESSAGE.replace(b"\n.", b"\n..") + b".\r\n")
        self.assertEqual(s.say(b"221 bye\r\n"), b"QUIT\r\n")
        outcomes = self.successResultOf(d)
        self.assertEqual(outcomes["b@example.com"], Outcome(250, "250 2.0.0 queued as X", False, "mx1.example.com", "2.0.0"))
        self.assertEqual(outcomes["c@example.com"], Outcome(550, "550 5.1.1 no such user", True, "mx1.example.com", "5.1.1"))
        self.assertFalse(s.transport.connected)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_greetingTimeout(self) -> None:
        """
        No greeting within the timeout: the connection is aborted and the
        next MX tried; when none is left the outcome is transient.
        """
        d = self.deliver(["b@example.com"])
        first = _Script(self, self.reactor, 0)
        self.reactor.advance(299)
        self.assertTrue(first.transport.connected)
        self.reactor.advance(1)
        self.assertFalse(first.transport.connected)
        second = _Script(self, self.reactor, 1)
        self.assertEqual(second.host, "192.0.2.2")
        self.reactor.advance(300)
        outcome = self.successResultOf(d)["b@example.com"]
        self.assertFalse(outcome.permanent)
        self.assertEqual((outcome.code, outcome.remoteMTA, outcome.enhanced), (0, "mx2.example.com", "4.4.2"))
        self.assertIn("timeout after 300 s waiting for the greeting", outcome.text)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_nextHost(self) -> None:
        """
        A refused connection and a 421 greeting each make the next host
        tried.
        """
        self.resolver.add("example.com", dns.MX, (30, "mx3.example.com"))
        self.resolver.add("mx3.example.com", dns.A, "192.0.2.3")
        d = self.deliver(["b@example.com"])
        self.reactor.tcpClients[0][2].clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        second = _Script(self, self.reactor, 1)
        second.say(b"421 4.3.2 busy\r\n")
        third = _Script(self, self.reactor, 2)
        self.assertEqual(third.host, "192.0.2.3")
        third.say(b"220 hi\r\n")
        third.say(b"250 mx3\r\n")
        third.say(b"451 4.3.0 try later\r\n")
        self.assertEqual(third.say(b"221 bye\r\n"), b"QUIT\r\n")
        outcome = self.successResultOf(d)["b@example.com"]
        self.assertEqual(outcome, Outcome(451, "451 4.3.0 try later", False, "mx3.example.com", "4.3.0"))

    def test_dataBlockTimeout(self) -> None:
        """
        The data-block timeout runs from the last write: a remote that stops
        reading makes the delivery transient.
        """
        # Small blocks, so that the message takes more than one write.
        self.patch(senderModule, "CHUNK_SIZE", 8)
        sender = SMTPSender(self.reactor, self.resolver, "client.test", timeouts=Timeouts(dataBlock=10))
        d = self.deliver(["b@example.com"], sender=sender)
        s = _Script(self, self.reactor, 0)
        for reply in [b"220 hi\r\n", b"250 mx1\r\n", b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n"]:
            s.say(reply)
        self.reactor.advance(9)
        s.transport.producer.resumeProducing()
        self.reactor.advance(9)
        self.assertTrue(s.transport.connected)
        self.reactor.advance(1)
        self.assertFalse(s.transport.connected)
        # The second MX is not answering either.
        self.reactor.tcpClients[1][2].clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        outcome = self.successResultOf(d)["b@example.com"]
        self.assertFalse(outcome.permanent)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_credentialsNeedTLS(self) -> None:
        """
        Credentials are never sent without TLS: a smarthost that does not
        offer STARTTLS gets none, and the delivery is transient.
        """
        route = Route("192.0.2.9", 587, False, username="u", password="p")
        d = self.deliver(["b@example.com"], route)
        s = _Script(self, self.reactor, 0)
        s.say(b"220 hi\r\n")
        s.say(b"250-smart\r\n250 AUTH PLAIN\r\n")
        self.assertEqual(s.say(b"221 bye\r\n"), b"QUIT\r\n")
        outcome = self.successResultOf(d)["b@example.com"]
        self.assertEqual((outcome.permanent, outcome.enhanced), (False, "4.7.10"))

    def test_smarthostAuth(self) -> None:
        """
        A smarthost route: no MX lookup, a connection to the route's host
        and port; STARTTLS, EHLO again, then AUTH PLAIN with the route's
        credentials (RFC 4616: empty authorization identity), and once the
        smarthost takes them the transaction.
        """
        self.resolver.add("smtp.example.net", dns.A, "192.0.2.9")
        route = Route("smtp.example.net", 587, False, "require", username="u\u00e9", password="p w")
        d = self.deliver(["b@example.com"], route)
        self.assertNotIn(dns.MX, [type for _, type in self.resolver.queries])
        s = _Script(self, self.reactor, 0)
        self.assertEqual((s.host, s.port), ("192.0.2.9", 587))
        started: list[Any] = []
        s.transport.startTLS = started.append  # type: ignore[attr-defined]
        s.say(b"220 smart ESMTP\r\n")
        self.assertEqual(s.say(b"250-smart\r\n250 STARTTLS\r\n"), b"EHLO client.test\r\n")
        self.assertEqual(s.say(b"220 go ahead\r\n"), b"STARTTLS\r\n")
        self.assertEqual(len(started), 1)
        s.protocol.handshakeCompleted()
        self.assertEqual(s.say(b"250-smart\r\n250 AUTH LOGIN PLAIN\r\n"), b"EHLO client.test\r\n")
        token = base64.b64encode("\0u\u00e9\0p w".encode("utf-8"))
        self.assertEqual(s.say(b"235 2.7.0 ok\r\n"), b"AUTH PLAIN " + token + b"\r\n")
        self.assertEqual(s.say(b"250 ok\r\n"), b"MAIL FROM:<a@src.test>\r\n")
        self.assertEqual(s.say(b"250 ok\r\n"), b"RCPT TO:<b@example.com>\r\n")
        self.assertEqual(s.say(b"354 go\r\n"), b"DATA\r\n")
        while s.transport.producer is not None:
            s.transport.producer.resumeProducing()
        s.say(b"250 2.0.0 queued\r\n")
        self.assertEqual(s.say(b"221 bye\r\n"), b"QUIT\r\n")
        outcome = self.successResultOf(d)["b@example.com"]
        self.assertEqual(outcome, Outcome(250, "250 2.0.0 queued", False, "smtp.example.net", "2.0.0"))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_smarthostAuthRefused(self) -> None:
        """
        Credentials the smarthost refuses are a transient failure (the
        configuration is at fault, not the message), and no MAIL is sent.
        """
        self.resolver.add("smtp.example.net", dns.A, "192.0.2.9")
        route = Route("smtp.example.net", 587, False, "require", username="u", password="wrong")
        d = self.deliver(["b@example.com"], route)
        s = _Script(self, self.reactor, 0)
        s.transport.startTLS = lambda creator: None  # type: ignore[attr-defined]
        s.say(b"220 smart ESMTP\r\n")
        s.say(b"250-smart\r\n250 STARTTLS\r\n")
        s.say(b"220 go ahead\r\n")
        s.protocol.handshakeCompleted()
        s.say(b"250-smart\r\n250 AUTH PLAIN\r\n")
        self.assertTrue(s.say(b"535 5.7.8 no\r\n").startswith(b"AUTH PLAIN "))
        self.assertEqual(s.written(), b"")
        outcome = self.successResultOf(d)["b@example.com"]
        self.assertEqual((outcome.code, outcome.permanent, outcome.enhanced), (535, False, "4.7.8"))

    def test_routingError(self) -> None:
        """
        An MX lookup failure is every recipient's outcome.
        """
        outcomes = self.successResultOf(
            Deferred.fromCoroutine(
                self.sender.deliver("nowhere.test", None, "a@src.test", ["x@nowhere.test"], self.path, 10)
            )
        )
        self.assertEqual((outcomes["x@nowhere.test"].permanent, outcomes["x@nowhere.test"].enhanced), (True, "5.4.4"))

    def loopSender(self, *listening: tuple[str, int], port: int = 25) -> SMTPSender:
        """
        A sender whose MX lookup knows our listeners C{listening}.
        """
        mx = MXResolver(self.resolver, ["client.test"], listening=lambda: listening)
        return SMTPSender(self.reactor, self.resolver, "client.test", mxResolver=mx, port=port)

    def test_routeToOurListener(self) -> None:
        """
        A route to the address and port one of our listeners is bound to
        is a loop: no connection, every recipient failed for good with
        C{5.4.6} and a reason that says so, and a warning in the log with
        the queue id.
        """
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        sender = self.loopSender(("127.0.0.1", 2525))
        outcomes = self.successResultOf(
            Deferred.fromCoroutine(
                sender.deliver(
                    "example.com", parseRoute("[127.0.0.1]:2525"), "a@src.test",
                    ["b@example.com", "c@example.com"], self.path, len(MESSAGE), queueId="Q1",
                )
            )
        )
        self.assertEqual(self.reactor.tcpClients, [])
        for outcome in outcomes.values():
            self.assertEqual((outcome.permanent, outcome.code, outcome.enhanced), (True, 0, "5.4.6"))
            self.assertIn("loops back to myself", outcome.text)
            self.assertIn("[127.0.0.1]:2525 is where this server listens", outcome.text)
        [event] = [e for e in events if "routing loop" in (e.get("log_format") or "")]
        line = formatEvent(event)
        self.assertTrue(line.startswith("relay id=Q1 to=<example.com> routing loop: the route to 127.0.0.1"), line)
        self.assertEqual(event["log_level"], LogLevel.warn)

    def test_routeToOtherPort(self) -> None:
        """
        The same address on another port is another server: it is
        connected to.
        """
        sender = self.loopSender(("127.0.0.1", 2525))
        d = self.deliver(["b@example.com"], parseRoute("[127.0.0.1]:2526"), sender=sender)
        s = _Script(self, self.reactor, 0)
        self.assertEqual((s.host, s.port), ("127.0.0.1", 2526))
        s.transport.loseConnection()
        self.assertFalse(self.successResultOf(d)["b@example.com"].permanent)

    def test_mxOnOurListener(self) -> None:
        """
        MX delivery on the sender's port: a less preferred MX host that is
        one of our listeners is left out with those after it (only mx1 is
        tried); when the best MX is ours, the recipients bounce with
        C{5.4.6}.
        """
        self.resolver.add("example.com", dns.MX, (30, "mx3.example.com"))
        self.resolver.add("mx3.example.com", dns.A, "192.0.2.3")
        sender = self.loopSender(("0.0.0.0", 2525), port=2525)
        self.resolver.records[("mx2.example.com", dns.A)] = ["127.0.0.1"]
        d = self.deliver(["b@example.com"], sender=sender)
        self.reactor.tcpClients[0][2].clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        self.assertEqual([c[:2] for c in self.reactor.tcpClients], [("192.0.2.1", 2525)])
        self.assertEqual(self.successResultOf(d)["b@example.com"].enhanced, "4.4.1")

        self.resolver.records[("mx1.example.com", dns.A)] = ["127.0.0.2"]
        outcome = self.successResultOf(self.deliver(["b@example.com"], sender=sender))["b@example.com"]
        self.assertEqual((outcome.permanent, outcome.enhanced), (True, "5.4.6"))
        self.assertIn("mail for example.com loops back to myself", outcome.text)

    def test_backupRouteAfterLoop(self) -> None:
        """
        Of several routes (a smarthost and its backup), one that loops is
        skipped and the next is tried.
        """
        sender = self.loopSender(("127.0.0.1", 2525))
        routes = [parseRoute("[127.0.0.1]:2525"), parseRoute("[192.0.2.9]:2525")]
        d = self.deliver(["b@example.com"], routes, sender=sender)
        self.assertEqual([c[:2] for c in self.reactor.tcpClients], [("192.0.2.9", 2525)])
        self.reactor.tcpClients[0][2].clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        self.assertEqual(self.successResultOf(d)["b@example.com"].enhanced, "4.4.1")

    def test_missingFile(self) -> None:
        """
        A message file that cannot be read is transient for all.
        """
        d = Deferred.fromCoroutine(self.sender.deliver("example.com", None, "", ["b@example.com"], "/nonexistent", 1))
        self.assertEqual(self.successResultOf(d)["b@example.com"].enhanced, "4.3.0")


# Functional tests: Twisted's ESMTP server on 127.0.0.1.


class _TestCA:
    """
    A certificate authority and a server certificate for C{mx.test}, made
    once.
    """

    def __init__(self) -> None:
        now = datetime.datetime.now(datetime.timezone.utc)
        caKey = ec.generate_private_key(ec.SECP256R1())
        caName = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailhub test CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(caName)
            .issuer_name(caName)
            .public_key(caKey.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .sign(caKey, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mx.test")]))
            .issuer_name(caName)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("mx.test")]), critical=False)
            .sign(caKey, hashes.SHA256())
        )
        self.caPEM = ca.public_bytes(serialization.Encoding.PEM)
        self.serverPEM = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


CA = _TestCA()


@implementer(smtp.IMessage)
class _Message:
    def __init__(self, server: "_ServerFactory", protocol: "_ESMTP", recipient: str) -> None:
        self.server = server
        self.protocol = protocol
        self.recipient = recipient
        self.lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)
        if self.server.dropInData:
            self.dropped = True
            self.protocol.transport.abortConnection()

    def eomReceived(self) -> Deferred[bytes]:
        if getattr(self, "dropped", False):
            # The rest of the data arrived in the same read as the line
            # that dropped the connection: nothing is taken.
            return Deferred()
        self.server.messages.append((self.recipient, b"\r\n".join(self.lines) + b"\r\n"))
        return succeed(b"ok")

    def connectionLost(self) -> None:
        pass


@implementer(IMessageDelivery)
class _Delivery:
    def __init__(self, server: "_ServerFactory", protocol: "_ESMTP") -> None:
        self.server = server
        self.protocol = protocol

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> None:
        return None

    def validateFrom(self, helo: Any, origin: Any) -> Any:
        return origin

    def validateTo(self, user: smtp.User) -> Callable[[], _Message]:
        address = str(user.dest)
        replies = self.server.rcptReplies.get(address)
        if replies:
            code, text = replies.pop(0)
            raise smtp.SMTPBadRcpt(user, code, text)
        return lambda: _Message(self.server, self.protocol, address)


@implementer(IRealm)
class _Realm:
    """
    A login gets the connection's delivery; the user name is recorded.
    """

    def __init__(self, protocol: "_ESMTP") -> None:
        self.protocol = protocol

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Any:
        self.protocol.factory.logins.append(avatarId)
        return smtp.IMessageDelivery, self.protocol.delivery, lambda: None


class _ESMTP(smtp.ESMTP):
    def extensions(self) -> dict[bytes, Any]:
        ext = super().extensions()
        if not self.factory.credentials:
            ext.pop(b"AUTH", None)
        ext.update(self.factory.extraExtensions)
        return ext

    def do_EHLO(self, rest: bytes) -> None:
        self.factory.ehlo.append(rest)
        super().do_EHLO(rest)

    def do_MAIL(self, rest: bytes) -> None:
        self.factory.mail.append(rest)
        super().do_MAIL(rest)

    def ext_STARTTLS(self, rest: bytes) -> None:
        if self.factory.breakTLS:
            self.sendCode(220, b"go ahead")
            self.transport.loseConnection()
            return
        super().ext_STARTTLS(rest)

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        self.factory.lost.append(None)
        self.lostDeferred.callback(None)


class _ServerFactory(Factory):
    def __init__(self, tls: bool = False) -> None:
        self.tls = tls
        self.extraExtensions: dict[bytes, Any] = {b"8BITMIME": None}
        self.rcptReplies: dict[str, list[tuple[int, str]]] = {}
        self.messages: list[tuple[str, bytes]] = []
        self.ehlo: list[bytes] = []
        self.mail: list[bytes] = []
        self.dropInData = False
        self.breakTLS = False
        self.protocols: list[_ESMTP] = []
        self.lost: list[None] = []
        #: AUTH PLAIN is offered when there are credentials (user: password).
        self.credentials: dict[str, bytes] = {}
        self.logins: list[bytes] = []

    def buildProtocol(self, addr: Any) -> _ESMTP:
        options = PrivateCertificate.loadPEM(CA.serverPEM).options() if self.tls else None
        p = _ESMTP(chal={b"PLAIN": PLAINCredentials} if self.credentials else None, contextFactory=options)
        p.factory = self
        p.host = b"mx.test"
        p.delivery = _Delivery(self, p)
        if self.credentials:
            p.portal = Portal(_Realm(p), [InMemoryUsernamePasswordDatabaseDontUse(**self.credentials)])
        p.lostDeferred = Deferred()
        self.protocols.append(p)
        return p


class _Hang(Protocol):
    def connectionMade(self) -> None:
        self.factory.connected.append(self)


class FunctionalTests(TestCase):
    timeouts = Timeouts(connect=5, greeting=5, command=5, mail=5, rcpt=5, dataInit=5, dataBlock=5, dataEnd=5, quit=5)

    def setUp(self) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.resolver = FakeResolver()
        self.resolver.add("mx.test", dns.A, "127.0.0.1")
        self.resolver.add("example.test", dns.MX, (10, "mx.test"))
        self.path = _writeMessage(self)

    def listen(self, factory: Factory) -> int:
        port = _globalReactor.listenTCP(0, factory, interface="127.0.0.1")

        async def stop() -> None:
            await port.stopListening()
            for p in getattr(factory, "protocols", []) + getattr(factory, "connected", []):
                if p.transport.connected:
                    p.transport.abortConnection()
            await DeferredList([p.lostDeferred for p in getattr(factory, "protocols", [])])

        self.addCleanup(lambda: Deferred.fromCoroutine(stop()))
        return port.getHost().port

    def server(self, tls: bool = False) -> tuple[_ServerFactory, int]:
        factory = _ServerFactory(tls)
        return factory, self.listen(factory)

    def sender(self, **kwargs: Any) -> SMTPSender:
        kwargs.setdefault("timeouts", self.timeouts)
        kwargs.setdefault("trustRoot", Certificate.loadPEM(CA.caPEM))
        return SMTPSender(_globalReactor, self.resolver, "client.test", **kwargs)

    async def deliver(
        self, sender: SMTPSender, route: Any, recipients: list[str], path: str | None = None, domain: str = "example.test"
    ) -> dict[str, Outcome]:
        path = path or self.path
        with open(path, "rb") as f:
            size = len(f.read())
        return await sender.deliver(domain, route, "a@src.test", recipients, path, size, queueId="Q1")

    def logLines(self) -> list[str]:
        return [formatEvent(e) for e in self.events if "relay id=" in (e.get("log_format") or "")]

    async def test_plain(self) -> None:
        """
        Plain delivery: the message arrives intact (dot-stuffing undone),
        with SIZE= in MAIL and our name in EHLO.
        """
        factory, port = self.server()
        outcomes = await self.deliver(self.sender(), parseRoute(f"[127.0.0.1]:{port}"), ["b@example.test"])
        self.assertTrue(outcomes["b@example.test"].delivered)
        self.assertEqual(outcomes["b@example.test"].remoteMTA, "127.0.0.1")
        self.assertEqual(factory.messages, [("b@example.test", MESSAGE)])
        self.assertEqual(factory.ehlo, [b"client.test"])
        self.assertEqual(factory.mail, [b"FROM:<a@src.test>"])
        self.assertIn("relay id=Q1 to=<example.test> mx=127.0.0.1 tls=none verified=False", self.logLines())

    async def test_startTLSOpportunistic(self) -> None:
        """
        STARTTLS is used whenever offered; under the opportunistic policy
        any certificate is taken, and recorded as not verified when it is
        not valid for the host.
        """
        factory, port = self.server(tls=True)
        outcomes = await self.deliver(self.sender(), Route("127.0.0.1", port, False), ["b@example.test"])
        self.assertTrue(outcomes["b@example.test"].delivered)
        self.assertEqual(len(factory.ehlo), 2)
        self.assertIn("relay id=Q1 to=<example.test> mx=127.0.0.1 tls=TLSv1.3 verified=False", self.logLines())

    async def test_verifyOK(self) -> None:
        """
        Under the verify policy a certificate from the trust root, for the
        host's name, is accepted.
        """
        factory, port = self.server(tls=True)
        outcomes = await self.deliver(self.sender(tlsPolicy="verify"), parseRoute(f"[mx.test]:{port}"), ["b@example.test"])
        self.assertTrue(outcomes["b@example.test"].delivered, outcomes)
        self.assertEqual(outcomes["b@example.test"].remoteMTA, "mx.test")
        self.assertIn("relay id=Q1 to=<example.test> mx=mx.test tls=TLSv1.3 verified=True", self.logLines())

    async def test_verifyFailure(self) -> None:
        """
        Under the verify policy (here a per-domain override) a certificate
        for another name is a transient failure, and nothing is sent.
        """
        factory, port = self.server(tls=True)
        sender = self.sender(policies={"example.test": "verify"})
        outcomes = await self.deliver(sender, Route("127.0.0.1", port, False), ["b@example.test"])
        outcome = outcomes["b@example.test"]
        self.assertFalse(outcome.delivered)
        self.assertFalse(outcome.permanent)
        self.assertEqual(outcome.enhanced, "4.7.0")
        self.assertIn("TLS", outcome.text)
        self.assertEqual(factory.messages, [])
        self.assertEqual(factory.mail, [])

    def smarthost(self, host: str, port: int, policy: str | None = "verify") -> Route:
        """
        A smarthost route to C{[host]:port} under C{policy}, with the
        credentials C{relay} / C{s3cret}.
        """
        return Route(host, port, False, policy, username="relay", password="s3cret")

    async def test_smarthostVerified(self) -> None:
        """
        A smarthost route under C{verify} (over the sender's opportunistic
        policy): its certificate is checked against its name, then AUTH
        PLAIN is accepted and the message delivered; the recipient's domain
        is never looked up.
        """
        factory, port = self.server(tls=True)
        factory.credentials = {"relay": b"s3cret"}
        outcomes = await self.deliver(self.sender(), self.smarthost("mx.test", port), ["b@far.test"], domain="far.test")
        self.assertTrue(outcomes["b@far.test"].delivered, outcomes)
        self.assertEqual(outcomes["b@far.test"].remoteMTA, "mx.test")
        self.assertEqual(factory.logins, [b"relay"])
        self.assertEqual(factory.messages, [("b@far.test", MESSAGE)])
        self.assertNotIn(("far.test", dns.MX), self.resolver.queries)
        self.assertIn("relay id=Q1 to=<far.test> mx=mx.test tls=TLSv1.3 verified=True", self.logLines())

    async def test_smarthostVerifyFailure(self) -> None:
        """
        A smarthost route under C{verify} whose certificate does not name
        it (connected to as 127.0.0.1; the certificate is for mx.test): a
        transient TLS failure, not retried in plain text; neither the
        credentials nor the message are sent.
        """
        factory, port = self.server(tls=True)
        factory.credentials = {"relay": b"s3cret"}
        outcomes = await self.deliver(self.sender(), self.smarthost("127.0.0.1", port), ["b@example.test"])
        outcome = outcomes["b@example.test"]
        self.assertEqual((outcome.delivered, outcome.permanent, outcome.enhanced), (False, False, "4.7.0"))
        self.assertIn("TLS", outcome.text)
        self.assertEqual((factory.logins, factory.mail, len(factory.protocols)), ([], [], 1))

    async def test_smarthostUnknownAuthority(self) -> None:
        """
        Under C{verify} a certificate for the right name from an authority
        the sender does not trust fails too, even when the sender's own
        policy is C{require}: the route's policy wins.
        """
        factory, port = self.server(tls=True)
        factory.credentials = {"relay": b"s3cret"}
        sender = self.sender(tlsPolicy="require", trustRoot=Certificate.loadPEM(_TestCA().caPEM))
        outcome = (await self.deliver(sender, self.smarthost("mx.test", port), ["b@example.test"]))["b@example.test"]
        self.assertEqual((outcome.delivered, outcome.permanent, outcome.enhanced), (False, False, "4.7.0"))
        self.assertEqual((factory.logins, factory.mail), ([], []))

    async def test_tlsFailureFallsBackToPlain(self) -> None:
        """
        Under the opportunistic policy a failed TLS negotiation is followed
        by one more try of the same host in plain text.
        """
        factory, port = self.server(tls=True)
        factory.breakTLS = True
        outcomes = await self.deliver(self.sender(), Route("127.0.0.1", port, False), ["b@example.test"])
        self.assertTrue(outcomes["b@example.test"].delivered)
        self.assertEqual(len(factory.protocols), 2)

    async def test_tlsRequired(self) -> None:
        """
        Under the require policy a server without STARTTLS gets nothing.
        """
        factory, port = self.server()
        outcomes = await self.deliver(self.sender(tlsPolicy="require"), Route("127.0.0.1", port, False), ["b@example.test"])
        self.assertEqual(outcomes["b@example.test"].enhanced, "4.7.10")
        self.assertEqual(factory.mail, [])

    async def test_greylisted(self) -> None:
        """
        A 4xx to RCPT is transient; the next call delivers.
        """
        factory, port = self.server()
        factory.rcptReplies["b@example.test"] = [(451, "4.7.1 greylisted, come back later")]
        sender = self.sender()
        route = Route("127.0.0.1", port, False)
        first = (await self.deliver(sender, route, ["b@example.test"]))["b@example.test"]
        self.assertEqual((first.code, first.permanent, first.enhanced), (451, False, "4.7.1"))
        self.assertIn("greylisted", first.text)
        second = (await self.deliver(sender, route, ["b@example.test"]))["b@example.test"]
        self.assertTrue(second.delivered)
        self.assertEqual(len(factory.messages), 1)

    async def test_perRecipient(self) -> None:
        """
        A 5xx to one RCPT is permanent for that one; the other is delivered.
        """
        factory, port = self.server()
        factory.rcptReplies["bad@example.test"] = [(550, "5.1.1 no such user")]
        outcomes = await self.deliver(self.sender(), Route("127.0.0.1", port, False), ["bad@example.test", "good@example.test"])
        self.assertEqual((outcomes["bad@example.test"].permanent, outcomes["bad@example.test"].enhanced), (True, "5.1.1"))
        self.assertTrue(outcomes["good@example.test"].delivered)
        self.assertEqual([r for r, _ in factory.messages], ["good@example.test"])

    async def test_hang(self) -> None:
        """
        A remote that never greets is given up after the greeting timeout:
        transient.
        """
        factory = Factory.forProtocol(_Hang)
        factory.connected = []  # type: ignore[attr-defined]
        port = self.listen(factory)
        sender = self.sender(timeouts=Timeouts(connect=5, greeting=0.1))
        outcome = (await self.deliver(sender, Route("127.0.0.1", port, False), ["b@example.test"]))["b@example.test"]
        self.assertFalse(outcome.permanent)
        self.assertIn("timeout", outcome.text)

    async def test_dropMidData(self) -> None:
        """
        A remote that drops the connection during DATA: transient.
        """
        factory, port = self.server()
        factory.dropInData = True
        outcome = (await self.deliver(self.sender(), Route("127.0.0.1", port, False), ["b@example.test"]))["b@example.test"]
        self.assertFalse(outcome.delivered)
        self.assertFalse(outcome.permanent)
        self.assertEqual(factory.messages, [])

    async def test_eightBit(self) -> None:
        """
        8-bit content goes with BODY=8BITMIME to a server that has 8BITMIME,
        and fails permanently (5.6.3) for one that has not.
        """
        path = _writeMessage(self, "Subject: caf\u00e9\r\n\r\nd\u00e9j\u00e0\r\n".encode("utf-8"))
        factory, port = self.server()
        outcome = (await self.deliver(self.sender(), Route("127.0.0.1", port, False), ["b@example.test"], path))["b@example.test"]
        self.assertTrue(outcome.delivered)
        self.assertTrue(factory.mail[0].endswith(b" BODY=8BITMIME"))
        factory.extraExtensions = {}
        outcome = (await self.deliver(self.sender(), Route("127.0.0.1", port, False), ["b@example.test"], path))["b@example.test"]
        self.assertEqual((outcome.permanent, outcome.enhanced), (True, "5.6.3"))
        self.assertIn("8BITMIME", outcome.text)
        self.assertEqual(len(factory.mail), 1)

    async def test_sizeExceeded(self) -> None:
        """
        A message bigger than the advertised SIZE fails permanently (5.3.4).
        """
        factory, port = self.server()
        factory.extraExtensions = {b"SIZE": [b"10"]}
        outcome = (await self.deliver(self.sender(), Route("127.0.0.1", port, False), ["b@example.test"]))["b@example.test"]
        self.assertEqual((outcome.permanent, outcome.enhanced), (True, "5.3.4"))
        self.assertEqual(factory.mail, [])
        factory.extraExtensions = {b"SIZE": [b"100000"]}
        outcome = (await self.deliver(self.sender(), Route("127.0.0.1", port, False), ["b@example.test"]))["b@example.test"]
        self.assertTrue(outcome.delivered)
        self.assertEqual(factory.mail, [b"FROM:<a@src.test> SIZE=%d" % len(MESSAGE)])

    async def test_nextAfterRefused(self) -> None:
        """
        A refused connection makes the next route tried.
        """
        closed = _globalReactor.listenTCP(0, Factory(), interface="127.0.0.1")
        closedPort = closed.getHost().port
        await closed.stopListening()
        factory, port = self.server()
        routes = [Route("127.0.0.1", closedPort, False), Route("127.0.0.1", port, False)]
        outcome = (await self.deliver(self.sender(), routes, ["b@example.test"]))["b@example.test"]
        self.assertTrue(outcome.delivered)
        self.assertEqual(len(factory.messages), 1)

    async def test_throughMX(self) -> None:
        """
        Through a resolver that maps the domain's MX to 127.0.0.1: delivered
        to that host, verified under the verify policy.
        """
        factory, port = self.server(tls=True)
        sender = self.sender(tlsPolicy="verify", port=port)
        outcome = (await self.deliver(sender, None, ["b@example.test"]))["b@example.test"]
        self.assertTrue(outcome.delivered, outcome)
        self.assertEqual(outcome.remoteMTA, "mx.test")
        self.assertIn("relay id=Q1 to=<example.test> mx=mx.test tls=TLSv1.3 verified=True", self.logLines())


class ConnectionReuseTests(FunctionalTests):
    """
    The connection cache: a second message to the same host goes over the
    first one's connection (RSET first, commands pipelined when offered),
    and closing the sender leaves no connection or timer behind.
    """

    async def test_reusedAndPipelined(self) -> None:
        factory, port = self.server()
        factory.extraExtensions[b"PIPELINING"] = None
        sender = self.sender(connectionCacheTime=60)
        route = Route("127.0.0.1", port, False)
        first = await self.deliver(sender, route, ["b@example.test"])
        second = await self.deliver(sender, route, ["c@example.test"])
        self.assertTrue(first["b@example.test"].delivered)
        self.assertTrue(second["c@example.test"].delivered)
        self.assertEqual([r for r, _ in factory.messages], ["b@example.test", "c@example.test"])
        self.assertEqual(len(factory.protocols), 1)
        self.assertEqual(factory.ehlo, [b"client.test"])
        await sender.close()
        await DeferredList([p.lostDeferred for p in factory.protocols])
        self.assertEqual(len(factory.lost), 1)
        self.assertEqual([c for c in _globalReactor.getDelayedCalls() if c.active() and "_expire" in repr(c.func)], [])

    async def test_staleConnection(self) -> None:
        """
        A kept connection that the remote closed while idle is replaced by
        a new one, and the message is delivered once.
        """
        factory, port = self.server()
        sender = self.sender(connectionCacheTime=60)
        route = Route("127.0.0.1", port, False)
        await self.deliver(sender, route, ["b@example.test"])
        factory.protocols[0].transport.loseConnection()
        await factory.protocols[0].lostDeferred
        outcome = (await self.deliver(sender, route, ["c@example.test"]))["c@example.test"]
        self.assertTrue(outcome.delivered)
        self.assertEqual([r for r, _ in factory.messages], ["b@example.test", "c@example.test"])
        self.assertEqual(len(factory.protocols), 2)
        await sender.close()

    async def test_noCacheByDefault(self) -> None:
        """
        Without C{connectionCacheTime} each transaction has its own
        connection, ended with QUIT.
        """
        factory, port = self.server()
        sender = self.sender()
        route = Route("127.0.0.1", port, False)
        await self.deliver(sender, route, ["b@example.test"])
        await self.deliver(sender, route, ["c@example.test"])
        self.assertEqual(len(factory.protocols), 2)
        await sender.close()
