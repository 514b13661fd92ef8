"""
Tests for CONDSTORE (RFC 7162 §3.1) in L{mailhub.imap.server}, driven
through a L{StringTransport} and a L{Clock} over the real Maildir backend
(L{mailhub.imap.mailbox}), and over the in-memory fakes for a mailbox
without mod-sequences.
"""

from __future__ import annotations

import os
import re
from typing import Any

from hypothesis import given, settings, strategies as st
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock
from twisted.mail.imap4 import IAccount
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mailhub.fs import FileSystem
from mailhub.imap import server as S
from mailhub.imap.mailbox import MaildirAccount
from mailhub.imap.search import parseSequenceSet
from mailhub.imap.server import IMAP4Server, IMAPFactory
from mailhub.maildir.delivery import ensureMaildir
from mailhub.maildir.index import INDEX_NAME, FolderIndex
from mailhub.pop3.mailbox import MaildirMailbox
from tests.imap.fakes import makePortal
from tests.imap.test_server import MESSAGE, PEER, TLSStringTransport

HOST = "mx.example.org"
START = 1_700_000_000

_MODSEQ = re.compile(rb"MODSEQ \((\d+)\)")
_HIGHEST = re.compile(rb"\[HIGHESTMODSEQ (\d+)\]")


def modseqOf(line: bytes) -> int:
    match = _MODSEQ.search(line)
    assert match is not None, line
    return int(match.group(1))


def highestOf(out: bytes) -> int:
    match = _HIGHEST.search(out)
    assert match is not None, out
    return int(match.group(1))


def untagged(out: bytes) -> list[bytes]:
    return [line for line in out.split(b"\r\n") if line.startswith(b"* ")]


@implementer(IRealm)
class MaildirRealm:
    """
    Gives each user a L{MaildirAccount} over C{root/USER}.

    @ivar indexFor: how the accounts get a folder's index (one per folder,
        shared by the sessions, as in one process; unless replaced).
    """

    def __init__(self, root: str, clock: Clock) -> None:
        self.root = root
        self.clock = clock
        self.indexes: dict[str, FolderIndex] = {}
        self.indexFor = self.sharedIndex

    def sharedIndex(self, path: str) -> FolderIndex:
        if path not in self.indexes:
            self.indexes[path] = FolderIndex(path, clock=self.clock, hostname=HOST)
        return self.indexes[path]

    def requestAvatar(self, avatarId: bytes, mind: object, *interfaces: Any) -> tuple:
        assert IAccount in interfaces
        account = MaildirAccount(
            os.path.join(self.root, avatarId.decode()), clock=self.clock, indexFor=lambda path: self.indexFor(path)
        )
        return IAccount, account, lambda: None


class Session:
    """
    One client connection: C{send} a command, get what the server wrote.
    """

    def __init__(self, factory: IMAPFactory, test: SynchronousTestCase) -> None:
        self.transport = TLSStringTransport(peerAddress=PEER)
        self.proto: IMAP4Server = factory.buildProtocol(PEER)  # type: ignore[assignment]
        self.proto.makeConnection(self.transport)
        test.addCleanup(lambda: self.transport.disconnected or self.proto.connectionLost(None))
        self.transport.clear()

    def send(self, line: bytes) -> bytes:
        self.proto.dataReceived(line + b"\r\n")
        out = self.transport.value()
        self.transport.clear()
        return out


class Harness(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.root = self.mktemp()
        self.maildir = os.path.join(self.root, "alice")
        ensureMaildir(FileSystem(), self.maildir)
        self.realm = MaildirRealm(self.root, self.clock)
        checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"secret")
        self.factory = self.makeFactory()
        self._portal = Portal(self.realm, [checker])
        self.factory.portal = self._portal
        self.delivered = 0

    def makeFactory(self, **kwargs: Any) -> IMAPFactory:
        options = dict(portal=None, clock=self.clock, hostname="mx.example.test", contextFactory=object())
        options.update(kwargs)
        return IMAPFactory(**options)  # type: ignore[arg-type]

    def deliver(self, count: int = 1, sub: str = "new", info: str = "") -> list[str]:
        bases = []
        for _ in range(count):
            self.delivered += 1
            data = MESSAGE.replace(b"hello", b"hello %d" % self.delivered)
            base = f"{START + self.delivered}.M{self.delivered}P1Q1.{HOST},S={len(data)},W={len(data)}"
            with open(os.path.join(self.maildir, sub, base + info), "wb") as f:
                f.write(data)
            bases.append(base)
        return bases

    def session(self, select: bytes | None = b"SELECT INBOX") -> Session:
        session = Session(self.factory, self)
        self.assertIn(b"a OK", session.send(b"a STARTTLS"))
        self.assertIn(b"b OK", session.send(b"b LOGIN alice secret"))
        if select is not None:
            out = session.send(b"s " + select)
            self.assertIn(b"s OK", out)
        return session

    def index(self) -> FolderIndex:
        return self.realm.indexes[self.maildir]


