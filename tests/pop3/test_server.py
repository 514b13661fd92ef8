"""
Tests for L{mailhub.pop3.server}: the POP3 protocol driven through a
L{StringTransport} and a L{Clock}, over a real Maildir in a temporary
directory, with a L{Portal} and an in-memory checker.  No sockets.

Each trap of Twisted's own POP3 server has a test named C{test_twistedTrap*}.
"""

from __future__ import annotations

import base64
import errno
import mailbox
import os
import socket
from typing import Any, Callable

from hypothesis import given, settings, strategies as st
from twisted.cred.checkers import ICredentialsChecker, InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import LoginDenied
from twisted.cred.portal import IRealm, Portal
from twisted.internet.address import IPv4Address
from twisted.logger import capturedLogs, formatEvent
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IPullProducer, ITLSTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.mail.pop3 import AdvancedPOP3Client, IMailbox, Mailbox
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mailhub.errors import TemporaryAuthError
from mailhub.fs import FileSystem
from mailhub.pop3 import server as S
from mailhub.pop3.mailbox import LOCK_NAME, MaildirMailbox
from mailhub.pop3.server import CHUNK_SIZE, POP3Factory, POP3Server, _Encoder, _messageChunks
from tests.pop3.test_mailbox import NOW, DEAD_PID, makeMaildir, mailhubName, put
from tests.test_fs import ScriptedFileSystem

PEER = IPv4Address("TCP", "192.0.2.7", 40000)

CRLF_MESSAGE = b"Subject: one\r\nFrom: a@example.test\r\n\r\nHello\r\n.dot\r\n..two\r\nend\r\n"
LF_MESSAGE = b"Subject: two\n\nline one\n.leading dot\nline three\n"


@implementer(ITLSTransport)
class TLSStringTransport(StringTransport):
    """
    A string transport that records STARTTLS and TCP_NODELAY.
    """

    tlsStarted: object = None
    noDelay = False

    def startTLS(self, contextFactory: object) -> None:
        self.tlsStarted = contextFactory

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.noDelay = enabled


@implementer(IRealm)
class MaildirRealm:
    """
    Gives each user the Maildir C{root/USER}; records logouts.
    """

    def __init__(self, root: str, fs: FileSystem | None = None) -> None:
        self.root = root
        self.fs = fs
        self.logouts: list[bytes] = []
        self.avatar: Callable[[bytes], Any] | None = None

    def requestAvatar(self, avatarId: bytes, mind: object, *interfaces: Any) -> tuple[Any, Any, Callable[[], None]]:
        assert IMailbox in interfaces
        if self.avatar is not None:
            avatar = self.avatar(avatarId)
        else:
            avatar = MaildirMailbox(os.path.join(self.root, avatarId.decode()), self.fs)
        return IMailbox, avatar, lambda: self.logouts.append(avatarId)


