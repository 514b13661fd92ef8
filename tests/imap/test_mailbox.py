"""
Tests for L{mailhub.imap.mailbox}: the IMAP account and mailboxes over
Maildir++.
"""

from __future__ import annotations

import io
import os

from twisted.internet.task import Clock
from twisted.mail import imap4
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mailhub.fs import FileSystem
from mailhub.imap.mailbox import (
    InvalidSearch,
    MailboxInfo,
    MaildirAccount,
    MaildirIMAPMailbox,
    parseInternalDate,
)
from mailhub.imap import mailbox as mailboxModule
from mailhub.imap.message import nestedList
from mailhub.imap.search import parseSearch
from mailhub.maildir import index as indexModule
from mailhub.maildir.index import FolderIndex

HOST = "mx.example.org"
START = 1_700_000_000


def message(n: int, subject: str | None = None) -> bytes:
    return (
        b"From: Alice <alice@example.org>\r\n"
        b"To: bob@example.net\r\n"
        b"Subject: %s\r\n"
        b"X-Number: %d\r\n"
        b"\r\n"
        b"body number %d\r\n" % ((subject or f"message {n}").encode(), n, n)
    )


@implementer(imap4.IMailboxListener)
class RecordingListener:
    """
    An C{IMailboxListener} (with mailhub's optional expunge event) that
    records what it hears.
    """

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def modeChanged(self, writeable):
        self.events.append(("mode", writeable))

    def flagsChanged(self, newFlags):
        self.events.append(("flags", newFlags))

    def newMessages(self, exists, recent):
        self.events.append(("new", exists, recent))

    def messagesExpunged(self, seqs):
        self.events.append(("expunged", seqs))


class RecordingFileSystem(FileSystem):
    def __init__(self) -> None:
        self.opened: list[str] = []

    def openRead(self, path: str) -> int:
        self.opened.append(path)
        return super().openRead(path)


def privateIndexes(clock, fs=None):
    """
    An C{indexFor} giving each account its own index: another process.
    """
    return lambda path: FolderIndex(path, fs, clock, hostname=HOST)


class AccountTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = self.mktemp()
        self.clock = Clock()
        self.clock.advance(START)
        self.account = MaildirAccount(self.root, clock=self.clock, indexFor=privateIndexes(self.clock))

    def test_interfaces(self) -> None:
        verifyObject(imap4.IAccount, self.account)
        verifyObject(imap4.INamespacePresenter, self.account)
        verifyObject(imap4.IMailboxInfo, MailboxInfo(["\\HasNoChildren"]))
        verifyObject(imap4.IMailboxListener, RecordingListener())

    def test_defaults(self) -> None:
        """
        The first login makes INBOX and the special-use folders, subscribed.
        """
        listed = dict(self.account.listMailboxes("", "*"))
        self.assertEqual(sorted(listed), ["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"])
        self.assertIn("\\Sent", listed["Sent"].getFlags())
        self.assertIn("\\HasNoChildren", listed["INBOX"].getFlags())
        self.assertEqual(listed["Sent"].getHierarchicalDelimiter(), "/")
        self.assertTrue(self.account.isSubscribed("INBOX"))
        self.assertTrue(self.account.isSubscribed("Trash"))

    def test_listWildcards(self) -> None:
        self.account.create("Archive/2026/")
        self.account.create("Work/Projects")
        everything = dict(self.account.listMailboxes("", "*"))
        self.assertIn("\\HasChildren", everything["Archive"].getFlags())
        self.assertIn("\\Noselect", everything["Work"].getFlags())
        top = [name for name, _ in self.account.listMailboxes("", "%")]
        self.assertNotIn("Archive/2026", top)
        self.assertIn("Archive", top)
        self.assertEqual([n for n, _ in self.account.listMailboxes("Archive/", "%")], ["Archive/2026"])
        self.assertEqual([n for n, _ in self.account.listMailboxes("", "inbox")], ["INBOX"])
        self.assertEqual([n for n, _ in self.account.listMailboxes(b"", b"Arch*")], ["Archive", "Archive/2026"])
        self.assertEqual([n for n, _ in self.account.listMailboxes("", "archive")], [])
        self.assertEqual([n for n, _ in self.account.listMailboxes("", "Arch")], [])

    def test_createDeleteRename(self) -> None:
        self.assertTrue(self.account.create("Projects"))
        self.assertRaises(imap4.MailboxCollision, self.account.create, "Projects")
        self.assertRaises(imap4.MailboxException, self.account.create, "../escape")
        self.assertTrue(self.account.rename("Projects", "Old"))
        self.assertIsNone(self.account.select("Projects"))
        self.assertIsNotNone(self.account.select("Old"))
        self.assertTrue(self.account.delete("Old"))
        self.assertIsNone(self.account.select("Old"))
        self.assertRaises(imap4.MailboxException, self.account.delete, "Old")
        self.assertRaises(imap4.MailboxException, self.account.delete, "INBOX")

    def test_subscriptions(self) -> None:
        self.account.subscribe("Later")
        self.assertTrue(self.account.isSubscribed("Later"))
        self.account.unsubscribe("Later")
        self.assertFalse(self.account.isSubscribed("Later"))
        self.assertRaises(imap4.MailboxException, self.account.unsubscribe, "Later")
        self.assertFalse(self.account.isSubscribed("../x"))

    def test_select(self) -> None:
        inbox = self.account.select("inbox")
        self.assertEqual(inbox.name, "INBOX")
        self.assertTrue(inbox.isWriteable())
        self.assertFalse(self.account.select("INBOX", 0).isWriteable())
        self.assertIsNone(self.account.select("Missing"))
        self.assertIsNone(self.account.select("a/../b"))
        self.assertEqual(self.account.select("Sent").specialUse, "\\Sent")
        self.assertEqual(self.account.select("Entw&APw-rfe".encode()), None)
        self.account.create("Entwürfe")
        self.assertEqual(self.account.select("Entw&APw-rfe".encode()).name, "Entwürfe")


class MailboxTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = self.mktemp()
        self.clock = Clock()
        self.clock.advance(START)
        self.fs = RecordingFileSystem()
        self.account = MaildirAccount(self.root, clock=self.clock, indexFor=privateIndexes(self.clock, self.fs))
        self.delivered = 0

    def deliver(self, content: bytes | None = None, folder: str = "") -> str:
        self.delivered += 1
        if content is None:
            content = message(self.delivered)
        base = f"{START + self.delivered}.M{self.delivered}P1Q1.{HOST},S={len(content)},W={len(content)}"
        with open(os.path.join(self.root, folder, "new", base), "wb") as f:
            f.write(content)
        return base

    def other(self) -> MaildirAccount:
        """
        The same user's account in another process (its own index).
        """
        return MaildirAccount(self.root, clock=self.clock, indexFor=privateIndexes(self.clock))

    def test_interfaces(self) -> None:
        self.deliver()
        inbox = self.account.select("INBOX")
        for interface in (imap4.IMailbox, imap4.ISearchableMailbox, imap4.IMessageCopier, imap4.ICloseableMailbox):
            verifyObject(interface, inbox)
        [(seq, msg)] = list(inbox.fetch(imap4.MessageSet(1), False))
        verifyObject(imap4.IMessage, msg)
        verifyObject(imap4.IMessageFile, msg)
        verifyObject(imap4.IMessagePart, msg)

    def test_select(self) -> None:
        """
        SELECT sees the messages; those in C{new/} are \\Recent to it and
        moved into C{cur/}; a second session does not see them \\Recent.
        """
        for _ in range(3):
            self.deliver()
        inbox = self.account.select("INBOX")
        self.assertEqual(inbox.getMessageCount(), 3)
        self.assertEqual(inbox.getRecentCount(), 3)
        self.assertEqual(inbox.getUnseenCount(), 3)
        self.assertEqual(inbox.firstUnseen(), 1)
        self.assertEqual(inbox.getUIDNext(), 4)
        self.assertEqual(os.listdir(os.path.join(self.root, "new")), [])
        self.assertIn("\\Seen", inbox.getFlags())
        second = self.other().select("INBOX")
        self.assertEqual(second.getRecentCount(), 0)
        self.assertEqual(second.getUIDValidity(), inbox.getUIDValidity())
        self.assertEqual(
            inbox.requestStatus(["MESSAGES", "UIDNEXT", "UNSEEN", "RECENT"]),
            {"MESSAGES": 3, "UIDNEXT": 4, "UNSEEN": 3, "RECENT": 3},
        )

    def test_examineChangesNothing(self) -> None:
        """
        EXAMINE is read-only: STORE, EXPUNGE and APPEND are refused and the
        files stay where they are.
        """
        base = self.deliver()
        inbox = self.account.select("INBOX", 0)
        self.assertEqual(inbox.getRecentCount(), 1)
        self.assertEqual(os.listdir(os.path.join(self.root, "new")), [base])
        self.assertRaises(imap4.ReadOnlyMailbox, inbox.store, imap4.MessageSet(1), ["\\Seen"], 1, False)
        self.assertRaises(imap4.ReadOnlyMailbox, inbox.expunge)
        self.failureResultOf(inbox.addMessage(io.BytesIO(message(5)), [], None), imap4.ReadOnlyMailbox)
        self.assertEqual(os.listdir(os.path.join(self.root, "new")), [base])
        self.assertEqual(os.listdir(os.path.join(self.root, "cur")), [])

    def test_fetch(self) -> None:
        for _ in range(5):
            self.deliver()
        inbox = self.account.select("INBOX")
        inbox.expungeUIDs([2])  # UIDs 1, 3, 4, 5 remain
        fetched = [(seq, m.getUID()) for seq, m in inbox.fetch(imap4.parseIdList(b"2:*"), False)]
        self.assertEqual(fetched, [(2, 3), (3, 4), (4, 5)])
        fetched = [(seq, m.getUID()) for seq, m in inbox.fetch(imap4.parseIdList(b"2:4,9"), True)]
        self.assertEqual(fetched, [(2, 3), (3, 4)])
        # RFC 3501 §6.4.8: "UID 9:*" is the last message even when 9 > UIDNEXT.
        fetched = [(seq, m.getUID()) for seq, m in inbox.fetch(imap4.parseIdList(b"9:*"), True)]
        self.assertEqual(fetched, [(4, 5)])
        [(seq, msg)] = inbox.fetch(imap4.MessageSet(1), False)
        self.assertEqual(msg.getSize(), len(message(1)))
        self.assertEqual(msg.getFlags(), ["\\Recent"])
        self.assertEqual(msg.getInternalDate(), "Tue, 14 Nov 2023 22:13:21 GMT")
        self.assertEqual(msg.getHeaders(False, "subject", "TO"), {"subject": "message 1", "to": "bob@example.net"})
        self.assertNotIn("subject", msg.getHeaders(True, "Subject"))
        self.assertEqual(msg.getBodyFile().read(), b"body number 1\r\n")
        self.assertEqual(msg.open().read(), message(1))
        self.assertFalse(msg.isMultipart())
        self.assertEqual(msg.envelope()[1], b"message 1")
        self.assertEqual(msg.envelopeText(), nestedList(msg.envelope()))
        self.assertEqual(msg.bodyStructure()[:2], [b"TEXT", b"PLAIN"])

    def test_multipart(self) -> None:
        content = (
            b"Subject: parts\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
            b"--XX\r\nContent-Type: text/plain\r\n\r\none\r\n"
            b"--XX\r\nContent-Type: text/html\r\n\r\n<b>two</b>\r\n--XX--\r\n"
        )
        self.deliver(content)
        inbox = self.account.select("INBOX")
        [(_, msg)] = inbox.fetch(imap4.MessageSet(1), False)
        self.assertTrue(msg.isMultipart())
        part = msg.getSubPart(1)
        verifyObject(imap4.IMessagePart, part)
        self.assertEqual(part.getHeaders(False, "content-type"), {"content-type": "text/html"})
        self.assertEqual(part.getBodyFile().read(), b"<b>two</b>")
        self.assertRaises(IndexError, msg.getSubPart, 5)

    def test_fetchReadsOnlyWhatIsAsked(self) -> None:
        """
        FETCH of three messages out of 1,000 opens only those three files;
        flags, sizes, UIDs and dates open none.
        """
        for _ in range(1000):
            self.deliver()
        inbox = self.account.select("INBOX")
        del self.fs.opened[:]
        for seq, msg in inbox.fetch(imap4.parseIdList(b"1:*"), False):
            msg.getUID(), msg.getFlags(), msg.getSize(), msg.getInternalDate()
        self.assertEqual(self.fs.opened, [])
        for seq, msg in inbox.fetch(imap4.parseIdList(b"10,500,999"), False):
            msg.getHeaders(True)
            msg.getBodyFile()
        opened = {os.path.basename(p).split(":")[0] for p in self.fs.opened if "/cur/" in p or "/new/" in p}
        expected = {os.path.basename(inbox.index.path(inbox.getUID(n))).split(":")[0] for n in (10, 500, 999)}
        self.assertEqual(opened, expected)

    def test_store(self) -> None:
        for _ in range(3):
            self.deliver()
        inbox = self.account.select("INBOX")
        self.assertEqual(
            inbox.store(imap4.parseIdList(b"1:2"), ["\\Seen", "$Label1"], 1, False),
            {1: ["\\Seen", "$Label1", "\\Recent"], 2: ["\\Seen", "$Label1", "\\Recent"]},
        )
        self.assertEqual(inbox.store(imap4.MessageSet(2), ["\\Seen"], -1, False), {2: ["$Label1", "\\Recent"]})
        self.assertEqual(inbox.store(imap4.MessageSet(3), [b"\\Flagged"], 0, True), {3: ["\\Flagged", "\\Recent"]})
        self.assertEqual(inbox.getUnseenCount(), 2)
        self.assertIn("$Label1", inbox.getFlags())
        # Another process sees the flags.
        other = self.other().select("INBOX")
        [(_, msg)] = other.fetch(imap4.MessageSet(1), False)
        self.assertEqual(msg.getFlags(), ["\\Seen", "$Label1"])

    def test_expunge(self) -> None:
        for _ in range(5):
            self.deliver()
        inbox = self.account.select("INBOX")
        inbox.store(imap4.parseIdList(b"2,4:5"), ["\\Deleted"], 1, False)
        self.assertEqual(inbox.expunge(), [2, 3, 3])
        self.assertEqual(inbox.getMessageCount(), 2)
        self.assertEqual([m.getUID() for _, m in inbox.fetch(imap4.parseIdList(b"1:*"), False)], [1, 3])
        self.assertEqual(len(os.listdir(os.path.join(self.root, "cur"))), 2)
        self.assertEqual(inbox.refresh().expunged, ())

    def test_append(self) -> None:
        inbox = self.account.select("INBOX")
        uid = self.successResultOf(inbox.addMessage(io.BytesIO(b"Subject: a\n\nb\n"), ["\\Seen", "Work"], "17-Jul-1996 02:44:25 -0700"))
        self.assertEqual(uid, 1)
        self.assertEqual(inbox.getMessageCount(), 0)  # until refresh
        changes = inbox.refresh()
        self.assertEqual(changes.exists, 1)
        [(_, msg)] = inbox.fetch(imap4.MessageSet(1), False)
        self.assertEqual(msg.getFlags(), ["\\Seen", "Work"])
        self.assertEqual(msg.getInternalDate(), "Wed, 17 Jul 1996 09:44:25 GMT")
        self.assertEqual(msg.open().read(), b"Subject: a\r\n\r\nb\r\n")
        self.assertEqual(msg.getSize(), 17)
        self.failureResultOf(inbox.addMessage(io.BytesIO(b"x"), [], "not a date"), ValueError)

    def test_parseInternalDate(self) -> None:
        self.assertEqual(parseInternalDate(None, 5.0), 5.0)
        self.assertEqual(parseInternalDate(b" 1-Jan-2000 00:00:00 +0000", 0), 946684800.0)
        self.assertEqual(parseInternalDate("Sat, 01 Jan 2000 01:00:00 +0100", 0), 946684800.0)

    def test_copy(self) -> None:
        """
        COPY through C{IMessageCopier} hard-links the file with its flags;
        L{MaildirIMAPMailbox.copyMessages} pairs the UIDs for COPYUID.
        """
        self.deliver()
        self.deliver()
        inbox = self.account.select("INBOX")
        inbox.store(imap4.MessageSet(1), ["\\Flagged"], 1, False)
        archive = self.account.select("Archive")
        [(_, msg)] = inbox.fetch(imap4.MessageSet(1), False)
        self.assertEqual(archive.copy(msg), 1)
        self.assertEqual(archive.copyMessages(inbox, imap4.parseIdList(b"1:2"), False), [(1, 2), (2, 3)])
        archive.refresh()
        self.assertEqual(archive.getMessageCount(), 3)
        [(_, copied)] = archive.fetch(imap4.MessageSet(1), False)
        self.assertEqual(copied.getFlags(), ["\\Flagged"])
        self.assertEqual(copied.open().read(), message(1))
        self.assertRaises(imap4.ReadOnlyMailbox, self.account.select("Archive", 0).copy, msg)

    def test_copyForeignMessage(self) -> None:
        """
        A message that is not ours is appended from its bytes.
        """
        foreign = _ForeignMessage()
        archive = self.account.select("Archive")
        self.assertEqual(archive.copy(foreign), 1)
        archive.refresh()
        [(_, copied)] = archive.fetch(imap4.MessageSet(1), False)
        self.assertEqual(copied.open().read(), b"Subject: foreign\r\n\r\nhi\r\n")
        self.assertEqual(copied.getFlags(), ["\\Seen"])

    def test_search(self) -> None:
        self.deliver(message(1, "hello world"))
        self.deliver(message(2, "other"))
        self.deliver(message(3, "=?utf-8?q?Hello_again?="))
        inbox = self.account.select("INBOX")
        inbox.store(imap4.MessageSet(2), ["\\Seen"], 1, False)
        self.assertEqual(inbox.search([b"SUBJECT", b"hello"]), [1, 3])
        self.assertEqual(inbox.search([b"UNSEEN", b"NOT", [b"SUBJECT", b"again"]], uid=True), [1])
        self.assertEqual(inbox.search(imap4.parseNestedParens(b"OR SEEN (BODY \"number 3\")")), [2, 3])
        self.assertEqual(inbox.search(parseSearch(["HEADER", "X-Number", "2"])), [2])
        self.assertEqual(inbox.search([b"CHARSET", b"UTF-8", b"2:3"]), [2, 3])
        self.assertEqual(inbox.searchUIDs([b"UID", b"2:*"]), [2, 3])
        error = self.assertRaises(InvalidSearch, inbox.search, [b"BOGUS"])
        self.assertIsInstance(error, imap4.IllegalQueryError)
        error = self.assertRaises(InvalidSearch, inbox.search, [b"CHARSET", b"KOI8-R", b"ALL"])
        self.assertEqual(error.code, "BADCHARSET")

    def test_searchUsesSideStore(self) -> None:
        """
        A second SUBJECT search reads no message file.
        """
        for n in range(20):
            self.deliver()
        inbox = self.account.select("INBOX")
        self.assertEqual(inbox.search([b"SUBJECT", b"message 7"]), [7])
        del self.fs.opened[:]
        self.assertEqual(inbox.search([b"FROM", b"alice"]), list(range(1, 21)))
        self.assertEqual([p for p in self.fs.opened if "/cur/" in p or "/new/" in p], [])

    def test_searchHeadersInMemory(self) -> None:
        """
        A warm header search takes the SEARCH fields from the index's
        memory: no JSON parsed per message, no side store read; a message
        delivered since is computed once and found.
        """
        for n in range(20):
            self.deliver()
        inbox = self.account.select("INBOX")
        self.assertEqual(inbox.search([b"SUBJECT", b"message 7"]), [7])
        self.assertEqual(inbox.search([b"FROM", b"alice"]), list(range(1, 21)))
        loads = []
        realLoads = indexModule.json.loads
        self.patch(indexModule.json, "loads", lambda *a, **k: (loads.append(1), realLoads(*a, **k))[1])
        self.assertEqual(inbox.search([b"OR", b"SUBJECT", b"message 7", b"TO", b"nobody"]), [7])
        self.assertEqual(inbox.searchUIDs([b"NOT", b"CC", b"x", b"SUBJECT", b"MESSAGE 1"]), [1] + list(range(10, 20)))
        self.assertEqual(loads, [])
        self.deliver(message(21, "late arrival"))
        inbox.refresh()
        self.assertEqual(inbox.search([b"SUBJECT", b"late"]), [21])
        self.assertEqual(inbox.search([b"SUBJECT", b"late"]), [21])

    def test_searchNarrowedByHeaderColumns(self) -> None:
        """
        A header key the search requires is first looked up in the whole
        in-memory column at once; only the messages that may match are
        looked at one by one, and the answers are those of the full test:
        encoded words, 8-bit octets and repeated fields are always looked
        at, a message without cached fields yet too.
        """
        subjects = [
            b"Hello world",
            b"say HELLO",
            b"nothing here",
            b"=?utf-8?q?H=C3=A9llo_there?=",
            b"=?utf-8?q?hello?=",
            "caf\u00e9 hello".encode("utf-8"),
            b"hel\r\n lo folded",
            b"plain",
        ]
        for n, subject in enumerate(subjects, 1):
            self.deliver(message(n).replace(b"message %d" % n, subject))
        self.deliver(message(9).replace(b"Subject: message 9", b"Subject: first\r\nSubject: hello again"))
        inbox = self.account.select("INBOX")
        queries = [
            [b"SUBJECT", b"hello"],
            [b"SUBJECT", b"HeLLo"],
            [b"SUBJECT", b"h\xc3\xa9llo"],
            [b"SUBJECT", b"hel lo"],
            [b"SUBJECT", b""],
            [b"SUBJECT", b"hello", b"FROM", b"alice"],
            [b"OR", b"SUBJECT", b"plain", b"SUBJECT", b"nothing"],
            [b"NOT", b"SUBJECT", b"hello"],
            [b"HEADER", b"X-Number", b"3"],
            [b"2:4", b"SUBJECT", b"o"],
        ]
        looked: list[int] = []
        realView = mailboxModule._SearchView

        def counting(mailbox, seq, *rest):
            looked.append(seq)
            return realView(mailbox, seq, *rest)

        self.patch(mailboxModule, "_SearchView", counting)
        self.assertEqual(inbox.search([b"SUBJECT", b"hello"]), [1, 2, 5, 6, 9])
        self.deliver(message(10, "late hello"))  # no cached fields yet
        inbox.refresh()
        found = [inbox.search(query) for query in queries]
        self.assertEqual(found[0], [1, 2, 5, 6, 9, 10])
        # The full test, one message at a time (nothing narrowed), agrees.
        undo = self.patchedCandidates(inbox)
        self.assertEqual([inbox.search(query) for query in queries], found)
        undo.restore()
        del looked[:]
        self.assertEqual(inbox.search([b"SUBJECT", b"plain"]), [8])
        # Message 8, and those the column cannot judge: encoded words, 8-bit
        # octets, the repeated field.
        self.assertEqual(looked, [4, 5, 6, 8, 9])

    def patchedCandidates(self, inbox: MaildirIMAPMailbox):
        """
        Make C{inbox}'s index narrow nothing until C{restore()}.
        """
        index = inbox.index
        real = index.headerCandidates
        index.headerCandidates = lambda name, value: None

        class Undo:
            def restore(self) -> None:
                index.headerCandidates = real

        return Undo()

    def test_listenersHearAnotherProcess(self) -> None:
        """
        After a refresh, listeners hear of another process's APPEND, STORE
        and EXPUNGE, and of a delivery (which is \\Recent here).
        """
        self.deliver()
        self.deliver()
        inbox = self.account.select("INBOX")
        listener = RecordingListener()
        inbox.addListener(listener)
        other = self.other().select("INBOX")
        self.assertEqual(inbox.refresh(), type(inbox.refresh())())
        other.append(message(10), ["\\Draft"])
        inbox.refresh()
        self.assertEqual(listener.events, [("new", 3, 2)])
        other.refresh()
        other.store(imap4.MessageSet(2), ["\\Seen"], 1, False)
        other.store(imap4.MessageSet(1), ["\\Deleted"], 1, False)
        other.expunge()
        del listener.events[:]
        inbox.refresh()
        self.assertEqual(
            listener.events,
            [("expunged", [1]), ("new", 2, 1), ("flags", {1: ["\\Seen", "\\Recent"]})],
        )
        del listener.events[:]
        self.deliver()
        inbox.refresh()
        self.assertEqual(listener.events, [("new", 3, 2)])
        inbox.removeListener(listener)
        self.assertRaises(ValueError, inbox.removeListener, listener)

    def test_sessionsSharingAnIndex(self) -> None:
        """
        Two sessions of one process share the index; a session does not
        hear its own STORE back.
        """
        self.deliver()
        account = MaildirAccount(self.root, clock=self.clock)
        first, second = account.select("INBOX"), account.select("INBOX")
        self.assertIs(first.index, second.index)
        self.assertIs(first._uids, second._uids)
        first.store(imap4.MessageSet(1), ["\\Answered"], 1, False)
        self.assertEqual(first.refresh().flags, {})
        self.assertEqual(second.refresh().flags, {1: ["\\Answered"]})
        second.store(imap4.MessageSet(1), ["\\Deleted"], 1, False)
        self.assertEqual(second.expunge(), [1])
        changes = first.refresh()
        self.assertEqual(changes.expunged, (1,))
        self.assertEqual(changes.exists, 0)
        first.close()
        second.close()

    def test_messageGoneMeanwhile(self) -> None:
        """
        A message another process expunged is left out of a STORE result;
        reading it raises L{MessageGone} until the session refreshes.
        """
        from mailhub.maildir.index import MessageGone

        self.deliver()
        inbox = self.account.select("INBOX")
        other = self.other().select("INBOX")
        other.store(imap4.MessageSet(1), ["\\Deleted"], 1, False)
        other.expunge()
        self.assertEqual(inbox.store(imap4.MessageSet(1), ["\\Seen"], 1, False), {})
        [(_, msg)] = inbox.fetch(imap4.MessageSet(1), False)
        self.assertRaises(MessageGone, msg.open)
        self.assertEqual(inbox.refresh().expunged, (1,))


@implementer(imap4.IMessage, imap4.IMessageFile)
class _ForeignMessage:
    def getUID(self):
        return 7

    def getFlags(self):
        return ["\\Seen"]

    def getInternalDate(self):
        return "Sat, 01 Jan 2000 00:00:00 +0000"

    def getHeaders(self, negate, *names):
        return {}

    def getBodyFile(self):
        return io.BytesIO(b"hi\r\n")

    def getSize(self):
        return 24

    def isMultipart(self):
        return False

    def getSubPart(self, part):
        raise TypeError()

    def open(self):
        return io.BytesIO(b"Subject: foreign\n\nhi\n")


class ForeignMessageTests(SynchronousTestCase):
    def test_interfaces(self) -> None:
        verifyObject(imap4.IMessage, _ForeignMessage())
        verifyObject(imap4.IMessageFile, _ForeignMessage())
