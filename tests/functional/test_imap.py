"""
IMAP end to end with the stdlib C{imaplib} against the real service: mail
delivered over SMTP read over IMAP, folders, APPEND, flags shared with
POP3.
"""

from __future__ import annotations

import imaplib
import os
import poplib
import smtplib
from typing import Any, Callable, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

from tests.functional.imapsupport import IMAPTestCase
from tests.functional.support import (
    DOMAIN,
    PASSWORD,
    SENDER,
    SOCKET_GUARD,
    message,
    unverified,
)

_T = TypeVar("_T")
ALICE = f"alice@{DOMAIN}"



class IMAPTests(IMAPTestCase):
    """
    The IMAP listeners with Python's C{imaplib}.
    """

    async def deliver(self, *subjects: str) -> None:
        def work(client: smtplib.SMTP) -> None:
            for subject in subjects:
                assert client.sendmail(SENDER, [ALICE], message(subject)) == {}
            client.quit()

        await self.smtp(work)

    def imap(self, work: Callable[[imaplib.IMAP4], _T], implicit: bool = False) -> Deferred[_T]:
        """
        Run C{work(client)} logged in as alice (STARTTLS on the plain port),
        in a thread; LOGOUT afterwards.
        """

        def run() -> _T:
            if implicit:
                client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    "127.0.0.1", self.server.ports["imaps"], ssl_context=unverified(), timeout=SOCKET_GUARD
                )
            else:
                client = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"], timeout=SOCKET_GUARD)
                client.starttls(ssl_context=unverified())
            try:
                client.login(ALICE, PASSWORD)
                return work(client)
            finally:
                try:
                    client.logout()
                except Exception:
                    client.shutdown()

        return deferToThread(run)

    async def test_loginDisabledBeforeTLS(self) -> None:
        """
        Before STARTTLS the server says LOGINDISABLED and refuses LOGIN.
        """

        def run() -> tuple[tuple[str, ...], str]:
            client = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"], timeout=SOCKET_GUARD)
            try:
                capabilities = client.capabilities
                try:
                    client.login(ALICE, PASSWORD)
                except imaplib.IMAP4.error as e:
                    return capabilities, str(e)
                return capabilities, "logged in"
            finally:
                client.shutdown()

        capabilities, outcome = await deferToThread(run)
        self.assertIn("LOGINDISABLED", capabilities)
        self.assertIn("STARTTLS", capabilities)
        self.assertNotEqual(outcome, "logged in")

    async def test_readDeliveredMail(self) -> None:
        """
        Mail delivered over SMTP is in INBOX; BODY.PEEK[] returns the stored
        bytes and leaves it unseen; BODY[] sets \\Seen.
        """
        await self.deliver("first", "second")

        def work(client: imaplib.IMAP4) -> Any:
            typ, data = client.select("INBOX")
            assert typ == "OK", data
            count = int(data[0])
            _, peeked = client.fetch("1", "(UID FLAGS RFC822.SIZE BODY.PEEK[])")
            _, flagsAfterPeek = client.fetch("1", "(FLAGS)")
            client.fetch("1", "(BODY[])")
            _, flagsAfterRead = client.fetch("1", "(FLAGS)")
            return count, peeked, flagsAfterPeek, flagsAfterRead

        count, peeked, afterPeek, afterRead = await self.imap(work)
        self.assertEqual(count, 2)
        stored = []
        for sub in ("new", "cur"):
            folder = os.path.join(self.server.maildir("alice"), sub)
            for name in os.listdir(folder):
                with open(os.path.join(folder, name), "rb") as f:
                    stored.append(f.read())
        self.assertIn(peeked[0][1], stored)
        self.assertNotIn(b"\\Seen", afterPeek[0])
        self.assertIn(b"\\Seen", afterRead[0])

    async def test_defaultFolders(self) -> None:
        """
        LIST shows INBOX and the special-use folders (RFC 6154).
        """

        def work(client: imaplib.IMAP4) -> list[bytes]:
            typ, data = client.list()
            assert typ == "OK", data
            return data

        lines = await self.imap(work, implicit=True)
        text = b"\n".join(lines)
        for name, use in ((b"Sent", b"\\Sent"), (b"Drafts", b"\\Drafts"), (b"Trash", b"\\Trash"), (b"Junk", b"\\Junk"), (b"Archive", b"\\Archive")):
            line = next(l for l in lines if l.endswith(b'"' + name + b'"') or l.endswith(b" " + name))
            self.assertIn(use, line)
        self.assertIn(b"INBOX", text)

    async def test_appendAndUIDsStableAcrossRestart(self) -> None:
        """
        APPEND to Sent, then the UID of the message is the same after the
        server restarts.
        """

        def append(client: imaplib.IMAP4) -> bytes:
            typ, data = client.append("Sent", "(\\Seen)", None, message("sent copy"))
            assert typ == "OK", data
            client.select("Sent")
            _, uid = client.fetch("1", "(UID)")
            return uid[0]

        before = await self.imap(append)
        await self.sessionsClosed()
        data = self.server.data
        await self.server.stop()
        self.server = self.startServer(data=data)
        self.watchSessions()

        def read(client: imaplib.IMAP4) -> bytes:
            client.select("Sent")
            _, uid = client.fetch("1", "(UID)")
            return uid[0]

        after = await self.imap(read)
        self.assertEqual(before.split(b"UID")[1].strip(b" ()"), after.split(b"UID")[1].strip(b" ()"))

    async def test_pop3RetrieveSeenOverIMAP(self) -> None:
        """
        A message retrieved over POP3 is \\Seen over IMAP (one Maildir, one
        truth).
        """
        await self.deliver("popped")

        def pop() -> None:
            client = poplib.POP3("127.0.0.1", self.server.ports["pop3"], timeout=SOCKET_GUARD)
            try:
                client.stls(unverified())
                client.user(ALICE)
                client.pass_(PASSWORD)
                client.retr(1)
                client.quit()
            finally:
                if client.sock is not None:
                    client.close()

        await deferToThread(pop)
        await self.sessionsClosed()

        def work(client: imaplib.IMAP4) -> bytes:
            client.select("INBOX")
            _, flags = client.fetch("1", "(FLAGS)")
            return flags[0]

        self.assertIn(b"\\Seen", await self.imap(work))
