"""
Tests for L{mailhub.auth.realm} and the submission avatar
L{mailhub.smtp.delivery.SubmissionDelivery}.
"""

from __future__ import annotations

import os

from typing import Any

from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.mail.imap4 import IAccount
from twisted.mail.pop3 import IMailbox
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mailhub.address import parsePath
from mailhub.auth.realm import MailhubRealm, avatarAddress
from mailhub.directory import Directory, MaildirMailboxes
from mailhub.envelope import Session
from mailhub.errors import DeliveryError
from mailhub.maildir.delivery import Committer
from mailhub.maildir.names import UniqueNames
from mailhub.smtp.delivery import IMailDelivery, SubmissionDelivery


class RealmTests(SynchronousTestCase):
    """
    L{MailhubRealm} builds one avatar per protocol.
    """

    def setUp(self) -> None:
        self.made: list[tuple[str, str]] = []
        self.released = 0

        class Mailbox:
            def release(mailbox) -> None:
                self.released += 1

        self.realm = MailhubRealm(
            submission=lambda user: ("delivery", user),  # type: ignore[arg-type,return-value]
            maildir=lambda user: f"/data/mail/{user}",
            pop3Mailbox=lambda path: (self.made.append(("pop3", path)), Mailbox())[1],
        )

    def test_interface(self) -> None:
        """
        The realm provides L{IRealm}.
        """
        self.assertTrue(verifyObject(IRealm, self.realm))

    def test_submission(self) -> None:
        """
        An L{IMailDelivery} avatar for the user's address, lower case,
        whether the avatar id is bytes or text.
        """
        interface, avatar, logout = self.realm.requestAvatar(b"Alice@Example.TEST", None, IMailDelivery)
        self.assertIs(interface, IMailDelivery)
        self.assertEqual(avatar, ("delivery", "alice@example.test"))
        logout()

    def test_pop3(self) -> None:
        """
        A POP3 mailbox over the user's Maildir; logout releases it.
        """
        interface, avatar, logout = self.realm.requestAvatar("bob@example.test", None, IMailbox)
        self.assertIs(interface, IMailbox)
        self.assertEqual(self.made, [("pop3", "/data/mail/bob@example.test")])
        logout()
        self.assertEqual(self.released, 1)

    def test_imapAccountOffThread(self) -> None:
        """
        The IMAP account (which makes the default folders on first login)
        is made through C{runBlocking}: the realm answers a Deferred of
        the avatar, and logout calls the account's C{logout}.
        """
        ran: list[object] = []
        calls: list[Deferred[object]] = []

        class Account:
            def __init__(account, path: str) -> None:
                account.path = path

            def logout(account) -> None:
                ran.append(("logout", account.path))

        def runBlocking(function: Any, *args: Any) -> Deferred[object]:
            ran.append(("blocking", args))
            d: Deferred[object] = Deferred()
            calls.append(d)
            d.addCallback(lambda _: function(*args))
            return d

        realm = MailhubRealm(
            submission=lambda user: None,  # type: ignore[arg-type,return-value]
            maildir=lambda user: f"/data/mail/{user}",
            imapAccount=Account,
            runBlocking=runBlocking,
        )
        d = realm.requestAvatar("carol@example.test", None, IAccount)
        self.assertNoResult(d)
        calls[0].callback(None)
        interface, avatar, logout = self.successResultOf(d)
        self.assertIs(interface, IAccount)
        self.assertEqual(avatar.path, "/data/mail/carol@example.test")
        logout()
        self.assertEqual(ran, [("blocking", ("/data/mail/carol@example.test",)), ("logout", avatar.path)])

    def test_unknownInterface(self) -> None:
        """
        An interface the realm does not serve raises NotImplementedError.
        """
        from zope.interface import Interface

        class IOther(Interface):
            pass

        self.assertRaises(NotImplementedError, self.realm.requestAvatar, "a@b.test", None, IOther)

    def test_avatarAddress(self) -> None:
        """
        Avatar ids become lower-case text.
        """
        self.assertEqual(avatarAddress(b"A@B.TEST"), "a@b.test")
        self.assertEqual(avatarAddress("A@B.TEST"), "a@b.test")


class SubmissionDeliveryTests(SynchronousTestCase):
    """
    What an authenticated user may send.
    """

    def setUp(self) -> None:
        data = self.mktemp()
        for user in ("alice", "bob"):
            os.makedirs(os.path.join(data, "mail", "example.test", user))
        clock = Clock()
        self.directory = Directory(
            ("example.test",),
            {"sales@example.test": ("alice@example.test", "bob@example.test"), "info@example.test": ("bob@example.test",)},
            "+",
            MaildirMailboxes(data),
        )
        self.delivery = SubmissionDelivery(
            self.directory, Committer(clock, threaded=False), UniqueNames(clock, "mx.test"), "alice@example.test"
        )
        self.session = Session(peer="192.0.2.1", tls=True, user="alice@example.test", mayRelay=True)

    def check(self, sender: str) -> None:
        self.delivery.validateFrom(self.session, parsePath(sender, allowNull=True))

    def test_interface(self) -> None:
        """
        L{SubmissionDelivery} provides L{IMailDelivery}.
        """
        self.assertTrue(verifyObject(IMailDelivery, self.delivery))

    def test_ownAddresses(self) -> None:
        """
        The user may send as themselves (any case), a subaddress, an alias
        that reaches them, and with the null sender.
        """
        for sender in ("<alice@example.test>", "<ALICE@example.test>", "<alice+lists@example.test>", "<sales@example.test>", "<>"):
            self.check(sender)

    def test_othersRefused(self) -> None:
        """
        Another user's address, an alias that does not reach the user, or a
        foreign address is 553 5.7.1.
        """
        for sender in ("<bob@example.test>", "<info@example.test>", "<alice@elsewhere.test>"):
            error = self.assertRaises(DeliveryError, self.check, sender)
            self.assertEqual((error.code, error.enhanced), (553, "5.7.1"))

    def test_allowedSenders(self) -> None:
        """
        Addresses configured for the user, or C{*}, are allowed.
        """
        self.delivery.senders = frozenset({"alice@elsewhere.test"})
        self.check("<alice@elsewhere.test>")
        self.delivery.senders = frozenset({"*"})
        self.check("<anyone@anywhere.test>")

    def test_remoteRecipientNotYet(self) -> None:
        """
        Until the relay queue exists, a remote recipient is refused with a
        clear temporary 451 4.3.2, never dropped.
        """
        error = self.assertRaises(DeliveryError, self.delivery.validateTo, self.session, parsePath("<friend@elsewhere.test>"))
        self.assertEqual((error.code, error.enhanced), (451, "4.3.2"))

    def test_localRecipient(self) -> None:
        """
        Local recipients resolve as on the MX.
        """
        resolution = self.delivery.validateTo(self.session, parsePath("<bob@example.test>"))
        self.assertEqual([m.address for m in resolution.mailboxes], ["bob@example.test"])