@implementer(ICredentialsChecker)
class FailingChecker:
    """
    A checker that fails every login with C{error}.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, error: Exception) -> None:
        self.error = error

    def requestAvatarId(self, credentials: object) -> Deferred[bytes]:
        return fail(self.error)


class ServerTestsMixin:
    implicitTLS = False

    def setUp(self) -> None:
        self.root = self.mktemp()
        self.maildir = makeMaildir(os.path.join(self.root, "alice"))
        makeMaildir(os.path.join(self.root, "bob"))
        self.clock = Clock()
        self.clock.advance(NOW)
        self.realm = MaildirRealm(self.root)
        self.checker = InMemoryUsernamePasswordDatabaseDontUse()
        self.checker.addUser(b"alice", b"secret pass")
        self.checker.addUser(b"bob", b"bobpw")
        self.portal = Portal(self.realm, [self.checker])
        self.contextFactory = object()
        self.factory = POP3Factory(
            portal=self.portal,
            clock=self.clock,
            hostname="pop.test",
            contextFactory=self.contextFactory,
            implicitTLS=self.implicitTLS,
        )
        self.names = [mailhubName(NOW - 100, 1, CRLF_MESSAGE), "1795600050.P7.foreign"]
        put(self.maildir, self.names[0], CRLF_MESSAGE)
        put(self.maildir, self.names[1], LF_MESSAGE, sub="cur")
        self.server, self.transport = self.connect()

    def connect(self) -> tuple[POP3Server, TLSStringTransport]:
        server = self.factory.buildProtocol(PEER)
        transport = TLSStringTransport(peerAddress=PEER)
        server.makeConnection(transport)
        self.addCleanup(lambda: server in self.factory.sessions and server.connectionLost(None))
        return server, transport  # type: ignore[return-value]

    def pump(self, transport: StringTransport) -> None:
        """
        Be the network: ask a registered producer for more until it is done.
        """
        while transport.producer is not None:
            transport.producer.resumeProducing()

    def raw(self, data: bytes = b"", server: POP3Server | None = None, transport: StringTransport | None = None) -> bytes:
        server = server or self.server
        transport = transport or self.transport
        if data:
            server.dataReceived(data)
        self.pump(transport)
        value = transport.value()
        transport.clear()
        return value

    def send(self, data: bytes = b"", **kw: Any) -> list[str]:
        """
        Send C{data}; the reply lines.
        """
        return [line for line in self.raw(data, **kw).decode("utf-8").split("\r\n") if line]

    def statuses(self, data: bytes) -> list[str]:
        """
        The first word of each status line C{data} causes (multi-line
        bodies must not be mistaken for statuses: use with single-line
        replies).
        """
        return [line.split(" ", 1)[0] for line in self.send(data)]

    def login(self, server: POP3Server | None = None, transport: StringTransport | None = None, user: bytes = b"alice", password: bytes = b"secret pass") -> list[str]:
        kw = {"server": server, "transport": transport}
        self.send(**kw)
        if not (server or self.server).tls:
            self.send(b"STLS\r\n", **kw)
        return self.send(b"USER " + user + b"\r\nPASS " + password + b"\r\n", **kw)

    def useChecker(self, error: Exception) -> None:
        self.factory.portal = self.server.portal = Portal(self.realm, [FailingChecker(error)])

    def files(self) -> dict[str, list[str]]:
        return {sub: sorted(os.listdir(os.path.join(self.maildir, sub))) for sub in ("cur", "new", "tmp")}


class GreetingTests(ServerTestsMixin, SynchronousTestCase):
    def test_greeting(self) -> None:
        self.assertEqual(self.send(), ["+OK pop.test POP3 mailhub ready"])

    def test_twistedTrapAPOPGreeting(self) -> None:
        """
        Regression: Twisted's greeting carries an APOP timestamp
        (C{<...@...>}) though its APOP always fails; passwords are stored
        hashed, so APOP is not offered at all.
        """
        greeting = self.send()[0]
        self.assertNotIn("<", greeting)
        self.assertNotIn("@", greeting)

    def test_twistedTrapNagle(self) -> None:
        """
        Regression: Twisted's RETR of many messages stalls ~40 ms each on
        Nagle's algorithm; TCP_NODELAY is set on connection.
        """
        self.assertTrue(self.transport.noDelay)

    def test_noDelayOptional(self) -> None:
        """
        A transport without C{setTcpNoDelay} (a TLS wrapper that hides it,
        a test transport) is fine.
        """
        server = self.factory.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        server.makeConnection(transport)
        self.assertEqual(self.send(server=server, transport=transport), ["+OK pop.test POP3 mailhub ready"])
        server.connectionLost(None)

    def test_quitBeforeLogin(self) -> None:
        self.send()
        self.assertEqual(self.send(b"QUIT\r\n"), ["+OK Bye"])
        self.assertTrue(self.transport.disconnecting)


class CapaTests(ServerTestsMixin, SynchronousTestCase):
    """
    CAPA (RFC 2449) says what is true in each state.
    """

    base = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]

    def capa(self, **kw: Any) -> list[str]:
        lines = self.send(b"CAPA\r\n", **kw)
        self.assertEqual(lines[0], "+OK Capability list follows")
        self.assertEqual(lines[-1], ".")
        return lines[1:-1]

    def test_beforeTLS(self) -> None:
        """
        Before TLS: STLS, and neither USER nor SASL.
        """
        self.send()
        self.assertEqual(self.capa(), self.base + ["STLS"])

    def test_afterSTLS(self) -> None:
        """
        After STLS: USER and SASL PLAIN, no STLS.
        """
        self.send()
        self.send(b"STLS\r\n")
        self.assertEqual(self.capa(), self.base + ["USER", "SASL PLAIN"])

    def test_afterLogin(self) -> None:
        self.login()
        self.assertEqual(self.capa(), self.base)

    def test_withoutTLS(self) -> None:
        """
        A listener without TLS options offers no STLS (and so no login).
        """
        self.factory.contextFactory = None
        server, transport = self.connect()
        self.send(server=server, transport=transport)
        self.assertEqual(self.capa(server=server, transport=transport), self.base)

    def test_twistedTrapCapaJokes(self) -> None:
        """
        Regression: Twisted's CAPA lists C{CELERITY}, C{AUSPEX},
        C{POTENCE} and C{PIPELINE} (a misspelt PIPELINING), and USER before
        TLS.
        """
        self.send()
        capabilities = self.capa()
        for joke in ("CELERITY", "AUSPEX", "POTENCE", "PIPELINE", "USER"):
            self.assertNotIn(joke, capabilities)

    def test_capaArgument(self) -> None:
        self.send()
        self.assertEqual(self.send(b"CAPA x\r\n"), ["-ERR Syntax: CAPA"])


class ImplicitTLSTests(ServerTestsMixin, SynchronousTestCase):
    """
    A listener that is TLS from the first byte (port 995).
    """

    implicitTLS = True

    def test_capa(self) -> None:
        self.send()
        self.assertEqual(self.send(b"CAPA\r\n")[1:-1], CapaTests.base + ["USER", "SASL PLAIN"])

    def test_noSTLS(self) -> None:
        self.send()
        self.assertEqual(self.send(b"STLS\r\n"), ["-ERR TLS already active"])
        self.assertIsNone(self.transport.tlsStarted)

    def test_login(self) -> None:
        self.assertEqual(self.login(), ["+OK Send PASS", "+OK Logged in"])

    def test_contextNotGivenToSession(self) -> None:
        self.assertIsNone(self.server.ctx)


class STLSTests(ServerTestsMixin, SynchronousTestCase):
    """
    STLS (RFC 2595).
    """

    def test_stls(self) -> None:
        self.send()
        self.assertEqual(self.send(b"STLS\r\n"), ["+OK Begin TLS negotiation"])
        self.assertIs(self.transport.tlsStarted, self.contextFactory)
        self.assertTrue(self.server.tls)

    def test_commandsInjectedBeforeSTLS(self) -> None:
        """
        Regression (the STARTTLS command-injection class, CVE-2011-0411):
        commands pipelined after STLS arrived in the clear and are
        discarded, not run inside TLS.
        """
        self.send()
        lines = self.send(b"STLS\r\nUSER alice\r\nPASS secret pass\r\nDELE 1\r\nQUIT\r\n")
        self.assertEqual(lines, ["+OK Begin TLS negotiation"])
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(self.send(b"PASS secret pass\r\n"), ["-ERR Send USER first"])

    def test_stlsTwice(self) -> None:
        self.send()
        self.send(b"STLS\r\n")
        self.assertEqual(self.send(b"STLS\r\n"), ["-ERR TLS already active"])

    def test_stlsUnavailable(self) -> None:
        self.factory.contextFactory = None
        server, transport = self.connect()
        self.send(server=server, transport=transport)
        self.assertEqual(self.send(b"STLS\r\n", server=server, transport=transport), ["-ERR TLS not available"])

    def test_stlsAfterLogin(self) -> None:
        """
        RFC 2595 §4: STLS only in the AUTHORIZATION state.
        """
        self.login()
        self.assertEqual(self.send(b"STLS\r\n"), ["-ERR Already logged in"])

    def test_stlsArgument(self) -> None:
        self.send()
        self.assertEqual(self.send(b"STLS now\r\n"), ["-ERR Syntax: STLS"])
        self.assertIsNone(self.transport.tlsStarted)


class LoginTests(ServerTestsMixin, SynchronousTestCase):
    """
    USER/PASS (RFC 1939 §7) and AUTH PLAIN (RFC 5034), only under TLS.
    """

    refusal = "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections; use STLS first"

    def test_authBeforeTLSRefused(self) -> None:
        """
        Regression: before TLS every way of sending a password is refused
        with C{[AUTH]} and a hint to use STLS; the password is never
        checked.
        """
        self.send()
        plain = base64.b64encode(b"\0alice\0secret pass")
        lines = self.send(b"USER alice\r\nPASS secret pass\r\nAUTH PLAIN " + plain + b"\r\nAUTH PLAIN\r\nAUTH\r\n")
        self.assertEqual(lines, [self.refusal] * 5)
        self.assertEqual(self.server.state, S.AUTHORIZATION)
        self.assertEqual(self.send(b"STAT\r\n"), ["-ERR Log in first"])

    def test_userPass(self) -> None:
        """
        A password may contain spaces: it is the rest of the line.
        """
        self.assertEqual(self.login(), ["+OK Send PASS", "+OK Logged in"])
        self.assertEqual(self.server.state, S.TRANSACTION)

    def test_wrongPassword(self) -> None:
        self.assertEqual(self.login(password=b"secret"), ["+OK Send PASS", "-ERR [AUTH] Authentication failed"])
        self.assertEqual(self.login(user=b"nobody"), ["+OK Send PASS", "-ERR [AUTH] Authentication failed"])
        self.assertEqual(self.server.state, S.AUTHORIZATION)
        self.assertEqual(self.login(), ["+OK Send PASS", "+OK Logged in"])

    def test_passWithoutUser(self) -> None:
        self.send()
        self.send(b"STLS\r\n")
        self.assertEqual(self.send(b"PASS x\r\n"), ["-ERR Send USER first"])

    def test_userSyntax(self) -> None:
        self.send()
        self.send(b"STLS\r\n")
        self.assertEqual(self.send(b"USER\r\nUSER a b\r\n"), ["-ERR Syntax: USER name"] * 2)
        self.assertEqual(self.send(b"USER alice\r\nPASS\r\n"), ["+OK Send PASS", "-ERR Syntax: PASS password"])

    def startTLS(self) -> None:
        self.send()
        self.send(b"STLS\r\n")

    def test_twistedTrapAuthPlain(self) -> None:
        """
        Regression: Twisted's AUTH takes only CRAM-MD5's format, so PLAIN
        fails.  PLAIN with the initial response on the AUTH line logs in.
        """
        self.startTLS()
        plain = base64.b64encode(b"\0alice\0secret pass")
        self.assertEqual(self.send(b"AUTH PLAIN " + plain + b"\r\n"), ["+OK Logged in"])

    def test_authPlainContinuation(self) -> None:
        """
        Without an initial response the server sends an empty challenge
        (C{+ }) and the next line is the response.
        """
        self.startTLS()
        self.assertEqual(self.raw(b"AUTH PLAIN\r\n"), b"+ \r\n")
        plain = base64.b64encode(b"alice\0alice\0secret pass")
        self.assertEqual(self.send(plain + b"\r\n"), ["+OK Logged in"])

    def test_authPlainCancelled(self) -> None:
        """
        RFC 5034 §4: C{*} cancels, with C{-ERR}; the session goes on.
        """
        self.startTLS()
        self.raw(b"AUTH PLAIN\r\n")
        self.assertEqual(self.send(b"*\r\n"), ["-ERR Authentication cancelled"])
        self.assertEqual(self.send(b"AUTH PLAIN *\r\n"), ["-ERR Authentication cancelled"])
        self.assertEqual(self.server.state, S.AUTHORIZATION)
        self.assertEqual(self.login(), ["+OK Send PASS", "+OK Logged in"])

    def test_authPlainBadResponses(self) -> None:
        """
        Bad base64, the wrong shape, an empty response and another
        authorization identity are refused; a wrong password is [AUTH].
        """
        self.startTLS()
        cases = [
            (b"AUTH PLAIN %%%\r\n", "-ERR Invalid base64 data"),
            (b"AUTH PLAIN YWxpY2U\r\n", "-ERR Invalid base64 data"),
            (b"AUTH PLAIN " + base64.b64encode(b"alice\0secret") + b"\r\n", "-ERR Malformed PLAIN response"),
            (b"AUTH PLAIN =\r\n", "-ERR Malformed PLAIN response"),
            (b"AUTH PLAIN " + base64.b64encode(b"\0\0secret pass") + b"\r\n", "-ERR Malformed PLAIN response"),
            (
                b"AUTH PLAIN " + base64.b64encode(b"bob\0alice\0secret pass") + b"\r\n",
                "-ERR [AUTH] Authorization identity must be empty or the user",
            ),
            (b"AUTH PLAIN " + base64.b64encode(b"\0alice\0wrong") + b"\r\n", "-ERR [AUTH] Authentication failed"),
            (b"AUTH CRAM-MD5\r\n", "-ERR Unsupported authentication mechanism"),
            (b"AUTH PLAIN a b\r\n", "-ERR Syntax: AUTH mechanism [initial-response]"),
        ]
        for line, reply in cases:
            self.assertEqual(self.send(line), [reply], line)
        self.assertEqual(self.server.state, S.AUTHORIZATION)

    def test_authListsMechanisms(self) -> None:
        self.startTLS()
        self.assertEqual(self.send(b"AUTH\r\n"), ["+OK Supported mechanisms follow", "PLAIN", "."])

    def test_twistedTrapAPOP(self) -> None:
        """
        Regression: Twisted's APOP always fails (and needs clear-text
        passwords); APOP is refused outright, even under TLS.
        """
        self.send()
        self.assertEqual(self.send(b"APOP alice c4c9334bac560ecc979e58001b3e22fb\r\n"), ["-ERR APOP not supported"])
        self.send(b"STLS\r\n")
        self.assertEqual(self.send(b"APOP alice c4c9334bac560ecc979e58001b3e22fb\r\n"), ["-ERR APOP not supported"])

    def test_alreadyLoggedIn(self) -> None:
        self.login()
        self.assertEqual(self.send(b"USER bob\r\nAUTH PLAIN\r\n"), ["-ERR Already logged in"] * 2)

    def test_temporaryAuthError(self) -> None:
        """
        A checker that cannot decide (L{TemporaryAuthError}) is
        C{[SYS/TEMP]}, never "wrong password".
        """
        self.useChecker(TemporaryAuthError("the password service is down"))
        self.assertEqual(
            self.login(), ["+OK Send PASS", "-ERR [SYS/TEMP] Authentication temporarily unavailable, try again later"]
        )

    def test_unexpectedAuthError(self) -> None:
        """
        Any other failure is C{[SYS/TEMP]} too, and logged.
        """
        self.useChecker(RuntimeError("bug"))
        self.assertEqual(self.login()[-1], "-ERR [SYS/TEMP] Authentication temporarily unavailable, try again later")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_loginDenied(self) -> None:
        self.useChecker(LoginDenied("disabled"))
        self.assertEqual(self.login()[-1], "-ERR [AUTH] Authentication failed")

    def test_realmWithoutSessionMailbox(self) -> None:
        """
        An avatar that is a plain Twisted mailbox (no lock, no snapshot)
        is refused as a server fault, and logged out.
        """
        self.realm.avatar = lambda avatarId: Mailbox()
        self.assertEqual(self.login()[-1], "-ERR [SYS/TEMP] Authentication temporarily unavailable, try again later")
        self.assertEqual(self.realm.logouts, [b"alice"])
        self.flushLoggedErrors()

    def test_pendingLoginBlocksInput(self) -> None:
        """
        While the checker thinks, pipelined commands wait, and run in order
        after its answer.
        """
        held: Deferred[bytes] = Deferred()

        @implementer(ICredentialsChecker)
        class Slow:
            credentialInterfaces = (IUsernamePassword,)

            def requestAvatarId(self, credentials: object) -> Deferred[bytes]:
                return held

        self.factory.portal = self.server.portal = Portal(self.realm, [Slow()])
        self.startTLS()
        self.assertEqual(self.send(b"USER alice\r\nPASS secret pass\r\nSTAT\r\n"), ["+OK Send PASS"])
        held.callback(b"alice")
        self.assertEqual(self.send(), ["+OK Logged in", "+OK 2 " + str(len(CRLF_MESSAGE) + len(LF_MESSAGE) + 5)])

    def test_connectionLostDuringLogin(self) -> None:
        """
        A login that completes after the client left locks nothing and
        logs out.
        """
        held: Deferred[bytes] = Deferred()

        @implementer(ICredentialsChecker)
        class Slow:
            credentialInterfaces = (IUsernamePassword,)

            def requestAvatarId(self, credentials: object) -> Deferred[bytes]:
                return held

        self.factory.portal = self.server.portal = Portal(self.realm, [Slow()])
        self.login()
        self.server.connectionLost(None)
        held.callback(b"alice")
        self.assertEqual(self.realm.logouts, [b"alice"])
        self.assertFalse(os.path.exists(os.path.join(self.maildir, LOCK_NAME)))


class TransactionTests(ServerTestsMixin, SynchronousTestCase):
    """
    The TRANSACTION state (RFC 1939 §5), byte for byte.
    """

    def setUp(self) -> None:
        super().setUp()
        self.login()
        self.lfSize = len(LF_MESSAGE.replace(b"\n", b"\r\n"))

    def test_stat(self) -> None:
        self.assertEqual(self.raw(b"STAT\r\n"), b"+OK 2 %d\r\n" % (self.lfSize + len(CRLF_MESSAGE)))

    def test_list(self) -> None:
        """
        The foreign LF file (older, so message 1) is listed with its size
        as sent, CRLF; mailhub's with its C{W=}.
        """
        total = self.lfSize + len(CRLF_MESSAGE)
        self.assertEqual(
            self.raw(b"LIST\r\n"),
            b"+OK 2 messages (%d octets)\r\n1 %d\r\n2 %d\r\n.\r\n" % (total, self.lfSize, len(CRLF_MESSAGE)),
        )
        self.assertEqual(self.raw(b"LIST 2\r\n"), b"+OK 2 %d\r\n" % len(CRLF_MESSAGE))

    def test_uidl(self) -> None:
        expected = b"+OK Unique-ID listing follows\r\n1 %s\r\n2 %s\r\n.\r\n" % (
            self.names[1].encode(),
            self.names[0].encode(),
        )
        self.assertEqual(self.raw(b"UIDL\r\n"), expected)
        self.assertEqual(self.raw(b"UIDL 1\r\n"), b"+OK 1 " + self.names[1].encode() + b"\r\n")

    def test_retrCRLF(self) -> None:
        """
        RETR sends the message with its lines dot-stuffed and the
        terminating dot.
        """
        self.assertEqual(
            self.raw(b"RETR 2\r\n"),
            b"+OK %d octets\r\n" % len(CRLF_MESSAGE)
            + b"Subject: one\r\nFrom: a@example.test\r\n\r\nHello\r\n..dot\r\n...two\r\nend\r\n.\r\n",
        )

    def test_twistedTrapCRLFMessage(self) -> None:
        """
        Regression: Twisted's RETR turns every CRLF of a stored message into
        CR CR LF (it expects LF files); mailhub stores CRLF.  Each line goes
        out once, with one CR.
        """
        sent = self.raw(b"RETR 2\r\n")
        self.assertNotIn(b"\r\r\n", sent)
        self.assertEqual(sent.count(b"\r\n"), CRLF_MESSAGE.count(b"\r\n") + 2)

    def test_twistedTrapLFMessage(self) -> None:
        """
        Regression: a LF-only file (dropped in by another tool) is sent with
        CRLF line ends, dot-stuffed, and as many octets as LIST said.
        """
        sent = self.raw(b"RETR 1\r\n")
        self.assertEqual(
            sent,
            b"+OK %d octets\r\nSubject: two\r\n\r\nline one\r\n..leading dot\r\nline three\r\n.\r\n" % self.lfSize,
        )
        body = sent.split(b"\r\n", 1)[1][: -len(b".\r\n")].replace(b"\r\n..", b"\r\n.")
        self.assertEqual(len(body), self.lfSize)

    def test_top(self) -> None:
        """
        TOP sends the header, the empty line and N lines of the body, for
        CRLF and LF files alike.
        """
        self.assertEqual(
            self.raw(b"TOP 2 0\r\n"),
            b"+OK Top of message follows\r\nSubject: one\r\nFrom: a@example.test\r\n\r\n.\r\n",
        )
        self.assertEqual(
            self.raw(b"TOP 2 2\r\n"),
            b"+OK Top of message follows\r\nSubject: one\r\nFrom: a@example.test\r\n\r\nHello\r\n..dot\r\n.\r\n",
        )
        self.assertEqual(
            self.raw(b"TOP 1 1\r\n"),
            b"+OK Top of message follows\r\nSubject: two\r\n\r\nline one\r\n.\r\n",
        )
        self.assertEqual(self.raw(b"TOP 1 100\r\n"), self.raw(b"RETR 1\r\n").replace(b"%d octets" % self.lfSize, b"Top of message follows"))

    def test_topOfMessageWithoutBody(self) -> None:
        """
        A message without an empty line is all header.
        """
        put(self.maildir, "1795600051.P8.nobody", b"Subject: x\nX: y")
        self.send(b"QUIT\r\n")
        self.server, self.transport = self.connect()
        self.login()
        self.assertEqual(self.raw(b"TOP 2 0\r\n"), b"+OK Top of message follows\r\nSubject: x\r\nX: y\r\n.\r\n")

    def test_deleteAndQuit(self) -> None:
        """
        DELE marks, QUIT commits: the file is gone.
        """
        self.assertEqual(self.send(b"DELE 2\r\n"), ["+OK Message 2 deleted"])
        self.assertEqual(self.send(b"STAT\r\n"), ["+OK 1 %d" % self.lfSize])
        self.assertEqual(self.send(b"LIST\r\n"), ["+OK 1 messages (%d octets)" % self.lfSize, "1 %d" % self.lfSize, "."])
        self.assertEqual(self.statuses(b"RETR 2\r\nTOP 2 1\r\nLIST 2\r\nUIDL 2\r\nDELE 2\r\n"), ["-ERR"] * 5)
        self.assertEqual(self.send(b"QUIT\r\n"), ["+OK Bye"])
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.files(), {"cur": [self.names[1]], "new": [], "tmp": []})
        self.assertFalse(os.path.exists(os.path.join(self.maildir, LOCK_NAME)))

    def test_deleteResetQuit(self) -> None:
        """
        RSET unmarks: nothing is deleted.
        """
        before = self.files()
        self.assertEqual(self.send(b"DELE 1\r\nDELE 2\r\nRSET\r\n")[-1], "+OK Reset")
        self.assertEqual(self.statuses(b"LIST 1\r\nLIST 2\r\n"), ["+OK", "+OK"])
        self.send(b"QUIT\r\n")
        self.assertEqual(self.files(), before)

    def test_droppedConnectionKeeps(self) -> None:
        """
        RFC 1939 §6: a session that ends without QUIT changes nothing; the
        lock goes and the user is logged out.
        """
        before = self.files()
        self.send(b"DELE 1\r\nRETR 2\r\n")
        self.server.connectionLost(None)
        self.assertEqual(self.files(), before)
        self.assertFalse(os.path.exists(os.path.join(self.maildir, LOCK_NAME)))
        self.assertEqual(self.realm.logouts, [b"alice"])

    def test_retrMarksSeenAtQuit(self) -> None:
        """
        RETR marks the message seen; at QUIT it moves from C{new/} to
        C{cur/} with C{:2,S}.  TOP does not (as in Dovecot).
        """
        self.send(b"RETR 2\r\nTOP 1 0\r\n")
        self.assertEqual(self.files()["new"], [self.names[0]])  # not yet
        self.send(b"QUIT\r\n")
        reader = mailbox.Maildir(self.maildir, factory=None, create=False)
        self.assertEqual(reader.get_message(self.names[0]).get_flags(), "S")
        self.assertEqual(reader.get_message(self.names[0]).get_subdir(), "cur")
        self.assertEqual(reader.get_message(self.names[1]).get_flags(), "")

    def test_topDoesNotMarkSeen(self) -> None:
        self.send(b"TOP 2 5\r\nQUIT\r\n")
        self.assertEqual(self.files()["new"], [self.names[0]])

    def test_noop(self) -> None:
        self.assertEqual(self.send(b"NOOP\r\n"), ["+OK"])

    def test_badMessageNumbers(self) -> None:
        """
        Out-of-range and non-numeric numbers, wrong argument counts: each
        is C{-ERR} with a reason and the session goes on.
        """
        cases = [
            (b"RETR 0", "-ERR Invalid message number"),
            (b"RETR 3", "-ERR No such message"),
            (b"RETR 99999999999999999999", "-ERR Invalid message number"),
            (b"RETR -1", "-ERR Invalid message number"),
            (b"RETR abc", "-ERR Invalid message number"),
            (b"RETR \xd9\xa1", "-ERR Syntax: RETR message"),
            (b"RETR", "-ERR Syntax: RETR message"),
            (b"RETR 1 2", "-ERR Syntax: RETR message"),
            (b"LIST 0", "-ERR Invalid message number"),
            (b"LIST 1 2", "-ERR Syntax: LIST [message]"),
            (b"UIDL 3", "-ERR No such message"),
            (b"TOP 1", "-ERR Syntax: TOP message lines"),
            (b"TOP 1 -1", "-ERR Invalid line count"),
            (b"TOP 1 x", "-ERR Invalid line count"),
            (b"TOP 9 1", "-ERR No such message"),
            (b"DELE x", "-ERR Invalid message number"),
            (b"STAT 1", "-ERR Syntax: STAT"),
        ]
        self.factory.maxErrors = 100
        for line, reply in cases:
            self.assertEqual(self.send(line + b"\r\n"), [reply], line)
        self.assertEqual(self.send(b"NOOP\r\n"), ["+OK"])

    def test_snapshot(self) -> None:
        """
        A message delivered during the session appears in the next one.
        """
        later = mailhubName(NOW, 9, CRLF_MESSAGE)
        put(self.maildir, later, CRLF_MESSAGE)
        self.assertEqual(self.statuses(b"LIST 3\r\n"), ["-ERR"])
        self.send(b"QUIT\r\n")
        self.server, self.transport = self.connect()
        self.login()
        self.assertEqual(self.send(b"UIDL 3\r\n"), ["+OK 3 " + later])

    def test_twistedTrapUnreadableMessageHangs(self) -> None:
        """
        Regression: when C{getMessage} fails (here: another client removed
        the message since login) Twisted sends no reply at all and the
        client waits for ever.  It is C{-ERR}, saying so, with a log line
        (no traceback), and the session goes on.
        """
        os.unlink(os.path.join(self.maildir, "new", self.names[0]))
        with capturedLogs() as events:
            self.assertEqual(self.send(b"RETR 2\r\n"), ["-ERR Message 2 was removed by another session"])
            self.assertEqual(self.send(b"TOP 2 0\r\n"), ["-ERR Message 2 was removed by another session"])
        self.assertEqual(self.send(b"NOOP\r\n"), ["+OK"])
        self.assertEqual([e.get("log_failure") for e in events], [None, None])
        self.assertIn("removed by another session", formatEvent(events[0]))

    def test_unreadableMessage(self) -> None:
        """
        A message that cannot be read for any other reason is
        C{-ERR [SYS/TEMP]}, logged with its traceback.
        """
        def denied(path: str) -> int:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)

        self.patch(self.server.mbox._fs, "openRead", denied)
        self.assertEqual(self.send(b"RETR 2\r\n"), ["-ERR [SYS/TEMP] Message cannot be read, try again later"])
        self.assertEqual(self.send(b"NOOP\r\n"), ["+OK"])
        self.assertEqual(len(self.flushLoggedErrors(PermissionError)), 1)

    def test_pipelined(self) -> None:
        """
        RFC 2449 PIPELINING: commands sent at once are answered in order,
        each after the previous one's message is out.
        """
        self.server.dataReceived(b"STAT\r\nRETR 2\r\nNOOP\r\nQUIT\r\n")
        self.assertEqual(self.transport.value(), b"+OK 2 %d\r\n" % (self.lfSize + len(CRLF_MESSAGE)))
        self.assertFalse(self.transport.disconnecting)  # QUIT waits for RETR
        self.pump(self.transport)
        lines = self.transport.value().split(b"\r\n")
        self.assertEqual(lines[-4:], [b".", b"+OK", b"+OK Bye", b""])
        self.assertTrue(self.transport.disconnecting)


class StreamingTests(ServerTestsMixin, SynchronousTestCase):
    """
    Messages go out a chunk at a time, as the transport asks.
    """

    def test_largeMessageStreamed(self) -> None:
        """
        A message of several chunks is never read whole: each write is at
        most a chunk (plus the status line), and it is all there at the
        end, with the idle timer reset as it goes.
        """
        line = b"x" * 998 + b"\r\n"
        body = b"Subject: big\r\n\r\n" + line * 300
        name = mailhubName(NOW - 50, 5, body)
        put(self.maildir, name, body)
        self.login()
        self.server.dataReceived(b"RETR 3\r\n")
        self.assertEqual(self.transport.value(), b"")
        self.assertTrue(IPullProducer.providedBy(self.transport.producer))
        self.assertTrue(verifyObject(IPullProducer, self.transport.producer))
        writes = []
        while self.transport.producer is not None:
            self.clock.advance(self.factory.idleTimeout - 1)  # a slow reader
            self.transport.producer.resumeProducing()
            writes.append(self.transport.value())
            self.transport.clear()
        self.assertGreater(len(writes), 3)
        self.assertTrue(all(len(w) <= CHUNK_SIZE + 100 for w in writes))
        self.assertEqual(b"".join(writes), b"+OK %d octets\r\n" % len(body) + body + b".\r\n")
        self.assertFalse(self.transport.disconnecting)

    def test_connectionLostMidMessage(self) -> None:
        """
        The client goes while a message is being sent: the file is closed,
        nothing is committed, the lock goes.
        """
        body = b"Subject: big\r\n\r\n" + b"y" * (3 * CHUNK_SIZE) + b"\r\n"
        put(self.maildir, mailhubName(NOW - 50, 5, body), body)
        fs = ScriptedFileSystem()
        self.realm.fs = fs
        self.login()
        self.server.dataReceived(b"DELE 1\r\nRETR 3\r\n")
        self.transport.producer.resumeProducing()
        self.assertIsNot(self.transport.producer, None)
        self.server.connectionLost(None)
        self.assertEqual(fs.openFds, set())
        self.assertEqual(len(self.files()["new"]), 2)
        self.assertFalse(os.path.exists(os.path.join(self.maildir, LOCK_NAME)))

    def test_twistedTrapReadFailureHangs(self) -> None:
        """
        Regression: when reading a message fails after C{+OK} was sent (in
        Twisted, a mailbox that yields text rather than bytes does it)
        Twisted leaves the session blocked for ever.  The only honest end
        is to hang up: the client sees no terminating dot.
        """
        self.login()

        class Broken:
            def __init__(self) -> None:
                self.reads = 0

            def read(self, size: int) -> bytes:
                self.reads += 1
                if self.reads > 2:
                    raise OSError(errno.EIO, "injected")
                return b"a\r\n" * 10

            def close(self) -> None:
                pass

        self.server.mbox.getMessage = lambda index: Broken()  # type: ignore[union-attr]
        self.server.dataReceived(b"RETR 1\r\n")
        self.pump(self.transport)
        self.assertTrue(self.transport.disconnecting)
        self.assertFalse(self.transport.value().endswith(b".\r\n"))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_twistedTrapTopAcrossChunks(self) -> None:
        """
        Regression: Twisted looks for the end of the header in each chunk
        on its own, so a header longer than a chunk (or an empty line
        split between two) makes TOP send the whole message.
        """
        header = b"".join(b"X-Long-%05d: %s\r\n" % (i, b"v" * 60) for i in range(1200))
        body = b"first\r\nsecond\r\nthird\r\n"
        content = header + b"\r\n" + body
        self.assertGreater(len(header), CHUNK_SIZE)
        put(self.maildir, mailhubName(NOW - 50, 5, content), content)
        self.login()
        self.assertEqual(
            self.raw(b"TOP 3 1\r\n"), b"+OK Top of message follows\r\n" + header + b"\r\nfirst\r\n.\r\n"
        )


    def test_twistedTrapTopLongLine(self) -> None:
        """
        Regression: Twisted's TOP drops a body line longer than a chunk
        (and everything after it).  It is sent whole.
        """
        long = b"z" * (CHUNK_SIZE + 10)
        content = b"Subject: long\r\n\r\n" + long + b"\r\nsecond\r\nthird\r\n"
        put(self.maildir, mailhubName(NOW - 50, 5, content), content)
        self.login()
        self.assertEqual(
            self.raw(b"TOP 3 2\r\n"),
            b"+OK Top of message follows\r\nSubject: long\r\n\r\n" + long + b"\r\nsecond\r\n.\r\n",
        )


class EncoderTests(SynchronousTestCase):
    """
    The encoder of message text, on its own (table-driven and property).
    """

    def encode(self, content: bytes, bodyLines: int | None = None, chunk: int = CHUNK_SIZE) -> bytes:
        class Source:
            def __init__(self) -> None:
                self.position = 0

            def read(self, size: int) -> bytes:
                size = min(size, chunk)
                data = content[self.position : self.position + size]
                self.position += len(data)
                return data

            def close(self) -> None:
                pass

        return b"".join(_messageChunks(Source(), _Encoder(bodyLines), chunk))

    def test_table(self) -> None:
        cases = [
            (b"", None, b".\r\n"),
            (b"a", None, b"a\r\n.\r\n"),
            (b"a\n", None, b"a\r\n.\r\n"),
            (b"a\r\n", None, b"a\r\n.\r\n"),
            (b".", None, b"..\r\n.\r\n"),
            (b".\r\n.\n", None, b"..\r\n..\r\n.\r\n"),
            (b"a\rb\n", None, b"a\rb\r\n.\r\n"),
            (b"a\r", None, b"a\r\r\n.\r\n"),
            (b"H: 1\n\nb1\nb2\n", 0, b"H: 1\r\n\r\n.\r\n"),
            (b"H: 1\n\nb1\nb2\n", 1, b"H: 1\r\n\r\nb1\r\n.\r\n"),
            (b"H: 1\r\n\r\n.b1\r\nb2", 5, b"H: 1\r\n\r\n..b1\r\nb2\r\n.\r\n"),
            (b"H: 1\r\n", 0, b"H: 1\r\n.\r\n"),
            (b"\r\nbody\r\n", 0, b"\r\n.\r\n"),
        ]
        for content, lines, expected in cases:
            for chunk in (1, 2, 3, CHUNK_SIZE):
                self.assertEqual(self.encode(content, lines, chunk), expected, (content, lines, chunk))

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"\n\n", b"xyz"]), max_size=40),
        st.integers(min_value=1, max_value=7),
    )
    def test_anyChunkingSameText(self, pieces: list[bytes], chunk: int) -> None:
        """
        However the file is cut into reads, the text is the same, its
        lines end in CRLF, no line but the last is a lone dot, and
        un-stuffed it is as long as the measured size.
        """
        content = b"".join(pieces)
        whole = self.encode(content)
        self.assertEqual(self.encode(content, chunk=chunk), whole)
        self.assertTrue(whole.endswith(b"\r\n.\r\n") or whole == b".\r\n")
        lines = whole.split(b"\r\n")[:-2]
        self.assertNotIn(b".", lines)
        self.assertEqual(whole.replace(b"\r\n", b"").count(b"\n"), 0)
        unstuffed = b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)
        if lines:
            unstuffed += b"\r\n"
        measured = len(content) + content.count(b"\n") - content.count(b"\r\n")
        # A message not ending in a line end gets one from the terminator.
        if content and not content.endswith(b"\n"):
            measured += 2
        self.assertEqual(len(unstuffed), measured)


class LockingTests(ServerTestsMixin, SynchronousTestCase):
    """
    One POP3 session per mailbox ([IN-USE], RFC 2449 §8.1.2).
    """

    def test_secondSessionInUse(self) -> None:
        self.assertEqual(self.login()[-1], "+OK Logged in")
        server, transport = self.connect()
        self.assertEqual(
            self.login(server, transport)[-1], "-ERR [IN-USE] Mailbox in use by another POP3 session"
        )
        self.assertEqual(server.state, S.AUTHORIZATION)
        self.assertEqual(self.realm.logouts, [b"alice"])
        # Another user is not affected.
        other, otherTransport = self.connect()
        self.assertEqual(self.login(other, otherTransport, b"bob", b"bobpw")[-1], "+OK Logged in")
        # Once the first session has quit, the mailbox is free.
        self.send(b"QUIT\r\n")
        self.assertEqual(self.send(b"PASS secret pass\r\n", server=server, transport=transport), ["-ERR Send USER first"])
        self.assertEqual(
            self.send(b"USER alice\r\nPASS secret pass\r\n", server=server, transport=transport)[-1], "+OK Logged in"
        )

    def test_staleLockBroken(self) -> None:
        """
        A lock left by a process that died is broken at login.
        """
        with open(os.path.join(self.maildir, LOCK_NAME), "w") as f:
            f.write(f"{DEAD_PID} {socket.gethostname()} {NOW - 5} n\n")
        self.assertEqual(self.login()[-1], "+OK Logged in")

    def test_liveLockFromAnotherHost(self) -> None:
        with open(os.path.join(self.maildir, LOCK_NAME), "w") as f:
            f.write(f"1 other.host.test {NOW - 5} n\n")
        self.assertEqual(self.login()[-1], "-ERR [IN-USE] Mailbox in use by another POP3 session")
        self.clock.advance(30 * 60)
        server, transport = self.connect()
        self.assertEqual(self.login(server, transport)[-1], "+OK Logged in")

    def test_listingFailure(self) -> None:
        """
        A maildrop that cannot be listed is [SYS/TEMP].
        """
        os.rename(os.path.join(self.maildir, "cur"), os.path.join(self.maildir, "cur.x"))
        with open(os.path.join(self.maildir, "cur"), "w"):
            pass
        self.assertEqual(self.login()[-1], "-ERR [SYS/TEMP] Mailbox cannot be opened, try again later")
        self.assertEqual(len(self.flushLoggedErrors(NotADirectoryError)), 1)
        self.assertFalse(os.path.exists(os.path.join(self.maildir, LOCK_NAME)))


class CommitFailureTests(ServerTestsMixin, SynchronousTestCase):
    def test_commitFailure(self) -> None:
        """
        A failure at QUIT (injected through the seam) is C{-ERR
        [SYS/TEMP]} (RFC 1939 §6 "some deleted messages not removed") and
        the Maildir is as it was.
        """
        fs = ScriptedFileSystem(failOp="fsyncDirectory", failErrno=errno.EIO)
        self.realm.fs = fs
        self.login()
        before = self.files()
        self.send(b"DELE 1\r\nRETR 2\r\n")
        self.assertEqual(self.send(b"QUIT\r\n"), ["-ERR [SYS/TEMP] Some deleted messages not removed, try again later"])
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.files(), before)
        self.assertFalse(os.path.exists(os.path.join(self.maildir, LOCK_NAME)))
        self.flushLoggedErrors(OSError)


class RunBlockingTests(ServerTestsMixin, SynchronousTestCase):
    def test_blockingWorkGoesThroughRunBlocking(self) -> None:
        """
        Opening the maildrop and the commit go through the factory's
        C{runBlocking} (a thread pool in production); the session waits.
        """
        calls: list[tuple[Callable[..., Any], Deferred[Any]]] = []

        def runBlocking(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            calls.append((lambda: f(*args), d))
            return d

        self.factory.runBlocking = runBlocking
        self.assertEqual(self.login(), ["+OK Send PASS"])
        f, d = calls.pop()
        d.callback(f())
        self.assertEqual(self.send(b"DELE 1\r\nQUIT\r\nNOOP\r\n"), ["+OK Logged in", "+OK Message 1 deleted"])
        f, d = calls.pop()
        d.callback(f())
        self.assertEqual(self.send(), ["+OK Bye"])
        self.assertEqual(self.files()["cur"], [])


class FramingTests(ServerTestsMixin, SynchronousTestCase):
    """
    Lines, errors and the limits on them.
    """

    def test_lineTooLong(self) -> None:
        """
        A line over the limit is C{-ERR} and skipped; the session goes on.
        """
        self.send()
        self.assertEqual(self.send(b"NOOP " + b"x" * 2000 + b"\r\nCAPA\r\n")[0], "-ERR Line too long")
        self.assertEqual(self.send(b"CAPA\r\n")[0], "+OK Capability list follows")

    def test_endlessLineMemoryBounded(self) -> None:
        """
        Megabytes without a line end are dropped as they come.
        """
        self.send()
        for _ in range(64):
            self.server.dataReceived(b"x" * 16384)
            self.assertLess(len(self.server._input), 2 * self.factory.lineLength)
        self.assertEqual(self.send(b"\r\nQUIT\r\n"), ["-ERR Line too long", "+OK Bye"])

    def test_lineUnderLimit(self) -> None:
        self.send()
        self.assertEqual(self.send(b"USER " + b"a" * (self.factory.lineLength - 5) + b"\r\n"), [LoginTests.refusal])

    def test_longSASLResponse(self) -> None:
        """
        An over-long SASL response ends the exchange.
        """
        self.send()
        self.send(b"STLS\r\n")
        self.raw(b"AUTH PLAIN\r\n")
        self.assertEqual(self.send(b"A" * 5000 + b"\r\n"), ["-ERR Line too long"])
        self.assertEqual(self.server.state, S.AUTHORIZATION)

    def test_unknownCommand(self) -> None:
        self.send()
        self.assertEqual(self.send(b"FROB\r\nLAST\r\nRPOP x\r\n\r\n"), ["-ERR Unknown command"] * 4)

    def test_wrongState(self) -> None:
        self.send()
        self.assertEqual(self.send(b"STAT\r\nRETR 1\r\nNOOP\r\n"), ["-ERR Log in first"] * 3)

    def test_bareLFAndCase(self) -> None:
        """
        A bare LF ends a command as well; verbs are case-insensitive.
        """
        self.send()
        self.assertEqual(self.send(b"capa\nQuit\n")[-1], "+OK Bye")

    def test_tooManyErrors(self) -> None:
        """
        After C{maxErrors} client errors the connection is closed.
        """
        self.factory.maxErrors = 3
        self.send()
        self.assertEqual(self.send(b"FROB\r\nFROB\r\nFROB\r\nCAPA\r\n"), ["-ERR Unknown command"] * 3)
        self.assertTrue(self.transport.disconnecting)

    def test_failedLoginsCount(self) -> None:
        self.factory.maxErrors = 3
        self.login(password=b"x")
        self.send(b"USER alice\r\nPASS y\r\n")
        self.assertFalse(self.transport.disconnecting)
        self.send(b"USER alice\r\nPASS z\r\n")
        self.assertTrue(self.transport.disconnecting)

    def test_serverErrorsDoNotCount(self) -> None:
        """
        [SYS/TEMP] and [IN-USE] are the server's trouble, not the client's.
        """
        self.factory.maxErrors = 2
        self.useChecker(TemporaryAuthError("down"))
        for _ in range(3):
            self.login()
        self.assertFalse(self.transport.disconnecting)

    def test_internalErrorIsSysTemp(self) -> None:
        """
        A bug in a command is C{-ERR [SYS/TEMP]}, never a traceback.
        """
        self.login()
        self.server.mbox.getUidl = lambda index: 1 / 0  # type: ignore[union-attr]
        self.assertEqual(self.send(b"UIDL 1\r\n"), ["-ERR [SYS/TEMP] Internal error, try again later"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_floodWhileBlockedPausesReading(self) -> None:
        """
        While a reply is pending, a client that keeps sending is paused.
        """
        big = b"Subject: big\r\n\r\n" + b"y" * (3 * CHUNK_SIZE) + b"\r\n"
        put(self.maildir, mailhubName(NOW - 50, 5, big), big)
        self.login()
        self.server.dataReceived(b"RETR 3\r\n")
        self.server.dataReceived(b"NOOP\r\n" * 20000)
        self.assertEqual(self.transport.producerState, "paused")
        self.pump(self.transport)
        self.assertEqual(self.transport.producerState, "producing")


class TimeoutTests(ServerTestsMixin, SynchronousTestCase):
    def test_defaultIdleTimeout(self) -> None:
        """
        RFC 1939 §3: at least 10 minutes.
        """
        self.assertEqual(self.factory.idleTimeout, 600)

    def test_idleTimeout(self) -> None:
        """
        A silent client is disconnected after the idle timeout, without a
        response (RFC 1939 §3); activity resets the timer.
        """
        self.send()
        self.clock.advance(599)
        self.send(b"CAPA\r\n")
        self.clock.advance(599)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(1)
        self.assertEqual(self.transport.value(), b"")
        self.assertTrue(self.transport.disconnecting)

    def test_timeoutCommitsNothing(self) -> None:
        """
        A timed-out session does not enter UPDATE: nothing is deleted.
        """
        self.login()
        before = self.files()
        self.send(b"DELE 1\r\n")
        self.clock.advance(600)
        self.assertTrue(self.transport.disconnecting)
        self.server.connectionLost(None)
        self.assertEqual(self.files(), before)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_configurable(self) -> None:
        self.factory.idleTimeout = 30
        server, transport = self.connect()
        self.clock.advance(30)
        self.assertTrue(transport.disconnecting)

    def test_stuckReaderAborted(self) -> None:
        """
        A client that stops reading in the middle of a message is aborted
        at the timeout.
        """
        body = b"Subject: big\r\n\r\n" + b"y" * (3 * CHUNK_SIZE) + b"\r\n"
        put(self.maildir, mailhubName(NOW - 50, 5, body), body)
        self.login()
        self.server.dataReceived(b"RETR 3\r\n")
        self.transport.producer.resumeProducing()
        self.clock.advance(600)
        self.assertTrue(self.transport.disconnected)

    def test_noDelayedCallsAfterDisconnect(self) -> None:
        self.login()
        self.server.connectionLost(None)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class FactoryTests(ServerTestsMixin, SynchronousTestCase):
    def test_perPeerLimit(self) -> None:
        """
        Past C{connectionsPerPeer} sessions from one address a client
        hears C{-ERR [SYS/TEMP]} and is dropped; loopback is exempt.
        """
        self.factory.connectionsPerPeer = 2
        self.connect()
        protocol = self.factory.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        self.assertEqual(transport.value(), b"-ERR [SYS/TEMP] Too many connections from your address\r\n")
        self.assertTrue(transport.disconnecting)
        loopback = IPv4Address("TCP", "127.0.0.1", 1)
        self.assertIsInstance(self.factory.buildProtocol(loopback), POP3Server)

    def test_countsGoBack(self) -> None:
        self.server.connectionLost(None)
        self.assertEqual(self.factory.perPeer, {})
        self.assertEqual(self.factory.sessions, set())


class ShutdownTests(ServerTestsMixin, SynchronousTestCase):
    def test_idleSessionHearsIt(self) -> None:
        """
        An idle session hears C{-ERR [SYS/TEMP]} and is closed, committing
        nothing; the factory's Deferred fires once it is gone.
        """
        self.login()
        self.send(b"DELE 1\r\n")
        before = self.files()
        d = self.factory.shutDown()
        self.assertEqual(self.send(), ["-ERR [SYS/TEMP] Server shutting down"])
        self.assertTrue(self.transport.disconnecting)
        self.assertNoResult(d)
        self.server.connectionLost(None)
        self.successResultOf(d)
        self.assertEqual(self.files(), before)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_messageFinishesFirst(self) -> None:
        """
        A message being sent is finished first; nothing pipelined after it
        runs.
        """
        self.login()
        self.server.dataReceived(b"RETR 2\r\nDELE 1\r\nQUIT\r\n")
        self.factory.shutDown()
        lines = self.send()
        self.assertEqual(lines[0], "+OK %d octets" % len(CRLF_MESSAGE))
        self.assertEqual(lines[-2:], [".", "-ERR [SYS/TEMP] Server shutting down"])

    def test_stuckSessionAborted(self) -> None:
        self.send()
        d = self.factory.shutDown(grace=5)
        self.clock.advance(5)
        self.assertTrue(self.transport.disconnected)
        self.server.connectionLost(None)
        self.successResultOf(d)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_noSessions(self) -> None:
        self.server.connectionLost(None)
        self.successResultOf(self.factory.shutDown())


class TwistedClientTests(ServerTestsMixin, SynchronousTestCase):
    """
    End to end with Twisted's own POP3 client over an in-memory
    connection (which, like TCP, asks the producer for data at once), on an
    implicit-TLS listener.
    """

    implicitTLS = True

    def test_session(self) -> None:
        def makeClient() -> AdvancedPOP3Client:
            client = AdvancedPOP3Client()
            client.allowInsecureLogin = True  # the listener says it is TLS
            return client

        client, server, pump = connectedServerAndClient(
            lambda: self.factory.buildProtocol(PEER), makeClient, clock=self.clock
        )

        def run(d: Deferred[Any]) -> Any:
            pump.flush()
            return self.successResultOf(d)

        capabilities = run(client.capabilities(useCache=False))
        self.assertEqual(capabilities[b"SASL"], [b"PLAIN"])
        self.assertNotIn(b"APOP", capabilities)
        run(client.login(b"alice", b"secret pass"))
        lfSize = len(LF_MESSAGE.replace(b"\n", b"\r\n"))
        self.assertEqual(run(client.stat()), (2, lfSize + len(CRLF_MESSAGE)))
        self.assertEqual(run(client.listSize()), [lfSize, len(CRLF_MESSAGE)])
        self.assertEqual(run(client.listUID()), [self.names[1].encode(), self.names[0].encode()])
        self.assertEqual(b"\r\n".join(run(client.retrieve(1))) + b"\r\n", CRLF_MESSAGE)
        self.assertEqual(run(client.retrieve(0)), LF_MESSAGE.rstrip(b"\n").split(b"\n"))
        self.assertEqual(run(client.retrieve(1, lines=0)), [b"Subject: one", b"From: a@example.test", b""])
        run(client.delete(0))
        run(client.quit())
        self.assertEqual(self.files(), {"cur": [self.names[0] + ":2,S"], "new": [], "tmp": []})


class CostTests(ServerTestsMixin, SynchronousTestCase):
    def test_uidlReadsNoMessage(self) -> None:
        """
        Login and UIDL read no message file, not even to measure one
        without C{W=} in its name.
        """
        fs = ScriptedFileSystem()
        self.realm.fs = fs
        self.login()
        self.send(b"UIDL\r\nUIDL 1\r\nDELE 2\r\nRSET\r\n")
        self.assertEqual([path for path in fs.subjectsOf("openRead") if LOCK_NAME not in path], [])