class EnablingTests(Harness):
    def test_capability(self) -> None:
        """
        CONDSTORE is advertised, before and after login.
        """
        session = Session(self.factory, self)
        self.assertIn(b" CONDSTORE", session.send(b"a CAPABILITY").split(b"\r\n")[0])
        session.send(b"b STARTTLS")
        self.assertIn(b"[CAPABILITY ", session.send(b"c LOGIN alice secret"))
        self.assertIn(b" CONDSTORE", session.send(b"d CAPABILITY").split(b"\r\n")[0])

    def test_selectWithoutCondstore(self) -> None:
        """
        Until a CONDSTORE enabling command, SELECT says nothing of
        mod-sequences and STORE answers as before.
        """
        self.deliver(2)
        session = self.session(select=None)
        out = session.send(b"s SELECT INBOX")
        self.assertNotIn(b"MODSEQ", out)
        self.assertIn(b"s OK [READ-WRITE]", out)
        out = session.send(b"t STORE 1 +FLAGS (\\Flagged)")
        self.assertIn(b"* 1 FETCH (FLAGS (\\Flagged \\Recent))\r\nt OK STORE completed", out)
        self.assertFalse(session.proto.condstore)

    def test_selectCondstore(self) -> None:
        """
        SELECT and EXAMINE with the CONDSTORE parameter enable CONDSTORE and
        say HIGHESTMODSEQ (RFC 7162 §3.1.2.1, §3.1.8); so does every
        SELECT after.
        """
        self.deliver(2)
        session = self.session(select=None)
        out = session.send(b"s SELECT INBOX (CONDSTORE)")
        self.assertIn(b"s OK [READ-WRITE]", out)
        highest = highestOf(out)
        self.assertEqual(highest, self.index().highestModseq)
        self.assertGreaterEqual(highest, 1)
        self.assertTrue(session.proto.condstore)
        out = session.send(b"e EXAMINE INBOX (condstore)")
        self.assertEqual(highestOf(out), highest)
        self.assertIn(b"e OK [READ-ONLY]", out)
        self.assertIn(b"* OK [HIGHESTMODSEQ", session.send(b"f SELECT Trash"))

    def test_selectParameters(self) -> None:
        """
        An unknown SELECT parameter, or an empty list, is BAD and enables
        nothing.
        """
        session = self.session(select=None)
        self.assertIn(b"s BAD", session.send(b"s SELECT INBOX (QRESYNC)"))
        self.assertIn(b"t BAD", session.send(b"t SELECT INBOX ()"))
        self.assertIn(b"u BAD", session.send(b"u SELECT INBOX CONDSTORE"))
        self.assertFalse(session.proto.condstore)

    def test_enable(self) -> None:
        """
        ENABLE CONDSTORE says so once (RFC 5161 §3.1: only what this command
        enabled); SELECT then says HIGHESTMODSEQ.
        """
        session = self.session(select=None)
        self.assertIn(b"* ENABLED CONDSTORE\r\na OK", session.send(b"a ENABLE CONDSTORE X-OTHER"))
        self.assertIn(b"* ENABLED\r\nb OK", session.send(b"b ENABLE condstore"))
        self.assertIn(b"* OK [HIGHESTMODSEQ ", session.send(b"s SELECT INBOX"))

    def test_status(self) -> None:
        """
        STATUS (HIGHESTMODSEQ) gives the folder's HIGHESTMODSEQ (RFC 7162
        §3.1.7), of a folder other than the selected one too, and enables
        CONDSTORE.
        """
        self.deliver(3)
        session = self.session(select=None)
        out = session.send(b"a STATUS INBOX (MESSAGES HIGHESTMODSEQ)")
        match = re.search(rb'\* STATUS "INBOX" \(MESSAGES 3 HIGHESTMODSEQ (\d+)\)', out)
        self.assertIsNotNone(match, out)
        self.assertTrue(session.proto.condstore)
        out = session.send(b"s SELECT INBOX")
        self.assertEqual(highestOf(out), int(match.group(1)))
        self.assertRegex(session.send(b"b STATUS Trash (HIGHESTMODSEQ)"), rb'\* STATUS "Trash" \(HIGHESTMODSEQ \d+\)')


