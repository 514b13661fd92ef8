"""
Tests for L{mailhub.imap.server}: the IMAP protocol driven through a
L{StringTransport} and a L{Clock} over the in-memory fakes of
L{tests.imap.fakes}, and one end-to-end test with the stdlib's C{imaplib}.

Each trap of Twisted's own IMAP4Server has a test named C{test_twistedTrap*}.
"""

from __future__ import annotations

import datetime
import imaplib
import ssl
from typing import Any

from hypothesis import given, settings, strategies as st
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import ITLSTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.internet.threads import deferToThread
from twisted.mail.imap4 import (
    IAccount,
    ICloseableMailbox,
    IMailbox,
    IMailboxInfo,
    IMessage,
    IMessageCopier,
    IMessageFile,
)
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mailhub.imap import server as S
from mailhub.imap.server import IMAP4Server, IMAPFactory
from mailhub.tls import ensureCertificate, serverContextFactory
from tests.imap.fakes import FakeAccount, FakeInfo, FakeMailbox, FakeMessage, makePortal

PEER = IPv4Address("TCP", "192.0.2.7", 40000)

MESSAGE = (
    b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: hello there\r\n"
    b"\r\n0123456789 body text\r\n"
)


@implementer(ITLSTransport)
class TLSStringTransport(StringTransport):
    tlsStarted: object = None
    noDelay = False

    def startTLS(self, contextFactory: object) -> None:
        self.tlsStarted = contextFactory

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.noDelay = enabled


class FakesTests(SynchronousTestCase):
    def test_interfaces(self) -> None:
        """
        The fakes provide the interfaces the server codes against.
        """
        mbox = FakeMailbox()
        for interface in (IMailbox, IMessageCopier, ICloseableMailbox):
            self.assertTrue(verifyObject(interface, mbox))
        self.assertTrue(verifyObject(IAccount, FakeAccount()))
        self.assertTrue(verifyObject(IMailboxInfo, FakeInfo([])))
        message = FakeMessage(1, MESSAGE)
        self.assertTrue(verifyObject(IMessage, message))
        self.assertTrue(verifyObject(IMessageFile, message))


