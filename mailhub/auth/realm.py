# -*- test-case-name: tests.auth.test_realm -*-
"""
The mailhub realm: what a logged-in user gets, per protocol.

One C{twisted.cred} portal serves every protocol; the realm hands each its
avatar over the user's Maildir (C{DATA/mail/DOMAIN/LOCAL/}): an
L{IMailDelivery} for submission, a C{pop3.IMailbox} for POP3 (and, later,
an C{imap4.IAccount}).
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred
from twisted.mail.imap4 import IAccount
from twisted.mail.pop3 import IMailbox
from zope.interface import implementer

from mailhub.smtp.delivery import IMailDelivery


def avatarAddress(avatarId: bytes | str) -> str:
    """
    The user's address from a checker's avatar id (bytes or text).
    """
    if isinstance(avatarId, bytes):
        avatarId = avatarId.decode("utf-8")
    return avatarId.lower()


@implementer(IRealm)
class MailhubRealm:
    """
    Builds avatars for logged-in users.

    @param submission: makes the L{IMailDelivery} of a user (their address
        in, the avatar out).
    @param maildir: the Maildir path of a user's address.
    @param pop3Mailbox: makes the POP3 mailbox over a Maildir path; it may
        have a C{release()} method, called at logout.
    @param imapAccount: makes the IMAP account over a Maildir path; its
        C{logout()}, if any, is called at logout.
    @param runBlocking: runs a blocking function off the reactor thread
        and returns a Deferred; the IMAP account is made through it (it
        looks at the disk: the default folders are made on first login).
        Without it, on the calling thread.
    """

    def __init__(
        self,
        *,
        submission: Callable[[str], IMailDelivery],
        maildir: Callable[[str], str],
        pop3Mailbox: Callable[[str], Any] | None = None,
        imapAccount: Callable[[str], Any] | None = None,
        runBlocking: Callable[..., Deferred[Any]] | None = None,
    ) -> None:
        self.submission = submission
        self.maildir = maildir
        self.pop3Mailbox = pop3Mailbox
        self.imapAccount = imapAccount
        self.runBlocking = runBlocking

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> tuple[Any, Any, Callable[[], None]]:
        address = avatarAddress(avatarId)
        for interface in interfaces:
            if interface is IMailDelivery:
                return interface, self.submission(address), lambda: None
            if interface is IMailbox and self.pop3Mailbox is not None:
                mailbox = self.pop3Mailbox(self.maildir(address))
                return interface, mailbox, getattr(mailbox, "release", lambda: None)
            if interface is IAccount and self.imapAccount is not None:
                path = self.maildir(address)

                def avatar(account: Any, interface: Any = interface) -> tuple[Any, Any, Callable[[], None]]:
                    return interface, account, getattr(account, "logout", lambda: None)

                if self.runBlocking is None:
                    return avatar(self.imapAccount(path))
                # A Deferred, which the portal passes on.
                return self.runBlocking(self.imapAccount, path).addCallback(avatar)  # type: ignore[return-value]
        raise NotImplementedError(f"no avatar for {interfaces!r}")