class FetchTests(Harness):
    def test_fetchModseq(self) -> None:
        """
        FETCH MODSEQ gives each message's mod-sequence (RFC 7162 §3.1.4.2)
        and enables CONDSTORE.
        """
        self.deliver(2)
        session = self.session()
        out = session.send(b"f FETCH 1:* (FLAGS MODSEQ)")
        lines = untagged(out)
        self.assertEqual(len(lines), 2)
        index = self.index()
        self.assertEqual([modseqOf(line) for line in lines], [index.modseq(1), index.modseq(2)])
        self.assertTrue(session.proto.condstore)
        self.assertIn(b"UID 1 MODSEQ (", session.send(b"u UID FETCH 1 MODSEQ"))

    def test_changedSince(self) -> None:
        """
        FETCH ... (CHANGEDSINCE n) gives only the messages changed after n,
        with MODSEQ even if not asked for (RFC 7162 §3.1.4.1); UID FETCH
        too.
        """
        self.deliver(3)
        session = self.session()
        highest = highestOf(session.send(b"s SELECT INBOX (CONDSTORE)"))
        self.assertEqual(untagged(session.send(b"f FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % highest)), [])
        session.send(b"t STORE 2 +FLAGS.SILENT (\\Answered)")
        lines = untagged(session.send(b"g FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % highest))
        self.assertEqual(len(lines), 1)
        self.assertTrue(lines[0].startswith(b"* 2 FETCH ("), lines)
        self.assertIn(b"FLAGS (\\Answered", lines[0])
        self.assertGreater(modseqOf(lines[0]), highest)
        lines = untagged(session.send(b"h UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % highest))
        self.assertEqual(len(lines), 1)
        self.assertIn(b"UID 2", lines[0])
        self.assertEqual(len(untagged(session.send(b"i FETCH 1:* (UID) (CHANGEDSINCE 0)"))), 3)

    def test_changedSinceEnables(self) -> None:
        """
        CHANGEDSINCE enables CONDSTORE by itself.
        """
        self.deliver()
        session = self.session()
        self.assertFalse(session.proto.condstore)
        self.assertRegex(session.send(b"f FETCH 1 (FLAGS) (CHANGEDSINCE 0)"), rb"\* 1 FETCH \(FLAGS \(.*\) MODSEQ \(\d+\)\)")
        self.assertTrue(session.proto.condstore)

    def test_badModifiers(self) -> None:
        """
        Malformed or unknown FETCH modifiers are BAD.
        """
        self.deliver()
        session = self.session()
        for command in (
            b"a FETCH 1 (FLAGS) (CHANGEDSINCE)",
            b"b FETCH 1 (FLAGS) (CHANGEDSINCE x)",
            b"c FETCH 1 (FLAGS) (CHANGEDSINCE 9223372036854775808)",
            b"d FETCH 1 (FLAGS) (VANISHED)",
            b"e FETCH 1 (FLAGS) CHANGEDSINCE",
        ):
            self.assertIn(command[:2] + b"BAD", session.send(command), command)

    def test_fetchSettingSeenTellsModseq(self) -> None:
        """
        Once CONDSTORE is enabled, a FETCH that sets \\Seen reports the
        new mod-sequence and the UID with the flags.
        """
        self.deliver()
        session = self.session(select=b"SELECT INBOX (CONDSTORE)")
        before = self.index().modseq(1)
        out = session.send(b"f FETCH 1 BODY[TEXT]")
        line = out.split(b"\r\nf OK")[0]
        self.assertTrue(line.startswith(b"* 1 FETCH (BODY[TEXT] {"), line)
        self.assertIn(b"FLAGS (\\Seen", line)
        self.assertIn(b"UID 1", line)
        self.assertGreater(modseqOf(line), before)
        self.assertEqual(modseqOf(line), self.index().modseq(1))


class StoreTests(Harness):
    def test_storeTellsModseq(self) -> None:
        """
        Once CONDSTORE is enabled, STORE answers with UID, MODSEQ and FLAGS;
        with .SILENT, with UID and MODSEQ still (the client's cache needs
        them).
        """
        self.deliver(2)
        session = self.session(select=b"SELECT INBOX (CONDSTORE)")
        highest = self.index().highestModseq
        out = session.send(b"t STORE 1 +FLAGS (\\Flagged)")
        self.assertRegex(out, rb"\* 1 FETCH \(UID 1 MODSEQ \(\d+\) FLAGS \(\\Flagged \\Recent\)\)\r\nt OK STORE")
        flagged = modseqOf(out)
        self.assertGreater(flagged, highest)
        out = session.send(b"u STORE 1:2 +FLAGS.SILENT (\\Seen)")
        lines = untagged(out)
        self.assertEqual(len(lines), 2)
        self.assertNotIn(b"FLAGS", out.split(b"u OK")[0])
        self.assertRegex(lines[1], rb"\* 2 FETCH \(UID 2 MODSEQ \(\d+\)\)")
        self.assertGreater(modseqOf(lines[0]), flagged)
        # One STORE, one new mod-sequence.
        self.assertEqual(modseqOf(lines[0]), modseqOf(lines[1]))

    def test_unchangedSince(self) -> None:
        """
        STORE (UNCHANGEDSINCE n) changes the messages whose mod-sequence is
        not above n; the others are left alone and named in
        C{[MODIFIED]} (RFC 7162 §3.1.3); the ones that passed get a FETCH
        with MODSEQ even with .SILENT.
        """
        self.deliver(3)
        session = self.session(select=b"SELECT INBOX (CONDSTORE)")
        start = self.index().highestModseq
        session.send(b"a STORE 2 +FLAGS (\\Answered)")
        out = session.send(b"b STORE 1:3 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Deleted)" % start)
        self.assertIn(b"b OK [MODIFIED 2] Conditional STORE failed", out)
        lines = untagged(out)
        self.assertEqual([line.split(b" FETCH")[0] for line in lines], [b"* 1", b"* 3"])
        self.assertEqual(self.index().flags(2), ["\\Answered"])
        self.assertEqual(self.index().flags(3), ["\\Deleted"])
        out = session.send(b"c STORE 2 (UNCHANGEDSINCE %d) FLAGS (\\Seen)" % self.index().modseq(2))
        self.assertIn(b"c OK STORE completed", out)
        self.assertIn(b"FLAGS (\\Seen", out)
        self.assertEqual(self.index().flags(2), ["\\Seen"])

    def test_uidStoreUnchangedSince(self) -> None:
        """
        UID STORE names UIDs in C{[MODIFIED]}; UNCHANGEDSINCE 0 fails for
        every message (each has a mod-sequence).
        """
        self.deliver(4)
        session = self.session(select=b"SELECT INBOX (CONDSTORE)")
        session.send(b"x STORE 2 +FLAGS (\\Deleted)")
        session.send(b"y EXPUNGE")
        out = session.send(b"a UID STORE 3:4 (UNCHANGEDSINCE 0) +FLAGS (\\Flagged)")
        self.assertIn(b"a OK [MODIFIED 3:4]", out)
        self.assertEqual(untagged(out), [])
        self.assertEqual(self.index().flags(3), [])

    def test_unchangedSinceEnables(self) -> None:
        """
        UNCHANGEDSINCE is a CONDSTORE enabling command, and a malformed or
        unknown modifier is BAD.
        """
        self.deliver()
        session = self.session()
        out = session.send(b"a STORE 1 (UNCHANGEDSINCE 9223372036854775807) +FLAGS (\\Seen)")
        self.assertIn(b"a OK STORE completed", out)
        self.assertIn(b"MODSEQ", out)
        self.assertTrue(session.proto.condstore)
        for command in (
            b"b STORE 1 (UNCHANGEDSINCE -1) +FLAGS (\\Seen)",
            b"c STORE 1 (UNCHANGEDSINCE) +FLAGS (\\Seen)",
            b"d STORE 1 (CHANGEDSINCE 5) +FLAGS (\\Seen)",
            b"e STORE 1 UNCHANGEDSINCE +FLAGS (\\Seen)",
        ):
            self.assertIn(command[:2] + b"BAD", session.send(command), command)

    def test_conflictWithAnotherSession(self) -> None:
        """
        A client that stores conditionally on the mod-sequence it knows
        loses to a change another session made meanwhile: C{[MODIFIED]},
        and the other session's flags stay.
        """
        self.deliver(2)
        mine = self.session(select=b"SELECT INBOX (CONDSTORE)")
        other = self.session(select=b"SELECT INBOX (CONDSTORE)")
        known = modseqOf(untagged(mine.send(b"f FETCH 1 MODSEQ"))[0])
        other.send(b"t STORE 1 +FLAGS (\\Seen)")
        out = mine.send(b"u STORE 1:2 (UNCHANGEDSINCE %d) FLAGS (\\Flagged)" % known)
        self.assertIn(b"u OK [MODIFIED 1]", out)
        self.assertEqual(self.index().flags(1), ["\\Seen"])
        self.assertEqual(self.index().flags(2), ["\\Flagged"])

    def test_conflictWithARenameOnDisk(self) -> None:
        """
        A flag change another Maildir tool made by renaming the file, not
        yet seen by any session, fails the test as well.
        """
        (base,) = self.deliver(sub="cur", info=":2,")
        session = self.session(select=b"SELECT INBOX (CONDSTORE)")
        known = modseqOf(untagged(session.send(b"f FETCH 1 MODSEQ"))[0])
        os.rename(os.path.join(self.maildir, "cur", base + ":2,"), os.path.join(self.maildir, "cur", base + ":2,R"))
        out = session.send(b"u STORE 1 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)" % known)
        self.assertIn(b"u OK [MODIFIED 1]", out)
        self.assertEqual(self.index().flags(1), ["\\Answered"])


class SearchTests(Harness):
    def test_searchModseq(self) -> None:
        """
        SEARCH MODSEQ n finds the messages changed at n or later and ends
        with the highest mod-sequence of what it found (RFC 7162 §3.1.5,
        §3.1.6); nothing found, no MODSEQ.
        """
        self.deliver(3)
        session = self.session()
        start = self.index().highestModseq
        self.assertIn(b"* SEARCH\r\na OK", session.send(b"a SEARCH MODSEQ %d" % (start + 1)))
        self.assertTrue(session.proto.condstore)
        session.send(b"t STORE 3 +FLAGS (\\Seen)")
        session.send(b"u STORE 1 +FLAGS (\\Seen)")
        latest = self.index().modseq(1)
        out = session.send(b"b SEARCH MODSEQ %d" % (start + 1))
        self.assertIn(b"* SEARCH 1 3 (MODSEQ %d)\r\nb OK" % latest, out)
        out = session.send(b"c UID SEARCH MODSEQ %d SEEN" % self.index().modseq(3))
        self.assertIn(b"* SEARCH 1 3 (MODSEQ %d)\r\nc OK" % latest, out)
        out = session.send(b"d SEARCH OR MODSEQ %d UNSEEN" % latest)
        self.assertIn(b"* SEARCH 1 2 (MODSEQ %d)\r\nd OK" % latest, out)

    def test_entryName(self) -> None:
        """
        The entry name and type are accepted and checked (one mod-sequence
        per message: they do not narrow anything).
        """
        self.deliver(2)
        session = self.session()
        out = session.send(b'a SEARCH MODSEQ "/flags/\\\\draft" all 1')
        self.assertRegex(out, rb"\* SEARCH 1 2 \(MODSEQ \d+\)\r\na OK")
        self.assertIn(b"b BAD", session.send(b'b SEARCH MODSEQ "/flags/\\\\draft" everybody 1'))
        self.assertIn(b"c BAD", session.send(b'c SEARCH MODSEQ "/annotation/x" priv 1'))
        self.assertIn(b"d BAD", session.send(b"d SEARCH MODSEQ 9223372036854775808"))


class OtherChangesTests(Harness):
    def test_noopTellsModseq(self) -> None:
        """
        A flag change by another session reaches a CONDSTORE session at its
        NOOP with UID and MODSEQ (RFC 7162 §3.1); a session that has not
        enabled CONDSTORE hears the flags only.
        """
        self.deliver(2)
        mine = self.session(select=b"SELECT INBOX (CONDSTORE)")  # the messages are \Recent to it
        plain = self.session()
        other = self.session()
        other.send(b"t STORE 2 +FLAGS (\\Flagged)")
        modseq = self.index().modseq(2)
        expected = b"* 2 FETCH (UID 2 MODSEQ (%d) FLAGS (\\Flagged \\Recent))\r\nn OK" % modseq
        self.assertIn(expected, mine.send(b"n NOOP"))
        self.assertIn(b"* 2 FETCH (FLAGS (\\Flagged))\r\nn OK", plain.send(b"n NOOP"))

    def test_idleTellsModseq(self) -> None:
        """
        While idling, a rename on disk by another tool (a flag change) is
        pushed with its new mod-sequence.
        """
        (base,) = self.deliver(sub="cur", info=":2,")
        session = self.session(select=b"SELECT INBOX (CONDSTORE)")
        highest = self.index().highestModseq
        self.assertEqual(session.send(b"i IDLE"), b"+ idling\r\n")
        os.rename(os.path.join(self.maildir, "cur", base + ":2,"), os.path.join(self.maildir, "cur", base + ":2,F"))
        self.clock.advance(S.IDLE_POLL)
        out = session.transport.value()
        session.transport.clear()
        self.assertRegex(out, rb"\* 1 FETCH \(UID 1 MODSEQ \(\d+\) FLAGS \(\\Flagged\)\)")
        self.assertGreater(modseqOf(out), highest)
        self.assertIn(b"i OK", session.send(b"DONE"))

    def test_pop3(self) -> None:
        """
        POP3 taking a message (\\Seen) and deleting another: new
        mod-sequence for the first, a higher HIGHESTMODSEQ for the folder.
        """
        self.deliver(2)
        session = self.session(select=b"EXAMINE INBOX (CONDSTORE)")
        highest = self.index().highestModseq
        pop = MaildirMailbox(self.maildir, hostname=HOST)
        pop.open(self.clock)
        try:
            pop.markSeen(0)
            pop.deleteMessage(1)
            pop.commit()
        finally:
            pop.release()
        out = session.send(b"n NOOP")
        self.assertIn(b"* 2 EXPUNGE", out)
        self.assertRegex(out, rb"\* 1 FETCH \(UID 1 MODSEQ \(\d+\) FLAGS \(\\Seen \\Recent\)\)")
        seen = modseqOf(out)
        self.assertGreater(seen, highest)
        match = re.search(rb"HIGHESTMODSEQ (\d+)", session.send(b"a STATUS INBOX (HIGHESTMODSEQ)"))
        self.assertGreaterEqual(int(match.group(1)), seen)

    def test_highestModseqGrows(self) -> None:
        """
        New mail and an expunge raise HIGHESTMODSEQ.
        """
        self.deliver(2)
        session = self.session(select=b"SELECT INBOX (CONDSTORE)")
        first = self.index().highestModseq
        self.deliver()
        out = session.send(b"n NOOP")
        self.assertIn(b"* 3 EXISTS", out)
        second = highestOf(session.send(b"s SELECT INBOX"))
        self.assertGreater(second, first)
        session.send(b"t STORE 1 +FLAGS.SILENT (\\Deleted)")
        third = self.index().highestModseq
        session.send(b"e EXPUNGE")
        self.assertGreater(highestOf(session.send(b"s SELECT INBOX")), third)


class PersistenceTests(Harness):
    def restart(self) -> None:
        """
        A new process: new indexes, the same folder.
        """
        for index in self.realm.indexes.values():
            index.close()
        self.realm.indexes = {}

    def test_restart(self) -> None:
        """
        After a restart the client's mod-sequences still hold: same
        HIGHESTMODSEQ, nothing changed since it.
        """
        self.deliver(3)
        session = self.session(select=b"SELECT INBOX (CONDSTORE)")
        session.send(b"t STORE 2 +FLAGS (\\Seen)")
        highest = highestOf(session.send(b"s SELECT INBOX"))
        session.send(b"u UNSELECT")
        self.restart()
        later = self.session(select=b"SELECT INBOX (CONDSTORE)")
        self.assertIn(b"[HIGHESTMODSEQ %d]" % highest, later.send(b"s SELECT INBOX"))
        self.assertEqual(untagged(later.send(b"f FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % highest)), [])

    def test_indexLost(self) -> None:
        """
        Without the index (a cache), HIGHESTMODSEQ does not go back: the
        client's CHANGEDSINCE gives it every message to look at again.
        """
        self.deliver(3)
        session = self.session(select=b"SELECT INBOX (CONDSTORE)")
        session.send(b"t STORE 2 +FLAGS (\\Seen)")
        highest = highestOf(session.send(b"s SELECT INBOX"))
        session.send(b"u UNSELECT")
        self.restart()
        os.unlink(os.path.join(self.maildir, INDEX_NAME))
        later = self.session(select=b"SELECT INBOX (CONDSTORE)")
        self.assertGreater(highestOf(later.send(b"s SELECT INBOX")), highest)
        self.assertEqual(len(untagged(later.send(b"f FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % highest))), 3)


class BlockingTests(Harness):
    def test_workOffTheReactorThread(self) -> None:
        """
        The CONDSTORE commands reach the index only through C{runBlocking}.
        """
        inside = []
        outside: list[str] = []

        def runBlocking(function: Any, *args: Any) -> Any:
            inside.append(True)
            try:
                return maybeDeferred(function, *args)
            finally:
                inside.pop()

        self.factory = self.makeFactory(runBlocking=runBlocking)
        self.factory.portal = self._portal
        self.deliver(3)
        index = self.realm.sharedIndex(self.maildir)
        for name in ("modseq", "setFlags", "changeFlags", "refresh", "uids", "flags"):
            original = getattr(index, name)

            def guarded(*args: Any, original: Any = original, name: str = name, **kwargs: Any) -> Any:
                if not inside:
                    outside.append(name)
                return original(*args, **kwargs)

            setattr(index, name, guarded)
        session = self.session(select=b"SELECT INBOX (CONDSTORE)")
        for command in (
            b"a FETCH 1:* (FLAGS MODSEQ) (CHANGEDSINCE 1)",
            b"b STORE 1:2 (UNCHANGEDSINCE 1) +FLAGS (\\Seen)",
            b"c SEARCH MODSEQ 1",
            b"d STATUS INBOX (HIGHESTMODSEQ)",
            b"e NOOP",
        ):
            out = session.send(command)
            self.assertIn(command[:2] + b"OK", out)
        self.assertEqual(outside, [])


class NoModseqTests(SynchronousTestCase):
    """
    A backend without mod-sequences (the in-memory fakes).
    """

    def setUp(self) -> None:
        self.clock = Clock()
        portal, self.realm = makePortal()
        self.factory = IMAPFactory(portal=portal, clock=self.clock, hostname="mx.example.test", contextFactory=object())
        self.session = Session(self.factory, self)
        self.session.send(b"a STARTTLS")
        self.session.send(b"b LOGIN alice secret")
        self.realm.accounts[b"alice"].mailboxes["INBOX"].add(MESSAGE)

    def test_noModseq(self) -> None:
        """
        SELECT (CONDSTORE) says C{[NOMODSEQ]} (RFC 7162 §3.1.2.2); the
        commands that need mod-sequences are BAD; STATUS says 0 (§3.1.7);
        STORE answers as without CONDSTORE.
        """
        session = self.session
        self.assertFalse(S.hasModSeqs(self.realm.accounts[b"alice"].mailboxes["INBOX"]))
        out = session.send(b"s SELECT INBOX (CONDSTORE)")
        self.assertIn(b"* OK [NOMODSEQ]", out)
        self.assertNotIn(b"HIGHESTMODSEQ", out)
        for command in (
            b"f FETCH 1 (FLAGS MODSEQ)",
            b"g FETCH 1 (FLAGS) (CHANGEDSINCE 1)",
            b"h STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\\Seen)",
            b"i SEARCH MODSEQ 1",
        ):
            self.assertIn(command[:2] + b"BAD", session.send(command), command)
        self.assertIn(b'* STATUS "INBOX" (HIGHESTMODSEQ 0)', session.send(b"j STATUS INBOX (HIGHESTMODSEQ)"))
        self.assertIn(b"* 1 FETCH (FLAGS (\\Seen))\r\nk OK", session.send(b"k STORE 1 +FLAGS (\\Seen)"))


class ListenerTests(SynchronousTestCase):
    def test_interface(self) -> None:
        """
        The server is still an C{IMailboxListener} (with the optional
        callbacks besides).
        """
        from twisted.mail.imap4 import IMailboxListener

        proto = IMAPFactory(portal=None, clock=Clock()).buildProtocol(PEER)
        self.assertTrue(verifyObject(IMailboxListener, proto))
        self.assertTrue(callable(proto.flagsChangedWithModSeq))
        self.assertTrue(callable(proto.messagesExpungedWithUIDs))


class QresyncTests(Harness):
    """
    QRESYNC (RFC 7162 §3.2).
    """

    def enabled(self, select: bytes | None = b"SELECT INBOX") -> Session:
        session = self.session(select=None)
        self.assertIn(b"* ENABLED QRESYNC\r\ne OK", session.send(b"e ENABLE QRESYNC"))
        self.assertTrue(session.proto.condstore)
        if select is not None:
            self.assertIn(b"s OK", session.send(b"s " + select))
        return session

    def test_capabilityAndEnable(self) -> None:
        """
        QRESYNC is advertised; without ENABLE QRESYNC the select parameter
        is BAD (RFC 7162 §3.2.5), and so is VANISHED in FETCH.
        """
        self.deliver()
        session = self.session(select=None)
        self.assertIn(b" QRESYNC", session.send(b"c CAPABILITY").split(b"\r\n")[0])
        self.assertIn(b"s BAD", session.send(b"s SELECT INBOX (QRESYNC (1 1))"))
        session.send(b"t SELECT INBOX")
        self.assertIn(b"f BAD", session.send(b"f UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)"))
        self.assertIn(b"* ENABLED QRESYNC\r\ne OK", session.send(b"e ENABLE QRESYNC"))
        self.assertIn(b"* ENABLED\r\nd OK", session.send(b"d ENABLE QRESYNC CONDSTORE"))
        self.assertIn(b"g BAD", session.send(b"g FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)"))

    def test_expungeIsVanished(self) -> None:
        """
        Once QRESYNC is enabled, EXPUNGE and UID EXPUNGE answer VANISHED
        instead of EXPUNGE responses, and the tagged OK carries
        HIGHESTMODSEQ (RFC 7162 §3.2.7, §3.2.10.2).
        """
        self.deliver(5)
        session = self.enabled()
        session.send(b"t STORE 2:3,5 +FLAGS.SILENT (\\Deleted)")
        out = session.send(b"x EXPUNGE")
        self.assertNotIn(b" EXPUNGE\r\n", out)
        self.assertIn(b"* VANISHED 2:3,5\r\n", out)
        self.assertIn(b"x OK [HIGHESTMODSEQ %d] EXPUNGE completed" % self.index().highestModseq, out)
        self.assertEqual(session.proto._exists, 2)
        session.send(b"u UID STORE 4 +FLAGS.SILENT (\\Deleted)")
        out = session.send(b"y UID EXPUNGE 1:4")
        self.assertIn(b"* VANISHED 4\r\ny OK [HIGHESTMODSEQ ", out)
        self.deliver()
        self.assertIn(b"* 2 EXISTS", session.send(b"n NOOP"))

    def test_otherSessionsAndMove(self) -> None:
        """
        Expunges by another session arrive as VANISHED; so do the
        messages MOVE takes away, after the COPYUID.
        """
        self.deliver(3)
        session = self.enabled()
        other = self.session()
        other.send(b"t STORE 1 +FLAGS.SILENT (\\Deleted)")
        other.send(b"x EXPUNGE")
        out = session.send(b"n NOOP")
        self.assertIn(b"* VANISHED 1\r\n", out)
        self.assertNotIn(b"EXPUNGE", out)
        out = session.send(b"m MOVE 2 Trash")
        self.assertRegex(out, rb"\* OK \[COPYUID \d+ 3 1\] Moved\r\n\* VANISHED 3\r\nm OK MOVE completed")

    def test_selectQresync(self) -> None:
        """
        SELECT (QRESYNC (uidvalidity modseq)) tells what the client missed:
        VANISHED (EARLIER) for the UIDs gone, a FETCH with UID, FLAGS and
        MODSEQ for each message changed (RFC 7162 §3.2.5.1); with known
        UIDs, only about those; with another UIDVALIDITY, nothing.
        """
        self.deliver(4)
        first = self.enabled()
        out = first.send(b"s SELECT INBOX")
        highest = highestOf(out)
        validity = int(re.search(rb"UIDVALIDITY (\d+)", out).group(1))
        first.send(b"u UNSELECT")
        other = self.session()
        other.send(b"t STORE 2 +FLAGS.SILENT (\\Deleted)")
        other.send(b"x EXPUNGE")
        other.send(b"f UID STORE 3 +FLAGS (\\Flagged)")
        out = first.send(b"s SELECT INBOX (QRESYNC (%d %d))" % (validity, highest))
        self.assertIn(b"* VANISHED (EARLIER) 2\r\n", out)
        self.assertRegex(out, rb"\* 2 FETCH \(UID 3 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)\r\n")
        self.assertEqual(len(re.findall(rb"FETCH", out)), 1)
        self.assertLess(out.index(b"VANISHED"), out.index(b"s OK"))
        out = first.send(b"k EXAMINE INBOX (QRESYNC (%d %d 1:2 (1:2 1:2)))" % (validity, highest))
        self.assertIn(b"* OK [CLOSED]", out)
        self.assertIn(b"* VANISHED (EARLIER) 2\r\n", out)
        self.assertNotIn(b"FETCH", out)
        out = first.send(b"w SELECT INBOX (QRESYNC (%d %d))" % (validity + 1, highest))
        self.assertNotIn(b"VANISHED", out)
        self.assertNotIn(b"FETCH", out)
        for bad in (b"(QRESYNC (0 1))", b"(QRESYNC (%d 0))" % validity, b"(QRESYNC (%d))" % validity,
                    b"(QRESYNC (%d 1 x))" % validity, b"(QRESYNC (%d 1 1 (1)))" % validity, b"(QRESYNC)"):
            self.assertIn(b"b BAD", first.send(b"b SELECT INBOX " + bad), bad)

    def test_closed(self) -> None:
        """
        A SELECT that replaces a selected mailbox first says [CLOSED]
        (RFC 7162 §3.2.11); the first SELECT does not.
        """
        session = self.enabled(select=None)
        self.assertNotIn(b"CLOSED", session.send(b"s SELECT INBOX"))
        out = session.send(b"t SELECT Trash")
        self.assertTrue(out.startswith(b"* OK [CLOSED]"), out)

    def test_uidFetchVanished(self) -> None:
        """
        UID FETCH ... (CHANGEDSINCE n VANISHED) first names the UIDs of the
        set that are gone (RFC 7162 §3.2.6).
        """
        self.deliver(5)
        session = self.enabled()
        highest = self.index().highestModseq
        session.send(b"t STORE 2,4 +FLAGS.SILENT (\\Deleted)")
        session.send(b"x EXPUNGE")
        session.send(b"f UID STORE 3 +FLAGS.SILENT (\\Seen)")
        out = session.send(b"a UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % highest)
        lines = untagged(out)
        self.assertEqual(lines[0], b"* VANISHED (EARLIER) 2,4")
        self.assertEqual(len(lines), 2)
        self.assertRegex(lines[1], rb"\* 2 FETCH \(UID 3 FLAGS \(\\Seen \\Recent\) MODSEQ \(\d+\)\)")
        out = session.send(b"b UID FETCH 5 (FLAGS) (VANISHED CHANGEDSINCE %d)" % highest)
        self.assertNotIn(b"VANISHED", out)
        self.assertIn(b"c BAD", session.send(b"c UID FETCH 1:* (FLAGS) (VANISHED)"))
        self.assertIn(b"d BAD", session.send(b"d UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED VANISHED)"))


class AbsentUIDsTests(SynchronousTestCase):
    def test_table(self) -> None:
        """
        The gaps of a UID list inside ranges, as ranges.
        """
        for uids, ranges, expected in (
            ([], [(1, 5)], [(1, 5)]),
            ([1, 2, 3], [(1, 3)], []),
            ([2, 5, 6, 9], [(1, 10)], [(1, 1), (3, 4), (7, 8), (10, 10)]),
            ([2, 5, 6, 9], [(3, 5), (8, 8)], [(3, 4), (8, 8)]),
            ([10], [(1, 3), (11, 12)], [(1, 3), (11, 12)]),
        ):
            self.assertEqual(S._absentUIDs(uids, ranges), expected, (uids, ranges))

    @given(st.sets(st.integers(1, 60)), st.lists(st.tuples(st.integers(1, 60), st.integers(0, 10)), max_size=6))
    @settings(max_examples=200, deadline=None)
    def test_againstSets(self, present: set[int], spans: list[tuple[int, int]]) -> None:
        """
        The gaps are exactly the set difference, whatever the UIDs and the
        ranges.
        """
        ranges = S._knownRanges(parseSequenceSet(",".join(f"{a}:{a + n}" for a, n in spans) or "1", uid=True), 70)
        gone = S._absentUIDs(sorted(present), ranges)
        expected = {u for low, high in ranges for u in range(low, high + 1)} - present
        self.assertEqual({u for low, high in gone for u in range(low, high + 1)}, expected)
        self.assertEqual(gone, sorted(gone))
