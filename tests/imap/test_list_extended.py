"""
Tests for LIST-EXTENDED (RFC 5258), its SPECIAL-USE options (RFC 6154
§5.1) and LIST-STATUS (RFC 5819) in L{mailhub.imap.server}, driven through
a L{StringTransport} over the fakes of L{tests.imap.fakes}, and once over
a Maildir read back with the stdlib's C{mailbox.Maildir}.
"""

from __future__ import annotations

import mailbox
import os
from typing import Any

from twisted.mail.imap4 import IAccount
from zope.interface.verify import verifyObject

from mailhub.imap.mailbox import MaildirAccount
from tests.imap.fakes import FakeAccount, FakeMailbox
from tests.imap.test_mailbox import START, message, privateIndexes
from tests.imap import test_server
from tests.imap.test_server import MESSAGE, Harness, Pending, Recorder


class SubscriptionsAccount(FakeAccount):
    """
    A L{FakeAccount} that also lists its subscriptions, existing or not
    (the optional C{subscriptions()} of the backend).
    """

    def subscriptions(self) -> list[str]:
        return sorted(self.subscribed)


def untagged(out: bytes) -> list[bytes]:
    return [line for line in out.split(b"\r\n") if line.startswith(b"* ")]


class ListExtendedHarness(Harness):
    """
    Folders: INBOX, Sent (\\Sent), Sent/2026, Trash (\\Trash), Work,
    Work/Project; subscribed: INBOX, Sent/2026, Work/Project and Gone
    (which does not exist).
    """

    accountClass: Any = SubscriptionsAccount

    def setUp(self) -> None:
        super().setUp()
        account = self.accountClass()
        for name in ("Sent/2026", "Work", "Work/Project"):
            account.addMailbox(name)
        account.subscribed.update({"INBOX", "Sent/2026", "Work/Project", "Gone"})
        self.realm.accounts[b"alice"] = account
        self.login()


class CapabilityTests(ListExtendedHarness):
    def test_advertised(self) -> None:
        """
        CAPABILITY names LIST-EXTENDED and LIST-STATUS.
        """
        caps = self.send(b"a CAPABILITY\r\n").split(b"\r\n")[0].split()
        self.assertIn(b"LIST-EXTENDED", caps)
        self.assertIn(b"LIST-STATUS", caps)

    def test_accountProvidesIAccount(self) -> None:
        self.assertTrue(verifyObject(IAccount, self.account))