class Harness(SynchronousTestCase):
    """
    A session over a L{TLSStringTransport}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.portal, self.realm = makePortal()
        self.factory = self.makeFactory()

    def makeFactory(self, **kw: Any) -> IMAPFactory:
        options = dict(portal=self.portal, clock=self.clock, hostname="mx.example.test", contextFactory=object())
        options.update(kw)
        return IMAPFactory(**options)  # type: ignore[arg-type]

    def connect(self, factory: IMAPFactory | None = None) -> tuple[IMAP4Server, TLSStringTransport]:
        factory = factory or self.factory
        transport = TLSStringTransport(peerAddress=PEER)
        proto = factory.buildProtocol(PEER)
        proto.makeConnection(transport)
        transport.clear()
        self.addCleanup(lambda: transport.disconnected or proto.connectionLost(None))
        self.proto, self.transport = proto, transport  # type: ignore[assignment]
        return proto, transport  # type: ignore[return-value]

    def send(self, data: bytes, proto: Any = None, transport: Any = None) -> bytes:
        proto = proto or self.proto
        transport = transport or self.transport
        proto.dataReceived(data)
        out = transport.value()
        transport.clear()
        return out

    def login(self, user: bytes = b"alice") -> None:
        self.connect()
        self.assertIn(b"a OK", self.send(b"a STARTTLS\r\n"))
        out = self.send(b"b LOGIN " + user + b" " + (b"secret" if user == b"alice" else b"hunter2") + b"\r\n")
        self.assertIn(b"b OK", out)

    @property
    def account(self) -> FakeAccount:
        return self.realm.accounts[b"alice"]

    def select(self, count: int = 3, rw: bool = True) -> FakeMailbox:
        self.login()
        inbox = self.account.mailboxes["INBOX"]
        for i in range(count):
            inbox.add(MESSAGE.replace(b"hello", b"hello %d" % i))
        out = self.send(b"s SELECT INBOX\r\n" if rw else b"s EXAMINE INBOX\r\n")
        self.assertIn(b"s OK", out)
        return inbox


class GreetingAndTLSTests(Harness):
    def test_noDelay(self) -> None:
        """
        TCP_NODELAY is set: a reply written after work on a worker thread
        must not wait for the client's delayed ACK; a transport without
        the option is fine.
        """
        self.connect()
        self.assertTrue(self.transport.noDelay)
        proto = self.factory.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        proto.makeConnection(transport)
        self.assertIn(b"* OK", transport.value())
        proto.connectionLost(None)

    def test_capabilitiesBeforeTLS(self) -> None:
        """
        Before TLS: STARTTLS and LOGINDISABLED, no AUTH=; the extensions
        that work.
        """
        self.connect()
        out = self.send(b"a CAPABILITY\r\n")
        caps = out.split(b"\r\n")[0].split()
        for cap in (b"IMAP4rev1", b"STARTTLS", b"LOGINDISABLED", b"IDLE", b"NAMESPACE", b"UIDPLUS",
                    b"MOVE", b"SPECIAL-USE", b"ENABLE", b"UNSELECT", b"LITERAL+", b"ID", b"CHILDREN"):
            self.assertIn(cap, caps)
        self.assertNotIn(b"AUTH=PLAIN", caps)
        self.assertIn(b"a OK", out)

    def test_capabilitiesAfterTLS(self) -> None:
        self.connect()
        self.send(b"a STARTTLS\r\n")
        caps = self.send(b"b CAPABILITY\r\n").split(b"\r\n")[0].split()
        self.assertIn(b"AUTH=PLAIN", caps)
        self.assertNotIn(b"STARTTLS", caps)
        self.assertNotIn(b"LOGINDISABLED", caps)

    def test_loginBeforeTLSRefused(self) -> None:
        """
        LOGIN and AUTHENTICATE before TLS: NO [PRIVACYREQUIRED].
        """
        self.connect()
        self.assertIn(b"a NO [PRIVACYREQUIRED]", self.send(b"a LOGIN alice secret\r\n"))
        self.assertIn(b"b NO [PRIVACYREQUIRED]", self.send(b"b AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n"))
        self.assertEqual(self.proto.state, S.NOT_AUTHENTICATED)

    def test_twistedTrapCommandsPipelinedAfterSTARTTLS(self) -> None:
        """
        Commands sent in the clear after STARTTLS are discarded, not run
        inside TLS.
        """
        self.connect()
        out = self.send(b"a STARTTLS\r\nb LOGIN alice secret\r\n")
        self.assertEqual(out, b"a OK Begin TLS negotiation now\r\n")
        self.assertIsNotNone(self.transport.tlsStarted)
        self.assertEqual(self.proto.state, S.NOT_AUTHENTICATED)
        self.assertIn(b"c OK", self.send(b"c NOOP\r\n"))

    def test_implicitTLS(self) -> None:
        self.connect(self.makeFactory(implicitTLS=True))
        out = self.send(b"a LOGIN alice secret\r\n")
        self.assertIn(b"a OK", out)

    def test_loginFailed(self) -> None:
        self.connect()
        self.send(b"a STARTTLS\r\n")
        self.assertIn(b"b NO [AUTHENTICATIONFAILED]", self.send(b"b LOGIN alice wrong\r\n"))

    def test_authenticatePlain(self) -> None:
        """
        AUTHENTICATE PLAIN with the response after C{+ }, or on the line
        (SASL-IR); C{*} cancels.
        """
        self.connect()
        self.send(b"a STARTTLS\r\n")
        self.assertEqual(self.send(b"b AUTHENTICATE PLAIN\r\n"), b"+ \r\n")
        self.assertIn(b"b BAD", self.send(b"*\r\n"))
        self.assertEqual(self.send(b"c AUTHENTICATE PLAIN\r\n"), b"+ \r\n")
        self.assertIn(b"c OK", self.send(b"AGFsaWNlAHNlY3JldA==\r\n"))
        self.assertEqual(self.proto.state, S.AUTHENTICATED)

    def test_quotedPasswordWithEscapes(self) -> None:
        """
        Backslash escapes in quoted strings are parsed (a Twisted trap).
        """
        self.connect()
        self.send(b"a STARTTLS\r\n")
        captured = []
        portal = self.factory.portal
        login = portal.login

        def spy(credentials: Any, mind: Any, *interfaces: Any) -> Any:
            captured.append(credentials.password)
            return login(credentials, mind, *interfaces)

        portal.login = spy  # type: ignore[method-assign]
        self.send(b'b LOGIN alice "se\\"c\\\\ret"\r\n')
        self.assertEqual(captured, [b'se"c\\ret'])

    def test_perUserQuota(self) -> None:
        factory = self.makeFactory(connectionsPerUser=1, implicitTLS=True)
        first = self.connect(factory)
        self.assertIn(b"a OK", self.send(b"a LOGIN alice secret\r\n", *first))
        second = self.connect(factory)
        self.assertIn(b"a NO [LIMIT]", self.send(b"a LOGIN alice secret\r\n", *second))
        first[0].connectionLost(None)
        third = self.connect(factory)
        self.assertIn(b"a OK", self.send(b"a LOGIN alice secret\r\n", *third))

    def test_perPeerLimit(self) -> None:
        factory = self.makeFactory(connectionsPerPeer=1)
        self.connect(factory)
        refused = factory.buildProtocol(PEER)
        transport = StringTransport()
        refused.makeConnection(transport)
        self.assertIn(b"* BYE", transport.value())


class FramingTests(Harness):
    def test_twistedTrapHugeAppendLiteral(self) -> None:
        """
        APPEND declaring C{{50000000000}} is refused before anything is
        read, with NO [TOOBIG]; no C{+} continuation.
        """
        self.login()
        out = self.send(b"a APPEND INBOX {50000000000}\r\n")
        self.assertEqual(out, b"a NO [TOOBIG] Message too large\r\n")
        self.assertIn(b"b OK", self.send(b"b NOOP\r\n"))

    def test_hugeNonSynchronisingLiteral(self) -> None:
        """
        A LITERAL+ literal over the limit: BAD [TOOBIG] and the connection
        is closed (its octets are already coming).
        """
        self.login()
        out = self.send(b"a APPEND INBOX {50000000000+}\r\nxxxx")
        self.assertIn(b"a BAD [TOOBIG]", out)
        self.assertTrue(self.transport.disconnecting)

    def test_appendLimit(self) -> None:
        factory = self.makeFactory(maxLiteral=100, implicitTLS=True)
        self.connect(factory)
        self.send(b"a LOGIN alice secret\r\n")
        self.assertIn(b"b NO [TOOBIG]", self.send(b"b APPEND INBOX {101}\r\n"))
        self.assertEqual(self.send(b"c APPEND INBOX {100}\r\n"), b"+ Ready for literal data\r\n")

    def test_stringLiteralLimit(self) -> None:
        self.login()
        self.assertIn(b"a BAD [TOOBIG]", self.send(b"a SELECT {100000}\r\n"))

    def test_literalPlus(self) -> None:
        """
        A non-synchronising literal gets no continuation and works.
        """
        self.login()
        out = self.send(b"a APPEND INBOX (\\Seen) {%d+}\r\n" % len(MESSAGE) + MESSAGE + b"\r\n")
        self.assertIn(b"a OK [APPENDUID 42 1] APPEND completed", out)
        self.assertNotIn(b"+ ", out)
        self.assertEqual(self.account.mailboxes["INBOX"].messages[0].flags, ["\\Seen"])

    def test_literalInLogin(self) -> None:
        self.connect()
        self.send(b"a STARTTLS\r\n")
        self.assertEqual(self.send(b"b LOGIN {5}\r\n"), b"+ Ready for literal data\r\n")
        self.assertIn(b"b OK", self.send(b"alice {6}\r\nsecret\r\n"))

    def test_lineTooLong(self) -> None:
        self.connect(self.makeFactory(lineLength=100))
        out = self.send(b"a NOOP " + b"x" * 200 + b"\r\n")
        self.assertIn(b"* BAD [TOOBIG]", out)
        self.assertIn(b"b OK", self.send(b"b NOOP\r\n"))

    def test_lineTooLongInPieces(self) -> None:
        """
        An overlong line is dropped as it arrives, not held whole.
        """
        self.connect(self.makeFactory(lineLength=100))
        for _ in range(10):
            self.send(b"x" * 100)
        self.assertLess(len(self.proto._input), 200)
        self.assertIn(b"* BAD [TOOBIG]", self.send(b"\r\n"))

    def test_malformedThenGoesOn(self) -> None:
        self.connect()
        for line in (b'a LOGIN "unterminated\r\n', b"b FOO\r\n", b"c NOOP (\r\n", b"\r\n", b"+ x\r\n"):
            self.assertIn(b"BAD", self.send(line))
        self.assertIn(b"d OK", self.send(b"d NOOP\r\n"))

    def test_tooManyErrors(self) -> None:
        self.connect(self.makeFactory(maxErrors=3))
        out = self.send(b"a FOO\r\nb FOO\r\nc FOO\r\nd NOOP\r\n")
        self.assertIn(b"* BYE Too many errors", out)
        self.assertNotIn(b"d OK", out)
        self.assertTrue(self.transport.disconnecting)

    def test_idleTimeout(self) -> None:
        self.login()
        self.clock.advance(S.IDLE_TIMEOUT - 1)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(1)
        self.assertIn(b"* BYE", self.transport.value())
        self.assertTrue(self.transport.disconnecting)

    def test_preauthTimeout(self) -> None:
        self.connect()
        self.clock.advance(S.PREAUTH_TIMEOUT)
        self.assertTrue(self.transport.disconnecting)

    def test_shutDown(self) -> None:
        self.login()
        d = self.factory.shutDown()
        self.assertIn(b"* BYE Server shutting down", self.transport.value())
        self.proto.connectionLost(None)
        self.successResultOf(d)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.factory.perUser, {})
        self.assertEqual(self.realm.logouts, 1)


class MailboxTests(Harness):
    def test_selectAndExamine(self) -> None:
        self.login()
        self.account.mailboxes["INBOX"].add(MESSAGE)
        out = self.send(b"a SELECT inbox\r\n")
        self.assertIn(b"* 1 EXISTS", out)
        self.assertIn(b"[UIDVALIDITY 42]", out)
        self.assertIn(b"a OK [READ-WRITE]", out)
        out = self.send(b"b EXAMINE INBOX\r\n")
        self.assertIn(b"b OK [READ-ONLY]", out)
        self.assertEqual(self.account.mailboxes["INBOX"].closed, 1)
        self.assertIn(b"c NO [NONEXISTENT]", self.send(b"c SELECT Nope\r\n"))
        self.assertEqual(self.proto.state, S.AUTHENTICATED)

    def test_badFolderNames(self) -> None:
        """
        Path tricks, NUL and control characters are refused before the
        backend sees them.
        """
        self.login()
        for name in (b'"../x"', b'"a/../b"', b'"/etc"', b'"a//b"', b"{3}\r\na\x00b", b'"a\x01b"', b'"./x"', b'"a/."'):
            out = self.send(b"a CREATE " + name + b"\r\n")
            if out.startswith(b"+ "):
                out = out[out.index(b"\r\n") + 2 :]
            self.assertTrue(out.startswith(b"a NO") or out.startswith(b"a BAD"), (name, out))
        self.assertEqual(sorted(self.account.mailboxes), ["INBOX", "Sent", "Trash"])

    def test_createDeleteRename(self) -> None:
        self.login()
        self.assertIn(b"a OK", self.send(b"a CREATE Work/\r\n"))
        self.assertIn("Work", self.account.mailboxes)
        self.assertIn(b"b NO [ALREADYEXISTS]", self.send(b"b CREATE Work\r\n"))
        self.assertIn(b"c OK", self.send(b"c RENAME Work Play\r\n"))
        self.assertIn(b"d OK", self.send(b"d DELETE Play\r\n"))
        self.assertIn(b"e NO [NONEXISTENT]", self.send(b"e DELETE Play\r\n"))

    def test_listSpecialUseAndChildren(self) -> None:
        self.login()
        self.account.addMailbox("Sent/2026")
        out = self.send(b'a LIST "" "*"\r\n')
        self.assertIn(b'* LIST (\\Sent \\HasChildren) "/" "Sent"', out)
        self.assertIn(b'* LIST (\\HasNoChildren) "/" "Sent/2026"', out)
        self.assertIn(b'* LIST (\\Trash \\HasNoChildren) "/" "Trash"', out)
        self.assertIn(b'* LIST (\\Noselect) "/" ""', self.send(b'b LIST "" ""\r\n'))

    def test_lsubAndStatus(self) -> None:
        self.login()
        self.send(b"a SUBSCRIBE Sent\r\n")
        out = self.send(b'b LSUB "" "*"\r\n')
        self.assertIn(b'"Sent"', out)
        self.assertNotIn(b'"Trash"', out)
        self.account.mailboxes["INBOX"].add(MESSAGE)
        out = self.send(b"c STATUS INBOX (MESSAGES UIDNEXT UNSEEN)\r\n")
        self.assertIn(b'* STATUS "INBOX" (MESSAGES 1 UIDNEXT 2 UNSEEN 1)', out)

    def test_namespaceIdEnable(self) -> None:
        self.login()
        self.assertIn(b'* NAMESPACE (("" "/")) NIL NIL', self.send(b"a NAMESPACE\r\n"))
        self.assertIn(b'* ID ("name" "mailhub")', self.send(b'b ID ("name" "test")\r\n'))
        self.assertIn(b"* ENABLED\r\nc OK", self.send(b"c ENABLE X-UNKNOWN\r\n"))

    def test_twistedTrapAppendToMissingFolder(self) -> None:
        self.login()
        self.assertEqual(self.send(b"a APPEND Nope {5}\r\n"), b"+ Ready for literal data\r\n")
        self.assertIn(b"a NO [TRYCREATE]", self.send(b"hello\r\n"))

    def test_twistedTrapCopyToMissingFolder(self) -> None:
        self.select()
        self.assertIn(b"a NO [TRYCREATE]", self.send(b"a COPY 1 Nope\r\n"))

    def test_appendWithDateAndFlags(self) -> None:
        self.login()
        self.send(b'a APPEND Sent (\\Seen $Forwarded) "02-Mar-2026 10:00:00 +0100" {%d}\r\n' % len(MESSAGE))
        out = self.send(MESSAGE + b"\r\n")
        self.assertIn(b"a OK [APPENDUID 42 1]", out)
        stored = self.account.mailboxes["Sent"].messages[0]
        self.assertEqual(stored.data, MESSAGE)
        self.assertEqual(stored.flags, ["\\Seen", "$Forwarded"])
        self.assertEqual(stored.date, "02-Mar-2026 10:00:00 +0100")

    def test_appendToSelectedSendsExists(self) -> None:
        self.select(1)
        self.send(b"a APPEND INBOX {%d}\r\n" % len(MESSAGE))
        self.assertIn(b"* 2 EXISTS\r\na OK", self.send(MESSAGE + b"\r\n"))

    def test_copyUID(self) -> None:
        self.select(3)
        trash = self.account.mailboxes["Trash"]
        trash.add(b"x")
        out = self.send(b"a UID COPY 2:3 Trash\r\n")
        self.assertIn(b"a OK [COPYUID 42 2:3 2:3] COPY completed", out)
        self.assertEqual(len(trash.messages), 3)

    def test_move(self) -> None:
        """
        MOVE (RFC 6851): COPYUID untagged, the EXPUNGEs, then OK; other
        messages marked \\Deleted stay.
        """
        inbox = self.select(3)
        inbox.messages[0].flags.append("\\Deleted")
        out = self.send(b"a MOVE 2:3 Trash\r\n")
        self.assertEqual(
            out,
            b"* OK [COPYUID 42 2:3 1:2] Moved\r\n* 3 EXPUNGE\r\n* 2 EXPUNGE\r\na OK MOVE completed\r\n",
        )
        self.assertEqual([m.uid for m in inbox.messages], [1])
        self.assertEqual(inbox.messages[0].flags, ["\\Deleted"])

    def test_uidExpunge(self) -> None:
        inbox = self.select(3)
        for m in inbox.messages:
            m.flags.append("\\Deleted")
        out = self.send(b"a UID EXPUNGE 2\r\n")
        self.assertEqual(out, b"* 2 EXPUNGE\r\na OK UID EXPUNGE completed\r\n")
        self.assertEqual([m.uid for m in inbox.messages], [1, 3])
        self.assertEqual(self.send(b"b EXPUNGE\r\n"), b"* 2 EXPUNGE\r\n* 1 EXPUNGE\r\nb OK EXPUNGE completed\r\n")

    def test_examineIsReadOnly(self) -> None:
        inbox = self.select(1, rw=False)
        self.assertIn(b"a NO [READ-ONLY]", self.send(b"a STORE 1 +FLAGS (\\Deleted)\r\n"))
        self.assertIn(b"b NO [READ-ONLY]", self.send(b"b EXPUNGE\r\n"))
        self.send(b"c FETCH 1 BODY[]\r\n")
        self.assertEqual(inbox.messages[0].flags, [])

    def test_unselectAndClose(self) -> None:
        inbox = self.select(2)
        inbox.messages[0].flags.append("\\Deleted")
        self.assertIn(b"a OK", self.send(b"a UNSELECT\r\n"))
        self.assertEqual(len(inbox.messages), 2)
        self.send(b"b SELECT INBOX\r\n")
        self.assertEqual(self.send(b"c CLOSE\r\n"), b"c OK CLOSE completed\r\n")
        self.assertEqual(len(inbox.messages), 1)
        self.assertIn(b"d BAD", self.send(b"d FETCH 1 FLAGS\r\n"))

    def test_store(self) -> None:
        inbox = self.select(2)
        out = self.send(b"a STORE 1:2 +FLAGS (\\Flagged)\r\n")
        self.assertIn(b"* 1 FETCH (FLAGS (\\Flagged))", out)
        self.assertEqual(self.send(b"b UID STORE 2 -FLAGS.SILENT (\\Flagged)\r\n"), b"b OK STORE completed\r\n")
        self.assertEqual(inbox.messages[1].flags, [])
        self.assertIn(b"* 1 FETCH (FLAGS (\\Seen) UID 1)", self.send(b"c UID STORE 1 FLAGS \\Seen\r\n"))


class FetchTests(Harness):
    def test_twistedTrapPartialBody(self) -> None:
        """
        C{BODY[]<start.len>} sends the slice, labelled C{BODY[]<start>}.
        """
        self.select(1)
        out = self.send(b"a FETCH 1 BODY.PEEK[]<5.6>\r\n")
        self.assertEqual(out, b"* 1 FETCH (BODY[]<5> {6}\r\n Alice)\r\na OK FETCH completed\r\n")

    def test_headerFields(self) -> None:
        self.select(1)
        out = self.send(b"a FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n")
        self.assertIn(b"BODY[HEADER.FIELDS (SUBJECT)] {26}\r\nSubject: hello 0 there\r\n\r\n)", out)

    def test_twistedTrapBodySetsSeen(self) -> None:
        """
        Fetching C{BODY[]} sets \\Seen (and says so); PEEK does not.
        """
        inbox = self.select(2)
        self.send(b"a FETCH 2 BODY.PEEK[]\r\n")
        self.assertEqual(inbox.messages[1].flags, [])
        out = self.send(b"b FETCH 1 BODY[TEXT]\r\n")
        self.assertEqual(inbox.messages[0].flags, ["\\Seen"])
        self.assertIn(b"FLAGS (\\Seen)", out)

    def test_fetchItems(self) -> None:
        self.select(1)
        out = self.send(b"a UID FETCH 1:* (FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE)\r\n")
        self.assertIn(b"* 1 FETCH (UID 1 FLAGS () RFC822.SIZE %d" % len(MESSAGE.replace(b"hello", b"hello 0")), out)
        self.assertIn(b'INTERNALDATE "02-Mar-2026 10:00:00 +0100"', out)
        self.assertIn(b'ENVELOPE (NIL "hello 0 there" (("Alice" NIL "alice" "example.test"))', out)
        self.assertIn(b'BODYSTRUCTURE ("TEXT" "PLAIN"', out)
        self.assertIn(b"a OK", out)

    def test_envelopeFromTheBackend(self) -> None:
        """
        A message that keeps its ENVELOPE and BODYSTRUCTURE
        (C{envelope()}, C{bodyStructure()}) is not read for them; BODY (the
        non-extensible form) still reads it.
        """
        inbox = self.select(2)
        opened = []
        for message in inbox.messages:
            message.envelope = lambda: [b"date", b'say "hi"', None, None, None, None, None, None, None, b"<id>"]
            message.bodyStructure = lambda: [b"TEXT", b"PLAIN", [b"CHARSET", b"US-ASCII"], None, None, b"7BIT", 3, 1]
            message.open = lambda original=message.open: (opened.append(1), original())[1]
        out = self.send(b"a FETCH 1:2 (ENVELOPE BODYSTRUCTURE)\r\n")
        self.assertEqual(
            out.split(b"\r\n")[0],
            b'* 1 FETCH (ENVELOPE ("date" "say \\"hi\\"" NIL NIL NIL NIL NIL NIL NIL "<id>") '
            b'BODYSTRUCTURE ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3 1))',
        )
        self.assertIn(b"a OK FETCH completed", out)
        self.assertEqual(opened, [])
        out = self.send(b"b FETCH 1 BODY\r\n")
        self.assertIn(b'* 1 FETCH (BODY ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 22 1))', out)
        self.assertEqual(opened, [1])

    def test_indexItemsInFewBatches(self) -> None:
        """
        A FETCH of items the index answers (UID, FLAGS, RFC822.SIZE,
        INTERNALDATE) takes L{S.FETCH_INDEX_BATCH} messages per backend
        call; one that reads messages, L{S.FETCH_BATCH}.  Every message is
        answered, in order.
        """
        recorder = Recorder()
        self.factory = self.makeFactory(runBlocking=recorder)
        self.patch(S, "FETCH_BATCH", 2)
        self.patch(S, "FETCH_INDEX_BATCH", 4)
        self.select(9)
        del recorder.calls[:]
        out = self.send(b"a FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE)\r\n")
        self.assertEqual([line.split(b" ")[1] for line in out.split(b"\r\n")[:-2]], [b"%d" % n for n in range(1, 10)])
        self.assertEqual(recorder.calls.count("_renderFetch"), 3)
        del recorder.calls[:]
        out = self.send(b"b FETCH 1:* (UID BODY.PEEK[HEADER])\r\n")
        self.assertEqual(out.count(b" FETCH (UID "), 9)
        self.assertEqual(recorder.calls.count("_renderFetch"), 5)
        # A set that fills its last batch: one more look finds no more.
        del recorder.calls[:]
        out = self.send(b"c FETCH 1:8 (UID FLAGS)\r\n")
        self.assertEqual(out.count(b" FETCH (UID "), 8)
        self.assertTrue(out.endswith(b"c OK FETCH completed\r\n"))
        self.assertEqual((recorder.calls.count("_take"), recorder.calls.count("_renderFetch")), (3, 2))

    def test_fetchBadArguments(self) -> None:
        self.select(2)
        self.assertIn(b"a BAD", self.send(b"a FETCH 5 FLAGS\r\n"))
        self.assertIn(b"b BAD", self.send(b"b FETCH 1 BOGUS\r\n"))
        self.assertIn(b"c BAD", self.send(b"c FETCH 1 BODY[NOPE]\r\n"))
        self.assertIn(b"d OK", self.send(b"d FETCH 1:* FAST\r\n"))


class SearchTests(Harness):
    def test_twistedTrapSearchHeaderKey(self) -> None:
        self.select(3)
        self.assertIn(b"* SEARCH 2\r\n", self.send(b'a SEARCH HEADER Subject "hello 1"\r\n'))
        self.assertIn(b"* SEARCH 1 3\r\n", self.send(b'b SEARCH NOT SUBJECT "hello 1"\r\n'))

    def test_twistedTrapSearchScansOnlyCandidates(self) -> None:
        """
        C{SEARCH 1:2} on a large mailbox looks at two messages.
        """
        inbox = self.select(1000)
        inbox.fetched = 0
        self.assertIn(b"* SEARCH 1 2\r\n", self.send(b"a SEARCH 1:2 FROM alice\r\n"))
        self.assertEqual(inbox.fetched, 2)

    def test_uidSearch(self) -> None:
        inbox = self.select(3)
        inbox.messages[2].flags.append("\\Flagged")
        self.assertIn(b"* SEARCH 3\r\n", self.send(b"a UID SEARCH FLAGGED\r\n"))
        self.assertIn(b"b BAD", self.send(b"b SEARCH BOGUS\r\n"))
        self.assertIn(b"c NO [BADCHARSET", self.send(b"c SEARCH CHARSET KOI8-R ALL\r\n"))


class IdleTests(Harness):
    def test_idlePushesChanges(self) -> None:
        """
        While idling, the backend's listener calls go out at once.
        """
        inbox = self.select(1)
        self.assertEqual(self.send(b"a IDLE\r\n"), b"+ idling\r\n")
        inbox.add(MESSAGE)
        self.proto.newMessages(2, None)
        self.proto.flagsChanged({1: ["\\Seen"]})
        self.proto.messagesExpunged([1])
        self.assertEqual(
            self.transport.value(), b"* 2 EXISTS\r\n* 1 FETCH (FLAGS (\\Seen))\r\n* 1 EXPUNGE\r\n"
        )
        self.transport.clear()
        self.assertEqual(self.send(b"DONE\r\n"), b"a OK IDLE terminated\r\n")

    def test_idlePollsRefresh(self) -> None:
        """
        A mailbox with C{refresh()} is polled once a second while idling.
        """
        inbox = self.select(1)
        self.send(b"a IDLE\r\n")
        inbox.later(lambda listener: listener.newMessages(2, None))
        self.clock.advance(1)
        self.assertEqual(self.transport.value(), b"* 2 EXISTS\r\n")
        self.send(b"DONE\r\n")
        refreshes = inbox.refreshes
        self.clock.advance(10)
        self.assertEqual(inbox.refreshes, refreshes)

    def test_twistedTrapAnyLineEndsIdle(self) -> None:
        self.select(1)
        self.send(b"a IDLE\r\n")
        out = self.send(b"b NOOP\r\n")
        self.assertNotIn(b"a OK", out)
        self.assertIsNotNone(self.proto._idleTag)
        self.assertIn(b"a OK", self.send(b"done\r\n"))

    def test_idleOutlivesTimeoutWithKeepalive(self) -> None:
        self.select(1)
        self.send(b"a IDLE\r\n")
        self.clock.advance(S.IDLE_TIMEOUT * 2)
        self.assertFalse(self.transport.disconnecting)
        self.assertIn(b"* OK Still here", self.transport.value())
        self.transport.clear()
        self.assertIn(b"a OK", self.send(b"DONE\r\n"))
        self.clock.advance(S.IDLE_TIMEOUT)
        self.assertTrue(self.transport.disconnecting)

    def test_noopReportsOtherSessionsChanges(self) -> None:
        inbox = self.select(1)
        inbox.later(lambda listener: (inbox.messages.pop(0), listener.messagesExpunged([1])))
        self.assertEqual(self.send(b"a NOOP\r\n"), b"* 1 EXPUNGE\r\na OK NOOP completed\r\n")

    def test_expungeHeldDuringFetch(self) -> None:
        """
        RFC 3501 §7.4.1: no EXPUNGE during FETCH; it waits for the next
        command that allows it.
        """
        self.select(2)
        self.proto.messagesExpunged([2])
        self.assertNotIn(b"EXPUNGE", self.send(b"a FETCH 1 FLAGS\r\n"))
        self.assertIn(b"* 2 EXPUNGE", self.send(b"b NOOP\r\n"))

    def test_connectionLostWhileIdle(self) -> None:
        self.select(1)
        self.send(b"a IDLE\r\n")
        self.proto.connectionLost(None)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.account.mailboxes["INBOX"].listeners, [])


class SearchableTests(Harness):
    def test_searchableBackend(self) -> None:
        """
        An C{ISearchableMailbox} gets the parsed keys and answers sequence
        numbers; UID SEARCH maps them to UIDs.
        """
        from twisted.mail.imap4 import ISearchableMailbox
        from zope.interface import alsoProvides

        inbox = self.select(3)
        calls = []

        def search(query: Any, uid: bool) -> list:
            calls.append(query)
            return [2, 3]

        inbox.search = search  # type: ignore[attr-defined]
        alsoProvides(inbox, ISearchableMailbox)
        inbox.messages[1].uid, inbox.messages[2].uid = 7, 9
        self.assertIn(b"* SEARCH 7 9\r\n", self.send(b"a UID SEARCH FROM alice\r\n"))
        self.assertIn(b"* SEARCH 2 3\r\n", self.send(b"b SEARCH FROM alice\r\n"))
        self.assertIsInstance(calls[0], S.S.Node)


class Recorder:
    """
    A C{runBlocking} that runs the work inline and records it; C{inside}
    says whether work is running (the backend's guards check it).
    """

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.inside = False

    def __call__(self, function: Any, *args: Any) -> Any:
        self.calls.append(getattr(function, "__name__", repr(function)))
        self.inside = True
        try:
            return maybeDeferred(function, *args)
        finally:
            self.inside = False


class Pending:
    """
    A C{runBlocking} that holds the work until the test runs it
    (L{runNext}), as a worker thread that has not finished yet would.
    """

    def __init__(self) -> None:
        self.waiting: list[tuple[Any, tuple, Deferred]] = []

    def __call__(self, function: Any, *args: Any) -> Deferred:
        d: Deferred = Deferred()
        self.waiting.append((function, args, d))
        return d

    def work(self) -> tuple[Any, Deferred]:
        """
        Run the oldest work (not yet telling the caller): its result and
        the Deferred to fire with it.
        """
        function, args, d = self.waiting.pop(0)
        return function(*args), d

    def runNext(self) -> None:
        result, d = self.work()
        d.callback(result)

    def runAll(self) -> None:
        while self.waiting:
            self.runNext()


class BlockingTests(Harness):
    """
    Backend work goes through the factory's C{runBlocking} (a worker thread
    in the service), and responses wait for it.
    """

    def guard(self, recorder: Recorder, obj: Any, *names: str) -> list[str]:
        """
        Make C{obj}'s methods C{names} note any call made outside
        C{runBlocking}.
        """
        outside: list[str] = []
        for name in names:
            original = getattr(obj, name)

            def guarded(*args: Any, original: Any = original, name: str = name) -> Any:
                if not recorder.inside:
                    outside.append(name)
                return original(*args)

            guarded.__name__ = name
            setattr(obj, name, guarded)
        return outside

    def test_commandsUseRunBlocking(self) -> None:
        """
        SELECT, FETCH, SEARCH, STORE, EXPUNGE, APPEND, COPY, MOVE, STATUS,
        LIST, NOOP and CLOSE call the backend only through C{runBlocking}.
        """
        recorder = Recorder()
        self.factory = self.makeFactory(runBlocking=recorder)
        self.login()
        account = self.account
        inbox, trash = account.mailboxes["INBOX"], account.mailboxes["Trash"]
        for i in range(3):
            inbox.add(MESSAGE.replace(b"hello", b"hello %d" % i))
        outside = self.guard(recorder, account, "select", "listMailboxes", "create", "isSubscribed")
        mailboxNames = ("fetch", "store", "expunge", "addMessage", "copy", "refresh", "requestStatus", "close", "getFlags")
        outside += self.guard(recorder, inbox, *mailboxNames)
        outside += self.guard(recorder, trash, *mailboxNames)
        for message in inbox.messages:
            outside += self.guard(recorder, message, "open", "getFlags", "getSize", "getInternalDate")

        def through(command: bytes, expected: bytes) -> list[str]:
            del recorder.calls[:]
            out = self.send(command)
            self.assertIn(expected, out)
            self.assertNotIn(b"SERVERBUG", out)
            self.assertTrue(recorder.calls, command)
            return list(recorder.calls)

        self.assertIn("_openMailbox", through(b"s SELECT INBOX\r\n", b"s OK [READ-WRITE]"))
        through(b"f FETCH 1:* (FLAGS BODY[] ENVELOPE RFC822.SIZE INTERNALDATE)\r\n", b"f OK FETCH")
        self.assertEqual(inbox.messages[0].flags, ["\\Seen"])
        through(b"h SEARCH SUBJECT hello BODY text\r\n", b"* SEARCH 1 2 3\r\nh OK")
        self.assertIn("_storeLines", through(b"t STORE 2 +FLAGS (\\Deleted)\r\n", b"t OK"))
        self.assertIn("expunge", through(b"e EXPUNGE\r\n", b"* 2 EXPUNGE\r\ne OK"))
        through(b"a APPEND INBOX {%d+}\r\n" % len(MESSAGE) + MESSAGE + b"\r\n", b"a OK [APPENDUID")
        self.assertIn("copy", through(b"c COPY 1 Trash\r\n", b"c OK [COPYUID"))
        through(b"m UID MOVE 1 Trash\r\n", b"m OK MOVE")
        through(b"x UID EXPUNGE 1:*\r\n", b"x OK")
        through(b'u STATUS Trash (MESSAGES)\r\n', b'* STATUS "Trash" (MESSAGES 2)')
        through(b'l LIST "" *\r\n', b"l OK")
        through(b'l LSUB "" *\r\n', b"l OK")
        through(b"r CREATE Other\r\n", b"r OK")
        inbox.later(lambda listener: listener.newMessages(5, None))
        through(b"n NOOP\r\n", b"* 5 EXISTS\r\nn OK")
        through(b"z CLOSE\r\n", b"z OK")
        self.assertEqual(outside, [])

    def test_responseWaitsForTheWork(self) -> None:
        """
        While the work of a command has not finished, nothing of its
        response is sent and the commands pipelined after it wait; then
        each is answered in order.
        """
        pending = Pending()
        self.factory = self.makeFactory(runBlocking=pending)
        self.connect()
        self.send(b"a STARTTLS\r\n")
        self.assertIn(b"b OK", self.send(b"b LOGIN alice secret\r\n"))
        inbox = self.account.mailboxes["INBOX"]
        for i in range(3):
            inbox.add(MESSAGE.replace(b"hello", b"hello %d" % i))
        self.assertEqual(self.send(b"s SELECT INBOX\r\nf FETCH 1 (BODY.PEEK[])\r\nn NOOP\r\n"), b"")
        self.assertEqual(len(pending.waiting), 1)  # only SELECT's
        pending.runNext()
        out = self.transport.value()
        self.assertIn(b"* 3 EXISTS\r\n", out)
        self.assertTrue(out.endswith(b"s OK [READ-WRITE] SELECT completed\r\n"), out)
        self.assertNotIn(b"FETCH", out)
        self.transport.clear()
        pending.runNext()  # FETCH: the backend's message iterator
        pending.runNext()  # FETCH: a batch taken from it
        self.assertEqual(self.transport.value(), b"")
        pending.runNext()  # FETCH: the batch rendered (a short one: the last)
        first = inbox.messages[0].data
        self.assertEqual(self.transport.value(), b"* 1 FETCH (BODY[] {%d}\r\n%s)\r\nf OK FETCH completed\r\n" % (len(first), first))
        self.transport.clear()
        # NOOP's refresh: what the backend reports from the worker thread is
        # answered only when the work is done.
        inbox.later(lambda listener: listener.newMessages(4, None))
        self.assertEqual(len(pending.waiting), 1)
        result, d = pending.work()
        self.assertEqual(self.transport.value(), b"")
        d.callback(result)
        self.assertEqual(self.transport.value(), b"* 4 EXISTS\r\nn OK NOOP completed\r\n")
        self.assertEqual(pending.waiting, [])

    def test_idleDoneWaitsForPoll(self) -> None:
        """
        DONE while the IDLE poll's refresh runs: the reply, and the next
        command, wait for it (one backend call at a time per session).
        """
        pending = Pending()
        self.factory = self.makeFactory(runBlocking=pending)
        self.connect()
        self.send(b"a STARTTLS\r\n")
        self.send(b"b LOGIN alice secret\r\n")
        inbox = self.account.mailboxes["INBOX"]
        inbox.add(MESSAGE)
        self.send(b"s SELECT INBOX\r\n")
        pending.runAll()
        self.transport.clear()
        self.assertEqual(self.send(b"i IDLE\r\n"), b"+ idling\r\n")
        self.clock.advance(1)
        self.assertEqual(len(pending.waiting), 1)  # the refresh
        inbox.later(lambda listener: listener.newMessages(2, None))
        self.assertEqual(self.send(b"DONE\r\nn NOOP\r\n"), b"")
        pending.runNext()
        self.assertEqual(self.transport.value(), b"* 2 EXISTS\r\ni OK IDLE terminated\r\n")
        self.transport.clear()
        self.assertEqual(len(pending.waiting), 1)  # NOOP's refresh, only now
        pending.runNext()
        self.assertEqual(self.transport.value(), b"n OK NOOP completed\r\n")

    def test_connectionLostDuringWork(self) -> None:
        """
        The connection closes while a command's work runs: when it
        finishes, nothing is written and nothing is logged as a failure.
        """
        pending = Pending()
        self.factory = self.makeFactory(runBlocking=pending)
        self.connect()
        self.send(b"a STARTTLS\r\n")
        self.send(b"b LOGIN alice secret\r\n")
        self.account.mailboxes["INBOX"].add(MESSAGE)
        self.send(b"s SELECT INBOX\r\n")
        pending.runAll()
        self.transport.clear()
        self.send(b"f FETCH 1 BODY.PEEK[]\r\n")
        self.proto.connectionLost(None)
        pending.runAll()
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(self.flushLoggedErrors(), [])


class SettleAndWarmTests(Harness):
    """
    Work the server leaves for a quiet moment: reading the rest of a
    partly read index after SELECT, listing a folder again after commands
    changed it.
    """

    def hooked(self, settled: list | None = None) -> tuple[FakeMailbox, list]:
        self.login()
        inbox = self.account.mailboxes["INBOX"]
        calls: list = []
        answers = settled if settled is not None else []
        inbox.needsWarming = lambda: True  # type: ignore[attr-defined]
        inbox.warm = lambda: calls.append("warm")  # type: ignore[attr-defined]
        inbox.settleKey = lambda: "key"  # type: ignore[attr-defined]
        inbox.settle = lambda: (calls.append("settle"), answers.pop(0) if answers else False)[1]  # type: ignore[attr-defined]
        return inbox, calls

    def test_warmAfterTheAnswer(self) -> None:
        """
        A mailbox that needs warming is warmed after the SELECT answer went
        out (a little later, not in the same reactor turn), once.
        """
        _, calls = self.hooked()
        self.assertIn(b"s OK", self.send(b"s SELECT INBOX\r\n"))
        self.clock.advance(0)
        self.assertEqual(calls, [])
        self.clock.advance(S.WARM_DELAY)
        self.assertEqual(calls, ["warm"])

    def test_settleOncePerFolder(self) -> None:
        """
        Commands on a selected mailbox leave one settle call per folder,
        SETTLE_DELAY later; it is asked again (up to three times in a row)
        while it says the folder is still changing; shutting down cancels
        a pending one.
        """
        _, calls = self.hooked(settled=[True, True, True, True])
        self.send(b"s SELECT INBOX\r\n")
        self.clock.advance(S.WARM_DELAY)
        self.send(b"n NOOP\r\n")
        self.send(b"m NOOP\r\n")
        self.assertEqual(calls, ["warm"])
        self.clock.advance(S.SETTLE_DELAY - S.WARM_DELAY - 0.1)
        self.assertEqual(calls, ["warm"])
        self.clock.advance(0.1)
        self.assertEqual(calls, ["warm", "settle"])
        for _ in range(3):
            self.clock.advance(S.SETTLE_DELAY)
        self.assertEqual(calls, ["warm", "settle", "settle", "settle"])
        self.send(b"o NOOP\r\n")
        pending = list(self.factory._settling.values())
        self.assertEqual(len(pending), 1)
        self.factory.shutDown()
        self.assertFalse(pending[0].active())
        self.assertEqual(self.factory._settling, {})

    def test_noSettleWithoutMailbox(self) -> None:
        """
        Nothing is scheduled for a session with no mailbox selected, or for
        a mailbox without C{settle}.
        """
        self.login()
        self.send(b"n NOOP\r\n")
        self.send(b"s SELECT INBOX\r\n")
        self.send(b"m NOOP\r\n")
        self.assertEqual(self.factory._settling, {})


class GarbageTests(Harness):
    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.binary(max_size=60), max_size=5))
    def test_garbageNeverCrashes(self, lines: list) -> None:
        """
        Arbitrary input in the selected state: never an internal error,
        and a NOOP afterwards still answers (unless the session was
        dropped for too many errors).
        """
        self.setUp()
        self.select(2)
        out = b""
        for line in lines:
            out += self.send(line.replace(b"\n", b"") + b"\r\n")
        self.assertNotIn(b"SERVERBUG", out)
        if self.proto._idleTag is not None:
            self.send(b"DONE\r\n")
        if self.proto._saslTag is None and self.proto._literal is None and not self.transport.disconnecting:
            self.proto._parts = []
            self.assertIn(b"zz OK", self.send(b"zz NOOP\r\n"))
        self.proto.connectionLost(None)


class TokenizeTests(SynchronousTestCase):
    def test_table(self) -> None:
        cases = [
            (b'a "x\\"y" b', ["a", b'x"y', "b"]),
            (b"(a (b c)) d", [["a", ["b", "c"]], "d"]),
            (b"BODY[HEADER.FIELDS (A B)]<0.5>", ["BODY[HEADER.FIELDS (A B)]<0.5>"]),
            (b'""', [b""]),
        ]
        for line, expected in cases:
            self.assertEqual(S.tokenize([line]), expected)
        for line in (b'"x', b"(a", b"a)", b'"a\\b"', b"a[b", b"\x01"):
            self.assertRaises(S.IMAPError, S.tokenize, [line])

    def test_uidSet(self) -> None:
        self.assertEqual(S.uidSet([1, 2, 3, 5, 7, 8]), b"1:3,5,7:8")


class EndToEndTests(TestCase):
    """
    The stdlib's C{imaplib} against the server on 127.0.0.1, STARTTLS with
    a self-signed certificate.
    """

    def test_imaplib(self) -> Any:
        directory = self.mktemp()
        cert, key = ensureCertificate(directory, "localhost", datetime.datetime.now(datetime.timezone.utc))
        portal, realm = makePortal()
        factory = IMAPFactory(
            portal=portal, clock=reactor, contextFactory=serverContextFactory(cert, key)
        )
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(factory.shutDown)
        number = port.getHost().port

        def client() -> list:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            results = []
            with imaplib.IMAP4("127.0.0.1", number) as imap:
                results.append(imap.starttls(ssl_context=context)[0])
                results.append(imap.login("alice", "secret")[0])
                results.append(imap.append("INBOX", "(\\Flagged)", None, MESSAGE)[1])
                results.append(imap.select("INBOX")[1])
                results.append(imap.search(None, "SUBJECT", '"hello there"')[1])
                results.append(imap.fetch("1", "(BODY.PEEK[]<0.4> FLAGS)")[1])
                results.append(imap.uid("MOVE", "1", "Trash")[0])
                results.append(imap.list()[1])
                results.append(imap.logout()[0])
            return results

        def check(results: list) -> None:
            self.assertEqual(results[0], "OK")
            self.assertEqual(results[1], "OK")
            self.assertIn(b"[APPENDUID 42 1]", results[2][0])
            self.assertEqual(results[3], [b"1"])
            self.assertEqual(results[4], [b"1"])
            self.assertEqual(results[5][0][1], b"From")
            self.assertIn(b"FLAGS (\\Flagged)", results[5][1])
            self.assertEqual(results[6], "OK")
            self.assertIn(b'(\\Trash \\HasNoChildren) "/" "Trash"', results[7])
            self.assertEqual(results[8], "BYE")
            self.assertEqual(len(realm.accounts[b"alice"].mailboxes["Trash"].messages), 1)

        return deferToThread(client).addCallback(check)