class SelectionTests(ListExtendedHarness):
    def test_basicListUnchanged(self) -> None:
        """
        The basic form says nothing of subscriptions and no STATUS.
        """
        out = self.send(b'a LIST "" *\r\n')
        self.assertNotIn(b"\\Subscribed", out)
        self.assertNotIn(b"STATUS", out)
        self.assertIn(b'* LIST (\\HasNoChildren) "/" "INBOX"', out)
        self.assertIn(b"a OK LIST completed", out)

    def test_remoteHasNoEffect(self) -> None:
        """
        REMOTE is accepted and lists what the basic form lists.
        """
        basic = untagged(self.send(b'a LIST "" *\r\n'))
        self.assertEqual(untagged(self.send(b'b LIST (REMOTE) "" *\r\n')), basic)
        self.assertEqual(untagged(self.send(b'c LIST () "" (*)\r\n')), basic)

    def test_returnSubscribed(self) -> None:
        """
        RETURN (SUBSCRIBED) marks the subscribed folders \\Subscribed and
        lists the others as before.
        """
        out = self.send(b'a LIST "" % RETURN (SUBSCRIBED)\r\n')
        self.assertEqual(
            untagged(out),
            [
                b'* LIST (\\HasNoChildren \\Subscribed) "/" "INBOX"',
                b'* LIST (\\Sent \\HasChildren) "/" "Sent"',
                b'* LIST (\\Trash \\HasNoChildren) "/" "Trash"',
                b'* LIST (\\HasChildren) "/" "Work"',
            ],
        )
        self.assertIn(b"a OK LIST completed", out)

    def test_selectSubscribed(self) -> None:
        """
        (SUBSCRIBED) lists only subscribed folders, each \\Subscribed, a
        subscribed name that does not exist as \\NonExistent.
        """
        out = self.send(b'a LIST (SUBSCRIBED) "" *\r\n')
        self.assertEqual(
            untagged(out),
            [
                b'* LIST (\\HasNoChildren \\Subscribed) "/" "INBOX"',
                b'* LIST (\\HasNoChildren \\Subscribed) "/" "Sent/2026"',
                b'* LIST (\\HasNoChildren \\Subscribed) "/" "Work/Project"',
                b'* LIST (\\NonExistent \\HasNoChildren \\Subscribed) "/" "Gone"',
            ],
        )

    def test_selectSubscribedWithoutSubscriptionList(self) -> None:
        """
        An account that cannot list its subscriptions still answers
        (SUBSCRIBED), from the folders that exist.
        """
        account = FakeAccount()
        account.subscribed.update({"INBOX", "Gone"})
        self.realm.accounts[b"alice"] = account
        self.login()
        out = self.send(b'a LIST (SUBSCRIBED) "" *\r\n')
        self.assertEqual(untagged(out), [b'* LIST (\\HasNoChildren \\Subscribed) "/" "INBOX"'])

    def test_recursiveMatch(self) -> None:
        """
        (SUBSCRIBED RECURSIVEMATCH): a parent that is not subscribed but
        has a subscribed descendant is listed with CHILDINFO; one without
        is not.
        """
        self.account.subscribed.update({"Work", "Ghost/Child"})
        out = self.send(b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" %\r\n')
        self.assertEqual(
            untagged(out),
            [
                b'* LIST (\\HasNoChildren \\Subscribed) "/" "INBOX"',
                b'* LIST (\\Sent \\HasChildren) "/" "Sent" ("CHILDINFO" ("SUBSCRIBED"))',
                b'* LIST (\\HasChildren \\Subscribed) "/" "Work" ("CHILDINFO" ("SUBSCRIBED"))',
                b'* LIST (\\NonExistent \\HasNoChildren \\Subscribed) "/" "Gone"',
                b'* LIST (\\NonExistent \\HasNoChildren) "/" "Ghost" ("CHILDINFO" ("SUBSCRIBED"))',
            ],
        )

    def test_recursiveMatchAlone(self) -> None:
        """
        RECURSIVEMATCH alone, or only with REMOTE, is BAD (RFC 5258 §3).
        """
        self.assertIn(b"a BAD", self.send(b'a LIST (RECURSIVEMATCH) "" *\r\n'))
        self.assertIn(b"b BAD", self.send(b'b LIST (RECURSIVEMATCH REMOTE) "" *\r\n'))

    def test_specialUse(self) -> None:
        """
        (SPECIAL-USE) lists the folders with a special-use attribute;
        with RECURSIVEMATCH also their parents (RFC 6154 §5.1).
        """
        self.account.mailboxes["Work/Archive"] = FakeMailbox(attributes=["\\Archive"])
        out = self.send(b'a LIST (SPECIAL-USE) "" * RETURN (SPECIAL-USE)\r\n')
        self.assertEqual(
            untagged(out),
            [
                b'* LIST (\\Sent \\HasChildren) "/" "Sent"',
                b'* LIST (\\Trash \\HasNoChildren) "/" "Trash"',
                b'* LIST (\\Archive \\HasNoChildren) "/" "Work/Archive"',
            ],
        )
        out = self.send(b'b LIST (SPECIAL-USE RECURSIVEMATCH) "" %\r\n')
        self.assertEqual(
            untagged(out),
            [
                b'* LIST (\\Sent \\HasChildren) "/" "Sent"',
                b'* LIST (\\Trash \\HasNoChildren) "/" "Trash"',
                b'* LIST (\\HasChildren) "/" "Work" ("CHILDINFO" ("SPECIAL-USE"))',
            ],
        )

    def test_multiplePatterns(self) -> None:
        """
        Several patterns: every folder matching any of them, once, with
        INBOX matched in any case.
        """
        out = self.send(b'a LIST "" (inbox "Work/*" Work*) RETURN (CHILDREN)\r\n')
        self.assertEqual(
            untagged(out),
            [
                b'* LIST (\\HasNoChildren) "/" "INBOX"',
                b'* LIST (\\HasChildren) "/" "Work"',
                b'* LIST (\\HasNoChildren) "/" "Work/Project"',
            ],
        )

    def test_reference(self) -> None:
        """
        The reference is prefixed to every pattern.
        """
        out = self.send(b'a LIST (SUBSCRIBED) "Work/" (% Nothing)\r\n')
        self.assertEqual(untagged(out), [b'* LIST (\\HasNoChildren \\Subscribed) "/" "Work/Project"'])

    def test_emptyPattern(self) -> None:
        """
        A lone empty pattern still asks for the delimiter.
        """
        out = self.send(b'a LIST () "" ("")\r\n')
        self.assertEqual(untagged(out), [b'* LIST (\\Noselect) "/" ""'])

    def test_badSyntax(self) -> None:
        """
        Unknown or malformed options are BAD, and nothing is listed.
        """
        for command in (
            b'LIST (FOO) "" *',
            b'LIST "" * RETURN (FOO)',
            b'LIST "" * RETURN (CHILDREN CHILDREN)',
            b'LIST "" * RETURN CHILDREN',
            b'LIST "" * FOO (CHILDREN)',
            b'LIST "" * RETURN (STATUS)',
            b'LIST "" * RETURN (STATUS ())',
            b'LIST "" * RETURN (STATUS (MESSAGES BOGUS))',
            b'LIST "" ()',
            b'LIST (SUBSCRIBED) ""',
            b'LIST "" * RETURN',
        ):
            out = self.send(b"x " + command + b"\r\n")
            self.assertEqual(untagged(out), [], command)
            self.assertTrue(out.startswith(b"x BAD"), (command, out))

    def test_lsubUnchanged(self) -> None:
        """
        LSUB keeps its basic form: extended arguments are BAD.
        """
        out = self.send(b'a LSUB "" *\r\n')
        self.assertIn(b'* LSUB (\\HasNoChildren) "/" "Work/Project"', out)
        self.assertNotIn(b"Gone", out)
        self.assertIn(b"b BAD", self.send(b'b LSUB (SUBSCRIBED) "" *\r\n'))


class ListStatusTests(ListExtendedHarness):
    def setUp(self) -> None:
        super().setUp()
        inbox = self.account.mailboxes["INBOX"]
        inbox.add(MESSAGE, ["\\Seen"])
        inbox.add(MESSAGE)
        self.account.mailboxes["Trash"].add(MESSAGE)

    def test_statusAfterEachList(self) -> None:
        """
        RETURN (STATUS (...)): each selectable folder's LIST line is
        followed by its STATUS (RFC 5819 §2); a \\NonExistent one has none.
        """
        out = self.send(b'a LIST (SUBSCRIBED) "" * RETURN (STATUS (MESSAGES UNSEEN UIDNEXT))\r\n')
        self.assertEqual(
            untagged(out),
            [
                b'* LIST (\\HasNoChildren \\Subscribed) "/" "INBOX"',
                b'* STATUS "INBOX" (MESSAGES 2 UNSEEN 1 UIDNEXT 3)',
                b'* LIST (\\HasNoChildren \\Subscribed) "/" "Sent/2026"',
                b'* STATUS "Sent/2026" (MESSAGES 0 UNSEEN 0 UIDNEXT 1)',
                b'* LIST (\\HasNoChildren \\Subscribed) "/" "Work/Project"',
                b'* STATUS "Work/Project" (MESSAGES 0 UNSEEN 0 UIDNEXT 1)',
                b'* LIST (\\NonExistent \\HasNoChildren \\Subscribed) "/" "Gone"',
            ],
        )
        self.assertIn(b"a OK LIST completed", out)

    def test_noStatusForNoselect(self) -> None:
        """
        A \\Noselect folder gets no STATUS, and is not opened.
        """
        self.account.mailboxes["Work"].attributes = ["\\Noselect"]
        opened: list[str] = []
        select = self.account.select
        self.account.select = lambda name, rw=True: (opened.append(name), select(name, rw))[1]  # type: ignore[method-assign]
        out = self.send(b'a LIST "" Work RETURN (STATUS (MESSAGES))\r\n')
        self.assertEqual(untagged(out), [b'* LIST (\\Noselect \\HasChildren) "/" "Work"'])
        self.assertEqual(opened, [])

    def test_statusReadsLikeStatus(self) -> None:
        """
        STATUS is read with C{requestStatus} of each folder, opened
        read-only and closed again; no message is fetched.
        """
        calls: list[tuple[str, bool]] = []
        select = self.account.select
        self.account.select = lambda name, rw=True: (calls.append((name, rw)), select(name, rw))[1]  # type: ignore[method-assign]
        out = self.send(b'a LIST "" (INBOX Trash) RETURN (STATUS (MESSAGES RECENT UIDVALIDITY))\r\n')
        self.assertIn(b'* STATUS "INBOX" (MESSAGES 2 RECENT 0 UIDVALIDITY 42)', out)
        self.assertIn(b'* STATUS "Trash" (MESSAGES 1 RECENT 0 UIDVALIDITY 42)', out)
        self.assertEqual(calls, [("INBOX", False), ("Trash", False)])
        for name in ("INBOX", "Trash"):
            self.assertEqual(self.account.mailboxes[name].fetched, 0)
            self.assertEqual(self.account.mailboxes[name].closed, 1)

    def test_statusFails(self) -> None:
        """
        A folder whose STATUS cannot be read is listed without it, and the
        command succeeds (RFC 5819 §2).
        """

        def broken(names: Any) -> dict:
            raise OSError("disk on fire")

        self.account.mailboxes["Trash"].requestStatus = broken  # type: ignore[method-assign]
        out = self.send(b'a LIST "" (Trash INBOX) RETURN (STATUS (MESSAGES))\r\n')
        self.assertEqual(
            untagged(out),
            [
                b'* LIST (\\HasNoChildren) "/" "INBOX"',
                b'* STATUS "INBOX" (MESSAGES 2)',
                b'* LIST (\\Trash \\HasNoChildren) "/" "Trash"',
            ],
        )
        self.assertIn(b"a OK LIST completed", out)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertEqual(self.account.mailboxes["Trash"].closed, 1)

    def test_folderGoneBeforeStatus(self) -> None:
        """
        A folder that cannot be selected any more when its STATUS is read
        is listed \\Noselect, without STATUS (RFC 5819 §2).
        """
        select = self.account.select
        self.account.select = lambda name, rw=True: None if name == "Trash" else select(name, rw)  # type: ignore[method-assign]
        out = self.send(b'a LIST "" Trash RETURN (STATUS (MESSAGES))\r\n')
        self.assertEqual(untagged(out), [b'* LIST (\\Trash \\HasNoChildren \\Noselect) "/" "Trash"'])

    def test_highestModSeqEnablesCondstore(self) -> None:
        """
        HIGHESTMODSEQ is a STATUS item here too (RFC 7162 §3.1.7): 0 for a
        folder without mod-sequences, and CONDSTORE is on.
        """
        out = self.send(b'a LIST "" INBOX RETURN (STATUS (HIGHESTMODSEQ))\r\n')
        self.assertIn(b'* STATUS "INBOX" (HIGHESTMODSEQ 0)', out)
        self.assertTrue(self.proto.condstore)

    def test_selectedMailbox(self) -> None:
        """
        The selected folder's STATUS comes from the same backend object,
        which stays open.
        """
        self.assertIn(b"s OK", self.send(b"s SELECT INBOX\r\n"))
        out = self.send(b'a LIST "" INBOX RETURN (STATUS (MESSAGES))\r\n')
        self.assertIn(b'* STATUS "INBOX" (MESSAGES 2)', out)
        self.assertEqual(self.account.mailboxes["INBOX"].closed, 0)
        self.assertIn(b"* 1 FETCH", self.send(b"f FETCH 1 FLAGS\r\n"))


class BlockingListTests(ListExtendedHarness):
    def test_backendOnlyThroughRunBlocking(self) -> None:
        """
        Listing, subscriptions and every folder's STATUS reach the backend
        only through C{runBlocking}.
        """
        recorder = Recorder()
        self.factory = self.makeFactory(runBlocking=recorder)
        self.login()
        account = self.account
        outside = test_server.BlockingTests.guard(self, recorder, account, "select", "listMailboxes", "subscriptions", "isSubscribed")  # type: ignore[arg-type]
        for mbox in account.mailboxes.values():
            outside += test_server.BlockingTests.guard(self, recorder, mbox, "requestStatus", "close", "getFlags")  # type: ignore[arg-type]
        del recorder.calls[:]
        out = self.send(b'a LIST (SUBSCRIBED) "" * RETURN (CHILDREN STATUS (MESSAGES))\r\n')
        self.assertIn(b'* STATUS "Work/Project" (MESSAGES 0)', out)
        self.assertIn(b"a OK LIST completed", out)
        self.assertIn("_status", recorder.calls)
        self.assertEqual(outside, [])

    def test_replyWaitsForTheWork(self) -> None:
        """
        Nothing of the response is sent before the blocking work is done.
        """
        pending = Pending()
        self.factory = self.makeFactory(runBlocking=pending)
        self.connect()
        self.assertIn(b"a OK", self.send(b"a STARTTLS\r\n"))
        self.proto.dataReceived(b"b LOGIN alice secret\r\n")
        pending.runAll()
        self.transport.clear()
        self.proto.dataReceived(b'c LIST "" INBOX RETURN (STATUS (MESSAGES))\r\n')
        self.assertEqual(self.transport.value(), b"")
        self.assertTrue(pending.waiting)
        pending.runAll()
        self.assertEqual(
            self.transport.value(),
            b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n* STATUS "INBOX" (MESSAGES 0)\r\nc OK LIST completed\r\n',
        )


class MaildirListStatusTests(Harness):
    """
    Over a real Maildir: the counts LIST-STATUS gives agree with the
    stdlib's C{mailbox.Maildir}.
    """

    def test_maildir(self) -> None:
        root = self.mktemp()
        account = MaildirAccount(root, clock=self.clock, indexFor=privateIndexes(self.clock))
        for n in range(3):
            name = f"{START + n}.M{n}P1Q1.mx.example.org:2,{'S' if n == 0 else ''}"
            with open(os.path.join(root, "cur", name), "wb") as f:
                f.write(message(n))
        account.subscribe("Gone")
        self.realm.accounts[b"alice"] = account
        self.login()
        out = self.send(b'a LIST (SUBSCRIBED) "" (INBOX Gone) RETURN (STATUS (MESSAGES UNSEEN))\r\n')
        inbox = mailbox.Maildir(root, factory=None, create=False)
        unseen = sum(1 for m in inbox if "S" not in m.get_flags())
        self.assertIn(b'* STATUS "INBOX" (MESSAGES %d UNSEEN %d)' % (len(inbox), unseen), out)
        self.assertIn(b'\\NonExistent', out)
        self.assertNotIn(b'* STATUS "Gone"', out)
        self.assertIn(b"a OK LIST completed", out)
        self.assertIn("Gone", account.subscriptions())
